//! Background checkpoints (issue 15): a checkpoint that falls due is made on the flusher thread
//! (in `Buffered`/`Interval` mode the log synced up to its position first; in `Sync` mode it is
//! synced already; then its file and the collection), while the writer goes on appending. These
//! tests hold or fail the checkpoint's syncs (and in `Sync` mode the sync thread's) through the
//! `FileSystem` seam and check that appends go on meanwhile, that the result recovers, that a
//! failed sync of a background checkpoint poisons the store, that the compaction after a `Sync`
//! background checkpoint waits for the groups in flight, and that a `Sync` checkpoint does not:
//! it is taken at the published position.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::WrapFs;
use streamkeep::implementor::fs::{FileHandle, FileSystem};
use streamkeep::{
    AppendOptions, Durability, ErrorKind, LocalOptions, LocalStore, ReadOptions, StreamId,
    StreamStore,
};

/// Which syncs the probe fails or holds.
#[derive(Default)]
struct Probe {
    /// Hold the next syncs of `CHECKPOINT.tmp` until `release`.
    hold: Mutex<bool>,
    released: Condvar,
    /// Fail the next sync of `CHECKPOINT.tmp`.
    fail_checkpoint_file: AtomicBool,
    /// Fail the next sync of a segment (the only segment syncs of a small `Buffered` store
    /// without rolls or writeback kicks are a checkpoint's sync of the log).
    fail_segment: AtomicBool,
    /// A sync was failed: the threads it ran on, by name.
    failed_on: Mutex<Vec<String>>,
    /// Syncs of `CHECKPOINT.tmp` begun, and the threads they ran on.
    checkpoint_syncs: AtomicU64,
    checkpoint_threads: Mutex<Vec<String>>,
    /// `CHECKPOINT.tmp` opened after a sync was failed.
    checkpoints_after_failure: AtomicU64,
    /// The threads segment syncs ran on, by name.
    segment_threads: Mutex<Vec<String>>,
    /// Hold the segment syncs of `Sync` mode's sync thread (`streamstore-sync`): while the flag
    /// is set, each waits for a permit (the count), so that the groups handed to it stay in
    /// flight, unpublished, until `pass_sync_thread` or `release_sync_thread`.
    hold_sync_thread: Mutex<(bool, u64)>,
    sync_thread_released: Condvar,
    /// Syncs of the sync thread that waited for a permit.
    sync_thread_held: AtomicU64,
    /// Fail the next sync of the sync thread once it is let through.
    fail_sync_thread: AtomicBool,
    /// Writes to a segment on the writer thread after a sync was failed.
    writer_writes_after_failure: AtomicU64,
    /// The end `(segment, byte)` of the furthest write of log to a segment (zero-fills left
    /// out: buffers of zeros only).
    written: Mutex<(u64, u64)>,
    /// How far the log is synced: the furthest `written` seen when a segment sync that then
    /// succeeded began.
    synced: Mutex<(u64, u64)>,
    /// The end of the first write of at least [`BIG_WRITE`] bytes to a segment.
    big_end: Mutex<Option<(u64, u64)>>,
    /// Each checkpoint written (`CHECKPOINT.tmp`): its position, and `synced` and `written` then.
    checkpoints: Mutex<Vec<CheckpointSeen>>,
}

/// A segment write at least this long is the one big append of
/// `sync_mode_background_checkpoint_is_taken_at_the_published_position`.
const BIG_WRITE: usize = 256 << 10;

/// A checkpoint as the probe saw it written.
#[derive(Clone, Copy, Debug)]
struct CheckpointSeen {
    position: (u64, u64),
    synced: (u64, u64),
    written: (u64, u64),
}

impl Probe {
    fn release(&self) {
        *self.hold.lock().unwrap() = false;
        self.released.notify_all();
    }

    /// Lets one held sync of the sync thread through (the one waiting, or the next).
    fn pass_sync_thread(&self) {
        self.hold_sync_thread.lock().unwrap().1 += 1;
        self.sync_thread_released.notify_all();
    }

