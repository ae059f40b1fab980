//! `DynamoDbStore`: the `StreamStore` over one DynamoDB table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::{prepare_append, OpenFlag, Tasks};
use streamstore::implementor::{ErrorShorthand, ListPageParts};

use async_trait::async_trait;
use bytes::Bytes;
use streamstore::implementor::validate::{check_read, now_ms};
use streamstore::implementor::wait::{wait_on_watcher, HeadSource, WatchOptions, Watcher};
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, ErrorKind, IdempotencyWindow, ListOptions,
    ListPage, ReadBatch, ReadOptions, Result, Retention, StreamId, StreamInfo, StreamStore,
    WaitMechanism,
};

use crate::append::HeadCache;
use crate::config::DynamoDbConfig;
use crate::core::{Db, BATCH_GET_KEYS};
use crate::error::Outcome;
use crate::model::{
    self, be, head_id, head_item, item_key, keys_pk, opt_u64, parse_chunk, parse_head, records_pk,
    Head, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES,
};

/// Idempotency keys are items that live as long as their incarnation (never pruned): at least
/// this many per stream are remembered, in fact all of them.
pub const KEYS_PER_STREAM: usize = 1024;

/// Attempts of a head update (seal, trim, retention, delete) that lost a race for the head.
const MAX_HEAD_ATTEMPTS: u32 = 100;

/// What this adapter declares.
pub fn capabilities(poll: Duration) -> Capabilities {
    Capabilities {
        max_record_bytes: MAX_RECORD_BYTES,
        max_batch_records: MAX_BATCH_RECORDS,
        max_batch_bytes: MAX_BATCH_BYTES,
        idempotency: Some(IdempotencyWindow {
            keys_per_stream: KEYS_PER_STREAM,
            max_age: None,
        }),
        wait: WaitMechanism::Poll { max_interval: poll },
        trim: true,
        delete: true,
        retention: true,
        list: true,
        persistent: true,
        // DynamoDB acknowledges a write only once it is durable (replicated): a durable read is
        // a plain read.
        durable_reads: true,
        ..Capabilities::default()
    }
}

/// Whether `max_bytes` retention must trim `h`: it holds more than the limit, and more than the
/// newest record (which is never trimmed).
pub(crate) fn must_trim(h: &Head) -> bool {
    let hd = &h.head;
    hd.retention
        .max_bytes
        .is_some_and(|max| hd.bytes > max && hd.next_offset - hd.first_offset > 1)
}

/// A `StreamStore` over one DynamoDB table (see the crate docs for the model).
///
/// Several processes may share the table. Waiting reads are served by one [`Watcher`] per store
/// object: it reads the heads of every waited-on stream, 100 per `BatchGetItem`, once per poll
/// interval, and appends made through the same store object wake their readers at once.
pub struct DynamoDbStore {
    core: Arc<Core>,
    /// Aborted when the store closes or is dropped.
    tasks: Tasks,
}

pub(crate) struct Core {
    pub(crate) db: Arc<Db>,
    /// The head each stream had after this process's last append to it (see `append.rs`).
    pub(crate) heads: HeadCache,
    watcher: Arc<Watcher>,
    open: OpenFlag,
    caps: Capabilities,
}

/// The watcher's batched head read.
struct Heads(Arc<Db>);

#[async_trait]
impl HeadSource for Heads {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.0.marks(streams).await
    }
}

