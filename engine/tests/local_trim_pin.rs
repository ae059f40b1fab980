//! A stream trimmed to its end pins no segment (issue 13, scenario 7): it holds no record, so
//! nothing of it needs its old segments, before or after a reopen.

use bytes::Bytes;
use streamstore::{AppendOptions, LocalOptions, LocalStore, StreamId, StreamStore};

fn small() -> LocalOptions {
    LocalOptions {
        segment_bytes: 64 << 10,
        ..LocalOptions::default()
    }
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
