//! The conformance suite's factory: one table prefix per namespace.

use std::sync::Arc;
use streamstore::implementor::ErrorShorthand;

use async_trait::async_trait;
use streamstore::{Error, Result, StreamStore};
use streamstore_conformance::Factory;

use crate::{CassandraConfig, CassandraStore, NODES_ENV};

/// The keyspace the conformance runs use.
const KEYSPACE: &str = "streamstore_test";

/// Records per bucket in conformance runs: small, so that the suite's longer streams cross
/// bucket boundaries (rolls, reads and trims across buckets) and not only the first bucket.
const BUCKET_SIZE: u64 = 64;

/// Opens [`CassandraStore`]s on the nodes in `$STREAMSTORE_CASSANDRA_NODES`, keyspace
/// `streamstore_test`, with the namespace as the table prefix; `destroy` drops those tables.
#[derive(Clone, Debug, Default)]
pub struct CassandraFactory;

fn config(ns: &str) -> Result<CassandraConfig> {
    let nodes =
        std::env::var(NODES_ENV).map_err(|_| Error::invalid(format!("{NODES_ENV} is not set")))?;
    let mut c = CassandraConfig::new(&nodes, KEYSPACE)?.with_prefix(ns)?;
    c.bucket_size = BUCKET_SIZE;
    Ok(c)
}

#[async_trait]
impl Factory for CassandraFactory {
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>> {
        Ok(Arc::new(CassandraStore::open(config(ns)?).await?))
    }

    async fn destroy(&self, ns: &str) -> Result<()> {
        CassandraStore::destroy(config(ns)?).await
    }

    /// Store objects on the same namespace share their data, like separate processes.
    fn concurrent_opens_share_data(&self) -> bool {
        true
    }
}
