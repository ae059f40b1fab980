//! What a checkpoint costs as the number of streams grows: creates `<streams>` streams (one 100 B
//! record each), then times `LocalStore::checkpoint` (encode, write, rename, sync, garbage
//! collection) `<runs>` times, one append between runs so each one has something new to cover.
//!
//! `cargo run --release -p streamstore-bench --example checkpoint_cost -- <dir> <streams> [runs]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{AppendOptions, Durability, LocalOptions, LocalStore, StreamId, StreamStore};

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/ckpt-cost".into()));
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let _ = std::fs::remove_dir_all(&dir);
    let opts = LocalOptions::default().durability(Durability::Buffered);
    let store = std::sync::Arc::new(LocalStore::open(&dir, opts).await?);
    let payload = Bytes::from(vec![7u8; 100]);
    let mut tasks = Vec::new();
    for a in 0..64 {
        let (store, payload) = (store.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            for i in (a..streams).step_by(64) {
                let id = StreamId::new(format!("stream-{i:08}"))?;
                store
                    .append(&id, vec![payload.clone()], AppendOptions::default())
                    .await?;
            }
            Ok::<_, streamstore::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| {
            streamstore::Error::new(streamstore::ErrorKind::Internal, e.to_string())
        })??;
    }
    let one = StreamId::new("stream-00000000")?;
    let mut took: Vec<Duration> = Vec::new();
    for _ in 0..runs {
        store
            .append(&one, vec![payload.clone()], AppendOptions::default())
            .await?;
        let t = Instant::now();
        store.checkpoint().await?;
        took.push(t.elapsed());
    }
    took.sort();
    let size = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("CHECKPOINT"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0);
    println!(
        "{streams} streams: checkpoint min {:.1} ms, median {:.1} ms, max {:.1} ms ({runs} runs), checkpoint file(s) {:.1} MiB",
        took[0].as_secs_f64() * 1e3,
        took[took.len() / 2].as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
        size as f64 / f64::from(1 << 20)
    );
    store.abandon().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
