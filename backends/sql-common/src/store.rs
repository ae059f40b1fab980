//! The `StreamStore` algorithms over any [`SqlDialect`], written once for every SQL adapter.
//!
//! Every write is one transaction that first locks the stream's head row, so all writes to one
//! stream are serialized by the database and the decision (idempotency key, then seal, then
//! expectation: the order of `streamstore::head`) is taken on the state the write will change.
//! Reads take no lock: the head and then the records of its incarnation, checked for
//! contiguity, and read again if a trim or delete ran in between.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use streamstore::implementor::{ErrorShorthand, ReadBatchParts};

use async_trait::async_trait;
use bytes::Bytes;
use streamstore::implementor::head::{Decision, StreamHead};
use streamstore::implementor::validate::{check_append, check_read, now_ms};
use streamstore::implementor::wait::{wait_on_watcher, Changes, HeadSource, WatchOptions, Watcher};
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, ErrorKind, Expect, IdempotencyKey,
    ListOptions, ListPage, ReadBatch, ReadOptions, Result, Retention, StreamId, StreamInfo,
    StreamStore,
};
use tokio::task::JoinHandle;

use crate::dialect::{ListQuery, RolledBack, SqlDialect};
use crate::model::{is_expired, HeadRow, KeyRow};
use crate::rereads::{record_range, Prefetched, RereadStats, Rereads, Wanted};

/// How often a transaction the database rolled back (deadlock, serialization failure, lock
/// wait timeout) or that lost a stream-creation race is run again before the error is returned.
const MAX_ATTEMPTS: u32 = 10;

/// How often a read is repeated when a trim or delete changed the stream between its head and
/// its records; each repetition sees a newer head, so this only runs out under constant churn.
const MAX_READ_ATTEMPTS: u32 = 8;

/// Streams deleted per sweeper query.
const SWEEP_BATCH: u64 = 256;

/// Whether `max_bytes` retention must trim `h`: it holds more than the limit, and more than the
/// newest record (which is never trimmed).
fn must_trim(h: &HeadRow) -> bool {
    h.head
        .retention
        .max_bytes
        .is_some_and(|max| h.head.bytes > max && h.head.next_offset - h.head.first_offset > 1)
}

/// The knobs an adapter sets for its [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// What the adapter declares (limits are enforced from here).
    pub capabilities: Capabilities,
    /// How the store's one [`Watcher`] polls the heads of waited-on streams.
    pub watch: WatchOptions,
    /// How often the retention sweeper looks for expired streams (`None`: no sweeper; expired
    /// streams are still never served, and are removed by the next write).
    pub sweep_interval: Option<Duration>,
}

impl StoreOptions {
    /// Keys kept per stream: at least this many, pruned back to it at twice as many.
    fn key_window(&self) -> u64 {
        self.capabilities
            .idempotency
            .map_or(0, |w| u64::try_from(w.keys_per_stream).unwrap_or(u64::MAX))
    }
}

/// A `StreamStore` over a SQL database, given the database's statements.
///
/// Owns background tasks (the retention sweeper, and whatever the adapter adds with
/// [`SqlStore::add_task`]); they are stopped by `close` or when the store is dropped.
pub struct SqlStore<D: SqlDialect> {
    core: Arc<Core<D>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Core<D> {
    dialect: Arc<D>,
    /// The reads of waiting reads, read together (heads, then records) by one task.
    rereads: Arc<Rereads<D>>,
    /// Every waiting read of the store waits here: one task polls all their heads per tick.
    watcher: Arc<Watcher>,
    closed: AtomicBool,
    options: StoreOptions,
}

/// The store's [`HeadSource`]: the dialect's batched head read, as of now.
struct DialectHeads<D>(Arc<D>);

#[async_trait]
impl<D: SqlDialect> HeadSource for DialectHeads<D> {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.0.head_marks(streams, now_ms()).await
    }

