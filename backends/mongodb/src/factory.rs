//! The conformance suite's factory: one collection prefix per namespace.

use std::sync::Arc;
use streamstore::implementor::ErrorShorthand;

use async_trait::async_trait;
use streamstore::{Error, Result, StreamStore};
use streamstore_conformance::Factory;

use crate::{MongoStore, URL_ENV};

/// Opens [`MongoStore`]s on the server at `$STREAMSTORE_MONGODB_URL`, with the namespace as the
/// collection prefix (`<ns>log`, `<ns>hints`); `destroy` drops those collections.
#[derive(Clone, Debug, Default)]
pub struct MongoFactory;

fn url() -> Result<String> {
    std::env::var(URL_ENV).map_err(|_| Error::invalid(format!("{URL_ENV} is not set")))
}

#[async_trait]
impl Factory for MongoFactory {
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>> {
        Ok(Arc::new(MongoStore::connect(&url()?, ns).await?))
    }

    async fn destroy(&self, ns: &str) -> Result<()> {
        MongoStore::destroy(&url()?, ns).await
    }

    /// Store objects on the same namespace share their data, like separate processes.
    fn concurrent_opens_share_data(&self) -> bool {
        true
    }

    /// No: FerretDB on SQLite (the test server) timed out at 120 s with 1,000 waiters
    /// and 16 writers on a loaded 2-core machine; a real MongoDB is not that slow.
    fn serves_thousand_waiters(&self) -> bool {
        false
    }
}
