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

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::SerialConsistency;
use scylla::value::{CqlValue, Row};
use streamstore::head::{Decision, StreamHead};
use streamstore::validate::now_ms;
use streamstore::{
    AppendResult, Capabilities, Error, ErrorKind, Expect, IdempotencyKey, ListOptions, ListPage,
    ReadBatch, ReadOptions, Record, Result, Retention, StreamId, StreamInfo,
};

use crate::config::CassandraConfig;
use crate::error::{is_ambiguous, is_cas_timeout, parse_cassandra_error};
use crate::model::{db, un, Head, KeyRow, Loc, DELETED, OPEN, ROLLED};
use crate::schema::{Statements, NAME_SHARDS};

/// Attempts of one write before it gives up with `Unavailable` (each lost a race or found a
/// step to repair; under heavy contention on one stream the jittered pause grows).
const MAX_ATTEMPTS: u32 = 200;

/// Reads repeated when a trim or delete changed the stream between its head and its records.
const MAX_READ_ATTEMPTS: u32 = 8;

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
    /// exist; a writer finishes the delete first.
    Deleted(Loc),
}

pub(crate) struct Core {
    pub session: Session,
    st: Statements,
    pub config: CassandraConfig,
    pub caps: Capabilities,
    closed: AtomicBool,
    roll_crash: AtomicU8,
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
    // FNV-1a: stable across processes and versions (the shard is stored).
    let mut h: u32 = 0x811c_9dc5;
    for b in stream.as_str().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    i32::try_from(h % NAME_SHARDS.unsigned_abs()).unwrap_or(0)
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
            closed: AtomicBool::new(false),
            roll_crash: AtomicU8::new(0),
        })
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// Marks the store closed; returns whether it was open.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
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
                (DELETED, _) => return Ok(State::Deleted(loc)),
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
                State::Deleted(loc) => {
                    self.finish_delete(stream, loc).await?;
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
        applied(self.exec(&self.st.head_update, values).await?)
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
        let found: Vec<(Option<i64>, Option<i64>, Option<i64>, Option<i64>)> = rows(qr)?;
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

    // ---- append ----

    /// Appends `records`; returns the result and whether this call wrote it (`false`: a
    /// duplicate of an earlier append with the same key).
    pub(crate) async fn append(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<(AppendResult, bool)> {
        // Written into the batch's first record: after an ambiguous failure, finding it there
        // proves that this very batch was applied.
        let batch_id: [u8; 16] = rand::random();
        let mut last_ambiguity: Option<Error> = None;
        for attempt in 0..MAX_ATTEMPTS {
            self.check_open()?;
            if attempt > 0 {
                backoff(attempt).await;
            }
            let now = now_ms();
            let (loc, head) = match self.state(stream, true).await? {
                State::Missing => {
                    // Decided before anything is created: an unmet expectation writes nothing.
                    StreamHead::decide(stream, None, expect, key, now)?;
                    self.create_stream_row(stream).await?;
                    continue;
                }
                State::Deleted(loc) => {
                    self.finish_delete(stream, loc).await?;
                    continue;
                }
                State::RollPending(loc, h) => {
                    self.finish_roll(stream, loc, &h).await?;
                    continue;
                }
                State::NoHead(loc) => (loc, None),
                State::Live(loc, h) if h.expired(now) => {
                    // Retention fired and the sweeper has not run yet: delete, then this
                    // append (if allowed) starts a new incarnation.
                    self.close_deleted(stream, loc, &h).await?;
                    continue;
                }
                State::Live(loc, h) => {
                    if h.sealed.is_none() && self.needs_roll(loc, &h)? {
                        self.roll(stream, loc, &h).await?;
                        continue;
                    }
                    (loc, Some(h))
                }
            };
            let found = match (&head, key) {
                (Some(_), Some((k, _))) => self.read_key(stream, loc, k).await?,
                _ => None,
            };
            let engine = head
                .as_ref()
                .map(|h| h.engine(loc, key.zip(found.as_ref()).map(|((k, _), r)| (k, r)), 1))
                .transpose()?;
            let (first_offset, timestamp_ms) =
                match StreamHead::decide(stream, engine.as_ref(), expect, key, now)? {
                    Decision::Duplicate(r) => return Ok((r, false)),
                    Decision::Write {
                        first_offset,
                        timestamp_ms,
                        ..
                    } => (first_offset, timestamp_ms),
                };
            let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
            let result = AppendResult {
                first_offset,
                count,
                incarnation: loc.incarnation()?,
                timestamp_ms,
            };
            let (batch, values) = self.append_batch(
                stream,
                loc,
                head.as_ref(),
                &result,
                records,
                bytes,
                key,
                &batch_id,
            )?;
            match self.session.batch(&batch, values).await {
                Ok(qr) => {
                    if applied(qr)? {
                        return Ok((result, true));
                    }
                    // Lost a race (another append, a seal, a roll): decide again on the new head.
                }
                Err(e) if is_ambiguous(&e) => {
                    match self.resolve(stream, loc, first_offset, &batch_id).await {
                        Ok(true) => return Ok((result, true)),
                        // Definitely not applied. A Paxos timeout was answered by the server,
                        // so no copy of the request is still on its way: deciding again is
                        // safe. After a client-side timeout or a broken connection a copy
                        // might still arrive; its `IF ver = …` can then no longer hold once
                        // anything else is applied, but to never write twice without a key,
                        // only keyed appends (whose retry finds the key) try again.
                        Ok(false) if is_cas_timeout(&e) || key.is_some() => {
                            last_ambiguity = Some(parse_cassandra_error(e));
                        }
                        Ok(false) | Err(_) => return Err(parse_cassandra_error(e)),
                    }
                }
                Err(e) => return Err(parse_cassandra_error(e)),
            }
        }
        Err(last_ambiguity.unwrap_or_else(|| {
            unavailable(format!(
                "stream {stream:?}: too many concurrent appends, try again"
            ))
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn append_batch<'a>(
        &self,
        stream: &'a StreamId,
        loc: Loc,
        head: Option<&Head>,
        result: &AppendResult,
        records: &'a [Bytes],
        bytes: u64,
        key: Option<(&'a IdempotencyKey, u64)>,
        batch_id: &'a [u8; 16],
    ) -> Result<(Batch, Vec<Values<'a>>)> {
        let mut batch = self.lwt_batch()?;
        let mut values: Vec<Values<'a>> = Vec::with_capacity(records.len() + 2);
        let mut next = head
            .cloned()
            .unwrap_or_else(|| Head::new(result.timestamp_ms));
        next.next = result.next_offset();
        next.bytes += bytes;
        next.last_ts = result.timestamp_ms;
        match head {
            None => {
                batch.append_statement(self.st.head_insert.clone());
                values.push(Box::new(Self::head_insert_values(stream, loc, &next)?));
            }
            Some(h) => {
                next.ver = h.ver + 1;
                batch.append_statement(self.st.head_update.clone());
                values.push(Box::new(Self::head_update_values(
                    stream, loc, h.ver, &next,
                )?));
            }
        }
        if let Some((k, digest)) = key {
            let row = KeyRow {
                first: result.first_offset,
                count: result.count,
                ts: result.timestamp_ms,
                digest,
            };
            batch.append_statement(self.st.key_insert.clone());
            values.push(Box::new((
                stream.as_str(),
                loc.inc,
                loc.bucket,
                k.as_bytes(),
                db(row.first)?,
                db(row.count)?,
                db(row.ts)?,
                row.digest_db(),
            )));
        }
        let ts = db(result.timestamp_ms)?;
        for (i, (r, off)) in records.iter().zip(result.offsets()).enumerate() {
            batch.append_statement(self.st.record_insert.clone());
            let id: Option<&[u8]> = (i == 0).then_some(&batch_id[..]);
            values.push(Box::new((
                stream.as_str(),
                loc.inc,
                loc.bucket,
                db(off)?,
                ts,
                db(u64::try_from(r.len()).unwrap_or(u64::MAX))?,
                &r[..],
                id,
            )));
        }
        Ok((batch, values))
    }

    /// After an ambiguous failure: was the batch `batch_id` applied? A SERIAL read of its first
    /// record's row completes (or fences off) any Paxos round still in flight on the partition,
    /// so the answer is final. Retried briefly; an error means "unknown".
    async fn resolve(
        &self,
        stream: &StreamId,
        loc: Loc,
        first: u64,
        batch_id: &[u8; 16],
    ) -> Result<bool> {
        let mut last = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let r = self
                .exec(
                    &self.st.record_batch_serial,
                    (stream.as_str(), loc.inc, loc.bucket, db(first)?),
                )
                .await;
            match r {
                Ok(qr) => {
                    let found: Vec<(Option<Vec<u8>>,)> = rows(qr)?;
                    return Ok(found
                        .first()
                        .and_then(|(b,)| b.as_deref())
                        .is_some_and(|b| b == batch_id));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| unavailable("could not resolve an ambiguous append")))
    }

    /// Creates the `streams` row (a new incarnation at bucket 0) if there is none. The name is
    /// written first, so a listed name may lack a stream (list checks) but never the reverse.
    async fn create_stream_row(&self, stream: &StreamId) -> Result<()> {
        self.exec(&self.st.name_insert, (shard(stream), stream.as_str()))
            .await?;
        let inc = loop {
            let v: i64 = rand::random();
            if v > 0 {
                break v;
            }
        };
        // Not applied: another writer created it first; the caller re-reads either way.
        applied(
            self.exec(&self.st.stream_insert, (stream.as_str(), inc))
                .await?,
        )?;
        Ok(())
    }

    // ---- buckets ----

    fn needs_roll(&self, loc: Loc, h: &Head) -> Result<bool> {
        Ok(db(h.next / self.config.bucket_size)? > loc.bucket)
    }

    /// Rolls the stream from bucket `loc.bucket` to `next / bucket_size`: (1) close the old
    /// head (the linearization point: no append can land in the old bucket after it), (2)
    /// write the new head with the recent keys, (3) move the `streams` hint. A crash after (1)
    /// or (2) leaves a state every writer repairs with [`Core::finish_roll`].
    async fn roll(&self, stream: &StreamId, loc: Loc, h: &Head) -> Result<()> {
        let mut closed = h.clone();
        closed.ver += 1;
        closed.closed = ROLLED;
        closed.moved_to = Some(db(h.next / self.config.bucket_size)?);
        if !self.update_head(stream, loc, h, &closed).await? {
            return Ok(());
        }
        if self.roll_crash.load(Ordering::Acquire) == RollCrash::AfterClose.code() {
            return Err(unavailable("injected crash after closing the old bucket"));
        }
        self.finish_roll(stream, loc, &closed).await
    }

    /// Steps (2) and (3) of a roll whose old head `closed` (at `loc`) is already closed.
    /// Idempotent: the new head is inserted only if absent, the hint only moves forward.
    pub(crate) async fn finish_roll(
        &self,
        stream: &StreamId,
        loc: Loc,
        closed: &Head,
    ) -> Result<()> {
        let Some(nb) = closed.moved_to else {
            return Ok(());
        };
        let new_loc = Loc {
            inc: loc.inc,
            bucket: nb,
        };
        let qr = self
            .exec(&self.st.keys_all, (stream.as_str(), loc.inc, loc.bucket))
            .await?;
        type KeyColumns = (
            Option<Vec<u8>>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let mut keys: Vec<(Vec<u8>, KeyRow)> = Vec::new();
        for (k, a, b, c, d) in rows::<KeyColumns>(qr)? {
            if let Some(k) = k {
                keys.push((k, KeyRow::from_columns((a, b, c, d))?));
            }
        }
        // The most recent keys move on: the window keeps at least `keys_per_stream`.
        keys.sort_by(|a, b| b.1.first.cmp(&a.1.first));
        keys.truncate(self.key_window());
        let head = Head {
            ver: 0,
            base: closed.next,
            closed: OPEN,
            moved_to: None,
            prev: Some(loc.bucket),
            ..closed.clone()
        };
        let mut batch = self.lwt_batch()?;
        let mut values: Vec<Values<'_>> = Vec::with_capacity(keys.len() + 1);
        batch.append_statement(self.st.head_insert.clone());
        values.push(Box::new(Self::head_insert_values(stream, new_loc, &head)?));
        for (k, row) in &keys {
            batch.append_statement(self.st.key_insert.clone());
            values.push(Box::new((
                stream.as_str(),
                new_loc.inc,
                new_loc.bucket,
                k.as_slice(),
                db(row.first)?,
                db(row.count)?,
                db(row.ts)?,
                row.digest_db(),
            )));
        }
        // Not applied: another writer wrote the new head first, with the same content.
        self.session
            .batch(&batch, values)
            .await
            .map_err(parse_cassandra_error)?;
        if self.roll_crash.load(Ordering::Acquire) == RollCrash::AfterHead.code() {
            return Err(unavailable(
                "injected crash after writing the new bucket's head",
            ));
        }
        self.move_hint(stream, new_loc).await
    }

    async fn move_hint(&self, stream: &StreamId, loc: Loc) -> Result<()> {
        self.exec(
            &self.st.stream_move,
            (loc.bucket, stream.as_str(), loc.inc, loc.bucket),
        )
        .await?;
        Ok(())
    }

    /// The buckets holding offsets `from..h.next` of the stream whose current head is `h` at
    /// `loc`, oldest first, as `(bucket, base)`; `None` if a trim removed one meanwhile.
    async fn buckets_from(
        &self,
        stream: &StreamId,
        loc: Loc,
        h: &Head,
        from: u64,
    ) -> Result<Option<Vec<(i64, u64)>>> {
        let mut out = vec![(loc.bucket, h.base)];
        let (mut base, mut prev) = (h.base, h.prev);
        while base > from {
            let Some(pb) = prev else {
                return Ok(None);
            };
            let Some(ph) = self
                .head(
                    stream,
                    Loc {
                        inc: loc.inc,
                        bucket: pb,
                    },
                )
                .await?
            else {
                return Ok(None);
            };
            out.push((pb, ph.base));
            (base, prev) = (ph.base, ph.prev);
        }
        out.reverse();
        Ok(Some(out))
    }

    /// `(offset, len)` of the records in `from..end` (at most `limit`), across buckets.
    async fn lens(
        &self,
        stream: &StreamId,
        inc: i64,
        buckets: &[(i64, u64)],
        from: u64,
        end: u64,
        limit: u64,
    ) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for (i, &(bucket, base)) in buckets.iter().enumerate() {
            let hi = buckets.get(i + 1).map_or(end, |b| b.1).min(end);
            let lo = base.max(from);
            let want = limit.saturating_sub(u64::try_from(out.len()).unwrap_or(u64::MAX));
            if lo >= hi || want == 0 {
                continue;
            }
            let n = i32::try_from(want).unwrap_or(i32::MAX);
            let qr = self
                .exec(
                    &self.st.lens,
                    (stream.as_str(), inc, bucket, db(lo)?, db(hi)?, n),
                )
                .await?;
            for (off, len) in rows::<(i64, Option<i64>)>(qr)? {
                out.push((un(off)?, un(len.unwrap_or(0))?));
            }
        }
        Ok(out)
    }

    // ---- reads ----

    pub(crate) async fn read_now(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        for _ in 0..MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Some((loc, h)) = self.live(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let mut batch = h.engine(loc, None, 0)?.empty_read(from)?;
            if from >= h.next {
                return Ok(batch);
            }
            let mut end = h.next.min(from.saturating_add(max_records));
            let Some(buckets) = self.buckets_from(stream, loc, &h, from).await? else {
                continue;
            };
            // The head's byte count covers every record the read can return: if it fits the
            // budget, the budget cannot cut the page; otherwise the lengths decide first.
            if h.bytes > max_bytes {
                let lens = self
                    .lens(stream, loc.inc, &buckets, from, end, end - from)
                    .await?;
                let mut total = 0u64;
                let mut fit = 0u64;
                for (_, len) in &lens {
                    total = total.saturating_add(*len);
                    if total > max_bytes && fit > 0 {
                        break;
                    }
                    fit += 1;
                }
                end = from + fit.max(1);
            }
            let mut records = Vec::new();
            for (i, &(bucket, base)) in buckets.iter().enumerate() {
                let hi = buckets.get(i + 1).map_or(end, |b| b.1).min(end);
                let lo = base.max(from);
                if lo >= hi {
                    continue;
                }
                let n = i32::try_from(hi - lo).unwrap_or(i32::MAX);
                let qr = self
                    .exec(
                        &self.st.records,
                        (stream.as_str(), loc.inc, bucket, db(lo)?, db(hi)?, n),
                    )
                    .await?;
                for (off, ts, payload) in rows::<(i64, Option<i64>, Option<Vec<u8>>)>(qr)? {
                    records.push(Record {
                        offset: un(off)?,
                        timestamp_ms: un(ts.unwrap_or(0))?,
                        payload: Bytes::from(payload.unwrap_or_default()),
                    });
                }
            }
            // Every record below the head's `next` was written before the head was read, so
            // only a trim or delete in between can leave a hole: read again.
            let contiguous = u64::try_from(records.len()).ok() == Some(end - from)
                && records.iter().zip(from..).all(|(r, o)| r.offset == o);
            if contiguous {
                batch.next_offset = end;
                batch.records = records;
                return Ok(batch);
            }
        }
        Err(unavailable(format!(
            "stream {stream:?} kept changing while it was read"
        )))
    }

    // ---- seal, trim, retention ----

    pub(crate) async fn seal(&self, stream: &StreamId) -> Result<(StreamInfo, bool)> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            if h.sealed.is_some() {
                return Ok((h.info(stream, loc)?, false));
            }
            let mut next = h.clone();
            next.ver += 1;
            next.sealed = Some(now_ms());
            if self.update_head(stream, loc, &h, &next).await? {
                return Ok((next.info(stream, loc)?, true));
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    pub(crate) async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            let target = before.min(h.next).max(h.first);
            if target <= h.first {
                return Ok(h.first);
            }
            if self.trim_to(stream, loc, &h, target).await? {
                return Ok(target);
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Raises the head's first offset to `target` (conditional on `h.ver`), then removes the
    /// records below it: whole older buckets' records, a range in the bucket holding `target`.
    /// A crash after the head update leaves unreadable records behind, removed by the next trim.
    async fn trim_to(&self, stream: &StreamId, loc: Loc, h: &Head, target: u64) -> Result<bool> {
        let Some(buckets) = self.buckets_from(stream, loc, h, h.first).await? else {
            return Ok(false);
        };
        let lens = self
            .lens(stream, loc.inc, &buckets, h.first, target, target - h.first)
            .await?;
        let removed: u64 = lens.iter().map(|(_, l)| l).sum();
        let mut next = h.clone();
        next.ver += 1;
        next.first = target;
        next.bytes = h.bytes.saturating_sub(removed);
        if !self.update_head(stream, loc, h, &next).await? {
            return Ok(false);
        }
        for (i, &(bucket, _)) in buckets.iter().enumerate() {
            let end = buckets.get(i + 1).map_or(u64::MAX, |b| b.1);
            if end <= target {
                self.exec(&self.st.body_delete, (stream.as_str(), loc.inc, bucket))
                    .await?;
            } else {
                self.exec(
                    &self.st.records_delete_below,
                    (stream.as_str(), loc.inc, bucket, db(target)?),
                )
                .await?;
                break;
            }
        }
        Ok(true)
    }

    /// Trims the oldest records while the stream holds more than `retention.max_bytes`, never
    /// the newest record.
    pub(crate) async fn enforce_max_bytes(&self, stream: &StreamId) -> Result<()> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Ok(());
            };
            let Some(max) = h.retention.max_bytes.filter(|_| h.must_trim()) else {
                return Ok(());
            };
            let newest = h.next - 1;
            let Some(buckets) = self.buckets_from(stream, loc, &h, h.first).await? else {
                continue;
            };
            let lens = self
                .lens(stream, loc.inc, &buckets, h.first, newest, newest - h.first)
                .await?;
            let need = h.bytes - max;
            let mut acc = 0u64;
            let mut cut = newest;
            for (off, len) in lens {
                acc += len;
                if acc >= need {
                    cut = off + 1;
                    break;
                }
            }
            if self.trim_to(stream, loc, &h, cut.min(newest)).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    pub(crate) async fn set_retention(
        &self,
        stream: &StreamId,
        retention: Retention,
    ) -> Result<()> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            // Marked before the head changes: a mark on a stream without a time rule costs
            // the sweeper one head read, a missing mark would leave the stream to reads.
            let timed =
                retention.delete_after_seal.is_some() || retention.delete_after_idle.is_some();
            if timed {
                self.exec(&self.st.name_timed, (true, shard(stream), stream.as_str()))
                    .await?;
            }
            let mut next = h.clone();
            next.ver += 1;
            next.retention = retention;
            if self.update_head(stream, loc, &h, &next).await? {
                return self.enforce_max_bytes(stream).await;
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    // ---- delete ----

    /// Deletes the stream; returns whether a live (unexpired) stream was deleted.
    pub(crate) async fn delete(&self, stream: &StreamId) -> Result<bool> {
        for attempt in 0..MAX_ATTEMPTS {
            self.check_open()?;
            match self.state(stream, true).await? {
                State::Missing | State::NoHead(_) => return Ok(false),
                State::Deleted(loc) => {
                    self.finish_delete(stream, loc).await?;
                    return Ok(false);
                }
                State::RollPending(loc, h) => self.finish_roll(stream, loc, &h).await?,
                State::Live(loc, h) => {
                    let expired = h.expired(now_ms());
                    if self.close_deleted(stream, loc, &h).await? {
                        return Ok(!expired);
                    }
                }
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Closes the head as deleted (the delete's linearization point), then finishes.
    async fn close_deleted(&self, stream: &StreamId, loc: Loc, h: &Head) -> Result<bool> {
        let mut closed = h.clone();
        closed.ver += 1;
        closed.closed = DELETED;
        if !self.update_head(stream, loc, h, &closed).await? {
            return Ok(false);
        }
        self.finish_delete(stream, loc).await?;
        Ok(true)
    }

    /// The steps after closing the head: the name goes (before the `streams` row, so that a
    /// re-created stream's name is never removed), then the `streams` row (conditional on the
    /// incarnation), then the records and keys of every bucket. A crash in between leaves a
    /// closed head that the next writer finds; leftover records are unreachable.
    async fn finish_delete(&self, stream: &StreamId, loc: Loc) -> Result<()> {
        self.exec(&self.st.name_delete, (shard(stream), stream.as_str()))
            .await?;
        self.exec(&self.st.stream_delete, (stream.as_str(), loc.inc))
            .await?;
        let mut bucket = Some(loc.bucket);
        while let Some(b) = bucket {
            let l = Loc {
                inc: loc.inc,
                bucket: b,
            };
            let h = self.head(stream, l).await?;
            self.exec(&self.st.body_delete, (stream.as_str(), loc.inc, b))
                .await?;
            bucket = h.and_then(|h| h.prev);
        }
        Ok(())
    }

    // ---- info, list, sweeper, marks ----

    pub(crate) async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        match self.live(stream).await? {
            Some((loc, h)) => h.info(stream, loc),
            None => Err(Error::not_found(stream)),
        }
    }

    async fn names_page(
        &self,
        after: Option<&str>,
        prefix: &str,
        fetch: i32,
    ) -> Result<(Vec<String>, bool)> {
        let mut all = Vec::new();
        let mut more = false;
        for s in 0..NAME_SHARDS {
            let qr = match after {
                Some(a) if a >= prefix => self.exec(&self.st.names_after, (s, a, fetch)).await?,
                _ => self.exec(&self.st.names_from, (s, prefix, fetch)).await?,
            };
            let got: Vec<(String,)> = rows(qr)?;
            more |= i32::try_from(got.len()).unwrap_or(i32::MAX) >= fetch;
            all.extend(got.into_iter().map(|(s,)| s));
        }
        all.sort_unstable();
        all.dedup();
        let keep = usize::try_from(fetch).unwrap_or(usize::MAX);
        if all.len() > keep {
            all.truncate(keep);
            more = true;
        }
        Ok((all, more))
    }

    pub(crate) async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let limit = options.page_size();
        let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
        let mut after = options.after.as_ref().map(|a| a.as_str().to_owned());
        let mut found = Vec::new();
        loop {
            let (names, more) = self
                .names_page(after.as_deref(), &options.prefix, fetch)
                .await?;
            let in_prefix: Vec<String> = names
                .into_iter()
                .take_while(|n| n.starts_with(&options.prefix))
                .collect();
            let ended = in_prefix.len() < usize::try_from(fetch).unwrap_or(usize::MAX) && !more
                || in_prefix.is_empty();
            let last = in_prefix.last().cloned();
            let live: Vec<Option<StreamId>> = stream::iter(in_prefix)
                .map(|name| async move {
                    let id = StreamId::new(&name)?;
                    Ok::<_, Error>(self.live(&id).await?.map(|_| id))
                })
                .buffered(LIST_CONCURRENCY)
                .try_collect()
                .await?;
            for id in live.into_iter().flatten() {
                if found.len() <= limit {
                    found.push(id);
                }
            }
            if found.len() > limit || ended {
                break;
            }
            after = last;
        }
        Ok(ListPage::from_fetched(found, limit))
    }

    /// Deletes every stream whose time-based retention expired; returns how many.
    pub(crate) async fn sweep_once(&self) -> Result<usize> {
        let now = now_ms();
        let mut deleted = 0;
        for s in 0..NAME_SHARDS {
            let qr = self.exec(&self.st.names_timed, (s,)).await?;
            for (name, timed) in rows::<(String, Option<bool>)>(qr)? {
                if timed != Some(true) {
                    continue;
                }
                let Ok(id) = StreamId::new(&name) else {
                    continue;
                };
                if let State::Live(loc, h) = self.state(&id, true).await? {
                    // Waiting readers notice through the watcher (the stream's mark is gone).
                    if h.expired(now) && self.close_deleted(&id, loc, &h).await? {
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// For each of `streams` that exists, a mark that changes with every change a waiting
    /// reader could notice (the incarnation, the bucket and the head's version); the batched
    /// head read of the shared waiter (`HeadSource`).
    pub(crate) async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        let marks: Vec<Option<(StreamId, u64)>> = stream::iter(streams.iter().cloned())
            .map(|id| async move {
                Ok::<_, Error>(self.live(&id).await?.map(|(loc, h)| {
                    let mut m = foldhash_like(loc.inc);
                    m = foldhash_like(m ^ loc.bucket);
                    m = foldhash_like(m ^ h.ver);
                    (id, u64::from_le_bytes(m.to_le_bytes()))
                }))
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(marks.into_iter().flatten().collect())
    }
}

/// A cheap 64-bit mixer (splitmix64's finalizer) for marks.
fn foldhash_like(x: i64) -> i64 {
    let mut z = u64::from_le_bytes(x.to_le_bytes()).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    i64::from_le_bytes((z ^ (z >> 31)).to_le_bytes())
}
