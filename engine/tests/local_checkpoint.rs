//! Background checkpoints (issue 15): a checkpoint that falls due is made on the flusher thread
//! (in `Buffered`/`Interval` mode the log synced up to its position first; in `Sync` mode it is
//! synced already; then its file and the collection), while the writer goes on appending. These
//! tests hold or fail the checkpoint's syncs through the `FileSystem` seam (`checkpoint_probe`)
//! and check that appends go on meanwhile, that the result recovers, and that a failed sync of a
//! background checkpoint poisons the store. The `Sync`-mode cases where groups are in flight
//! with the sync thread are in `local_checkpoint_sync`.

mod checkpoint_probe;
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkpoint_probe::{append, options, payload, read_all, Probe};
use streamkeep::{Durability, ErrorKind, LocalStore, StreamId, StreamStore};

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
