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

    /// Whether two stores open on the same namespace at the same time are two views of the same
    /// data, as the store objects of two processes sharing a database are. Cases that check
    /// what one store object sees of another's writes use a single store where this is `false`
    /// (memory stores share nothing; a local data directory has one owner at a time).
    fn concurrent_opens_share_data(&self) -> bool {
        false
    }

    /// Whether the server behind this factory serves 1,000 concurrent waiting readers (and the
    /// writes that wake them) within the case time on the test machine. `false` skips the
    /// 1,000-waiter case, visibly, with that reason: for test servers that are not the product
    /// (FerretDB on SQLite, moto), whose slowness says nothing about the adapter.
    fn serves_thousand_waiters(&self) -> bool {
        true
    }
}
