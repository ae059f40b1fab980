//! `MongoStore`: the `StreamStore` over a MongoDB-compatible server, without transactions.
//!
//! Every write (append, seal, trim, retention change, delete) is the insert of one document:
//! the next entry of the stream's chain, holding the stream's complete state after it (see
//! `entry.rs`, `chain.rs` and `docs/backends.md`). The insert is the write's linearization
//! point; it succeeds for exactly one writer per slot. A writer that loses the slot walks to
//! the new end and decides again (key, then seal, then expectation: `StreamHead::decide`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::{prepare_append, OpenFlag, Tasks};
use streamstore::implementor::{ErrorShorthand, ListPageParts, ReadBatchParts};

use async_trait::async_trait;
use bytes::Bytes;
use mongodb::Client;
use streamstore::implementor::head::{Decision, StreamHead};
use streamstore::implementor::validate::{check_read, now_ms};
use streamstore::implementor::wait::{wait_for_records, HeadSource, WatchOptions, Watcher};
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, ErrorKind, Expect, IdempotencyKey,
    IdempotencyWindow, ListOptions, ListPage, ReadBatch, ReadOptions, Record, Result, Retention,
    StreamId, StreamInfo, StreamStore, WaitMechanism,
};

use crate::chain::{start_of, walk, StartCache, Walked, HINT_AFTER_STEPS};
use crate::config::MongoConfig;
use crate::core::{Inserted, MongoCore};
use crate::entry::{records_of, sizes_of, Entry, Kind};
use crate::error::parse_mongo_error;
use crate::slot::{key_claim, random_claim, Slot};

/// Largest payload of one record. A batch is one document, and a document is at most 16 MiB.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Most records in one append.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Largest payload of one append (one document, well below the 16 MiB document limit).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Transient errors (a restarting server, a busy SQLite file) are retried this often inside
/// one call before the call fails with `Unavailable`. Always safe: every insert carries a
/// claim that recognizes its own earlier attempt.
const MAX_TRANSIENT_RETRIES: u32 = 6;
/// Slots lost to other writers before an append gives up with `Unavailable` (only under
/// extreme contention; each loss means another writer made progress).
const MAX_LOST_SLOTS: u32 = 10_000;
/// Reads repeated when a trim or delete removed payloads between the head and the records.
const MAX_READ_ATTEMPTS: u32 = 8;
/// Streams examined per sweep.
const SWEEP_BATCH: u64 = 256;

/// A `StreamStore` over MongoDB 7 or FerretDB 1.24 (and other MongoDB-wire servers that keep
/// unique indexes atomic with an insert).
///
/// Streams live in `<prefix>log` (one document per write) and `<prefix>hints` (advisory);
/// several processes may share them. Waiting reads are woken at once by writes of this process
/// and by polling for writes of others.
pub struct MongoStore {
    inner: Arc<Inner>,
    /// Aborted when the store closes or is dropped.
    tasks: Tasks,
}

struct Inner {
    core: MongoCore,
    client: Client,
    /// One watcher per store: waiting reads cost one round of head reads per tick, however
    /// many there are; writes of this process wake them at once.
    watcher: Watcher,
    cache: Arc<StartCache>,
    open: OpenFlag,
    config: MongoConfig,
}

/// Whether the `max_bytes` rule must trim `h` (more than the limit, and more than the newest
/// record, which it never trims).
fn must_trim(h: &StreamHead) -> bool {
    h.retention
        .max_bytes
        .is_some_and(|max| h.bytes > max && h.next_offset - h.first_offset > 1)
}

/// Sleeps before retrying a transient error, or returns it once retries are used up.
async fn pause_or_fail(tries: &mut u32, e: Error) -> Result<()> {
    if !e.is_retryable() || *tries >= MAX_TRANSIENT_RETRIES {
        return Err(e);
    }
    *tries += 1;
    let ms = 50u64 << (*tries).min(5);
    tokio::time::sleep(Duration::from_millis(ms + rand::random::<u64>() % 50)).await;
    Ok(())
}

