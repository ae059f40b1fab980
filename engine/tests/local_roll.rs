//! The segment roll's `fdatasync` off the append path (`Buffered` and `Interval` mode): a finished
//! segment is synced by a background thread while the writer goes on in the next one.
//!
//! - A crash can then leave a finished segment with bytes missing while later segments have data.
//!   Recovery must end the log at the first such hole (like a torn tail), drop everything after it
//!   (the later segments too), give every stream a new incarnation, and never serve a gap or
//!   corrupt data. The same damage in a `Sync` store (whose rolls are synced) is still
//!   quarantined, and so is damage that a later `Commit` frame proves was durable.
//! - A failing background roll sync poisons the store.
//! - Durable reads never return records of a segment whose roll sync has not completed.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::WrapFs;
use streamkeep::implementor::fs::{FileHandle, FileSystem};
use streamkeep::{
    AppendOptions, Durability, ErrorKind, LocalOptions, LocalStore, ReadOptions, StreamId,
    StreamStore,
};

const SEG: u64 = 64 << 10;
const STREAMS: usize = 3;

/// A file system whose segment syncs can be made to fail or to block.
#[derive(Default)]
struct Control {
    /// Syncs of this segment fail (0: none).
    fail: AtomicU64,
    /// Syncs of this segment wait while `open` is false (0: none).
    block: AtomicU64,
    open: Mutex<bool>,
    cv: Condvar,
}

