//! Many conditional appenders on one stream of a server without transactions: exactly one
//! winner per offset, exact `Conflict { actual_next }` for the others, dense offsets.
//!
//! Needs `STREAMSTORE_MONGODB_URL` (`scripts/services.sh up mongodb`); prints SKIPPED and passes
//! without it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use streamkeep_mongodb::{MongoStore, URL_ENV};
use streamstore::{AppendOptions, ErrorKind, Expect, ReadOptions, StreamId, StreamStore};
use tokio::sync::Barrier;

/// Concurrent writers (the task asks for at least 16).
const WRITERS: usize = 16;
/// Rounds in which every writer appends with the same expectation.
const ROUNDS: u64 = 12;
/// Appends per writer in the retrying phase.
const PER_WRITER: usize = 8;

/// One writer's result in one round: the writer, and its first offset or error kind.
type Outcome = (usize, Result<u64, ErrorKind>);

async fn store() -> Option<(Arc<MongoStore>, String, String)> {
    let Ok(url) = std::env::var(URL_ENV) else {
        println!("SKIPPED: {URL_ENV} is not set (scripts/services.sh up mongodb)");
        return None;
    };
    let prefix = format!("contention_{:08x}_", rand::random::<u32>());
    let store = MongoStore::connect(&url, &prefix).await.unwrap();
    Some((Arc::new(store), url, prefix))
}

