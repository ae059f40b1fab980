//! A first throughput number for durable (`Sync`) appends of 1 KiB records. Ignored by default:
//!
//! ```text
//! cargo test --release -p streamkeep --test local_bench -- --ignored --nocapture
//! ```
//!
//! `STREAMSTORE_BENCH_DIR` chooses where the store goes (default: a temporary directory under
//! `/var/tmp`, i.e. on the real disk, not tmpfs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep::{AppendOptions, LocalOptions, LocalStore, StreamId, StreamStore};

fn dir() -> tempfile::TempDir {
    let base = std::env::var("STREAMSTORE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    tempfile::tempdir_in(base).unwrap()
}

/// Runs `writers` tasks, task `w` appending single 1 KiB records to stream `w % streams`, for
/// `secs` seconds; prints and returns records per second.
fn run(name: &str, streams: usize, writers: usize, secs: u64) -> f64 {
    let tmp = dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(
            LocalStore::open(tmp.path(), LocalOptions::default())
                .await
                .unwrap(),
        );
        let done = Arc::new(AtomicU64::new(0));
        let payload = Bytes::from(vec![b'x'; 1024]);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let done = done.clone();
            let payload = payload.clone();
            let id = StreamId::new(format!("bench/{}", w % streams)).unwrap();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    store
                        .append(&id, vec![payload.clone()], AppendOptions::default())
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        store.close().await.unwrap();
        #[expect(clippy::cast_precision_loss, reason = "a printed rate")]
        let rate = n as f64 / elapsed;
        println!(
            "{name}: {n} durable 1 KiB appends in {elapsed:.2} s = {rate:.0} records/s ({:.1} MiB/s)",
            rate / 1024.0
        );
        rate
    })
}

#[test]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
fn sync_append_throughput() {
    let one = run("1 stream x 64 appenders", 1, 64, 5);
    let many = run("10,000 streams, one appender each", 10_000, 10_000, 5);
    assert!(one > 0.0 && many > 0.0);
}
