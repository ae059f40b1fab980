//! The adapter's configuration, read from a `mysql://` URL.

use std::fmt;
use std::time::Duration;

use streamstore::Result;
use streamstore_sql::{DbTarget, WaitSettings, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_SWEEP_INTERVAL};

/// The watcher's tick unless the URL says `wait_tick_ms=`: how long a change made by another
/// process (or store object) may wait to be noticed.
pub const DEFAULT_WAIT_TICK: Duration = Duration::from_millis(100);

/// The watcher's pass over every waited-on stream unless the URL says `wait_full_ms=`: the
/// safety net under the change index (`changes`). Each tick reads the rows changed since the
/// last one (minus 200 ms; once a second since the last such tick minus a 1 s margin), so the
/// net only finds a change whose transaction took longer than the margin from its head write to
/// its commit, a server clock that stepped back by more than the margin, or a row written by an
/// older release of this adapter; it bounds the wake-up delay of those cases. Long, because it
/// re-reads the head of every waited-on stream once per pass: at 10,000 waiters a 2 s net cost
/// the writers up to a tenth of their appends (`docs/benchmarks.md`).
pub const DEFAULT_FULL_PASS: Duration = Duration::from_secs(30);

/// Where and how to connect.
///
/// Built from a URL (`mysql://user:password@host:port/database?table_prefix=app_`); the
/// options `table_prefix` (default `streamstore_`), `max_connections` (default 8) and the
/// waiting-read settings `wait_tick_ms` (default 100), `wait_full_ms` (default 30000, the safety
/// net under the change index), `wait_batch` (default 5000) and `wait_connections` (default 2)
/// are this crate's, every other query option goes to the driver (e.g. `ssl-mode`). `Debug`
/// never shows the password.
#[derive(Clone)]
pub struct MysqlConfig {
    target: DbTarget,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// How waiting reads are served: one watcher per store reads the streams changed since its
    /// last tick every `wait.tick`, and every waited-on stream's head once per `wait.full_pass`,
    /// on a pool of `wait.connections` of its own.
    pub wait: WaitSettings,
}

impl MysqlConfig {
    /// Parses a `mysql://` URL (MySQL 8 or MariaDB 10.6+). Invalid input is `InvalidArgument`, and the
    /// message never quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let target = DbTarget::parse(url, &["mysql"])?;
        Ok(MysqlConfig {
            max_connections: target.max_connections(),
            wait: target.wait_settings(DEFAULT_WAIT_TICK, DEFAULT_WAIT_TICK, DEFAULT_FULL_PASS),
            target,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        })
    }
}

streamstore_sql::config_target_methods!(MysqlConfig);

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target
            .debug_fields(&mut f.debug_struct("MysqlConfig"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamstore_sql::DEFAULT_PREFIX;

    #[test]
    fn debug_hides_the_password() {
        let c =
            MysqlConfig::from_url("mysql://u:hunter2@localhost:53306/db?table_prefix=a_").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("localhost"));
        assert_eq!(c.prefix().as_str(), "a_");
        assert_eq!(
            MysqlConfig::from_url("mysql://h/db")
                .unwrap()
                .prefix()
                .as_str(),
            DEFAULT_PREFIX
        );
        assert!(MysqlConfig::from_url("postgres://h/db").is_err());
    }

    #[test]
    fn the_safety_net_is_long_by_default_and_set_from_the_url() {
        let d = MysqlConfig::from_url("mysql://h/db").unwrap();
        assert_eq!(d.wait.full_pass, Duration::from_secs(30));
        assert_eq!(d.wait.tick, Duration::from_millis(100));
        let c = MysqlConfig::from_url("mysql://h/db?wait_full_ms=2000").unwrap();
        assert_eq!(c.wait.full_pass, Duration::from_secs(2));
    }
}
