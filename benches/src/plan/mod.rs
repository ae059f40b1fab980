//! The quick and full plans: which cases run, interleaved repetition by repetition.
//!
//! One file per case group, in plan order: `durable` (sync vs disk, modes, streams, and the
//! server peers of `servers`), `buffered`, `peers` (embedded peers, database adapters),
//! `reads` (replay, tail). `key` names a case from what it does, `ratios` lists the
//! ratios, `run` runs a plan and holds its [`Results`].

mod buffered;
mod durable;
mod key;
mod peers;
mod ratios;
mod reads;
mod run;
mod schedule;
#[cfg(feature = "peers")]
pub mod servers;

use std::path::PathBuf;
use std::time::Duration;

use streamstore::Durability;

pub use self::run::{run, CaseSummary, Results};
pub use self::schedule::{schedule, Step};
use crate::systems::System;
use crate::workload::{AppendSpec, Spread};

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
    /// Times the case runs per repetition (1 for most). Adjacent cases with more than one round
    /// form a *block*, run round by round interleaved, after one unmeasured warm-up round: see
    /// [`schedule`].
    pub rounds: usize,
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

/// A plan being built: its settings and the cases so far, in order.
struct Plan<'a> {
    settings: &'a Settings,
    cases: Vec<Case>,
}

impl Plan<'_> {
    /// An append workload with the plan's warm-up and measured window.
    fn spec(
        &self,
        streams: usize,
        appenders: usize,
        record_bytes: usize,
        batch: usize,
        spread: Spread,
    ) -> AppendSpec {
        AppendSpec {
            streams,
            appenders,
            record_bytes,
            batch,
            spread,
            warmup: self.settings.warmup,
            duration: self.settings.duration,
        }
    }

    fn push(&mut self, group: &'static str, work: Work) {
        self.cases.push(Case::new(group, work));
    }

    /// [`Plan::push`] of a case that runs `rounds` times per repetition (see [`schedule`]).
    fn push_rounds(&mut self, group: &'static str, work: Work, rounds: usize) {
        self.cases.push(Case {
            rounds,
            ..Case::new(group, work)
        });
    }
}

/// Builds the cases and ratios of a plan.
pub fn build(s: &Settings) -> (Vec<Case>, Vec<RatioDef>) {
    let mut p = Plan {
        settings: s,
        cases: Vec::new(),
    };
    durable::sync_vs_disk(&mut p);
    durable::modes_and_streams(&mut p);
    buffered::push(&mut p);
    peers::embedded(&mut p);
    #[cfg(feature = "sql")]
    peers::adapters(&mut p);
    reads::replay(&mut p);
    reads::tail(&mut p);
    let mut cases = p.cases;
    if let Some(f) = &s.filter {
        // Several alternatives separated by commas: `--filter local-buffered/64KiBx16,raw-write`.
        cases.retain(|c| f.split(',').any(|alt| c.key.contains(alt)));
    }
    (cases, ratios::all(s))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn settings(full: bool) -> Settings {
        Settings {
            full,
            reps: 1,
            warmup: Duration::from_millis(1),
            duration: Duration::from_millis(1),
            recovery_sizes: Vec::new(),
            idle_streams: 0,
            work_dir: PathBuf::from("unused"),
            filter: None,
        }
    }

    /// Keys name cases in ratios, filters and the docs: each names one case.
    #[test]
    fn case_keys_and_ratio_names_are_unique() {
        for full in [false, true] {
            let (cases, ratios) = build(&settings(full));
            let mut keys = HashSet::new();
            for c in &cases {
                // Known, kept as it was: the full plan's sync table (batch 64) and the group
                // commit baseline are the same raw case, measured twice; ratios use the first.
                let known = full && c.key == "raw-fdatasync/1KiBx64";
                assert!(
                    keys.insert(&c.key) || known,
                    "{} twice (full: {full})",
                    c.key
                );
            }
            let mut names = HashSet::new();
            for r in &ratios {
                assert!(names.insert(r.name), "{} twice (full: {full})", r.name);
            }
        }
    }

    /// Every ratio of the engine and of the peers built into this binary compares two cases of
    /// the plan (the database adapters' only when their server URL is set).
    #[test]
    fn ratios_name_cases_of_the_plan() {
        for full in [false, true] {
            let (cases, ratios) = build(&settings(full));
            let keys: HashSet<&str> = cases.iter().map(|c| c.key.as_str()).collect();
            for r in &ratios {
                let adapters = r.name.starts_with("postgres_") || r.name.starts_with("mysql_");
                let embedded_peer = r.den.starts_with("sqlite-") || r.den.starts_with("fjall-");
                if adapters || (embedded_peer && cfg!(not(feature = "peers"))) {
                    continue;
                }
                for key in [&r.num, &r.den] {
                    assert!(keys.contains(key.as_str()), "{}: no case {key}", r.name);
                }
            }
        }
    }

    /// `--filter` keeps the cases whose key contains one of its comma-separated parts, in plan
    /// order.
    #[test]
    fn filter_keeps_matching_cases_in_order() {
        let (all, _) = build(&settings(false));
        let mut s = settings(false);
        s.filter = Some("raw-fdatasync/1KiBx64,local-sync/1KiBx1/a64".into());
        let (kept, _) = build(&s);
        let want: Vec<&str> = all
            .iter()
            .map(|c| c.key.as_str())
            .filter(|k| k.contains("raw-fdatasync/1KiBx64") || k.contains("local-sync/1KiBx1/a64"))
            .collect();
        let got: Vec<&str> = kept.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(got, want);
        assert!(got.contains(&"local-sync/1KiBx1/a64/s10000"), "{got:?}");
    }
}