    fn release_sync_thread(&self) {
        self.hold_sync_thread.lock().unwrap().0 = false;
        self.sync_thread_released.notify_all();
    }

    /// Run by a sync of the sync thread: waits (bounded) while held and no permit is left.
    fn sync_thread_gate(&self) {
        let mut h = self.hold_sync_thread.lock().unwrap();
        if !h.0 {
            return;
        }
        self.sync_thread_held.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while h.0 && h.1 == 0 && Instant::now() < deadline {
            h = self
                .sync_thread_released
                .wait_timeout(h, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        if h.0 && h.1 > 0 {
            h.1 -= 1;
        }
    }
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

struct ProbedFile {
    inner: Arc<dyn FileHandle>,
    probe: Arc<Probe>,
    checkpoint: bool,
    segment: bool,
    /// The segment's sequence number (segments only).
    seq: u64,
}

impl FileHandle for ProbedFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let p = &self.probe;
        if self.segment
            && thread_name() == "streamstore-writer"
            && !p.failed_on.lock().unwrap().is_empty()
        {
            p.writer_writes_after_failure.fetch_add(1, Ordering::SeqCst);
        }
        if self.checkpoint && buf.len() >= 40 {
            // magic, version, zero, body length; then the position.
            let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
            let seen = CheckpointSeen {
                position: (word(24), word(32)),
                synced: *p.synced.lock().unwrap(),
                written: *p.written.lock().unwrap(),
            };
            p.checkpoints.lock().unwrap().push(seen);
        }
        self.inner.write_all_at(buf, pos)?;
        if self.segment && buf.iter().any(|b| *b != 0) {
            let end = (self.seq, pos + buf.len() as u64);
            let mut w = p.written.lock().unwrap();
            *w = (*w).max(end);
            drop(w);
            if buf.len() >= BIG_WRITE {
                p.big_end.lock().unwrap().get_or_insert(end);
            }
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let p = &self.probe;
        let fail = (self.checkpoint && p.fail_checkpoint_file.swap(false, Ordering::SeqCst))
            || (self.segment && p.fail_segment.swap(false, Ordering::SeqCst));
        if fail {
            p.failed_on.lock().unwrap().push(thread_name());
            return Err(io::Error::other("injected EIO"));
        }
        if self.segment {
            let name = thread_name();
            if name == "streamstore-sync" {
                p.sync_thread_gate();
                if p.fail_sync_thread.swap(false, Ordering::SeqCst) {
                    p.failed_on.lock().unwrap().push(name);
                    return Err(io::Error::other("injected EIO"));
                }
            }
            p.segment_threads.lock().unwrap().push(name);
        }
        if self.checkpoint {
            p.checkpoint_threads.lock().unwrap().push(thread_name());
            p.checkpoint_syncs.fetch_add(1, Ordering::SeqCst);
            let mut held = p.hold.lock().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while *held && Instant::now() < deadline {
                held = p
                    .released
                    .wait_timeout(held, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        }
        let covered = *p.written.lock().unwrap();
        self.inner.sync_data()?;
        if self.segment {
            let mut synced = p.synced.lock().unwrap();
            *synced = (*synced).max(covered);
        }
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

fn probed_fs(probe: &Arc<Probe>) -> Arc<dyn FileSystem> {
    let probe = probe.clone();
    Arc::new(WrapFs(move |path: &Path, inner| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let checkpoint = name == "CHECKPOINT.tmp";
        if checkpoint && !probe.failed_on.lock().unwrap().is_empty() {
            probe
                .checkpoints_after_failure
                .fetch_add(1, Ordering::SeqCst);
        }
        Arc::new(ProbedFile {
            inner,
            probe: probe.clone(),
            checkpoint,
            segment: path.extension().is_some_and(|e| e == "seg"),
            seq: path
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        }) as Arc<dyn FileHandle>
    }))
}

fn options(probe: &Arc<Probe>, durability: Durability) -> LocalOptions {
    LocalOptions::default()
        .durability(durability)
        .checkpoint_interval(Duration::from_millis(20))
        .fs(probed_fs(probe))
}

fn payload(n: u64) -> Bytes {
    Bytes::from(format!("record {n} ").repeat(1 + usize::try_from(n % 7).unwrap()))
}

/// Appends one record to `s` and returns its offset.
async fn append(store: &LocalStore, s: &StreamId, n: u64) -> streamkeep::Result<u64> {
    let r = store
        .append(s, vec![payload(n)], AppendOptions::default())
        .await?;
    Ok(r.first_offset)
}

/// The records of `s` on a store, in order.
async fn read_all(store: &LocalStore, s: &StreamId) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let b = store.read(s, from, ReadOptions::limit(1000)).await.unwrap();
        if b.records.is_empty() {
            return out;
        }
        for r in &b.records {
            assert_eq!(r.offset, from, "gap at {from}");
            out.push(r.payload.clone());
            from += 1;
        }
    }
}

/// A background checkpoint whose file sync is held: appends keep being acknowledged meanwhile (with
/// the checkpoint on the writer thread none would be), the checkpoint completes once released, and
/// the store reopens from it with every record. Every mode (`Sync` too: there the checkpoint's
/// syncs on the writer stalled every append behind them, the 10,000-stream p99.9 of issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_on_while_a_background_checkpoint_syncs() {
    for durability in [
        Durability::Buffered,
        Durability::Interval(Duration::from_millis(5)),
        Durability::Sync,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let probe = Arc::new(Probe::default());
        *probe.hold.lock().unwrap() = true;
        let store = LocalStore::open(tmp.path(), options(&probe, durability))
            .await
            .unwrap();
        let s = StreamId::new("s").unwrap();
        let mut n = 0u64;
        let started = Instant::now();
        while probe.checkpoint_syncs.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{durability:?}: no checkpoint began"
            );
            assert_eq!(append(&store, &s, n).await.unwrap(), n);
            n += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The checkpoint's file sync is held now; the writer must not be.
        let during = tokio::time::timeout(Duration::from_secs(10), async {
            for _ in 0..200 {
                assert_eq!(append(&store, &s, n).await.unwrap(), n);
                n += 1;
            }
        })
        .await;
        assert!(
            during.is_ok(),
            "{durability:?}: appends stalled behind a checkpoint"
        );
        assert_eq!(
            probe.checkpoint_syncs.load(Ordering::SeqCst),
            1,
            "{durability:?}: one checkpoint at a time"
        );
        assert_eq!(
            probe.checkpoint_threads.lock().unwrap().first().cloned(),
            Some("streamstore-flush".to_string()),
            "{durability:?}: the checkpoint was not made in the background"
        );
        probe.release();
        // A checkpoint (ours, or the next one) lands: the store keeps checkpointing after it.
        let before = probe.checkpoint_syncs.load(Ordering::SeqCst);
        let started = Instant::now();
        while probe.checkpoint_syncs.load(Ordering::SeqCst) == before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{durability:?}: no checkpoint after the first"
            );
            assert_eq!(append(&store, &s, n).await.unwrap(), n);
            n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(tmp.path().join("CHECKPOINT").exists());
        assert_eq!(store.stats().log_failures, 0);
        if durability == Durability::Sync {
            // In `Sync` mode the log is durable when the writer hands a checkpoint over: the
            // flusher syncs no segment.
            let threads = probe.segment_threads.lock().unwrap().clone();
            assert!(
                !threads.iter().any(|t| t == "streamstore-flush"),
                "Sync: the background checkpoint synced the log again: {threads:?}"
            );
        }
        // A crash (no final checkpoint): recovery starts from a background checkpoint.
        store.abandon().await;
        let store = LocalStore::open(tmp.path(), options(&probe, durability))
            .await
            .unwrap();
        let report = store.recovery_report();
        assert!(report.checkpoint.is_some(), "{durability:?}: {report:?}");
        assert!(report.checkpoint_error.is_none() && report.lost.is_empty());
        let got = read_all(&store, &s).await;
        assert_eq!(got.len() as u64, n, "{durability:?}: {report:?}");
        for (i, p) in got.iter().enumerate() {
            assert_eq!(*p, payload(i as u64));
        }
        store.close().await.unwrap();
    }
}

