//! MySQL-specific tests against the server at `STREAMSTORE_MYSQL_URL` (each prints
//! SKIPPED and passes without it).

#[path = "../../sql-common/testing/cases.rs"]
mod cases;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, Retention, StreamId, StreamStore};
use streamstore_mysql::{MysqlStore, URL_ENV};

fn url() -> Option<String> {
    let url = std::env::var(URL_ENV).ok();
    if url.is_none() {
        println!("SKIPPED: {URL_ENV} is not set (start the server: scripts/services.sh up mysql)");
    }
    url
}

async fn open(url: &str, prefix: &str) -> Arc<dyn StreamStore> {
    Arc::new(MysqlStore::connect(url, prefix).await.unwrap())
}

#[tokio::test]
async fn ids_never_alias() {
    let Some(url) = url() else { return };
    let p = cases::prefix("ids");
    let store = open(&url, &p).await;
    cases::ids_differing_in_padding_case_or_accents_never_alias(&*store).await;
    store.close().await.unwrap();
    MysqlStore::destroy(&url, &p).await.unwrap();
}

#[tokio::test]
async fn polling_wakes_a_reader_of_another_store() {
    let Some(url) = url() else { return };
    let p = cases::prefix("wake");
    let (a, b) = (open(&url, &p).await, open(&url, &p).await);
    let took = cases::waiting_reader_wakes_on_another_stores_append(a.clone(), b.clone()).await;
    // No push channel: the reader polls at most 250 ms apart.
    assert!(took < Duration::from_millis(600), "woke after {took:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
    MysqlStore::destroy(&url, &p).await.unwrap();
}

#[tokio::test]
async fn concurrent_opens_create_the_schema_once() {
    let Some(url) = url() else { return };
    let p = cases::prefix("schema");
    let (u, q) = (url.clone(), p.clone());
    cases::concurrent_opens_create_the_schema_once(move || {
        let (u, q) = (u.clone(), q.clone());
        async move {
            let s: Arc<dyn StreamStore> = Arc::new(MysqlStore::connect(&u, &q).await?);
            Ok(s)
        }
    })
    .await;
    MysqlStore::destroy(&url, &p).await.unwrap();
}

#[tokio::test]
async fn key_window_prunes_but_keeps_recent_keys() {
    let Some(url) = url() else { return };
    let p = cases::prefix("keys");
    let store = open(&url, &p).await;
    cases::key_window_keeps_the_most_recent_keys(&*store).await;
    store.close().await.unwrap();
    MysqlStore::destroy(&url, &p).await.unwrap();
}

#[tokio::test]
async fn sweeper_deletes_expired_streams_and_bad_prefixes_are_refused() {
    let Some(url) = url() else { return };
    for bad in ["", "A", "a-b", "a;drop table x", "1a"] {
        let e = MysqlStore::connect(&url, bad).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    let p = cases::prefix("sweep");
    let store = MysqlStore::connect(&url, &p).await.unwrap();
    let s = StreamId::new("sweep/me").unwrap();
    store
        .append(&s, vec![Bytes::from("x")], AppendOptions::default())
        .await
        .unwrap();
    let idle = Retention {
        delete_after_idle: Some(Duration::from_millis(50)),
        ..Retention::default()
    };
    store.set_retention(&s, idle).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Expired streams are never served, swept or not.
    assert_eq!(
        store.info(&s).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The background sweeper (every second) or this explicit sweep removes the rows.
    store.sweep().await.unwrap();
    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}streams"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    store.close().await.unwrap();
    MysqlStore::destroy(&url, &p).await.unwrap();
}
