//! What the adapters' `config.rs`, `backend.rs` and `error.rs` share: the URL and table prefix
//! of a configuration, the pool settings, the capabilities, and the mapping of driver errors
//! that carry no database error code.

use std::fmt;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::Database;
use streamstore::{Capabilities, Error, ErrorKind, IdempotencyWindow, Result, WaitMechanism};

use crate::prefix::TablePrefix;
use crate::url::{DbUrl, DEFAULT_PREFIX};

/// Connections in the pool unless the URL says `max_connections=`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// How long to wait for a pooled connection before failing with `Unavailable`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
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

    /// The URL's `max_connections=`, or [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(&self) -> u32 {
        self.url.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS)
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

/// The pool settings both adapters use: `max_connections`, no idle minimum, `acquire_timeout`,
/// idle connections closed after a minute.
pub fn pool_options<DB: Database>(
    max_connections: u32,
    acquire_timeout: Duration,
) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(60)))
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
