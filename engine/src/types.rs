//! The values that cross the `StreamStore` boundary: ids, records, options and results.

use crate::implementor::ErrorShorthand;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

/// The longest stream id in bytes (UTF-8) that every implementation accepts.
pub const MAX_STREAM_ID_BYTES: usize = 512;

/// The longest idempotency key in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// A validated stream id: UTF-8, 1..=[`MAX_STREAM_ID_BYTES`] bytes, no NUL or other control
/// characters (Unicode category Cc).
///
/// Any other character is allowed (`/`, `..`, `%`, spaces, emoji); two ids are the same stream
/// exactly when their bytes are equal. Implementations never turn an id into a file path or SQL text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates `id`; an invalid id is an `InvalidArgument` error.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(Error::invalid("a stream id must not be empty"));
        }
        if id.len() > MAX_STREAM_ID_BYTES {
            return Err(Error::invalid(format!(
                "a stream id is at most {MAX_STREAM_ID_BYTES} bytes; this one has {}",
                id.len()
            )));
        }
        if let Some(c) = id.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "a stream id must not contain control characters (found U+{:04X})",
                u32::from(c)
            )));
        }
        Ok(StreamId(id.into()))
    }

    /// Validates raw bytes (e.g. read back from a file or a database column).
    pub fn from_bytes(id: &[u8]) -> Result<Self> {
        let s = std::str::from_utf8(id).map_err(|_| Error::invalid("a stream id must be UTF-8"))?;
        StreamId::new(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        StreamId::new(value)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Identifies one life of a stream.
///
/// A stream gets a new incarnation when it is first written after not existing (never written, or
/// deleted), and when an implementation had to drop records that readers may already have seen
/// (the local engine after a crash in a non-`Sync` durability mode). An offset is meaningful only
/// together with the incarnation it was read under: a client that resumes and finds a different
/// incarnation must not assume continuity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// A fresh random incarnation (never 0, so 0 can mean "none" in storage formats).
    pub fn random() -> Self {
        loop {
            let v: u64 = rand::random();
            if v != 0 {
                return Incarnation(v);
            }
        }
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An idempotency key: 1..=[`MAX_IDEMPOTENCY_KEY_BYTES`] bytes, chosen by the writer.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IdempotencyKey(Bytes);

impl IdempotencyKey {
    /// Validates the key's length.
    pub fn new(key: impl Into<Bytes>) -> Result<Self> {
        let key = key.into();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(Error::invalid(format!(
                "an idempotency key is 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes; this one has {}",
                key.len()
            )));
        }
        Ok(IdempotencyKey(key))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What the writer expects of the stream's state; checked atomically with the append.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Expect {
    /// No expectation: append at the end, whatever it is.
    #[default]
    Any,
    /// The stream must not exist (never written, or deleted). Same as `Next(0)` plus "no live
    /// incarnation"; offsets restart at 0 only for a new incarnation, so the two agree.
    NoStream,
    /// The stream's next offset must be exactly this. This is how an owner fences a stale one.
    Next(u64),
}

/// Options of [`crate::StreamStore::append`]: no expectation and no idempotency key by default.
///
/// ```
/// use streamkeep::{AppendOptions, Expect, IdempotencyKey};
/// let options = AppendOptions::expect(Expect::Next(7)).key(IdempotencyKey::new("job-42-step-7")?);
/// # Ok::<(), streamkeep::Error>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct AppendOptions {
    /// The expectation checked atomically with the append (default [`Expect::Any`]).
    pub expect: Expect,
    /// With a key, repeating the same append (same stream, same key, same records) returns the
    /// first attempt's result and writes nothing, as long as the key is inside the store's
    /// idempotency window (see [`Capabilities::idempotency`](crate::Capabilities::idempotency)).
    /// Default `None`.
    pub idempotency_key: Option<IdempotencyKey>,
}

impl AppendOptions {
    /// Options with the given expectation (and no key).
    pub fn expect(expect: Expect) -> Self {
        AppendOptions {
            expect,
            idempotency_key: None,
        }
    }

    /// Adds an idempotency key (default: none).
    #[must_use]
    pub fn key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The same as [`key`](Self::key).
    #[must_use]
    pub fn with_key(self, key: IdempotencyKey) -> Self {
        self.key(key)
    }
}

/// The result of a successful append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AppendResult {
    /// Offset of the first record of the batch.
    pub first_offset: u64,
    /// Number of records written; their offsets are `first_offset..first_offset + count`.
    pub count: u64,
    /// The incarnation the records were written to.
    pub incarnation: Incarnation,
    /// The store-assigned timestamp of the batch, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl AppendResult {
    /// The offset the stream assigns next, i.e. one past the last record of this batch.
    pub fn next_offset(&self) -> u64 {
        self.first_offset + self.count
    }

    /// The offsets assigned, in order.
    pub fn offsets(&self) -> std::ops::Range<u64> {
        self.first_offset..self.next_offset()
    }
}

/// A record as stored: its offset, the store-assigned timestamp and the payload.
///
/// Records carry no headers: applications that need metadata put it in the payload (the store
/// never interprets payload bytes). Every record of one batch has the same timestamp, and
/// timestamps never decrease along a stream.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    /// The record's offset in its stream.
    pub offset: u64,
    /// Milliseconds since the Unix epoch at which the batch was appended.
    pub timestamp_ms: u64,
    /// The payload, byte for byte as appended (may be empty).
    pub payload: Bytes,
}

