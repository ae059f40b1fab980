//! Fairness and isolation in the local engine (issue 17), made deterministic by slowing every
//! `fdatasync` through the `FileSystem` seam: a flood on one stream cannot keep another stream's
//! append waiting for more than a bounded share of the log, and the writer's queue stays within
//! its byte bounds under a flood, whether callers wait (`Overload::Wait`) or are refused
//! (`Overload::Reject`).

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::WrapFs;
use streamkeep::implementor::fs::FileHandle;
use streamkeep::local::Overload;
use streamkeep::{
    AppendOptions, Durability, ErrorKind, LocalOptions, LocalStore, ReadOptions, StreamId,
    StreamStore,
};

/// A file whose every `fdatasync` takes `delay` longer, counted in `syncs`.
struct SlowSync {
    inner: Arc<dyn FileHandle>,
    delay: Duration,
    syncs: Arc<AtomicU64>,
}

impl FileHandle for SlowSync {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(self.delay);
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

/// Options with syncs slowed by `delay`; returns the sync counter too.
fn slow(delay: Duration) -> (LocalOptions, Arc<AtomicU64>) {
    let syncs = Arc::new(AtomicU64::new(0));
    let counter = syncs.clone();
    let fs = WrapFs(move |_: &std::path::Path, inner| {
        Arc::new(SlowSync {
            inner,
            delay,
            syncs: counter.clone(),
        }) as Arc<dyn FileHandle>
    });
    let opts = LocalOptions::default()
        .durability(Durability::Sync)
        .segment_bytes(64 << 20)
        .fs(Arc::new(fs));
    (opts, syncs)
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// `n` records of `size` bytes.
fn batch(n: usize, size: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(vec![u8::try_from(i % 256).unwrap(); size]))
        .collect()
}

const NOISY_APPENDERS: usize = 32;
const NOISY_RECORDS: usize = 4;

/// A quiet stream's append, made while 32 appenders flood another stream with 64 KiB batches,
/// is acknowledged after at most a few of the flood's batches (its bounded share of the groups
/// ahead of it), not after the flood's whole backlog of 32 batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_on_one_stream_cannot_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, syncs) = slow(Duration::from_millis(15));
    // One 64 KiB batch (plus its framing) overdraws the share: one batch of it per group.
    opts.stream_group_bytes = 64 << 10;
    let store = Arc::new(LocalStore::open(dir.path(), opts).await.unwrap());
    let noisy = id("noisy");
    let quiet = id("quiet");
    store
        .append(&quiet, batch(1, 100), AppendOptions::default())
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..NOISY_APPENDERS {
        let (store, noisy, stop) = (store.clone(), noisy.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let b = batch(NOISY_RECORDS, 16 << 10);
                store.append(&noisy, b, AppendOptions::default()).await?;
            }
            Ok::<_, streamkeep::Error>(())
        }));
    }
    // The flood is running and its backlog is queued.
    while store.info(&noisy).await.map_or(0, |i| i.next_offset) < 8 * NOISY_RECORDS as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut worst_batches = 0;
    let mut worst_syncs = 0;
    let mut backlog = 0;
    for _ in 0..8 {
        backlog = backlog.max(store.stats().queue.ops);
        let before = store.info(&noisy).await.unwrap().next_offset;
        let s0 = syncs.load(Ordering::SeqCst);
        store
            .append(&quiet, batch(1, 100), AppendOptions::default())
            .await
            .unwrap();
        let s1 = syncs.load(Ordering::SeqCst);
        let after = store.info(&noisy).await.unwrap().next_offset;
        // The flood's batches published while the quiet append waited. `after` is read after
        // the acknowledgement, so it may include one more group.
        worst_batches = worst_batches.max((after - before) / NOISY_RECORDS as u64);
        worst_syncs = worst_syncs.max(s1 - s0);
    }
    stop.store(true, Ordering::SeqCst);
    for t in flood {
        t.await.unwrap().unwrap();
    }
    // Bound (docs/design.md, "Fairness"): the group being synced, one group waiting, its own
    // group, each with one batch of the flood; plus one group published before `after` was read.
    assert!(
        worst_batches <= 4,
        "the quiet append waited for {worst_batches} of the flood's batches (backlog \
         {NOISY_APPENDERS}; {worst_syncs} syncs)"
    );
    // ... while the flood had a backlog deeper than that.
    assert!(backlog >= (NOISY_APPENDERS / 2) as u64, "backlog {backlog}");
    let info = store.info(&quiet).await.unwrap();
    assert_eq!(info.next_offset, 9);
    store.close().await.unwrap();
}

