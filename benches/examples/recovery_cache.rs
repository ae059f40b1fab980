//! Is a slow recovery the page cache? Fills a store without a clean shutdown, then times the
//! reopen with the segment files in the page cache and after dropping it (root only).
//!
//! `cargo run --release -p streamstore-bench --example recovery_cache -- <dir> <MiB>`

use std::time::Instant;

use bytes::Bytes;
use streamstore::{AppendOptions, Durability, LocalOptions, LocalStore, StreamId, StreamStore};

fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

async fn reopen(dir: &std::path::Path, label: &str) -> streamstore::Result<()> {
    let opts = LocalOptions::default().durability(Durability::Buffered);
    let started = Instant::now();
    let store = LocalStore::open(dir, opts).await?;
    let took = started.elapsed();
    let r = store.recovery_report();
    println!(
        "{label}: open {:.0} ms (recovery {:.0} ms), checkpoint {:?}, {} segments scanned, {} MiB scanned",
        took.as_secs_f64() * 1e3,
        r.duration.as_secs_f64() * 1e3,
        r.checkpoint,
        r.segments_scanned,
        r.bytes_scanned >> 20
    );
    store.abandon().await;
    Ok(())
}

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/recovery-cache".into()));
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2048);
    let _ = std::fs::remove_dir_all(&dir);
    let opts = LocalOptions::default().durability(Durability::Buffered);
    let store = LocalStore::open(&dir, opts).await?;
    let batch: Vec<Bytes> = (0..64).map(|_| Bytes::from(vec![7u8; 4096])).collect();
    let ids: Vec<StreamId> = (0..1000)
        .map(|i| StreamId::new(format!("s{i}")))
        .collect::<Result<_, _>>()?;
    let batches = (mib << 20) / (64 * 4096);
    for i in 0..batches {
        let id = &ids[usize::try_from(i % 1000).unwrap_or(0)];
        store
            .append(id, batch.clone(), AppendOptions::default())
            .await?;
    }
    store.abandon().await;
    println!("filled {mib} MiB without a clean shutdown");
    reopen(&dir, "warm cache").await?;
    if drop_caches() {
        reopen(&dir, "cold cache").await?;
    } else {
        println!("cold cache: skipped (cannot write /proc/sys/vm/drop_caches)");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
