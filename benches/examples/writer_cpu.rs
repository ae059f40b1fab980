//! CPU cost of the append path as the number of streams grows, without the disk: `Buffered`
//! mode, segments large enough not to roll and no checkpoint during the run, so that neither an
//! `fdatasync` nor another process's I/O sets the pace. 64 appenders write 1 KiB records
//! round-robin over `<streams>` streams (each stream created by a first pass), for `<secs>`
//! seconds per stream count; prints appends/s and the process's CPU time per append (user +
//! system, from `/proc/self/stat`).
//!
//! This isolates what `streams10k_vs_1` charges the engine for per stream (the writer's
//! bookkeeping per stream per group), which the `Sync` benchmark mixes with the disk's noise.
//!
//! With `sync` as the fourth argument the store runs in `Sync` mode (group commit, the sync
//! thread): put `<dir>` on a tmpfs (`/dev/shm`), where `fdatasync` returns at once, to measure
//! that path's CPU without the disk.
//!
//! `cargo run --release -p streamstore-bench --example writer_cpu -- <dir> [streams,…] [secs] [sync]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{AppendOptions, Durability, LocalOptions, LocalStore, StreamId, StreamStore};

/// User + system CPU time of this process, in clock ticks (100 per second on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    at(11) + at(12)
}

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/writer-cpu".into()));
    let counts: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,10000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let sync = args.next().is_some_and(|a| a == "sync");
    for streams in counts {
        let _ = std::fs::remove_dir_all(&dir);
        // No roll during a run (in `Sync` mode the segment is zero-filled first: smaller).
        let opts = LocalOptions::default()
            .durability(if sync {
                Durability::Sync
            } else {
                Durability::Buffered
            })
            .segment_bytes(if sync { 1 << 30 } else { 4 << 30 })
            .checkpoint_bytes(u64::MAX / 4)
            .checkpoint_interval(Duration::from_secs(3600));
        let store = Arc::new(LocalStore::open(&dir, opts).await?);
        let ids: Arc<Vec<StreamId>> = Arc::new(
            (0..streams)
                .map(|i| StreamId::new(format!("stream-{i:08}")))
                .collect::<streamstore::Result<_>>()?,
        );
        let payload = Bytes::from(vec![7u8; 1024]);
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for a in 0..64usize {
            let (store, ids, payload) = (store.clone(), ids.clone(), payload.clone());
            let (stop, measuring, count, ready) = (
                stop.clone(),
                measuring.clone(),
                count.clone(),
                ready.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mine: Vec<&StreamId> = ids.iter().skip(a % ids.len()).step_by(64).collect();
                let mine = if mine.is_empty() { vec![&ids[0]] } else { mine };
                // First pass: create this appender's streams.
                for id in &mine {
                    store
                        .append(id, vec![payload.clone()], AppendOptions::default())
                        .await?;
                }
                ready.fetch_add(1, Ordering::Relaxed);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = mine[i % mine.len()];
                    i += 1;
                    store
                        .append(id, vec![payload.clone()], AppendOptions::default())
                        .await?;
                    if measuring.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<_, streamstore::Error>(())
            }));
        }
        // Measure once every stream exists, after a short warm-up.
        while ready.load(Ordering::Relaxed) < 64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (t0, c0) = (Instant::now(), cpu_ticks());
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        measuring.store(false, Ordering::Relaxed);
        let (elapsed, cpu) = (t0.elapsed().as_secs_f64(), cpu_ticks() - c0);
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.map_err(|e| {
                streamstore::Error::new(streamstore::ErrorKind::Internal, e.to_string())
            })??;
        }
        let n = count.load(Ordering::Relaxed) as f64;
        println!(
            "streams {streams}: {:.0} appends/s, {:.2} µs CPU per append",
            n / elapsed,
            cpu as f64 * 10_000.0 / n
        );
        store.close().await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
