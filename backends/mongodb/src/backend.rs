//! `MongoStore`: the `StreamStore` over a MongoDB-compatible server, without transactions.
//!
//! Every write (append, seal, trim, retention change, delete) is the insert of one document:
//! the next entry of the stream's chain, holding the stream's complete state after it (see
//! `entry.rs`, `chain.rs` and `docs/backends.md`). The insert is the write's linearization
//! point; it succeeds for exactly one writer per slot. A writer that loses the slot walks to
//! the new end and decides again (key, then seal, then expectation: `StreamHead::decide`).
//!
//! This file holds the store object, its shared state and the walks every operation starts
//! with; appends are in `append.rs`, reads in `read.rs`, the other writes, `list` and the
//! retention sweeper in `admin.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use async_trait::async_trait;
use bytes::Bytes;
use mongodb::Client;
use streamstore::implementor::head::StreamHead;
use streamstore::implementor::validate::{check_append, check_read, now_ms};
use streamstore::implementor::wait::{wait_on_watcher, HeadSource, WatchOptions, Watcher};
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, IdempotencyWindow, ListOptions, ListPage,
    ReadBatch, ReadOptions, Result, Retention, StreamId, StreamInfo, StreamStore, WaitMechanism,
};
use tokio::task::JoinHandle;

use crate::chain::{start_of, walk, StartCache, Walked, HINT_AFTER_STEPS};
use crate::config::MongoConfig;
use crate::core::MongoCore;
use crate::entry::Entry;
use crate::error::parse_mongo_error;
use crate::marks::marks;

/// Largest payload of one record. A batch is one document, and a document is at most 16 MiB.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Most records in one append.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Largest payload of one append (one document, well below the 16 MiB document limit).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Transient errors (a restarting server, a busy SQLite file) are retried this often inside
/// one call before the call fails with `Unavailable`. Always safe: every insert carries a
/// claim that recognizes its own earlier attempt.
pub(crate) const MAX_TRANSIENT_RETRIES: u32 = 6;
/// Slots lost to other writers before an append gives up with `Unavailable` (only under
/// extreme contention; each loss means another writer made progress).
pub(crate) const MAX_LOST_SLOTS: u32 = 10_000;
/// Reads repeated when a trim or delete removed payloads between the head and the records.
pub(crate) const MAX_READ_ATTEMPTS: u32 = 8;
/// Streams examined per sweep.
pub(crate) const SWEEP_BATCH: u64 = 256;

