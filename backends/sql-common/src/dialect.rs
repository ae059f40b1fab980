//! The statements an adapter provides. Each method is one statement (or a short fixed sequence)
//! in the adapter's SQL; the algorithms around them live in [`crate::SqlStore`], once.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use streamstore::implementor::wait::Changes;
use streamstore::{IdempotencyKey, Incarnation, Record, Result, StreamId};

use crate::model::{HeadRow, KeyRow};

/// One database's statements, over its own transaction type.
///
/// Errors are already mapped to `streamstore::Error` by the adapter's `parse_<db>_error`. A
/// failure after which the database has rolled the whole transaction back (deadlock,
/// serialization failure, lock wait timeout) carries a [`RolledBack`] source, so
/// [`crate::SqlStore`] can run the transaction again. Dropping a `Tx` without `commit` rolls it
/// back.
#[async_trait]
pub trait SqlDialect: Send + Sync + 'static {
    /// An open read-write transaction.
    type Tx: Send;

    /// A pooled connection for a read's statements, outside any transaction.
    type Conn: Send;

    /// Starts a read-write transaction.
    async fn begin(&self) -> Result<Self::Tx>;

    /// Commits. An error here leaves the outcome unknown (`Unavailable`), unless it carries
    /// [`RolledBack`].
    async fn commit(&self, tx: Self::Tx) -> Result<()>;

    /// Reads the head of `stream` and locks it until the end of the transaction
    /// (`SELECT … FOR UPDATE`). `None` if the stream has no head row.
    async fn lock_head(&self, tx: &mut Self::Tx, stream: &StreamId) -> Result<Option<HeadRow>>;

    /// Inserts a head row for a new stream. Returns `false`, writing nothing, if a row exists
    /// already (another transaction created the stream concurrently and committed).
    async fn insert_head(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        head: &HeadRow,
    ) -> Result<bool>;

    /// Overwrites the head row of `stream` (which this transaction has locked).
    async fn update_head(&self, tx: &mut Self::Tx, stream: &StreamId, head: &HeadRow)
        -> Result<()>;

    /// Deletes the head, the records and the idempotency keys of `stream`.
    async fn delete_stream(&self, tx: &mut Self::Tx, stream: &StreamId) -> Result<()>;

    /// Looks up an idempotency key of `stream`.
    async fn find_key(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyRow>>;

    /// Remembers an idempotency key of `stream`.
    async fn insert_key(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        key: &IdempotencyKey,
        row: &KeyRow,
    ) -> Result<()>;

    /// Forgets all but the `keep` most recent keys of `stream` (most recent = highest
    /// `first_offset`; every key of a stream belongs to its current incarnation).
    async fn prune_keys(&self, tx: &mut Self::Tx, stream: &StreamId, keep: u64) -> Result<()>;

    /// Inserts `records` at `first_offset..` with timestamp `ts_ms`, all in as few statements as
    /// the database allows. A unique violation on `(stream_id, off)` is `Conflict` (its
    /// `actual_next` is filled in by the caller).
    async fn insert_records(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        incarnation: Incarnation,
        first_offset: u64,
        ts_ms: u64,
        records: &[Bytes],
    ) -> Result<()>;

    /// Deletes the records of `stream` below `before`; returns their payload bytes.
    async fn delete_records_below(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        before: u64,
    ) -> Result<u64>;

    /// The lowest offset `o >= from` such that the records `from..=o` hold at least `excess`
    /// payload bytes; `None` if all records from `from` on hold fewer.
    async fn bytes_cut(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        from: u64,
        excess: u64,
    ) -> Result<Option<u64>>;

    /// Inserts `records` at `first_offset..` with timestamp `ts_ms` (as [`Self::insert_records`])
    /// and overwrites the head of `stream` with `head` (as [`Self::update_head`]): the writes of
    /// an append to an existing stream that trims nothing. The default runs the two statements;
    /// a database that can do both in one statement (a data-modifying CTE) saves a round trip.
    async fn append_records(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        head: &HeadRow,
        first_offset: u64,
        ts_ms: u64,
        records: &[Bytes],
    ) -> Result<()> {
        self.insert_records(
            tx,
            stream,
            head.head.incarnation,
            first_offset,
            ts_ms,
            records,
        )
        .await?;
        self.update_head(tx, stream, head).await
    }

    /// Tells other processes that `stream` changed (PostgreSQL `NOTIFY`). Called after the
    /// change committed, never inside its transaction: it only queues a wake-up hint and must
    /// not wait for the database. The default does nothing.
    fn changed(&self, _stream: &StreamId) {}

    /// Takes a connection from the pool for [`Self::head`] and [`Self::records`]. A read runs
    /// both statements on the one connection: every acquisition from the pool costs a round
    /// trip of its own (sqlx pings an idle connection before handing it out).
    async fn connection(&self) -> Result<Self::Conn>;

    /// A connection for the re-reads of waiting reads, from the small wait pool when the adapter
    /// has one (so a wake storm queues there, not in front of writes). The default is
    /// [`Self::connection`].
    async fn wait_connection(&self) -> Result<Self::Conn> {
        self.connection().await
    }

    /// For each of `streams` whose head exists and has not expired at `now_ms`, its
    /// [`head_mark`](crate::head_mark): ONE statement for all of them (`= ANY($1)`, `IN (…)`),
    /// on the wait pool. The watcher of waiting reads calls it every tick.
    async fn head_marks(&self, streams: &[StreamId], now_ms: u64) -> Result<Vec<(StreamId, u64)>>;

    /// Whether the adapter keeps a change index and implements [`Self::head_changes`]. The
    /// default is `false`: the watcher reads every waited-on stream's mark every tick.
    fn tracks_changes(&self) -> bool {
        false
    }

    /// The [`head_mark`](crate::head_mark)s (`None`: expired at `now_ms`) of the streams changed
    /// since the cursor `since`, under the contract of
    /// [`HeadSource::changes`](streamstore::implementor::wait::HeadSource::changes); ONE
    /// statement on the wait pool. Only called if [`Self::tracks_changes`].
    async fn head_changes(&self, since: Option<u64>, now_ms: u64) -> Result<Changes> {
        use streamstore::implementor::ErrorShorthand;
        let _ = (since, now_ms);
        Err(streamstore::Error::unsupported("head_changes"))
    }

    /// The heads of those of `streams` that have one (expired or not), in ONE statement on a
    /// connection of the wait pool: the re-reads of waiting reads woken together (a seal or an
    /// append storm) share it.
    async fn heads(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, HeadRow)>>;

    /// The records of several woken waiting reads in ONE statement on the wait pool (a wake
    /// storm's re-reads share it): for each `reads[i] = (stream, range)`, the records of
    /// `range.incarnation` at offsets `range.from..range.end`, each paired with `i`, in any
    /// order, with NO byte budget applied (the caller applies it, and only asks for ranges the
    /// budget probably does not cut). At most
    /// [`RECORDS_STREAMS_PER_STATEMENT`](crate::RECORDS_STREAMS_PER_STATEMENT) ranges; a stream
    /// may appear in several. The default refuses (`Unsupported`): each woken reader then reads
    /// its own records.
    async fn records_batch(
        &self,
        reads: &[(&StreamId, RecordRange)],
    ) -> Result<Vec<(usize, Record)>> {
        use streamstore::implementor::ErrorShorthand;
        let _ = reads;
        Err(streamstore::Error::unsupported("records_batch"))
    }

    /// Reads the head of `stream` without locking (one statement, latest committed state).
    async fn head(&self, conn: &mut Self::Conn, stream: &StreamId) -> Result<Option<HeadRow>>;

    /// Reads records of `stream` per `range`, in offset order: as many as fit
    /// `range.max_bytes` of payload (by the running sum of lengths), and at least one if any
    /// exists.
    async fn records(
        &self,
        conn: &mut Self::Conn,
        stream: &StreamId,
        range: &RecordRange,
    ) -> Result<Vec<Record>>;

    /// Stream ids per `query`, ascending by bytes, leaving out streams expired at `now_ms`.
    async fn list(&self, query: &ListQuery, now_ms: u64) -> Result<Vec<StreamId>>;

    /// Up to `limit` streams whose time-based retention has fired at `now_ms`.
    async fn expired(&self, now_ms: u64, limit: u64) -> Result<Vec<StreamId>>;

    /// Closes the connection pool.
    async fn close(&self);
}