/// The watcher's head reads: the last entry of each waited-on stream, walked concurrently.
struct Marks {
    core: MongoCore,
    cache: Arc<StartCache>,
}

#[async_trait]
impl HeadSource for Marks {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        marks(&self.core, &self.cache, streams).await
    }
}

/// Walks waited-on streams at once, this many at a time.
const MARKS_CONCURRENCY: usize = 32;

/// For each of `streams` that exists, a hash of its last entry's slot: it changes with every
/// write (append, seal, trim, retention, delete, re-creation). Concurrent point reads by `_id`,
/// because FerretDB does not push `{_id: {$in: …}}` down (one batched query would scan).
async fn marks(
    core: &MongoCore,
    cache: &StartCache,
    streams: &[StreamId],
) -> Result<Vec<(StreamId, u64)>> {
    use futures::{StreamExt, TryStreamExt};
    let now = now_ms();
    let found: Vec<Option<(StreamId, u64)>> = futures::stream::iter(streams.iter().cloned())
        .map(|s: StreamId| async move {
            let start = start_of(core, cache, &s).await?;
            let Walked { last, .. } = walk(core, &s, start).await?;
            if let Some(e) = &last {
                cache.put(&s, e);
            }
            Ok::<_, Error>(last.filter(|e| e.live_head(now).is_some()).map(|e| {
                let mut h = DefaultHasher::new();
                e.slot.hash(&mut h);
                (s, h.finish())
            }))
        })
        .buffer_unordered(MARKS_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The capabilities this adapter declares.
pub fn capabilities(poll_interval: Duration) -> Capabilities {
    Capabilities {
        max_record_bytes: MAX_RECORD_BYTES,
        max_batch_records: MAX_BATCH_RECORDS,
        max_batch_bytes: MAX_BATCH_BYTES,
        // A key's claim lives on its batch's entry for the whole incarnation: nothing is
        // forgotten until the stream is deleted.
        idempotency: Some(IdempotencyWindow {
            keys_per_stream: usize::MAX,
            max_age: None,
        }),
        wait: WaitMechanism::Poll {
            max_interval: poll_interval,
        },
        persistent: true,
        // An acknowledged insert is as durable as the server's write concern makes it, and
        // nothing unacknowledged is ever part of the chain.
        durable_reads: true,
        ..Capabilities::default()
    }
}

impl MongoStore {
    /// Connects to `url` and uses the collections of `prefix`, creating their indexes.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store =
    ///     streamkeep_mongodb::MongoStore::connect("mongodb://127.0.0.1:57017/app", "app_").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::open(MongoConfig::from_url(url)?.with_prefix(prefix)?).await
    }

    /// Connects to `url`, taking the prefix from its `collection_prefix` option (default
    /// `streamstore_`). This is what `--store mongodb://…` uses.
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::open(MongoConfig::from_url(url)?).await
    }

    /// Connects with `config`, creates the indexes and starts the retention sweeper.
    pub async fn open(config: MongoConfig) -> Result<Self> {
        let client = Client::with_uri_str(config.driver_url())
            .await
            .map_err(parse_mongo_error)?;
        let db = client.database(config.database());
        let core = MongoCore::open(&db, config.prefix()).await?;
        let sweep = config.sweep_interval;
        let cache = Arc::new(StartCache::default());
        let watcher = Watcher::new(
            Arc::new(Marks {
                core: core.clone(),
                cache: Arc::clone(&cache),
            }),
            WatchOptions {
                tick: config.poll_interval,
                ..WatchOptions::default()
            },
        );
        let inner = Arc::new(Inner {
            core,
            client,
            watcher,
            cache,
            open: OpenFlag::default(),
            config,
        });
        let sweeper = Arc::clone(&inner);
        let task = tokio::spawn(async move { sweeper.sweep_loop(sweep).await });
        Ok(MongoStore {
            inner,
            tasks: Tasks::new([task]),
        })
    }

    /// Drops the collections of `prefix` (every stream in them). Other stores using them must
    /// be closed first.
    pub async fn destroy(url: &str, prefix: &str) -> Result<()> {
        let config = MongoConfig::from_url(url)?.with_prefix(prefix)?;
        let client = Client::with_uri_str(config.driver_url())
            .await
            .map_err(parse_mongo_error)?;
        let db = client.database(config.database());
        let core = MongoCore::open(&db, config.prefix()).await?;
        core.drop().await
    }

    /// Runs one retention sweep now (the background sweeper runs every `sweep_interval`);
    /// returns how many streams it deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.inner.check_open()?;
        self.inner.sweep_once().await
    }

    /// For each of `streams` that exists, a mark that changes whenever anything a waiting
    /// reader could notice changes (an append, seal, trim, delete, re-creation): the slot of
    /// its last entry, hashed. What the store's [`Watcher`] reads every tick.
    pub async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.inner.check_open()?;
        marks(&self.inner.core, &self.inner.cache, streams).await
    }
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        self.open.check()
    }

    /// Walks `stream` from `start` (or the best known start) to its last entry, remembering it.
    async fn walk_from(&self, stream: &StreamId, start: Option<Entry>) -> Result<Option<Entry>> {
        let start = match start {
            Some(e) => Some(e),
            None => start_of(&self.core, &self.cache, stream).await?,
        };
        let Walked { last, steps } = walk(&self.core, stream, start).await?;
        if let Some(e) = &last {
            self.cache.put(stream, e);
            if steps >= HINT_AFTER_STEPS {
                // Advisory: a lost hint only makes a later walk longer.
                let _ = self.core.raise_hint(stream, e.slot).await;
            }
        }
        Ok(last)
    }

    /// The last entry of `stream`, retrying transient errors (reads are always safe to repeat).
    async fn last_entry(&self, stream: &StreamId) -> Result<Option<Entry>> {
        let mut tries = 0;
        loop {
            self.check_open()?;
            match self.walk_from(stream, None).await {
                Ok(e) => return Ok(e),
                Err(e) => pause_or_fail(&mut tries, e).await?,
            }
        }
    }

    /// The live head of `stream` (not deleted, not expired).
    async fn live(&self, stream: &StreamId) -> Result<Option<Entry>> {
        let now = now_ms();
        Ok(self
            .last_entry(stream)
            .await?
            .filter(|e| e.live_head(now).is_some()))
    }

    /// After an entry was inserted: cache it, keep the hint and the sweeper fields current, and
    /// wake this process's waiting readers.
    async fn inserted(&self, stream: &StreamId, entry: &Entry, pred: Option<&Entry>) {
        self.cache.put(stream, entry);
        let crossed = pred.is_none_or(|p| {
            p.slot.generation != entry.slot.generation
                || p.next_offset() / 64 != entry.next_offset() / 64
                || entry.kind != Kind::Data
        });
        if crossed {
            let _ = self.core.raise_hint(stream, entry.slot).await;
        }
        if let Some(p) = pred.filter(|p| p.kind != Kind::Delete && p.head.expires_ms().is_some()) {
            let _ = self.core.clear_expiry(p.slot.id(stream)).await;
        }
        self.watcher.notify(stream);
    }

    /// The result of an append whose claim was found on `found`: the earlier result for the
    /// same records, `InvalidArgument` for a key reused with different records.
    fn resolve(found: &Entry, digest: Option<u64>) -> Result<AppendResult> {
        if found.kind != Kind::Data {
            return Err(Error::new(
                ErrorKind::Internal,
                "a claim was found on an entry that is not a batch",
            ));
        }
        match digest {
            Some(d) if found.digest != Some(d) => Err(Error::invalid(
                "this idempotency key was used for different records on this stream",
            )),
            _ => Ok(found.append_result()),
        }
    }

    /// Record lengths of generation `g` of `stream` in `from..end`, oldest first, from the
    /// entries' `z` fields (never stripped). `None` if a record is missing (the chain moved on:
    /// the caller walks again).
    async fn sizes(
        &self,
        stream: &StreamId,
        g: u64,
        from: u64,
        end: u64,
    ) -> Result<Option<Vec<u64>>> {
        let mut out = Vec::new();
        if from >= end {
            return Ok(Some(out));
        }
        let Some(first) = self.core.data_holding(stream, g, from).await? else {
            return Ok(None);
        };
        let mut docs = vec![first];
        let first_entry = Entry::from_document(&docs[0])?;
        if first_entry.next_offset() < end {
            let more = self
                .core
                .data_range(
                    stream,
                    g,
                    (first_entry.next_offset(), end),
                    end - from,
                    false,
                )
                .await?;
            docs.extend(more);
        }
        let mut next = from;
        for d in &docs {
            let e = Entry::from_document(d)?;
            if e.slot.offset > next || e.next_offset() <= next {
                return Ok(None);
            }
            for (i, len) in sizes_of(d)?.into_iter().enumerate() {
                let off = e.slot.offset + u64::try_from(i).unwrap_or(u64::MAX);
                if off >= next && off < end {
                    out.push(len);
                    next = off + 1;
                }
            }
        }
        Ok((next == end).then_some(out))
    }

    /// Applies the `max_bytes` rule to `entry` (the state after a write): raises its first
    /// offset past the oldest records while it holds too much, never past the newest record.
    /// `new_sizes` are the lengths of records the entry itself appends (not yet stored).
    /// `None` if the chain moved on meanwhile.
    async fn apply_max_bytes(
        &self,
        stream: &StreamId,
        entry: &mut Entry,
        new_sizes: &[u64],
    ) -> Result<Option<()>> {
        let h = &entry.head;
        let Some(max) = h.retention.max_bytes.filter(|_| must_trim(h)) else {
            return Ok(Some(()));
        };
        let new_count = u64::try_from(new_sizes.len()).unwrap_or(u64::MAX);
        let stored_end = h.next_offset - new_count;
        let first = h.first_offset;
        let Some(mut sizes) = self
            .sizes(stream, entry.slot.generation, first, stored_end.max(first))
            .await?
        else {
            return Ok(None);
        };
        // Records below the first offset may belong to this entry itself only if the stream
        // was just created; `first <= stored_end` holds otherwise.
        let skip = usize::try_from(first.saturating_sub(stored_end)).unwrap_or(usize::MAX);
        sizes.extend(new_sizes.iter().skip(skip));
        let newest = h.next_offset - 1;
        let mut excess = h.bytes - max;
        let mut off = first;
        let mut dropped = 0u64;
        for len in sizes {
            if excess == 0 || off >= newest {
                break;
            }
            excess = excess.saturating_sub(len);
            dropped += len;
            off += 1;
        }
        entry.head.first_offset = off;
        entry.trimmed_bytes += dropped;
        entry.head.bytes -= dropped;
        Ok(Some(()))
    }

    /// The entry that ends `last`'s generation (an explicit delete, or an expired stream
    /// being removed).
    fn delete_entry(last: &Entry, now: u64) -> Entry {
        let mut head = last.head.clone();
        head.keys = Default::default();
        Entry {
            slot: last.next_slot(),
            kind: Kind::Delete,
            count: 0,
            ts: now,
            claim: random_claim(),
            digest: None,
            head,
            total_bytes: last.total_bytes,
            trimmed_bytes: last.trimmed_bytes,
        }
    }

    /// A state-only entry after `last` (seal, trim, retention), to be adjusted by the caller.
    fn meta_entry(last: &Entry, kind: Kind, now: u64) -> Entry {
        Entry {
            slot: last.next_slot(),
            kind,
            count: 0,
            ts: now,
            claim: random_claim(),
            digest: None,
            head: last.head.clone(),
            total_bytes: last.total_bytes,
            trimmed_bytes: last.trimmed_bytes,
        }
    }

    /// Inserts `entry`; on success removes the payloads it trimmed (advisory: readers check
    /// the first offset, not the payloads) and runs [`Inner::inserted`].
    async fn insert_entry(
        &self,
        stream: &StreamId,
        entry: &Entry,
        records: &[Bytes],
        pred: Option<&Entry>,
    ) -> Result<Inserted> {
        let outcome = self
            .core
            .insert(entry.to_document(stream, records)?)
            .await?;
        if outcome == Inserted::Done {
            let raised = pred.is_some_and(|p| p.head.first_offset < entry.head.first_offset);
            if raised {
                let g = entry.slot.generation;
                let _ = self
                    .core
                    .strip_below(stream, g, entry.head.first_offset)
                    .await;
            }
            if entry.kind == Kind::Delete {
                let _ = self
                    .core
                    .strip_generation(stream, entry.slot.generation)
                    .await;
            }
            self.inserted(stream, entry, pred).await;
        }
        Ok(outcome)
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<AppendResult> {
        let token = random_claim();
        let digest = key.map(|(_, d)| d);
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let new_sizes: Vec<u64> = records
            .iter()
            .map(|r| u64::try_from(r.len()).unwrap_or(u64::MAX))
            .collect();
        // Set once an insert's outcome was unknown: from then on a refusal may be because our
        // own earlier attempt landed, so the claim is looked up before any error is returned.
        let mut ambiguous = false;
        let mut transient = 0u32;
        let mut lost = 0u32;
        let mut last: Option<Entry> = None;
        loop {
            self.check_open()?;
            last = match self.walk_from(stream, last.take()).await {
                Ok(l) => l,
                Err(e) => {
                    pause_or_fail(&mut transient, e).await?;
                    continue;
                }
            };
            let now = now_ms();
            let live = last.as_ref().and_then(|e| e.live_head(now));
            let generation = match &last {
                None => 1,
                Some(e) if live.is_some() => e.slot.generation,
                Some(e) => e.slot.generation + 1,
            };
            let claim = match key {
                Some((k, _)) => key_claim(stream, generation, k),
                None => token.clone(),
            };
            // The key is looked up only where it can change the answer: when the decision
            // without it is a refusal (the batch is already in, or it was never written); when
            // the decision is a write, the claim index refuses a reused key at the insert.
            let decision = match StreamHead::decide(stream, live, expect, None, now) {
                Ok(d) => d,
                Err(refusal) => {
                    if (key.is_some() && live.is_some()) || ambiguous {
                        match self.core.find_claim(&claim).await {
                            Ok(Some(found)) => return Self::resolve(&found, digest),
                            Ok(None) => {}
                            Err(e) => {
                                pause_or_fail(&mut transient, e).await?;
                                continue;
                            }
                        }
                    }
                    return Err(refusal);
                }
            };
            let Decision::Write {
                first_offset,
                timestamp_ms,
                create,
            } = decision
            else {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "a decision without a key was a duplicate",
                ));
            };
            let mut pred = last.clone();
            if let Some(old) = last
                .as_ref()
                .filter(|e| live.is_none() && e.kind != Kind::Delete)
            {
                // Retention fired and no sweeper has removed the stream yet: end its
                // generation first (an insert like any other, so a concurrent append to the
                // old generation and this removal cannot both succeed).
                let marker = Self::delete_entry(old, now);
                match self.insert_entry(stream, &marker, &[], Some(old)).await {
                    Ok(Inserted::Done) => pred = Some(marker),
                    Ok(Inserted::Duplicate) => continue,
                    Err(e) => {
                        pause_or_fail(&mut transient, e).await?;
                        continue;
                    }
                }
            }
            let (slot, mut head, total, trimmed) = match (&pred, create) {
                (Some(p), false) => (
                    p.next_slot(),
                    p.head.clone(),
                    p.total_bytes,
                    p.trimmed_bytes,
                ),
                _ => (
                    Slot::start_of(generation),
                    Entry::genesis_state(timestamp_ms),
                    0,
                    0,
                ),
            };
            head.next_offset = first_offset + count;
            head.last_append_ms = timestamp_ms;
            head.bytes = total + bytes - trimmed;
            let mut entry = Entry {
                slot,
                kind: Kind::Data,
                count,
                ts: timestamp_ms,
                claim: claim.clone(),
                digest,
                head,
                total_bytes: total + bytes,
                trimmed_bytes: trimmed,
            };
            match self.apply_max_bytes(stream, &mut entry, &new_sizes).await {
                Ok(Some(())) => {}
                Ok(None) => continue,
                Err(e) => {
                    pause_or_fail(&mut transient, e).await?;
                    continue;
                }
            }
            match self
                .insert_entry(stream, &entry, records, pred.as_ref())
                .await
            {
                Ok(Inserted::Done) => return Ok(entry.append_result()),
                Ok(Inserted::Duplicate) => {
                    // Either the slot is taken (another writer won it: walk on and decide
                    // again) or the claim is (the key was used, or our own earlier attempt
                    // landed).
                    match self.core.find_claim(&claim).await {
                        Ok(Some(found)) => return Self::resolve(&found, digest),
                        Ok(None) => {}
                        Err(e) => {
                            ambiguous = true;
                            pause_or_fail(&mut transient, e).await?;
                        }
                    }
                    lost += 1;
                    if lost >= MAX_LOST_SLOTS {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "too many concurrent writers on this stream; try again",
                        ));
                    }
                    last = pred;
                }
                Err(e) => {
                    ambiguous |= e.is_retryable();
                    pause_or_fail(&mut transient, e).await?;
                    last = pred;
                }
            }
        }
    }

    /// Records of the generation of `head` from `from` up to `end` (exclusive) within the byte
    /// budget, read by `_id`: a point read of the entry at `from`, then (if more are needed) one
    /// range query. `None` if the payloads are gone (trimmed or deleted meanwhile).
    async fn records(
        &self,
        stream: &StreamId,
        g: u64,
        (from, end): (u64, u64),
        max_bytes: u64,
    ) -> Result<Option<Vec<Record>>> {
        let mut out: Vec<Record> = Vec::new();
        let mut used = 0u64;
        let mut next = from;
        let at = Slot {
            generation: g,
            offset: from,
            sub: 0,
        };
        let first = match self.core.document(stream, at).await? {
            Some(d) if d.get_str("t") == Ok(Kind::DATA) => Some(d),
            _ => self.core.data_holding(stream, g, from).await?,
        };
        let Some(first) = first else {
            return Ok(None);
        };
        let mut pending = vec![first];
        let mut full = false;
        loop {
            for d in &pending {
                let e = Entry::from_document(d)?;
                if e.slot.offset > next || e.next_offset() <= next {
                    return Ok(None);
                }
                let Some(recs) = records_of(d)? else {
                    return Ok(None);
                };
                for (i, payload) in recs.into_iter().enumerate() {
                    let off = e.slot.offset + u64::try_from(i).unwrap_or(u64::MAX);
                    if off < next {
                        continue;
                    }
                    let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
                    if off >= end || (!out.is_empty() && used + len > max_bytes) {
                        full = true;
                        break;
                    }
                    used += len;
                    out.push(Record {
                        offset: off,
                        timestamp_ms: e.ts,
                        payload,
                    });
                    next = off + 1;
                }
                if full {
                    break;
                }
            }
            if full || next >= end {
                return Ok(Some(out));
            }
            pending = self
                .core
                .data_range(stream, g, (next, end), end - next, true)
                .await?;
            if pending.is_empty() {
                return Ok(None);
            }
        }
    }

    async fn read_now(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        let mut tries = 0;
        let mut attempts = 0;
        while attempts < MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Some(last) = self.live(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let h = &last.head;
            let mut batch = h.empty_read(from)?;
            if from >= h.next_offset {
                return Ok(batch);
            }
            let end = h.next_offset.min(from.saturating_add(max_records));
            match self
                .records(stream, last.slot.generation, (from, end), max_bytes)
                .await
            {
                Ok(Some(records)) if !records.is_empty() => {
                    batch.next_offset = from + u64::try_from(records.len()).unwrap_or(u64::MAX);
                    batch.records = records;
                    return Ok(batch);
                }
                // A trim or delete ran between the head and the records: read again (the new
                // head then reports `Trimmed` or the new incarnation).
                Ok(_) => attempts += 1,
                Err(e) => pause_or_fail(&mut tries, e).await?,
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("stream {stream:?} kept changing while it was read"),
        ))
    }

    async fn sweep_loop(self: Arc<Self>, every: Duration) {
        let open = || self.check_open().is_ok();
        streamstore::implementor::wait::sweep_periodically(every, open, || self.sweep_once()).await;
    }

    async fn sweep_once(&self) -> Result<usize> {
        let now = now_ms();
        let candidates = self.core.expiry_candidates(now, SWEEP_BATCH).await?;
        let mut deleted = 0;
        for stream in candidates {
            // A few rounds: each lost slot means another writer moved the stream on.
            for _ in 0..4 {
                let Some(last) = self.last_entry(&stream).await? else {
                    break;
                };
                let now = now_ms();
                if last.kind == Kind::Delete || last.live_head(now).is_some() {
                    self.core
                        .clear_stale_expiry(&stream, &last.slot.id(&stream), now)
                        .await?;
                    break;
                }
                let marker = Self::delete_entry(&last, now);
                if self
                    .insert_entry(&stream, &marker, &[], Some(&last))
                    .await?
                    == Inserted::Done
                {
                    deleted += 1;
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs a state-only write: `step` looks at the live last entry and returns the entry to
    /// insert (or `None`: nothing to change) and the answer. Lost slots and transient errors
    /// walk again and call `step` again.
    async fn write_state<T, F, Fut>(&self, stream: &StreamId, mut step: F) -> Result<T>
    where
        F: FnMut(Entry) -> Fut,
        Fut: std::future::Future<Output = Result<Option<(Option<Entry>, T)>>>,
    {
        let mut transient = 0u32;
        let mut lost = 0u32;
        loop {
            let Some(last) = self.live(stream).await? else {
                return Err(Error::not_found(stream));
            };
            let pred = last.clone();
            let (entry, answer) = match step(last).await {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    pause_or_fail(&mut transient, e).await?;
                    continue;
                }
            };
            let Some(entry) = entry else {
                return Ok(answer);
            };
            match self.insert_entry(stream, &entry, &[], Some(&pred)).await {
                Ok(Inserted::Done) => return Ok(answer),
                Ok(Inserted::Duplicate) => {
                    lost += 1;
                    if lost >= MAX_LOST_SLOTS {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "too many concurrent writers on this stream; try again",
                        ));
                    }
                }
                // The next walk shows whether the entry landed; every state write is
                // idempotent against its own result (sealing a sealed stream, trimming below
                // the first offset, setting the same retention).
                Err(e) => pause_or_fail(&mut transient, e).await?,
            }
        }
    }
}

