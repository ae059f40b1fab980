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
}

/// Opens the store named by `url`.
pub async fn open_store(url: &str) -> Result<Opened> {
    if url == "memory:" || url == "memory://" {
        return Ok(Opened {
            store: Arc::new(MemoryStore::new()),
            kind: Kind::Memory,
        });
    }
    Err(Error::invalid(format!("unknown store URL {url:?}")))
}

impl Opened {
    /// `verify`: checks every checksum (local engine only).
    pub async fn verify(&self) -> Result<()> {
        match self.kind {
            Kind::Memory => Err(Error::unsupported("verify")),
        }
    }

    /// `stats`: implementation-specific numbers plus the capabilities.
    pub async fn stats(&self) -> Result<()> {
        let caps = self.store.capabilities();
        let kind = match self.kind {
            Kind::Memory => "memory",
        };
        emit(&json!({ "store": kind, "capabilities": format!("{caps:?}") }))
            .map_err(|e| Error::new(streamstore::ErrorKind::Unavailable, "stdout").with_source(e))
    }
}