/// A `StreamStore` over MongoDB 7 or FerretDB 1.24 (and other MongoDB-wire servers that keep
/// unique indexes atomic with an insert).
///
/// Streams live in `<prefix>log` (one document per write) and `<prefix>hints` (advisory);
/// several processes may share them. Waiting reads are woken at once by writes of this process
/// and by polling for writes of others.
pub struct MongoStore {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The state shared by the store object and its background tasks.
pub(crate) struct Inner {
    pub(crate) core: MongoCore,
    client: Client,
    /// One watcher per store: waiting reads cost one round of head reads per tick, however
    /// many there are; writes of this process wake them at once.
    pub(crate) watcher: Arc<Watcher>,
    /// The last entry this process saw of each stream: where walks start, and what an append
    /// first tries to follow (validated by its insert).
    pub(crate) cache: Arc<StartCache>,
    closed: AtomicBool,
    config: MongoConfig,
}

/// Whether the `max_bytes` rule must trim `h` (more than the limit, and more than the newest
/// record, which it never trims).
pub(crate) fn must_trim(h: &StreamHead) -> bool {
    h.retention
        .max_bytes
        .is_some_and(|max| h.bytes > max && h.next_offset - h.first_offset > 1)
}

/// Sleeps before retrying a transient error, or returns it once retries are used up.
pub(crate) async fn pause_or_fail(tries: &mut u32, e: Error) -> Result<()> {
    if !e.is_retryable() || *tries >= MAX_TRANSIENT_RETRIES {
        return Err(e);
    }
    *tries += 1;
    let ms = 50u64 << (*tries).min(5);
    tokio::time::sleep(Duration::from_millis(ms + rand::random::<u64>() % 50)).await;
    Ok(())
}

/// The watcher's head reads: one query for many streams' successor slots (`marks.rs`).
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

/// Streams per watcher query: one `$in` query per pass up to this many waited-on streams (on
/// FerretDB each query is a scan of the collection, so fewer, larger queries are cheaper).
const MARKS_BATCH: usize = 5000;

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
        let watcher = Arc::new(Watcher::new(
            Arc::new(Marks {
                core: core.clone(),
                cache: Arc::clone(&cache),
            }),
            WatchOptions {
                tick: config.poll_interval,
                batch: MARKS_BATCH,
                ..WatchOptions::default()
            },
        ));
        let inner = Arc::new(Inner {
            core,
            client,
            watcher,
            cache,
            closed: AtomicBool::new(false),
            config,
        });
        let sweeper = Arc::clone(&inner);
        let task = tokio::spawn(async move { sweeper.sweep_loop(sweep).await });
        Ok(MongoStore {
            inner,
            tasks: Mutex::new(vec![task]),
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
    /// reader could notice changes (an append, seal, trim, delete, re-creation, expiry): the
    /// slot of its last entry, hashed. What the store's [`Watcher`] reads every tick: `$in`
    /// queries stepping along all the streams' chains at once (one when nothing moved), then
    /// walks of the streams never seen or still moving (`marks.rs`).
    pub async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.inner.check_open()?;
        marks(&self.inner.core, &self.inner.cache, streams).await
    }

    /// The same marks by walking every stream (point reads by `_id`, 32 streams at a time): what
    /// the watcher did before the batched check. For the measurement in `tests/marks.rs` only.
    #[doc(hidden)]
    pub async fn heads_marks_by_walks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.inner.check_open()?;
        let walks = streams.iter().map(|s| (s.clone(), None)).collect();
        crate::marks::walked_marks(&self.inner.core, &self.inner.cache, walks).await
    }

    /// The store's watcher (for its [`Watcher::stats`]: diagnostics, tests and benchmarks).
    pub fn watcher(&self) -> Arc<Watcher> {
        Arc::clone(&self.inner.watcher)
    }

    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for MongoStore {
    fn drop(&mut self) {
        self.abort_tasks();
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
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// Walks `stream` from `start` (or the best known start) to its last entry, remembering it.
    pub(crate) async fn walk_from(
        &self,
        stream: &StreamId,
        start: Option<Entry>,
    ) -> Result<Option<Entry>> {
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
    pub(crate) async fn last_entry(&self, stream: &StreamId) -> Result<Option<Entry>> {
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
    pub(crate) async fn live(&self, stream: &StreamId) -> Result<Option<Entry>> {
        let now = now_ms();
        Ok(self
            .last_entry(stream)
            .await?
            .filter(|e| e.live_head(now).is_some()))
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
        inner.check_open()?;
        let caps = self.capabilities();
        let (bytes, digest) =
            check_append(stream, &records, options.idempotency_key.as_ref(), &caps)?;
        let key = options.idempotency_key.as_ref().zip(digest);
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
        // A read that reached the stream's end leaves a memo on the watcher: the next waiting
        // read from there parks on it without a request while nothing changed.
        let options = &options;
        wait_on_watcher(
            &inner.watcher,
            stream,
            from,
            wait,
            options.incarnation,
            |_| async move { Ok((inner.read_now(stream, from, options).await?, None)) },
        )
        .await
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.inner.check_open()?;
        self.inner.seal(stream).await
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        self.inner.check_open()?;
        self.inner.trim(stream, before).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        self.inner.check_open()?;
        self.inner.delete(stream).await
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.inner.check_open()?;
        match self.inner.live(stream).await? {
            Some(e) => Ok(e.head.info(stream)),
            None => Err(Error::not_found(stream)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.inner.check_open()?;
        self.inner.list(options).await
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        self.inner.check_open()?;
        self.inner.set_retention(stream, retention).await
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.abort_tasks();
        inner.watcher.close();
        inner.client.clone().shutdown().await;
        Ok(())
    }
}