#[async_trait]
impl StreamStore for MongoStore {
    fn capabilities(&self) -> Capabilities {
        capabilities(self.inner.config.poll_interval)
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        let inner = &self.inner;
        let caps = self.capabilities();
        let (bytes, key) = prepare_append(&inner.open, stream, &records, &options, &caps)?;
        inner
            .append(stream, &records, bytes, options.expect, key)
            .await
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        check_read(&options, &self.capabilities())?;
        let inner = &self.inner;
        inner.check_open()?;
        let Some(wait) = options.wait else {
            return inner.read_now(stream, from, &options).await;
        };
        // Armed before the read it guards: a write of this process in between wakes it at
        // once, one of another process at the watcher's next tick.
        wait_for_records(
            wait,
            options.incarnation,
            || inner.watcher.arm(stream),
            || inner.read_now(stream, from, &options),
        )
        .await
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let inner = &self.inner;
        inner.check_open()?;
        inner
            .write_state(stream, |last| async move {
                if last.head.sealed_ms.is_some() {
                    return Ok(Some((None, last.head.info(stream))));
                }
                let now = now_ms();
                let mut e = Inner::meta_entry(&last, Kind::Seal, now);
                e.head.sealed_ms = Some(now);
                let info = e.head.info(stream);
                Ok(Some((Some(e), info)))
            })
            .await
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let inner = &self.inner;
        inner.check_open()?;
        inner
            .write_state(stream, |last| async move {
                let target = last.head.trim_target(before);
                let first = last.head.first_offset;
                if target <= first {
                    return Ok(Some((None, first)));
                }
                let g = last.slot.generation;
                let Some(sizes) = inner.sizes(stream, g, first, target).await? else {
                    return Ok(None);
                };
                let dropped: u64 = sizes.iter().sum();
                let mut e = Inner::meta_entry(&last, Kind::Meta, now_ms());
                e.head.first_offset = target;
                e.trimmed_bytes += dropped;
                e.head.bytes -= dropped;
                Ok(Some((Some(e), target)))
            })
            .await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let inner = &self.inner;
        inner.check_open()?;
        let mut transient = 0u32;
        let mut mine: Option<String> = None;
        loop {
            inner.check_open()?;
            let last = inner.last_entry(stream).await?;
            let Some(last) = last else {
                return Ok(false);
            };
            if last.kind == Kind::Delete {
                // Our own marker, if an attempt whose outcome was unknown landed.
                return Ok(mine.as_deref() == Some(last.claim.as_str()));
            }
            let now = now_ms();
            let existed = last.live_head(now).is_some();
            let marker = Inner::delete_entry(&last, now);
            mine = Some(marker.claim.clone());
            match inner.insert_entry(stream, &marker, &[], Some(&last)).await {
                // An expired stream was already gone as far as callers could see.
                Ok(Inserted::Done) => return Ok(existed),
                Ok(Inserted::Duplicate) => mine = None,
                Err(e) => pause_or_fail(&mut transient, e).await?,
            }
        }
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.inner.check_open()?;
        match self.inner.live(stream).await? {
            Some(e) => Ok(e.head.info(stream)),
            None => Err(Error::not_found(stream)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let inner = &self.inner;
        inner.check_open()?;
        let limit = options.page_size();
        let prefix = options.prefix.as_str();
        let (mut from, mut exclusive) = match &options.after {
            Some(a) if a.as_str() >= prefix => (a.as_str().to_owned(), true),
            _ => (prefix.to_owned(), false),
        };
        let chunk = u64::try_from(limit)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(1024);
        let mut found = Vec::new();
        'pages: loop {
            let ids = inner.core.stream_ids(&from, exclusive, chunk).await?;
            let complete = u64::try_from(ids.len()).unwrap_or(u64::MAX) < chunk;
            for id in ids {
                if !id.as_str().starts_with(prefix) {
                    break 'pages;
                }
                if inner.live(&id).await?.is_some() {
                    found.push(id.clone());
                    if found.len() > limit {
                        break 'pages;
                    }
                }
                from = id.as_str().to_owned();
                exclusive = true;
            }
            if complete {
                break;
            }
        }
        Ok(ListPage::from_fetched(found, limit))
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        let inner = &self.inner;
        inner.check_open()?;
        inner
            .write_state(stream, |last| async move {
                if last.head.retention == retention {
                    return Ok(Some((None, ())));
                }
                let mut e = Inner::meta_entry(&last, Kind::Meta, now_ms());
                e.head.retention = retention;
                if inner.apply_max_bytes(stream, &mut e, &[]).await?.is_none() {
                    return Ok(None);
                }
                Ok(Some((Some(e), ())))
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if !inner.open.close() {
            return Ok(());
        }
        self.tasks.abort_all();
        inner.watcher.close();
        inner.client.clone().shutdown().await;
        Ok(())
    }
}
