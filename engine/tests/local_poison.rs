//! A poisoned store writes nothing more (issue 13, scenario 8): a checkpoint requested in a
//! group that the sync thread fails must not run its checkpoint, collection or compaction. And
//! (scenario 9) a rejection decided against a group that then fails is not answered as if that
//! group had committed.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::WrapFs;
use streamkeep::implementor::fs::{FileHandle, FileSystem};
use streamkeep::{
    AppendOptions, ErrorKind, Expect, LocalOptions, LocalStore, StreamId, StreamStore,
};

#[derive(Default)]
struct Probe {
    /// Segment syncs left before one fails (negative: none fails).
    syncs_left: AtomicI64,
    /// The next segment sync sleeps this many milliseconds first (once).
    slow_ms: AtomicU64,
    /// A sync failed: the store is poisoned from here on.
    failed: AtomicBool,
    /// Checkpoint files opened for writing after the failure.
    checkpoints_after: AtomicU64,
}

struct SlowFile {
    inner: Arc<dyn FileHandle>,
    probe: Arc<Probe>,
    segment: bool,
}

impl FileHandle for SlowFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.segment {
            // Slow syncs: groups queue up behind the sync thread (pipelined commit).
            let slow = self.probe.slow_ms.swap(0, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(3 + slow));
            if self.probe.syncs_left.fetch_sub(1, Ordering::SeqCst) == 0 {
                self.probe.failed.store(true, Ordering::SeqCst);
                return Err(io::Error::other("injected EIO"));
            }
        }
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

fn probed_fs(probe: &Arc<Probe>) -> Arc<dyn FileSystem> {
    let probe = probe.clone();
    Arc::new(WrapFs(move |path: &Path, inner| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("CHECKPOINT") && probe.failed.load(Ordering::SeqCst) {
            probe.checkpoints_after.fetch_add(1, Ordering::SeqCst);
        }
        Arc::new(SlowFile {
            inner,
            probe: probe.clone(),
            segment: path.extension().is_some_and(|e| e == "seg"),
        }) as Arc<dyn FileHandle>
    }))
}

