//! Adapter tests shared by the PostgreSQL and MySQL test files (through [`crate::sql_adapter_tests!`]), for
//! what the conformance suite does not reach: several stores on the same tables, schema
//! creation races, id bytes the databases could fold, and key-window pruning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{
    AppendOptions, ErrorKind, IdempotencyKey, ListOptions, ReadOptions, StreamId, StreamStore,
};

/// A unique table prefix for one test.
pub fn prefix(test: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{test}_{:08x}_", t.subsec_nanos() ^ std::process::id())
}

/// `url` with the query options `options` (`"a=1&b=2"`; none if empty) appended.
pub fn with_options(url: &str, options: &str) -> String {
    if options.is_empty() {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{options}")
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Ids a collation or padding rule could fold together stay distinct and list in byte order.
pub async fn ids_differing_in_padding_case_or_accents_never_alias(store: &dyn StreamStore) {
    let ids = [
        "x", "x ", "X", "x\u{a0}", "\u{e9}", "e\u{301}", "E\u{301}", "x  ",
    ];
    for (i, s) in ids.iter().enumerate() {
        store
            .append(
                &id(s),
                vec![Bytes::from(i.to_string())],
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
    for (i, s) in ids.iter().enumerate() {
        let b = store.read(&id(s), 0, ReadOptions::default()).await.unwrap();
        let texts: Vec<_> = b.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(texts, vec![Bytes::from(i.to_string())], "id {s:?} aliased");
    }
    let listed = store.list(ListOptions::default()).await.unwrap().streams;
    let mut want: Vec<StreamId> = ids.iter().map(|s| id(s)).collect();
    want.sort();
    assert_eq!(listed, want, "list is not in byte order");
}

/// A reader waiting on one store wakes when another store (another process, as far as the
/// database can tell) appends; returns how long the wake-up took.
pub async fn waiting_reader_wakes_on_another_stores_append(
    writer: Arc<dyn StreamStore>,
    reader: Arc<dyn StreamStore>,
) -> Duration {
    let s = id("wake/other-store");
    writer
        .append(&s, vec![Bytes::from("0")], AppendOptions::default())
        .await
        .unwrap();
    // Let the reader's first polls back off, so a fast wake-up is the push, not a poll.
    let wait = tokio::spawn({
        let s = s.clone();
        async move {
            let b = reader
                .read(&s, 1, ReadOptions::default().wait(Duration::from_secs(10)))
                .await
                .unwrap();
            (Instant::now(), b)
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let appended = Instant::now();
    writer
        .append(&s, vec![Bytes::from("1")], AppendOptions::default())
        .await
        .unwrap();
    let (woke, batch) = wait.await.unwrap();
    assert_eq!(
        batch.records.len(),
        1,
        "the waiting read returned {batch:?}"
    );
    woke.saturating_duration_since(appended)
}

/// Applies `op` to every stream of `ids` from 8 concurrent tasks; returns when each returned.
async fn on_all<F, Fut>(ids: &[StreamId], op: F) -> Vec<Instant>
where
    F: Fn(StreamId) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (ids, op) = (ids.to_vec(), op.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                for (i, s) in ids.into_iter().enumerate().skip(w).step_by(8) {
                    op(s).await;
                    done.push((i, Instant::now()));
                }
                done
            })
        })
        .collect();
    let mut at = vec![Instant::now(); ids.len()];
    for t in tasks {
        for (i, when) in t.await.unwrap() {
            at[i] = when;
        }
    }
    at
}

/// 1,000 readers on one store wait for an append made through another store, then for the
/// seal of every stream (a wake storm): every reader sees both, none misses its wake-up (it
/// would sleep out its 30 s wait). Returns the slowest wake-up after an append and how long
/// after the seals began the last reader saw its stream finished.
pub async fn thousand_waiters_see_another_stores_writes(
    writer: Arc<dyn StreamStore>,
    reader: Arc<dyn StreamStore>,
) -> (Duration, Duration) {
    const LONG: Duration = Duration::from_secs(30);
    let ids: Vec<StreamId> = (0..1000).map(|i| id(&format!("many/{i}"))).collect();
    let append = |text: &'static str| {
        let writer = Arc::clone(&writer);
        move |s: StreamId| {
            let writer = Arc::clone(&writer);
            async move {
                writer
                    .append(&s, vec![Bytes::from(text)], AppendOptions::default())
                    .await
                    .unwrap();
            }
        }
    };
    on_all(&ids, append("0")).await;
    let first_woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = ids
        .iter()
        .map(|s| {
            let (reader, s, first_woken) = (Arc::clone(&reader), s.clone(), first_woken.clone());
            tokio::spawn(async move {
                let b = reader
                    .read(&s, 1, ReadOptions::limit(10).wait(LONG))
                    .await
                    .unwrap();
                let appended_seen = Instant::now();
                assert_eq!(b.records.len(), 1, "{s:?}: {b:?}");
                first_woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let b = reader
                    .read(&s, 2, ReadOptions::limit(10).wait(LONG))
                    .await
                    .unwrap();
                assert!(b.records.is_empty() && b.is_finished(), "{s:?}: {b:?}");
                (appended_seen, Instant::now())
            })
        })
        .collect();
    // Every reader has read and armed (and had the first head read of its stream).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let appended = on_all(&ids, append("1")).await;
    while first_woken.load(std::sync::atomic::Ordering::SeqCst) < ids.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sealing = Instant::now();
    on_all(&ids, {
        let writer = Arc::clone(&writer);
        move |s: StreamId| {
            let writer = Arc::clone(&writer);
            async move {
                writer.seal(&s).await.unwrap();
            }
        }
    })
    .await;
    let (mut worst, mut last) = (Duration::ZERO, Duration::ZERO);
    for (r, at) in readers.into_iter().zip(appended) {
        let (seen, finished) = r.await.unwrap();
        worst = worst.max(seen.saturating_duration_since(at));
        last = last.max(finished.saturating_duration_since(sealing));
    }
    (worst, last)
}

/// Several stores opening the same new tables at once all succeed and share the data.
pub async fn concurrent_opens_create_the_schema_once<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = streamstore::Result<Arc<dyn StreamStore>>> + Send + 'static,
{
    let opens: Vec<_> = (0..4).map(|_| tokio::spawn(open())).collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("a concurrent open failed"));
    }
    let s = id("schema/shared");
    for (i, store) in stores.iter().enumerate() {
        let r = store
            .append(
                &s,
                vec![Bytes::from(i.to_string())],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.first_offset, i as u64);
    }
    for store in stores {
        store.close().await.unwrap();
    }
}

