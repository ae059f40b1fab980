//! The rows as Rust values, and their conversion to the engine's `StreamHead`.

use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use scylla::value::CqlValue;

use streamstore::implementor::head::StreamHead;
use streamstore::{
    AppendResult, Error, ErrorKind, IdempotencyKey, Incarnation, Result, Retention, StreamId,
};

/// `closed` of a head row: appends may still go to this bucket.
pub(crate) const OPEN: i8 = 0;
/// `closed`: the stream rolled on to bucket `moved_to`; this head is frozen.
pub(crate) const ROLLED: i8 = 1;
/// `closed`: the stream was deleted (its `streams` row goes next).
pub(crate) const DELETED: i8 = 2;

/// Converts a `u64` for a `bigint` column (offsets, times and sizes stay far below `i64::MAX`).
pub(crate) fn db(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::too_large("a value exceeds Cassandra's bigint"))
}

/// Converts a `bigint` column back; a negative value is corrupt data.
pub(crate) fn un(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::new(ErrorKind::Corruption, "a negative stored value"))
}

fn ms(d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| Error::too_large("a retention time is too long"))
}

/// Where a stream's current head lives: its incarnation and bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub inc: i64,
    pub bucket: i64,
}

impl Loc {
    pub(crate) fn incarnation(self) -> Result<Incarnation> {
        Ok(Incarnation(un(self.inc)?))
    }
}

/// A head row.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    /// Raised by every change of the row; every conditional write checks it.
    pub ver: i64,
    /// The first offset this bucket holds (the stream's next offset when the bucket began).
    pub base: u64,
    pub first: u64,
    pub next: u64,
    pub created: u64,
    pub last_ts: u64,
    pub sealed: Option<u64>,
    pub closed: i8,
    pub moved_to: Option<i64>,
    pub prev: Option<i64>,
    pub bytes: u64,
    pub retention: Retention,
    /// For a `DELETED` head: the write timestamp (µs) of the delete, used for the name's
    /// removal so that it never removes the name of a later incarnation.
    pub closed_at: Option<i64>,
}

