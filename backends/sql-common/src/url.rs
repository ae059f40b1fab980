//! Connection URLs: the options the adapters read from them, and a description without secrets.

use std::fmt;
use streamstore::implementor::ErrorShorthand;

use streamstore::{Error, Result};

use crate::prefix::TablePrefix;

/// The table prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "streamstore_";

/// A database URL split into the part the driver gets and the options this project reads from
/// its query string (`table_prefix`, `max_connections`, and the waiting-read settings
/// `wait_tick_ms`, `push_tick_ms`, `wait_batch`, `wait_connections`, and PostgreSQL's
/// `notify_shards`), which are removed before
/// the driver sees the URL.
///
/// `Debug` shows where it connects (scheme, host, port, database, user) and never the password
/// or the full URL.
#[derive(Clone)]
pub struct DbUrl {
    driver_url: String,
    scheme: String,
    host: String,
    port: Option<u16>,
    database: String,
    user: String,
    /// `table_prefix=` (validated), if given.
    pub prefix: Option<TablePrefix>,
    /// `max_connections=`, if given.
    pub max_connections: Option<u32>,
    /// `wait_tick_ms=`: the watcher's polling tick (without a healthy push channel), if given.
    pub wait_tick_ms: Option<u32>,
    /// `push_tick_ms=`: the watcher's tick while a push channel is healthy, if given.
    pub push_tick_ms: Option<u32>,
    /// `wait_batch=`: streams per head-marks statement, if given.
    pub wait_batch: Option<u32>,
    /// `wait_connections=`: connections of the wait pool, if given.
    pub wait_connections: Option<u32>,
    /// `notify_shards=`: notification channels of new tables (PostgreSQL), if given.
    pub notify_shards: Option<u32>,
}

/// A positive integer option.
fn positive(name: &str, v: &str) -> Result<u32> {
    v.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::invalid(format!("{name} must be a positive integer")))
}

impl DbUrl {
    /// Parses `url`, which must use one of `schemes`. The error never quotes the URL (it may
    /// hold a password).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Self> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid(format!("not a valid database URL: {e}")))?;
        if !schemes.contains(&parsed.scheme()) {
            return Err(Error::invalid(format!(
                "a URL for this store starts with one of {schemes:?}, not {:?}",
                parsed.scheme()
            )));
        }
        let mut prefix = None;
        let mut max_connections = None;
        let mut notify_shards = None;
        let (mut wait_tick_ms, mut push_tick_ms, mut wait_batch, mut wait_connections) =
            (None, None, None, None);
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "table_prefix" => prefix = Some(TablePrefix::new(&v)?),
                "max_connections" => max_connections = Some(positive(&k, &v)?),
                "wait_tick_ms" => wait_tick_ms = Some(positive(&k, &v)?),
                "push_tick_ms" => push_tick_ms = Some(positive(&k, &v)?),
                "wait_batch" => wait_batch = Some(positive(&k, &v)?),
                "wait_connections" => wait_connections = Some(positive(&k, &v)?),
                "notify_shards" => notify_shards = Some(positive(&k, &v)?),
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        Ok(DbUrl {
            scheme: parsed.scheme().to_owned(),
            host: parsed.host_str().unwrap_or_default().to_owned(),
            port: parsed.port(),
            database: parsed.path().trim_start_matches('/').to_owned(),
            user: parsed.username().to_owned(),
            driver_url: parsed.into(),
            prefix,
            max_connections,
            wait_tick_ms,
            push_tick_ms,
            wait_batch,
            wait_connections,
            notify_shards,
        })
    }

    /// The URL for the driver (with the password, without this project's options). Never log it.
    pub fn driver_url(&self) -> &str {
        &self.driver_url
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbUrl")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("prefix", &self.prefix)
            .field("max_connections", &self.max_connections)
            .field("wait_tick_ms", &self.wait_tick_ms)
            .field("push_tick_ms", &self.push_tick_ms)
            .field("wait_batch", &self.wait_batch)
            .field("notify_shards", &self.notify_shards)
            .field("wait_connections", &self.wait_connections)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_off_and_password_hidden() {
        let u = DbUrl::parse(
            "postgres://me:s3cret@db:5433/app?sslmode=disable&table_prefix=x_&max_connections=4",
            &["postgres"],
        )
        .unwrap();
        assert_eq!(u.prefix.as_ref().map(TablePrefix::as_str), Some("x_"));
        assert_eq!(u.max_connections, Some(4));
        assert_eq!(
            u.driver_url(),
            "postgres://me:s3cret@db:5433/app?sslmode=disable"
        );
        let shown = format!("{u:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db") && shown.ends_with(".. }"), "{shown}");
        assert!(DbUrl::parse("mysql://a@b/c", &["postgres"]).is_err());
        let w = DbUrl::parse(
            "mysql://a@b/c?wait_tick_ms=50&wait_batch=2000&wait_connections=3&push_tick_ms=9000",
            &["mysql"],
        )
        .unwrap();
        assert_eq!(
            (
                w.wait_tick_ms,
                w.push_tick_ms,
                w.wait_batch,
                w.wait_connections
            ),
            (Some(50), Some(9000), Some(2000), Some(3))
        );
        assert_eq!(w.driver_url(), "mysql://a@b/c");
        let e = DbUrl::parse("mysql://a@b/c?wait_tick_ms=0", &["mysql"]).unwrap_err();
        assert_eq!(e.kind(), streamstore::ErrorKind::InvalidArgument);
        let e = DbUrl::parse(
            "postgres://me:s3cret@db/app?table_prefix=BAD",
            &["postgres"],
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cret"));
    }
}
