//! What the adapters' `config.rs`, `backend.rs` and `error.rs` share: the URL and table prefix
//! of a configuration, the pool settings, the capabilities, and the mapping of driver errors
//! that carry no database error code.

use std::fmt;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::{Connection, Database};
use streamstore::implementor::wait::WatchOptions;
use streamstore::{Capabilities, Error, ErrorKind, IdempotencyWindow, Result, WaitMechanism};

use crate::prefix::TablePrefix;
use crate::url::{DbUrl, DEFAULT_PREFIX};

/// Connections in the pool unless the URL says `max_connections=`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// How long to wait for a pooled connection before failing with `Unavailable`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections of the wait pool (the watcher's head reads and waiting reads' re-reads) unless
/// the URL says `wait_connections=`.
pub const DEFAULT_WAIT_CONNECTIONS: u32 = 2;
/// Streams per head-marks statement unless the URL says `wait_batch=`: 10,000 waited-on streams
/// cost two statements per tick.
pub const DEFAULT_WAIT_BATCH: u32 = 5000;
/// A pooled connection idle this long is pinged before it is handed out; fresher ones are not
/// (the ping would be a round trip on every statement of a busy store).
pub const IDLE_PING: Duration = Duration::from_secs(30);
/// How often the retention sweeper runs.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Records per append batch, at most.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Payload bytes per append batch, at most.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Where an adapter connects: the parsed URL and the table prefix (from the URL's
/// `table_prefix`, `streamstore_` by default, or set later). `Debug` never shows the password.
#[derive(Clone)]
pub struct DbTarget {
    url: DbUrl,
    prefix: TablePrefix,
}

impl DbTarget {
    /// Parses `url`, which must use one of `schemes` (see [`DbUrl::parse`]).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Self> {
        let url = DbUrl::parse(url, schemes)?;
        let prefix = match &url.prefix {
            Some(p) => p.clone(),
            None => TablePrefix::new(DEFAULT_PREFIX)?,
        };
        Ok(DbTarget { url, prefix })
    }

    /// Uses the tables of `prefix` (`[a-z][a-z0-9_]{0,30}`) instead.
    pub fn set_prefix(&mut self, prefix: &str) -> Result<()> {
        self.prefix = TablePrefix::new(prefix)?;
        Ok(())
    }

    /// The table prefix.
    pub fn prefix(&self) -> &TablePrefix {
        &self.prefix
    }

    /// `notify_shards=` of the URL, if given (PostgreSQL: notification channels of new tables).
    pub fn notify_shards(&self) -> Option<u32> {
        self.url.notify_shards
    }

    /// The URL's `max_connections=`, or [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(&self) -> u32 {
        self.url.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS)
    }

    /// The waiting-read settings of the URL, with `tick`, `push_tick` and `full_pass` as the
    /// adapter's defaults for `wait_tick_ms=`, `push_tick_ms=` and `wait_full_ms=`.
    pub fn wait_settings(
        &self,
        tick: Duration,
        push_tick: Duration,
        full_pass: Duration,
    ) -> WaitSettings {
        let ms = |v: Option<u32>, default| v.map_or(default, |ms| Duration::from_millis(ms.into()));
        WaitSettings {
            tick: ms(self.url.wait_tick_ms, tick),
            push_tick: ms(self.url.push_tick_ms, push_tick),
            batch: self.url.wait_batch.unwrap_or(DEFAULT_WAIT_BATCH),
            connections: self
                .url
                .wait_connections
                .unwrap_or(DEFAULT_WAIT_CONNECTIONS),
            full_pass: ms(self.url.wait_full_ms, full_pass),
        }
    }

    /// The URL for the driver (see [`DbUrl::driver_url`]). Never log it.
    pub fn driver_url(&self) -> &str {
        self.url.driver_url()
    }

    /// Adds the fields `url` and `prefix` to an adapter configuration's `Debug`.
    pub fn debug_fields<'d, 'a, 'b: 'a>(
        &self,
        d: &'d mut fmt::DebugStruct<'a, 'b>,
    ) -> &'d mut fmt::DebugStruct<'a, 'b> {
        d.field("url", &self.url).field("prefix", &self.prefix)
    }
}

/// How waiting reads are served: one watcher per store polls the heads of the waited-on streams
/// every `tick` (every `push_tick` while a push channel is healthy), `batch` streams per
/// statement, on a pool of `connections` of its own that the waiting reads' re-reads share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitSettings {
    /// The polling tick (`wait_tick_ms=`).
    pub tick: Duration,
    /// The tick while a push channel is healthy (`push_tick_ms=`; PostgreSQL only).
    pub push_tick: Duration,
    /// Streams per head-marks statement (`wait_batch=`).
    pub batch: u32,
    /// Connections of the wait pool (`wait_connections=`).
    pub connections: u32,
    /// With a change index (MySQL): the time between passes over every waited-on stream; the
    /// ticks in between read only the changed streams (`wait_full_ms=`).
    pub full_pass: Duration,
}

impl WaitSettings {
    /// The watcher's options, starting at `tick`.
    pub fn watch_options(&self, tick: Duration) -> WatchOptions {
        WatchOptions {
            tick,
            batch: usize::try_from(self.batch).unwrap_or(usize::MAX),
            full_pass: self.full_pass,
            ..WatchOptions::default()
        }
    }
}

/// The pool settings both adapters use: `max_connections`, no idle minimum, `acquire_timeout`,
/// idle connections closed after a minute, and a ping before handing out a connection only if
/// it sat idle for [`IDLE_PING`] (sqlx pings every idle connection by default: a round trip per
/// acquisition).
pub fn pool_options<DB: Database>(
    max_connections: u32,
    acquire_timeout: Duration,
) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(60)))
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta: PoolConnectionMetadata| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The capabilities of a SQL store: persistent, idempotent appends remembering
/// `keys_per_stream` keys, batches of [`MAX_BATCH_RECORDS`] / [`MAX_BATCH_BYTES`], and `wait`.
pub fn capabilities(
    max_record_bytes: usize,
    keys_per_stream: usize,
    wait: WaitMechanism,
) -> Capabilities {
    Capabilities {
        max_record_bytes,
        max_batch_records: MAX_BATCH_RECORDS,
        max_batch_bytes: MAX_BATCH_BYTES,
        idempotency: Some(IdempotencyWindow {
            keys_per_stream,
            max_age: None,
        }),
        wait,
        persistent: true,
        // A committed transaction is as durable as the server's commit setting makes it
        // (PostgreSQL `synchronous_commit`, InnoDB `innodb_flush_log_at_trx_commit`; both
        // durable by default), and nothing uncommitted is ever read.
        durable_reads: true,
        ..Capabilities::default()
    }
}

/// Maps a driver error that carries no database error code (the adapters map those by code):
/// I/O, TLS, protocol, pool timeouts and a crashed worker → `Unavailable` (retryable; the outcome
/// of a commit is then unknown); bad connection options → `InvalidArgument`; anything else →
/// `Internal`.
pub fn driver_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => {
            Error::new(ErrorKind::Unavailable, "the database is unreachable").with_source(e)
        }
        sqlx::Error::Configuration(_) => {
            Error::invalid("the database connection options are invalid").with_source(e)
        }
        _ => Error::new(ErrorKind::Internal, "unexpected database driver error").with_source(e),
    }
}
