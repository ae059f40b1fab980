//! The adapter's configuration, read from a `mongodb://` URL.

use std::fmt;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use streamstore::{Error, Result};

/// The collection prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "streamstore_";

/// The database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "streamstore";

/// Where and how to connect.
///
/// Built from a URL (`mongodb://user:password@host:port/database?collection_prefix=app_`). The
/// option `collection_prefix` (default `streamstore_`, `[a-z][a-z0-9_]{0,30}`) is this crate's;
/// every other option goes to the driver. `retryWrites=false` is added unless the URL sets it
/// (FerretDB has no retryable writes; the adapter retries its own inserts safely, see
/// `docs/backends.md`). `Debug` never shows the URL, whose user info may hold a password.
#[derive(Clone)]
pub struct MongoConfig {
    driver_url: String,
    database: String,
    prefix: String,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// How often the store's watcher reads the heads of the streams that readers wait on (the
    /// longest a write of another process waits to be noticed).
    pub poll_interval: Duration,
}

/// Validates a collection prefix: `[a-z][a-z0-9_]{0,30}`, so collection names never need
/// quoting and never contain `$` or `.` beyond the ones this crate adds.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let mut bytes = prefix.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !first_ok || !rest_ok || prefix.len() > 31 {
        return Err(Error::invalid(format!(
            "a collection prefix must match [a-z][a-z0-9_]{{0,30}}; got {prefix:?}"
        )));
    }
    Ok(())
}

fn check_database(db: &str) -> Result<()> {
    let ok = !db.is_empty()
        && db.len() <= 63
        && db
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::invalid(
            "a database name must be 1-63 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

impl MongoConfig {
    /// Parses a `mongodb://` or `mongodb+srv://` URL. Invalid input is `InvalidArgument`, and
    /// the message never quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("mongodb://")
            .or_else(|| url.strip_prefix("mongodb+srv://"))
            .ok_or_else(|| Error::invalid("a MongoDB URL starts with mongodb://"))?;
        let scheme_len = url.len() - rest.len();
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (hosts, path) = match before_query.split_once('/') {
            Some((h, p)) => (h, p),
            None => (before_query, ""),
        };
        if hosts.is_empty() {
            return Err(Error::invalid("a MongoDB URL needs a host"));
        }
        let database = if path.is_empty() {
            DEFAULT_DATABASE.to_owned()
        } else {
            path.to_owned()
        };
        check_database(&database)?;
        let mut prefix = DEFAULT_PREFIX.to_owned();
        let mut options = Vec::new();
        let mut retry_writes_set = false;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == "collection_prefix" {
                prefix = v.to_owned();
                continue;
            }
            retry_writes_set |= k.eq_ignore_ascii_case("retryWrites");
            options.push(pair);
        }
        if !retry_writes_set {
            options.push("retryWrites=false");
        }
        check_prefix(&prefix)?;
        let driver_url = format!(
            "{}{hosts}/{database}?{}",
            &url[..scheme_len],
            options.join("&")
        );
        Ok(MongoConfig {
            driver_url,
            database,
            prefix,
            sweep_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
        })
    }

    /// Uses the collections of `prefix` instead of the URL's.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        prefix.clone_into(&mut self.prefix);
        Ok(self)
    }

    /// The URL handed to the driver (without this crate's options).
    pub(crate) fn driver_url(&self) -> &str {
        &self.driver_url
    }

    /// The database holding the collections.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The collection prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("database", &self.database)
            .field("prefix", &self.prefix)
            .field("sweep_interval", &self.sweep_interval)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_credentials() {
        let c =
            MongoConfig::from_url("mongodb://u:hunter2@h:1/app?collection_prefix=a_&w=1").unwrap();
        assert_eq!(c.database(), "app");
        assert_eq!(c.prefix(), "a_");
        assert_eq!(
            c.driver_url(),
            "mongodb://u:hunter2@h:1/app?w=1&retryWrites=false"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        let d = MongoConfig::from_url("mongodb://h:1").unwrap();
        assert_eq!(
            (d.database(), d.prefix()),
            (DEFAULT_DATABASE, DEFAULT_PREFIX)
        );
        assert!(MongoConfig::from_url("mongodb://h/db?collection_prefix=A$").is_err());
        assert!(MongoConfig::from_url("mongodb://h/a.b").is_err());
        assert!(MongoConfig::from_url("postgres://h/db").is_err());
        let keep = MongoConfig::from_url("mongodb://h/db?retryWrites=true").unwrap();
        assert!(!keep.driver_url().contains("retryWrites=false"));
    }
}