/// The records a read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRange {
    /// The stream's incarnation (records of others are not returned).
    pub incarnation: Incarnation,
    /// The first offset.
    pub from: u64,
    /// Past the last offset (at most `max_records` after `from`, at most the head).
    pub end: u64,
    /// The byte budget; `u64::MAX` when it cannot cut the page (no budget, or the head shows
    /// that the whole stream fits it), so the query need not sum lengths.
    pub max_bytes: u64,
    /// The stream's mean payload length (its bytes over its records, rounded up), from the
    /// head: lets a dialect guess whether the budget will cut the page before reading.
    pub mean_len: u64,
}

impl RecordRange {
    /// Whether the budget can cut the page.
    pub fn bounded(&self) -> bool {
        self.max_bytes != u64::MAX
    }

    /// Whether the budget probably cuts the page (by the stream's mean record length).
    pub fn likely_cut(&self) -> bool {
        self.bounded()
            && self
                .mean_len
                .saturating_mul(self.end.saturating_sub(self.from))
                > self.max_bytes
    }
}

/// A listing as bounds on the id bytes, so that it is one index range scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// The lower bound.
    pub lower: Vec<u8>,
    /// Whether ids equal to `lower` are included (`>=`) or not (`>`).
    pub lower_inclusive: bool,
    /// Ids must be below this (exclusive), if set.
    pub upper: Option<Vec<u8>>,
    /// At most this many ids.
    pub limit: u64,
}

