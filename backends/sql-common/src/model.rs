//! Rows as the adapters read and write them, and the integer conversions between the store's
//! `u64` values and SQL `BIGINT` (signed 64-bit in both databases).

use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use streamstore::implementor::head::{KeyWindow, StreamHead};
use streamstore::{AppendResult, Error, Incarnation, Result, Retention};

/// The schema version this crate creates and understands. Stored in `<prefix>meta`; a database
/// with a higher version was written by a newer release and is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

/// A `u64` (offset, byte count, timestamp) as `BIGINT`. Values above `i64::MAX` never occur for
/// offsets and times; they are refused (`TooLarge`) rather than wrapped.
pub fn to_db(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::too_large(format!("{v} does not fit a SQL BIGINT")))
}

/// The mark of a head for the watcher of waiting reads: it changes with every append (the next
/// offset grows), seal and re-creation (a new incarnation); a deleted or expired stream has no
/// mark. Within an incarnation `next_offset << 1 | sealed` only grows, so two states of one
/// incarnation never share a mark; across incarnations the random incarnation is mixed in.
pub fn head_mark(incarnation: i64, next_offset: i64, sealed: bool) -> u64 {
    let state = u64::from_le_bytes(next_offset.to_le_bytes()) << 1 | u64::from(sealed);
    // splitmix64's finalizer spreads the incarnation over every bit.
    let mut z = u64::from_le_bytes(incarnation.to_le_bytes()).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) ^ state
}

/// A `BIGINT` read back as `u64`; a negative value is `Corruption`, it was never written by us.
pub fn from_db(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::new(
            streamstore::ErrorKind::Corruption,
            format!("negative value {v} in a column that holds u64"),
        )
    })
}

/// An incarnation (a random `u64`) as `BIGINT`: the same 64 bits, reinterpreted.
pub fn to_db_incarnation(i: Incarnation) -> i64 {
    i64::from_le_bytes(i.0.to_le_bytes())
}

/// The inverse of [`to_db_incarnation`].
pub fn from_db_incarnation(v: i64) -> Incarnation {
    Incarnation(u64::from_le_bytes(v.to_le_bytes()))
}

/// A duration as whole milliseconds in `BIGINT`, saturating at `i64::MAX` (292 million years:
/// effectively "never"). Sub-millisecond parts are dropped: retention works in milliseconds.
pub fn duration_to_db(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The inverse of [`duration_to_db`] (negative values read as zero).
pub fn duration_from_db(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The state of one live stream as stored in `<prefix>streams`: the engine's head, and how many
/// idempotency keys the stream holds.
#[derive(Clone, Debug)]
pub struct HeadRow {
    /// The head as the in-process stores keep it. Its `keys` window stays empty: the keys live
    /// in `<prefix>idempotency`, and an append looks up only its own (see
    /// [`HeadRow::to_stream_head`]).
    pub head: StreamHead,
    /// Rows this stream holds in `<prefix>idempotency` (pruning is amortized on this count).
    pub key_count: u64,
}

/// The columns of a head row in `BIGINT` form, in the order every adapter's SQL lists them:
/// `incarnation, first_offset, next_offset, created_ms, last_append_ms, sealed_ms, bytes,
/// seal_ttl_ms, idle_ttl_ms, max_bytes, key_count, expires_ms`.
///
/// `expires_ms` is derived ([`HeadColumns::expires_ms`]) and written with every head update, so
/// that the sweeper and `list` find expired streams through an index on that one column (MySQL
/// has no partial indexes, and an `OR` of two rules uses no index); it is ignored when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct HeadColumns {
    pub incarnation: i64,
    pub first_offset: i64,
    pub next_offset: i64,
    pub created_ms: i64,
    pub last_append_ms: i64,
    pub sealed_ms: Option<i64>,
    pub bytes: i64,
    pub seal_ttl_ms: Option<i64>,
    pub idle_ttl_ms: Option<i64>,
    pub max_bytes: Option<i64>,
    pub key_count: i64,
    pub expires_ms: Option<i64>,
}

impl HeadRow {
    /// The head of a new incarnation created at `now_ms`: empty, unsealed, no retention.
    pub fn new(now_ms: u64) -> Self {
        HeadRow {
            head: StreamHead::new(now_ms, Retention::default()),
            key_count: 0,
        }
    }

    /// The row in `BIGINT` form.
    pub fn to_columns(&self) -> Result<HeadColumns> {
        let h = &self.head;
        Ok(HeadColumns {
            incarnation: to_db_incarnation(h.incarnation),
            first_offset: to_db(h.first_offset)?,
            next_offset: to_db(h.next_offset)?,
            created_ms: to_db(h.created_ms)?,
            last_append_ms: to_db(h.last_append_ms)?,
            sealed_ms: h.sealed_ms.map(to_db).transpose()?,
            bytes: to_db(h.bytes)?,
            seal_ttl_ms: h.retention.delete_after_seal.map(duration_to_db),
            idle_ttl_ms: h.retention.delete_after_idle.map(duration_to_db),
            max_bytes: h
                .retention
                .max_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            key_count: to_db(self.key_count)?,
            expires_ms: h.expires_ms().map(|e| i64::try_from(e).unwrap_or(i64::MAX)),
        })
    }

    /// The row read back from `BIGINT` form.
    pub fn from_columns(c: HeadColumns) -> Result<Self> {
        Ok(HeadRow {
            head: StreamHead {
                incarnation: from_db_incarnation(c.incarnation),
                first_offset: from_db(c.first_offset)?,
                next_offset: from_db(c.next_offset)?,
                created_ms: from_db(c.created_ms)?,
                last_append_ms: from_db(c.last_append_ms)?,
                sealed_ms: c.sealed_ms.map(from_db).transpose()?,
                bytes: from_db(c.bytes)?,
                retention: {
                    let mut o = Retention::default();
                    o.delete_after_seal = c.seal_ttl_ms.map(duration_from_db);
                    o.delete_after_idle = c.idle_ttl_ms.map(duration_from_db);
                    o.max_bytes = c.max_bytes.map(from_db).transpose()?;
                    o
                },
                keys: KeyWindow::default(),
            },
            key_count: from_db(c.key_count)?,
        })
    }

    /// The engine's in-memory head for this row, holding `key` (the one idempotency key looked
    /// up for this append, if it was found) so that `StreamHead::decide` applies the exact rules
    /// of the reference store.
    pub fn to_stream_head(
        &self,
        key: Option<(&streamstore::IdempotencyKey, &KeyRow)>,
    ) -> StreamHead {
        let mut head = self.head.clone();
        if let Some((key, row)) = key {
            head.keys.insert(key.clone(), row.result, row.digest, 1);
        }
        head
    }
}

/// A remembered idempotency key: the result of the append that used it and the batch digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRow {
    /// The original append's result (its incarnation included).
    pub result: AppendResult,
    /// `streamstore::implementor::validate::batch_digest` of the original batch.
    pub digest: u64,
}

