//! Restarts the MySQL (MariaDB) server while idempotent appends are in flight and retried; no
//! acknowledged record may be lost, duplicated or skipped.
//!
//! Needs `STREAMSTORE_MYSQL_URL` and the server of `scripts/services.sh` (restarted with
//! `services.sh down mysql` / `up mysql`); prints SKIPPED and passes without the URL.

#[path = "../../sql-common/testing/faults.rs"]
mod faults;

use std::sync::Arc;

use streamstore::StreamStore;
use streamstore_mysql::{MysqlStore, URL_ENV};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_idempotent_appends_loses_and_duplicates_nothing() {
    let Ok(url) = std::env::var(URL_ENV) else {
        println!("SKIPPED: {URL_ENV} is not set (start the server: scripts/services.sh up mysql)");
        return;
    };
    let prefix = format!("faults_{:08x}_", rand_u32());
    let store: Arc<dyn StreamStore> = Arc::new(MysqlStore::connect(&url, &prefix).await.unwrap());
    let (acked, retried) = faults::run(Arc::clone(&store), || {
        faults::services(&["down", "mysql"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        faults::services(&["up", "mysql"]);
    })
    .await;
    println!("mysql faults: {acked} appends acknowledged, {retried} needed a retry, none lost or duplicated");
    assert!(
        retried > 0,
        "the restart interrupted no append: the test proved nothing"
    );
    store.close().await.unwrap();
    MysqlStore::destroy(&url, &prefix).await.unwrap();
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id()
}
