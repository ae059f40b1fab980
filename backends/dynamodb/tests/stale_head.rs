//! Two store objects on one table, each caching the head its own appends wrote: every write of
//! one leaves the other's cached head stale. A stale head must only cost a refused transaction,
//! never a wrong answer: exact `Conflict`, `Sealed` after the other's seal, a new incarnation
//! after the other's delete, a reused idempotency key answered with the first result, and dense
//! offsets.
//!
//! Needs `STREAMSTORE_DYNAMODB_ENDPOINT` (`scripts/services.sh up dynamodb`); prints SKIPPED and
//! passes without it.

use bytes::Bytes;
use streamkeep_dynamodb::{DynamoDbConfig, DynamoDbStore, ENDPOINT_ENV};
use streamstore::{
    AppendOptions, ErrorKind, Expect, IdempotencyKey, ReadOptions, StreamId, StreamStore,
};

fn one(text: &str) -> Vec<Bytes> {
    vec![Bytes::from(text.to_owned())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_head_never_decides() {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else {
        println!("SKIPPED: {ENDPOINT_ENV} is not set (scripts/services.sh up dynamodb)");
        return;
    };
    let table = format!("streamstore_stale_{:08x}", rand::random::<u32>());
    let config = DynamoDbConfig::new(Some(&endpoint), &table).unwrap();
    let a = DynamoDbStore::open(config.clone()).await.unwrap();
    let b = DynamoDbStore::open(config.clone()).await.unwrap();
    let s = StreamId::new("stale/head").unwrap();

    assert_eq!(
        a.append(&s, one("a0"), AppendOptions::default())
            .await
            .unwrap()
            .first_offset,
        0
    );
    // b writes 1..=3; a's cached head still says next = 1.
    for i in 1..=3u64 {
        let r = b.append(&s, one("b"), AppendOptions::expect(Expect::Next(i)));
        assert_eq!(r.await.unwrap().first_offset, i);
    }
    let stale = a
        .append(&s, one("a-stale"), AppendOptions::expect(Expect::Next(1)))
        .await;
    assert_eq!(
        stale.unwrap_err().kind(),
        ErrorKind::Conflict { actual_next: 4 },
        "the stored next offset, not the cached one"
    );
    // A key used through b, retried through a whose cache b made stale: the first result.
    let key = IdempotencyKey::new(b"k1".to_vec()).unwrap();
    let first = b
        .append(
            &s,
            one("keyed"),
            AppendOptions::default().with_key(key.clone()),
        )
        .await
        .unwrap();
    a.append(&s, one("a5"), AppendOptions::default())
        .await
        .unwrap();
    b.append(&s, one("b6"), AppendOptions::default())
        .await
        .unwrap();
    let again = a
        .append(&s, one("keyed"), AppendOptions::default().with_key(key))
        .await
        .unwrap();
    assert_eq!(again, first, "the key's first result");
    let any = a.append(&s, one("a7"), AppendOptions::default()).await;
    assert_eq!(any.unwrap().first_offset, 7, "Any lands after b's append");
    // b seals: a's cached head is unsealed.
    b.seal(&s).await.unwrap();
    let sealed = a
        .append(&s, one("a-sealed"), AppendOptions::default())
        .await;
    assert_eq!(sealed.unwrap_err().kind(), ErrorKind::Sealed);
    let records = b.read(&s, 0, ReadOptions::default()).await.unwrap().records;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..8).collect::<Vec<_>>(), "dense, nothing twice");
    // b deletes: a's cached head is of the old incarnation.
    let old = a.info(&s).await.unwrap().incarnation;
    assert!(b.delete(&s).await.unwrap());
    let reborn = a
        .append(&s, one("new"), AppendOptions::expect(Expect::NoStream))
        .await
        .unwrap();
    assert_eq!(reborn.first_offset, 0);
    assert_ne!(reborn.incarnation, old, "a new incarnation");
    let r = b.append(&s, one("b1"), AppendOptions::expect(Expect::Next(1)));
    assert_eq!(r.await.unwrap().first_offset, 1);
    println!("dynamodb stale head: every stale decision was re-read");
    a.close().await.unwrap();
    b.close().await.unwrap();
    DynamoDbStore::destroy(&config).await.unwrap();
}

/// Followers of streams written by another store object: each wake-up costs the woken read, and
/// the follower's next call parks on the memo that read left (`follow` in the adapter tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_parks_on_the_memo_of_its_woken_read() {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else {
        println!("SKIPPED: {ENDPOINT_ENV} is not set (scripts/services.sh up dynamodb)");
        return;
    };
    let table = format!("streamstore_follow_{:08x}", rand::random::<u32>());
    let config = DynamoDbConfig::new(Some(&endpoint), &table).unwrap();
    let writer = DynamoDbStore::open(config.clone()).await.unwrap();
    let reader = DynamoDbStore::open(config.clone()).await.unwrap();
    let spared: fn(&DynamoDbStore) -> u64 = |r| r.watcher().stats().spared_reads;
    streamstore_adapter_testing::follow::a_follower_parks_on_memos(writer, reader, spared).await;
    DynamoDbStore::destroy(&config).await.unwrap();
}
