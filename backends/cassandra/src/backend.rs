//! `CassandraStore`: the `StreamStore` over Apache Cassandra, and its retention sweeper.

use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::{prepare_append, Tasks};

use async_trait::async_trait;
use bytes::Bytes;
use streamstore::implementor::validate::check_read;
use streamstore::implementor::wait::{
    wait_on_watcher, Changes, HeadSource, Timings, WatchOptions, Watcher,
};
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, IdempotencyWindow, ListOptions, ListPage,
    ReadBatch, ReadOptions, Result, Retention, StreamId, StreamInfo, StreamStore, WaitMechanism,
};

use crate::config::CassandraConfig;
use crate::core::{Ambiguity, Core, RollCrash, Written};

/// Largest payload of one record. A batch is one mutation of one partition, bounded by
/// Cassandra's `max_mutation_size` (half the 32 MiB commit log segment: 16 MiB) and the
/// native protocol's frame; 1 MiB records and 4 MiB batches stay well inside both.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Largest total payload of one append.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Idempotency keys remembered per stream: every key of the current bucket, and at least this
/// many of the most recent ones across a roll.
pub const KEYS_PER_STREAM: usize = 1024;

/// How far the watcher's tick may stray from the poll interval (`1 ± JITTER`), so the stores
/// of many processes do not poll in step.
const JITTER: f64 = 0.05;

/// The watcher's batched head reads: the marks of the streams waited on.
struct Marks(Arc<Core>);

#[async_trait]
impl HeadSource for Marks {
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.0.heads_marks(streams).await
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    /// The change hints since `since` (`core/hints.rs`): every head write leaves one after it
    /// succeeded; what a lost or late hint misses, the full pass finds.
    async fn changes(&self, since: Option<u64>) -> Result<Changes> {
        self.0.hinted_changes(since).await
    }
}

/// A `StreamStore` over Apache Cassandra (4.1 or later; tested on 5.0).
///
/// Each stream is a chain of partitions (buckets) of `<prefix>log`; every append is one
/// conditional batch in the current bucket (see the crate docs). Several processes may share
/// the tables. Waiting reads are served by one watcher per store object, which reads the change
/// hints of every head write each tick and the heads of every waited-on stream each full pass;
/// writes through the same store wake them at once.
pub struct CassandraStore {
    core: Arc<Core>,
    /// Every waiting read of this store object, polled by one task (issue 19).
    watcher: Arc<Watcher>,
    /// Aborted when the store closes or is dropped.
    tasks: Tasks,
}

impl std::fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraStore")
            .field("config", &self.core.config)
            .finish_non_exhaustive()
    }
}

/// What this adapter declares.
fn capabilities(config: &CassandraConfig) -> Capabilities {
    Capabilities {
        max_record_bytes: MAX_RECORD_BYTES,
        max_batch_records: 1000,
        max_batch_bytes: MAX_BATCH_BYTES,
        idempotency: Some(IdempotencyWindow {
            keys_per_stream: KEYS_PER_STREAM,
            max_age: None,
        }),
        wait: WaitMechanism::Poll {
            max_interval: config.poll_interval.mul_f64(1.0 + JITTER),
        },
        trim: true,
        delete: true,
        retention: true,
        list: true,
        persistent: true,
        // Every acknowledged append was committed at the write consistency level; with the
        // server's `commitlog_sync: batch` (or `group`) that is on disk before the answer.
        durable_reads: true,
        ..Capabilities::default()
    }
}

