//! How the suite gets stores: a factory per implementation, with namespaces for isolation.

use std::sync::Arc;

use async_trait::async_trait;
use streamstore::{Result, StreamStore};

/// Opens stores of one implementation.
///
/// A namespace isolates one run (or one case that needs its own store) from every other: stores
/// opened with different namespaces share nothing. Namespaces match `[a-z][a-z0-9_]{0,23}`, so an
/// implementation may use them as a directory name or a table-name prefix.
#[async_trait]
pub trait Factory: Send + Sync {
    /// Opens the store of namespace `ns`, creating it if needed. Opening the same namespace again
    /// (after the previous handle was closed) must show the same data if the store is persistent.
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>>;

    /// Removes everything namespace `ns` holds. Called after its stores were closed.
    async fn destroy(&self, ns: &str) -> Result<()>;
}
