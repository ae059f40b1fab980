//! The benchmark harness of streamstore: the local engine against the disk's limits and against
//! the stores people would pick instead. See `docs/benchmarks.md` for how to run it and the latest
//! numbers.
//!
//! - [`backend::BenchBackend`] is the one interface every system is driven through (the engine via
//!   any `StreamStore`, and each peer).
//! - [`baseline`] holds the raw-disk baselines, [`peers`] the other systems, [`workload`] the
//!   workloads, [`plan`] the quick and full plans, [`report`] the table, plot and ratio lines,
//!   [`vs_raw`] the adapter side of the `*_vs_raw` examples.
//!
//! # Feature flags
//!
//! - `peers` (default): the embedded peers, SQLite (`rusqlite`, bundled) and fjall, and the server
//!   peers Redis Streams (`redis`) and NATS JetStream (`async-nats`), run as child processes when
//!   installed ([`plan::servers`]). Without it the harness still runs the engine, the baselines and
//!   the file-per-stream log.

pub mod backend;
pub mod baseline;
pub mod fairness;
pub mod peers;
pub mod plan;
pub mod procs;
pub mod report;
pub mod stats;
pub mod systems;
pub mod vs_raw;
pub mod workload;