/// Many appenders and a checkpoint request in flight when a pipelined sync fails: the checkpoint
/// answers `Poisoned` and no checkpoint file is written after the failure. It failed when a
/// checkpoint handed off with a group ran after the sync thread had poisoned the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_store_writes_no_checkpoint() {
    for round in 0..12i64 {
        let tmp = tempfile::tempdir().unwrap();
        let probe = Arc::new(Probe::default());
        probe.syncs_left.store(-1, Ordering::SeqCst);
        // Small groups: the queue holds the next group while one is synced (pipelined).
        let options = LocalOptions::default()
            .fs(probed_fs(&probe))
            .max_group_bytes(16);
        let store = Arc::new(LocalStore::open(tmp.path(), options).await.unwrap());
        probe.syncs_left.store(12 + round, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for t in 0..16u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let s = StreamId::new(format!("s{t}")).unwrap();
                for n in 0..60u32 {
                    let r = if n % 7 == 3 && t % 4 == 0 {
                        store.checkpoint().await
                    } else {
                        let payload = Bytes::from(format!("{t}/{n}"));
                        store
                            .append(&s, vec![payload], AppendOptions::default())
                            .await
                            .map(|_| ())
                    };
                    if let Err(e) = r {
                        assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            probe.failed.load(Ordering::SeqCst),
            "round {round}: no sync failed"
        );
        assert_eq!(
            probe.checkpoints_after.load(Ordering::SeqCst),
            0,
            "round {round}: a checkpoint was written after the store was poisoned"
        );
        let _ = store.close().await;
    }
}

/// Two conditional appends in one group, both expecting next offset 1: the first is accepted,
/// the second is a `Conflict` only because of the first. The group's sync fails, so the first
/// never happened: the second must not be told `Conflict { actual_next: 2 }` (a state that never
/// committed) but `Poisoned`, like the group. It failed when rejections were answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_decided_against_a_failed_group_is_not_answered_as_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    probe.syncs_left.store(-1, Ordering::SeqCst);
    let options = LocalOptions::default().fs(probed_fs(&probe));
    let store = Arc::new(LocalStore::open(tmp.path(), options).await.unwrap());
    let s = StreamId::new("s").unwrap();
    let other = StreamId::new("other").unwrap();
    for id in [&s, &other] {
        store
            .append(id, vec![Bytes::from("0")], AppendOptions::default())
            .await
            .unwrap();
    }
    // The next sync (of `other`'s append) is slow and works; the one after it fails.
    probe.slow_ms.store(200, Ordering::SeqCst);
    probe.syncs_left.store(1, Ordering::SeqCst);
    let slow = {
        let (store, other) = (store.clone(), other.clone());
        tokio::spawn(async move {
            store
                .append(&other, vec![Bytes::from("1")], AppendOptions::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Both queue behind the slow sync and form the next group.
    let conditional = |payload: &'static str| {
        let (store, s) = (store.clone(), s.clone());
        tokio::spawn(async move {
            store
                .append(
                    &s,
                    vec![Bytes::from(payload)],
                    AppendOptions::expect(Expect::Next(1)),
                )
                .await
        })
    };
    let first = conditional("a");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = conditional("b");
    slow.await.unwrap().unwrap();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert!(
        probe.failed.load(Ordering::SeqCst),
        "the group's sync did not fail"
    );
    assert_eq!(
        first.as_ref().map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::Poisoned,
        "{first:?}"
    );
    assert_eq!(
        second.as_ref().map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::Poisoned,
        "the conflict was decided against a group that never committed: {second:?}"
    );
    let _ = store.close().await;
}

/// Records, per segment file, whether its cache was dropped before it was first read.
#[derive(Default)]
struct CacheProbe {
    /// (file name, "drop" or "read"), in order.
    events: std::sync::Mutex<Vec<(String, &'static str)>>,
}

struct CacheFile {
    inner: Arc<dyn FileHandle>,
    name: String,
    probe: Arc<CacheProbe>,
}

impl CacheFile {
    fn note(&self, what: &'static str) {
        self.probe
            .events
            .lock()
            .unwrap()
            .push((self.name.clone(), what));
    }
}

impl FileHandle for CacheFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.note("read");
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn drop_cache(&self) -> io::Result<()> {
        self.note("drop");
        self.inner.drop_cache()
    }
}

/// Issue 13, scenario 2: recovery scans each segment from the device, not from the page cache
/// (where, after a failed `fsync`, pages whose write-back failed look clean): it drops the
/// segment's cached pages before its first read. It failed: segments were read through the cache.
#[tokio::test]
async fn recovery_reads_segments_past_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), LocalOptions::default())
        .await
        .unwrap();
    let s = StreamId::new("s").unwrap();
    for n in 0..5u8 {
        store
            .append(
                &s,
                vec![Bytes::from(vec![n; 100])],
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
    // A crash: the reopen scans the log.
    store.abandon().await;
    drop(store);
    let probe = Arc::new(CacheProbe::default());
    let fs: Arc<dyn FileSystem> = {
        let probe = probe.clone();
        Arc::new(WrapFs(move |path: &Path, inner| {
            Arc::new(CacheFile {
                inner,
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                probe: probe.clone(),
            }) as Arc<dyn FileHandle>
        }))
    };
    let options = LocalOptions::default().fs(fs);
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    let events = probe.events.lock().unwrap().clone();
    let mut first = std::collections::HashMap::new();
    for (name, what) in &events {
        if name.ends_with(".seg") {
            first.entry(name.clone()).or_insert(*what);
        }
    }
    assert!(!first.is_empty(), "no segment was read: {events:?}");
    for (name, what) in &first {
        assert_eq!(
            *what, "drop",
            "{name} was read before its cache was dropped"
        );
    }
    let b = store
        .read(&s, 0, streamkeep::ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(b.records.len(), 5);
    store.close().await.unwrap();
}
