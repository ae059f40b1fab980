//! Space and resources: checkpoints bound recovery, dead segments are deleted, the streams that pin
//! old segments are reported, open files stay bounded, and a crash of a session that acknowledged
//! before syncing gives streams a new incarnation.

use std::time::Duration;

use bytes::Bytes;
use streamkeep::{
    AppendOptions, Durability, LocalOptions, LocalStore, ReadOptions, Retention, StreamId,
    StreamStore,
};

fn small() -> LocalOptions {
    LocalOptions::default()
        .segment_bytes(64 << 10)
        .max_open_files(2)
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

async fn fill(store: &LocalStore, stream: &StreamId, n: usize, size: usize) {
    for i in 0..n {
        let r = Bytes::from(vec![b'a' + u8::try_from(i % 26).unwrap(); size]);
        store
            .append(stream, vec![r], AppendOptions::default())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn clean_reopen_scans_only_after_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    fill(&store, &id("a"), 200, 1000).await;
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    let r = store.recovery_report();
    assert!(r.clean_shutdown && r.checkpoint.is_some(), "{r:?}");
    assert!(
        r.bytes_scanned < 1024,
        "a clean reopen rescanned {} bytes",
        r.bytes_scanned
    );
    // Written after the checkpoint, then abandoned: only that part is scanned.
    fill(&store, &id("a"), 10, 1000).await;
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    let r = store.recovery_report();
    assert!(!r.clean_shutdown);
    assert!(
        r.bytes_scanned > 10_000 && r.bytes_scanned < 40_000,
        "{r:?}"
    );
    assert_eq!(store.info(&id("a")).await.unwrap().next_offset, 210);
    store.close().await.unwrap();
}

#[tokio::test]
async fn dead_segments_are_deleted_and_pinning_streams_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    // A long-lived stream writes a little first, then a busy one fills several segments.
    fill(&store, &id("old"), 3, 100).await;
    fill(&store, &id("busy"), 300, 1000).await;
    store.checkpoint().await.unwrap();
    let before = store.segment_count();
    assert!(before >= 4, "{before} segments");
    let pinned = store.pinned_segments();
    assert!(
        pinned.iter().any(|p| p.streams.contains(&id("old"))),
        "{pinned:?}"
    );

    // Trimming the busy stream frees every segment but the one "old" pins and the newest; the
    // same checkpoint compacts "old" (a few records keeping a mostly-dead segment alive) into the
    // active segment, and the next checkpoint deletes the segment it pinned.
    let next = store.info(&id("busy")).await.unwrap().next_offset;
    store.trim(&id("busy"), next).await.unwrap();
    store.checkpoint().await.unwrap();
    let after = store.segment_count();
    assert!(after <= 2, "{after} segments remain");
    assert!(
        store.pinned_segments().is_empty(),
        "{:?}",
        store.pinned_segments()
    );
    store.checkpoint().await.unwrap();
    assert_eq!(store.segment_count(), 1);
    // Segment files only: a zero-filled spare (`spare.seg.tmp`) may be ready too.
    let files = std::fs::read_dir(tmp.path().join("segments"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".seg"))
        })
        .count();
    assert_eq!(files, 1);
    let old = store
        .read(&id("old"), 0, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(old.records.len(), 3);
    assert!(old.records.iter().all(|r| r.payload.len() == 100));

    // The move survives a replay of the log (no checkpoint after it) and a clean reopen.
    fill(&store, &id("old"), 2, 100).await;
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    let old = store
        .read(&id("old"), 0, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(old.records.len(), 5);
    assert!(!store.recovery_report().has_damage());

    // Deleting the old stream leaves nothing pinned.
    store.delete(&id("old")).await.unwrap();
    store.checkpoint().await.unwrap();
    assert_eq!(store.segment_count(), 1);
    assert!(store.pinned_segments().is_empty());

    // Reading across many segments keeps at most `max_open_files` open.
    fill(&store, &id("wide"), 200, 1000).await;
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    let mut from = 0;
    while from < 200 {
        let b = store
            .read(&id("wide"), from, ReadOptions::limit(7))
            .await
            .unwrap();
        assert!(!b.records.is_empty());
        from = b.next_offset;
        assert!(store.open_files() <= 2);
        assert!(store.mapped_segments() <= 2);
    }
    assert!(
        store.mapped_segments() > 0,
        "finished segments were not mapped"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn mapped_and_pread_reads_agree_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    fill(&store, &id("a"), 150, 900).await;
    fill(&store, &id("b"), 150, 700).await;
    store.close().await.unwrap();
    let mut seen = Vec::new();
    for mmap_reads in [true, false] {
        let options = small().mmap_reads(mmap_reads);
        let store = LocalStore::open(tmp.path(), options).await.unwrap();
        let mut all = Vec::new();
        for s in ["a", "b"] {
            let mut from = 0;
            while from < 150 {
                let b = store
                    .read(&id(s), from, ReadOptions::limit(9))
                    .await
                    .unwrap();
                from = b.next_offset;
                all.extend(b.records);
            }
        }
        assert_eq!(store.mapped_segments() > 0, mmap_reads);
        assert_eq!(all.len(), 300);
        seen.push(all);
        store.close().await.unwrap();
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test]
async fn retention_deletes_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let options = small().sweep_interval(Duration::from_millis(20));
    let store = LocalStore::open(tmp.path(), options.clone()).await.unwrap();
    fill(&store, &id("gone"), 3, 10).await;
    fill(&store, &id("kept"), 30, 100).await;
    let r = Retention::default().delete_after_idle(Duration::from_millis(50));
    store.set_retention(&id("gone"), r).await.unwrap();
    let r = Retention::default().max_bytes(1000);
    store.set_retention(&id("kept"), r).await.unwrap();
    // Wait for the sweep to act (polling, not a fixed sleep: a loaded machine may be slow).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let gone = store.info(&id("gone")).await.is_err();
        let trimmed = store.info(&id("kept")).await.unwrap().first_offset == 20;
        if gone && trimmed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    assert!(store.info(&id("gone")).await.is_err());
    let info = store.info(&id("kept")).await.unwrap();
    assert_eq!((info.first_offset, info.bytes), (20, 1000));
    store.close().await.unwrap();
}

#[tokio::test]
async fn crash_of_a_buffered_session_changes_incarnations() {
    let tmp = tempfile::tempdir().unwrap();
    let options = small().durability(Durability::Buffered);
    let store = LocalStore::open(tmp.path(), options.clone()).await.unwrap();
    let a = store
        .append(&id("s"), vec![Bytes::from("x")], AppendOptions::default())
        .await
        .unwrap();
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), options.clone()).await.unwrap();
    assert_eq!(store.recovery_report().reincarnated, vec![id("s")]);
    let info = store.info(&id("s")).await.unwrap();
    assert_ne!(info.incarnation, a.incarnation);
    assert_eq!(info.next_offset, 1);
    // A clean close of a buffered session changes nothing.
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    assert!(store.recovery_report().reincarnated.is_empty());
    assert_eq!(
        store.info(&id("s")).await.unwrap().incarnation,
        info.incarnation
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_compaction_move_is_replayed_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    fill(&store, &id("old"), 3, 100).await;
    fill(&store, &id("busy"), 300, 1000).await;
    let next = store.info(&id("busy")).await.unwrap().next_offset;
    store.trim(&id("busy"), next).await.unwrap();
    // The checkpoint is written first, then "old" is moved: the move is only in the log.
    store.checkpoint().await.unwrap();
    assert!(store.pinned_segments().is_empty());
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    assert!(store.recovery_report().bytes_scanned > 300);
    assert!(
        store.pinned_segments().is_empty(),
        "{:?}",
        store.pinned_segments()
    );
    let old = store
        .read(&id("old"), 0, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(old.records.len(), 3);
    store.checkpoint().await.unwrap();
    assert_eq!(store.segment_count(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn tail_caches_stay_under_their_global_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let options = small().tail_cache_total_bytes(20_000);
    let store = LocalStore::open(tmp.path(), options.clone()).await.unwrap();
    for i in 0..50 {
        fill(&store, &id(&format!("t{i}")), 4, 1000).await;
        assert!(store.cache_bytes() <= 20_000, "{}", store.cache_bytes());
    }
    assert!(store.cache_bytes() > 0);
    // Evicted or not, every stream reads back whole.
    for i in 0..50 {
        let b = store
            .read(&id(&format!("t{i}")), 0, ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(b.records.len(), 4);
    }
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    assert!(store.cache_bytes() <= 20_000);
    store.close().await.unwrap();
}

#[tokio::test]
async fn empty_records_count_against_the_tail_cache_bound() {
    // Payload bytes alone would count nothing here: each cached record's own size must.
    let tmp = tempfile::tempdir().unwrap();
    let options = small().tail_cache_total_bytes(4_800);
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    for i in 0..300 {
        fill(&store, &id(&format!("e{i}")), 1, 0).await;
        assert!(store.cache_bytes() <= 4_800, "{}", store.cache_bytes());
    }
    assert!(store.cache_bytes() > 0);
    let b = store
        .read(&id("e0"), 0, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(b.records.len(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_group_spanning_several_segments_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    // Reads must come from the segments, not the cache.
    let options = small().tail_cache_records(0);
    let store = LocalStore::open(tmp.path(), options).await.unwrap();
    // Queued together, these become one group of ~400 KiB: several rolls in one group.
    let appends = (0..100).map(|i| {
        let store = &store;
        async move {
            let r = Bytes::from(vec![b'a' + u8::try_from(i % 26).unwrap(); 4000]);
            store
                .append(&id(&format!("g{i}")), vec![r], AppendOptions::default())
                .await
                .unwrap()
        }
    });
    futures::future::join_all(appends).await;
    assert!(store.segment_count() >= 5);
    for i in 0..100 {
        let b = store
            .read(&id(&format!("g{i}")), 0, ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(b.records.len(), 1);
    }
    store.close().await.unwrap();
}