impl ListQuery {
    /// The bounds of `prefix`, continuing after `after`, fetching `limit` ids.
    pub fn new(prefix: &str, after: Option<&StreamId>, limit: u64) -> Self {
        let prefix = prefix.as_bytes();
        let (lower, lower_inclusive) = match after {
            Some(a) if a.as_str().as_bytes() >= prefix => (a.as_str().as_bytes().to_vec(), false),
            _ => (prefix.to_vec(), true),
        };
        ListQuery {
            lower,
            lower_inclusive,
            upper: prefix_upper_bound(prefix),
            limit,
        }
    }
}

/// The smallest byte string above every string that starts with `prefix`; `None` if there is
/// none (empty prefix, or only 0xFF bytes, which UTF-8 never contains).
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// Marks an error after which the database rolled the whole transaction back (deadlock,
/// serialization failure, lock wait timeout): nothing was written, and running the same
/// transaction again is safe. Used as the `source` of a `streamstore::Error`.
pub struct RolledBack(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl RolledBack {
    /// Whether `error` (or a cause of it) is marked [`RolledBack`].
    pub fn is_marked(error: &streamstore::Error) -> bool {
        let mut cause = std::error::Error::source(error);
        while let Some(c) = cause {
            if c.is::<RolledBack>() {
                return true;
            }
            cause = c.source();
        }
        false
    }
}

impl fmt::Debug for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RolledBack").field(&self.0).finish()
    }
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transaction rolled back by the database: {}", self.0)
    }
}

impl std::error::Error for RolledBack {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_bounds() {
        assert_eq!(prefix_upper_bound(b""), None);
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(b"a\xff"), Some(b"b".to_vec()));
        let a = StreamId::new("job/5").unwrap();
        let q = ListQuery::new("job/", Some(&a), 10);
        assert_eq!(
            (q.lower.as_slice(), q.lower_inclusive),
            (&b"job/5"[..], false)
        );
        assert_eq!(q.upper.as_deref(), Some(&b"job0"[..]));
        let early = StreamId::new("a").unwrap();
        let q = ListQuery::new("job/", Some(&early), 10);
        assert_eq!(
            (q.lower.as_slice(), q.lower_inclusive),
            (&b"job/"[..], true)
        );
    }

    #[test]
    fn rolled_back_is_found_through_the_chain() {
        let e = streamstore::Error::new(streamstore::ErrorKind::Unavailable, "deadlock")
            .with_source(RolledBack(Box::new(std::io::Error::other("x"))));
        assert!(RolledBack::is_marked(&e));
        let plain = streamstore::Error::new(streamstore::ErrorKind::Unavailable, "io")
            .with_source(std::io::Error::other("x"));
        assert!(!RolledBack::is_marked(&plain));
    }
}
