//! The watcher's batched head check (`heads_marks`: one `$in` query on the streams' successor
//! slots, walks only for the streams that moved) seen from a store object that never writes:
//! every kind of write by another store object (append, seal, trim, delete, re-creation) must
//! change the mark, and nothing else may.
//!
//! Needs `STREAMSTORE_MONGODB_URL` (`scripts/services.sh up mongodb`); prints SKIPPED and passes
//! without it. The ignored test measures one pass at 1,000 streams (docs/benchmarks.md).

use std::sync::Arc;
use std::time::Instant;

use streamkeep_mongodb::{MongoStore, URL_ENV};
use streamstore::{StreamId, StreamStore};
use streamstore_adapter_testing::{follow, put};

async fn pair() -> Option<(MongoStore, MongoStore, String, String)> {
    let Ok(url) = std::env::var(URL_ENV) else {
        println!("SKIPPED: {URL_ENV} is not set (scripts/services.sh up mongodb)");
        return None;
    };
    let prefix = format!("marks_{:08x}_", rand::random::<u32>());
    let writer = MongoStore::connect(&url, &prefix).await.unwrap();
    let watcher = MongoStore::connect(&url, &prefix).await.unwrap();
    Some((writer, watcher, url, prefix))
}

/// The mark of `s` as `store` sees it (`None`: missing).
async fn mark(store: &MongoStore, s: &StreamId) -> Option<u64> {
    let m = store.heads_marks(std::slice::from_ref(s)).await.unwrap();
    assert!(m.len() <= 1 && m.iter().all(|(id, _)| id == s));
    m.first().map(|(_, m)| *m)
}

/// [`pair`] with the writer shared, and 1,000 stream ids `<name>/<i>` (the measurements).
async fn thousand(
    name: &str,
) -> Option<(Arc<MongoStore>, MongoStore, String, String, Vec<StreamId>)> {
    let (writer, watcher, url, prefix) = pair().await?;
    let ids = (0..1000)
        .map(|i| StreamId::new(format!("{name}/{i}")).unwrap())
        .collect();
    Some((Arc::new(writer), watcher, url, prefix, ids))
}

