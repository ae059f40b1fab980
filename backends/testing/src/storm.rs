//! A wake storm through the SQL adapters' re-read batcher: many readers parked on one store
//! object are woken together by writes made through another, and each must receive exactly its
//! own records under its own limits, or the right answer for a stream deleted, re-created or
//! trimmed while it was parked.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamstore::{
    AppendOptions, ErrorKind, ReadBatch, ReadOptions, Result, Retention, StreamId, StreamStore,
};

/// Streams (one parked reader each) in the storm.
pub const STORM_STREAMS: usize = 400;

const LONG: Duration = Duration::from_secs(30);

/// What happens to stream `i` while its reader is parked at offset 3, and what the reader must
/// get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Deleted, then written again (a new incarnation, one record).
    Recreated,
    /// Deleted.
    Deleted,
    /// Appended to under a `max_bytes` retention that trims past the reader's offset in the same
    /// transaction: the reader gets `Trimmed`.
    Trimmed,
    /// `n` records of 10 bytes appended; the reader (limit 256) gets them all.
    Appended(u64),
    /// 3 records appended; the reader has `limit(1)` and gets the first.
    Limited,
    /// 2 records of 10 bytes appended after 3 of 1 byte; the reader's 15-byte budget (which
    /// the stream's mean record length says will not cut) cuts after the first.
    Budget,
}

fn fate(i: usize) -> Fate {
    match i {
        0 => Fate::Recreated,
        1 => Fate::Deleted,
        2 => Fate::Trimmed,
        _ => match i % 4 {
            0 => Fate::Limited,
            1 => Fate::Budget,
            _ => Fate::Appended(1 + (i % 3) as u64),
        },
    }
}

fn payload(i: usize, off: u64) -> Bytes {
    Bytes::from(format!("{i:05}/{off:04}"))
}

fn options(f: Fate) -> ReadOptions {
    match f {
        Fate::Limited => ReadOptions::limit(1).wait(LONG),
        Fate::Budget => ReadOptions::limit(256).bytes(15).wait(LONG),
        _ => ReadOptions::limit(256).wait(LONG),
    }
}

/// Checks what the reader of stream `i` got.
fn check(i: usize, old: streamstore::Incarnation, got: Result<ReadBatch>) {
    let f = fate(i);
    let expect_records = |n: u64| {
        let b = got
            .as_ref()
            .unwrap_or_else(|e| panic!("stream {i} ({f:?}): {e}"));
        let offsets: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (3..3 + n).collect::<Vec<_>>(),
            "stream {i} ({f:?})"
        );
        for r in &b.records {
            assert_eq!(r.payload, payload(i, r.offset), "stream {i} ({f:?})");
        }
        assert_eq!(b.next_offset, 3 + n, "stream {i} ({f:?})");
        assert_eq!(b.incarnation, Some(old), "stream {i} ({f:?})");
    };
    match f {
        Fate::Recreated | Fate::Deleted => {
            let b = got.unwrap_or_else(|e| panic!("stream {i} ({f:?}): {e}"));
            // Woken after the delete: gone; or after the new life's append: its incarnation,
            // with nothing at offset 3 in it.
            assert!(b.records.is_empty(), "stream {i} ({f:?}): {b:?}");
            assert_ne!(b.incarnation, Some(old), "stream {i} ({f:?}): {b:?}");
            if f == Fate::Deleted {
                assert!(b.is_gone(), "stream {i} ({f:?}): {b:?}");
            }
        }
        Fate::Trimmed => match got {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Trimmed { first_available: 4 }),
            Ok(b) => panic!("stream {i} ({f:?}): {b:?}"),
        },
        Fate::Appended(n) => expect_records(n),
        Fate::Limited | Fate::Budget => expect_records(1),
    }
}

/// Makes stream `i`'s change (the storm).
async fn change(writer: &dyn StreamStore, i: usize, s: &StreamId) {
    let append = |n: u64| {
        let records = (3..3 + n).map(|off| payload(i, off)).collect();
        writer.append(s, records, AppendOptions::default())
    };
    match fate(i) {
        Fate::Recreated => {
            writer.delete(s).await.unwrap();
            let records = vec![Bytes::from("new life")];
            writer
                .append(s, records, AppendOptions::default())
                .await
                .unwrap();
        }
        Fate::Deleted => {
            writer.delete(s).await.unwrap();
        }
        Fate::Trimmed | Fate::Budget => {
            append(2).await.unwrap();
        }
        Fate::Limited => {
            append(3).await.unwrap();
        }
        Fate::Appended(n) => {
            append(n).await.unwrap();
        }
    }
}

