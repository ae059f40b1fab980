//! The quick and full plans: which cases run, interleaved repetition by repetition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use streamstore::Durability;

use crate::backend::{Result, StoreBackend};
use crate::baseline;
use crate::procs::{self, Recovery, Resources};
use crate::stats::{median, paired_ratio, LatencySummary};
use crate::systems::{open_local, System, INTERVAL};
use crate::workload::{self, AppendSpec, Sample, Spread};

/// What a case does.
#[derive(Clone, Debug)]
pub enum Work {
    /// Raw positional write + `fdatasync` of `batch` records of `record_bytes`.
    RawSync {
        /// Payload bytes per record.
        record_bytes: usize,
        /// Records per sync.
        batch: usize,
    },
    /// Plain sequential writes of `chunk` bytes; `durable`: the final `fdatasync` is timed too
    /// (the disk's sustained bandwidth, not the page cache's).
    SeqWrite {
        /// Bytes per write.
        chunk: usize,
        /// Count the time until the data is on disk.
        durable: bool,
    },
    /// An append workload against a system.
    Append(System, AppendSpec),
    /// Fill, reopen, then read every stream from the start.
    Replay {
        /// The system.
        system: System,
        /// Streams read.
        streams: usize,
        /// Records per stream.
        records: usize,
        /// Payload bytes per record.
        record_bytes: usize,
        /// Concurrent readers.
        readers: usize,
    },
    /// Append-acknowledged to waiting-reader-woken latency.
    Tail {
        /// Engine durability.
        durability: Durability,
        /// Appends measured.
        n: usize,
    },
}

/// One measured case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Stable key, used to name ratios.
    pub key: String,
    /// Group heading in the report.
    pub group: &'static str,
    /// System label.
    pub system: String,
    /// Workload description.
    pub workload: String,
    /// What to do.
    pub work: Work,
}

impl Case {
    /// Why the case cannot run on this machine, if it cannot (its system is not installed).
    pub fn unavailable(&self) -> Option<String> {
        match &self.work {
            Work::Append(system, _) | Work::Replay { system, .. } => system.unavailable(),
            Work::RawSync { .. } | Work::SeqWrite { .. } | Work::Tail { .. } => None,
        }
    }
}

/// A ratio the report computes and, where the issue sets one, its target.
#[derive(Clone, Debug)]
pub struct RatioDef {
    /// Name (the quick mode prints `ratio <name>: <x>` for the headline ones).
    pub name: &'static str,
    /// Numerator case key.
    pub num: String,
    /// Denominator case key.
    pub den: String,
    /// Compare bytes/s instead of records/s.
    pub bandwidth: bool,
    /// Target (the ratio must be at least this), if any.
    pub target: Option<f64>,
    /// What the ratio means.
    pub what: &'static str,
}

/// Knobs of a plan.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The full plan (else the quick one).
    pub full: bool,
    /// Repetitions of every case.
    pub reps: usize,
    /// Unmeasured warm-up per case.
    pub warmup: Duration,
    /// Measured window per case.
    pub duration: Duration,
    /// Recovery data sizes, bytes.
    pub recovery_sizes: Vec<u64>,
    /// Idle streams for the resource measurement.
    pub idle_streams: usize,
    /// Where data files go (removed after each case).
    pub work_dir: PathBuf,
    /// Only cases whose key contains this.
    pub filter: Option<String>,
}

const KIB: usize = 1024;

/// The shortest measured window of the many-streams cases and their one-stream denominator.
/// At 0.7 s (the quick window) one segment roll, checkpoint or burst of another process's I/O
/// is a tenth of a repetition, and two quick runs' `streams10k_vs_1` differed by up to 0.3; at
/// 2 s such an event weighs a third as much (each case holds several rolls), for ~15 s more per
/// quick run.
const STREAMS_WINDOW: Duration = Duration::from_millis(2000);

fn size_label(b: usize) -> String {
    if b >= KIB && b.is_multiple_of(KIB) {
        format!("{}KiB", b / KIB)
    } else {
        format!("{b}B")
    }
}

