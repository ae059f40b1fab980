//! The values that cross the `StreamStore` boundary: ids, records, options and results.

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

/// Options of [`crate::StreamStore::append`].
#[derive(Clone, Debug, Default)]
pub struct AppendOptions {
    /// The expectation checked atomically with the append.
    pub expect: Expect,
    /// With a key, repeating the same append (same stream, same key, same records) returns the
    /// first attempt's result and writes nothing, as long as the key is inside the store's
    /// idempotency window (see `Capabilities::idempotency`).
    pub idempotency_key: Option<IdempotencyKey>,
}

impl AppendOptions {
    /// Options with the given expectation.
    pub fn expect(expect: Expect) -> Self {
        AppendOptions {
            expect,
            idempotency_key: None,
        }
    }

    /// Adds an idempotency key.
    #[must_use]
    pub fn with_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
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

/// Options of [`crate::StreamStore::read`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// At most this many records (must be at least 1).
    pub max_records: usize,
    /// At most this many payload bytes, except that the first record is always returned even if it
    /// alone exceeds the budget (otherwise a large record could never be read).
    pub max_bytes: usize,
    /// If no record at or after `from` exists yet, wait up to this long for one; the read returns
    /// early when the stream is sealed or deleted. `None` returns at once.
    pub wait: Option<Duration>,
    /// Only records that a crash of the store can no longer take away: for the local engine in
    /// `Interval` or `Buffered` mode, those covered by an `fdatasync`; where every acknowledged
    /// record is already durable (`Sync`, the database adapters) every record. A waiting durable
    /// read returns once records become durable. Stores that keep nothing durable (the memory
    /// store) answer `Unsupported`; see [`crate::Capabilities::durable_reads`].
    pub durable: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_records: 1000,
            max_bytes: 4 << 20,
            wait: None,
            durable: false,
        }
    }
}

impl ReadOptions {
    /// Defaults with a record limit.
    pub fn limit(max_records: usize) -> Self {
        ReadOptions {
            max_records,
            ..ReadOptions::default()
        }
    }

    /// Sets the byte budget.
    #[must_use]
    pub fn bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the wait.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Asks for durable records only (see [`ReadOptions::durable`]).
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }
}

/// What a read returns.
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
    pub incarnation: Option<Incarnation>,
}

impl ReadBatch {
    /// The empty result for a stream that does not exist.
    pub fn missing(from: u64) -> Self {
        ReadBatch {
            records: Vec::new(),
            next_offset: from,
            end_offset: 0,
            first_available: 0,
            sealed: false,
            incarnation: None,
        }
    }

    /// The empty batch at `from` of an existing stream — the start of every read — or `Trimmed`
    /// if `from` is below `first_available`.
    pub fn empty_at(
        from: u64,
        first_available: u64,
        end_offset: u64,
        sealed: bool,
        incarnation: Incarnation,
    ) -> Result<Self> {
        if from < first_available {
            return Err(Error::trimmed(from, first_available));
        }
        Ok(ReadBatch {
            records: Vec::new(),
            next_offset: from,
            end_offset,
            first_available,
            sealed,
            incarnation: Some(incarnation),
        })
    }

    /// Whether a follower has seen everything this stream will ever have.
    pub fn is_finished(&self) -> bool {
        self.sealed && self.next_offset >= self.end_offset
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

/// Options of [`crate::StreamStore::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only ids starting with this (byte-wise).
    pub prefix: String,
    /// Only ids strictly greater than this (byte-wise), to continue from an earlier page.
    pub after: Option<StreamId>,
    /// At most this many ids (0 means the implementation's default of 1000).
    pub limit: usize,
}

impl ListOptions {
    /// The page size: `limit`, or the default of 1000 when it is 0.
    pub fn page_size(&self) -> usize {
        if self.limit == 0 {
            1000
        } else {
            self.limit
        }
    }

    /// Builds the page from existing ids in ascending order, starting after `after` (e.g. a
    /// `BTreeMap` range from [`ListOptions::lower_bound`]): keeps those with the prefix, at most
    /// [`ListOptions::page_size`], and sets `next_after` if more follow.
    pub fn page<'a>(&self, ids: impl Iterator<Item = &'a StreamId>) -> ListPage {
        let fetched = ids
            .skip_while(|id| id.as_str() < self.prefix.as_str())
            .take_while(|id| id.as_str().starts_with(&self.prefix))
            .take(self.page_size().saturating_add(1))
            .cloned()
            .collect();
        ListPage::from_fetched(fetched, self.page_size())
    }

    /// Where a scan of ids in byte order starts: just after `after`.
    pub fn lower_bound(&self) -> std::ops::Bound<StreamId> {
        match &self.after {
            Some(a) => std::ops::Bound::Excluded(a.clone()),
            None => std::ops::Bound::Unbounded,
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

impl ListPage {
    /// A page from up to `limit + 1` ids fetched in order: the extra one only tells that more
    /// follow.
    pub fn from_fetched(mut streams: Vec<StreamId>, limit: usize) -> Self {
        let more = streams.len() > limit;
        streams.truncate(limit);
        let next_after = if more { streams.last().cloned() } else { None };
        ListPage {
            streams,
            next_after,
        }
    }
}

/// When a stream's data is removed without an explicit trim or delete.
///
/// The three rules combine: a stream is deleted when either time rule fires, and its oldest records
/// are trimmed whenever its readable bytes exceed `max_bytes` (whole records only; the newest record
/// is never trimmed by this rule, so a stream is never emptied by it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete the stream this long after it was sealed.
    pub delete_after_seal: Option<Duration>,
    /// Delete the stream this long after its last append (sealed or not).
    pub delete_after_idle: Option<Duration>,
    /// Keep at most this many payload bytes, trimming the oldest records.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether no rule is set.
    pub fn is_none(&self) -> bool {
        *self == Retention::default()
    }
}
