//! The store's operations over Cassandra: finding a stream's current head, appending with one
//! conditional batch, reading across buckets, and the repairs of interrupted multi-step changes.
//!
//! # Invariants
//!
//! - A stream's state is its **current head**: the open head row reached from the `streams`
//!   row's incarnation and bucket hint by following `moved_to` pointers. Every change of a head
//!   row is a conditional write on its `ver`, which every change raises: a writer that read an
//!   older head never overwrites a newer one, and a late duplicate of a timed-out request can
//!   never apply once anything else was applied.
//! - Head rows are never deleted (trim and delete remove only records and keys, `kind > 0`):
//!   a head row missing from bucket 0 therefore means the stream's first append has not
//!   happened yet, never that it was deleted.
//! - Multi-step changes (roll, delete) first close the old head (`closed = ROLLED` or
//!   `DELETED`): that conditional write is their linearization point. Whoever later finds a
//!   closed head finishes the remaining steps, which are idempotent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use streamstore::implementor::wait::Timings;
use streamstore::implementor::OpenFlag;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::SerialConsistency;
use scylla::value::{CqlValue, Row};
use streamstore::implementor::head::{Decision, StreamHead};
use streamstore::implementor::validate::now_ms;
use streamstore::{
    AppendResult, Capabilities, Error, ErrorKind, Expect, IdempotencyKey, ListOptions, ListPage,
    ReadBatch, ReadOptions, Record, Result, Retention, StreamId, StreamInfo,
};

use crate::config::CassandraConfig;
use crate::error::{is_ambiguous, is_cas_timeout, parse_cassandra_error};
use crate::model::{db, un, Head, KeyColumns, KeyRow, Loc, DELETED, OPEN, ROLLED};
use crate::schema::{Statements, NAME_SHARDS};

mod append;
mod bucket;
mod change;
mod hints;
mod marks;
mod read;
mod scan;

pub use marks::MarksMethod;

/// Attempts of one write before it gives up with `Unavailable` (each lost a race or found a
/// step to repair; under heavy contention on one stream the jittered pause grows).
const MAX_ATTEMPTS: u32 = 200;

/// Reads repeated when a trim or delete changed the stream between its head and its records.
const MAX_READ_ATTEMPTS: u32 = 8;

/// Streams whose current head location a store remembers (the cache is cleared when full).
const MAX_CACHED_LOCS: usize = 100_000;

/// Streams whose liveness `list` checks at once.
const LIST_CONCURRENCY: usize = 32;

/// Where a bucket roll stops when a test injects a crash (`CassandraStore::roll_crash_for_tests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollCrash {
    /// Roll normally.
    None,
    /// Stop after closing the old bucket's head (step 1 of 3).
    AfterClose,
    /// Stop after creating the new bucket's head (step 2 of 3), before the `streams` hint moves.
    AfterHead,
}

impl RollCrash {
    fn code(self) -> u8 {
        match self {
            RollCrash::None => 0,
            RollCrash::AfterClose => 1,
            RollCrash::AfterHead => 2,
        }
    }
}

/// A lost message a test injects into the next append (`CassandraStore::ambiguity_for_tests`):
/// the driver then reports a client-side timeout, the outcome the adapter must resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ambiguity {
    /// The batch is sent and applied, but its answer is lost.
    LostReply,
    /// The batch is never sent.
    LostRequest,
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Nothing: a retry of an earlier append with the same key.
    Duplicate,
    /// The batch was appended.
    Appended,
    /// The batch was appended and `max_bytes` retention must now trim the stream.
    MustTrim,
}

/// A stream's state as found by [`Core::state`].
#[derive(Debug)]
pub(crate) enum State {
    /// No `streams` row: the stream does not exist.
    Missing,
    /// A `streams` row whose bucket-0 head was never written: the creating append did not
    /// happen (yet); the stream does not exist.
    NoHead(Loc),
    /// The current head, open.
    Live(Loc, Head),
    /// The head closed for a roll whose next head is not written yet: the stream is as this
    /// head says; a writer finishes the roll first.
    RollPending(Loc, Head),
    /// The head closed by a delete whose `streams` row is not removed yet: the stream does not
    /// exist; a writer finishes the delete first (with the delete's timestamp).
    Deleted(Loc, i64),
}

