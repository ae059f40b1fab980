//! Connection URLs: the options the adapters read from them, and a description without secrets.

use std::fmt;

use streamstore::{Error, Result};

use crate::prefix::TablePrefix;

/// The table prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "streamstore_";

/// A database URL split into the part the driver gets and the options this project reads from
/// its query string (`table_prefix`, `max_connections`), which are removed before the driver sees
/// the URL.
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
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "table_prefix" => prefix = Some(TablePrefix::new(&v)?),
                "max_connections" => {
                    let n = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::invalid("max_connections must be a positive integer")
                    })?;
                    max_connections = Some(n);
                }
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
        let e = DbUrl::parse(
            "postgres://me:s3cret@db/app?table_prefix=BAD",
            &["postgres"],
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cret"));
    }
}
