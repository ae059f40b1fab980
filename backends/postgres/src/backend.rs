//! `PostgresStore`: the `StreamStore` over PostgreSQL, and its `LISTEN` task.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use streamstore::wait::Notifiers;
use streamstore::{
    AppendOptions, AppendResult, Capabilities, Error, IdempotencyWindow, ListOptions, ListPage,
    ReadBatch, ReadOptions, Result, Retention, StreamId, StreamInfo, StreamStore, WaitMechanism,
};
use streamstore_sql::{SqlStore, StoreOptions};

use crate::config::PostgresConfig;
use crate::core::PgCore;
use crate::error::parse_postgres_error;

/// Largest payload of one record. PostgreSQL allows 1 GB per `bytea`, but a batch travels in
/// one statement and is held in memory on both sides; 1 MiB keeps that bounded.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Idempotency keys remembered per stream (at least; pruning runs at twice as many).
pub const KEYS_PER_STREAM: usize = 1024;

/// A `StreamStore` over PostgreSQL.
///
/// Streams live in `<prefix>streams` (one head row each), `<prefix>records` and
/// `<prefix>idempotency`; several processes may share the same tables. Waiting reads are woken
/// by `LISTEN/NOTIFY` within milliseconds of a commit, with polling as the fallback.
pub struct PostgresStore {
    inner: SqlStore<PgCore>,
}

fn pool_options(config: &PostgresConfig) -> Result<(PgPoolOptions, PgConnectOptions)> {
    let connect = PgConnectOptions::from_str(config.driver_url())
        .map_err(|e| Error::invalid("invalid PostgreSQL URL options").with_source(e))?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(60)));
    Ok((pool, connect))
}

impl PostgresStore {
    /// Connects to `url` and uses the tables of `prefix`, creating them if needed.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store = streamstore_postgres::PostgresStore::connect(
    ///     "postgres://streamstore:streamstore@127.0.0.1:55432/streamstore",
    ///     "app_",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::open(PostgresConfig::from_url(url)?.with_prefix(prefix)?).await
    }

    /// Connects to `url`, taking the prefix from its `table_prefix` option (default
    /// `streamstore_`). This is what `--store postgres://…` uses.
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::open(PostgresConfig::from_url(url)?).await
    }

    /// Connects with `config`: creates or migrates the schema, starts the `LISTEN` task and
    /// the retention sweeper.
    pub async fn open(config: PostgresConfig) -> Result<Self> {
        let (pool_opts, connect) = pool_options(&config)?;
        let pool = pool_opts
            .connect_with(connect)
            .await
            .map_err(parse_postgres_error)?;
        let core = PgCore::open(pool.clone(), config.prefix()).await?;
        let channel = core.channel().to_owned();
        let inner = SqlStore::new(
            core,
            StoreOptions {
                capabilities: capabilities(config.poll_interval),
                poll_min: config.poll_interval,
                poll_max: config.poll_interval,
                sweep_interval: Some(config.sweep_interval),
            },
        );
        let notifiers = inner.notifiers();
        inner.add_task(tokio::spawn(listen(pool, channel, notifiers)));
        Ok(PostgresStore { inner })
    }

    /// Drops the tables of `prefix` (every stream in them). Other stores using them must be
    /// closed first.
    pub async fn destroy(url: &str, prefix: &str) -> Result<()> {
        let config = PostgresConfig::from_url(url)?.with_prefix(prefix)?;
        let (pool_opts, connect) = pool_options(&config)?;
        let pool = pool_opts
            .max_connections(1)
            .connect_with(connect)
            .await
            .map_err(parse_postgres_error)?;
        let result = PgCore::destroy(&pool, config.prefix()).await;
        pool.close().await;
        result
    }

    /// Runs one retention sweep now (the background sweeper runs every `sweep_interval`);
    /// returns how many streams it deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.inner.sweep().await
    }

    /// The connection pool (for diagnostics and tests).
    pub fn pool(&self) -> &PgPool {
        self.inner.dialect().pool()
    }
}

fn capabilities(poll: Duration) -> Capabilities {
    Capabilities {
        max_record_bytes: MAX_RECORD_BYTES,
        max_batch_records: 1000,
        max_batch_bytes: 4 << 20,
        idempotency: Some(IdempotencyWindow {
            keys_per_stream: KEYS_PER_STREAM,
            max_age: None,
        }),
        wait: WaitMechanism::Push { poll },
        persistent: true,
        ..Capabilities::default()
    }
}

/// Fans `NOTIFY`s on `channel` out to the waiting readers of each stream.
///
/// The payload (a stream id) only says which waiters to wake; they re-read the database. When
/// the listening connection is lost, notifications in the gap are lost too, so every waiter is
/// woken once the channel is listened to again (and the readers' polling covers the gap).
async fn listen(pool: PgPool, channel: String, notifiers: Arc<Notifiers>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if listener.listen(&channel).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        notifiers.notify_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Ok(id) = StreamId::new(n.payload()) {
                        notifiers.notify(&id);
                    }
                }
                // The connection was lost; the next call reconnects and listens again.
                Ok(None) => notifiers.notify_all(),
                Err(_) => {
                    notifiers.notify_all();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl StreamStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        self.inner.append(stream, records, options).await
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        self.inner.read(stream, from, options).await
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.inner.seal(stream).await
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        self.inner.trim(stream, before).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        self.inner.delete(stream).await
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        self.inner.info(stream).await
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        self.inner.set_retention(stream, retention).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
