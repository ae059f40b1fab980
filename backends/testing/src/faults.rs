//! The fault workload shared by the adapters' fault tests (through [`crate::restart_test!`],
//! or [`run`] directly): writers append with idempotency keys and retry every retryable error
//! with the same key while the database server is restarted; afterwards every acknowledged
//! append must be in the stream exactly once, at the offsets it was acknowledged with, with no
//! gaps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{
    AppendOptions, AppendResult, IdempotencyKey, ReadOptions, StreamId, StreamStore,
};

/// Writers appending concurrently to the one stream.
pub const WRITERS: usize = 4;
/// Logical appends per writer at least; writers go on until the restart is over, so some are
/// always in flight when the server stops (at most `MAX_APPENDS`).
pub const APPENDS: usize = 60;
const MAX_APPENDS: usize = 2000;
/// How long a writer keeps retrying one append before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Names another services script for the restart: a copy of `scripts/services.sh` whose
/// server listens on another port, so that a fault test restarts a server nobody else is using
/// (the servers of `scripts/services.sh` are shared by everything running on the machine).
pub const SERVICES_SCRIPT_ENV: &str = "STREAMSTORE_SERVICES_SCRIPT";

/// `$STREAMSTORE_SERVICES_SCRIPT` if set, else `scripts/services.sh` of this repository.
pub fn services_script() -> PathBuf {
    std::env::var_os(SERVICES_SCRIPT_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh"),
            PathBuf::from,
        )
}

/// Runs `services.sh <args>` and panics unless it succeeds.
pub fn services(args: &[&str]) {
    let out = std::process::Command::new("bash")
        .arg(services_script())
        .args(args)
        .output()
        .expect("run scripts/services.sh");
    assert!(
        out.status.success(),
        "services.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The records of logical append `i` of writer `w`: 1 to 3 of them.
fn batch(w: usize, i: usize) -> Vec<Bytes> {
    (0..=(i % 3))
        .map(|j| Bytes::from(format!("w{w}-a{i}-r{j}")))
        .collect()
}

/// Appends with `key`, retrying retryable errors with the same key and records. Returns the
/// result and how many attempts it took.
async fn append_retrying(
    store: &dyn StreamStore,
    stream: &StreamId,
    records: Vec<Bytes>,
    key: IdempotencyKey,
) -> (AppendResult, u32) {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let options = AppendOptions::default().with_key(key.clone());
        match store.append(stream, records.clone(), options).await {
            Ok(r) => return (r, attempts),
            Err(e) if e.is_retryable() && started.elapsed() < RETRY_FOR => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append failed for good after {attempts} attempts: {e}"),
        }
    }
}

/// An append held up this long while the server was restarting waited through the outage (a
/// normal append takes milliseconds; the outage lasts at least 500 ms).
const HELD_UP: Duration = Duration::from_millis(400);

/// What the restart did to the writers.
pub struct Outcome {
    /// Appends acknowledged.
    pub acked: usize,
    /// Appends that failed with a retryable error and were retried with the same key.
    pub retried: usize,
    /// Appends that did not fail but were held up by the outage (the pool waited for the server
    /// to come back) and then succeeded.
    pub held_up: usize,
}

/// Runs the writers while `restart` restarts the server (in a blocking thread), then checks the
/// stream.
pub async fn run(store: Arc<dyn StreamStore>, restart: impl FnOnce() + Send + 'static) -> Outcome {
    let stream = StreamId::new("faults/stream").unwrap();
    let restarted = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        let restarted = Arc::clone(&restarted);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..MAX_APPENDS {
                if i >= APPENDS && restarted.load(Ordering::Acquire) {
                    break;
                }
                let key = IdempotencyKey::new(format!("w{w}-a{i}")).unwrap();
                let started = Instant::now();
                let (r, attempts) = append_retrying(&*store, &stream, batch(w, i), key).await;
                acked.push(((w, i), r, (attempts, started, started.elapsed())));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        }));
    }
    let done = Arc::clone(&restarted);
    let restarter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(700));
        let began = Instant::now();
        restart();
        done.store(true, Ordering::Release);
        (began, Instant::now())
    });
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer task"));
    }
    let (down, up) = restarter.await.expect("restart task");

    // Read everything back, after the restart, through the same store.
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let batch = store
            .read(&stream, from, ReadOptions::limit(1000))
            .await
            .expect("read after the restart");
        if batch.records.is_empty() {
            break;
        }
        from = batch.next_offset;
        records.extend(batch.records);
    }
    for (o, r) in records.iter().enumerate() {
        assert_eq!(r.offset, o as u64, "offsets are not contiguous from 0");
    }
    let expected: usize = acked
        .iter()
        .map(|(_, r, _)| usize::try_from(r.count).unwrap())
        .sum();
    assert_eq!(
        records.len(),
        expected,
        "the stream holds {} records, the acknowledged appends {expected}",
        records.len()
    );
    let incarnation = acked[0].1.incarnation;
    let mut seen = HashMap::new();
    for ((w, i), r, _) in &acked {
        assert_eq!(r.incarnation, incarnation, "the incarnation changed");
        let want = batch(*w, *i);
        let got: Vec<Bytes> = records[usize::try_from(r.first_offset).unwrap()..]
            .iter()
            .take(want.len())
            .map(|x| x.payload.clone())
            .collect();
        assert_eq!(
            got, want,
            "append w{w}-a{i} is not at its acknowledged offset"
        );
        assert!(
            seen.insert(r.first_offset, (w, i)).is_none(),
            "two appends acked at one offset"
        );
    }
    let retried = acked.iter().filter(|(_, _, (a, ..))| *a > 1).count();
    let held_up = acked
        .iter()
        .filter(|(_, _, (a, started, took))| {
            *a == 1 && *took >= HELD_UP && *started < up && *started + *took > down
        })
        .count();
    Outcome {
        acked: acked.len(),
        retried,
        held_up,
    }
}

