//! Issue 17's case (`--filter fairness`): does a noisy stream slow the quiet ones?
//!
//! 1,000 quiet streams take closed-loop 1 KiB appends from 16 appenders, alone and then while one
//! noisy stream takes 16 × 64 KiB batches from 8 appenders flat out (`Sync` mode, default
//! options). Each repetition runs four cases back to back: quiet alone, quiet with the noisy
//! stream, the noisy stream alone, and the disk's sustained sequential bandwidth (1 MiB writes,
//! timed until synced). Ratios are taken within a repetition and their median (and range) over
//! repetitions reported: quiet p99 with ÷ without the noisy stream (goal ≤ 2), quiet throughput
//! with ÷ without (goal ≥ 0.8), the noisy stream's bytes/s ÷ the disk's (goal ≥ 0.5). The
//! process's RSS is sampled every 20 ms during each case and its peak reported.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{AppendOptions, Durability, LocalOptions, LocalStore, StreamId, StreamStore};

use crate::backend::{BenchBackend, Result, StoreBackend};
use crate::baseline;
use crate::plan::Settings;
use crate::procs;
use crate::stats::{median, Latency};
use crate::workload::{self, AppendSpec, Sample, Spread};

const QUIET_STREAMS: usize = 1000;
const QUIET_APPENDERS: usize = 16;
const NOISY_APPENDERS: usize = 8;
const NOISY_BATCH: usize = 16;
const NOISY_RECORD: usize = 64 << 10;
const MIB: f64 = 1024.0 * 1024.0;

/// `STREAMSTORE_BENCH_STREAM_GROUP_BYTES`: a stream's share of a group other than the default
/// (to show the trade-off it sets; docs/benchmarks.md).
fn share_override() -> Option<usize> {
    env_usize("STREAMSTORE_BENCH_STREAM_GROUP_BYTES")
}

/// A number from the environment (the knob above, and `STREAMSTORE_BENCH_SEGMENT_BYTES` and
/// `STREAMSTORE_BENCH_CHECKPOINT_BYTES` to show what rolls and checkpoints cost the quiet
/// streams).
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// One repetition's measurements.
#[derive(Default)]
struct Rep {
    quiet_alone: Sample,
    quiet_mixed: Sample,
    noisy_mixed: Sample,
    noisy_alone: Sample,
    disk: Sample,
    rss_alone: u64,
    rss_mixed: u64,
    rss_noisy: u64,
}

/// Samples the process's RSS every 20 ms until dropped; `peak` holds the largest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    fn start() -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Ok(r) = procs::resources() {
                    p.fetch_max(r.rss_bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssSampler { stop, peak }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The noisy stream: `NOISY_APPENDERS` closed-loop appenders of 16 × 64 KiB batches.
async fn noisy(
    store: Arc<dyn StreamStore>,
    warmup: Duration,
    duration: Duration,
) -> Result<Sample> {
    let id = StreamId::new("noisy")?;
    let pool = Arc::new(workload::payloads(NOISY_RECORD, NOISY_BATCH * 2, 5));
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for a in 0..NOISY_APPENDERS {
        let (store, id, pool) = (store.clone(), id.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            let mut k = a;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let batch: Vec<Bytes> = (0..NOISY_BATCH)
                    .map(|i| pool[(k + i) % pool.len()].clone())
                    .collect();
                k += 1;
                store.append(&id, batch, AppendOptions::default()).await?;
                if t0 >= measure_from {
                    s.latency.record(t0.elapsed());
                    s.ops += 1;
                    s.records += NOISY_BATCH as u64;
                    s.bytes += (NOISY_BATCH * NOISY_RECORD) as u64;
                }
            }
            s.elapsed = duration;
            Ok::<_, crate::backend::BoxError>(s)
        }));
    }
    let mut total = Sample {
        elapsed: duration,
        latency: Latency::new(),
        ..Sample::default()
    };
    for t in tasks {
        let s = t.await??;
        total.ops += s.ops;
        total.records += s.records;
        total.bytes += s.bytes;
        total.latency.merge(&s.latency);
    }
    Ok(total)
}

/// One case in a fresh store in `dir`: the quiet workload and/or the noisy one, at once.
/// Returns (quiet, noisy, RSS peak).
async fn mix(
    dir: &Path,
    s: &Settings,
    quiet: bool,
    noisy_on: bool,
) -> Result<(Sample, Sample, u64)> {
    let mut opts = LocalOptions::default().durability(Durability::Sync);
    if let Some(n) = share_override() {
        opts.stream_group_bytes = n;
    }
    if let Some(n) = env_usize("STREAMSTORE_BENCH_SEGMENT_BYTES") {
        opts.segment_bytes = n as u64;
    }
    if let Some(n) = env_usize("STREAMSTORE_BENCH_CHECKPOINT_BYTES") {
        opts.checkpoint_bytes = n as u64;
    }
    let store: Arc<dyn StreamStore> = Arc::new(LocalStore::open(dir, opts).await?);
    let backend: Arc<dyn BenchBackend> = Arc::new(StoreBackend::new(store.clone(), QUIET_STREAMS)?);
    // Create the quiet streams first: the measurement is of steady-state appends.
    workload::fill(backend.clone(), QUIET_STREAMS, 1, 1024, 1, 64).await?;
    let rss = RssSampler::start();
    let spec = AppendSpec {
        streams: QUIET_STREAMS,
        appenders: QUIET_APPENDERS,
        record_bytes: 1024,
        batch: 1,
        spread: Spread::RoundRobin,
        warmup: s.warmup,
        duration: s.duration,
    };
    let q = quiet.then(|| {
        let backend = backend.clone();
        tokio::spawn(async move { workload::run_appends(backend, &spec).await })
    });
    let n = noisy_on.then(|| tokio::spawn(noisy(store.clone(), s.warmup, s.duration)));
    let q = match q {
        Some(t) => t.await??,
        None => Sample::default(),
    };
    let n = match n {
        Some(t) => t.await??,
        None => Sample::default(),
    };
    let peak = rss.peak();
    drop(rss);
    store.close().await?;
    Ok((q, n, peak))
}

