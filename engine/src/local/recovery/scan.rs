//! The scan of one segment: walking its frames, telling a torn tail from damage in the middle,
//! and the proofs that bytes were durable (`Commit` and `Open` frames).

use crate::error::{Error, ErrorKind, Result};

use super::super::format::{
    self, FrameHeader, Kind, SegmentHeader, FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::super::fs::{read_all, segment_path, FileHandle};
use super::super::report::TornTail;
use super::{Cut, Rec, SYNC};

/// A checked frame at `pos`: the header and its body.
fn frame_at(data: &[u8], pos: u64, salt: u32) -> Option<(FrameHeader, &[u8])> {
    let at = usize::try_from(pos).ok()?;
    let h = format::decode_header(data.get(at..)?, salt).ok()?;
    let body = data.get(at + FRAME_HEADER_LEN..at + usize::try_from(h.len).ok()?)?;
    format::body_ok(&h, body, salt).then_some((h, body))
}

/// The next position after `from` where a valid frame starts.
fn resync(data: &[u8], from: u64, salt: u32) -> Option<u64> {
    let mut p = format::align(from);
    while p + FRAME_HEADER_LEN as u64 <= data.len() as u64 {
        let at = usize::try_from(p).ok()?;
        // Zeros are never a frame start (a frame's length is at least 56): skip them cheaply.
        if data.get(at..at + 4).is_some_and(|b| b != [0, 0, 0, 0])
            && frame_at(data, p, salt).is_some()
        {
            return Some(p);
        }
        p += FRAME_ALIGN;
    }
    None
}

/// One past the last non-zero byte at or after `from`.
fn nonzero_end(data: &[u8], from: u64) -> u64 {
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    match data
        .get(start..)
        .and_then(|d| d.iter().rposition(|b| *b != 0))
    {
        Some(i) => from + i as u64 + 1,
        None => from,
    }
}

impl Rec<'_> {
    /// Scans one segment from `from`; returns the end of its valid data.
    #[expect(
        clippy::too_many_arguments,
        reason = "the scan's inputs are all distinct"
    )]
    pub(super) fn scan(
        &mut self,
        seq: u64,
        salt: u32,
        data: &[u8],
        from: u64,
        durable: u64,
        is_last: bool,
        file: &dyn FileHandle,
    ) -> Result<u64> {
        let mut pos = from;
        let mut durable = durable;
        let mut barrier = None;
        self.ended_clean = false;
        // One past the last non-zero byte: computed once, the data does not change.
        let data_end = nonzero_end(data, from);
        loop {
            if pos >= data_end {
                // Only zeros (or nothing) follow: the normal end of the written part. A file that
                // ends exactly here was cut (the writer always zero-fills ahead of its frames).
                if data.len() as u64 <= pos && pos < self.opts.segment_bytes {
                    self.report.warnings.push(format!(
                        "segment {seq} ends exactly after its last frame at byte {pos}: it may \
                         have been truncated"
                    ));
                }
                self.ended_clean = true;
                return Ok(pos);
            }
            if let Some((h, body)) = frame_at(data, pos, salt) {
                if h.kind == Kind::Commit {
                    durable = durable.max(h.first);
                }
                self.apply(&h, body, seq, pos, barrier);
                pos += h.padded_len();
                continue;
            }
            let next = resync(data, pos + FRAME_ALIGN, salt);
            let mut proven = durable > pos
                || next.is_some_and(|q| self.commit_after(data, q, salt, pos, !is_last));
            if !proven && !is_last {
                // A finished segment is durable whole if its session synced it at the roll
                // (`Sync`), or if a later segment holds a `Commit` frame (written after a sync,
                // which waits for every pending roll sync). Otherwise its roll sync may not have
                // completed: the damage is where the durable log ended.
                proven = self.session == SYNC || self.proven_by_later(seq)?;
                if !proven {
                    let end = data_end.max(pos);
                    self.cut = Some(Cut {
                        pos,
                        bytes: end - pos,
                        frames: next.map_or(0, |q| count_frames(data, q, salt)),
                    });
                    return Ok(pos);
                }
            }
            if next.is_none() || !proven {
                let end = data_end.max(pos);
                if end > pos {
                    let dropped = next.map_or(0, |q| count_frames(data, q, salt));
                    if is_last {
                        // Erase the torn bytes durably before anything new is written after them.
                        let zeros = vec![0u8; usize::try_from(end - pos).unwrap_or(0)];
                        file.write_all_at(&zeros, pos)
                            .and_then(|()| file.sync_data())
                            .map_err(|e| {
                                Error::new(
                                    ErrorKind::Unavailable,
                                    "recovery: cutting the torn tail",
                                )
                                .with_source(e)
                            })?;
                        eprintln!(
                            "streamstore: cut a torn tail of {} bytes at byte {pos} of segment {seq}",
                            end - pos
                        );
                        self.report.torn_tail = Some(TornTail {
                            segment: seq,
                            position: pos,
                            bytes: end - pos,
                            dropped_frames: dropped,
                        });
                    } else {
                        self.quarantine(
                            seq,
                            pos,
                            end,
                            data,
                            "invalid bytes after the last frame of a finished segment".into(),
                        );
                        self.blind.push((seq, end));
                    }
                }
                return Ok(pos);
            }
            let q = next.unwrap_or(pos);
            self.damaged_middle(seq, salt, data, pos, q);
            barrier = Some(q);
            pos = q;
        }
    }

    /// Damage in the middle of the log at `pos`, valid frames again from `q`: the lost offsets are
    /// named if the damaged frame's header is still readable, and the bytes are quarantined.
    fn damaged_middle(&mut self, seq: u64, salt: u32, data: &[u8], pos: u64, q: u64) {
        // Name the lost offsets if the damaged frame's header is still readable.
        let header = usize::try_from(pos)
            .ok()
            .and_then(|at| data.get(at..))
            .and_then(|b| format::decode_header(b, salt).ok());
        match header {
            Some(h) if pos + h.padded_len() == q => {
                if h.kind == Kind::Data {
                    if let Some(id) = self.numbers.get(&h.stream).cloned() {
                        self.lose(&id, h.first, h.first + u64::from(h.count));
                        self.last_seen.insert(h.stream, (seq, pos));
                    }
                } else {
                    self.blind.push((seq, q));
                }
            }
            _ => self.blind.push((seq, q)),
        }
        self.quarantine(
            seq,
            pos,
            q,
            data,
            "frame checksum mismatch in the middle of the log".into(),
        );
    }

    /// Whether a `Commit` frame at or after `q` proves that byte `pos` was durable (with `open`,
    /// an `Open` frame too: see [`proves_earlier`]). Frames after further damage count too.
    pub(super) fn commit_after(
        &self,
        data: &[u8],
        q: u64,
        salt: u32,
        pos: u64,
        open: bool,
    ) -> bool {
        let mut q = Some(q);
        while let Some(at) = q {
            q = match frame_at(data, at, salt) {
                Some((h, _)) if h.kind == Kind::Commit && h.first > pos => return true,
                Some((h, _)) if open && h.kind == Kind::Open => return true,
                Some((h, _)) => Some(at + h.padded_len()),
                None => resync(data, at + FRAME_ALIGN, salt),
            };
        }
        false
    }

    /// Whether a later segment than `seq` holds a frame that proves every earlier segment durable
    /// whole ([`proves_earlier`]).
    pub(super) fn proven_by_later(&mut self, seq: u64) -> Result<bool> {
        if self.proof.is_none() {
            let mut found = None;
            for &m in self.seqs.iter().rev() {
                if m <= seq {
                    break;
                }
                let data = self.read_segment(m)?;
                let Ok(h) = SegmentHeader::decode(&data) else {
                    continue;
                };
                let salt = h.salt();
                let mut q = Some(SEGMENT_HEADER_LEN);
                while let Some(at) = q {
                    q = match frame_at(&data, at, salt) {
                        Some((f, _)) if proves_earlier(&f) => {
                            found = Some(m);
                            break;
                        }
                        Some((f, _)) => Some(at + f.padded_len()),
                        None => resync(&data, at + FRAME_ALIGN, salt),
                    };
                }
                if found.is_some() {
                    break;
                }
            }
            self.proof = Some(found);
        }
        Ok(self.proof.flatten().is_some_and(|m| m > seq))
    }

    pub(super) fn read_segment(&self, seq: u64) -> Result<Vec<u8>> {
        self.fs
            .open(&segment_path(self.seg_dir, seq), false)
            .and_then(|f| read_all(f.as_ref()))
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "recovery: reading a segment").with_source(e)
            })
    }

    /// After a finished segment's data ended cleanly at `end`: if the next segment starts with
    /// the `Commit` frame of a non-`Sync` roll, its `aux` says where the finished segment's
    /// frames ended. Bytes missing before that are a cut (or quarantined, if proven durable).
    pub(super) fn check_end(&mut self, seq: u64, end: u64, data: &[u8]) -> Result<()> {
        let Some(&next) = self.seqs.iter().find(|m| **m > seq) else {
            return Ok(());
        };
        if next != seq + 1 {
            return Ok(());
        }
        let head = {
            let f = self
                .fs
                .open(&segment_path(self.seg_dir, next), false)
                .map_err(|e| {
                    Error::new(ErrorKind::Unavailable, "recovery: opening a segment").with_source(e)
                })?;
            let mut h =
                vec![0u8; usize::try_from(SEGMENT_HEADER_LEN).unwrap_or(64) + 2 * FRAME_HEADER_LEN];
            let n = f.read_at(&mut h, 0).map_err(|e| {
                Error::new(ErrorKind::Unavailable, "recovery: reading a segment").with_source(e)
            })?;
            h.truncate(n);
            h
        };
        let Ok(h) = SegmentHeader::decode(&head) else {
            return Ok(());
        };
        if h.seq != next {
            return Ok(());
        }
        let expected = match frame_at(&head, SEGMENT_HEADER_LEN, h.salt()) {
            Some((f, _))
                if f.kind == Kind::Commit && f.first == SEGMENT_HEADER_LEN && f.aux != 0 =>
            {
                f.aux
            }
            _ => return Ok(()),
        };
        if end >= expected {
            if end > expected {
                self.report.warnings.push(format!(
                    "segment {seq} has frames up to byte {end}, past the end {expected} that \
                     segment {next} records for it"
                ));
            }
            return Ok(());
        }
        if self.session == SYNC || self.proven_by_later(seq)? {
            self.quarantine(
                seq,
                end,
                expected,
                data,
                format!("bytes {end}..{expected} of a finished segment are missing"),
            );
            self.blind.push((seq, expected));
        } else {
            self.cut = Some(Cut {
                pos: end,
                bytes: 0,
                frames: 0,
            });
        }
        Ok(())
    }
}

