//! The watcher's head read (`heads_marks`) seen from a store object that never writes: every
//! way of reading the heads (`MarksMethod`) gives the same marks, and every kind of write by
//! another store object (append, seal, trim, delete, re-creation) moves the mark. The change
//! hints report the same marks; a change made through another store object wakes a waiting
//! reader at the next tick, far before the full pass, and a change whose hint was lost is found
//! by the full pass.
//!
//! Needs `STREAMSTORE_CASSANDRA_NODES` (`scripts/services.sh up cassandra`); prints SKIPPED and
//! passes without it. The ignored test measures one pass over many streams by each method, side
//! by side (docs/benchmarks.md):
//!
//! ```sh
//! STREAMSTORE_MARKS_STREAMS=1000,10000 cargo test --release -p streamkeep-cassandra \
//!     --test marks -- --ignored --nocapture
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use streamkeep_cassandra::{CassandraConfig, CassandraStore, MarksMethod, NODES_ENV};
use streamstore::{ReadOptions, StreamId, StreamStore};
use streamstore_adapter_testing::put;

const fn by_in(chunk: usize, in_flight: usize) -> MarksMethod {
    MarksMethod::In { chunk, in_flight }
}

/// The methods measured; `In { chunk: 10, in_flight: 64 }` is what the watcher uses, and
/// `Concurrent(32)` what it used before. Larger chunks than 100 are not tried: a chunk of `n`
/// asks for about `n²` partition keys (500 streams: 250,000).
const METHODS: [MarksMethod; 7] = [
    MarksMethod::Concurrent(32),
    MarksMethod::Concurrent(256),
    by_in(10, 16),
    by_in(50, 16),
    by_in(100, 16),
    by_in(10, 64),
    by_in(8, 128),
];

fn config(tag: &str) -> Option<CassandraConfig> {
    let Ok(nodes) = std::env::var(NODES_ENV) else {
        println!("SKIPPED: {NODES_ENV} is not set (scripts/services.sh up cassandra)");
        return None;
    };
    let prefix = format!("m{tag}_{:08x}_", rand::random::<u32>());
    Some(
        CassandraConfig::new(&nodes, "streamstore_test")
            .unwrap()
            .with_prefix(&prefix)
            .unwrap(),
    )
}

/// The marks of `streams` by `method`, sorted by stream.
async fn marks(
    store: &CassandraStore,
    streams: &[StreamId],
    method: MarksMethod,
) -> BTreeMap<StreamId, u64> {
    let got = store.heads_marks_by(streams, method).await.unwrap();
    let n = got.len();
    let map: BTreeMap<StreamId, u64> = got.into_iter().collect();
    assert_eq!(map.len(), n, "{method:?}: a stream reported twice");
    map
}

