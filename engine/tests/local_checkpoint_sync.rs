//! Background checkpoints in `Sync` mode while groups are in flight with the sync thread
//! (written, not yet synced or published; issue 15): the compaction that follows a background
//! checkpoint waits for those groups, and the checkpoint itself does not: it is taken at the
//! published position. The sync thread's syncs are held, let through one at a time or failed
//! through the `FileSystem` seam (`checkpoint_probe`).

mod checkpoint_probe;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkpoint_probe::{append, payload, probed_fs, read_all, Probe, BIG_WRITE};
use streamkeep::{
    AppendOptions, Durability, ErrorKind, LocalOptions, LocalStore, StreamId, StreamStore,
};

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
