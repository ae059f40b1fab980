//! Pipelined group commit in `Sync` mode: the writer decides and writes a group while the sync
//! thread syncs and publishes the previous ones, so later groups are decided against heads that
//! are not published yet (the writer's overlay). Many concurrent appenders with expectations,
//! idempotency keys retried at once, trims, byte retention and deletes on a few streams keep
//! several groups in flight; afterwards every acknowledgement must agree with what a reader sees,
//! before and after a reopen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep::{
    AppendOptions, AppendResult, ErrorKind, Expect, IdempotencyKey, LocalOptions, LocalStore,
    ReadOptions, Retention, StreamId, StreamStore,
};

const STREAMS: usize = 4;
const TASKS: usize = 24;
const ROUNDS: usize = 60;

fn id(i: usize) -> StreamId {
    StreamId::new(format!("pipe-{i}")).expect("valid id")
}

fn payload(task: usize, round: usize, k: usize) -> Bytes {
    Bytes::from(format!("t{task}-r{round}-k{k}"))
}

/// Every acknowledged append: (stream, result, payloads).
type Acks = Vec<(usize, AppendResult, Vec<Bytes>)>;

async fn read_all(store: &LocalStore, s: usize) -> BTreeMap<u64, Bytes> {
    let mut out = BTreeMap::new();
    let mut from = 0;
    loop {
        let b = match store.read(&id(s), from, ReadOptions::limit(1000)).await {
            Ok(b) => b,
            Err(e) => match e.kind() {
                ErrorKind::Trimmed { first_available } => {
                    from = first_available;
                    continue;
                }
                _ => panic!("read of stream {s} failed: {e}"),
            },
        };
        for r in &b.records {
            out.insert(r.offset, r.payload.clone());
        }
        if b.records.is_empty() {
            return out;
        }
        from = b.next_offset;
    }
}

/// Checks the acknowledgements of `s` against what a reader sees: offsets are unique and dense
/// from 0 to the end, and every acknowledged record still readable holds its payload.
fn check(s: usize, acks: &Acks, seen: &BTreeMap<u64, Bytes>, end: u64) {
    let mut claimed: BTreeMap<u64, &Bytes> = BTreeMap::new();
    for (_, r, records) in acks.iter().filter(|(x, _, _)| *x == s) {
        assert_eq!(r.count, records.len() as u64);
        for (i, p) in records.iter().enumerate() {
            let off = r.first_offset + i as u64;
            if let Some(prev) = claimed.insert(off, p) {
                assert_eq!(
                    prev, p,
                    "stream {s}: offset {off} acknowledged to two appends"
                );
            }
        }
    }
    let claimed_end = claimed.keys().next_back().map_or(0, |o| o + 1);
    assert_eq!(claimed_end, end, "stream {s}: end offset");
    assert_eq!(
        claimed.len() as u64,
        end,
        "stream {s}: a gap among the acknowledged offsets"
    );
    for (off, p) in seen {
        assert_eq!(
            claimed.get(off),
            Some(&p),
            "stream {s}: offset {off} holds another record"
        );
    }
    if let Some((&first, _)) = seen.iter().next() {
        assert_eq!(
            seen.len() as u64,
            end - first,
            "stream {s}: records missing above the first readable offset"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_groups_agree_with_their_acknowledgements() {
    agree(LocalOptions::default).await;
}

/// The same with the sync thread holding syncs back for the groups written behind them
/// (`group_fill_wait`): several groups per sync, each still acknowledged only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_groups_agree_with_their_acknowledgements_when_syncs_wait_to_fill() {
    agree(|| LocalOptions::default().group_fill_wait(Duration::from_millis(2))).await;
}

/// A lone appender's group is synced by the writer itself, with nothing announced behind it: the
/// fill wait never applies to it (each append here would take at least 300 ms if it did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_appender_never_waits_for_a_sync_to_fill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(
        dir.path(),
        LocalOptions::default().group_fill_wait(Duration::from_millis(300)),
    )
    .await
    .expect("open");
    let started = Instant::now();
    for k in 0..20 {
        store
            .append(&id(0), vec![payload(0, 0, k)], AppendOptions::default())
            .await
            .expect("append");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "20 lone appends took {took:?}: they waited for syncs to fill"
    );
    store.close().await.expect("close");
}

/// A sync held back for more groups starts as soon as the writer drains the sync thread (here:
/// for checkpoints, between many concurrent appends): with a 5 s fill wait, neither a checkpoint
/// nor an append may take anywhere near that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_ends_a_sync_held_back_to_fill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        LocalStore::open(
            dir.path(),
            LocalOptions::default().group_fill_wait(Duration::from_secs(5)),
        )
        .await
        .expect("open"),
    );
    let limit = Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for k in 0..60 {
                let started = Instant::now();
                store
                    .append(&id(t), vec![payload(t, 0, k)], AppendOptions::default())
                    .await
                    .expect("append");
                slowest = slowest.max(started.elapsed());
            }
            slowest
        }));
    }
    let mut slowest_checkpoint = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        store.checkpoint().await.expect("checkpoint");
        slowest_checkpoint = slowest_checkpoint.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slowest_checkpoint < limit,
        "a checkpoint took {slowest_checkpoint:?}: its drain did not end the fill wait"
    );
    for t in tasks {
        let slowest = t.await.expect("task");
        assert!(slowest < limit, "an append took {slowest:?}");
    }
    for t in 0..32 {
        assert_eq!(store.info(&id(t)).await.expect("info").next_offset, 60);
    }
}