/// The marks by every method, checked equal; returns them.
async fn agreed(store: &CassandraStore, streams: &[StreamId]) -> BTreeMap<StreamId, u64> {
    let first = marks(store, streams, METHODS[0]).await;
    for method in &METHODS[1..] {
        assert_eq!(marks(store, streams, *method).await, first, "{method:?}");
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_agrees_and_every_write_of_another_store_moves_the_mark() {
    let Some(config) = config("a") else {
        return;
    };
    let writer = CassandraStore::open(config.clone()).await.unwrap();
    let watcher = CassandraStore::open(config.clone()).await.unwrap();
    let ids: Vec<StreamId> = (0..30)
        .map(|i| StreamId::new(format!("marks/{i}")).unwrap())
        .collect();
    let s = ids[0].clone();
    assert!(
        agreed(&watcher, &ids).await.is_empty(),
        "nothing written yet"
    );
    for id in &ids[..20] {
        put(&writer, id, 1).await;
    }
    // The first read finds the heads through the `streams` rows, later ones at the cached
    // locations (the multi-partition read applies only to those).
    let before = agreed(&watcher, &ids).await;
    assert_eq!(
        before.len(),
        20,
        "the 20 written streams exist, the 10 others do not"
    );
    assert_eq!(agreed(&watcher, &ids).await, before, "no write, same marks");

    let mut seen = vec![before[&s]];
    let mut check = |m: BTreeMap<StreamId, u64>, what: &str| {
        let now = *m.get(&s).unwrap_or_else(|| panic!("after {what}: missing"));
        assert!(!seen.contains(&now), "after {what}: the mark did not move");
        seen.push(now);
        for id in &ids[1..20] {
            assert_eq!(m.get(id), before.get(id), "after {what}: {id:?} moved");
        }
    };
    put(&writer, &s, 2).await;
    check(agreed(&watcher, &ids).await, "an append");
    writer.trim(&s, 1).await.unwrap();
    check(agreed(&watcher, &ids).await, "a trim");
    writer.seal(&s).await.unwrap();
    check(agreed(&watcher, &ids).await, "a seal");
    assert!(writer.delete(&s).await.unwrap());
    assert!(!agreed(&watcher, &ids).await.contains_key(&s), "deleted");
    put(&writer, &s, 1).await;
    check(agreed(&watcher, &ids).await, "a re-creation");

    writer.close().await.unwrap();
    watcher.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}

/// Writes `n` streams of one record each straight into the tables (a `streams` row and an open
/// bucket-0 head per stream, as the adapter's first append leaves them, without its
/// lightweight transactions): seeding 10,000 streams through appends takes minutes here.
async fn seed(store: &CassandraStore, n: usize) -> Vec<StreamId> {
    let c = store.config();
    let (ks, p) = (&c.keyspace, c.prefix());
    let session = store.session();
    let stream_row = session
        .prepare(format!(
            "INSERT INTO {ks}.{p}streams (sid, inc, bucket) VALUES (?, ?, 0)"
        ))
        .await
        .unwrap();
    let head_row = session
        .prepare(format!(
            "INSERT INTO {ks}.{p}log (sid, inc, bucket, kind, off, key, ver, base, first, next, \
             created, last_ts, closed, bytes) VALUES (?, ?, 0, 0, 0, 0x00, 1, 0, 0, 1, ?, ?, 0, 2)"
        ))
        .await
        .unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let ids: Vec<StreamId> = (0..n)
        .map(|i| StreamId::new(format!("pass/{i}")).unwrap())
        .collect();
    let (stream_row, head_row) = (&stream_row, &head_row);
    stream::iter(ids.iter())
        .map(|id| async move {
            let inc = i64::from(rand::random::<u32>()) + 1;
            session
                .execute_unpaged(head_row, (id.as_str(), inc, now, now))
                .await?;
            session
                .execute_unpaged(stream_row, (id.as_str(), inc))
                .await
        })
        .buffer_unordered(256)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    ids
}

/// Passes per method at each size.
const ROUNDS: usize = 7;

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// One watcher pass over `STREAMSTORE_MARKS_STREAMS` (default 1,000; comma-separated for
/// several) existing streams by every method, interleaved round by round so they share the
/// machine's load. Prints `cassandra marks pass:` lines: median, min and max of `ROUNDS` rounds, and
/// the ratio of each median to today's 32 concurrent reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn one_pass_over_many_streams_by_each_method() {
    let sizes = std::env::var("STREAMSTORE_MARKS_STREAMS").unwrap_or_else(|_| "1000".into());
    for n in sizes.split(',').map(|s| s.trim().parse::<usize>().unwrap()) {
        let Some(config) = config("p") else {
            return;
        };
        let writer = Arc::new(CassandraStore::open(config.clone()).await.unwrap());
        let t = Instant::now();
        let ids = seed(&writer, n).await;
        println!("cassandra marks pass: W={n} seeded in {:?}", t.elapsed());
        let watcher = CassandraStore::open(config.clone()).await.unwrap();
        // A cold pass (no cached head locations: the `streams` row, then the head).
        let t = Instant::now();
        let all = marks(&watcher, &ids, MarksMethod::Concurrent(256)).await;
        println!(
            "cassandra marks pass: W={n} cold (streams row + head, 256 in flight) {:?}",
            t.elapsed()
        );
        assert_eq!(all.len(), n);
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); METHODS.len()];
        for _round in 0..ROUNDS {
            for (i, method) in METHODS.iter().enumerate() {
                let t = Instant::now();
                let got = marks(&watcher, &ids, *method).await;
                times[i].push(t.elapsed());
                assert_eq!(got, all, "{method:?}");
            }
        }
        let base = median(&mut times[0].clone());
        for (i, method) in METHODS.iter().enumerate() {
            let (lo, hi) = (
                *times[i].iter().min().unwrap(),
                *times[i].iter().max().unwrap(),
            );
            let m = median(&mut times[i]);
            println!(
                "cassandra marks pass: W={n} {method:?}: median {m:?} (min {lo:?}, max {hi:?}), \
                 ratio to Concurrent(32) {:.2}",
                m.as_secs_f64() / base.as_secs_f64()
            );
        }
        watcher.close().await.unwrap();
        writer.close().await.unwrap();
        CassandraStore::destroy(config).await.unwrap();
    }
}