/// Appends until the store refuses with `Poisoned` (bounded); returns how many were acknowledged.
async fn append_until_poisoned(store: &LocalStore, s: &StreamId) -> u64 {
    let started = Instant::now();
    let mut n = 0;
    loop {
        match append(store, s, n).await {
            Ok(offset) => assert_eq!(offset, n),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
                return n;
            }
        }
        n += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the store was not poisoned"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A background checkpoint whose sync fails poisons the store: the checkpoint file's own sync, or
/// the sync of the log it needs first (then no checkpoint file is even created); in `Sync` mode
/// too (the file's sync: the log needs none there). The failure is counted, later mutations are
/// `Poisoned`, and a reopen finds every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_checkpoint_sync_poisons_the_store() {
    for (log, durability) in [
        (false, Durability::Buffered),
        (true, Durability::Buffered),
        (false, Durability::Sync),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let probe = Arc::new(Probe::default());
        let store = LocalStore::open(tmp.path(), options(&probe, durability))
            .await
            .unwrap();
        // Armed after open (which syncs its first segment and `Open` frame on this thread).
        if log {
            probe.fail_segment.store(true, Ordering::SeqCst);
        } else {
            probe.fail_checkpoint_file.store(true, Ordering::SeqCst);
        }
        let s = StreamId::new("s").unwrap();
        let acked = append_until_poisoned(&store, &s).await;
        let what = if log { "log" } else { "checkpoint file" };
        let what = format!("{durability:?} {what}");
        assert_eq!(
            probe.failed_on.lock().unwrap().clone(),
            vec!["streamstore-flush".to_string()],
            "{what}: the failed sync was not a background checkpoint's"
        );
        let stats = store.stats();
        assert!(stats.log_failures >= 1, "{what}: {stats:?}");
        let poisoned = stats.poisoned.unwrap_or_default();
        assert!(poisoned.contains("checkpoint"), "{what}: {poisoned}");
        // Still refused, and no checkpoint is made after the failure (nor at close).
        let e = append(&store, &s, acked).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Poisoned);
        assert_eq!(
            store.checkpoint().await.unwrap_err().kind(),
            ErrorKind::Poisoned
        );
        assert_eq!(store.close().await.unwrap_err().kind(), ErrorKind::Poisoned);
        if log {
            assert_eq!(
                probe.checkpoints_after_failure.load(Ordering::SeqCst),
                0,
                "a checkpoint file was written although the log's sync failed"
            );
        }
        assert!(
            !tmp.path().join("CHECKPOINT").exists(),
            "{what}: the failed checkpoint was put in place"
        );
        // The injected failure lost nothing (the bytes are in the page cache).
        let store = LocalStore::open(tmp.path(), options(&probe, durability))
            .await
            .unwrap();
        let got = read_all(&store, &s).await;
        assert_eq!(got.len() as u64, acked, "{what}");
        store.close().await.unwrap();
    }
}