impl KeyRow {
    /// The digest as `BIGINT` (same 64 bits).
    pub fn digest_db(&self) -> i64 {
        i64::from_le_bytes(self.digest.to_le_bytes())
    }

    /// Reads a row back: `(incarnation, first_offset, count, ts_ms, digest)` in `BIGINT` form.
    pub fn from_columns(
        incarnation: i64,
        first_offset: i64,
        count: i64,
        ts_ms: i64,
        digest: i64,
    ) -> Result<Self> {
        Ok(KeyRow {
            result: AppendResult {
                first_offset: from_db(first_offset)?,
                count: from_db(count)?,
                incarnation: from_db_incarnation(incarnation),
                timestamp_ms: from_db(ts_ms)?,
            },
            digest: u64::from_le_bytes(digest.to_le_bytes()),
        })
    }
}

/// Whether a time-based retention rule has fired for `head` at `now_ms` (the reference store's
/// rule, [`StreamHead::is_expired`]; [`HeadColumns::expires_ms`] is the same deadline as a column).
pub fn is_expired(head: &HeadRow, now_ms: u64) -> bool {
    head.head.is_expired(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_roundtrip() {
        let mut h = HeadRow::new(1_700_000_000_000);
        h.head.incarnation = Incarnation(u64::MAX - 3);
        h.head.sealed_ms = Some(5);
        h.head.retention.delete_after_idle = Some(Duration::from_millis(1500));
        h.head.retention.max_bytes = Some(77);
        h.key_count = 9;
        let c = h.to_columns().unwrap();
        assert!(c.incarnation < 0);
        let back = HeadRow::from_columns(c).unwrap();
        assert_eq!(back.to_columns().unwrap(), c);
        assert_eq!(back.key_count, 9);
        let id = streamstore::StreamId::new("s").unwrap();
        assert_eq!(back.head.info(&id), h.head.info(&id));
        assert!(to_db(u64::MAX).is_err());
        assert!(from_db(-1).is_err());
    }

    #[test]
    fn expiry_matches_reference_rule() {
        let mut h = HeadRow::new(1000);
        assert!(!is_expired(&h, u64::MAX));
        h.head.retention.delete_after_idle = Some(Duration::from_millis(10));
        assert!(!is_expired(&h, 1009));
        assert!(is_expired(&h, 1010));
        h.head.retention.delete_after_idle = Some(Duration::MAX);
        assert!(!is_expired(&h, u64::MAX - 1));
        h.head.retention.delete_after_seal = Some(Duration::from_millis(5));
        assert!(
            !is_expired(&h, 2000),
            "unsealed streams ignore delete_after_seal"
        );
        h.head.sealed_ms = Some(1500);
        assert!(!is_expired(&h, 1504));
        assert!(is_expired(&h, 1505));
        assert_eq!(h.to_columns().unwrap().expires_ms, Some(1505));
    }
}
