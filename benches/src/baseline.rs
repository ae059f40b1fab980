//! Physical baselines: what the disk does with no engine in between.
//!
//! - [`raw_fdatasync`]: positional write of one batch then `fdatasync`, on a preallocated file whose
//!   blocks were really written (zero-filled), which is the cheapest durable write this disk offers
//!   (see `shared/brief/engine-prior-art.md` §4.1: a growing or `fallocate`d file pays an extra
//!   journal commit per sync). An engine cannot beat this at equal batch size.
//! - [`sequential_write`]: plain `write` of large chunks to a growing file, no sync: the bandwidth
//!   a buffered writer can reach in a short window (the page cache's); with `durable`, the final
//!   `fdatasync` is timed too: the disk's sustained sequential bandwidth.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::Result;
use crate::stats::Latency;
use crate::workload::Sample;

/// A zero-filled file of `bytes` bytes, synced, ready to be overwritten.
pub fn zero_filled(path: &Path, bytes: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// Writes batches of `batch` records of `record_bytes` at increasing positions of `file` (wrapping
/// at `file_bytes`), each followed by `fdatasync`, for `duration` after `warmup`.
pub fn raw_fdatasync(
    file: &File,
    file_bytes: u64,
    record_bytes: usize,
    batch: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Sample> {
    let buf: Vec<u8> = (0..record_bytes * batch)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let len = buf.len() as u64;
    let mut pos = 0u64;
    let mut sample = Sample::default();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        if pos + len > file_bytes {
            pos = 0;
        }
        file.write_all_at(&buf, pos)?;
        file.sync_data()?;
        pos += len;
        if t0 >= measure_from {
            let t1 = Instant::now();
            sample.latency.record(t1 - t0);
            sample.ops += 1;
            sample.records += batch as u64;
            sample.bytes += len;
        }
    }
    sample.elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(sample)
}

/// Writes `chunk`-byte blocks to a new file at `path` for `duration` after `warmup`, without
/// syncing; then syncs (timed if `durable`: the elapsed time then runs until the data is on disk)
/// and removes the file, so the next case starts with no dirty data. With `durable` the warm-up's
/// bytes are synced before the measurement starts.
pub fn sequential_write(
    path: &Path,
    chunk: usize,
    warmup: Duration,
    duration: Duration,
    durable: bool,
) -> Result<Sample> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let buf: Vec<u8> = (0..chunk)
        .map(|i| u8::try_from(i % 253).unwrap_or(0))
        .collect();
    let mut sample = Sample::default();
    let start = Instant::now();
    let measure_from = start + warmup;
    let mut end = measure_from + duration;
    let mut measuring = false;
    let mut measure_from = measure_from;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        if !measuring && t0 >= measure_from {
            measuring = true;
            if durable {
                // The warm-up's bytes are not the measurement's: sync them first, then measure
                // for the whole `duration`.
                file.sync_data()?;
                measure_from = Instant::now();
                end = measure_from + duration;
            }
        }
        let t0 = Instant::now();
        file.write_all(&buf)?;
        if measuring {
            sample.latency.record(t0.elapsed());
            sample.ops += 1;
            sample.records += 1;
            sample.bytes += chunk as u64;
        }
    }
    if durable {
        file.sync_data()?;
    }
    sample.elapsed = Instant::now().saturating_duration_since(measure_from);
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path)?;
    Ok(sample)
}

/// Returns a latency histogram of `fdatasync` alone on `file` after one small overwrite, `n` times
/// (used by the profile section: the cost of a sync with nothing else around it).
pub fn fdatasync_only(file: &File, n: usize) -> Result<Latency> {
    let mut lat = Latency::new();
    let buf = [0u8; 4096];
    for i in 0..n {
        file.write_all_at(&buf, (i as u64 % 1024) * 4096)?;
        let t0 = Instant::now();
        file.sync_data()?;
        lat.record(t0.elapsed());
    }
    Ok(lat)
}