/// Whether frame `f` proves every byte of the log before it durable (for segments finished by a
/// non-`Sync` session, whose roll sync ran in the background):
/// - a `Commit` frame past the segment header (not the `Commit` a roll writes first, which names
///   the end of the finished segment and claims only the header): it is written only after a
///   sync, and a sync first waits for every pending roll sync;
/// - an `Open` frame: a session starts only after recovery synced every segment it kept (or
///   after a clean close, which synced everything). If that session's own sync of the frame did
///   not complete, it acknowledged nothing, and treating the damage as durable only quarantines
///   it instead of cutting the log there.
fn proves_earlier(f: &FrameHeader) -> bool {
    (f.kind == Kind::Commit && f.first > SEGMENT_HEADER_LEN) || f.kind == Kind::Open
}

/// Valid frames of a whole segment, past any damage (for the report of a cut).
pub(super) fn count_all_frames(data: &[u8], salt: u32) -> usize {
    let mut n = 0;
    let mut q = Some(SEGMENT_HEADER_LEN);
    while let Some(at) = q {
        q = match frame_at(data, at, salt) {
            Some((h, _)) => {
                n += 1;
                Some(at + h.padded_len())
            }
            None => resync(data, at + FRAME_ALIGN, salt),
        };
    }
    n
}

/// Valid frames from `q` on (for the report of a torn tail).
fn count_frames(data: &[u8], mut q: u64, salt: u32) -> usize {
    let mut n = 0;
    while let Some((h, _)) = frame_at(data, q, salt) {
        n += 1;
        q += h.padded_len();
    }
    n
}