impl CassandraStore {
    /// Connects to `nodes` (`host:port`, comma-separated) and uses the tables of `prefix` in
    /// `keyspace`, creating them if needed.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store =
    ///     streamkeep_cassandra::CassandraStore::connect("127.0.0.1:9042", "app", "jobs_").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(nodes: &str, keyspace: &str, prefix: &str) -> Result<Self> {
        Self::open(CassandraConfig::new(nodes, keyspace)?.with_prefix(prefix)?).await
    }

    /// Connects to a `cassandra://host:port/keyspace?table_prefix=…` URL. This is what
    /// `--store cassandra://…` uses.
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::open(CassandraConfig::from_url(url)?).await
    }

    /// Connects with `config`: creates the keyspace and tables if needed (waiting for schema
    /// agreement), prepares the statements and starts the retention sweeper.
    pub async fn open(config: CassandraConfig) -> Result<Self> {
        let caps = capabilities(&config);
        let sweep_every = config.sweep_interval;
        let core = Arc::new(Core::open(config, caps).await?);
        let watcher = Arc::new(Watcher::new(
            Arc::new(Marks(Arc::clone(&core))),
            WatchOptions {
                tick: core.config.poll_interval,
                jitter: JITTER,
                full_pass: core.config.full_pass,
                ..WatchOptions::default()
            },
        ));
        let store = CassandraStore {
            core: Arc::clone(&core),
            watcher,
            tasks: Tasks::default(),
        };
        store
            .tasks
            .push(tokio::spawn(sweep_loop(core, sweep_every)));
        Ok(store)
    }

    /// Drops the tables of `config`'s prefix (every stream in them). Other stores using them
    /// must be closed first.
    pub async fn destroy(config: CassandraConfig) -> Result<()> {
        let mut builder =
            scylla::client::session_builder::SessionBuilder::new().known_nodes(&config.nodes);
        if let Some((user, password)) = config.credentials() {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.map_err(|e| {
            Error::new(
                streamstore::ErrorKind::Unavailable,
                "cannot connect to Cassandra",
            )
            .with_source(e)
        })?;
        crate::schema::drop_tables(&session, &config).await
    }

    /// Runs one retention sweep now (the background sweeper runs every `sweep_interval`);
    /// returns how many streams it deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.core.check_open()?;
        self.core.sweep_once().await
    }

    /// For each of `streams` that exists, a mark that changes whenever an append, seal,
    /// trim, delete or re-creation changes it (the batched head read of a shared waiter).
    pub async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.core.check_open()?;
        self.core.heads_marks(streams).await
    }

    /// [`CassandraStore::heads_marks`] read by `method` (for `tests/marks.rs`, which measures
    /// the methods side by side; the watcher uses the concurrent reads).
    #[doc(hidden)]
    pub async fn heads_marks_by(
        &self,
        streams: &[StreamId],
        method: crate::MarksMethod,
    ) -> Result<Vec<(StreamId, u64)>> {
        self.core.check_open()?;
        self.core.heads_marks_by(streams, method).await
    }

    /// The store's watcher (for its [`Watcher::stats`]: diagnostics, tests and benchmarks).
    pub fn watcher(&self) -> Arc<Watcher> {
        Arc::clone(&self.watcher)
    }

    /// The configuration in use.
    pub fn config(&self) -> &CassandraConfig {
        &self.core.config
    }

    /// The driver session (for diagnostics, tests and benchmarks).
    pub fn session(&self) -> &scylla::client::session::Session {
        &self.core.session
    }

    /// Test seam: the next bucket rolls stop after `step` with an `Unavailable` error, as if
    /// the process had crashed there.
    #[doc(hidden)]
    pub fn roll_crash_for_tests(&self, step: RollCrash) {
        self.core.set_roll_crash(step);
    }

    /// Test seam: stops (`false`) or resumes (`true`) writing change hints, as if every head
    /// write from now on were followed by a crash before its hint.
    #[doc(hidden)]
    pub fn hints_for_tests(&self, on: bool) {
        self.core.set_hints(on);
    }

    /// The watcher's change read (`HeadSource::changes`) of this store (for `tests/marks.rs`).
    #[doc(hidden)]
    pub async fn hinted_changes(&self, since: Option<u64>) -> Result<Changes> {
        self.core.check_open()?;
        self.core.hinted_changes(since).await
    }

    /// Change hints whose insert failed since the store opened (their changes reach waiting
    /// readers of other store objects at the watcher's next full pass instead of its next tick).
    pub fn lost_hints(&self) -> u64 {
        self.core.lost_hints()
    }

    /// How this store's waiting reads after a wake-up went: `(overlapped, sequential,
    /// statements)`, the reads served by the statement that reads the head and the records
    /// together, those that fell back to the head, then the records, and the statements the
    /// former ran (one each unless a reader was more than 32 records behind) (for tests and
    /// diagnostics).
    #[doc(hidden)]
    pub fn rereads(&self) -> (u64, u64, u64) {
        let r = &self.core.rereads;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (
            load(&r.overlapped),
            load(&r.sequential),
            load(&r.statements),
        )
    }

    /// How long this store's woken re-reads (`woken_reread`) and hint reads
    /// (`hint_read_narrow`, `hint_read_wide`, `core/hints.rs`) took, recorded while each is
    /// enabled (a diagnostics hook for benchmarks; the watcher's own are
    /// `Watcher::timings`).
    #[doc(hidden)]
    pub fn timings(&self) -> Vec<(&'static str, Arc<Timings>)> {
        let t = &self.core.timings;
        vec![
            ("woken_reread", Arc::clone(&t.reread)),
            ("hint_read_narrow", Arc::clone(&t.hint_narrow)),
            ("hint_read_wide", Arc::clone(&t.hint_wide)),
        ]
    }

    /// Test seam: the next append suffers `lost` (a lost reply or request, reported as a
    /// client-side timeout), so a test can check how the outcome is resolved.
    #[doc(hidden)]
    pub fn ambiguity_for_tests(&self, lost: Ambiguity) {
        self.core.set_ambiguity(Some(lost));
    }
}

async fn sweep_loop(core: Arc<Core>, every: Duration) {
    let open = || core.check_open().is_ok();
    streamstore::implementor::wait::sweep_periodically(every, open, || core.sweep_once()).await;
}

#[async_trait]
impl StreamStore for CassandraStore {
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
        let (result, written) = core
            .append(stream, &records, bytes, options.expect, key)
            .await?;
        if written != Written::Duplicate {
            self.watcher.notify(stream);
        }
        if written == Written::MustTrim {
            // `max_bytes` retention trims after the append; a failure here leaves the trim to
            // the next append and must not turn an applied append into an error.
            let _ = core.enforce_max_bytes(stream).await;
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
        // Every read after the first follows a wake-up (or the deadline): records are likely,
        // so the head and the records are read at once (`core/read.rs`).
        // A read that reached the stream's end leaves a memo on the watcher: the next waiting
        // read from there parks on it without a statement while nothing changed.
        let options = &options;
        wait_on_watcher(
            &self.watcher,
            stream,
            from,
            wait,
            options.incarnation,
            |after_wake| async move {
                let batch = core
                    .read_for_waiter(stream, from, options, after_wake)
                    .await?;
                Ok((batch, None))
            },
        )
        .await
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.core.check_open()?;
        let (info, sealed_now) = self.core.seal(stream).await?;
        if sealed_now {
            self.watcher.notify(stream);
        }
        Ok(info)
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        self.core.check_open()?;
        self.core.trim(stream, before).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        self.core.check_open()?;
        let existed = self.core.delete(stream).await?;
        self.watcher.notify(stream);
        Ok(existed)
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.core.check_open()?;
        self.core.info(stream).await
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.core.check_open()?;
        self.core.list(&options).await
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        self.core.check_open()?;
        self.core.set_retention(stream, retention).await
    }

    async fn close(&self) -> Result<()> {
        if self.core.close() {
            self.tasks.abort_all();
            self.watcher.close();
        }
        Ok(())
    }
}