/// The hinted changes since `cursor` as a map (`None`: deleted).
async fn hinted(store: &CassandraStore, cursor: u64) -> BTreeMap<StreamId, Option<u64>> {
    let changes = store.hinted_changes(Some(cursor)).await.unwrap();
    changes
        .marks
        .expect("a few changes are listed")
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_carry_the_mark_the_head_read_returns_after_every_kind_of_write() {
    let Some(config) = config("h") else {
        return;
    };
    let writer = CassandraStore::open(config.clone()).await.unwrap();
    let watcher = CassandraStore::open(config.clone()).await.unwrap();
    let s = StreamId::new("hints/s").unwrap();
    let other = StreamId::new("hints/other").unwrap();
    // The first call only returns a cursor.
    let first = watcher.hinted_changes(None).await.unwrap();
    assert_eq!(first.marks, Some(Vec::new()));
    put(&writer, &other, 1).await;
    let check = |what: &'static str| {
        let (watcher, s) = (&watcher, &s);
        async move {
            let mark = marks(watcher, std::slice::from_ref(s), METHODS[0])
                .await
                .get(s)
                .copied();
            // Hints are kept for a margin before the cursor: a cursor taken just now still
            // lists the write just made.
            let now = watcher.hinted_changes(None).await.unwrap().cursor;
            let got = hinted(watcher, now).await;
            assert_eq!(got.get(s), Some(&mark), "after {what}");
        }
    };
    put(&writer, &s, 1).await;
    check("a creation").await;
    put(&writer, &s, 2).await;
    check("an append").await;
    writer.trim(&s, 1).await.unwrap();
    check("a trim").await;
    writer.seal(&s).await.unwrap();
    check("a seal").await;
    assert!(writer.delete(&s).await.unwrap());
    check("a delete").await;
    put(&writer, &s, 1).await;
    check("a re-creation").await;
    let all = hinted(&watcher, first.cursor).await;
    assert!(
        all.contains_key(&other),
        "the other stream's creation is listed"
    );
    assert_eq!(writer.lost_hints(), 0);

    writer.close().await.unwrap();
    watcher.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}

/// Opens a reader store with a 100 ms tick and the given full pass, and a writer store.
async fn pair(
    tag: &str,
    full_pass: Duration,
) -> Option<(CassandraConfig, CassandraStore, CassandraStore)> {
    let mut config = config(tag)?;
    config.poll_interval = Duration::from_millis(100);
    config.full_pass = full_pass;
    let writer = CassandraStore::open(config.clone()).await.unwrap();
    let reader = CassandraStore::open(config.clone()).await.unwrap();
    Some((config, writer, reader))
}

