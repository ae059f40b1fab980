//! A case's key, system label and workload description, derived from what it does. Keys are
//! stable: ratios, `--filter` and the docs name cases by them.

use super::{Case, Work, KIB};
use crate::systems::System;
use crate::workload::Spread;

/// `1KiB`, `64KiB`, `100B`.
pub(crate) fn size_label(b: usize) -> String {
    if b >= KIB && b.is_multiple_of(KIB) {
        format!("{}KiB", b / KIB)
    } else {
        format!("{b}B")
    }
}

impl Case {
    /// The case doing `work`, under the report heading `group`.
    pub fn new(group: &'static str, work: Work) -> Case {
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
        Case {
            key,
            group,
            system,
            workload,
            work,
            rounds: 1,
        }
    }

    /// Why the case cannot run on this machine, if it cannot (its system is not installed).
    pub fn unavailable(&self) -> Option<String> {
        match &self.work {
            Work::Append(system, _) | Work::Replay { system, .. } => system.unavailable(),
            Work::RawSync { .. } | Work::SeqWrite { .. } | Work::Tail { .. } => None,
        }
    }
}
