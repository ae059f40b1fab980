//! Checks every implementation applies before it writes, written once.

use crate::implementor::ErrorShorthand;
use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::types::{IdempotencyKey, ReadOptions, StreamId};

/// Checks a batch against the contract and `caps`: non-empty, each record and the whole batch
/// within the limits. Returns the batch's payload bytes.
pub fn check_batch(stream: &StreamId, records: &[Bytes], caps: &Capabilities) -> Result<u64> {
    if stream.as_str().len() > caps.max_stream_id_bytes {
        return Err(Error::invalid(format!(
            "this store accepts stream ids of at most {} bytes",
            caps.max_stream_id_bytes
        )));
    }
    if records.is_empty() {
        return Err(Error::invalid("an append needs at least one record"));
    }
    if records.len() > caps.max_batch_records {
        return Err(Error::too_large(format!(
            "a batch holds at most {} records; this one has {}",
            caps.max_batch_records,
            records.len()
        )));
    }
    let mut total = 0usize;
    for (i, r) in records.iter().enumerate() {
        if r.len() > caps.max_record_bytes {
            return Err(Error::too_large(format!(
                "record {i} has {} bytes; the limit is {}",
                r.len(),
                caps.max_record_bytes
            )));
        }
        total += r.len();
    }
    if total > caps.max_batch_bytes {
        return Err(Error::too_large(format!(
            "the batch has {total} bytes; the limit is {}",
            caps.max_batch_bytes
        )));
    }
    Ok(total as u64)
}

/// Checks an append before anything is written: [`check_batch`], and an idempotency key only where
/// the store remembers keys (`Unsupported` otherwise). Returns the batch's payload bytes and, for
/// a keyed append, the [`batch_digest`] to store beside the key.
pub fn check_append(
    stream: &StreamId,
    records: &[Bytes],
    key: Option<&IdempotencyKey>,
    caps: &Capabilities,
) -> Result<(u64, Option<u64>)> {
    let bytes = check_batch(stream, records, caps)?;
    if key.is_some() && caps.idempotency.is_none() {
        return Err(Error::unsupported("idempotent append"));
    }
    Ok((bytes, key.map(|_| batch_digest(records))))
}

/// Checks read options.
pub fn check_read(options: &ReadOptions, caps: &Capabilities) -> Result<()> {
    if options.max_records == 0 {
        return Err(Error::invalid("max_records must be at least 1"));
    }
    if options.durable && !caps.durable_reads {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "this store keeps nothing durable: durable reads are not supported",
        ));
    }
    Ok(())
}

/// A 64-bit digest of a batch (record count, and each record's length and bytes), stored beside an
/// idempotency key so that a key reused for different records is recognized.
///
/// Stable across versions and processes: it is persisted by the local engine and the adapters.
/// Two CRC-32s with different seeds over the same framing, high and low half.
pub fn batch_digest(records: &[Bytes]) -> u64 {
    let mut lo = crc32fast::Hasher::new();
    let mut hi = crc32fast::Hasher::new_with_initial(0x9E37_79B9);
    let count = (records.len() as u64).to_le_bytes();
    lo.update(&count);
    hi.update(&count);
    for r in records {
        let len = (r.len() as u64).to_le_bytes();
        lo.update(&len);
        lo.update(r);
        hi.update(r);
        hi.update(&len);
    }
    (u64::from(hi.finalize()) << 32) | u64::from(lo.finalize())
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_batches_that_concatenate_alike() {
        let a = [Bytes::from_static(b"ab"), Bytes::from_static(b"c")];
        let b = [Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        assert_ne!(batch_digest(&a), batch_digest(&b));
        assert_eq!(batch_digest(&a), batch_digest(&a.clone()));
        assert_ne!(batch_digest(&[]), batch_digest(&[Bytes::new()]));
    }

    #[test]
    fn batch_limits_are_typed() {
        let caps = Capabilities {
            max_record_bytes: 4,
            max_batch_bytes: 6,
            ..Default::default()
        };
        let id = StreamId::new("s").unwrap();
        let kind = |r: &[Bytes]| check_batch(&id, r, &caps).unwrap_err().kind();
        assert_eq!(kind(&[]), crate::ErrorKind::InvalidArgument);
        assert_eq!(
            kind(&[Bytes::from_static(b"12345")]),
            crate::ErrorKind::TooLarge
        );
        assert_eq!(
            kind(&[Bytes::from_static(b"1234"), Bytes::from_static(b"1234")]),
            crate::ErrorKind::TooLarge
        );
        assert_eq!(
            check_batch(&id, &[Bytes::from_static(b"1234")], &caps).unwrap(),
            4
        );
    }
}