/// A table prefix of its own for one run.
pub fn prefix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("faults_{:08x}_", t.subsec_nanos() ^ std::process::id())
}

/// The fault test of one store type (`connect` and `destroy` as the PostgreSQL and MySQL stores
/// have them): [`run`] while `services.sh down <server>` / `up <server>` restarts the server.
#[macro_export]
macro_rules! restart_test {
    (store: $store:ident, server: $server:literal, url_env: $url_env:expr $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn restart_during_idempotent_appends_loses_and_duplicates_nothing() {
            let url_env = $url_env;
            let Ok(url) = std::env::var(url_env) else {
                println!(
                    concat!(
                        "SKIPPED: {} is not set (start the server: scripts/services.sh up ",
                        $server,
                        ")"
                    ),
                    url_env
                );
                return;
            };
            let prefix = $crate::faults::prefix();
            let store: std::sync::Arc<dyn streamstore::StreamStore> =
                std::sync::Arc::new($store::connect(&url, &prefix).await.unwrap());
            let outcome = $crate::faults::run(std::sync::Arc::clone(&store), || {
                $crate::faults::services(&["down", $server]);
                std::thread::sleep(std::time::Duration::from_millis(500));
                $crate::faults::services(&["up", $server]);
            })
            .await;
            println!(
                concat!(
                    $server,
                    " faults: {} appends acknowledged, {} needed a retry, {} waited through the \
                     outage, none lost or duplicated"
                ),
                outcome.acked, outcome.retried, outcome.held_up
            );
            // Which of the two happens depends on where each append was when the server went
            // down (mid-transaction: an error and a retry; between transactions: the pool waits
            // for the server); at least one append must have met the outage.
            assert!(
                outcome.retried + outcome.held_up > 0,
                "the restart interrupted or held up no append: the test proved nothing"
            );
            store.close().await.unwrap();
            $store::destroy(&url, &prefix).await.unwrap();
        }
    };
}
