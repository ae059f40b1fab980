//! The adapter's configuration, read from a `postgres://` URL.

use std::fmt;
use std::time::Duration;

use streamstore::Result;
use streamstore_sql::{DbUrl, TablePrefix, DEFAULT_PREFIX};

/// Where and how to connect.
///
/// Built from a URL (`postgres://user:password@host:port/database?table_prefix=app_`); the
/// options `table_prefix` (default `streamstore_`) and `max_connections` (default 8) are this
/// crate's, every other query option goes to the driver (e.g. `sslmode`). `Debug` never shows
/// the password.
#[derive(Clone)]
pub struct PostgresConfig {
    url: DbUrl,
    prefix: TablePrefix,
    /// Connections in the pool (one of them is held by the `LISTEN` task).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// The fallback polling interval of waiting reads when a `NOTIFY` is missed.
    pub poll_interval: Duration,
}

impl PostgresConfig {
    /// Parses a `postgres://` or `postgresql://` URL. Invalid input is `InvalidArgument`, and the
    /// message never quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let url = DbUrl::parse(url, &["postgres", "postgresql"])?;
        let prefix = match &url.prefix {
            Some(p) => p.clone(),
            None => TablePrefix::new(DEFAULT_PREFIX)?,
        };
        Ok(PostgresConfig {
            max_connections: url.max_connections.unwrap_or(8),
            url,
            prefix,
            acquire_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
        })
    }

    /// Uses the tables `<prefix>streams`, `<prefix>records`, … (`[a-z][a-z0-9_]{0,30}`).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        self.prefix = TablePrefix::new(prefix)?;
        Ok(self)
    }

    /// The table prefix.
    pub fn prefix(&self) -> &TablePrefix {
        &self.prefix
    }

    pub(crate) fn driver_url(&self) -> &str {
        self.url.driver_url()
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
