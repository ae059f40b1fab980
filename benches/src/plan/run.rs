//! Running a plan: every case once per repetition (interleaved), then recovery and idle
//! resources; and what a run measured ([`Results`]), with the ratios computed from it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use streamstore::Durability;

use super::{build, schedule, Case, RatioDef, Settings, Step, Work};
use crate::backend::{Result, StoreBackend};
use crate::baseline;
use crate::procs::{self, Recovery, Resources};
use crate::stats::{median, paired_ratio, LatencySummary};
use crate::systems::{open_local, System};
use crate::workload::{self, Sample};

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// Cases in plan order with one sample per repetition.
    pub cases: Vec<(Case, Vec<Sample>)>,
    /// Ratio definitions.
    pub ratios: Vec<RatioDef>,
    /// Recovery measurements by size.
    pub recovery: Vec<Recovery>,
    /// Idle streams: (count, after creating, after reopening, bare process).
    pub idle: Option<(usize, Resources, Resources, Resources)>,
    /// Failures (case key, error), reported rather than aborting the run.
    pub failures: Vec<(String, String)>,
    /// Cases not run on this machine (case key, why: e.g. a server peer not installed).
    pub skipped: Vec<(String, String)>,
}

/// Summary of one case.
#[derive(Clone, Debug)]
pub struct CaseSummary {
    /// Median records/s over repetitions.
    pub records_per_sec: f64,
    /// Median payload bytes/s.
    pub bytes_per_sec: f64,
    /// Percentiles over every repetition's calls.
    pub latency: LatencySummary,
    /// Repetitions measured.
    pub reps: usize,
}

impl Results {
    /// Per-case summaries, keyed by case key.
    pub fn summaries(&self) -> BTreeMap<String, CaseSummary> {
        self.cases
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(c, samples)| {
                let recs: Vec<f64> = samples.iter().map(Sample::records_per_sec).collect();
                let bytes: Vec<f64> = samples.iter().map(Sample::bytes_per_sec).collect();
                let mut lat = crate::stats::Latency::new();
                for s in samples {
                    lat.merge(&s.latency);
                }
                (
                    c.key.clone(),
                    CaseSummary {
                        records_per_sec: median(&recs).unwrap_or(0.0),
                        bytes_per_sec: median(&bytes).unwrap_or(0.0),
                        latency: lat.summary(),
                        reps: samples.len(),
                    },
                )
            })
            .collect()
    }

    fn samples(&self, key: &str, bandwidth: bool) -> Option<Vec<f64>> {
        self.cases.iter().find(|(c, _)| c.key == key).map(|(_, s)| {
            s.iter()
                .map(|x| {
                    if bandwidth {
                        x.bytes_per_sec()
                    } else {
                        x.records_per_sec()
                    }
                })
                .collect()
        })
    }

    /// The median of per-repetition ratios of `def`, if both cases ran.
    pub fn ratio(&self, def: &RatioDef) -> Option<f64> {
        paired_ratio(
            &self.samples(&def.num, def.bandwidth)?,
            &self.samples(&def.den, def.bandwidth)?,
        )
    }
}

