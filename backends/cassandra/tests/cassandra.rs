//! Cassandra-specific tests beyond the conformance suite: the bucket roll interrupted between
//! its steps and repaired by the next writer, ambiguous appends (a lost reply or request)
//! resolved by a SERIAL read, and concurrent schema creation.
//!
//! Needs `STREAMSTORE_CASSANDRA_NODES` (`scripts/services.sh up cassandra`); prints SKIPPED and
//! passes without it.

use bytes::Bytes;
use streamkeep_cassandra::{Ambiguity, CassandraConfig, CassandraStore, RollCrash, NODES_ENV};
use streamstore::{AppendOptions, ErrorKind, IdempotencyKey, ReadOptions, StreamId, StreamStore};

fn config(tag: &str, bucket_size: u64) -> Option<CassandraConfig> {
    let Ok(nodes) = std::env::var(NODES_ENV) else {
        println!(
            "SKIPPED: {NODES_ENV} is not set (start the server: scripts/services.sh up cassandra)"
        );
        return None;
    };
    let prefix = format!("t{tag}_{:08x}_", rand_u32());
    let mut c = CassandraConfig::new(&nodes, "streamstore_test")
        .unwrap()
        .with_prefix(&prefix)
        .unwrap();
    c.bucket_size = bucket_size;
    Some(c)
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

fn keyed(i: u32) -> AppendOptions {
    AppendOptions::default().with_key(IdempotencyKey::new(format!("k{i}")).unwrap())
}

fn rec(i: u32) -> Vec<Bytes> {
    vec![Bytes::from(format!("r{i}"))]
}

/// The `streams` row's bucket hint of `stream`.
async fn hint(store: &CassandraStore, stream: &StreamId) -> i64 {
    let c = store.config();
    let cql = format!(
        "SELECT bucket FROM {}.{}streams WHERE sid = ?",
        c.keyspace,
        c.prefix()
    );
    let rows = store
        .session()
        .query_unpaged(cql, (stream.as_str(),))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.single_row::<(i64,)>().unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_interrupted_between_its_steps_is_repaired_by_the_next_writer() {
    for (tag, step) in [("c", RollCrash::AfterClose), ("h", RollCrash::AfterHead)] {
        let Some(config) = config(tag, 4) else {
            return;
        };
        let stream = StreamId::new("roll/s").unwrap();
        let first = CassandraStore::open(config.clone()).await.unwrap();
        for i in 0..4 {
            first.append(&stream, rec(i), keyed(i)).await.unwrap();
        }
        // The fifth append must roll to bucket 1 first; the roll "crashes" after `step`.
        first.roll_crash_for_tests(step);
        let e = first.append(&stream, rec(4), keyed(4)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        // Half-rolled, the stream still reads and reports its state.
        let info = first.info(&stream).await.unwrap();
        assert_eq!((info.first_offset, info.next_offset), (0, 4), "{step:?}");
        assert_eq!(hint(&first, &stream).await, 0, "{step:?}: the hint moved");
        first.close().await.unwrap();
        drop(first);

        // A new process: its first write finishes the roll, then appends.
        let next = CassandraStore::open(config.clone()).await.unwrap();
        let r = next.append(&stream, rec(4), keyed(4)).await.unwrap();
        assert_eq!(r.first_offset, 4, "{step:?}");
        assert_eq!(
            hint(&next, &stream).await,
            1,
            "{step:?}: the hint did not move"
        );
        // Keys of the old bucket moved with the roll: a retry is still recognized.
        let again = next.append(&stream, rec(0), keyed(0)).await.unwrap();
        assert_eq!(
            again.first_offset, 0,
            "{step:?}: key k0 forgotten by the roll"
        );
        let batch = next
            .read(&stream, 0, ReadOptions::limit(100))
            .await
            .unwrap();
        let got: Vec<_> = batch.records.iter().map(|r| r.payload.clone()).collect();
        let want: Vec<Bytes> = (0..5).flat_map(rec).collect();
        assert_eq!(got, want, "{step:?}");
        assert_eq!(next.info(&stream).await.unwrap().next_offset, 5);
        next.close().await.unwrap();
        drop(next);
        CassandraStore::destroy(config).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_create_the_schema_once() {
    let Some(config) = config("s", 64) else {
        return;
    };
    let opens = (0..3).map(|_| CassandraStore::open(config.clone()));
    let stores: Vec<_> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|s| s.expect("a concurrent open failed"))
        .collect();
    let id = StreamId::new("schema/s").unwrap();
    for (i, s) in stores.iter().enumerate() {
        let r = s
            .append(&id, rec(0), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(r.first_offset, u64::try_from(i).unwrap());
    }
    for s in &stores {
        s.close().await.unwrap();
    }
    drop(stores);
    CassandraStore::destroy(config).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_appends_are_resolved_by_a_serial_read() {
    let Some(config) = config("a", 64) else {
        return;
    };
    let store = CassandraStore::open(config.clone()).await.unwrap();
    let id = StreamId::new("ambiguous/s").unwrap();
    store.append(&id, rec(0), keyed(0)).await.unwrap();

    // The batch applied but its answer was lost: the SERIAL read finds the batch id.
    store.ambiguity_for_tests(Ambiguity::LostReply);
    let r = store.append(&id, rec(1), keyed(1)).await.unwrap();
    assert_eq!(r.first_offset, 1);
    store.ambiguity_for_tests(Ambiguity::LostReply);
    let r = store
        .append(&id, rec(2), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(r.first_offset, 2);

    // The batch never left: not applied. A keyed append is decided again and lands once.
    store.ambiguity_for_tests(Ambiguity::LostRequest);
    let r = store.append(&id, rec(3), keyed(3)).await.unwrap();
    assert_eq!(r.first_offset, 3);
    // Without a key a late copy could not be told apart: the caller gets `Unavailable`, and
    // nothing was written.
    store.ambiguity_for_tests(Ambiguity::LostRequest);
    let e = store
        .append(&id, rec(9), AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    let batch = store.read(&id, 0, ReadOptions::limit(100)).await.unwrap();
    let got: Vec<_> = batch.records.iter().map(|r| r.payload.clone()).collect();
    let want: Vec<Bytes> = (0..4).flat_map(rec).collect();
    assert_eq!(got, want, "an ambiguous append was lost or written twice");
    store.close().await.unwrap();
    drop(store);
    CassandraStore::destroy(config).await.unwrap();
}