    fn tracks_changes(&self) -> bool {
        self.0.tracks_changes()
    }

    async fn changes(&self, since: Option<u64>) -> Result<Changes> {
        self.0.head_changes(since, now_ms()).await
    }
}

/// The outcome of one attempt of a write transaction.
enum Attempt<T> {
    /// Done.
    Done(T),
    /// Lost a race that a fresh transaction resolves (a concurrent creation of the stream).
    Retry,
}

impl<D: SqlDialect> SqlStore<D> {
    /// A store over `dialect`, whose schema the adapter has already created. Starts the
    /// watcher of waiting reads and, if `options.sweep_interval` is set, the retention sweeper
    /// (needs a Tokio runtime).
    pub fn new(dialect: D, options: StoreOptions) -> Self {
        let dialect = Arc::new(dialect);
        let heads = Arc::new(DialectHeads(Arc::clone(&dialect)));
        let core = Arc::new(Core {
            rereads: Arc::new(Rereads::new(Arc::clone(&dialect))),
            dialect,
            watcher: Arc::new(Watcher::new(heads, options.watch)),
            closed: AtomicBool::new(false),
            options,
        });
        let store = SqlStore {
            core,
            tasks: Mutex::new(Vec::new()),
        };
        if let Some(every) = options.sweep_interval {
            let core = Arc::clone(&store.core);
            store.add_task(tokio::spawn(async move { core.sweep_loop(every).await }));
        }
        store
    }

    /// The dialect (the adapter's queries).
    pub fn dialect(&self) -> &D {
        &self.core.dialect
    }

    /// The watcher waiting reads wait on; an adapter with a push channel (PostgreSQL `LISTEN`)
    /// wakes it from its listener task (`notify`, and `wake_all` after a reconnect) and sets its
    /// tick by the channel's health.
    pub fn watcher(&self) -> Arc<Watcher> {
        Arc::clone(&self.core.watcher)
    }

    /// How many reads of waiting reads the re-read batcher served, with how many statements (for
    /// diagnostics and tests).
    pub fn reread_stats(&self) -> RereadStats {
        self.core.rereads.stats()
    }