/// More keyed appends than twice the window: pruning runs, and the most recent `window` keys
/// are still recognized.
pub async fn key_window_keeps_the_most_recent_keys(store: &dyn StreamStore) {
    let window = store.capabilities().idempotency.unwrap().keys_per_stream;
    let s = id("keys/window");
    let total = 2 * window + 5;
    let key = |i: usize| IdempotencyKey::new(format!("k{i}")).unwrap();
    for i in 0..total {
        let r = store
            .append(
                &s,
                vec![Bytes::from(i.to_string())],
                AppendOptions::default().with_key(key(i)),
            )
            .await
            .unwrap();
        assert_eq!(r.first_offset, i as u64);
    }
    for i in total - window..total {
        let r = store
            .append(
                &s,
                vec![Bytes::from(i.to_string())],
                AppendOptions::default().with_key(key(i)),
            )
            .await
            .unwrap();
        assert_eq!(
            r.first_offset, i as u64,
            "key k{i} inside the window was forgotten"
        );
    }
    let info = store.info(&s).await.unwrap();
    assert_eq!(
        info.next_offset, total as u64,
        "a retry inside the window wrote again"
    );
    // Reusing a remembered key for other records is refused.
    let e = store
        .append(
            &s,
            vec![Bytes::from("other")],
            AppendOptions::default().with_key(key(total - 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// Byte budgets over records of uneven length: every way a read can choose its query (budget
/// larger than the stream, budget the mean record length says will not cut but a long record
/// does, budget that cuts) returns exactly the records that fit, and at least one.
pub async fn byte_budget_over_uneven_records(store: &dyn StreamStore) {
    let s = id("budget/uneven");
    // Offsets 0..10: 10 bytes; 10: 500 bytes; 11..20: 10 bytes. 690 bytes, 34.5 on average.
    let mut recs = vec![Bytes::from(vec![1u8; 10]); 10];
    recs.push(Bytes::from(vec![2u8; 500]));
    recs.extend(vec![Bytes::from(vec![3u8; 10]); 9]);
    store
        .append(&s, recs.clone(), AppendOptions::default())
        .await
        .unwrap();
    let read = async |from: usize, n: usize, budget: usize| {
        let b = store
            .read(&s, from as u64, ReadOptions::limit(n).bytes(budget))
            .await
            .unwrap();
        let got: Vec<Bytes> = b.records.iter().map(|r| r.payload.clone()).collect();
        let end = from + got.len();
        let offsets: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (from as u64..end as u64).collect::<Vec<_>>());
        assert_eq!(b.next_offset, end as u64);
        assert_eq!(got, recs[from..end].to_vec());
        got.len()
    };
    // (from, max_records, max_bytes) -> records returned.
    let cases = [
        ((0, 100, 690), 20),  // the whole stream fits
        ((0, 100, 1000), 20), // more than fits
        ((8, 4, 150), 2),     // 4 × mean 35 = 140 fits, the 500-byte record does not
        ((10, 2, 100), 1),    // the first record alone exceeds the budget
        ((9, 5, 510), 2),     // exactly at the budget
        ((0, 100, 250), 10),  // the budget cuts (by the mean too)
        ((0, 100, 99), 9),
        ((0, 1, 1), 1),
        ((11, 100, 30), 3),
        ((11, 100, 1), 1),
    ];
    for ((from, n, budget), want) in cases {
        assert_eq!(
            read(from, n, budget).await,
            want,
            "read from {from}, {n} records, {budget} bytes"
        );
    }
}

/// Reads whose budget cannot cut the page (no budget, or one the whole stream fits: the plain
/// range query) and reads whose budget the stream's bytes exceed (the dialect's budget-aware
/// query) return the same batches, both statements of a read running on one connection; and
/// reads keep every check of the contract: a missing stream, offsets at and beyond the end
/// (also beyond what a BIGINT holds), a trimmed offset, a sealed stream, a deleted and
/// re-created stream (new incarnation, no old records), and an expired stream.
pub async fn reads_keep_the_contract_on_every_query(store: &dyn StreamStore) {
    let s = id("page/contract");
    let recs: Vec<Bytes> = (0..30u8).map(|i| Bytes::from(vec![i; 10])).collect();
    store
        .append(&s, recs.clone(), AppendOptions::default())
        .await
        .unwrap();
    let payloads = |b: &streamstore::ReadBatch| -> Vec<Bytes> {
        b.records.iter().map(|r| r.payload.clone()).collect()
    };
    // 300 bytes: budgets of usize::MAX, 1 MiB and 300 cannot cut a page, 299 can.
    for budget in [usize::MAX, 1 << 20, 300, 299] {
        let b = store
            .read(&s, 5, ReadOptions::limit(20).bytes(budget))
            .await
            .unwrap();
        let offsets: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (5..25).collect::<Vec<_>>(), "budget {budget}");
        assert_eq!(payloads(&b), recs[5..25].to_vec(), "budget {budget}");
        assert_eq!(
            (b.next_offset, b.end_offset, b.first_available, b.sealed),
            (25, 30, 0, false),
            "budget {budget}"
        );
        // The page stops at the end of the stream.
        let b = store
            .read(&s, 25, ReadOptions::limit(100).bytes(budget))
            .await
            .unwrap();
        assert_eq!(payloads(&b), recs[25..].to_vec(), "budget {budget}");
        assert_eq!(b.next_offset, 30);
    }
    let unbounded = ReadOptions::limit(1000).bytes(usize::MAX);
    // At and beyond the end (also beyond what a BIGINT holds): empty, not an error.
    for from in [30, 31, 1 << 40, u64::MAX] {
        let b = store.read(&s, from, unbounded).await.unwrap();
        assert!(b.records.is_empty(), "from {from}");
        assert_eq!(
            (b.next_offset, b.end_offset, b.incarnation.is_some()),
            (from, 30, true),
            "from {from}"
        );
    }
    // A missing stream.
    let b = store.read(&id("page/missing"), 0, unbounded).await.unwrap();
    assert!(b.records.is_empty() && b.incarnation.is_none());
    // Trimmed offsets.
    assert_eq!(store.trim(&s, 10).await.unwrap(), 10);
    let e = store.read(&s, 3, unbounded).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Trimmed {
            first_available: 10
        }
    );
    let b = store.read(&s, 10, unbounded).await.unwrap();
    assert_eq!(payloads(&b), recs[10..].to_vec());
    assert_eq!(b.first_available, 10);
    // Sealed.
    store.seal(&s).await.unwrap();
    let b = store.read(&s, 28, unbounded).await.unwrap();
    assert_eq!(payloads(&b), recs[28..].to_vec());
    assert!(b.sealed && b.is_finished());
    // Deleted and re-created: a new incarnation, none of the old records.
    let old = b.incarnation;
    assert!(store.delete(&s).await.unwrap());
    let b = store.read(&s, 0, unbounded).await.unwrap();
    assert!(b.records.is_empty() && b.incarnation.is_none());
    store
        .append(&s, vec![Bytes::from("new")], AppendOptions::default())
        .await
        .unwrap();
    let b = store.read(&s, 0, unbounded).await.unwrap();
    assert_eq!(payloads(&b), vec![Bytes::from("new")]);
    assert!(b.incarnation.is_some() && b.incarnation != old && !b.sealed);
    let b = store.read(&s, 1, unbounded).await.unwrap();
    assert!(b.records.is_empty() && b.end_offset == 1);
    // Expired (idle retention fired; the sweeper may not have run): missing.
    let idle = streamstore::Retention::default().delete_after_idle(Duration::from_millis(50));
    store.set_retention(&s, idle).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = store.read(&s, 0, unbounded).await.unwrap();
    assert!(b.records.is_empty() && b.incarnation.is_none());
}

/// The server's URL from `url_env`, or `None` after printing why the test is skipped.
pub fn url(url_env: &str, server: &str) -> Option<String> {
    let url = std::env::var(url_env).ok();
    if url.is_none() {
        println!(
            "SKIPPED: {url_env} is not set (start the server: scripts/services.sh up {server})"
        );
    }
    url
}

/// The adapter tests of one store type (`connect`, `destroy`, `sweep`, `pool` and `reread_stats` as the
/// PostgreSQL and MySQL stores have them): ids, cross-store wake-ups (the test named
/// `wake_test`, on stores opened with the URL options `wake_url_options`, which must wake
/// within `wakes_within`), concurrent schema creation, key-window
/// pruning, the sweeper and prefix validation.
#[macro_export]
macro_rules! sql_adapter_tests {
    (
        store: $store:ident,
        server: $server:literal,
        url_env: $url_env:expr,
        wake_test: $wake_test:ident,
        wake_url_options: $wake_url_options:expr,
        wakes_within: $wakes_within:expr $(,)?
    ) => {
        async fn open(url: &str, prefix: &str) -> std::sync::Arc<dyn streamstore::StreamStore> {
            std::sync::Arc::new($store::connect(url, prefix).await.unwrap())
        }

        /// Runs `case` on a store of its own tables, then drops them.
        async fn on_one_store(name: &str, case: impl AsyncFnOnce(&dyn streamstore::StreamStore)) {
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            let p = $crate::cases::prefix(name);
            let store = open(&url, &p).await;
            case(&*store).await;
            store.close().await.unwrap();
            $store::destroy(&url, &p).await.unwrap();
        }

        /// Runs `case` with a writer store and a reader store on the same tables of their own
        /// (two pools, as two processes would have) and the reader's re-read counters that
        /// `pick` selects; closes both and drops the tables after.
        async fn on_writer_and_reader(
            name: &str,
            pick: fn(&$store) -> (u64, u64),
            case: impl AsyncFnOnce(
                std::sync::Arc<dyn streamstore::StreamStore>,
                std::sync::Arc<dyn streamstore::StreamStore>,
                Box<dyn Fn() -> (u64, u64)>,
            ),
        ) {
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            let p = $crate::cases::prefix(name);
            let writer = open(&url, &p).await;
            let reader = std::sync::Arc::new($store::connect(&url, &p).await.unwrap());
            let stats = {
                let reader = reader.clone();
                Box::new(move || pick(&reader))
            };
            case(writer.clone(), reader.clone(), stats).await;
            writer.close().await.unwrap();
            streamstore::StreamStore::close(&*reader).await.unwrap();
            $store::destroy(&url, &p).await.unwrap();
        }

        #[tokio::test]
        async fn ids_never_alias() {
            on_one_store("ids", async |store| {
                $crate::cases::ids_differing_in_padding_case_or_accents_never_alias(store).await
            })
            .await;
        }

        #[tokio::test]
        async fn $wake_test() {
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            let p = $crate::cases::prefix("wake");
            let url = $crate::cases::with_options(&url, $wake_url_options);
            let (a, b) = (open(&url, &p).await, open(&url, &p).await);
            let took =
                $crate::cases::waiting_reader_wakes_on_another_stores_append(a.clone(), b.clone())
                    .await;
            assert!(took < $wakes_within, "woke after {took:?}");
            a.close().await.unwrap();
            b.close().await.unwrap();
            $store::destroy(&url, &p).await.unwrap();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn thousand_waiters_miss_no_wakeup_from_another_store() {
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            let p = $crate::cases::prefix("many");
            let (a, b) = (open(&url, &p).await, open(&url, &p).await);
            let (worst, storm) =
                $crate::cases::thousand_waiters_see_another_stores_writes(a.clone(), b.clone())
                    .await;
            println!(
                "1,000 waiters: slowest wake-up {worst:?}; all saw the seals within {storm:?}"
            );
            // A missed wake-up sleeps out the 30 s wait; the bounds stay well below it but far
            // above what a loaded CI machine needs (6.6 s was seen at load average 15), so the
            // test fails on a missed wake-up, not on a slow machine. Latency is the benchmark's job.
            assert!(
                worst < std::time::Duration::from_secs(20),
                "slowest wake-up {worst:?}"
            );
            assert!(
                storm < std::time::Duration::from_secs(25),
                "seal storm took {storm:?}"
            );
            a.close().await.unwrap();
            b.close().await.unwrap();
            $store::destroy(&url, &p).await.unwrap();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn wake_storm_rereads_are_batched_and_exact() {
            let pick: fn(&$store) -> (u64, u64) = |r| {
                let s = r.reread_stats();
                (s.records_prefetched, s.records_statements)
            };
            on_writer_and_reader("storm", pick, async |writer, reader, stats| {
                $crate::storm::wake_storm_rereads_are_exact(writer, reader, stats).await
            })
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_follower_reads_once_per_wakeup() {
            let pick: fn(&$store) -> (u64, u64) =
                |r| (r.reread_stats().reads, r.watcher().stats().spared_reads);
            on_writer_and_reader("follow", pick, async |writer, reader, counted| {
                let counted = || {
                    let (reads, spared) = counted();
                    (Some(reads), spared)
                };
                $crate::follow::a_follower_reads_once_per_wakeup(writer, reader, counted).await
            })
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_burst_of_waiting_reads_shares_statements() {
            let pick: fn(&$store) -> (u64, u64) = |r| {
                let s = r.reread_stats();
                (s.reads, s.head_statements)
            };
            on_writer_and_reader("burst", pick, async |writer, reader, stats| {
                $crate::storm::a_burst_of_waiting_reads_shares_statements(writer, reader, stats)
                    .await
            })
            .await;
        }

        #[tokio::test]
        async fn concurrent_opens_create_the_schema_once() {
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            let p = $crate::cases::prefix("schema");
            let (u, q) = (url.clone(), p.clone());
            $crate::cases::concurrent_opens_create_the_schema_once(move || {
                let (u, q) = (u.clone(), q.clone());
                async move {
                    let s: std::sync::Arc<dyn streamstore::StreamStore> =
                        std::sync::Arc::new($store::connect(&u, &q).await?);
                    Ok(s)
                }
            })
            .await;
            $store::destroy(&url, &p).await.unwrap();
        }

        #[tokio::test]
        async fn byte_budget_over_uneven_records() {
            on_one_store("budget", async |store| {
                $crate::cases::byte_budget_over_uneven_records(store).await
            })
            .await;
        }

        #[tokio::test]
        async fn reads_keep_the_contract_on_every_query() {
            on_one_store("page", async |store| {
                $crate::cases::reads_keep_the_contract_on_every_query(store).await
            })
            .await;
        }

        #[tokio::test]
        async fn key_window_prunes_but_keeps_recent_keys() {
            on_one_store("keys", async |store| {
                $crate::cases::key_window_keeps_the_most_recent_keys(store).await
            })
            .await;
        }

        #[tokio::test]
        async fn sweeper_deletes_expired_streams_and_bad_prefixes_are_refused() {
            use streamstore::StreamStore as _;
            let Some(url) = $crate::cases::url($url_env, $server) else {
                return;
            };
            for bad in ["", "A", "a-b", "a;drop table x", "1a"] {
                let e = $store::connect(&url, bad).await.err().unwrap();
                assert_eq!(e.kind(), streamstore::ErrorKind::InvalidArgument, "{bad:?}");
            }
            let p = $crate::cases::prefix("sweep");
            let store = $store::connect(&url, &p).await.unwrap();
            let s = streamstore::StreamId::new("sweep/me").unwrap();
            store
                .append(
                    &s,
                    vec![bytes::Bytes::from("x")],
                    streamstore::AppendOptions::default(),
                )
                .await
                .unwrap();
            let idle = streamstore::Retention::default()
                .delete_after_idle(std::time::Duration::from_millis(50));
            store.set_retention(&s, idle).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            // Expired streams are never served, swept or not.
            assert_eq!(
                store.info(&s).await.unwrap_err().kind(),
                streamstore::ErrorKind::NotFound
            );
            // The background sweeper (every second) or this explicit sweep removes the rows.
            store.sweep().await.unwrap();
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}streams"))
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(rows, 0);
            store.close().await.unwrap();
            $store::destroy(&url, &p).await.unwrap();
        }
    };
}