/// Starts a waiting read of `s` from offset `from`; the task returns how long after `start`
/// records arrived (or panics after `wait`).
fn wait_for(
    reader: &Arc<CassandraStore>,
    s: &StreamId,
    from: u64,
    wait: Duration,
) -> tokio::task::JoinHandle<Instant> {
    let (reader, s) = (Arc::clone(reader), s.clone());
    tokio::spawn(async move {
        let batch = reader
            .read(&s, from, ReadOptions::limit(16).wait(wait))
            .await
            .unwrap();
        assert!(
            !batch.records.is_empty(),
            "{s:?}: no record within {wait:?}"
        );
        Instant::now()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_another_store_wakes_readers_at_the_next_tick() {
    let Some((config, writer, reader)) = pair("w", Duration::from_secs(60)).await else {
        return;
    };
    let reader = Arc::new(reader);
    let ids: Vec<StreamId> = (0..20)
        .map(|i| StreamId::new(format!("wake/{i}")).unwrap())
        .collect();
    for id in &ids {
        put(&writer, id, 1).await;
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| wait_for(&reader, id, 1, Duration::from_secs(30)))
        .collect();
    // Past the first reads of the new entries and the first full pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let passes = reader.watcher().stats().full_passes;
    let mut done = Vec::with_capacity(ids.len());
    for id in &ids {
        put(&writer, id, 1).await;
        done.push(Instant::now());
    }
    let mut slowest = Duration::ZERO;
    for (t, appended) in tasks.into_iter().zip(done) {
        slowest = slowest.max(t.await.unwrap().saturating_duration_since(appended));
    }
    println!("20 readers each woken within {slowest:?} of their append's acknowledgement");
    assert!(
        slowest < Duration::from_secs(1),
        "woken after {slowest:?}: the hints were not read at the tick"
    );
    assert_eq!(
        reader.watcher().stats().full_passes,
        passes,
        "no full pass ran (full_pass is 60 s): the hints woke them"
    );
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_hint_was_lost_is_found_by_the_full_pass() {
    let full_pass = Duration::from_secs(3);
    let Some((config, writer, reader)) = pair("l", full_pass).await else {
        return;
    };
    let reader = Arc::new(reader);
    let s = StreamId::new("lost/s").unwrap();
    put(&writer, &s, 1).await;
    let task = wait_for(&reader, &s, 1, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let passes = reader.watcher().stats().full_passes;
    writer.hints_for_tests(false);
    let start = Instant::now();
    put(&writer, &s, 1).await;
    let took = task.await.unwrap().saturating_duration_since(start);
    println!("the unhinted append was noticed after {took:?}");
    assert!(
        took < full_pass + Duration::from_secs(2),
        "noticed after {took:?}, beyond the full pass"
    );
    assert!(
        reader.watcher().stats().full_passes > passes,
        "only a full pass can have noticed it"
    );
    assert_eq!(writer.lost_hints(), 0, "suppressed by the seam, not failed");
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}

/// A waiting read of `s` from `from` (limit 16, 30 s), spawned.
fn read_waiting(
    reader: &Arc<CassandraStore>,
    s: &StreamId,
    from: u64,
) -> tokio::task::JoinHandle<streamstore::Result<streamstore::ReadBatch>> {
    let (reader, s) = (Arc::clone(reader), s.clone());
    tokio::spawn(async move {
        reader
            .read(
                &s,
                from,
                ReadOptions::limit(16).wait(Duration::from_secs(30)),
            )
            .await
    })
}

/// A woken reader reads the head and the records in one statement (`core/read.rs`), and the
/// answer stays what the sequential read gives: the new records, a page of more than the
/// records read with the head (a second statement), a seal, `Trimmed` when a trim passed the
/// reader's offset before it was woken, and a missing stream after a delete (which falls back
/// to the sequential read: the head it finds is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_reader_reads_head_and_records_at_once_and_stays_exact() {
    let Some((config, writer, reader)) = pair("o", Duration::from_secs(3)).await else {
        return;
    };
    let reader = Arc::new(reader);
    let settle = Duration::from_millis(1500);

    // Records: served by the overlapped read.
    let s = StreamId::new("overlap/records").unwrap();
    put(&writer, &s, 1).await;
    let task = read_waiting(&reader, &s, 1);
    tokio::time::sleep(settle).await;
    let before = reader.rereads();
    put(&writer, &s, 2).await;
    let batch = task.await.unwrap().unwrap();
    let offsets: Vec<u64> = batch.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [1, 2]);
    assert_eq!(batch.records[1].payload.as_ref(), b"r\x01");
    assert_eq!((batch.next_offset, batch.end_offset), (3, 3));
    let after = reader.rereads();
    assert!(
        after.0 > before.0,
        "{before:?} -> {after:?}: not overlapped"
    );
    assert_eq!(
        after.2 - before.2,
        after.0 - before.0,
        "{before:?} -> {after:?}: one statement per re-read"
    );

    // A reader more than 32 records behind (one append of 40): the statement with the head
    // reads 32, a second one the rest of the page, in one answer.
    let b = StreamId::new("overlap/behind").unwrap();
    put(&writer, &b, 1).await;
    let task = {
        let (reader, b) = (Arc::clone(&reader), b.clone());
        tokio::spawn(async move {
            reader
                .read(&b, 1, ReadOptions::limit(100).wait(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(settle).await;
    let before = reader.rereads();
    put(&writer, &b, 40).await;
    let batch = task.await.unwrap().unwrap();
    let offsets: Vec<u64> = batch.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (1..=40).collect::<Vec<u64>>());
    assert_eq!(batch.records[39].payload.as_ref(), b"r\x27");
    let after = reader.rereads();
    // One statement per re-read (a wake-up before the append committed finds nothing), and
    // one more for the rest of the page.
    assert_eq!(after.1, before.1, "{before:?} -> {after:?}: no fallback");
    assert_eq!(
        after.2 - before.2,
        after.0 - before.0 + 1,
        "{before:?} -> {after:?}: a second statement for the rest of the page"
    );

    // A seal: the overlapped read's head says sealed, no record.
    let task = read_waiting(&reader, &s, 3);
    tokio::time::sleep(settle).await;
    writer.seal(&s).await.unwrap();
    let batch = task.await.unwrap().unwrap();
    assert!(batch.sealed && batch.records.is_empty(), "{batch:?}");

    // A trim past the reader's offset before the reader is woken (hints off: only the full
    // pass, 3 s, wakes it): `Trimmed`, from the overlapped read. A round of the full pass may
    // fall between the append and the trim (then the reader gets the records, also exact): up
    // to three tries.
    writer.hints_for_tests(false);
    let mut trimmed = false;
    for i in 0..3 {
        let t = StreamId::new(format!("overlap/trim/{i}")).unwrap();
        put(&writer, &t, 2).await;
        let task = read_waiting(&reader, &t, 2);
        tokio::time::sleep(settle).await;
        put(&writer, &t, 2).await;
        writer.trim(&t, 3).await.unwrap();
        let before = reader.rereads();
        match task.await.unwrap() {
            Err(e) => {
                assert!(
                    matches!(e.kind(), streamstore::ErrorKind::Trimmed { .. }),
                    "{e:?}"
                );
                assert_eq!(reader.rereads().1, before.1, "decided without falling back");
                trimmed = true;
                break;
            }
            Ok(batch) => {
                let offsets: Vec<u64> = batch.records.iter().map(|r| r.offset).collect();
                assert_eq!(offsets, [2, 3], "woken between the append and the trim");
            }
        }
    }
    assert!(
        trimmed,
        "every try was woken between the append and the trim"
    );
    writer.hints_for_tests(true);

    // A delete: the head found at the cached location is closed, the sequential read says the
    // stream is gone.
    let d = StreamId::new("overlap/delete").unwrap();
    put(&writer, &d, 1).await;
    let task = read_waiting(&reader, &d, 1);
    tokio::time::sleep(settle).await;
    let before = reader.rereads();
    assert!(writer.delete(&d).await.unwrap());
    let batch = task.await.unwrap().unwrap();
    assert!(batch.is_gone(), "{batch:?}");
    assert!(
        reader.rereads().1 > before.1,
        "fell back to the sequential read"
    );

    writer.close().await.unwrap();
    reader.close().await.unwrap();
    CassandraStore::destroy(config).await.unwrap();
}

/// Followers of streams written by another store object: each wake-up costs the woken read, and
/// the follower's next call parks on the memo that read left (`follow` in the adapter tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_parks_on_the_memo_of_its_woken_read() {
    let Some((config, writer, reader)) = pair("follow", Duration::from_secs(30)).await else {
        return;
    };
    let spared: fn(&CassandraStore) -> u64 = |r| r.watcher().stats().spared_reads;
    streamstore_adapter_testing::follow::a_follower_parks_on_memos(writer, reader, spared).await;
    CassandraStore::destroy(config).await.unwrap();
}
