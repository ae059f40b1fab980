//! The adapter's configuration, read from a `postgres://` URL.

use std::fmt;
use std::time::Duration;
use streamstore::implementor::wait::WatchOptions;
use streamstore::implementor::ErrorShorthand;

use streamstore::Result;
use streamstore_sql::{DbTarget, WaitSettings, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_SWEEP_INTERVAL};

use crate::shards::{DEFAULT_SHARDS, MAX_SHARDS};

/// The watcher's tick while `LISTEN` is down, unless the URL says `wait_tick_ms=`.
pub const DEFAULT_WAIT_TICK: Duration = Duration::from_millis(100);

/// The watcher's tick while `LISTEN` is healthy, unless the URL says `push_tick_ms=`: the safety
/// net under `NOTIFY`. A failed notification is sent again once the sender has reconnected, and
/// every waiter is woken when the listener reconnects, so the net only covers what push cannot:
/// a writer process that died between its commit and its `NOTIFY`, or a shard whose `LISTEN`
/// took longer than a head read waits for it. It bounds the wake-up delay of those cases. Long,
/// because every pass re-reads the head of every waited-on stream: at 10,000 waiters a 2 s net
/// cost the writers up to a fifth of their appends (`docs/benchmarks.md`).
pub const DEFAULT_PUSH_TICK: Duration = Duration::from_secs(30);

/// Where and how to connect.
///
/// Built from a URL (`postgres://user:password@host:port/database?table_prefix=app_`); the
/// options `table_prefix` (default `streamstore_`), `max_connections` (default 8) and the
/// waiting-read settings `push_tick_ms` (default 30000, the safety net under `NOTIFY`),
/// `wait_tick_ms` (default 100), `wait_batch` (default 5000) and `wait_connections` (default
/// 2), and `notify_shards` (default 4096: notification channels, fixed by whoever creates the
/// tables) are this crate's, every other query option goes to the driver (e.g. `sslmode`).
/// `Debug` never shows the password.
#[derive(Clone)]
pub struct PostgresConfig {
    target: DbTarget,
    /// Connections in the pool (one of them is held by the `LISTEN` task).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// How waiting reads are served: one watcher per store polls the heads of the waited-on
    /// streams every `wait.push_tick` while `LISTEN` is healthy and every `wait.tick` while it
    /// is down, on a pool of `wait.connections` of its own.
    pub wait: WaitSettings,
    /// Notification channels (stream shards) of the tables if this store creates them
    /// (1..=65,536); a store opening existing tables uses the count stored with them.
    pub notify_shards: u32,
}

impl PostgresConfig {
    /// Parses a `postgres://` or `postgresql://` URL. Invalid input is `InvalidArgument`, and the
    /// message never quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let target = DbTarget::parse(url, &["postgres", "postgresql"])?;
        if target.notify_shards().is_some_and(|n| n > MAX_SHARDS) {
            return Err(streamstore::Error::invalid(format!(
                "notify_shards must be at most {MAX_SHARDS}"
            )));
        }
        Ok(PostgresConfig {
            max_connections: target.max_connections(),
            wait: target.wait_settings(
                DEFAULT_WAIT_TICK,
                DEFAULT_PUSH_TICK,
                WatchOptions::default().full_pass,
            ),
            notify_shards: target.notify_shards().unwrap_or(DEFAULT_SHARDS),
            target,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        })
    }
}

streamstore_sql::config_target_methods!(PostgresConfig);

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target
            .debug_fields(&mut f.debug_struct("PostgresConfig"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("wait", &self.wait)
            .field("notify_shards", &self.notify_shards)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamstore_sql::DEFAULT_PREFIX;

    #[test]
    fn debug_hides_the_password() {
        let c = PostgresConfig::from_url("postgres://u:hunter2@localhost:55432/db?table_prefix=a_")
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("localhost"));
        assert_eq!(c.prefix().as_str(), "a_");
        assert_eq!(
            PostgresConfig::from_url("postgres://h/db")
                .unwrap()
                .prefix()
                .as_str(),
            DEFAULT_PREFIX
        );
        assert!(PostgresConfig::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn the_safety_net_is_long_by_default_and_set_from_the_url() {
        let d = PostgresConfig::from_url("postgres://h/db").unwrap();
        assert_eq!(d.wait.push_tick, Duration::from_secs(30));
        assert_eq!(d.wait.tick, Duration::from_millis(100));
        let c = PostgresConfig::from_url("postgres://h/db?push_tick_ms=2000").unwrap();
        assert_eq!(c.wait.push_tick, Duration::from_secs(2));
    }
}