    /// Hands a background task to the store, to be aborted on `close` or drop.
    pub fn add_task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Runs one retention sweep now (the background sweeper does this periodically); returns
    /// how many streams were deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.core.check_open()?;
        self.core.sweep_once().await
    }

    fn abort_tasks(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl<D: SqlDialect> Drop for SqlStore<D> {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

impl<D: SqlDialect> Core<D> {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// A read's outcome, with any error it met after `close` reported as `Closed`: close shuts
    /// the pools under a read in flight, whose statement then fails with a pool or I/O error
    /// that says nothing about the database. Reads only: they change nothing, so no outcome is
    /// hidden by the rewrite (an append cut off by close keeps its `Unavailable`, outcome
    /// unknown).
    fn closed_or<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(e) if e.kind() != ErrorKind::Closed && self.check_open().is_err() => {
                Err(Error::closed().with_source(e))
            }
            other => other,
        }
    }

    /// Runs `attempt` until it is done, repeating it (with a short growing pause) when it lost a
    /// creation race or the database rolled it back. Only safe because an attempt that did not
    /// commit wrote nothing.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>>>,
    {
        let mut tries = 0u32;
        loop {
            self.check_open()?;
            tries += 1;
            match attempt().await {
                Ok(Attempt::Done(v)) => return Ok(v),
                Ok(Attempt::Retry) if tries < MAX_ATTEMPTS => {}
                Err(e) if tries < MAX_ATTEMPTS && RolledBack::is_marked(&e) => {}
                Ok(Attempt::Retry) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "the stream was created and deleted concurrently too often",
                    ))
                }
                Err(e) => return Err(e),
            }
            // Jittered, so that two transactions that deadlocked do not collide again.
            let ms = rand::random::<u64>() % (1u64 << tries.min(7));
            tokio::time::sleep(Duration::from_millis(ms + 1)).await;
        }
    }

    /// The head of `stream` if it exists and has not expired.
    async fn live_head(&self, stream: &StreamId) -> Result<Option<HeadRow>> {
        let mut conn = self.dialect.connection().await?;
        self.live_head_on(&mut conn, stream).await
    }

    /// [`Self::live_head`] on a connection the caller holds.
    async fn live_head_on(&self, conn: &mut D::Conn, stream: &StreamId) -> Result<Option<HeadRow>> {
        let head = self.dialect.head(conn, stream).await?;
        Ok(head.filter(|h| !is_expired(h, now_ms())))
    }

    async fn append_once(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<Attempt<(AppendResult, bool)>> {
        let d = &self.dialect;
        let mut tx = d.begin().await?;
        let now = now_ms();
        let mut head = d.lock_head(&mut tx, stream).await?;
        if head.as_ref().is_some_and(|h| is_expired(h, now)) {
            // Retention fired and the sweeper has not run yet: the stream is gone, and this
            // append (if it is allowed) starts a new incarnation.
            d.delete_stream(&mut tx, stream).await?;
            head = None;
        }
        let found = match (&head, key) {
            (Some(h), Some((k, _))) => d
                .find_key(&mut tx, stream, k)
                .await?
                .filter(|row| row.result.incarnation == h.head.incarnation),
            _ => None,
        };
        let engine_head = head
            .as_ref()
            .map(|h| h.to_stream_head(key.zip(found.as_ref()).map(|((k, _), row)| (k, row))));
        let decision = StreamHead::decide(stream, engine_head.as_ref(), expect, key, now)?;
        let (first_offset, timestamp_ms, create) = match decision {
            // Dropping `tx` rolls back (it wrote nothing, or only an expired stream's removal,
            // which is invisible either way).
            Decision::Duplicate(result) => return Ok(Attempt::Done((result, false))),
            Decision::Write {
                first_offset,
                timestamp_ms,
                create,
            } => (first_offset, timestamp_ms, create),
        };
        let mut h = match head {
            Some(h) if !create => h,
            _ => HeadRow::new(now),
        };
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let result = AppendResult {
            first_offset,
            count,
            incarnation: h.head.incarnation,
            timestamp_ms,
        };
        h.head.next_offset = first_offset + count;
        h.head.bytes += bytes;
        h.head.last_append_ms = timestamp_ms;
        let window = self.options.key_window();
        let mut prune = false;
        if key.is_some() {
            h.key_count += 1;
            // Pruning (below, in this transaction) leaves `window` keys.
            if h.key_count >= window.saturating_mul(2) {
                prune = true;
                h.key_count = window;
            }
        }
        // A new stream's head is inserted first, with its final values: if another transaction
        // created the stream meanwhile, the insert finds its row and this attempt starts over
        // (and then sees that stream), instead of colliding on the records' primary key.
        if create && !d.insert_head(&mut tx, stream, &h).await? {
            return Ok(Attempt::Retry);
        }
        // The usual case (an existing stream, nothing to trim) writes the records and the head
        // together: one statement where the database allows it.
        let trims = !create && must_trim(&h);
        let inserted = if create || trims {
            d.insert_records(
                &mut tx,
                stream,
                h.head.incarnation,
                first_offset,
                timestamp_ms,
                records,
            )
            .await
        } else {
            d.append_records(&mut tx, stream, &h, first_offset, timestamp_ms, records)
                .await
        };
        if let Err(e) = inserted {
            return Err(self.with_actual_next(e, stream, tx).await);
        }
        if trims {
            self.enforce_max_bytes(&mut tx, stream, &mut h).await?;
            d.update_head(&mut tx, stream, &h).await?;
        }
        if let Some((k, digest)) = key {
            d.insert_key(&mut tx, stream, k, &KeyRow { result, digest })
                .await?;
            if prune {
                d.prune_keys(&mut tx, stream, window).await?;
            }
        }
        d.commit(tx).await?;
        Ok(Attempt::Done((result, true)))
    }

    /// After a committed change of `stream`: wakes this process's waiting readers, and (through
    /// the dialect, e.g. PostgreSQL `NOTIFY`) other processes'. Never called before the commit
    /// returned, so a woken reader sees the change.
    fn changed(&self, stream: &StreamId) {
        self.watcher.notify(stream);
        self.dialect.changed(stream);
    }

    /// The unique key on `(stream_id, off)` refused a record: the head lock should make that
    /// impossible, so report the conflict with the stream's real next offset.
    async fn with_actual_next(&self, e: Error, stream: &StreamId, tx: D::Tx) -> Error {
        if !matches!(e.kind(), ErrorKind::Conflict { .. }) {
            return e;
        }
        drop(tx);
        match self.live_head(stream).await {
            Ok(h) => Error::conflict(
                h.map_or(0, |h| h.head.next_offset),
                "an offset of this batch was taken by another append",
            )
            .with_source(e),
            Err(read_error) => read_error,
        }
    }

    /// Trims the oldest records while the stream holds more than `retention.max_bytes`, never
    /// the newest record (the reference store's rule).
    async fn enforce_max_bytes(
        &self,
        tx: &mut D::Tx,
        stream: &StreamId,
        h: &mut HeadRow,
    ) -> Result<()> {
        let Some(max) = h.head.retention.max_bytes.filter(|_| must_trim(h)) else {
            return Ok(());
        };
        let newest = h.head.next_offset - 1;
        let cut = self
            .dialect
            .bytes_cut(tx, stream, h.head.first_offset, h.head.bytes - max)
            .await?;
        let new_first = cut.map_or(newest, |o| (o + 1).min(newest));
        self.trim_head(tx, stream, h, new_first).await
    }

    async fn trim_head(
        &self,
        tx: &mut D::Tx,
        stream: &StreamId,
        h: &mut HeadRow,
        new_first: u64,
    ) -> Result<()> {
        if new_first > h.head.first_offset {
            let removed = self
                .dialect
                .delete_records_below(tx, stream, new_first)
                .await?;
            h.head.bytes = h.head.bytes.saturating_sub(removed);
            h.head.first_offset = new_first;
        }
        Ok(())
    }

    /// Locks the live head of `stream` in `tx`: `NotFound` if it does not exist or expired.
    async fn lock_live(&self, tx: &mut D::Tx, stream: &StreamId) -> Result<HeadRow> {
        match self.dialect.lock_head(tx, stream).await? {
            Some(h) if !is_expired(&h, now_ms()) => Ok(h),
            _ => Err(Error::not_found(stream)),
        }
    }

    /// Reads now. A read of a waiting read (`waiting`) gets its head, and usually its records,
    /// from the re-read batcher (the reads of a burst of waiters share its statements), and
    /// checks them as any read checks its own; it reads on its own, on the wait pool, whatever
    /// the batcher left out (a cut page, a trim or delete in between). Also returns the stream's
    /// time-based expiry (ms since the epoch), if it exists and has one.
    async fn read_now(
        self: &Arc<Self>,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
        waiting: bool,
    ) -> Result<(ReadBatch, Option<u64>)> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        // Checked first: a closed store's pool refuses the connection with another error.
        self.check_open()?;
        let mut prefetched = if waiting {
            let wanted = Wanted {
                stream: stream.clone(),
                from,
                max_records,
                max_bytes,
            };
            Some(self.rereads.reread(wanted).await?)
        } else {
            None
        };
        // Every statement of a read after the batch on one connection, taken when first needed:
        // one pool acquisition per read (a sealed or unchanged stream needs none).
        let mut conn = None;
        for _ in 0..MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Prefetched { head, mut records } = match prefetched.take() {
                Some(p) => p,
                None => {
                    let c = self.conn(&mut conn, waiting).await?;
                    Prefetched {
                        head: self.dialect.head(c, stream).await?,
                        records: None,
                    }
                }
            };
            let Some(h) = head.filter(|h| !is_expired(h, now_ms())) else {
                return Ok((ReadBatch::missing(from), None));
            };
            let expires_ms = h.head.expires_ms();
            let mut batch = h.head.empty_read(from)?;
            if from >= h.head.next_offset {
                return Ok((batch, expires_ms));
            }
            let records = match records.take() {
                Some(r) => r,
                None => {
                    let range = record_range(&h, from, max_records, max_bytes);
                    let c = self.conn(&mut conn, waiting).await?;
                    self.dialect.records(c, stream, &range).await?
                }
            };
            // Every record in `from..end` was committed before the head was read, so only a trim
            // or a delete (new incarnation) running in between can leave a hole: read again.
            if batch.take_contiguous(records) {
                return Ok((batch, expires_ms));
            }
        }
        Err(Error::kept_changing(stream))
    }

    /// The read's connection in `slot`, taken from the pool (the wait pool for a waiting read)
    /// when first needed.
    async fn conn<'c>(
        &self,
        slot: &'c mut Option<D::Conn>,
        waiting: bool,
    ) -> Result<&'c mut D::Conn> {
        if slot.is_none() {
            *slot = Some(self.acquire(waiting).await?);
        }
        slot.as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no connection"))
    }

    /// A connection for a read: from the wait pool for a waiting read.
    async fn acquire(&self, waiting: bool) -> Result<D::Conn> {
        if waiting {
            self.dialect.wait_connection().await
        } else {
            self.dialect.connection().await
        }
    }

    async fn sweep_loop(self: Arc<Self>, every: Duration) {
        let open = || self.check_open().is_ok();
        streamstore::implementor::wait::sweep_periodically(every, open, || self.sweep_once()).await;
    }

    async fn sweep_once(&self) -> Result<usize> {
        let ids = self.dialect.expired(now_ms(), SWEEP_BATCH).await?;
        let mut deleted = 0;
        for id in ids {
            let gone = self
                .retrying(|| async {
                    let d = &self.dialect;
                    let mut tx = d.begin().await?;
                    // Checked again under the lock: an append may have revived the stream.
                    let due = d
                        .lock_head(&mut tx, &id)
                        .await?
                        .is_some_and(|h| is_expired(&h, now_ms()));
                    if due {
                        d.delete_stream(&mut tx, &id).await?;
                        d.commit(tx).await?;
                    }
                    Ok(Attempt::Done(due))
                })
                .await?;
            if gone {
                self.changed(&id);
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl<D: SqlDialect> StreamStore for SqlStore<D> {
    fn capabilities(&self) -> Capabilities {
        self.core.options.capabilities
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        let core = &self.core;
        core.check_open()?;
        let caps = &core.options.capabilities;
        let (bytes, digest) =
            check_append(stream, &records, options.idempotency_key.as_ref(), caps)?;
        let key = options.idempotency_key.as_ref().zip(digest);
        let (result, wrote) = core
            .retrying(|| core.append_once(stream, &records, bytes, options.expect, key))
            .await?;
        if wrote {
            core.changed(stream);
        }
        Ok(result)
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        check_read(&options, &self.core.options.capabilities)?;
        let core = &self.core;
        core.check_open()?;
        let Some(wait) = options.wait else {
            let read = core.read_now(stream, from, &options, false).await;
            return core.closed_or(read.map(|(batch, _)| batch));
        };
        // The watcher is armed before the read it guards, so a change committed in between
        // still wakes this wait: through `changed` for writes of this store, a push channel's
        // notification, or the watcher's next head read for writers elsewhere. There is no
        // per-waiter poll. Every read of a waiting read, the first one included, goes through
        // the re-read batcher and the wait pool: a burst of readers arriving (or re-arming after
        // a wake storm) costs batched statements, queued there and not in front of writes. A
        // read that reached the stream's end leaves a memo on the watcher, and the next waiting
        // read from there parks on it without a statement while nothing changed (one read per
        // wake-up, not two).
        let read = wait_on_watcher(
            &core.watcher,
            stream,
            from,
            wait,
            options.incarnation,
            |_| core.read_now(stream, from, &options, true),
        )
        .await;
        core.closed_or(read)
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let core = &self.core;
        let (info, sealed_now) = core
            .retrying(|| async {
                let d = &core.dialect;
                let mut tx = d.begin().await?;
                let mut h = core.lock_live(&mut tx, stream).await?;
                let sealed_now = h.head.sealed_ms.is_none();
                if sealed_now {
                    h.head.sealed_ms = Some(now_ms());
                    d.update_head(&mut tx, stream, &h).await?;
                    d.commit(tx).await?;
                }
                Ok(Attempt::Done((h.head.info(stream), sealed_now)))
            })
            .await?;
        if sealed_now {
            core.changed(stream);
        }
        Ok(info)
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let core = &self.core;
        if !core.options.capabilities.trim {
            return Err(Error::unsupported("trim"));
        }
        core.retrying(|| async {
            let d = &core.dialect;
            let mut tx = d.begin().await?;
            let mut h = core.lock_live(&mut tx, stream).await?;
            let target = h.head.trim_target(before);
            if target > h.head.first_offset {
                core.trim_head(&mut tx, stream, &mut h, target).await?;
                d.update_head(&mut tx, stream, &h).await?;
                d.commit(tx).await?;
            }
            Ok(Attempt::Done(h.head.first_offset))
        })
        .await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let core = &self.core;
        if !core.options.capabilities.delete {
            return Err(Error::unsupported("delete"));
        }
        let existed = core
            .retrying(|| async {
                let d = &core.dialect;
                let mut tx = d.begin().await?;
                let Some(h) = d.lock_head(&mut tx, stream).await? else {
                    return Ok(Attempt::Done(false));
                };
                d.delete_stream(&mut tx, stream).await?;
                d.commit(tx).await?;
                // An expired stream was already gone as far as callers could see.
                Ok(Attempt::Done(!is_expired(&h, now_ms())))
            })
            .await?;
        core.changed(stream);
        Ok(existed)
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.core.check_open()?;
        match self.core.live_head(stream).await? {
            Some(h) => Ok(h.head.info(stream)),
            None => Err(Error::not_found(stream)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let core = &self.core;
        core.check_open()?;
        if !core.options.capabilities.list {
            return Err(Error::unsupported("list"));
        }
        let limit = if options.limit == 0 {
            1000
        } else {
            options.limit
        };
        let fetch = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let query = ListQuery::new(&options.prefix, options.after.as_ref(), fetch);
        let mut streams = core.dialect.list(&query, now_ms()).await?;
        let more = streams.len() > limit;
        streams.truncate(limit);
        let next_after = if more { streams.last().cloned() } else { None };
        Ok(ListPage {
            streams,
            next_after,
        })
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        let core = &self.core;
        if !core.options.capabilities.retention {
            return Err(Error::unsupported("retention"));
        }
        core.retrying(|| async {
            let d = &core.dialect;
            let mut tx = d.begin().await?;
            let mut h = core.lock_live(&mut tx, stream).await?;
            h.head.retention = retention;
            core.enforce_max_bytes(&mut tx, stream, &mut h).await?;
            d.update_head(&mut tx, stream, &h).await?;
            d.commit(tx).await?;
            Ok(Attempt::Done(()))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let core = &self.core;
        if core.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.abort_tasks();
        core.watcher.close();
        core.dialect.close().await;
        Ok(())
    }
}