#[allow(clippy::too_many_lines)]
/// Builds the cases and ratios of a plan.
pub fn build(s: &Settings) -> (Vec<Case>, Vec<RatioDef>) {
    let mut cases = Vec::new();
    let spec = |streams, appenders, record_bytes, batch, spread| AppendSpec {
        streams,
        appenders,
        record_bytes,
        batch,
        spread,
        warmup: s.warmup,
        duration: s.duration,
    };
    let mut push = |group: &'static str, work: Work| {
        let (key, system, workload) = match &work {
            Work::RawSync {
                record_bytes,
                batch,
            } => (
                format!("raw-fdatasync/{}x{batch}", size_label(*record_bytes)),
                "raw pwrite+fdatasync".to_string(),
                format!("{} records, {batch} per sync", size_label(*record_bytes)),
            ),
            Work::SeqWrite {
                chunk,
                durable: false,
            } => (
                format!("raw-write/{}", size_label(*chunk)),
                "raw sequential write".to_string(),
                format!("{} writes, no sync", size_label(*chunk)),
            ),
            Work::SeqWrite {
                chunk,
                durable: true,
            } => (
                format!("raw-write-durable/{}", size_label(*chunk)),
                "raw sequential write".to_string(),
                format!("{} writes, then fdatasync (timed)", size_label(*chunk)),
            ),
            Work::Append(sys, a) => {
                let spread = match a.spread {
                    Spread::RoundRobin => "",
                    Spread::Skewed => " skewed",
                };
                (
                    format!(
                        "{}/{}x{}/a{}/s{}{}",
                        sys.label(),
                        size_label(a.record_bytes),
                        a.batch,
                        a.appenders,
                        a.streams,
                        spread.trim()
                    ),
                    sys.label(),
                    format!(
                        "append {} × {}/call, {} appender(s), {} stream(s){}",
                        size_label(a.record_bytes),
                        a.batch,
                        a.appenders,
                        a.streams,
                        spread
                    ),
                )
            }
            Work::Replay {
                system,
                streams,
                records,
                record_bytes,
                readers,
            } => (
                format!("{}/replay/s{streams}/r{readers}", system.label()),
                system.label(),
                format!(
                    "replay {streams} stream(s) × {records} × {}, {readers} reader(s)",
                    size_label(*record_bytes)
                ),
            ),
            Work::Tail { durability, n } => {
                let label = System::Local(*durability).label();
                (
                    format!("{label}/tail"),
                    label,
                    format!("tail: ack → waiting reader, {n} appends"),
                )
            }
        };
        cases.push(Case {
            key,
            group,
            system,
            workload,
            work,
        });
    };

    let sync = System::Local(Durability::Sync);
    let interval = System::Local(Durability::Interval(INTERVAL));
    let buffered = System::Local(Durability::Buffered);
    let rr = Spread::RoundRobin;

    // Sync against the disk at equal batch size.
    let sync_batches: &[usize] = if s.full { &[1, 16, 64] } else { &[1, 16] };
    let sync_sizes: &[usize] = if s.full {
        &[100, KIB, 64 * KIB]
    } else {
        &[KIB]
    };
    for &rb in sync_sizes {
        for &b in sync_batches {
            if rb == 64 * KIB && b > 16 {
                continue;
            }
            push(
                "sync vs disk",
                Work::RawSync {
                    record_bytes: rb,
                    batch: b,
                },
            );
            push("sync vs disk", Work::Append(sync, spec(1, 1, rb, b, rr)));
        }
    }
    // Group commit: 64 appenders of 1 record against one sync of 64 records.
    push(
        "sync vs disk",
        Work::RawSync {
            record_bytes: KIB,
            batch: 64,
        },
    );

    // Durability modes × record sizes × concurrency (batch 1 except where said).
    let mode_sizes: &[usize] = if s.full {
        &[100, KIB, 64 * KIB]
    } else {
        &[KIB]
    };
    // The three cases of `streams10k_vs_1` / `streams1k_vs_1` measure at least `STREAMS_WINDOW`
    // (quick mode too): see its comment.
    let streams_spec = |n, spread| AppendSpec {
        duration: s.duration.max(STREAMS_WINDOW),
        ..spec(n, 64, KIB, 1, spread)
    };
    for sys in [sync, interval, buffered] {
        for &rb in mode_sizes {
            for appenders in [1, 64] {
                if sys == sync && appenders == 1 {
                    continue; // already above
                }
                let a = if sys == sync && rb == KIB && appenders == 64 {
                    streams_spec(1, rr)
                } else {
                    spec(1, appenders, rb, 1, rr)
                };
                push("modes", Work::Append(sys, a));
            }
        }
        if sys == sync {
            // Many streams, durable: right after their one-stream denominator (`Sync`, 64
            // appenders, 1 KiB), before the `Buffered` cases write GBs whose writeback would
            // slow only the numerator.
            let stream_counts: &[usize] = &[1000, 10_000];
            for &n in stream_counts {
                push("streams", Work::Append(sync, streams_spec(n, rr)));
                if s.full {
                    push(
                        "streams",
                        Work::Append(sync, streams_spec(n, Spread::Skewed)),
                    );
                }
            }
            // The server peers at the same stream counts, also before the `Buffered` cases.
            #[cfg(feature = "peers")]
            for system in crate::plan_servers::SYSTEMS {
                for n in crate::plan_servers::STREAM_COUNTS {
                    push("servers", Work::Append(system, spec(n, 64, KIB, 1, rr)));
                }
            }
        }
    }
    // Buffered bulk: 100 B records in batches of 1000, and 64 KiB records against raw bandwidth.
    push(
        "buffered",
        Work::Append(buffered, spec(1, 1, 100, 1000, rr)),
    );
    if s.full {
        push(
            "buffered",
            Work::Append(buffered, spec(64, 64, 100, 1000, rr)),
        );
    }
    push(
        "buffered",
        Work::SeqWrite {
            chunk: 1 << 20,
            durable: false,
        },
    );
    push(
        "buffered",
        Work::SeqWrite {
            chunk: 1 << 20,
            durable: true,
        },
    );
    push(
        "buffered",
        Work::Append(buffered, spec(1, 1, 64 * KIB, 16, rr)),
    );

    // Peers at 1,000 streams.
    #[cfg(feature = "peers")]
    {
        push(
            "peers",
            Work::Append(System::Sqlite { full: true }, spec(1000, 64, KIB, 1, rr)),
        );
        if s.full {
            push(
                "peers",
                Work::Append(System::Sqlite { full: false }, spec(1000, 64, KIB, 1, rr)),
            );
            push(
                "peers",
                Work::Append(System::Fjall { durable: true }, spec(1000, 64, KIB, 1, rr)),
            );
            push("peers", Work::Append(interval, spec(1000, 64, KIB, 1, rr)));
        }
    }
    if s.full {
        push(
            "peers",
            Work::Append(
                System::FileLog { durable: true },
                spec(1000, 64, KIB, 1, rr),
            ),
        );
    }

    // Database adapters against their raw driver, where a server URL is set.
    #[cfg(feature = "sql")]
    for db in [
        crate::peers::sql::Db::Postgres,
        crate::peers::sql::Db::Mysql,
    ] {
        if db.url().is_none() {
            continue;
        }
        for raw in [false, true] {
            let sys = System::Sql { db, raw };
            push("adapters", Work::Append(sys, spec(100, 16, KIB, 1, rr)));
            push("adapters", Work::Append(sys, spec(100, 16, KIB, 16, rr)));
            push(
                "adapters",
                Work::Replay {
                    system: sys,
                    streams: 1,
                    records: 4096,
                    record_bytes: KIB,
                    readers: 1,
                },
            );
        }
    }

    // Replay and tail.
    let (replay_records, many) = if s.full { (65_536, 256) } else { (16_384, 64) };
    push(
        "replay",
        Work::Replay {
            system: sync,
            streams: 1,
            records: replay_records,
            record_bytes: KIB,
            readers: 1,
        },
    );
    push(
        "replay",
        Work::Replay {
            system: sync,
            streams: 1000,
            records: many,
            record_bytes: KIB,
            readers: 64,
        },
    );
    #[cfg(feature = "peers")]
    if s.full {
        for system in [
            System::Sqlite { full: false },
            System::Fjall { durable: false },
        ] {
            push(
                "replay",
                Work::Replay {
                    system,
                    streams: 1,
                    records: replay_records,
                    record_bytes: KIB,
                    readers: 1,
                },
            );
        }
    }
    push(
        "tail",
        Work::Tail {
            durability: Durability::Buffered,
            n: if s.full { 5000 } else { 1000 },
        },
    );
    if s.full {
        push(
            "tail",
            Work::Tail {
                durability: Durability::Sync,
                n: 2000,
            },
        );
    }

    if let Some(f) = &s.filter {
        // Several alternatives separated by commas: `--filter local-buffered/64KiBx16,raw-write`.
        cases.retain(|c| f.split(',').any(|alt| c.key.contains(alt)));
    }

    let mut ratios = vec![
        RatioDef {
            name: "sync_vs_raw_fdatasync",
            num: "local-sync/1KiBx16/a1/s1".into(),
            den: "raw-fdatasync/1KiBx16".into(),
            bandwidth: false,
            target: Some(0.90),
            what: "Sync, 1 KiB × 16 per append, 1 appender ÷ raw pwrite+fdatasync of 16 KiB",
        },
        RatioDef {
            name: "sync_vs_raw_fdatasync_batch1",
            num: "local-sync/1KiBx1/a1/s1".into(),
            den: "raw-fdatasync/1KiBx1".into(),
            bandwidth: false,
            target: Some(0.90),
            what: "Sync, 1 KiB × 1 per append, 1 appender ÷ raw pwrite+fdatasync of 1 KiB",
        },
        RatioDef {
            name: "group_commit_vs_raw_batch64",
            num: "local-sync/1KiBx1/a64/s1".into(),
            den: "raw-fdatasync/1KiBx64".into(),
            bandwidth: false,
            target: None,
            what: "Sync, 64 appenders × 1 KiB ÷ raw sync of 64 records (ideal batching)",
        },
        RatioDef {
            name: "streams10k_vs_1",
            num: "local-sync/1KiBx1/a64/s10000".into(),
            den: "local-sync/1KiBx1/a64/s1".into(),
            bandwidth: false,
            target: Some(0.80),
            what: "Sync, 64 appenders × 1 KiB: 10,000 streams ÷ 1 stream",
        },
        RatioDef {
            name: "streams1k_vs_1",
            num: "local-sync/1KiBx1/a64/s1000".into(),
            den: "local-sync/1KiBx1/a64/s1".into(),
            bandwidth: false,
            target: None,
            what: "Sync, 64 appenders × 1 KiB: 1,000 streams ÷ 1 stream",
        },
        RatioDef {
            name: "local_vs_sqlite_full",
            num: "local-sync/1KiBx1/a64/s1000".into(),
            den: "sqlite-full/1KiBx1/a64/s1000".into(),
            bandwidth: false,
            target: Some(5.0),
            what:
                "durable appends at 1,000 streams, 64 appenders: Sync ÷ SQLite WAL synchronous=FULL",
        },
        RatioDef {
            name: "buffered64k_vs_raw_write",
            num: "local-buffered/64KiBx16/a1/s1".into(),
            den: "raw-write/1024KiB".into(),
            bandwidth: true,
            target: Some(0.90),
            what: "Buffered 64 KiB × 16 per append ÷ raw sequential 1 MiB writes (bytes/s)",
        },
        RatioDef {
            name: "buffered64k_vs_raw_write_durable",
            num: "local-buffered/64KiBx16/a1/s1".into(),
            den: "raw-write-durable/1024KiB".into(),
            bandwidth: true,
            target: None,
            what: "Buffered 64 KiB × 16 per append ÷ raw sequential 1 MiB writes timed until a final fdatasync returns (the disk's sustained bandwidth)",
        },
    ];
    #[cfg(feature = "sql")]
    for (db, names) in [
        (
            "postgres",
            [
                "postgres_adapter_vs_raw_append",
                "postgres_adapter_vs_raw_append16",
                "postgres_adapter_vs_raw_replay",
            ],
        ),
        (
            "mysql",
            [
                "mysql_adapter_vs_raw_append",
                "mysql_adapter_vs_raw_append16",
                "mysql_adapter_vs_raw_replay",
            ],
        ),
    ] {
        let [a1, a16, rp] = names;
        for (name, suffix, what) in [
            (
                a1,
                "1KiBx1/a16/s100",
                "adapter ÷ raw sqlx: 16 appenders × 1 KiB, 100 streams",
            ),
            (
                a16,
                "1KiBx16/a16/s100",
                "adapter ÷ raw sqlx: 16 appenders × 16 × 1 KiB, 100 streams",
            ),
            (
                rp,
                "replay/s1/r1",
                "adapter ÷ raw sqlx: replay 4,096 × 1 KiB",
            ),
        ] {
            ratios.push(RatioDef {
                name,
                num: format!("{db}-adapter/{suffix}"),
                den: format!("{db}-raw-sqlx/{suffix}"),
                bandwidth: false,
                target: Some(0.80),
                what,
            });
        }
    }
    #[cfg(feature = "peers")]
    ratios.extend(crate::plan_servers::ratios());
    if s.full {
        ratios.extend([
            RatioDef {
                name: "local_vs_fjall_sync",
                num: "local-sync/1KiBx1/a64/s1000".into(),
                den: "fjall-sync/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "durable appends at 1,000 streams: Sync ÷ fjall SyncData per batch",
            },
            RatioDef {
                name: "local_vs_filelog_sync",
                num: "local-sync/1KiBx1/a64/s1000".into(),
                den: "filelog-sync/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "durable appends at 1,000 streams: Sync ÷ file per stream + fdatasync",
            },
            RatioDef {
                name: "interval_vs_sqlite_normal",
                num: "local-interval-10ms/1KiBx1/a64/s1000".into(),
                den: "sqlite-normal/1KiBx1/a64/s1000".into(),
                bandwidth: false,
                target: None,
                what: "non-durable appends at 1,000 streams: Interval(10 ms) ÷ SQLite synchronous=NORMAL",
            },
        ]);
    }
    (cases, ratios)
}

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