impl Control {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

struct TestFile {
    inner: Arc<dyn FileHandle>,
    seq: u64,
    ctl: Arc<Control>,
}

impl FileHandle for TestFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.seq != 0 && self.ctl.fail.load(Ordering::SeqCst) == self.seq {
            return Err(io::Error::other("injected EIO on a roll sync"));
        }
        if self.seq != 0 && self.ctl.block.load(Ordering::SeqCst) == self.seq {
            let mut open = self.ctl.open.lock().unwrap();
            while !*open {
                open = self.ctl.cv.wait(open).unwrap();
            }
        }
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

/// The file system of a test: syncs of segment files (`<seq>.seg`) obey `ctl`.
fn test_fs(ctl: &Arc<Control>) -> Arc<dyn FileSystem> {
    let ctl = ctl.clone();
    Arc::new(WrapFs(move |path: &Path, inner| {
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Arc::new(TestFile {
            inner,
            seq,
            ctl: ctl.clone(),
        }) as Arc<dyn FileHandle>
    }))
}

fn options(durability: Durability) -> LocalOptions {
    // No checkpoint during the test: the scan covers every segment.
    LocalOptions::default()
        .durability(durability)
        .segment_bytes(SEG)
        .checkpoint_interval(Duration::from_secs(3600))
        .checkpoint_bytes(1 << 40)
}

fn id(i: usize) -> StreamId {
    StreamId::new(format!("r{i}")).unwrap()
}

fn payload(i: usize, n: usize) -> Bytes {
    let mut v = format!("stream {i} record {n} ").into_bytes();
    v.resize(
        900 + (n * 37 + i * 11) % 200,
        b'a' + u8::try_from(n % 26).unwrap(),
    );
    Bytes::from(v)
}

fn us(x: u64) -> usize {
    usize::try_from(x).unwrap()
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join("segments").join(format!("{seq:020}.seg"))
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

type History = BTreeMap<usize, Vec<Bytes>>;

/// Appends round robin to a few streams until the log has at least `segments` segments, then
/// stops like a killed process (no final sync, checkpoint or clean marker).
async fn build(dir: &Path, opts: LocalOptions, segs: usize) -> History {
    let store = LocalStore::open(dir, opts).await.unwrap();
    let mut history = History::new();
    let mut n = 0;
    while store.segment_count() < segs {
        for i in 0..STREAMS {
            let recs: Vec<Bytes> = (0..3).map(|k| payload(i, n * 3 + k)).collect();
            history.entry(i).or_default().extend(recs.iter().cloned());
            store
                .append(&id(i), recs, AppendOptions::default())
                .await
                .unwrap();
        }
        n += 1;
    }
    store.abandon().await;
    history
}

/// Frame start positions of a segment file (walking the `len` fields; no checks).
fn frame_starts(data: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut p = 64usize;
    while p + 56 <= data.len() {
        let len = u32::from_le_bytes(data[p..p + 4].try_into().unwrap()) as usize;
        if len < 56 {
            break;
        }
        out.push(p as u64);
        p += len.div_ceil(8) * 8;
    }
    out
}

/// How a finished segment is damaged, as a power loss could leave it before its roll sync.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Its last bytes, from a frame boundary in the middle, are gone (the file is shorter).
    TruncatedAtFrame,
    /// Its last bytes, from a page boundary, read as zeros.
    ZeroTailFromPage,
    /// A page in the middle reads as zeros; frames after it are intact.
    ZeroPage,
}

/// Damages segment `seq`; returns the first damaged byte.
fn damage(dir: &Path, seq: u64, how: Damage) -> u64 {
    let path = seg_path(dir, seq);
    let mut data = std::fs::read(&path).unwrap();
    let starts = frame_starts(&data);
    assert!(starts.len() > 8, "too few frames in segment {seq}");
    let at = match how {
        Damage::TruncatedAtFrame => {
            let at = starts[starts.len() / 2];
            data.truncate(usize::try_from(at).unwrap());
            at
        }
        Damage::ZeroTailFromPage => {
            let at = 8 * 4096;
            data[at..].fill(0);
            at as u64
        }
        Damage::ZeroPage => {
            let at = 4 * 4096;
            data[at..at + 4096].fill(0);
            at as u64
        }
    };
    std::fs::write(&path, &data).unwrap();
    at
}

/// Reads every stream completely; checks that each is dense from offset 0 and that every record
/// is the one appended at its offset (or that reading it is `Corruption`, where `lost` says so).
/// Returns the number of records served per stream.
async fn check_prefix(store: &LocalStore, history: &History) -> BTreeMap<usize, u64> {
    let mut out = BTreeMap::new();
    for (i, hist) in history {
        let Ok(info) = store.info(&id(*i)).await else {
            out.insert(*i, 0);
            continue;
        };
        assert_eq!(info.first_offset, 0);
        assert!(us(info.next_offset) <= hist.len(), "stream {i} grew");
        let mut from = 0;
        let mut served = 0;
        while from < info.next_offset {
            match store.read(&id(*i), from, ReadOptions::limit(50)).await {
                Ok(b) => {
                    assert!(!b.records.is_empty(), "stream {i}: empty read at {from}");
                    for r in &b.records {
                        assert_eq!(r.offset, from, "stream {i}: not dense");
                        assert_eq!(r.payload, hist[us(from)], "stream {i}: wrong data");
                        from += 1;
                        served += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Corruption => {
                    // Only where recovery reported lost offsets.
                    let lost = store.recovery_report().lost;
                    let range = lost
                        .iter()
                        .find(|l| l.stream == id(*i) && l.start <= from && from < l.end)
                        .unwrap_or_else(|| panic!("stream {i}: unreported corruption at {from}"));
                    from = range.end;
                }
                Err(e) => panic!("stream {i}: read at {from}: {e}"),
            }
        }
        out.insert(*i, served);
    }
    out
}

/// A non-`Sync` store whose finished segment 2 lost bytes (while segments 3.. are intact):
/// recovery ends the log there.
async fn cut_case(durability: Durability, how: Damage) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let history = build(dir, options(durability), 5).await;
    let before = segments(dir);
    assert!(before.len() >= 5, "{before:?}");
    let at = damage(dir, 2, how);

    let store = LocalStore::open(dir, options(durability)).await.unwrap();
    let report = store.recovery_report();
    let torn = report
        .torn_tail
        .clone()
        .unwrap_or_else(|| panic!("{how:?}: no cut reported: {report:#?}"));
    assert_eq!(torn.segment, 2, "{how:?}: {report:#?}");
    assert!(
        torn.position <= at,
        "{how:?}: cut after the damage: {report:#?}"
    );
    assert!(torn.dropped_frames > 0, "{how:?}: {report:#?}");
    let later: Vec<u64> = before.iter().copied().filter(|s| *s > 2).collect();
    assert_eq!(report.dropped_segments, later, "{how:?}: {report:#?}");
    assert!(report.quarantined.is_empty(), "{how:?}: {report:#?}");
    assert!(report.lost.is_empty(), "{how:?}: {report:#?}");
    let mut reinc = report.reincarnated.clone();
    reinc.sort();
    let all: Vec<StreamId> = (0..STREAMS).map(id).collect();
    assert_eq!(reinc, all, "{how:?}: every stream gets a new incarnation");
    // The dropped segments are gone; a segment after 2 can only be the next one, made ready
    // (empty) by the new session's preallocator.
    for s in segments(dir).into_iter().filter(|s| *s > 2) {
        let d = std::fs::read(seg_path(dir, s)).unwrap();
        assert!(
            s == 3 && d[64..].iter().all(|b| *b == 0),
            "{how:?}: segment {s} was not removed"
        );
    }

    let served = check_prefix(&store, &history).await;
    let total: u64 = served.values().sum();
    let written: usize = history.values().map(Vec::len).sum();
    assert!(total > 0 && us(total) < written, "{how:?}: {served:?}");

    // The store goes on from the cut; a clean reopen shows the same prefix plus the new records.
    let mut history = history;
    for i in 0..STREAMS {
        let n = us(served[&i]);
        let h = history.get_mut(&i).unwrap();
        h.truncate(n);
        let r = payload(i, 100_000 + n);
        h.push(r.clone());
        let res = store
            .append(&id(i), vec![r], AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(res.first_offset, n as u64);
    }
    store.close().await.unwrap();
    drop(store);
    let store = LocalStore::open(dir, options(durability)).await.unwrap();
    let report = store.recovery_report();
    assert!(report.clean_shutdown && !report.has_damage(), "{report:#?}");
    assert!(report.torn_tail.is_none() && report.dropped_segments.is_empty());
    let served = check_prefix(&store, &history).await;
    for i in 0..STREAMS {
        assert_eq!(us(served[&i]), history[&i].len());
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn buffered_finished_segment_truncated_at_a_frame_is_the_end_of_the_log() {
    cut_case(Durability::Buffered, Damage::TruncatedAtFrame).await;
}

#[tokio::test]
async fn buffered_finished_segment_with_a_zeroed_tail_is_the_end_of_the_log() {
    cut_case(Durability::Buffered, Damage::ZeroTailFromPage).await;
}

#[tokio::test]
async fn buffered_finished_segment_with_a_zeroed_page_is_the_end_of_the_log() {
    cut_case(Durability::Buffered, Damage::ZeroPage).await;
}

#[tokio::test]
async fn interval_finished_segment_with_a_lost_tail_is_the_end_of_the_log() {
    // A long interval: no sync (and no `Commit` frame) after the rolls.
    let d = Durability::Interval(Duration::from_secs(3600));
    cut_case(d, Damage::TruncatedAtFrame).await;
    cut_case(d, Damage::ZeroTailFromPage).await;
    cut_case(d, Damage::ZeroPage).await;
}

/// Damage proven durable (a `Sync` store's rolls are synced; in an `Interval` store that synced
/// after the roll, a later `Commit` frame proves it) is quarantined, the rest of the log kept.
async fn quarantine_case(durability: Durability, how: Damage) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let history = build(dir, options(durability), 5).await;
    let before = segments(dir);
    damage(dir, 2, how);
    let store = LocalStore::open(dir, options(durability)).await.unwrap();
    let report = store.recovery_report();
    assert!(report.torn_tail.is_none(), "{how:?}: {report:#?}");
    assert!(report.dropped_segments.is_empty(), "{how:?}: {report:#?}");
    assert!(!report.quarantined.is_empty(), "{how:?}: {report:#?}");
    assert_eq!(report.quarantined[0].segment, 2, "{how:?}: {report:#?}");
    assert_eq!(segments(dir), before);
    // The records after the damage are still there; the ones lost are reported.
    let served = check_prefix(&store, &history).await;
    for i in 0..STREAMS {
        let lost: u64 = report
            .lost
            .iter()
            .filter(|l| l.stream == id(i))
            .map(|l| l.end - l.start)
            .sum();
        let info = store.info(&id(i)).await.unwrap();
        assert_eq!(us(info.next_offset), history[&i].len(), "{how:?}");
        assert_eq!(served[&i] + lost, info.next_offset, "{how:?}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn sync_finished_segment_damage_is_still_quarantined() {
    quarantine_case(Durability::Sync, Damage::ZeroPage).await;
    quarantine_case(Durability::Sync, Damage::ZeroTailFromPage).await;
}

#[tokio::test]
async fn damage_proven_durable_by_a_later_commit_is_quarantined() {
    // Syncs after (nearly) every group: later segments hold `Commit` frames.
    let d = Durability::Interval(Duration::from_millis(1));
    quarantine_case(d, Damage::ZeroPage).await;
    quarantine_case(d, Damage::ZeroTailFromPage).await;
}

#[tokio::test]
async fn a_later_sync_session_proves_the_buffered_segments_durable() {
    // A `Buffered` session crashes after several rolls; recovery syncs what it keeps; a `Sync`
    // session then appends (and acknowledges) more. Damage in the `Buffered` session's finished
    // segment is then proven durable (the `Sync` session's `Open` frame comes after it): it is
    // quarantined, and nothing the `Sync` session acknowledged is lost.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut history = build(dir, options(Durability::Buffered), 5).await;
    let store = LocalStore::open(dir, options(Durability::Sync))
        .await
        .unwrap();
    for i in 0..STREAMS {
        let n = history[&i].len();
        let recs: Vec<Bytes> = (0..2).map(|k| payload(i, n + k)).collect();
        history.get_mut(&i).unwrap().extend(recs.iter().cloned());
        store
            .append(&id(i), recs, AppendOptions::default())
            .await
            .unwrap();
    }
    store.abandon().await;
    drop(store);
    damage(dir, 2, Damage::ZeroPage);
    let store = LocalStore::open(dir, options(Durability::Sync))
        .await
        .unwrap();
    let report = store.recovery_report();
    assert!(report.torn_tail.is_none(), "{report:#?}");
    assert!(report.dropped_segments.is_empty(), "{report:#?}");
    assert_eq!(report.quarantined.len(), 1, "{report:#?}");
    assert_eq!(report.quarantined[0].segment, 2, "{report:#?}");
    check_prefix(&store, &history).await;
    for i in 0..STREAMS {
        let info = store.info(&id(i)).await.unwrap();
        assert_eq!(us(info.next_offset), history[&i].len());
        // The `Sync` session's records are there.
        let b = store
            .read(&id(i), info.next_offset - 2, ReadOptions::limit(10))
            .await
            .unwrap();
        assert_eq!(b.records.len(), 2);
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_without_damage_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let history = build(dir, options(Durability::Buffered), 5).await;
    let store = LocalStore::open(dir, options(Durability::Buffered))
        .await
        .unwrap();
    let report = store.recovery_report();
    assert!(report.torn_tail.is_none() && report.dropped_segments.is_empty());
    assert!(report.quarantined.is_empty() && report.lost.is_empty());
    let served = check_prefix(&store, &history).await;
    for i in 0..STREAMS {
        assert_eq!(us(served[&i]), history[&i].len());
    }
    store.close().await.unwrap();
}

async fn append_until(store: &LocalStore, segs: usize) -> Vec<Bytes> {
    let mut all = Vec::new();
    let mut n = 0;
    while store.segment_count() < segs {
        let recs: Vec<Bytes> = (0..4).map(|k| payload(0, n * 4 + k)).collect();
        all.extend(recs.iter().cloned());
        store
            .append(&id(0), recs, AppendOptions::default())
            .await
            .unwrap();
        n += 1;
    }
    all
}

#[tokio::test]
async fn a_failing_background_roll_sync_poisons_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let ctl = Arc::new(Control::default());
    let opts = options(Durability::Buffered).fs(test_fs(&ctl));
    let store = LocalStore::open(tmp.path(), opts).await.unwrap();
    ctl.fail.store(1, Ordering::SeqCst);
    append_until(&store, 2).await;
    // The roll did not wait for the sync; whatever claims durability next reports its failure.
    let e = store.checkpoint().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
    let e = store
        .append(&id(0), vec![payload(0, 0)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
}

#[tokio::test]
async fn a_failed_roll_sync_fails_the_next_roll() {
    let tmp = tempfile::tempdir().unwrap();
    let ctl = Arc::new(Control::default());
    let opts = options(Durability::Buffered).fs(test_fs(&ctl));
    let store = LocalStore::open(tmp.path(), opts).await.unwrap();
    ctl.fail.store(1, Ordering::SeqCst);
    // Appends go on until a roll finds the earlier roll sync failed.
    let mut n = 0;
    let e = loop {
        match store
            .append(&id(0), vec![payload(0, n)], AppendOptions::default())
            .await
        {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 10_000, "never poisoned");
    };
    // The append whose frame needed the roll fails with the group, as `Poisoned` (not `Closed`
    // from a dropped reply); every later operation is refused as `Poisoned` too.
    assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
    assert!(store.segment_count() >= 2);
    let e = store
        .append(&id(0), vec![payload(0, 0)], AppendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Poisoned, "{e}");
}

#[tokio::test]
async fn durable_reads_wait_for_the_roll_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let ctl = Arc::new(Control::default());
    let opts = options(Durability::Buffered).fs(test_fs(&ctl));
    let store = Arc::new(LocalStore::open(tmp.path(), opts).await.unwrap());
    ctl.block.store(1, Ordering::SeqCst);
    let all = append_until(&store, 3).await;
    let durable = store
        .read(&id(0), 0, ReadOptions::limit(10_000).durable())
        .await
        .unwrap();
    assert!(
        durable.records.is_empty(),
        "served records of a segment whose roll sync is pending: {}",
        durable.records.len()
    );
    // A checkpoint (a sync) waits for the roll sync.
    let s = store.clone();
    let ck = tokio::spawn(async move { s.checkpoint().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !ck.is_finished(),
        "the checkpoint did not wait for the roll sync"
    );
    let durable = store
        .read(&id(0), 0, ReadOptions::limit(10_000).durable())
        .await
        .unwrap();
    assert!(durable.records.is_empty());
    ctl.release();
    ck.await.unwrap().unwrap();
    let mut got = Vec::new();
    let mut from = 0;
    while from < all.len() as u64 {
        let b = store
            .read(&id(0), from, ReadOptions::limit(10_000).durable())
            .await
            .unwrap();
        assert!(!b.records.is_empty());
        from = b.next_offset;
        got.extend(b.records.into_iter().map(|r| r.payload));
    }
    assert_eq!(got, all);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_completed_roll_sync_makes_the_finished_segment_durable_for_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let ctl = Arc::new(Control::default());
    let opts = options(Durability::Buffered).fs(test_fs(&ctl));
    let store = LocalStore::open(tmp.path(), opts).await.unwrap();
    ctl.block.store(1, Ordering::SeqCst);
    let all = append_until(&store, 3).await;
    let durable = store
        .read(&id(0), 0, ReadOptions::limit(10_000).durable())
        .await
        .unwrap();
    assert!(durable.records.is_empty());
    // No checkpoint and no other sync: the roll syncs alone move the durable position.
    ctl.release();
    let b = store
        .read(
            &id(0),
            0,
            ReadOptions::limit(10_000)
                .durable()
                .wait(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(
        !b.records.is_empty(),
        "the finished segments never became durable"
    );
    assert!(
        b.records.len() < all.len(),
        "the active segment is not synced yet"
    );
    for r in &b.records {
        assert_eq!(r.payload, all[us(r.offset)]);
    }
    store.close().await.unwrap();
}