/// Options of [`crate::StreamStore::read`]. The defaults: at most 1000 records and 4 MiB of
/// payload, no wait, not only durable records, no expected incarnation.
///
/// ```
/// use std::time::Duration;
/// use streamkeep::ReadOptions;
/// // A long-poll of up to 100 records that waits up to 30 s for the first one.
/// let options = ReadOptions::limit(100).wait(Duration::from_secs(30));
/// assert_eq!(options.max_bytes, 4 << 20);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// At most this many records (must be at least 1; default 1000).
    pub max_records: usize,
    /// At most this many payload bytes (default 4 MiB), except that the first record is always
    /// returned even if it alone exceeds the budget (otherwise a large record could never be read).
    pub max_bytes: usize,
    /// If no record at or after `from` exists yet, wait up to this long for one; the read returns
    /// early when the stream is sealed, deleted or re-created. `None` (the default) returns at once.
    pub wait: Option<Duration>,
    /// Only records that a crash of the store can no longer take away: for the local engine in
    /// `Interval` or `Buffered` mode, those covered by an `fdatasync`; where every acknowledged
    /// record is already durable (`Sync`, the database adapters) every record. A waiting durable
    /// read returns once records become durable. Stores that keep nothing durable (the memory
    /// store) answer `Unsupported`; see [`crate::Capabilities::durable_reads`]. Default `false`.
    pub durable: bool,
    /// The incarnation the caller has been reading (default `None`). A waiting read returns at
    /// once, without waiting, when the stream's incarnation is not this one: the stream was
    /// deleted ([`ReadBatch::incarnation`] is `None`) or deleted and written again (another
    /// value). Followers set it from their previous batch; see [`ReadBatch::is_finished`].
    pub incarnation: Option<Incarnation>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_records: 1000,
            max_bytes: 4 << 20,
            wait: None,
            durable: false,
            incarnation: None,
        }
    }
}

impl ReadOptions {
    /// Defaults with a record limit (at least 1; the default is 1000).
    pub fn limit(max_records: usize) -> Self {
        ReadOptions {
            max_records,
            ..ReadOptions::default()
        }
    }

    /// Sets the record limit (at least 1; default 1000).
    #[must_use]
    pub fn max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// Sets the byte budget (default 4 MiB).
    #[must_use]
    pub fn bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the wait (default: none, the read returns at once).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Asks for durable records only (see [`ReadOptions::durable`]; default off).
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Sets [`ReadOptions::durable`] (default `false`).
    #[must_use]
    pub fn set_durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// The incarnation the caller follows (see [`ReadOptions::incarnation`]; default none). A
    /// waiting read then returns at once if the stream was deleted or re-created.
    #[must_use]
    pub fn incarnation(mut self, incarnation: Option<Incarnation>) -> Self {
        self.incarnation = incarnation;
        self
    }
}

/// What a read returns.
///
/// A follower reads from `next_offset` again until [`is_finished`](Self::is_finished), and
/// compares [`incarnation`](Self::incarnation) with the one it has been reading: see there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBatch {
    /// Records in offset order, starting exactly at the requested offset (if any).
    pub records: Vec<Record>,
    /// Where the next read should start: one past the last record returned, or the requested
    /// offset if none was.
    pub next_offset: u64,
    /// The stream's next offset (its end) when the read was served.
    pub end_offset: u64,
    /// The lowest offset still readable (raised by trim and retention).
    pub first_available: u64,
    /// Whether the stream is sealed; a sealed stream with `next_offset == end_offset` is finished.
    pub sealed: bool,
    /// The incarnation read; `None` if the stream does not exist.
    ///
    /// A follower keeps the incarnation of its first batch and compares: `None` later means the
    /// stream was deleted, another value that it was deleted and written again (its offsets
    /// start at 0 again and have nothing to do with the ones read before). Either way the
    /// records the follower holds belong to a life that is over: it stops, or starts again
    /// from `first_available`. A waiting read given the incarnation
    /// ([`ReadOptions::incarnation`]) returns at once when it differs, and so does a waiting
    /// read above offset 0 of a stream that does not exist (such offsets only existed in a
    /// deleted life); [`is_finished`](Self::is_finished) is then `true`.
    pub incarnation: Option<Incarnation>,
}