pub(crate) struct Core {
    pub session: Session,
    st: Statements,
    pub config: CassandraConfig,
    pub caps: Capabilities,
    pub(crate) open: OpenFlag,
    roll_crash: AtomicU8,
    /// The [`Ambiguity`] the next append suffers (0: none; a test seam).
    ambiguity: AtomicU8,
    /// Where each stream's open head was last found (a hint: checked by reading that head).
    locs: Mutex<HashMap<StreamId, Loc>>,
    /// Change hints: the test seam and the count of lost ones (`hints.rs`).
    hints: hints::HintState,
    /// How waiting readers' reads after a wake-up went (`read.rs`).
    pub(crate) rereads: read::Rereads,
    /// Durations of the woken re-reads and the hint reads, off unless a benchmark enables
    /// them (`CassandraStore::timings`).
    pub(crate) timings: CoreTimings,
}

/// What `CassandraStore::timings` lists.
#[derive(Default)]
pub(crate) struct CoreTimings {
    /// Reads of a waiting reader after a wake-up ([`Core::read_for_waiter`]), whole.
    pub reread: Arc<Timings>,
    /// Hint reads reading back `hints::NARROW_US`.
    pub hint_narrow: Arc<Timings>,
    /// Hint reads reading back to a second before the previous call's second (`hints::window_start`).
    pub hint_wide: Arc<Timings>,
}

/// A decoding failure: the table does not have the shape this adapter wrote.
pub(crate) fn decode_error(e: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("unexpected Cassandra result: {e}"),
    )
}

fn rows<T>(qr: QueryResult) -> Result<Vec<T>>
where
    T: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
{
    let rows = qr.into_rows_result().map_err(|e| decode_error(&e))?;
    let out = rows
        .rows::<T>()
        .map_err(|e| decode_error(&e))?
        .collect::<std::result::Result<Vec<T>, _>>()
        .map_err(|e| decode_error(&e))?;
    Ok(out)
}

/// The `[applied]` column of a conditional statement's result (its first column; on failure
/// Cassandra adds the current values, which this adapter re-reads instead).
fn applied(qr: QueryResult) -> Result<bool> {
    let rows: Vec<Row> = rows(qr)?;
    match rows.first().and_then(|r| r.columns.first()) {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        _ => Err(Error::new(
            ErrorKind::Internal,
            "a conditional statement returned no [applied] column",
        )),
    }
}

/// The shard of the names table that holds `stream`.
fn shard(stream: &StreamId) -> i32 {
    shard_of(stream, NAME_SHARDS)
}

/// `stream`'s shard among `shards` (> 0): FNV-1a over the id's bytes, stable across processes
/// and versions (shards are stored: the names table's, the change hints').
fn shard_of(stream: &StreamId, shards: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in stream.as_str().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    i32::try_from(h % shards.unsigned_abs()).unwrap_or(0)
}

/// Microseconds since the epoch: the write timestamps of the names table.
fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unavailable, message)
}

