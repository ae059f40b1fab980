//! Durable reads (`ReadOptions::durable`) in the modes that publish before they sync: records are
//! served only once an `fdatasync` covers them, and waiting durable readers are woken by the sync.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep::{
    AppendOptions, Durability, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore,
};

fn id() -> StreamId {
    StreamId::new("s").unwrap()
}

fn recs(n: u8) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![b'a' + i; 100])).collect()
}

#[tokio::test]
async fn buffered_durable_reads_wait_for_a_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LocalOptions::default().durability(Durability::Buffered);
    let store = LocalStore::open(tmp.path(), options.clone()).await.unwrap();
    store
        .append(&id(), recs(3), AppendOptions::default())
        .await
        .unwrap();
    let all = store.read(&id(), 0, ReadOptions::limit(10)).await.unwrap();
    assert_eq!(all.records.len(), 3);
    let durable = store
        .read(&id(), 0, ReadOptions::limit(10).durable())
        .await
        .unwrap();
    assert!(
        durable.records.is_empty(),
        "served unsynced records: {durable:?}"
    );
    assert_eq!((durable.next_offset, durable.end_offset), (0, 3));

    // A waiting durable reader is woken by the sync, not by the (earlier) publish.
    let store = std::sync::Arc::new(store);
    let s = store.clone();
    let h = tokio::spawn(async move {
        let started = Instant::now();
        let wait = ReadOptions::limit(10)
            .durable()
            .wait(Duration::from_secs(30));
        let b = s.read(&id(), 0, wait).await.unwrap();
        (b, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !h.is_finished(),
        "the durable waiter returned before any sync"
    );
    store.checkpoint().await.unwrap(); // syncs the log
    let (b, took) = h.await.unwrap();
    assert_eq!(b.records, all.records);
    assert!(took < Duration::from_secs(10), "woken after {took:?}");

    store
        .append(&id(), recs(1), AppendOptions::default())
        .await
        .unwrap();
    let durable = store
        .read(&id(), 0, ReadOptions::limit(10).durable())
        .await
        .unwrap();
    assert_eq!(durable.records.len(), 3, "the new append is not synced yet");
    store.close().await.unwrap();
    drop(store);

    // After a clean close everything is durable.
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    let durable = store
        .read(&id(), 0, ReadOptions::limit(10).durable())
        .await
        .unwrap();
    assert_eq!(durable.records.len(), 4);
    store.close().await.unwrap();
}

#[tokio::test]
async fn interval_durable_waiters_are_woken_by_the_timer_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let options =
        LocalOptions::default().durability(Durability::Interval(Duration::from_millis(100)));
    let store = std::sync::Arc::new(LocalStore::open(tmp.path(), options).await.unwrap());
    let s = store.clone();
    let h = tokio::spawn(async move {
        s.read(
            &id(),
            0,
            ReadOptions::limit(10)
                .durable()
                .wait(Duration::from_secs(30)),
        )
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    store
        .append(&id(), recs(2), AppendOptions::default())
        .await
        .unwrap();
    let b = h.await.unwrap();
    assert_eq!(b.records.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Durable reads in `Sync` mode are ordinary reads; here they never run ahead of the sync.
    let again = store
        .read(&id(), 0, ReadOptions::limit(10).durable())
        .await
        .unwrap();
    assert_eq!(again.records, b.records);
}