/// [`STORM_STREAMS`] readers on `reader` park at offset 3 of their streams (each with 3
/// one-byte records); `writer` then changes every stream from 8 tasks at once (appends under
/// several limits, a delete, a delete and re-creation, a trim by retention). Every reader must
/// get exactly its answer (each stream is given one fate: see `Fate` in this file).
/// `prefetched` reports the reader store's re-read batcher as (reads whose records it
/// prefetched, records statements it ran): the storm must go through it, several reads per
/// statement.
pub async fn wake_storm_rereads_are_exact(
    writer: Arc<dyn StreamStore>,
    reader: Arc<dyn StreamStore>,
    prefetched: impl Fn() -> (u64, u64),
) {
    let ids: Vec<StreamId> = (0..STORM_STREAMS)
        .map(|i| StreamId::new(format!("storm/{i}")).unwrap())
        .collect();
    let mut incarnations = Vec::new();
    for (i, s) in ids.iter().enumerate() {
        let tiny = vec![Bytes::from("a"); 3];
        let r = writer
            .append(s, tiny, AppendOptions::default())
            .await
            .unwrap();
        if fate(i) == Fate::Trimmed {
            // 3 bytes held: nothing trimmed yet; the storm's 20 bytes trim to the newest record.
            let keep = Retention::default().max_bytes(15);
            writer.set_retention(s, keep).await.unwrap();
        }
        incarnations.push(r.incarnation);
    }
    let (reads0, statements0) = prefetched();
    let readers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (reader, s) = (Arc::clone(&reader), s.clone());
            tokio::spawn(async move { reader.read(&s, 3, options(fate(i))).await })
        })
        .collect();
    // Every reader has read and parked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (writer, ids) = (Arc::clone(&writer), ids.clone());
            tokio::spawn(async move {
                for (i, s) in ids.iter().enumerate().skip(w).step_by(8) {
                    change(&*writer, i, s).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for (i, (r, old)) in readers.into_iter().zip(incarnations).enumerate() {
        check(i, old, r.await.unwrap());
    }
    let (reads, statements) = prefetched();
    let (reads, statements) = (reads - reads0, statements - statements0);
    println!("wake storm: {reads} reads got their records from {statements} batched statements");
    // Most readers' records come from the batcher (a stream deleted, trimmed or with a cut
    // page reads alone; a reader woken twice counts twice), and a statement serves several.
    assert!(
        reads >= (STORM_STREAMS / 2) as u64,
        "only {reads} reads prefetched"
    );
    assert!(
        statements < reads,
        "{statements} statements for {reads} reads"
    );
}

/// [`STORM_STREAMS`] waiting reads start together on `reader`, each on a stream that already
/// holds the records it asks for (so each returns at its first read, never woken). `stats`
/// reports the reader store's re-read batcher as (reads it served, head statements it ran): the
/// first reads of waiting reads must go through it too, several per statement, so that a burst
/// of readers arriving (or re-arming after a wake storm) costs batched statements.
pub async fn a_burst_of_waiting_reads_shares_statements(
    writer: Arc<dyn StreamStore>,
    reader: Arc<dyn StreamStore>,
    stats: impl Fn() -> (u64, u64),
) {
    let ids: Vec<StreamId> = (0..STORM_STREAMS)
        .map(|i| StreamId::new(format!("burst/{i}")).unwrap())
        .collect();
    for (i, s) in ids.iter().enumerate() {
        let records = (0..2).map(|off| payload(i, off)).collect();
        writer
            .append(s, records, AppendOptions::default())
            .await
            .unwrap();
    }
    let (reads0, heads0) = stats();
    let readers: Vec<_> = ids
        .iter()
        .map(|s| {
            let (reader, s) = (Arc::clone(&reader), s.clone());
            tokio::spawn(
                async move { reader.read(&s, 0, ReadOptions::limit(256).wait(LONG)).await },
            )
        })
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let b = r.await.unwrap().unwrap();
        let offsets: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![0, 1], "stream {i}");
        for r in &b.records {
            assert_eq!(r.payload, payload(i, r.offset), "stream {i}");
        }
    }
    let (reads, heads) = stats();
    let (reads, heads) = (reads - reads0, heads - heads0);
    println!("burst: {reads} first reads of waiting reads from {heads} head statements");
    assert!(
        reads >= STORM_STREAMS as u64,
        "only {reads} of {STORM_STREAMS} waiting reads went through the batcher"
    );
    assert!(
        heads * 2 <= reads,
        "{heads} head statements for {reads} reads"
    );
}
