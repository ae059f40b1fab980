//! Fault injection through the `FileSystem` seam: `ENOSPC` and `EIO` on write and on sync. The
//! failing append gets a typed error, the store is `Poisoned` from then on, and after a reopen
//! every acknowledged record is there and no failed append is.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::WrapFs;
use streamkeep::implementor::fs::{FileHandle, FileSystem};
use streamkeep::local::LocalStats;
use streamkeep::{
    AppendOptions, ErrorKind, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore,
};

/// Which operation fails, how, and for how long.
#[derive(Default)]
struct Faults {
    /// Writes to segment files left before they start failing (negative: never).
    writes_left: AtomicI64,
    /// Syncs of segment files left before they start failing (negative: never).
    syncs_left: AtomicI64,
    /// Fail only once, then work again (otherwise keep failing).
    once: AtomicBool,
    /// `ENOSPC` instead of `EIO`.
    nospace: AtomicBool,
}

impl Faults {
    fn off(&self) {
        self.writes_left.store(-1, Ordering::SeqCst);
        self.syncs_left.store(-1, Ordering::SeqCst);
    }
    /// Whether this operation fails (counting down `left`).
    fn hit(&self, left: &AtomicI64) -> io::Result<()> {
        let n = left.fetch_sub(1, Ordering::SeqCst);
        if n == 0 {
            if !self.once.load(Ordering::SeqCst) {
                left.store(0, Ordering::SeqCst);
            } else {
                left.store(-1, Ordering::SeqCst);
            }
            return Err(if self.nospace.load(Ordering::SeqCst) {
                io::Error::from(io::ErrorKind::StorageFull)
            } else {
                io::Error::other("injected EIO")
            });
        }
        if n < 0 {
            left.store(-1, Ordering::SeqCst);
        }
        Ok(())
    }
}

struct FaultyFile {
    inner: Arc<dyn FileHandle>,
    faults: Arc<Faults>,
    segment: bool,
}

impl FileHandle for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if self.segment {
            self.faults.hit(&self.faults.writes_left)?;
        }
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.segment {
            self.faults.hit(&self.faults.syncs_left)?;
        }
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

/// The file system of a test: writes and syncs of segment files obey `faults`.
fn faulty_fs(faults: &Arc<Faults>) -> Arc<dyn FileSystem> {
    let faults = faults.clone();
    Arc::new(WrapFs(move |path: &Path, inner| {
        let segment = path.extension().is_some_and(|e| e == "seg");
        Arc::new(FaultyFile {
            inner,
            faults: faults.clone(),
            segment,
        }) as Arc<dyn FileHandle>
    }))
}

fn id(i: usize) -> StreamId {
    StreamId::new(format!("f{i}")).unwrap()
}

fn rec(i: usize, n: u64) -> Bytes {
    Bytes::from(format!("stream {i} record {n}"))
}

#[derive(Clone, Copy, Debug)]
enum Where {
    Write,
    Sync,
}

