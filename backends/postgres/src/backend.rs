//! `PostgresStore`: the `StreamStore` over PostgreSQL, and its `LISTEN` task.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use streamstore::implementor::wait::Watcher;
use streamstore::{Error, Result, StreamId, WaitMechanism};
use streamstore_sql::{capabilities, pool_options, SqlStore, StoreOptions, WaitSettings};

use crate::config::PostgresConfig;
use crate::core::PgCore;
use crate::error::parse_postgres_error;
use crate::notify::{self, Outbox};
use crate::shards::Subscriptions;

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

fn connect_options(config: &PostgresConfig) -> Result<(PgPoolOptions, PgConnectOptions)> {
    let connect = PgConnectOptions::from_str(config.driver_url())
        .map_err(|e| Error::invalid("invalid PostgreSQL URL options").with_source(e))?;
    let pool = pool_options(config.max_connections, config.acquire_timeout);
    Ok((pool, connect))
}

impl PostgresStore {
    /// Connects to `url` and uses the tables of `prefix`, creating them if needed.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store = streamkeep_postgres::PostgresStore::connect(
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
        let (pool_opts, connect) = connect_options(&config)?;
        let pool = pool_opts
            .connect_with(connect.clone())
            .await
            .map_err(parse_postgres_error)?;
        let wait_pool = pool_options(config.wait.connections, config.acquire_timeout)
            .connect_lazy_with(connect.clone());
        // A shard no head read asked for in this long is unlistened: far longer than a pass.
        let unlisten_after = (config.wait.push_tick * 5).max(Duration::from_secs(10));
        let core = PgCore::open(
            pool.clone(),
            wait_pool,
            config.prefix(),
            config.notify_shards,
            unlisten_after,
        )
        .await?;
        let subs = core.subscriptions();
        let outbox = core.outbox();
        let inner = SqlStore::new(
            core,
            StoreOptions {
                capabilities: capabilities(
                    MAX_RECORD_BYTES,
                    KEYS_PER_STREAM,
                    WaitMechanism::Push {
                        poll: config.wait.push_tick,
                    },
                ),
                // Short until the listener is up.
                watch: config.wait.watch_options(config.wait.tick),
                sweep_interval: Some(config.sweep_interval),
            },
        );
        let watcher = inner.watcher();
        inner.add_task(tokio::spawn(notify::send_loop(
            connect,
            Arc::clone(&subs),
            Arc::clone(&outbox),
        )));
        inner.add_task(tokio::spawn(listen(
            pool,
            subs,
            watcher,
            outbox,
            config.wait,
        )));
        Ok(PostgresStore { inner })
    }

    /// Drops the tables of `prefix` (every stream in them). Other stores using them must be
    /// closed first.
    pub async fn destroy(url: &str, prefix: &str) -> Result<()> {
        let config = PostgresConfig::from_url(url)?.with_prefix(prefix)?;
        let (pool_opts, connect) = connect_options(&config)?;
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

    /// How many woken waiting reads the re-read batcher served, with how many statements (for
    /// diagnostics and tests).
    pub fn reread_stats(&self) -> streamstore_sql::RereadStats {
        self.inner.reread_stats()
    }

    /// The watcher of this store's waiting reads (for diagnostics: [`Watcher::stats`]).
    pub fn watcher(&self) -> Arc<Watcher> {
        self.inner.watcher()
    }

    /// Backend process id of this store's notify connection, 0 while it has none (it connects
    /// on the first write). For tests that terminate it (`pg_terminate_backend`).
    #[doc(hidden)]
    pub fn notify_sender_pid(&self) -> u32 {
        self.inner.dialect().outbox().sender_pid()
    }

    /// Notifications this store object's listener received so far (its own included), and the
    /// notification channels (stream shards) it listens on now. For diagnostics and the
    /// waiters benchmark: a store object should receive about the notifications of the streams
    /// it has waiting readers for, not of every stream.
    pub fn notification_stats(&self) -> (u64, usize) {
        let subs = self.inner.dialect().subscriptions();
        (subs.received(), subs.listening())
    }
}

/// Fans `NOTIFY`s out to the waiting readers of each stream, listening on the channels (stream
/// shards) the watcher's head reads ask for (see `shards`).
///
/// The payload (a stream id) only says which waiters to wake; they re-read the database. While
/// the connection is up, the watcher polls only every `wait.push_tick` (the safety net for
/// notifications that never come, e.g. from a writer that died before sending); while it is
/// not, every `wait.tick`. Notifications in a gap are
/// lost, so every waiter is woken once the wanted channels are listened to again. Notifications
/// this store sent itself are skipped: its readers were woken directly.
async fn listen(
    pool: PgPool,
    subs: Arc<Subscriptions>,
    watcher: Arc<Watcher>,
    outbox: Arc<Outbox>,
    wait: WaitSettings,
) {
    loop {
        watcher.set_tick(wait.tick);
        subs.disconnected();
        let Ok(mut listener) = PgListener::connect_with(&pool).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        // A lost connection ends this listener (we connect a new one, then wake everyone), so
        // `try_recv` never reconnects by itself: cancelling it in `select!` below is then safe
        // (it only reads whole messages).
        listener.eager_reconnect(false);
        if !come_up(&mut listener, &subs).await {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        watcher.set_tick(wait.push_tick);
        watcher.wake_all();
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + subs.stale_after(),
            subs.stale_after(),
        );
        loop {
            tokio::select! {
                () = subs.kick.notified() => {
                    let (names, shards, generation) = subs.to_listen();
                    if !names.is_empty()
                        && listener.listen_all(names.iter().map(String::as_str)).await.is_err()
                    {
                        break;
                    }
                    subs.listened(&shards, generation, false);
                }
                _ = sweep.tick() => {
                    let mut failed = false;
                    for name in subs.take_stale() {
                        failed |= listener.unlisten(&name).await.is_err();
                    }
                    if failed {
                        break;
                    }
                }
                received = listener.try_recv() => match received {
                    Ok(Some(n)) => {
                        subs.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if outbox.sent_by_us(n.process_id()) {
                            continue;
                        }
                        if let Ok(id) = StreamId::new(n.payload()) {
                            watcher.notify(&id);
                        }
                    }
                    // The connection was lost: connect and listen again (and wake everyone
                    // then), polling fast until then.
                    Ok(None) => break,
                    Err(_) => {
                        watcher.wake_all();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                },
            }
        }
    }
}

/// Listens on every wanted channel of a new connection, then marks it up; `false` if the
/// connection failed.
async fn come_up(listener: &mut PgListener, subs: &Subscriptions) -> bool {
    loop {
        let (names, shards, generation) = subs.to_listen();
        if !names.is_empty()
            && listener
                .listen_all(names.iter().map(String::as_str))
                .await
                .is_err()
        {
            return false;
        }
        if subs.listened(&shards, generation, true) {
            return true;
        }
    }
}

streamstore_sql::forward_stream_store!(PostgresStore, inner);