/// Runs the plan: every case once per repetition (interleaved), then recovery and idle resources.
pub async fn run(s: &Settings, exe: &Path) -> Result<Results> {
    let (cases, ratios) = build(s);
    std::fs::create_dir_all(&s.work_dir)?;
    let extra = if s.filter.is_some() {
        0
    } else {
        s.recovery_sizes.len() + usize::from(s.idle_streams > 0)
    };
    let total = cases.len() * s.reps + extra;
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
    for rep in 0..s.reps {
        for (i, case) in cases.iter().enumerate() {
            if let Some(why) = case.unavailable() {
                if rep == 0 {
                    bar.println(format!("case {} skipped: {why}", case.key));
                    results.skipped.push((case.key.clone(), why));
                }
                bar.inc(1);
                continue;
            }
            note(&bar, format!("rep {}/{} {}", rep + 1, s.reps, case.key));
            let sample = run_case(case, &s.work_dir, rep, duration).await;
            match sample {
                Ok(sample) => {
                    if let Some((_, v)) = results.cases.get_mut(i) {
                        v.push(sample);
                    }
                }
                Err(e) => {
                    bar.println(format!("case {} failed: {e}", case.key));
                    results.failures.push((case.key.clone(), e.to_string()));
                }
            }
            bar.inc(1);
        }
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
