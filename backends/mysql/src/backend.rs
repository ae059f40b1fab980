//! `MysqlStore`: the `StreamStore` over MySQL 8 or MariaDB.

use std::str::FromStr;
use streamstore::implementor::ErrorShorthand;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{Executor, MySql};
use streamstore::{Error, Result, WaitMechanism};
use streamstore_sql::{capabilities, pool_options, SqlStore, StoreOptions};

use crate::config::MysqlConfig;
use crate::core::MysqlCore;
use crate::error::parse_mysql_error;

/// Largest payload of one record (the column is `MEDIUMBLOB`, up to 16 MiB; a batch travels in
/// one packet per chunk, so records are kept well below `max_allowed_packet`).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Idempotency keys remembered per stream (at least; pruning runs at twice as many).
pub const KEYS_PER_STREAM: usize = 1024;

/// A `StreamStore` over MySQL 8 or MariaDB (InnoDB).
///
/// Streams live in `<prefix>streams` (one head row each), `<prefix>records` and
/// `<prefix>idempotency`; several processes may share the same tables. MySQL has no push
/// notification: one watcher per store object polls the change index of the streams table
/// (`changed_us`, see `changes.rs`) every tick for the waited-on streams (readers in the same
/// store object are woken at once by its own writes).
pub struct MysqlStore {
    inner: SqlStore<MysqlCore>,
}

fn connect_options(config: &MysqlConfig) -> Result<MySqlConnectOptions> {
    MySqlConnectOptions::from_str(config.driver_url())
        .map_err(|e| Error::invalid("invalid MySQL URL options").with_source(e))
}

impl MysqlStore {
    /// Connects to `url` and uses the tables of `prefix`, creating them if needed.
    ///
    /// ```no_run
    /// # async fn f() -> streamstore::Result<()> {
    /// let store = streamkeep_mysql::MysqlStore::connect(
    ///     "mysql://streamstore:streamstore@127.0.0.1:53306/streamstore",
    ///     "app_",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::open(MysqlConfig::from_url(url)?.with_prefix(prefix)?).await
    }

    /// Connects to `url`, taking the prefix from its `table_prefix` option (default
    /// `streamstore_`). This is what `--store mysql://…` uses.
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::open(MysqlConfig::from_url(url)?).await
    }

    /// Connects with `config`: creates or migrates the schema and starts the retention sweeper.
    pub async fn open(config: MysqlConfig) -> Result<Self> {
        let options = connect_options(&config)?;
        let pool = pool_options::<MySql>(config.max_connections, config.acquire_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // READ COMMITTED: locking reads of missing rows take no gap locks (the
                    // classic deadlock of concurrent stream creation), and each statement
                    // reads the latest committed state, which the read path relies on.
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    conn.execute("SET SESSION innodb_lock_wait_timeout = 10")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(parse_mysql_error)?;
        let wait_pool = pool_options::<MySql>(config.wait.connections, config.acquire_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // As above: each statement reads the latest committed state.
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
        let core = MysqlCore::open(pool, wait_pool, &options, config.prefix()).await?;
        let inner = SqlStore::new(
            core,
            StoreOptions {
                capabilities: capabilities(
                    MAX_RECORD_BYTES,
                    KEYS_PER_STREAM,
                    WaitMechanism::Poll {
                        max_interval: config.wait.tick,
                    },
                ),
                watch: config.wait.watch_options(config.wait.tick),
                sweep_interval: Some(config.sweep_interval),
            },
        );
        Ok(MysqlStore { inner })
    }

    /// Drops the tables of `prefix` (every stream in them). Other stores using them must be
    /// closed first.
    pub async fn destroy(url: &str, prefix: &str) -> Result<()> {
        let config = MysqlConfig::from_url(url)?.with_prefix(prefix)?;
        MysqlCore::destroy(&connect_options(&config)?, config.prefix()).await
    }

    /// Runs one retention sweep now (the background sweeper runs every `sweep_interval`);
    /// returns how many streams it deleted.
    pub async fn sweep(&self) -> Result<usize> {
        self.inner.sweep().await
    }

    /// The connection pool (for diagnostics and tests).
    pub fn pool(&self) -> &MySqlPool {
        self.inner.dialect().pool()
    }

    /// How many woken waiting reads the re-read batcher served, with how many statements (for
    /// diagnostics and tests).
    pub fn reread_stats(&self) -> streamstore_sql::RereadStats {
        self.inner.reread_stats()
    }

    /// The watcher of this store's waiting reads (for diagnostics: its `stats`).
    pub fn watcher(&self) -> std::sync::Arc<streamstore::implementor::wait::Watcher> {
        self.inner.watcher()
    }
}

streamstore_sql::forward_stream_store!(MysqlStore, inner);
