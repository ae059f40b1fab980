//! The engine's durable cases: `Sync` against the disk at equal batch size, the durability modes
//! by record size and concurrency, and many streams (with the server peers at the same stream
//! counts).

use streamstore::Durability;

use super::{Plan, Work, KIB};
use crate::systems::{System, INTERVAL};
use crate::workload::{AppendSpec, Spread};

/// The shortest measured window of the many-streams cases and their one-stream denominator.
/// At 0.7 s (the quick window) one segment roll, checkpoint or burst of another process's I/O
/// is a large part of a repetition; at 1.5 s each window holds one or two rolls and
/// checkpoints at this disk's rate (~80 MB/s of log), so every sample sees about the same share
/// of them.
const STREAMS_WINDOW: std::time::Duration = std::time::Duration::from_millis(1500);

/// Rounds per repetition of the many-streams block (the one-stream denominator and the 1,000-
/// and 10,000-stream cases, run interleaved: `schedule.rs`). With three repetitions (quick) that
/// is nine pairs per ratio, after a warm-up round: three pairs a run let two calm quick runs'
/// `streams10k_vs_1` differ by 0.09 (0.938 / 0.848 / 0.856).
const STREAMS_ROUNDS: usize = 3;

/// Sync against the disk at equal batch size, and the raw sync of 64 records that group commit
/// is measured against.
pub(super) fn sync_vs_disk(p: &mut Plan) {
    let sync = System::Local(Durability::Sync);
    let full = p.settings.full;
    let sync_batches: &[usize] = if full { &[1, 16, 64] } else { &[1, 16] };
    let sync_sizes: &[usize] = if full { &[100, KIB, 64 * KIB] } else { &[KIB] };
    for &rb in sync_sizes {
        for &b in sync_batches {
            if rb == 64 * KIB && b > 16 {
                continue;
            }
            p.push(
                "sync vs disk",
                Work::RawSync {
                    record_bytes: rb,
                    batch: b,
                },
            );
            let a = p.spec(1, 1, rb, b, Spread::RoundRobin);
            p.push("sync vs disk", Work::Append(sync, a));
        }
    }
    // Group commit: 64 appenders of 1 record against one sync of 64 records.
    p.push(
        "sync vs disk",
        Work::RawSync {
            record_bytes: KIB,
            batch: 64,
        },
    );
}

/// Durability modes × record sizes × concurrency (batch 1), with the many-streams cases (and
/// the server peers) right after `Sync`'s.
pub(super) fn modes_and_streams(p: &mut Plan) {
    let sync = System::Local(Durability::Sync);
    let interval = System::Local(Durability::Interval(INTERVAL));
    let buffered = System::Local(Durability::Buffered);
    let rr = Spread::RoundRobin;
    let mode_sizes: &[usize] = if p.settings.full {
        &[100, KIB, 64 * KIB]
    } else {
        &[KIB]
    };
    for sys in [sync, interval, buffered] {
        for &rb in mode_sizes {
            for appenders in [1, 64] {
                if sys == sync && appenders == 1 {
                    continue; // in `sync_vs_disk`
                }
                if sys == sync && rb == KIB && appenders == 64 {
                    continue; // the many-streams block's denominator, below
                }
                let a = p.spec(1, appenders, rb, 1, rr);
                p.push("modes", Work::Append(sys, a));
            }
        }
        if sys == sync {
            // Many streams, durable: one block with their one-stream denominator (`Sync`, 64
            // appenders, 1 KiB), run round by round interleaved (`schedule.rs`), before the
            // `Buffered` cases write GBs whose writeback would slow only the numerator.
            let one = Work::Append(sync, streams_spec(p, 1, rr));
            p.push_rounds("modes", one, STREAMS_ROUNDS);
            for n in [1000, 10_000] {
                let a = streams_spec(p, n, rr);
                p.push_rounds("streams", Work::Append(sync, a), STREAMS_ROUNDS);
                if p.settings.full {
                    let a = streams_spec(p, n, Spread::Skewed);
                    p.push_rounds("streams", Work::Append(sync, a), STREAMS_ROUNDS);
                }
            }
            // The server peers at the same stream counts, also before the `Buffered` cases.
            #[cfg(feature = "peers")]
            super::servers::push(p);
        }
    }
}

/// The cases of `streams10k_vs_1` / `streams1k_vs_1` (64 appenders of 1 KiB over `n` streams)
/// measure at least [`STREAMS_WINDOW`], quick mode too.
fn streams_spec(p: &Plan, n: usize, spread: Spread) -> AppendSpec {
    AppendSpec {
        duration: p.settings.duration.max(STREAMS_WINDOW),
        ..p.spec(n, 64, KIB, 1, spread)
    }
}