/// One append to every `every`-th of `ids` (from the first), from 16 tasks.
async fn put_every(writer: &Arc<MongoStore>, ids: &[StreamId], every: usize) {
    let tasks: Vec<_> = (0..16)
        .map(|k| {
            let (w, ids) = (Arc::clone(writer), ids.to_vec());
            tokio::spawn(async move {
                for s in ids.iter().step_by(every).skip(k).step_by(16) {
                    put(w.as_ref(), s, 1).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_another_store_moves_the_mark_and_nothing_else_does() {
    let Some((writer, watcher, url, prefix)) = pair().await else {
        return;
    };
    let s = StreamId::new("marks/one").unwrap();
    let quiet = StreamId::new("marks/quiet").unwrap();
    assert_eq!(mark(&watcher, &s).await, None, "never written: missing");
    put(&writer, &quiet, 1).await;
    put(&writer, &s, 2).await;
    let m1 = mark(&watcher, &s).await.expect("written: present");
    // The watcher store now knows the last entry: later checks go through the batched query.
    assert_eq!(mark(&watcher, &s).await, Some(m1), "no write, same mark");
    let q = mark(&watcher, &quiet).await.expect("present");

    let mut seen = vec![m1];
    let mut check = |m: Option<u64>, what: &str| {
        let m = m.unwrap_or_else(|| panic!("after {what}: missing"));
        assert!(!seen.contains(&m), "after {what}: the mark did not move");
        seen.push(m);
    };
    put(&writer, &s, 1).await;
    check(mark(&watcher, &s).await, "an append");
    // Several writes between two checks: the walk goes past all of them.
    put(&writer, &s, 1).await;
    put(&writer, &s, 3).await;
    check(mark(&watcher, &s).await, "two appends");
    writer.trim(&s, 2).await.unwrap();
    check(mark(&watcher, &s).await, "a trim");
    writer.seal(&s).await.unwrap();
    check(mark(&watcher, &s).await, "a seal");
    assert!(writer.delete(&s).await.unwrap());
    assert_eq!(mark(&watcher, &s).await, None, "deleted: missing");
    assert_eq!(mark(&watcher, &s).await, None, "still deleted");
    put(&writer, &s, 1).await;
    check(mark(&watcher, &s).await, "a re-creation");

    // Both streams in one call: only the one written moved.
    let both = watcher
        .heads_marks(&[s.clone(), quiet.clone()])
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert!(both.contains(&(quiet.clone(), q)));
    assert!(both.contains(&(s.clone(), *seen.last().unwrap())));

    writer.close().await.unwrap();
    watcher.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

/// A pass steps along many streams' chains at once (one query per step, then walks): with more
/// streams moving than one round of walks holds, and by different amounts (some further than
/// the pass steps), every mark must still be the one of the stream's last entry, as a walk from
/// scratch by a third store object finds it, and every written stream's mark must move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_steps_reach_every_streams_last_entry() {
    let Some((writer, watcher, url, prefix)) = pair().await else {
        return;
    };
    let ids: Vec<StreamId> = (0..80)
        .map(|i| StreamId::new(format!("steps/{i}")).unwrap())
        .collect();
    for s in &ids {
        put(&writer, s, 1).await;
    }
    let before = watcher.heads_marks(&ids).await.unwrap();
    assert_eq!(before.len(), ids.len());
    // Stream i gets i % 7 more appends: 0 (unmoved) to 6 (past the pass's batched steps).
    for (i, s) in ids.iter().enumerate() {
        for _ in 0..i % 7 {
            put(&writer, s, 1).await;
        }
    }
    writer.seal(&ids[5]).await.unwrap();
    assert!(writer.delete(&ids[6]).await.unwrap());
    let mut after = watcher.heads_marks(&ids).await.unwrap();
    let truth_store = MongoStore::connect(&url, &prefix).await.unwrap();
    let mut truth = truth_store.heads_marks_by_walks(&ids).await.unwrap();
    after.sort();
    truth.sort();
    assert_eq!(
        after, truth,
        "batched steps and walks from scratch disagree"
    );
    assert_eq!(after.len(), ids.len() - 1, "the deleted stream has no mark");
    for (s, m) in &before {
        let now = after.iter().find(|(t, _)| t == s).map(|(_, m)| *m);
        let i: usize = s.as_str()["steps/".len()..].parse().unwrap();
        if i.is_multiple_of(7) {
            assert_eq!(now, Some(*m), "{s}: not written, the mark moved");
        } else {
            assert_ne!(now, Some(*m), "{s}: written, the mark did not move");
        }
    }
    truth_store.close().await.unwrap();
    writer.close().await.unwrap();
    watcher.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

/// One watcher pass over 1,000 existing streams: the batched check (one query) against the
/// walks it replaced (one point read per stream, 32 at a time). Prints
/// `mongodb marks pass: ...` lines.
///
/// `cargo test -p streamkeep-mongodb --test marks -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn one_pass_over_a_thousand_streams() {
    let Some((writer, watcher, url, prefix, ids)) = thousand("pass").await else {
        return;
    };
    let t = Instant::now();
    put_every(&writer, &ids, 1).await;
    println!(
        "mongodb marks pass: 1,000 appends from 16 tasks took {:?}",
        t.elapsed()
    );
    // The first pass walks every stream (nothing known yet); it fills the start cache.
    let t = Instant::now();
    assert_eq!(watcher.heads_marks(&ids).await.unwrap().len(), 1000);
    println!(
        "mongodb marks pass: first pass (walks, cold) {:?}",
        t.elapsed()
    );
    for round in 0..3 {
        let t = Instant::now();
        assert_eq!(watcher.heads_marks(&ids).await.unwrap().len(), 1000);
        let batched = t.elapsed();
        let t = Instant::now();
        assert_eq!(
            watcher.heads_marks_by_walks(&ids).await.unwrap().len(),
            1000
        );
        let walks = t.elapsed();
        println!(
            "mongodb marks pass {round}: batched query {batched:?}, point-read walks {walks:?} (ratio {:.1})",
            walks.as_secs_f64() / batched.as_secs_f64()
        );
    }
    writer.close().await.unwrap();
    watcher.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

/// Followers of streams written by another store object: each wake-up costs the woken read, and
/// the follower's next call parks on the memo that read left (`follow` in the adapter tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_parks_on_the_memo_of_its_woken_read() {
    let Some((writer, reader, url, prefix)) = pair().await else {
        return;
    };
    let spared: fn(&MongoStore) -> u64 = |r| r.watcher().stats().spared_reads;
    follow::a_follower_parks_on_memos(writer, reader, spared).await;
    MongoStore::destroy(&url, &prefix).await.unwrap();
}

/// Watcher passes over 1,000 streams after another store object wrote to all of them, to a
/// tenth of them, to none: what a pass costs when the streams it watches move (each stream one
/// append between passes). Prints `mongodb moved pass: ...` lines (docs/benchmarks.md).
///
/// `cargo test -p streamkeep-mongodb --test marks moved -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn passes_after_the_streams_moved() {
    let Some((writer, watcher, url, prefix, ids)) = thousand("moved").await else {
        return;
    };
    put_every(&writer, &ids, 1).await;
    assert_eq!(watcher.heads_marks(&ids).await.unwrap().len(), 1000);
    for (every, what) in [
        (1, "all"),
        (10, "a tenth"),
        (usize::MAX, "none"),
        (1, "all"),
        (10, "a tenth"),
    ] {
        put_every(&writer, &ids, every).await;
        let t = Instant::now();
        assert_eq!(watcher.heads_marks(&ids).await.unwrap().len(), 1000);
        println!(
            "mongodb moved pass: 1,000 streams, {what} moved: {:?}",
            t.elapsed()
        );
    }
    watcher.close().await.unwrap();
    MongoStore::destroy(&url, &prefix).await.unwrap();
}
