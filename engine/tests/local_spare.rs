//! Segments prepared off the commit path: in `Sync` mode every segment is zero-filled to its full
//! size before it is used (by the background preallocator or, failing that, at the roll); files
//! left by a crash while a segment was being prepared (`*.seg.tmp`) are deleted at open and never
//! read as segments; `Buffered` segments are not zero-filled, and reopening one in `Sync` mode
//! fills it.

use std::path::Path;

use bytes::Bytes;
use streamkeep::{
    AppendOptions, Durability, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore,
};

const SEG: u64 = 64 << 10;

fn opts(durability: Durability) -> LocalOptions {
    LocalOptions::default()
        .segment_bytes(SEG)
        .durability(durability)
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn rec(i: usize) -> Bytes {
    Bytes::from(vec![b'a' + u8::try_from(i % 26).unwrap(); 700])
}

/// (name, length) of every file in `segments/`, sorted.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Only segments, and possibly this session's spare (zeros), are in `segments/`.
fn no_leftovers(dir: &Path) {
    for (name, _) in files(dir) {
        if name.ends_with(".seg") {
            continue;
        }
        assert_eq!(name, "spare.seg.tmp", "a leftover was not deleted");
        // The new session's preallocator may be writing it; what is there is zeros.
        if let Ok(b) = std::fs::read(dir.join("segments").join(&name)) {
            assert!(b.iter().all(|x| *x == 0), "the old spare was not deleted");
        }
    }
}

async fn append(store: &LocalStore, s: &StreamId, from: usize, n: usize) {
    for i in from..from + n {
        store
            .append(s, vec![rec(i)], AppendOptions::default())
            .await
            .unwrap();
    }
}

async fn check(store: &LocalStore, s: &StreamId, n: usize) {
    let mut next = 0u64;
    while next < n as u64 {
        let batch = store.read(s, next, ReadOptions::default()).await.unwrap();
        assert!(!batch.records.is_empty());
        for r in batch.records {
            assert_eq!(r.offset, next);
            assert_eq!(r.payload, rec(usize::try_from(next).unwrap()));
            next += 1;
        }
    }
    assert_eq!(store.info(s).await.unwrap().next_offset, n as u64);
}

fn assert_clean(store: &LocalStore) {
    let r = store.recovery_report();
    assert!(
        r.torn_tail.is_none()
            && r.quarantined.is_empty()
            && r.lost.is_empty()
            && r.warnings.is_empty()
            && r.removed_empty_segments.is_empty(),
        "{r:?}"
    );
}

#[tokio::test]
async fn sync_segments_are_zero_filled_before_use() {
    let tmp = tempfile::tempdir().unwrap();
    let s = id("s");
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    // About 0.7 MB: eleven rolls or so, some with the spare ready, some (appends faster than the
    // preallocator) preparing the segment at the roll.
    append(&store, &s, 0, 1000).await;
    assert!(store.segment_count() > 5);
    for (name, len) in files(tmp.path()) {
        if name.ends_with(".seg") {
            assert_eq!(len, SEG, "{name} was not zero-filled to its full size");
        } else {
            assert_eq!(name, "spare.seg.tmp", "unexpected file");
        }
    }
    check(&store, &s, 1000).await;
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    no_leftovers(tmp.path());
    check(&store, &s, 1000).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn unfinished_segment_files_are_deleted_and_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let s = id("s");
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    append(&store, &s, 0, 200).await;
    store.abandon().await;
    // As after a crash while preparing: a half-written spare, and a segment prepared at a roll
    // whose rename never happened, holding bytes that look like a header (its own, the next seq).
    let seg_dir = tmp.path().join("segments");
    let last = files(tmp.path())
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".seg").map(|d| d.parse::<u64>().unwrap()))
        .max()
        .unwrap();
    let header = std::fs::read(seg_dir.join(format!("{last:020}.seg"))).unwrap()[..64].to_vec();
    let mut junk = header.clone();
    junk.resize(5000, 0x5a);
    std::fs::write(seg_dir.join("spare.seg.tmp"), &junk).unwrap();
    std::fs::write(seg_dir.join(format!("{:020}.seg.tmp", last + 1)), &junk).unwrap();
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    no_leftovers(tmp.path());
    check(&store, &s, 200).await;
    append(&store, &s, 200, 300).await;
    check(&store, &s, 500).await;
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    check(&store, &s, 500).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_right_after_a_spare_became_a_segment_recovers_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = id("s");
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    append(&store, &s, 0, 150).await;
    store.abandon().await;
    // The state right after `activate` (header synced, renamed, directory synced) and before the
    // first frame: a new last segment holding its header and zeros to its full size.
    let last = files(tmp.path())
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".seg").map(|d| d.parse::<u64>().unwrap()))
        .max()
        .unwrap();
    let header = streamkeep::implementor::local_format::SegmentHeader {
        seq: last + 1,
        generation: 0x1234_5678_9abc_def0,
        created_ms: 1,
    };
    let mut bytes = header.encode().to_vec();
    bytes.resize(usize::try_from(SEG).unwrap(), 0);
    std::fs::write(
        tmp.path()
            .join("segments")
            .join(format!("{:020}.seg", last + 1)),
        &bytes,
    )
    .unwrap();
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    check(&store, &s, 150).await;
    append(&store, &s, 150, 50).await;
    check(&store, &s, 200).await;
    store.abandon().await;
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    check(&store, &s, 200).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn buffered_segments_are_not_zero_filled_and_sync_reopen_fills_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let s = id("s");
    let store = LocalStore::open(tmp.path(), opts(Durability::Buffered))
        .await
        .unwrap();
    append(&store, &s, 0, 300).await;
    store.close().await.unwrap();
    let segs = files(tmp.path());
    assert!(segs.iter().all(|(n, _)| n.ends_with(".seg")), "{segs:?}");
    let (_, last_len) = segs.last().unwrap().clone();
    assert!(last_len < SEG, "{segs:?}");
    // Reopened in Buffered mode: no warning about the file ending after its data.
    let store = LocalStore::open(tmp.path(), opts(Durability::Buffered))
        .await
        .unwrap();
    assert_clean(&store);
    check(&store, &s, 300).await;
    store.close().await.unwrap();
    // Reopened in Sync mode: the last segment is brought to its full size before any commit.
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    assert_eq!(files(tmp.path()).last().unwrap().1, SEG);
    append(&store, &s, 300, 100).await;
    check(&store, &s, 400).await;
    store.close().await.unwrap();
    let store = LocalStore::open(tmp.path(), opts(Durability::Sync))
        .await
        .unwrap();
    assert_clean(&store);
    check(&store, &s, 400).await;
    store.close().await.unwrap();
}
