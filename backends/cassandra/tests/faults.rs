//! Restarts the Cassandra server while idempotent appends are in flight and retried; no
//! acknowledged record may be lost, duplicated or skipped.
//!
//! Needs `STREAMSTORE_CASSANDRA_NODES` and the server of `scripts/services.sh` (restarted with
//! `services.sh down cassandra` / `up cassandra`, which waits until the node answers: 20-60 s);
//! prints SKIPPED and passes without it.

use std::sync::Arc;

use streamkeep_cassandra::{CassandraConfig, CassandraStore, NODES_ENV};
use streamstore::StreamStore;
use streamstore_adapter_testing::faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_idempotent_appends_loses_and_duplicates_nothing() {
    let Ok(nodes) = std::env::var(NODES_ENV) else {
        println!(
            "SKIPPED: {NODES_ENV} is not set (start the server: scripts/services.sh up cassandra)"
        );
        return;
    };
    let mut config = CassandraConfig::new(&nodes, "streamstore_test")
        .unwrap()
        .with_prefix(&faults::prefix())
        .unwrap();
    // Small buckets: the writers also roll the stream from bucket to bucket across the outage.
    config.bucket_size = 32;
    let store: Arc<dyn StreamStore> = Arc::new(CassandraStore::open(config.clone()).await.unwrap());
    let outcome = faults::run(Arc::clone(&store), || {
        faults::services(&["down", "cassandra"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        faults::services(&["up", "cassandra"]);
    })
    .await;
    println!(
        "cassandra faults: {} appends acknowledged, {} needed a retry, {} waited through the \
         outage, none lost or duplicated",
        outcome.acked, outcome.retried, outcome.held_up
    );
    assert!(
        outcome.retried + outcome.held_up > 0,
        "the restart interrupted or held up no append: the test proved nothing"
    );
    store.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}
