//! Followers over a database adapter: readers that loop over `read(next, wait)`, woken by writes
//! made through another store object, each wake-up costing one read (the woken one), not two.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};
use tokio::time::Instant;

/// Streams, one follower each.
pub const FOLLOWERS: usize = 40;
/// Appends of one record to every stream, each after every follower received the previous one.
pub const ROUNDS: u64 = 3;

/// [`FOLLOWERS`] readers on `reader` follow a stream each from offset 1, with
/// `read(next, limit(256).wait(30 s))` in a loop, while `writer` appends one record to every
/// stream in [`ROUNDS`] rounds. `counted` reports the reader store's (reads of waiting reads,
/// if the adapter counts them; reads spared by the watcher's memo).
///
/// Each wake-up costs the woken read, and the follower's next call parks on the memo that read
/// left (the `memo` module of `streamstore::implementor::wait`): about one read per wake-up,
/// where each used to cost two (the woken read, then the next call's read finding nothing). The
/// bound allows a quarter more for a follower slow to come back (a memo lasts one tick).
pub async fn a_follower_reads_once_per_wakeup(
    writer: Arc<dyn StreamStore>,
    reader: Arc<dyn StreamStore>,
    counted: impl Fn() -> (Option<u64>, u64),
) {
    let ids: Vec<StreamId> = (0..FOLLOWERS)
        .map(|i| StreamId::new(format!("follow/{i}")).unwrap())
        .collect();
    for s in &ids {
        let first = vec![Bytes::from("0")];
        writer
            .append(s, first, AppendOptions::default())
            .await
            .unwrap();
    }
    let received = Arc::new(AtomicU64::new(0));
    let followers: Vec<_> = ids
        .iter()
        .map(|s| {
            let (reader, s, received) = (Arc::clone(&reader), s.clone(), Arc::clone(&received));
            tokio::spawn(async move {
                let mut next = 1;
                while next < 1 + ROUNDS {
                    let options = ReadOptions::limit(256).wait(Duration::from_secs(30));
                    let batch = reader.read(&s, next, options).await.unwrap();
                    for r in &batch.records {
                        assert_eq!(r.offset, next, "{s}");
                        assert_eq!(r.payload, Bytes::from(next.to_string()), "{s}");
                        next += 1;
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    // Every follower has read and parked (its entry has its baseline).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (reads0, spared0) = counted();
    for round in 1..=ROUNDS {
        for s in &ids {
            let record = vec![Bytes::from(round.to_string())];
            writer
                .append(s, record, AppendOptions::default())
                .await
                .unwrap();
        }
        let want = round * FOLLOWERS as u64;
        let deadline = Instant::now() + Duration::from_secs(25);
        while received.load(Ordering::SeqCst) < want {
            assert!(
                Instant::now() < deadline,
                "round {round}: {} of {want} received",
                received.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for f in followers {
        f.await.unwrap();
    }
    let (reads, spared) = counted();
    let spared = spared - spared0;
    let wakes = ROUNDS * FOLLOWERS as u64;
    let reads = reads.zip(reads0).map(|(r, r0)| r - r0);
    println!("followers: {wakes} wake-ups cost {reads:?} reads; {spared} reads spared by memos");
    if let Some(reads) = reads {
        // Without the memo: 2 per wake-up but the last round's (the followers stop): 5 per
        // follower.
        assert!(
            reads <= wakes + wakes / 4,
            "{reads} reads for {wakes} wake-ups"
        );
    }
    // The next call after every wake-up but the last round's parks on a memo.
    let parked_on_memo = (ROUNDS - 1) * FOLLOWERS as u64;
    assert!(
        spared >= parked_on_memo * 3 / 4,
        "{spared} reads spared, {parked_on_memo} expected"
    );
}

/// [`a_follower_reads_once_per_wakeup`] for an adapter that counts only the reads its memos
/// spared (`spared`, of the reader store); closes both stores after.
pub async fn a_follower_parks_on_memos<S: StreamStore + 'static>(
    writer: S,
    reader: S,
    spared: fn(&S) -> u64,
) {
    let (writer, reader) = (Arc::new(writer), Arc::new(reader));
    let counted = {
        let reader = Arc::clone(&reader);
        move || (None, spared(&reader))
    };
    a_follower_reads_once_per_wakeup(writer.clone(), reader.clone(), counted).await;
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}
