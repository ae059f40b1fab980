//! The conformance suite's factory: one table prefix per namespace.

use std::sync::Arc;
use streamstore::implementor::ErrorShorthand;

use async_trait::async_trait;
use streamstore::{Error, Result, StreamStore};
use streamstore_conformance::Factory;

use crate::{PostgresStore, URL_ENV};

/// Opens [`PostgresStore`]s on the database at `$STREAMSTORE_POSTGRES_URL`, with the namespace as
/// the table prefix (`<ns>streams`, …); `destroy` drops those tables.
#[derive(Clone, Debug, Default)]
pub struct PostgresFactory;

fn url() -> Result<String> {
    std::env::var(URL_ENV).map_err(|_| Error::invalid(format!("{URL_ENV} is not set")))
}

#[async_trait]
impl Factory for PostgresFactory {
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>> {
        Ok(Arc::new(PostgresStore::connect(&url()?, ns).await?))
    }

    async fn destroy(&self, ns: &str) -> Result<()> {
        PostgresStore::destroy(&url()?, ns).await
    }

    /// Store objects on the same namespace share their data, like separate processes.
    fn concurrent_opens_share_data(&self) -> bool {
        true
    }
}