/// Appends, injects one fault, checks the poison, reopens and checks the data.
async fn scenario(at: Where, nospace: bool, once: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.off();
    faults.nospace.store(nospace, Ordering::SeqCst);
    faults.once.store(once, Ordering::SeqCst);
    let options = LocalOptions::default().fs(faulty_fs(&faults));
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    let mut acked = [0u64; 3];
    for n in 0..10u64 {
        for (i, a) in acked.iter_mut().enumerate() {
            store
                .append(&id(i), vec![rec(i, n)], AppendOptions::default())
                .await
                .unwrap();
            *a += 1;
        }
    }
    match at {
        Where::Write => faults.writes_left.store(0, Ordering::SeqCst),
        Where::Sync => faults.syncs_left.store(0, Ordering::SeqCst),
    }
    let failed = store
        .append(&id(0), vec![rec(0, 10)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Poisoned, "{at:?}: {failed}");
    // Poisoned for every later write, even if the disk works again; reads still work.
    let later = store
        .append(&id(1), vec![rec(1, 10)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(later.kind(), ErrorKind::Poisoned);
    assert_eq!(
        store.seal(&id(2)).await.unwrap_err().kind(),
        ErrorKind::Poisoned
    );
    let b = store.read(&id(0), 0, ReadOptions::default()).await.unwrap();
    assert_eq!(b.records.len(), 10);
    assert_eq!(b.end_offset, 10, "the failed append must not be visible");
    let _ = store.close().await;
    drop(store);

    faults.off();
    let store = LocalStore::open(tmp.path(), LocalOptions::default())
        .await
        .unwrap();
    for (i, a) in acked.iter().enumerate() {
        let info = store.info(&id(i)).await.unwrap();
        let b = store.read(&id(i), 0, ReadOptions::default()).await.unwrap();
        for (n, r) in b.records.iter().enumerate() {
            assert_eq!(r.payload, rec(i, n as u64), "{at:?} stream {i}");
        }
        if once {
            // The failed group was erased: exactly the acknowledged records.
            assert_eq!(info.next_offset, *a, "{at:?} nospace={nospace} stream {i}");
        } else {
            // The erase could not be done: the failed append may be there (whole) or not.
            assert!(info.next_offset == *a || (i == 0 && info.next_offset == *a + 1));
        }
        assert!(!info.sealed, "the failed seal must not be there");
    }
    assert!(
        !store.recovery_report().has_damage(),
        "{:?}",
        store.recovery_report()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn eio_on_sync_poisons_and_loses_nothing_acknowledged() {
    scenario(Where::Sync, false, true).await;
}

#[tokio::test]
async fn enospc_on_write_poisons_and_loses_nothing_acknowledged() {
    scenario(Where::Write, true, true).await;
}

#[tokio::test]
async fn persistent_eio_on_write() {
    scenario(Where::Write, false, false).await;
}

#[tokio::test]
async fn persistent_eio_on_sync() {
    scenario(Where::Sync, false, false).await;
}

#[tokio::test]
async fn locked_directory_names_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let a = LocalStore::open(tmp.path(), LocalOptions::default())
        .await
        .unwrap();
    let e = LocalStore::open(tmp.path(), LocalOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains(&std::process::id().to_string()), "{e}");
    a.close().await.unwrap();
    // Closed: the lock is free again.
    let b = LocalStore::open(tmp.path(), LocalOptions::default())
        .await
        .unwrap();
    b.close().await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp.path().join("new");
    let c = LocalStore::open(&dir, LocalOptions::default())
        .await
        .unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    c.close().await.unwrap();
}

/// `Buffered`: writeback of the active segment is started by a background sync every 8 MiB. A
/// failure there (which the kernel reports only once) must still poison the store: the writer's
/// next sync (here the checkpoint's) reports it even though the disk works again.
#[tokio::test]
async fn failed_background_writeback_sync_poisons() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.off();
    faults.once.store(true, Ordering::SeqCst);
    let options = LocalOptions::default()
        .durability(streamkeep::Durability::Buffered)
        .fs(faulty_fs(&faults));
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    let big = Bytes::from(vec![5u8; 1 << 20]);
    for _ in 0..7 {
        store
            .append(&id(0), vec![big.clone()], AppendOptions::default())
            .await
            .unwrap();
    }
    // The next append passes 8 MiB: its write starts a background sync, which fails once.
    faults.syncs_left.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        store
            .append(&id(0), vec![big.clone()], AppendOptions::default())
            .await
            .unwrap();
    }
    let e = store.checkpoint().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
    let later = store
        .append(&id(0), vec![rec(0, 0)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(later.kind(), ErrorKind::Poisoned);
    drop(store);
}

/// A sync failing while groups are pipelined (many appenders: the sync thread syncs a group
/// while the writer writes the next ones): every append acknowledged before the failure is there
/// after a reopen, no append that failed is, and every later append is `Poisoned`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eio_on_a_pipelined_sync_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.off();
    let options = || LocalOptions::default().fs(faulty_fs(&faults));
    let store = Arc::new(LocalStore::open(tmp.path(), options()).await.unwrap());
    // Fail the 40th sync from now, once (the following syncs would succeed: the poison, not the
    // device, must stop them).
    faults.once.store(true, Ordering::SeqCst);
    faults.syncs_left.store(40, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            for n in 0..200u64 {
                let s = t % 4;
                let payload = Bytes::from(format!("task {t} record {n}"));
                match store
                    .append(&id(s), vec![payload.clone()], AppendOptions::default())
                    .await
                {
                    Ok(r) => {
                        assert!(failed.is_empty(), "an append succeeded after one failed");
                        acked.push((s, r.first_offset, payload));
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
                        failed.push((s, payload));
                    }
                }
            }
            (acked, failed)
        }));
    }
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, f) = t.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    assert!(
        !failed.is_empty(),
        "the injected sync failure failed appends"
    );
    assert!(
        !acked.is_empty(),
        "appends before the failure were acknowledged"
    );
    drop(store);
    faults.off();
    let store = LocalStore::open(tmp.path(), options()).await.unwrap();
    for s in 0..4usize {
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let b = store.read(&id(s), from, ReadOptions::limit(1000)).await;
            let Ok(b) = b else { break };
            if b.records.is_empty() {
                break;
            }
            from = b.next_offset;
            seen.extend(b.records);
        }
        for (i, r) in seen.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "stream {s}: offsets dense after reopen");
        }
        for (_, off, p) in acked.iter().filter(|(x, _, _)| *x == s) {
            let r = seen.get(usize::try_from(*off).unwrap());
            assert_eq!(
                r.map(|r| &r.payload),
                Some(p),
                "stream {s}: acknowledged record lost"
            );
        }
        for (_, p) in failed.iter().filter(|(x, _)| *x == s) {
            assert!(
                seen.iter().all(|r| r.payload != p),
                "stream {s}: a failed append reappeared after reopen"
            );
        }
    }
}

/// `LocalStore::stats` counts the failure that poisoned the store and an erase of the failed group
/// that failed too (the disk keeps failing syncs), and names the poison.
#[tokio::test]
async fn stats_count_the_poison_and_a_failed_erase() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.off();
    let options = LocalOptions::default().fs(faulty_fs(&faults));
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    store
        .append(&id(0), vec![rec(0, 0)], AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(store.stats(), LocalStats::default());
    // Every sync fails from now on: the group's own, then the one that would make its erasure
    // durable.
    faults.syncs_left.store(0, Ordering::SeqCst);
    let failed = store
        .append(&id(0), vec![rec(0, 1)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Poisoned);
    let stats = store.stats();
    assert!(stats.poisoned.is_some(), "{stats:?}");
    assert!(stats.log_failures >= 1, "{stats:?}");
    assert_eq!(stats.erase_failures, 1, "{stats:?}");
    assert_eq!(stats.retention_skipped, 0, "{stats:?}");
    let _ = store.close().await;
}