impl ReadBatch {
    /// Whether a follower reading from `next_offset` will get nothing more from the life of the
    /// stream it has been reading:
    ///
    /// - the stream is sealed and everything up to its end was read, or
    /// - the stream does not exist and the read was above offset 0 (`next_offset > 0`): it was
    ///   deleted (offsets above 0 only existed in a life that is over).
    ///
    /// A loop `while !batch.is_finished() { batch = read(batch.next_offset, wait) }` therefore
    /// ends after a seal and after a delete. It does not see a stream that was deleted and
    /// written again (a new incarnation whose offsets reached `next_offset`): compare
    /// [`incarnation`](Self::incarnation) for that, or use
    /// [`StreamStoreExt::subscribe`](crate::StreamStoreExt::subscribe), which does.
    pub fn is_finished(&self) -> bool {
        (self.sealed && self.next_offset >= self.end_offset) || self.is_gone()
    }

    /// Whether the stream does not exist although the read was above offset 0: the stream a
    /// follower was reading was deleted (see [`is_finished`](Self::is_finished)).
    pub fn is_gone(&self) -> bool {
        self.incarnation.is_none() && self.next_offset > 0
    }
}

/// What [`crate::StreamStore::info`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamId,
    /// Its current incarnation.
    pub incarnation: Incarnation,
    /// The lowest readable offset.
    pub first_offset: u64,
    /// The offset the next append gets.
    pub next_offset: u64,
    /// Whether appends are refused.
    pub sealed: bool,
    /// When this incarnation was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When the last append happened, ms since the Unix epoch.
    pub last_append_ms: u64,
    /// When the stream was sealed, if it is.
    pub sealed_ms: Option<u64>,
    /// Payload bytes of the readable records (`first_offset..next_offset`).
    pub bytes: u64,
    /// The retention policy in force for this stream.
    pub retention: Retention,
}

/// Options of [`crate::StreamStore::list`]: every stream, from the first, in pages of 1000 by
/// default.
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only ids starting with this (byte-wise; default empty: every id).
    pub prefix: String,
    /// Only ids strictly greater than this (byte-wise), to continue from an earlier page
    /// (default `None`: from the first id).
    pub after: Option<StreamId>,
    /// At most this many ids (default 0, meaning the implementation's default of 1000).
    pub limit: usize,
}

impl ListOptions {
    /// Only ids starting with `prefix` (default: every id).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Continues after `after`, e.g. an earlier page's [`ListPage::next_after`] (default: from
    /// the first id).
    #[must_use]
    pub fn after(mut self, after: Option<StreamId>) -> Self {
        self.after = after;
        self
    }

    /// At most `limit` ids per page (default 0: the implementation's default of 1000).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page size: `limit`, or the default of 1000 when it is 0.
    pub fn page_size(&self) -> usize {
        if self.limit == 0 {
            1000
        } else {
            self.limit
        }
    }
}

/// One page of stream ids, in ascending byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Existing streams (deleted ones never appear).
    pub streams: Vec<StreamId>,
    /// Pass as `after` to get the next page; `None` when this page is the last.
    pub next_after: Option<StreamId>,
}

/// When a stream's data is removed without an explicit trim or delete. The default: never.
///
/// The three rules combine: a stream is deleted when either time rule fires, and its oldest records
/// are trimmed whenever its readable bytes exceed `max_bytes` (whole records only; the newest record
/// is never trimmed by this rule, so a stream is never emptied by it).
///
/// ```
/// use std::time::Duration;
/// use streamkeep::Retention;
/// let policy = Retention::default()
///     .delete_after_seal(Duration::from_secs(3600))
///     .max_bytes(64 << 20);
/// assert!(!policy.is_none());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete the stream this long after it was sealed (default `None`: never).
    pub delete_after_seal: Option<Duration>,
    /// Delete the stream this long after its last append, sealed or not (default `None`: never).
    pub delete_after_idle: Option<Duration>,
    /// Keep at most this many payload bytes, trimming the oldest records (default `None`: no limit).
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether no rule is set.
    pub fn is_none(&self) -> bool {
        *self == Retention::default()
    }

    /// Deletes the stream `after` its seal (default: never).
    #[must_use]
    pub fn delete_after_seal(mut self, after: Duration) -> Self {
        self.delete_after_seal = Some(after);
        self
    }

    /// Deletes the stream `after` its last append (default: never).
    #[must_use]
    pub fn delete_after_idle(mut self, after: Duration) -> Self {
        self.delete_after_idle = Some(after);
        self
    }

    /// Keeps at most `bytes` of payload, trimming the oldest records (default: no limit).
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }
}
