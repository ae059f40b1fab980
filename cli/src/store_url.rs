//! `--store URL`: which implementation, where.

use std::sync::Arc;

use serde_json::json;
use streamstore::{Error, MemoryStore, Result, StreamStore};

use crate::output::emit;

/// An opened store, plus what the CLI can do with its concrete type.
pub struct Opened {
    /// The store, as every command uses it.
    pub store: Arc<dyn StreamStore>,
    kind: Kind,
}

enum Kind {
    Memory,
    Postgres,
    Mysql,
}

/// Opens the store named by `url`.
pub async fn open_store(url: &str) -> Result<Opened> {
    if url == "memory:" || url == "memory://" {
        return Ok(Opened {
            store: Arc::new(MemoryStore::new()),
            kind: Kind::Memory,
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = streamstore_postgres::PostgresStore::connect_url(url).await?;
        return Ok(Opened {
            store: Arc::new(store),
            kind: Kind::Postgres,
        });
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let store = streamstore_mysql::MysqlStore::connect_url(url).await?;
        return Ok(Opened {
            store: Arc::new(store),
            kind: Kind::Mysql,
        });
    }
    // The error names the scheme only: a URL may carry a password.
    let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
    Err(Error::invalid(format!(
        "unknown store URL scheme {scheme:?}: use a directory path, file://, memory:, postgres:// or mysql://"
    )))
}

impl Opened {
    /// `verify`: checks every checksum (local engine only).
    pub async fn verify(&self) -> Result<()> {
        match self.kind {
            Kind::Memory | Kind::Postgres | Kind::Mysql => Err(Error::unsupported(
                "verify (checksums exist only in the local engine's files)",
            )),
        }
    }

    /// `stats`: implementation-specific numbers plus the capabilities.
    pub async fn stats(&self) -> Result<()> {
        let caps = self.store.capabilities();
        let kind = match self.kind {
            Kind::Memory => "memory",
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
        };
        emit(&json!({ "store": kind, "capabilities": format!("{caps:?}") }))
            .map_err(|e| Error::new(streamstore::ErrorKind::Unavailable, "stdout").with_source(e))
    }
}