/// A short jittered pause before attempt `n` of a write that lost a race.
async fn backoff(n: u32) {
    let cap = 1u64 << n.min(6);
    let ms = rand::random::<u64>() % cap;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

type Values<'a> = Box<dyn SerializeRow + Send + Sync + 'a>;

impl Core {
    pub(crate) async fn open(config: CassandraConfig, caps: Capabilities) -> Result<Self> {
        let mut builder =
            scylla::client::session_builder::SessionBuilder::new().known_nodes(&config.nodes);
        if let Some((user, password)) = config.credentials() {
            builder = builder.user(user, password);
        }
        let session = builder
            .build()
            .await
            .map_err(|e| unavailable("cannot connect to Cassandra").with_source(e))?;
        crate::schema::create(&session, &config).await?;
        let st = Statements::prepare(&session, &config).await?;
        Ok(Core {
            session,
            st,
            config,
            caps,
            open: OpenFlag::default(),
            roll_crash: AtomicU8::new(0),
            ambiguity: AtomicU8::new(0),
            locs: Mutex::new(HashMap::new()),
            hints: hints::HintState::default(),
            rereads: read::Rereads::default(),
            timings: CoreTimings::default(),
        })
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        self.open.check()
    }

    /// Marks the store closed; returns whether it was open.
    pub(crate) fn close(&self) -> bool {
        self.open.close()
    }

    pub(crate) fn set_ambiguity(&self, a: Option<Ambiguity>) {
        let code = match a {
            None => 0,
            Some(Ambiguity::LostReply) => 1,
            Some(Ambiguity::LostRequest) => 2,
        };
        self.ambiguity.store(code, Ordering::Release);
    }

    /// Sends an append's batch, through the ambiguity seam (taken once).
    async fn send_batch<'a>(
        &self,
        batch: &Batch,
        values: Vec<Values<'a>>,
    ) -> std::result::Result<QueryResult, ExecutionError> {
        let lost = ExecutionError::RequestTimeout(Duration::ZERO);
        match self.ambiguity.swap(0, Ordering::AcqRel) {
            1 => {
                self.session.batch(batch, values).await?;
                Err(lost)
            }
            2 => Err(lost),
            _ => self.session.batch(batch, values).await,
        }
    }

    pub(crate) fn set_roll_crash(&self, step: RollCrash) {
        self.roll_crash.store(step.code(), Ordering::Release);
    }

    fn key_window(&self) -> usize {
        self.caps.idempotency.map_or(0, |w| w.keys_per_stream)
    }

    async fn exec(&self, ps: &PreparedStatement, values: impl SerializeRow) -> Result<QueryResult> {
        self.session
            .execute_unpaged(ps, values)
            .await
            .map_err(parse_cassandra_error)
    }

    // ---- finding the current head ----

    async fn stream_row(&self, stream: &StreamId) -> Result<Option<Loc>> {
        let qr = self.exec(&self.st.stream, (stream.as_str(),)).await?;
        let found: Vec<(Option<i64>, Option<i64>)> = rows(qr)?;
        Ok(found.into_iter().next().and_then(|(inc, bucket)| {
            Some(Loc {
                inc: inc?,
                bucket: bucket.unwrap_or(0),
            })
        }))
    }

    async fn head(&self, stream: &StreamId, loc: Loc) -> Result<Option<Head>> {
        let qr = self
            .exec(&self.st.head, (stream.as_str(), loc.inc, loc.bucket))
            .await?;
        let found: Vec<crate::model::HeadColumns> = rows(qr)?;
        found.into_iter().next().map(Head::from_columns).transpose()
    }

    /// The stream's state: the `streams` row, then head rows along `moved_to` pointers. With
    /// `repair`, a `streams` hint found behind the current bucket is moved forward.
    pub(crate) async fn state(&self, stream: &StreamId, repair: bool) -> Result<State> {
        // An open head row is always the stream's current state (a roll or a delete closes it
        // first), so where this store last found one is read directly; anything else falls
        // back to the `streams` row.
        if let Some(loc) = self.cached_loc(stream) {
            match self.head(stream, loc).await? {
                Some(h) if h.closed == OPEN => return Ok(State::Live(loc, h)),
                _ => self.forget_loc(stream),
            }
        }
        let state = self.state_uncached(stream, repair).await?;
        if let State::Live(loc, _) = &state {
            self.remember_loc(stream, *loc);
        }
        Ok(state)
    }

    fn cached_loc(&self, stream: &StreamId) -> Option<Loc> {
        self.locs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .copied()
    }

    fn forget_loc(&self, stream: &StreamId) {
        self.locs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream);
    }

    fn remember_loc(&self, stream: &StreamId, loc: Loc) {
        let mut locs = self.locs.lock().unwrap_or_else(PoisonError::into_inner);
        if locs.len() >= MAX_CACHED_LOCS {
            locs.clear();
        }
        locs.insert(stream.clone(), loc);
    }

    /// [`Core::state`] from the `streams` row.
    async fn state_uncached(&self, stream: &StreamId, repair: bool) -> Result<State> {
        let Some(hint) = self.stream_row(stream).await? else {
            return Ok(State::Missing);
        };
        let mut loc = hint;
        loop {
            let Some(h) = self.head(stream, loc).await? else {
                // Head rows are never deleted, and the hint moves only after the next head
                // exists; only a never-written bucket 0 has none.
                return Ok(if loc.bucket == 0 {
                    State::NoHead(loc)
                } else {
                    State::Missing
                });
            };
            match (h.closed, h.moved_to) {
                (ROLLED, Some(nb)) if nb > loc.bucket => {
                    let next = Loc {
                        inc: loc.inc,
                        bucket: nb,
                    };
                    if self.head(stream, next).await?.is_none() {
                        return Ok(State::RollPending(loc, h));
                    }
                    loc = next;
                }
                (DELETED, _) => return Ok(State::Deleted(loc, h.closed_at.unwrap_or(0))),
                (OPEN, _) => {
                    if repair && loc.bucket > hint.bucket {
                        self.move_hint(stream, loc).await?;
                    }
                    return Ok(State::Live(loc, h));
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Corruption,
                        format!("stream {stream:?} has a head row in an unknown state"),
                    ))
                }
            }
        }
    }

    /// The live head for readers: an expired stream is missing.
    pub(crate) async fn live(&self, stream: &StreamId) -> Result<Option<(Loc, Head)>> {
        Ok(match self.state(stream, false).await? {
            State::Live(loc, h) | State::RollPending(loc, h) if !h.expired(now_ms()) => {
                Some((loc, h))
            }
            _ => None,
        })
    }

    /// The live head for writers: pending rolls and deletes are finished, expired streams
    /// deleted; `None` if the stream does not exist.
    async fn live_for_write(&self, stream: &StreamId) -> Result<Option<(Loc, Head)>> {
        for attempt in 0..MAX_ATTEMPTS {
            self.check_open()?;
            match self.state(stream, true).await? {
                State::Missing | State::NoHead(_) => return Ok(None),
                State::Deleted(loc, at) => {
                    self.finish_delete(stream, loc, at).await?;
                    return Ok(None);
                }
                State::RollPending(loc, h) => self.finish_roll(stream, loc, &h).await?,
                State::Live(loc, h) if h.expired(now_ms()) => {
                    self.close_deleted(stream, loc, &h).await?;
                }
                State::Live(loc, h) => return Ok(Some((loc, h))),
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Writes `next` over the head at `loc` if it is still at version `prev.ver`.
    async fn update_head(
        &self,
        stream: &StreamId,
        loc: Loc,
        prev: &Head,
        next: &Head,
    ) -> Result<bool> {
        let values = Self::head_update_values(stream, loc, prev.ver, next)?;
        let done = applied(self.exec(&self.st.head_update, values).await?)?;
        if done {
            // The change hint of the new head (`hints.rs`): a head closed by a delete reads as
            // no stream; one closed by a roll is served until the next bucket's head exists.
            let mark = (next.closed != DELETED).then(|| marks::mark_at(loc, next.ver));
            self.hint(stream, mark).await;
        }
        Ok(done)
    }

    fn head_insert_values(stream: &StreamId, loc: Loc, h: &Head) -> Result<Vec<Option<CqlValue>>> {
        let mut values = vec![
            Some(CqlValue::Text(stream.as_str().to_owned())),
            Some(CqlValue::BigInt(loc.inc)),
            Some(CqlValue::BigInt(loc.bucket)),
        ];
        values.extend(h.cells()?);
        Ok(values)
    }

    fn head_update_values(
        stream: &StreamId,
        loc: Loc,
        prev_ver: i64,
        h: &Head,
    ) -> Result<Vec<Option<CqlValue>>> {
        let c = h.cells()?;
        let pick = |i: usize| c[i].clone();
        Ok(vec![
            pick(0),
            pick(2),
            pick(3),
            pick(5),
            pick(6),
            pick(7),
            pick(8),
            pick(10),
            pick(11),
            pick(12),
            pick(13),
            pick(14),
            Some(CqlValue::Text(stream.as_str().to_owned())),
            Some(CqlValue::BigInt(loc.inc)),
            Some(CqlValue::BigInt(loc.bucket)),
            Some(CqlValue::BigInt(prev_ver)),
        ])
    }

    async fn read_key(
        &self,
        stream: &StreamId,
        loc: Loc,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyRow>> {
        let qr = self
            .exec(
                &self.st.key,
                (stream.as_str(), loc.inc, loc.bucket, key.as_bytes()),
            )
            .await?;
        let found: Vec<KeyColumns> = rows(qr)?;
        found
            .into_iter()
            .next()
            .map(KeyRow::from_columns)
            .transpose()
    }

    fn lwt_batch(&self) -> Result<Batch> {
        let mut b = Batch::new(BatchType::Logged);
        b.set_consistency(self.config.consistency);
        b.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        Ok(b)
    }
}

/// A cheap 64-bit mixer (splitmix64's finalizer) for marks.
fn foldhash_like(x: i64) -> i64 {
    let mut z = u64::from_le_bytes(x.to_le_bytes()).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    i64::from_le_bytes((z ^ (z >> 31)).to_le_bytes())
}
