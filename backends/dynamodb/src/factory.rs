//! The conformance suite's factory: one table per namespace.

use std::sync::Arc;
use streamstore::implementor::ErrorShorthand;

use async_trait::async_trait;
use streamstore::{Error, Result, StreamStore};
use streamstore_conformance::Factory;

use crate::{DynamoDbConfig, DynamoDbStore, ENDPOINT_ENV};

/// Opens [`DynamoDbStore`]s on the server at `$STREAMSTORE_DYNAMODB_ENDPOINT`, one table per
/// namespace (`streamstore_<ns>`); `destroy` deletes that table.
#[derive(Clone, Debug, Default)]
pub struct DynamoDbFactory;

fn config(ns: &str) -> Result<DynamoDbConfig> {
    let endpoint = std::env::var(ENDPOINT_ENV)
        .ok()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Error::invalid(format!("{ENDPOINT_ENV} is not set")))?;
    DynamoDbConfig::new(Some(&endpoint), &format!("streamstore_{ns}"))
}

#[async_trait]
impl Factory for DynamoDbFactory {
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>> {
        Ok(Arc::new(DynamoDbStore::open(config(ns)?).await?))
    }

    async fn destroy(&self, ns: &str) -> Result<()> {
        DynamoDbStore::destroy(&config(ns)?).await
    }

    /// Store objects on the same namespace share their data, like separate processes.
    fn concurrent_opens_share_data(&self) -> bool {
        true
    }

    /// No: moto (the test server) copies its table per transaction and serializes
    /// every request: 1,000 waiters with 16 writers time out on a loaded 2-core machine.
    fn serves_thousand_waiters(&self) -> bool {
        false
    }
}