async fn read_all(store: &MongoStore, stream: &StreamId) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let b = store
            .read(stream, from, ReadOptions::limit(1000))
            .await
            .unwrap();
        if b.records.is_empty() {
            return out;
        }
        for (i, r) in b.records.iter().enumerate() {
            assert_eq!(r.offset, from + i as u64, "offsets are dense");
        }
        from = b.next_offset;
        out.extend(b.records.into_iter().map(|r| r.payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_with_one_expectation_have_one_winner_per_offset() {
    let Some((store, url, prefix)) = store().await else {
        return;
    };
    let stream = StreamId::new("contention/same-expectation").unwrap();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, stream, barrier) = (Arc::clone(&store), stream.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                barrier.wait().await;
                let expect = if round == 0 {
                    Expect::NoStream
                } else {
                    Expect::Next(round)
                };
                let payload = Bytes::from(format!("w{w}-r{round}"));
                let r = store
                    .append(&stream, vec![payload], AppendOptions::expect(expect))
                    .await;
                outcomes.push((round, w, r.map(|r| r.first_offset).map_err(|e| e.kind())));
            }
            outcomes
        }));
    }
    let mut by_round: HashMap<u64, Vec<Outcome>> = HashMap::new();
    for t in tasks {
        for (round, w, r) in t.await.unwrap() {
            by_round.entry(round).or_default().push((w, r));
        }
    }
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let outcomes = &by_round[&round];
        let won: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        assert_eq!(won[0].1, Ok(round), "the winner got the expected offset");
        winners.push(won[0].0);
        for (w, r) in outcomes {
            if r.is_err() {
                assert_eq!(
                    *r,
                    Err(ErrorKind::Conflict {
                        actual_next: round + 1
                    }),
                    "round {round}, writer {w}: a loser sees the winner's next offset"
                );
            }
        }
    }
    let records = read_all(&store, &stream).await;
    let want: Vec<Bytes> = winners
        .iter()
        .enumerate()
        .map(|(round, w)| Bytes::from(format!("w{w}-r{round}")))
        .collect();
    assert_eq!(records, want, "each offset holds its round's winner");
    println!("mongodb contention: {WRITERS} writers x {ROUNDS} rounds, one winner per offset");
    store.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_retrying_conditional_writers_stay_contiguous() {
    let Some((store, url, prefix)) = store().await else {
        return;
    };
    let stream = StreamId::new("contention/retrying").unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, stream) = (Arc::clone(&store), stream.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = 0;
            let mut conflicts = 0u32;
            for i in 0..PER_WRITER {
                loop {
                    let payload = Bytes::from(format!("w{w}-{i}"));
                    let opts = AppendOptions::expect(Expect::Next(next));
                    match store.append(&stream, vec![payload], opts).await {
                        Ok(r) => {
                            assert_eq!(r.first_offset, next);
                            next = r.next_offset();
                            break;
                        }
                        Err(e) => match e.kind() {
                            ErrorKind::Conflict { actual_next } => {
                                assert!(actual_next > next || next == 0 && actual_next > 0);
                                conflicts += 1;
                                next = actual_next;
                            }
                            other => panic!("writer {w}: unexpected {other:?}: {e}"),
                        },
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let records = read_all(&store, &stream).await;
    assert_eq!(records.len(), WRITERS * PER_WRITER);
    for w in 0..WRITERS {
        let mine: Vec<_> = records
            .iter()
            .filter(|p| p.starts_with(format!("w{w}-").as_bytes()))
            .cloned()
            .collect();
        let want: Vec<_> = (0..PER_WRITER)
            .map(|i| Bytes::from(format!("w{w}-{i}")))
            .collect();
        assert_eq!(mine, want, "writer {w}'s records, once each, in its order");
    }
    println!(
        "mongodb contention: {WRITERS} retrying writers, {} records contiguous, {conflicts} conflicts",
        records.len()
    );
    store.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

/// Two store objects on the same collections, each with its own cache of last entries: every
/// append of one leaves the other's cache stale. The stale entry must only cost a walk, never a
/// wrong answer: exact `Conflict`, `Sealed` after the other's seal, a new incarnation after the
/// other's delete, and dense offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_entry_never_decides() {
    let Some((a, url, prefix)) = store().await else {
        return;
    };
    let b = MongoStore::connect(&url, &prefix).await.unwrap();
    let s = StreamId::new("contention/stale-cache").unwrap();
    let one = |t: &str| vec![Bytes::from(t.to_owned())];
    let first = a.append(&s, one("a0"), AppendOptions::default()).await;
    assert_eq!(first.unwrap().first_offset, 0);
    // b writes 1..=3; a's cache still says next = 1.
    for i in 1..=3u64 {
        let r = b.append(&s, one("b"), AppendOptions::expect(Expect::Next(i)));
        assert_eq!(r.await.unwrap().first_offset, i);
    }
    let stale = a
        .append(&s, one("a-stale"), AppendOptions::expect(Expect::Next(1)))
        .await;
    assert_eq!(
        stale.unwrap_err().kind(),
        ErrorKind::Conflict { actual_next: 4 },
        "the real next offset, not the cached one"
    );
    b.append(&s, one("b4"), AppendOptions::default())
        .await
        .unwrap();
    let any = a.append(&s, one("a5"), AppendOptions::default()).await;
    assert_eq!(any.unwrap().first_offset, 5, "Any lands after b's append");
    // b seals: a's cached entry is unsealed.
    b.seal(&s).await.unwrap();
    let sealed = a
        .append(&s, one("a-sealed"), AppendOptions::default())
        .await;
    assert_eq!(sealed.unwrap_err().kind(), ErrorKind::Sealed);
    // b deletes: a's cached entry is of the old generation.
    let old = a.info(&s).await.unwrap().incarnation;
    assert!(b.delete(&s).await.unwrap());
    let reborn = a
        .append(&s, one("new"), AppendOptions::expect(Expect::NoStream))
        .await
        .unwrap();
    assert_eq!(reborn.first_offset, 0);
    assert_ne!(reborn.incarnation, old, "a new incarnation");
    let records = read_all(&b, &s).await;
    assert_eq!(records, one("new"));
    // And the other way round: b's cache is stale now.
    let r = b.append(&s, one("b1"), AppendOptions::expect(Expect::Next(1)));
    assert_eq!(r.await.unwrap().first_offset, 1);
    b.close().await.unwrap();
    a.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}
