//! Small little-endian encoding helpers for control-frame bodies and the checkpoint. The reader
//! never panics: every read is bounds-checked and a short input is an error.

use std::time::Duration;

use crate::types::Retention;

use super::format::FormatError;

/// Appends little-endian integers and length-prefixed byte strings.
pub(crate) trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn u64(&mut self, v: u64);
    fn bytes16(&mut self, v: &[u8]);
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    /// `len u16` then the bytes (callers keep `v` under 64 KiB: ids and keys are far shorter).
    fn bytes16(&mut self, v: &[u8]) {
        self.u16(u16::try_from(v.len()).unwrap_or(u16::MAX));
        self.extend_from_slice(v.get(..usize::from(u16::MAX)).unwrap_or(v));
    }
}

/// Reads what [`Put`] wrote.
pub(crate) struct Get<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Get<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Get { b, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let s = self
            .b
            .get(self.at..self.at.saturating_add(n))
            .ok_or(FormatError("input truncated"))?;
        self.at += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(*self
            .take(1)?
            .first()
            .ok_or(FormatError("input truncated"))?)
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bytes16(&mut self) -> Result<&'a [u8], FormatError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        self.take(n)
    }
    /// A count that must be plausible for the bytes left (each item takes at least `min_item`).
    pub fn count(&mut self, min_item: usize) -> Result<usize, FormatError> {
        let n = usize::try_from(self.u32()?).map_err(|_| FormatError("count out of range"))?;
        if n.saturating_mul(min_item.max(1)) > self.b.len().saturating_sub(self.at) {
            return Err(FormatError("count exceeds the input"));
        }
        Ok(n)
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }
    pub fn is_done(&self) -> bool {
        self.at == self.b.len()
    }
}

/// `present u8, secs u64, nanos u32` for each duration, `present u8, u64` for `max_bytes`.
pub(crate) fn put_retention(buf: &mut Vec<u8>, r: &Retention) {
    for d in [r.delete_after_seal, r.delete_after_idle] {
        match d {
            Some(d) => {
                buf.u8(1);
                buf.u64(d.as_secs());
                buf.u32(d.subsec_nanos());
            }
            None => {
                buf.u8(0);
                buf.u64(0);
                buf.u32(0);
            }
        }
    }
    buf.u8(u8::from(r.max_bytes.is_some()));
    buf.u64(r.max_bytes.unwrap_or(0));
}

pub(crate) fn get_retention(g: &mut Get<'_>) -> Result<Retention, FormatError> {
    let mut durations = [None, None];
    for d in &mut durations {
        let present = g.u8()?;
        let secs = g.u64()?;
        let nanos = g.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(FormatError("nanoseconds out of range"));
        }
        *d = match present {
            0 => None,
            1 => Some(Duration::new(secs, nanos)),
            _ => return Err(FormatError("bad presence byte")),
        };
    }
    let present = g.u8()?;
    let max = g.u64()?;
    let max_bytes = match present {
        0 => None,
        1 => Some(max),
        _ => return Err(FormatError("bad presence byte")),
    };
    Ok(Retention {
        delete_after_seal: durations[0],
        delete_after_idle: durations[1],
        max_bytes,
    })
}
