//! Replay through memory maps against `pread`: one stream of 1 KiB records filling several
//! finished segments, read back from offset 0 in pages of 1,000, alternating `mmap_reads` on and
//! off in one run (the ratio is what to read; the machine is shared).
//!
//! `cargo run --release -p streamstore-bench --example replay_mmap -- [dir] [records] [reps]`

use std::time::Instant;

use bytes::Bytes;
use streamstore::{
    AppendOptions, Durability, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore,
};

fn options(mmap_reads: bool) -> LocalOptions {
    LocalOptions::default()
        .durability(Durability::Buffered)
        .segment_bytes(16 << 20)
        .mmap_reads(mmap_reads)
}

async fn replay(dir: &std::path::Path, id: &StreamId, mmap_reads: bool) -> f64 {
    let store = LocalStore::open(dir, options(mmap_reads)).await.unwrap();
    let started = Instant::now();
    let (mut from, mut n) = (0, 0u64);
    loop {
        let b = store
            .read(id, from, ReadOptions::limit(1000))
            .await
            .unwrap();
        if b.records.is_empty() {
            break;
        }
        n += b.records.len() as u64;
        from = b.next_offset;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    store.close().await.unwrap();
    rate
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map_or_else(|| std::env::temp_dir().join("replay_mmap"), Into::into);
    let records: u64 = args.next().map_or(131_072, |a| a.parse().unwrap());
    let reps: usize = args.next().map_or(7, |a| a.parse().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let id = StreamId::new("replay").unwrap();
    {
        let store = LocalStore::open(&dir, options(true)).await.unwrap();
        let payload = Bytes::from(vec![7u8; 1024]);
        for _ in 0..records / 64 {
            store
                .append(&id, vec![payload.clone(); 64], AppendOptions::default())
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    }
    let mut ratios = Vec::new();
    for rep in 0..reps {
        let map = replay(&dir, &id, true).await;
        let pread = replay(&dir, &id, false).await;
        println!("rep {rep}: mmap {map:.0} records/s, pread {pread:.0} records/s");
        ratios.push(map / pread);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio replay_mmap_vs_pread: {:.3}",
        ratios[ratios.len() / 2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