impl DynamoDbStore {
    /// Opens the store on the table named in `url`
    /// (`dynamodb://host:port/table?region=...`, or `dynamodb://aws/table` for AWS), creating
    /// the table if needed.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store =
    ///     streamkeep_dynamodb::DynamoDbStore::connect_url("dynamodb://127.0.0.1:58000/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::open(DynamoDbConfig::from_url(url)?).await
    }

    /// Opens the store with `config`: creates the table if needed (idempotent; waits until it
    /// is `ACTIVE`) and starts the retention sweeper.
    pub async fn open(config: DynamoDbConfig) -> Result<Self> {
        let db = Arc::new(Db::new(&config)?);
        db.ensure_table().await?;
        let watcher = Arc::new(Watcher::new(
            Arc::new(Heads(Arc::clone(&db))),
            WatchOptions {
                tick: config.poll_interval,
                batch: BATCH_GET_KEYS,
                ..WatchOptions::default()
            },
        ));
        let core = Arc::new(Core {
            db,
            heads: HeadCache::default(),
            watcher,
            open: OpenFlag::default(),
            caps: capabilities(config.poll_interval),
        });
        let sweeper = {
            let core = Arc::clone(&core);
            let every = config.sweep_interval;
            tokio::spawn(async move { core.sweep_loop(every).await })
        };
        Ok(DynamoDbStore {
            core,
            tasks: Tasks::new([sweeper]),
        })
    }

    /// Deletes the table of `config` (every stream in it). Other stores using it must be closed
    /// first.
    pub async fn destroy(config: &DynamoDbConfig) -> Result<()> {
        Db::new(config)?.delete_table().await
    }

    /// Runs one retention sweep now (the background sweeper runs every `sweep_interval`);
    /// returns how many streams it deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.core.check_open()?;
        self.core.sweep_once().await
    }

    /// For each of `streams` (at most 100: one `BatchGetItem`) that exists and has not expired,
    /// a mark that changes with every append, seal, trim, retention change, delete and
    /// re-creation. The batched head read a shared waiter task polls.
    pub async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.core.check_open()?;
        self.core.db.marks(streams).await
    }

    /// The store's watcher (for its [`Watcher::stats`]: diagnostics, tests and benchmarks).
    pub fn watcher(&self) -> Arc<Watcher> {
        Arc::clone(&self.core.watcher)
    }
}

