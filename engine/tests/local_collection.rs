//! Segment collection and what it must keep (issue 13): a stream trimmed to its end pins no
//! segment (scenario 7), and the previous checkpoint with every segment its scan needs is kept, so
//! an unreadable `CHECKPOINT` loses nothing (scenario 5).

use bytes::Bytes;
use streamkeep::{AppendOptions, LocalOptions, LocalStore, StreamId, StreamStore};

fn small() -> LocalOptions {
    LocalOptions::default().segment_bytes(64 << 10)
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

async fn trim_to_end(store: &LocalStore, stream: &StreamId) {
    let next = store.info(stream).await.unwrap().next_offset;
    assert_eq!(store.trim(stream, next).await.unwrap(), next);
}

/// It failed: the emptied stream kept its last index point and pinned the first segment forever
/// (`pinned_segments` named it, and the segment was never collected).
#[tokio::test]
async fn a_stream_trimmed_to_its_end_pins_no_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    fill(&store, &id("emptied"), 3, 100).await;
    trim_to_end(&store, &id("emptied")).await;
    fill(&store, &id("busy"), 300, 1000).await;
    trim_to_end(&store, &id("busy")).await;
    store.checkpoint().await.unwrap();
    store.checkpoint().await.unwrap();
    let pinned = store.pinned_segments();
    assert!(
        !pinned.iter().any(|p| p.streams.contains(&id("emptied"))),
        "an empty stream pins {pinned:?}"
    );
    assert!(
        store.segment_count() <= 2,
        "{} segments",
        store.segment_count()
    );
    store.abandon().await;
    drop(store);

    // After a crash (replaying the trim from the log) and after a clean reopen (the checkpoint).
    for next in 3..5 {
        let store = LocalStore::open(tmp.path(), small()).await.unwrap();
        let pinned = store.pinned_segments();
        assert!(
            !pinned.iter().any(|p| p.streams.contains(&id("emptied"))),
            "after reopen an empty stream pins {pinned:?}"
        );
        let info = store.info(&id("emptied")).await.unwrap();
        assert_eq!((info.first_offset, info.next_offset), (3, next));
        // It still takes appends, at its next offset.
        let r = store
            .append(
                &id("emptied"),
                vec![Bytes::from("x")],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.first_offset, next);
        store.close().await.unwrap();
    }
}

/// Issue 13, scenario 5: the previous checkpoint is kept (`CHECKPOINT.prev`) and no segment its
/// scan needs is collected, so an unreadable `CHECKPOINT` loses nothing. It failed: the stream
/// created in a collected segment was gone (only a warning said so).
#[tokio::test]
async fn an_unreadable_checkpoint_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    fill(&store, &id("early"), 3, 100).await;
    fill(&store, &id("busy"), 300, 1000).await;
    trim_to_end(&store, &id("busy")).await;
    store.checkpoint().await.unwrap();
    fill(&store, &id("busy"), 150, 1000).await;
    trim_to_end(&store, &id("busy")).await;
    store.checkpoint().await.unwrap();
    store.checkpoint().await.unwrap();
    let early = store
        .read(&id("early"), 0, Default::default())
        .await
        .unwrap();
    assert_eq!(early.records.len(), 3);
    store.close().await.unwrap();
    drop(store);
    // Segment 1 (where "early" was created) is collected: its records moved by compaction.
    assert!(
        !tmp.path()
            .join("segments")
            .join("00000000000000000001.seg")
            .exists(),
        "the test needs the first segment collected"
    );
    let ck = tmp.path().join("CHECKPOINT");
    let mut bytes = std::fs::read(&ck).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&ck, &bytes).unwrap();

    let store = LocalStore::open(tmp.path(), small()).await.unwrap();
    let report = store.recovery_report();
    let info = store.info(&id("early")).await;
    assert!(info.is_ok(), "the stream is gone: {info:?}, {report:#?}");
    let early = store
        .read(&id("early"), 0, Default::default())
        .await
        .unwrap();
    assert_eq!(early.records.len(), 3, "{report:#?}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("CHECKPOINT.prev")),
        "{report:#?}"
    );
    store.close().await.unwrap();
}