/// Runs one case once in a fresh directory under `work`.
async fn run_case(case: &Case, work: &Path, rep: usize, duration: Duration) -> Result<Sample> {
    let dir = work.join(format!("case-{rep}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_case_in(case, &dir, duration).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_case_in(case: &Case, dir: &Path, duration: Duration) -> Result<Sample> {
    match &case.work {
        Work::RawSync {
            record_bytes,
            batch,
        } => {
            let (rb, b) = (*record_bytes, *batch);
            let warmup = Duration::from_millis(200);
            let path = dir.join("raw.dat");
            tokio::task::spawn_blocking(move || {
                let size = 256u64 << 20;
                let file = baseline::zero_filled(&path, size)?;
                baseline::raw_fdatasync(&file, size, rb, b, warmup, duration)
            })
            .await?
        }
        Work::SeqWrite { chunk, durable } => {
            let (chunk, durable) = (*chunk, *durable);
            let path = dir.join("seq.dat");
            tokio::task::spawn_blocking(move || {
                let warmup = Duration::from_millis(200);
                baseline::sequential_write(&path, chunk, warmup, duration, durable)
            })
            .await?
        }
        Work::Append(system, spec) => {
            let backend = system.open(dir, spec.streams).await?;
            if spec.streams > 1 {
                // Create every stream first: the measurement is of steady-state appends.
                workload::fill(
                    Arc::clone(&backend),
                    spec.streams,
                    1,
                    spec.record_bytes,
                    1,
                    64,
                )
                .await?;
            }
            let sample = workload::run_appends(Arc::clone(&backend), spec).await;
            backend.close().await?;
            sample
        }
        Work::Replay {
            system,
            streams,
            records,
            record_bytes,
            readers,
        } => {
            let fill_system = match system {
                // Fill fast; the replay reads what a reopen finds.
                System::Local(_) => System::Local(Durability::Buffered),
                other => *other,
            };
            let mut backend = fill_system.open(dir, *streams).await?;
            workload::fill(
                Arc::clone(&backend),
                *streams,
                *records,
                *record_bytes,
                100,
                64,
            )
            .await?;
            if matches!(system, System::Local(_)) {
                // Reopen, so the read is served from the files, not the tail cache. (The peers
                // keep their handle: their data is in the page cache either way.)
                backend.close().await?;
                drop(backend);
                backend = system.open(dir, *streams).await?;
            }
            let sample = workload::run_replay(
                Arc::clone(&backend),
                *streams,
                *records as u64,
                *readers,
                1000,
            )
            .await;
            backend.close().await?;
            sample
        }
        Work::Tail { durability, n } => {
            let store = open_local(dir, *durability).await?;
            let backend = StoreBackend::new(Arc::clone(&store), 1)?;
            let sample = workload::run_tail(&backend, *n, 100).await;
            store.close().await?;
            sample
        }
    }
}

/// Runs the plan: every case once per repetition (interleaved; blocks of cases with several
/// rounds round by round, see [`schedule`]), then recovery and idle resources.
pub async fn run(s: &Settings, exe: &Path) -> Result<Results> {
    let (cases, ratios) = build(s);
    std::fs::create_dir_all(&s.work_dir)?;
    let extra = if s.filter.is_some() {
        0
    } else {
        s.recovery_sizes.len() + usize::from(s.idle_streams > 0)
    };
    let steps = schedule(&cases, s.reps);
    let total = steps.len() + extra;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Without a terminal the bar draws nothing: print one line per step instead, for logs.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let note = |bar: &ProgressBar, msg: String| {
        if plain {
            eprintln!(
                "[{}/{}] {msg}",
                bar.position() + 1,
                bar.length().unwrap_or(0)
            );
        }
        bar.set_message(msg);
    };
    let mut results = Results {
        cases: cases.iter().map(|c| (c.clone(), Vec::new())).collect(),
        ratios,
        ..Results::default()
    };
    let duration = s.duration;
    let mut skipped = std::collections::HashSet::new();
    for Step {
        rep,
        case: i,
        measured,
    } in steps
    {
        let Some(case) = cases.get(i) else {
            continue;
        };
        if let Some(why) = case.unavailable() {
            if skipped.insert(i) {
                bar.println(format!("case {} skipped: {why}", case.key));
                results.skipped.push((case.key.clone(), why));
            }
            bar.inc(1);
            continue;
        }
        let what = if measured { "" } else { " (warm-up)" };
        note(
            &bar,
            format!("rep {}/{} {}{what}", rep + 1, s.reps, case.key),
        );
        let sample = run_case(case, &s.work_dir, rep, duration).await;
        match sample {
            Ok(sample) if measured => {
                if let Some((_, v)) = results.cases.get_mut(i) {
                    v.push(sample);
                }
            }
            Ok(_) => {}
            Err(e) => {
                bar.println(format!("case {} failed: {e}", case.key));
                results.failures.push((case.key.clone(), e.to_string()));
            }
        }
        bar.inc(1);
    }
    if s.filter.is_none() {
        for &size in &s.recovery_sizes {
            note(
                &bar,
                format!("recovery after SIGKILL at {} MiB", size >> 20),
            );
            match procs::recovery(exe, &s.work_dir.join("recovery"), size).await {
                Ok(r) => results.recovery.push(r),
                Err(e) => {
                    bar.println(format!("recovery {size} failed: {e}"));
                    results
                        .failures
                        .push((format!("recovery/{size}"), e.to_string()));
                }
            }
            bar.inc(1);
        }
        if s.idle_streams > 0 {
            note(&bar, format!("{} idle streams", s.idle_streams));
            match procs::idle(exe, &s.work_dir.join("idle"), s.idle_streams).await {
                Ok((c, r, b)) => results.idle = Some((s.idle_streams, c, r, b)),
                Err(e) => {
                    bar.println(format!("idle streams failed: {e}"));
                    results.failures.push(("idle".into(), e.to_string()));
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_with_message("done");
    Ok(results)
}