async fn one_rep(s: &Settings, rep: usize) -> Result<Rep> {
    let base = s.work_dir.join(format!("fairness-{rep}"));
    let fresh = |leaf: &str| -> Result<std::path::PathBuf> {
        let d = base.join(leaf);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let mut r = Rep::default();
    (r.quiet_alone, _, r.rss_alone) = mix(&fresh("alone")?, s, true, false).await?;
    (r.quiet_mixed, r.noisy_mixed, r.rss_mixed) = mix(&fresh("mixed")?, s, true, true).await?;
    (_, r.noisy_alone, r.rss_noisy) = mix(&fresh("noisy")?, s, false, true).await?;
    let path = fresh("disk")?.join("seq.dat");
    let (warmup, duration) = (s.warmup, s.duration);
    r.disk = tokio::task::spawn_blocking(move || {
        baseline::sequential_write(&path, 1 << 20, warmup, duration, true)
    })
    .await??;
    let _ = std::fs::remove_dir_all(&base);
    Ok(r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "median (min–max)" of values.
fn spread(v: &[f64], digits: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = median(v).unwrap_or(f64::NAN);
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

/// Runs the case `s.reps` times and returns its markdown section and its `ratio` lines.
pub async fn run(s: &Settings) -> Result<(String, String)> {
    let mut reps = Vec::new();
    for rep in 0..s.reps {
        eprintln!("[fairness] rep {}/{}", rep + 1, s.reps);
        reps.push(one_rep(s, rep).await?);
    }
    let col = |f: &dyn Fn(&Rep) -> f64| reps.iter().map(f).collect::<Vec<f64>>();
    let p99 = |x: &Sample| ms(x.latency.quantile(0.99));
    let p50 = |x: &Sample| ms(x.latency.quantile(0.50));
    let p99_ratio = col(&|r| p99(&r.quiet_mixed) / p99(&r.quiet_alone));
    let tput_ratio = col(&|r| r.quiet_mixed.records_per_sec() / r.quiet_alone.records_per_sec());
    let share = col(&|r| r.noisy_mixed.bytes_per_sec() / r.disk.bytes_per_sec());
    let alone_share = col(&|r| r.noisy_alone.bytes_per_sec() / r.disk.bytes_per_sec());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut md = String::new();
    let share_bytes = share_override().unwrap_or(LocalOptions::default().stream_group_bytes);
    let _ =
        writeln!(
        md,
        "## Fairness (issue 17)\n\n`stream_group_bytes` {share_bytes}; {} repetitions of {} ms \
         (warm-up {} ms); load average at the end: {}\n",
        s.reps,
        s.duration.as_millis(),
        s.warmup.as_millis(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    md.push_str("| Measure | Median (min–max) over repetitions | Goal |\n|---|---|---|\n");
    let rows: [(&str, Vec<f64>, usize, &str); 12] = [
        (
            "quiet p99 with ÷ without the noisy stream",
            p99_ratio.clone(),
            2,
            "≤ 2",
        ),
        (
            "quiet appends/s with ÷ without",
            tput_ratio.clone(),
            2,
            "≥ 0.8",
        ),
        (
            "noisy stream bytes/s ÷ disk sequential bytes/s",
            share.clone(),
            2,
            "≥ 0.5",
        ),
        ("noisy stream alone bytes/s ÷ disk", alone_share, 2, ""),
        ("quiet p50 alone, ms", col(&|r| p50(&r.quiet_alone)), 2, ""),
        ("quiet p99 alone, ms", col(&|r| p99(&r.quiet_alone)), 2, ""),
        (
            "quiet p50 with noisy, ms",
            col(&|r| p50(&r.quiet_mixed)),
            2,
            "",
        ),
        (
            "quiet p99 with noisy, ms",
            col(&|r| p99(&r.quiet_mixed)),
            2,
            "",
        ),
        (
            "quiet appends/s alone",
            col(&|r| r.quiet_alone.records_per_sec()),
            0,
            "",
        ),
        (
            "noisy MiB/s with quiet",
            col(&|r| r.noisy_mixed.bytes_per_sec() / MIB),
            1,
            "",
        ),
        (
            "disk sequential MiB/s (synced)",
            col(&|r| r.disk.bytes_per_sec() / MIB),
            1,
            "",
        ),
        (
            "RSS peak MiB, quiet with noisy",
            col(&|r| crate::stats::f(r.rss_mixed) / MIB),
            0,
            "bounded",
        ),
    ];
    for (name, v, digits, goal) in rows {
        let _ = writeln!(md, "| {name} | {} | {goal} |", spread(&v, digits));
    }
    let _ = writeln!(
        md,
        "\nRSS peak MiB quiet alone: {}; noisy alone: {}",
        spread(&col(&|r| crate::stats::f(r.rss_alone) / MIB), 0),
        spread(&col(&|r| crate::stats::f(r.rss_noisy) / MIB), 0)
    );
    let mut lines = String::new();
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let _ = writeln!(lines, "ratio fairness_quiet_p99: {:.2}", m(&p99_ratio));
    let _ = writeln!(
        lines,
        "ratio fairness_quiet_throughput: {:.2}",
        m(&tput_ratio)
    );
    let _ = writeln!(lines, "ratio fairness_noisy_share: {:.2}", m(&share));
    Ok((md, lines))
}