async fn agree(opts: fn() -> LocalOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path(), opts()).await.expect("open"));
    // Stream 3 keeps at most ~2 KiB: byte retention trims inside the writer's groups.
    store
        .append(&id(3), vec![payload(99, 0, 0)], AppendOptions::default())
        .await
        .expect("create");
    let first: Acks = vec![(
        3,
        store
            .info(&id(3))
            .await
            .map(|i| AppendResult {
                first_offset: 0,
                count: 1,
                incarnation: i.incarnation,
                timestamp_ms: 0,
            })
            .expect("info"),
        vec![payload(99, 0, 0)],
    )];
    store
        .set_retention(&id(3), Retention::default().max_bytes(2048))
        .await
        .expect("retention");

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks: Acks = Vec::new();
            for round in 0..ROUNDS {
                let s = (t + round) % STREAMS;
                let records: Vec<Bytes> = (0..1 + (t + round) % 3)
                    .map(|k| payload(t, round, k))
                    .collect();
                match (t + round) % 4 {
                    // Conditional append: read the end, expect it, retry on a conflict.
                    0 => loop {
                        let next = store.info(&id(s)).await.map_or(0, |i| i.next_offset);
                        let opts = AppendOptions::expect(if next == 0 {
                            Expect::Any
                        } else {
                            Expect::Next(next)
                        });
                        match store.append(&id(s), records.clone(), opts).await {
                            Ok(r) => {
                                if next > 0 {
                                    assert_eq!(r.first_offset, next, "expectation honoured");
                                }
                                acks.push((s, r, records.clone()));
                                break;
                            }
                            Err(e) if matches!(e.kind(), ErrorKind::Conflict { .. }) => continue,
                            Err(e) => panic!("conditional append failed: {e}"),
                        }
                    },
                    // The same keyed append sent twice at once: one write, one result.
                    1 => {
                        let key = IdempotencyKey::new(format!("k-{t}-{round}")).expect("key");
                        let opts = AppendOptions::default().key(key);
                        let sid = id(s);
                        let (a, b) = tokio::join!(
                            store.append(&sid, records.clone(), opts.clone()),
                            store.append(&sid, records.clone(), opts.clone())
                        );
                        let (a, b) = (a.expect("keyed append"), b.expect("keyed retry"));
                        assert_eq!(a, b, "a retried key returns the first result");
                        acks.push((s, a, records.clone()));
                        // And once more after both were acknowledged.
                        let c = store
                            .append(&id(s), records.clone(), opts)
                            .await
                            .expect("late retry");
                        assert_eq!(a, c, "a late retry returns the first result");
                    }
                    // Trim a little behind the end.
                    2 if s != 3 => {
                        if let Ok(i) = store.info(&id(s)).await {
                            let before = i.next_offset.saturating_sub(8);
                            let first = store.trim(&id(s), before).await.expect("trim");
                            assert!(first >= before.min(i.next_offset));
                        }
                        let r = store
                            .append(&id(s), records.clone(), AppendOptions::default())
                            .await
                            .expect("append");
                        acks.push((s, r, records));
                    }
                    _ => {
                        let r = store
                            .append(&id(s), records.clone(), AppendOptions::default())
                            .await
                            .expect("append");
                        acks.push((s, r, records));
                    }
                }
            }
            acks
        }));
    }
    // Meanwhile: a stream created and deleted over and over (a delete decided while its
    // creation may still be in flight).
    let churn = {
        let store = store.clone();
        tokio::spawn(async move {
            let x = StreamId::new("pipe-churn").expect("id");
            for round in 0..ROUNDS {
                let r = store
                    .append(&x, vec![payload(0, round, 0)], AppendOptions::default())
                    .await
                    .expect("churn append");
                assert_eq!(r.first_offset, 0, "a deleted stream starts again at 0");
                assert!(store.delete(&x).await.expect("delete"), "it existed");
            }
        })
    };
    let mut acks = first;
    for t in tasks {
        acks.extend(t.await.expect("task"));
    }
    churn.await.expect("churn");

    let mut ends = Vec::new();
    for s in 0..STREAMS {
        let end = store.info(&id(s)).await.expect("info").next_offset;
        let seen = read_all(&store, s).await;
        check(s, &acks, &seen, end);
        ends.push((end, seen));
    }
    let bytes3: usize = ends[3].1.values().map(Bytes::len).sum();
    assert!(
        bytes3 <= 2048,
        "byte retention holds stream 3 to 2 KiB ({bytes3})"
    );
    assert!(
        matches!(store.info(&StreamId::new("pipe-churn").expect("id")).await, Err(e) if e.kind() == ErrorKind::NotFound)
    );

    // The same after a reopen.
    let store = Arc::try_unwrap(store)
        .map_err(|_| "still shared")
        .expect("unwrap");
    store.close().await.expect("close");
    let store = LocalStore::open(dir.path(), opts()).await.expect("reopen");
    for (s, (end, seen)) in ends.iter().enumerate() {
        assert_eq!(store.info(&id(s)).await.expect("info").next_offset, *end);
        assert_eq!(&read_all(&store, s).await, seen, "stream {s} after reopen");
    }
}