impl std::fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.core.db.table())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn check_open(&self) -> Result<()> {
        self.open.check()
    }

    pub(crate) async fn live_head(&self, stream: &StreamId) -> Result<Option<Head>> {
        let h = self.db.head(stream).await?;
        Ok(h.filter(|h| !h.head.is_expired(now_ms())))
    }

    /// Writes `new` over the head `old` if it has not changed since it was read. `Ok(false)`:
    /// it changed (or the outcome is unknown: the caller reads the head again and decides).
    async fn replace_head(&self, stream: &StreamId, old: &Head, mut new: Head) -> Result<bool> {
        new.version = old.version + 1;
        // The cached head is about to be (or may have been) replaced: appends read it again.
        self.heads.forget(stream);
        let values = HashMap::from([
            (":i".to_owned(), model::n(old.head.incarnation.0)),
            (":v".to_owned(), model::n(old.version)),
        ]);
        match self
            .db
            .put_if(head_item(stream, &new), "i = :i AND v = :v", values)
            .await
        {
            Ok(applied) => Ok(applied),
            Err((_, Outcome::Unknown)) => Ok(false),
            Err((e, Outcome::NotApplied)) if e.kind() == ErrorKind::Unavailable => Ok(false),
            Err((e, Outcome::NotApplied)) => Err(e),
        }
    }

    /// Runs `step` on the live head of `stream` until it reports a result (`Some`): `NotFound`
    /// if there is none. Each `None` means the head changed under it.
    async fn with_live_head<T, F, Fut>(&self, stream: &StreamId, mut step: F) -> Result<T>
    where
        F: FnMut(Head) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        for tries in 0..MAX_HEAD_ATTEMPTS {
            self.check_open()?;
            let Some(h) = self.live_head(stream).await? else {
                return Err(Error::not_found(stream));
            };
            if let Some(v) = step(h).await? {
                return Ok(v);
            }
            let ms = rand::random::<u64>() % (1u64 << tries.min(5));
            tokio::time::sleep(Duration::from_millis(ms + 1)).await;
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("stream {stream:?} kept changing"),
        ))
    }

    /// The offset `o` such that removing records `first..=o` frees at least `excess` bytes (or
    /// the stream's last record if even all of them do not).
    async fn bytes_cut(&self, stream: &StreamId, h: &Head, excess: u64) -> Result<u64> {
        let pk = records_pk(h.head.incarnation, stream);
        let first = h.head.first_offset;
        let mut freed = 0u64;
        let mut start = None;
        loop {
            let (items, next) = self.db.page_from(&pk, &be(first), 100, start).await?;
            for item in &items {
                for (offset, payload) in parse_chunk(item)?.records {
                    if offset < first {
                        continue;
                    }
                    freed += u64::try_from(payload.len()).unwrap_or(u64::MAX);
                    if freed >= excess || offset + 1 >= h.head.next_offset {
                        return Ok(offset);
                    }
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(h.head.next_offset.saturating_sub(1)),
            }
        }
    }

    /// Moves the first offset of `h` to `new_first` (if the head is unchanged), then deletes the
    /// chunks wholly below it. `Ok(false)`: the head changed; read it again.
    async fn trim_to(&self, stream: &StreamId, h: &Head, new_first: u64) -> Result<bool> {
        let pk = records_pk(h.head.incarnation, stream);
        let first = h.head.first_offset;
        let mut removed = 0u64;
        let mut dead = Vec::new();
        let mut start = None;
        'pages: loop {
            let (items, next) = self.db.page_from(&pk, &be(first), 100, start).await?;
            for item in &items {
                let chunk = parse_chunk(item)?;
                let last = chunk.records.last().map_or(0, |(o, _)| *o);
                for (offset, payload) in &chunk.records {
                    if *offset >= first && *offset < new_first {
                        removed += u64::try_from(payload.len()).unwrap_or(u64::MAX);
                    }
                }
                if last < new_first {
                    dead.push(item_key(&pk, be(last)));
                } else {
                    break 'pages;
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        let mut new = h.clone();
        new.head.first_offset = new_first;
        new.head.bytes = new.head.bytes.saturating_sub(removed);
        if !self.replace_head(stream, h, new).await? {
            return Ok(false);
        }
        // The head no longer covers these chunks: reads never serve them, whether this delete
        // happens or not (a failure leaves garbage until the stream is deleted).
        let _ = self.db.delete_keys(dead).await;
        Ok(true)
    }

    /// Trims the oldest records while the stream holds more than `retention.max_bytes`, never
    /// the newest record (the reference store's rule).
    pub(crate) async fn enforce_max_bytes(&self, stream: &StreamId) -> Result<()> {
        let result = self
            .with_live_head(stream, |h| async move {
                let Some(max) = h.head.retention.max_bytes.filter(|_| must_trim(&h)) else {
                    return Ok(Some(()));
                };
                let newest = h.head.next_offset - 1;
                let cut = self.bytes_cut(stream, &h, h.head.bytes - max).await?;
                let new_first = (cut + 1).min(newest);
                Ok(self.trim_to(stream, &h, new_first).await?.then_some(()))
            })
            .await;
        match result {
            // Deleted meanwhile: nothing left to trim.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Deletes the partitions of a finished incarnation. Best effort: they are never read again
    /// (every read goes through a head naming its incarnation).
    async fn drop_incarnation(&self, stream: &StreamId, h: &Head) {
        let _ = self
            .db
            .delete_partition(&records_pk(h.head.incarnation, stream))
            .await;
        let _ = self
            .db
            .delete_partition(&keys_pk(h.head.incarnation, stream))
            .await;
    }

    async fn sweep_loop(self: Arc<Self>, every: Duration) {
        let open = || self.check_open().is_ok();
        streamstore::implementor::wait::sweep_periodically(every, open, || self.sweep_once()).await;
    }

    async fn sweep_once(&self) -> Result<usize> {
        let now = now_ms();
        let mut deleted = 0;
        let mut start = None;
        loop {
            let (items, next) = self.db.expired_page(now, start).await?;
            for item in &items {
                let (id, h) = (head_id(item)?, parse_head(item)?);
                // Conditional on the version: an append that revived the stream wins.
                self.heads.forget(&id);
                if h.head.is_expired(now_ms())
                    && matches!(self.db.delete_head_if(&id, &h).await, Ok(true))
                {
                    self.watcher.notify(&id);
                    self.drop_incarnation(&id, &h).await;
                    deleted += 1;
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(deleted),
            }
        }
    }
}

#[async_trait]
impl StreamStore for DynamoDbStore {
    fn capabilities(&self) -> Capabilities {
        self.core.caps
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        let core = &self.core;
        let (bytes, key) = prepare_append(&core.open, stream, &records, &options, &core.caps)?;
        let (result, wrote) = core
            .append(stream, &records, bytes, options.expect, key)
            .await?;
        if wrote {
            core.watcher.notify(stream);
        }
        Ok(result)
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        let core = &self.core;
        check_read(&options, &core.caps)?;
        core.check_open()?;
        let Some(wait) = options.wait else {
            return core.read_now(stream, from, &options).await;
        };
        // Armed before the read it guards, so a change in between still wakes this wait.
        // A read that reached the stream's end leaves a memo on the watcher: the next waiting
        // read from there parks on it without a request while nothing changed.
        let options = &options;
        wait_on_watcher(
            &core.watcher,
            stream,
            from,
            wait,
            options.incarnation,
            |_| async move { Ok((core.read_now(stream, from, options).await?, None)) },
        )
        .await
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let core = &self.core;
        let (info, sealed_now) = core
            .with_live_head(stream, |h| async move {
                if h.head.sealed_ms.is_some() {
                    return Ok(Some((h.head.info(stream), false)));
                }
                let mut new = h.clone();
                new.head.sealed_ms = Some(now_ms());
                let info = new.head.info(stream);
                Ok(core
                    .replace_head(stream, &h, new)
                    .await?
                    .then_some((info, true)))
            })
            .await?;
        if sealed_now {
            core.watcher.notify(stream);
        }
        Ok(info)
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let core = &self.core;
        core.with_live_head(stream, |h| async move {
            let target = h.head.trim_target(before);
            if target <= h.head.first_offset {
                return Ok(Some(h.head.first_offset));
            }
            Ok(core.trim_to(stream, &h, target).await?.then_some(target))
        })
        .await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let core = &self.core;
        let mut unknown = false;
        for tries in 0..MAX_HEAD_ATTEMPTS {
            core.check_open()?;
            let Some(h) = core.db.head(stream).await? else {
                // After an unknown outcome, the head being gone is most likely this delete.
                return Ok(unknown);
            };
            core.heads.forget(stream);
            match core.db.delete_head_if(stream, &h).await {
                Ok(true) => {
                    core.watcher.notify(stream);
                    core.drop_incarnation(stream, &h).await;
                    // An expired stream was already gone as far as callers could see.
                    return Ok(!h.head.is_expired(now_ms()));
                }
                Ok(false) => {}
                Err((_, Outcome::Unknown)) => unknown = true,
                Err((e, Outcome::NotApplied)) if e.kind() == ErrorKind::Unavailable => {}
                Err((e, Outcome::NotApplied)) => return Err(e),
            }
            let ms = rand::random::<u64>() % (1u64 << tries.min(5));
            tokio::time::sleep(Duration::from_millis(ms + 1)).await;
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("stream {stream:?} kept changing"),
        ))
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
        let limit = options.page_size();
        let prefix = options.prefix.as_bytes();
        // Heads sort by id bytes: start at the prefix or after `after`, whichever is later, and
        // stop at the first id without the prefix.
        let after = options.after.as_ref().map(|a| a.as_str().as_bytes());
        let lower = match after {
            Some(a) if a >= prefix => Some((a, true)),
            _ if prefix.is_empty() => None,
            _ => Some((prefix, false)),
        };
        let now = now_ms();
        let mut found = Vec::new();
        let mut start = None;
        let fetch = i32::try_from(limit.saturating_add(1).min(1000)).unwrap_or(1000);
        'pages: loop {
            let (items, next) = core.db.heads_page(lower, fetch, start).await?;
            for item in &items {
                let id = head_id(item)?;
                if !id.as_str().as_bytes().starts_with(prefix) {
                    break 'pages;
                }
                if opt_u64(item, "x")?.is_some_and(|x| x <= now) {
                    continue;
                }
                found.push(id);
                if found.len() > limit {
                    break 'pages;
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(ListPage::from_fetched(found, limit))
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        let core = &self.core;
        core.with_live_head(stream, |h| async move {
            let mut new = h.clone();
            new.head.retention = retention;
            Ok(core.replace_head(stream, &h, new).await?.then_some(()))
        })
        .await?;
        core.enforce_max_bytes(stream).await
    }

    async fn close(&self) -> Result<()> {
        let core = &self.core;
        if !core.open.close() {
            return Ok(());
        }
        self.tasks.abort_all();
        core.watcher.close();
        Ok(())
    }
}