/// `Sync` mode: the compaction that follows a background checkpoint runs on the writer after the
/// group in which it learns the checkpoint was made — a group the writer may just have handed to
/// the sync thread, written but not yet published. Compaction must not move a stream from a
/// committed state that lacks such a group: the stream's index would be replaced by the copies,
/// the records of the group in flight would be unreachable once it is published (a gap at once,
/// and after a crash when a later checkpoint holds that index: `local_crash`'s "frames skip an
/// offset"). Here the sync thread is held so that the group of the stream being moved is
/// certainly in flight when the writer learns of the checkpoint.
///
/// And if that group's sync fails, the compaction writes nothing: the store is poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_compaction_after_a_background_checkpoint_keeps_appends_in_flight() {
    compaction_meets_a_group_in_flight(false).await;
    compaction_meets_a_group_in_flight(true).await;
}

/// The scenario of `sync_mode_compaction_after_a_background_checkpoint_keeps_appends_in_flight`;
/// with `fail`, the sync of the group in flight fails while the compaction waits for it.
async fn compaction_meets_a_group_in_flight(fail: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let opts = || {
        LocalOptions::default()
            .durability(Durability::Sync)
            .segment_bytes(64 << 10)
            // Checkpoints only when 512 KiB were written (then in the background), no timer
            // work: the writer takes a checkpoint's end after its next group.
            .checkpoint_interval(Duration::from_secs(3600))
            .checkpoint_bytes(512 << 10)
            .sweep_interval(Duration::from_secs(3600))
            // One operation per group: two queued make a group the sync thread takes.
            .max_group_bytes(1)
            .fs(probed_fs(&probe))
    };
    let store = Arc::new(LocalStore::open(tmp.path(), opts()).await.unwrap());
    let small = StreamId::new("small").unwrap();
    for n in 0..3 {
        assert_eq!(append(&store, &small, n).await.unwrap(), n);
    }
    // A big stream fills the first segments, then goes: `small` alone keeps segment 1 alive, a
    // compaction candidate (mostly dead, before the active segment).
    let big = StreamId::new("big").unwrap();
    let chunk = Bytes::from(vec![b'b'; 8 << 10]);
    for _ in 0..20 {
        store
            .append(&big, vec![chunk.clone()], AppendOptions::default())
            .await
            .unwrap();
    }
    assert!(store.delete(&big).await.unwrap());
    // More log until a background checkpoint falls due; its file's sync is held.
    *probe.hold.lock().unwrap() = true;
    let filler = StreamId::new("filler").unwrap();
    let started = Instant::now();
    while probe.checkpoint_syncs.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no checkpoint began"
        );
        store
            .append(&filler, vec![chunk.clone()], AppendOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        probe.checkpoint_threads.lock().unwrap().first().cloned(),
        Some("streamstore-flush".to_string()),
        "the checkpoint was not made in the background"
    );
    // `filler` goes too (its first record, next to the end of `big`, would make it a compaction
    // candidate as well, moved first or not): `small` is the only one.
    assert!(store.delete(&filler).await.unwrap());
    // Two appenders to another stream, the sync thread held: soon two of their groups are in
    // flight, and the writer waits for the sync thread (its pacing) before the next group.
    probe.hold_sync_thread.lock().unwrap().0 = true;
    let stop = Arc::new(AtomicBool::new(false));
    let other = StreamId::new("other").unwrap();
    let mut others = Vec::new();
    for _ in 0..2 {
        let (store, stop, other) = (store.clone(), stop.clone(), other.clone());
        others.push(tokio::spawn(async move {
            let mut acked = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let r = store
                    .append(&other, vec![payload(0)], AppendOptions::default())
                    .await;
                match r {
                    Ok(_) => acked += 1,
                    Err(e) if fail && e.kind() == ErrorKind::Poisoned => break,
                    Err(e) => panic!("{e}"),
                }
            }
            acked
        }));
    }
    let started = Instant::now();
    while probe.sync_thread_held.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no group was handed to the sync thread"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Two appends to `small` queue behind them (the second makes the first's group one the sync
    // thread takes, whether or not a group is still in flight then).
    let mut lasts = Vec::new();
    for n in [3, 4] {
        let store = store.clone();
        let small = small.clone();
        lasts.push(tokio::spawn(async move { append(&store, &small, n).await }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The checkpoint ends (the writer learns it after its next group).
    probe.release();
    let started = Instant::now();
    while !tmp.path().join("CHECKPOINT").exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "no CHECKPOINT");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // One sync passes: the writer goes on with the first append to `small` (the second is
    // queued, so the sync thread takes it), and then compacts `small` while that group waits in
    // flight behind the held sync thread.
    probe.pass_sync_thread();
    tokio::time::sleep(Duration::from_millis(200)).await;
    if fail {
        probe.fail_sync_thread.store(true, Ordering::SeqCst);
    }
    probe.release_sync_thread();
    let mut last = Vec::new();
    for t in lasts {
        last.push(t.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let mut acked_other = 0;
    for t in others {
        acked_other += t.await.unwrap();
    }
    if fail {
        for r in last {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Poisoned);
        }
        assert!(store.stats().poisoned.is_some());
        assert_eq!(
            probe.writer_writes_after_failure.load(Ordering::SeqCst),
            0,
            "the compaction wrote to a poisoned store"
        );
        store.abandon().await;
        drop(store);
        let store = LocalStore::open(tmp.path(), opts()).await.unwrap();
        let got = read_all(&store, &small).await;
        assert_eq!(
            got.len(),
            3,
            "the failed appends reappeared, or records were lost"
        );
        for (i, p) in got.iter().enumerate() {
            assert_eq!(
                *p,
                payload(i as u64),
                "after the failure: record {i} of `small`"
            );
        }
        let got = read_all(&store, &other).await.len() as u64;
        assert!(
            got >= acked_other,
            "{got} of {acked_other} records of `other`"
        );
        store.close().await.unwrap();
        return;
    }
    // The two appends took offsets 3 and 4 (normally in the order they were sent).
    let mut expected: Vec<Bytes> = (0..5).map(payload).collect();
    for (n, r) in [3u64, 4].into_iter().zip(last) {
        let offset = r.unwrap();
        assert!((3..5).contains(&offset), "append {n} at {offset}");
        expected[usize::try_from(offset).unwrap()] = payload(n);
    }
    assert_eq!(store.stats().log_failures, 0);
    // Every acknowledged record of `small` is readable, in order, without a gap.
    let check = |got: Vec<Bytes>, when: &str| {
        assert_eq!(got.len(), 5, "{when}: records of `small` lost");
        for (i, p) in got.iter().enumerate() {
            assert_eq!(*p, expected[i], "{when}: record {i} of `small`");
        }
    };
    check(read_all(&store, &small).await, "before reopen");
    // The compaction happened: the next checkpoint deletes segment 1.
    store.checkpoint().await.unwrap();
    let seg1 = tmp.path().join("segments").join(format!("{:020}.seg", 1));
    assert!(
        !seg1.exists(),
        "segment 1 was not collected: no compaction?"
    );
    // A crash now recovers from that checkpoint (its index of `small`): every record still.
    store.abandon().await;
    drop(store);
    let store = LocalStore::open(tmp.path(), opts()).await.unwrap();
    let report = store.recovery_report();
    assert!(
        report.checkpoint.is_some() && report.lost.is_empty(),
        "{report:?}"
    );
    check(read_all(&store, &small).await, "after reopen");
    assert_eq!(read_all(&store, &other).await.len() as u64, acked_other);
    store.close().await.unwrap();
}

/// `Sync` mode (issue 15): a checkpoint that falls due while groups are in flight with the sync
/// thread (written, not yet synced or published) is made at once, without waiting for their
/// sync, at the position of the published state — every byte before it synced, the groups in
/// flight after it — and a crash recovers from it with every acknowledged record, those groups'
/// too (replayed from the log after the position). With the checkpoint behind a drain of the sync
/// thread (before) it is not made until the held sync is let through.
///
/// How: the sync thread's syncs are held and let through one at a time while four closed-loop
/// appenders keep two groups in flight, until one big append (a group of more than the
/// checkpoint's byte threshold, so the checkpoint falls due right after the writer hands it to
/// the sync thread) was written; then nothing more is let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_background_checkpoint_is_taken_at_the_published_position() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let opts = || {
        LocalOptions::default()
            .durability(Durability::Sync)
            .segment_bytes(4 << 20)
            // Checkpoints only by size, no timer work: the big append makes one due.
            .checkpoint_interval(Duration::from_secs(3600))
            .checkpoint_bytes(BIG_WRITE as u64)
            .sweep_interval(Duration::from_secs(3600))
            // One operation per group: two queued make a group the sync thread takes.
            .max_group_bytes(1)
            .fs(probed_fs(&probe))
    };
    let store = Arc::new(LocalStore::open(tmp.path(), opts()).await.unwrap());
    let s = StreamId::new("s").unwrap();
    for n in 0..3 {
        assert_eq!(append(&store, &s, n).await.unwrap(), n);
    }
    probe.hold_sync_thread.lock().unwrap().0 = true;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let other = StreamId::new("other").unwrap();
    let mut appenders = Vec::new();
    for _ in 0..4 {
        let (store, stop, acked, other) =
            (store.clone(), stop.clone(), acked.clone(), other.clone());
        appenders.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                store
                    .append(&other, vec![payload(0)], AppendOptions::default())
                    .await
                    .unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let started = Instant::now();
    while probe.sync_thread_held.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no group was handed to the sync thread"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The big append queues behind the appenders' groups.
    let big = StreamId::new("big").unwrap();
    let chunk = Bytes::from(vec![b'B'; 64 << 10]);
    let big_task = {
        let (store, big, chunk) = (store.clone(), big.clone(), chunk.clone());
        tokio::spawn(async move {
            store
                .append(&big, vec![chunk; 5], AppendOptions::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Let the held syncs through one at a time (each once it waits) until the big group was
    // written; from then on none.
    let started = Instant::now();
    while probe.big_end.lock().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the big append was never written"
        );
        let held = probe.sync_thread_held.load(Ordering::SeqCst);
        probe.pass_sync_thread();
        while probe.sync_thread_held.load(Ordering::SeqCst) == held
            && probe.big_end.lock().unwrap().is_none()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the sync thread got no next group"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let big_end = probe.big_end.lock().unwrap().unwrap();
    // The checkpoint falls due right after the big group was handed over, and is made while the
    // sync thread is still held.
    let started = Instant::now();
    while !tmp.path().join("CHECKPOINT").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint while a group was in flight: it waited for the held sync"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = probe.checkpoints.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let c = seen[0];
    assert_eq!(
        probe.checkpoint_threads.lock().unwrap().clone(),
        vec!["streamstore-flush".to_string()],
        "the checkpoint was not made in the background"
    );
    assert!(
        !big_task.is_finished(),
        "the big append was acknowledged before its sync was let through"
    );
    assert!(
        c.position <= c.synced,
        "the checkpoint's position is past the synced log: {c:?}"
    );
    assert!(
        c.position < big_end,
        "the checkpoint's position covers the group in flight (ending at {big_end:?}): {c:?}"
    );
    assert!(c.synced < c.written, "no group was in flight: {c:?}");
    // Everything goes on; the groups held are synced and acknowledged.
    probe.release_sync_thread();
    let r = big_task.await.unwrap().unwrap();
    assert_eq!(r.first_offset, 0);
    stop.store(true, Ordering::SeqCst);
    for t in appenders {
        t.await.unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert_eq!(store.stats().log_failures, 0);
    assert_eq!(
        probe.checkpoints.lock().unwrap().len(),
        1,
        "another checkpoint"
    );
    // A crash: recovery starts from that checkpoint and replays the groups after it.
    store.abandon().await;
    drop(store);
    let store = LocalStore::open(tmp.path(), opts()).await.unwrap();
    let report = store.recovery_report();
    assert_eq!(report.checkpoint, Some(c.position), "{report:?}");
    assert!(
        report.checkpoint_error.is_none() && report.lost.is_empty(),
        "{report:?}"
    );
    let got = read_all(&store, &s).await;
    assert_eq!(got, (0..3).map(payload).collect::<Vec<_>>());
    let got = read_all(&store, &big).await;
    assert_eq!(
        got,
        vec![chunk; 5],
        "the big append, in flight at the checkpoint"
    );
    let got = read_all(&store, &other).await;
    assert_eq!(got.len() as u64, acked, "records of `other`");
    store.close().await.unwrap();
}
