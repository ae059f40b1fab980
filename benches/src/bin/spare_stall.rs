//! What preparing a spare segment does to the commits running meanwhile (issue 15).
//!
//! A committer thread overwrites a zero-filled, synced "active" file with 16 KiB `pwrite` +
//! `fdatasync` in a loop (a commit of the engine's shape) while another thread prepares a 64 MiB
//! spare the two ways the engine has done it, alternating, `rounds` times each:
//!
//! - `page-cache`: 1 MiB writes of zeros through the page cache, then one `fdatasync` (before
//!   issue 15: all 64 MiB are submitted by that sync at once);
//! - `direct`: 256 KiB writes of zeros through `StdFs::open_direct` (`O_DIRECT`, one in flight at
//!   a time), then one `fdatasync` (the preallocator since issue 15, `segment::prepare_paced`).
//!
//! For each round it reports the commits' latency while the spare was being prepared (count,
//! p50, p99, p99.9, max) and how long the preparation took; then the medians per mode. Both
//! modes run in one process, interleaved, so a burst of other I/O on the machine hits both.
//!
//! `cargo run --release -p streamstore-bench --no-default-features --bin spare_stall -- <dir> [rounds]`

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamstore::implementor::fs::{FileSystem, StdFs};

const SPARE: u64 = 64 << 20;
const ACTIVE: u64 = 64 << 20;
const COMMIT: usize = 16 << 10;
const DIRECT_CHUNK: usize = 256 << 10;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn zero_fill_page_cache(path: &Path) -> Res<()> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < SPARE {
        f.write_all_at(&zeros, pos)?;
        pos += zeros.len() as u64;
    }
    f.sync_data()?;
    Ok(())
}

fn zero_fill_direct(path: &Path) -> Res<()> {
    let _ = std::fs::remove_file(path);
    let d = StdFs
        .open_direct(path)?
        .ok_or("no direct I/O on this file system")?;
    let mut raw = vec![0u8; DIRECT_CHUNK + 4096];
    let skip = raw.as_mut_ptr().align_offset(4096);
    let zeros = raw.get(skip..skip + DIRECT_CHUNK).ok_or("alignment")?;
    let mut pos = 0;
    while pos < SPARE {
        d.write_all_at(zeros, pos)?;
        pos += DIRECT_CHUNK as u64;
    }
    d.sync_data()?;
    Ok(())
}

/// Commits until `stop`; returns each commit's latency.
fn commits(active: &std::fs::File, stop: &AtomicBool) -> Res<Vec<Duration>> {
    let buf = vec![0x5au8; COMMIT];
    let mut pos = 0u64;
    let mut lat = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let t = Instant::now();
        active.write_all_at(&buf, pos)?;
        active.sync_data()?;
        lat.push(t.elapsed());
        pos = (pos + COMMIT as u64) % ACTIVE;
    }
    Ok(lat)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // NOTE: p in [0, 1]; the index is in range by construction.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a slice from a fraction of its length"
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/spare-stall".into()));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    std::fs::create_dir_all(&dir)?;
    let active_path = dir.join("active");
    {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&active_path)?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..(ACTIVE >> 20) {
            f.write_all_at(&zeros, i << 20)?;
        }
        f.sync_all()?;
    }
    let active = Arc::new(OpenOptions::new().write(true).open(&active_path)?);
    let spare = dir.join("spare");
    // (mode, p99.9 ms, max ms, prepare ms) per round.
    let mut rows: Vec<(&str, f64, f64, f64)> = Vec::new();
    println!("| round | mode | commits | p50 ms | p99 ms | p99.9 ms | max ms | prepare ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in 1..=rounds {
        for mode in ["page-cache", "direct"] {
            let stop = Arc::new(AtomicBool::new(false));
            let (a, s) = (active.clone(), stop.clone());
            let committer = std::thread::spawn(move || commits(&a, &s));
            std::thread::sleep(Duration::from_millis(20));
            let t = Instant::now();
            let prepared = if mode == "direct" {
                zero_fill_direct(&spare)
            } else {
                zero_fill_page_cache(&spare)
            };
            let took = t.elapsed();
            stop.store(true, Ordering::Release);
            let mut lat = committer.join().map_err(|_| "committer panicked")??;
            prepared?;
            lat.sort();
            let (p999, max) = (pct(&lat, 0.999), lat.last().copied().unwrap_or_default());
            println!(
                "| {r} | {mode} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
                lat.len(),
                ms(pct(&lat, 0.5)),
                ms(pct(&lat, 0.99)),
                ms(p999),
                ms(max),
                ms(took)
            );
            rows.push((mode, ms(p999), ms(max), ms(took)));
            std::fs::remove_file(&spare)?;
        }
    }
    for mode in ["page-cache", "direct"] {
        let med = |f: fn(&(&str, f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == mode).map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "median {mode}: p99.9 {:.2} ms, max {:.2} ms, prepare {:.0} ms",
            med(|r| r.1),
            med(|r| r.2),
            med(|r| r.3)
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