/// The selected columns of a head row (see `schema::HEAD_COLUMNS`).
pub(crate) type HeadColumns = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i8>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Head {
    /// The head of a new stream (or bucket `0` of a new incarnation).
    pub(crate) fn new(now: u64) -> Self {
        Head {
            ver: 0,
            base: 0,
            first: 0,
            next: 0,
            created: now,
            last_ts: now,
            sealed: None,
            closed: OPEN,
            moved_to: None,
            prev: None,
            bytes: 0,
            retention: Retention::default(),
            closed_at: None,
        }
    }

    pub(crate) fn from_columns(c: HeadColumns) -> Result<Self> {
        let need = |v: Option<i64>| {
            v.ok_or_else(|| Error::new(ErrorKind::Corruption, "a head row lacks a column"))
                .and_then(un)
        };
        let dur = |v: Option<i64>| -> Result<Option<Duration>> {
            v.map(|m| un(m).map(Duration::from_millis)).transpose()
        };
        Ok(Head {
            ver: c.0.unwrap_or(0),
            base: need(c.1)?,
            first: need(c.2)?,
            next: need(c.3)?,
            created: need(c.4)?,
            last_ts: need(c.5)?,
            sealed: c.6.map(un).transpose()?,
            closed: c.7.unwrap_or(OPEN),
            moved_to: c.8,
            prev: c.9,
            bytes: need(c.10)?,
            retention: {
                let mut o = Retention::default();
                o.delete_after_seal = dur(c.11)?;
                o.delete_after_idle = dur(c.12)?;
                o.max_bytes = c.13.map(un).transpose()?;
                o
            },
            closed_at: c.14,
        })
    }

    /// The bound values of the head's columns, in `HEAD_COLUMNS` order.
    pub(crate) fn cells(&self) -> Result<Vec<Option<CqlValue>>> {
        let r = &self.retention;
        let big = |v: u64| db(v).map(|v| Some(CqlValue::BigInt(v)));
        let opt = |v: Option<u64>| -> Result<Option<CqlValue>> {
            v.map(db).transpose().map(|v| v.map(CqlValue::BigInt))
        };
        let dur = |d: Option<Duration>| -> Result<Option<CqlValue>> {
            d.map(ms).transpose().map(|v| v.map(CqlValue::BigInt))
        };
        Ok(vec![
            Some(CqlValue::BigInt(self.ver)),
            big(self.base)?,
            big(self.first)?,
            big(self.next)?,
            big(self.created)?,
            big(self.last_ts)?,
            opt(self.sealed)?,
            Some(CqlValue::TinyInt(self.closed)),
            self.moved_to.map(CqlValue::BigInt),
            self.prev.map(CqlValue::BigInt),
            big(self.bytes)?,
            dur(r.delete_after_seal)?,
            dur(r.delete_after_idle)?,
            opt(r.max_bytes)?,
            self.closed_at.map(CqlValue::BigInt),
        ])
    }

    /// The engine's view of this head, with the one idempotency key looked up (if any).
    pub(crate) fn engine(
        &self,
        loc: Loc,
        key: Option<(&IdempotencyKey, &KeyRow)>,
        key_capacity: usize,
    ) -> Result<StreamHead> {
        let mut h = StreamHead {
            incarnation: loc.incarnation()?,
            first_offset: self.first,
            next_offset: self.next,
            created_ms: self.created,
            last_append_ms: self.last_ts,
            sealed_ms: self.sealed,
            bytes: self.bytes,
            retention: self.retention,
            keys: Default::default(),
        };
        if let Some((k, row)) = key {
            let result = row.result(loc)?;
            h.keys.insert(k.clone(), result, row.digest, key_capacity);
        }
        Ok(h)
    }

    /// What `info` reports.
    pub(crate) fn info(&self, stream: &StreamId, loc: Loc) -> Result<streamstore::StreamInfo> {
        Ok(self.engine(loc, None, 0)?.info(stream))
    }

    /// Whether a time rule has expired the stream at `now`.
    pub(crate) fn expired(&self, now: u64) -> bool {
        let h = StreamHead {
            incarnation: Incarnation(1),
            first_offset: self.first,
            next_offset: self.next,
            created_ms: self.created,
            last_append_ms: self.last_ts,
            sealed_ms: self.sealed,
            bytes: self.bytes,
            retention: self.retention,
            keys: Default::default(),
        };
        h.is_expired(now)
    }

    /// Whether `max_bytes` retention must trim: over the limit, and more than the newest record.
    pub(crate) fn must_trim(&self) -> bool {
        self.retention
            .max_bytes
            .is_some_and(|max| self.bytes > max && self.next - self.first > 1)
    }
}

/// The selected columns of a key row: `first, n, ts, digest`.
pub(crate) type KeyColumns = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// An idempotency key row: the result of the append that used the key.
#[derive(Clone, Debug)]
pub(crate) struct KeyRow {
    pub first: u64,
    pub count: u64,
    pub ts: u64,
    pub digest: u64,
}

impl KeyRow {
    pub(crate) fn result(&self, loc: Loc) -> Result<AppendResult> {
        Ok(AppendResult {
            first_offset: self.first,
            count: self.count,
            incarnation: loc.incarnation()?,
            timestamp_ms: self.ts,
        })
    }

    pub(crate) fn from_columns(
        c: (Option<i64>, Option<i64>, Option<i64>, Option<i64>),
    ) -> Result<Self> {
        let need = |v: Option<i64>| {
            v.ok_or_else(|| Error::new(ErrorKind::Corruption, "a key row lacks a column"))
        };
        Ok(KeyRow {
            first: un(need(c.0)?)?,
            count: un(need(c.1)?)?,
            ts: un(need(c.2)?)?,
            // The digest is any 64-bit value, stored bit for bit.
            digest: u64::from_le_bytes(need(c.3)?.to_le_bytes()),
        })
    }

    pub(crate) fn digest_db(&self) -> i64 {
        i64::from_le_bytes(self.digest.to_le_bytes())
    }
}