/// Floods one stream with 200 concurrent 64 KiB appends and 100 other streams with one each,
/// sampling the queue: returns the results and the largest queue depths seen (total bytes,
/// the flooded stream's bytes).
async fn flood(store: &Arc<LocalStore>) -> (Vec<streamkeep::Result<u64>>, u64, u64) {
    let mut tasks = Vec::new();
    for i in 0..300usize {
        let store = store.clone();
        let stream = if i % 3 == 0 {
            id(&format!("other-{i}"))
        } else {
            id("flood")
        };
        tasks.push(tokio::spawn(async move {
            store
                .append(&stream, batch(1, 64 << 10), AppendOptions::default())
                .await
                .map(|r| r.first_offset)
        }));
    }
    let (mut max_total, mut max_stream) = (0, 0);
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        let q = store.stats().queue;
        max_total = max_total.max(q.bytes);
        if let Some(top) = q.top_streams.iter().find(|s| s.stream.as_str() == "flood") {
            max_stream = max_stream.max(top.bytes);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    (out, max_total, max_stream)
}

/// What one 64 KiB record counts for in the queue (payload, record, operation).
const COST: u64 = (64 << 10) + 32 + 64;

fn bounded(overload: Overload) -> (LocalOptions, Arc<AtomicU64>) {
    let (mut opts, syncs) = slow(Duration::from_millis(10));
    opts.overload = overload;
    opts.stream_queue_bytes = usize::try_from(8 * COST).unwrap();
    opts.queue_bytes = usize::try_from(32 * COST).unwrap();
    (opts, syncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_byte_bounds_hold_under_a_flood_when_callers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _) = bounded(Overload::Wait);
    let (stream_bound, total_bound) = (opts.stream_queue_bytes as u64, opts.queue_bytes as u64);
    let store = Arc::new(LocalStore::open(dir.path(), opts.clone()).await.unwrap());
    let (results, max_total, max_stream) = flood(&store).await;
    assert!(results.iter().all(Result::is_ok), "every caller waited");
    assert!(max_stream <= stream_bound, "{max_stream} > {stream_bound}");
    assert!(max_total <= total_bound, "{max_total} > {total_bound}");
    // The bound was reached: the flood was deeper than the queue.
    assert!(max_stream >= stream_bound / 2, "only {max_stream} queued");
    let q = store.stats().queue;
    assert_eq!((q.ops, q.bytes, q.rejected_stream), (0, 0, 0));
    assert!(q.top_streams.is_empty());
    store.close().await.unwrap();
    // Every acknowledged append is there after a reopen.
    let store = LocalStore::open(dir.path(), opts).await.unwrap();
    let info = store.info(&id("flood")).await.unwrap();
    assert_eq!(info.next_offset, 200);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_byte_bounds_hold_under_a_flood_when_callers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _) = bounded(Overload::Reject);
    let (stream_bound, total_bound) = (opts.stream_queue_bytes as u64, opts.queue_bytes as u64);
    let store = Arc::new(LocalStore::open(dir.path(), opts.clone()).await.unwrap());
    let (results, max_total, max_stream) = flood(&store).await;
    assert!(max_stream <= stream_bound, "{max_stream} > {stream_bound}");
    assert!(max_total <= total_bound, "{max_total} > {total_bound}");
    let mut refused = 0;
    let mut offsets = Vec::new();
    for r in &results {
        match r {
            Ok(o) => offsets.push(*o),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(e.is_retryable(), "{e}");
                assert!(e.message().contains("overloaded"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "a flood 25 times the stream's bound was refused in part"
    );
    let q = store.stats().queue;
    assert_eq!(
        q.rejected_stream + q.rejected_total_ops + q.rejected_total_bytes,
        refused
    );
    assert!(q.rejected_stream > 0, "{q:?}");
    // Another stream is not refused for the flooded stream's queue.
    store
        .append(&id("quiet"), batch(1, 10), AppendOptions::default())
        .await
        .unwrap();
    let flood_ok = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 3 != 0 && r.is_ok())
        .count() as u64;
    store.close().await.unwrap();
    // Exactly the acknowledged appends are there after a reopen (refused ones never written).
    let store = LocalStore::open(dir.path(), opts).await.unwrap();
    let read = store
        .read(&id("flood"), 0, ReadOptions::limit(1000))
        .await
        .unwrap();
    assert_eq!(read.records.len() as u64, flood_ok);
    store.close().await.unwrap();
}

/// With `Reject`, the total bound refuses too, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_total_bound_refuses_when_many_streams_flood() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _) = bounded(Overload::Reject);
    opts.queue_bytes = usize::try_from(4 * COST).unwrap();
    let store = Arc::new(LocalStore::open(dir.path(), opts).await.unwrap());
    let (results, max_total, _) = flood(&store).await;
    assert!(max_total <= 4 * COST, "{max_total}");
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.iter().any(|e| e.message().contains("queue_bytes")));
    assert!(store.stats().queue.rejected_total_bytes > 0);
    store.close().await.unwrap();
}
