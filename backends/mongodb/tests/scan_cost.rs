//! Measures what FerretDB's full scans cost: the adapter's point reads by `_id` against the
//! requests that are scans on FerretDB (a read from inside a batch, a multi-batch read, a reused
//! idempotency key), as the collection grows. Prints `mongodb scan cost: ...` lines; the numbers
//! in `docs/backends.md` come from this test.
//!
//! `cargo test -p streamkeep-mongodb --release --test scan_cost -- --ignored --nocapture`
//! (needs `STREAMSTORE_MONGODB_URL`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use streamkeep_mongodb::{MongoStore, URL_ENV};
use streamstore::{AppendOptions, IdempotencyKey, ReadOptions, StreamId, StreamStore};

/// Mean microseconds of `n` runs of `f`.
async fn mean_us<F, Fut>(n: u32, mut f: F) -> u128
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    t.elapsed().as_micros() / u128::from(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn point_reads_against_scans_as_the_collection_grows() {
    let Ok(url) = std::env::var(URL_ENV) else {
        println!("SKIPPED: {URL_ENV} is not set");
        return;
    };
    let prefix = format!("scan_{:08x}_", rand::random::<u32>());
    let store = Arc::new(MongoStore::connect(&url, &prefix).await.unwrap());
    let probe = StreamId::new("probe").unwrap();
    for b in 0..10u8 {
        let recs = (0..10).map(|r| Bytes::from(vec![b, r])).collect();
        let key = IdempotencyKey::new(vec![b]).unwrap();
        store
            .append(&probe, recs, AppendOptions::default().with_key(key))
            .await
            .unwrap();
    }
    let mut docs = 10u64;
    for target in [10u64, 2_000, 10_000] {
        // Grow the collection to `target` documents with one-record appends to 100 streams.
        let mut tasks = Vec::new();
        let per_task = (target - docs) / 8;
        for t in 0..8u64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let s = StreamId::new(format!("fill/{}", (t * per_task + i) % 100)).unwrap();
                    store
                        .append(&s, vec![Bytes::from_static(b"x")], AppendOptions::default())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        docs += per_task * 8;
        let n = 30;
        let point = mean_us(n, || async {
            let b = store
                .read(&probe, 50, ReadOptions::limit(10))
                .await
                .unwrap();
            assert_eq!(b.records.len(), 10);
        })
        .await;
        let inside = mean_us(n, || async {
            let b = store.read(&probe, 55, ReadOptions::limit(5)).await.unwrap();
            assert_eq!(b.records.len(), 5);
        })
        .await;
        let many = mean_us(n, || async {
            let b = store
                .read(&probe, 0, ReadOptions::limit(100))
                .await
                .unwrap();
            assert_eq!(b.records.len(), 100);
        })
        .await;
        let reused_key = mean_us(n, || async {
            let recs = (0..10).map(|r| Bytes::from(vec![3, r])).collect();
            let key = IdempotencyKey::new(vec![3]).unwrap();
            let r = store
                .append(&probe, recs, AppendOptions::default().with_key(key))
                .await
                .unwrap();
            assert_eq!(r.first_offset, 30);
        })
        .await;
        println!(
            "mongodb scan cost: {docs} documents: read at a batch start (point reads) {point} us, \
             read from inside a batch (+1 range query) {inside} us, read across 10 batches \
             (+1 range query) {many} us, reused idempotency key (+1 claim query) {reused_key} us"
        );
    }
    store.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}
