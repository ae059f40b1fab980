//! The server peers' part of the plan: Redis Streams and NATS JetStream under the same
//! 64-appender closed loop of 1 KiB durable appends as the engine's `Sync` cases, over 1, 1,000
//! and 10,000 streams, and the ratios of the engine to each of them.
//!
//! Fairness, stated once: the engine runs in the harness's process; each server is a separate
//! process reached over loopback TCP by its usual Rust client (`redis`, `async-nats`), with 64
//! connections so the 64 appenders look like 64 clients. A server's cases run in every plan; a
//! server that is not installed makes them skipped (`scripts/peers.sh install` installs both).

use streamstore::Durability;

use super::{Plan, RatioDef, Work, KIB};
use crate::peers::redis::Fsync;
use crate::systems::System;
use crate::workload::Spread;

/// The server peers, in plan order.
pub const SYSTEMS: [System; 3] = [
    System::Redis(Fsync::Always),
    System::Redis(Fsync::EverySec),
    System::Nats,
];

/// The stream counts every server peer runs at (the engine's `Sync` runs at the same ones).
pub const STREAM_COUNTS: [usize; 3] = [1, 1000, 10_000];

/// The `servers` group: every server peer at every stream count, 64 appenders of 1 KiB.
pub(super) fn push(p: &mut Plan) {
    for system in SYSTEMS {
        for n in STREAM_COUNTS {
            let a = p.spec(n, 64, KIB, 1, Spread::RoundRobin);
            p.push("servers", Work::Append(system, a));
        }
    }
}

/// The key suffix of the measured workload at `streams` streams (see [`super::key`]).
fn workload(streams: usize) -> String {
    format!("1KiBx1/a64/s{streams}")
}

/// Ratio names: (system, streams, name, what).
const NAMES: [(System, usize, &str, &str); 9] = [
    (
        System::Redis(Fsync::Always),
        1,
        "local_vs_redis_always_s1",
        "64 appenders × 1 KiB, 1 stream: Sync ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Redis(Fsync::Always),
        1000,
        "local_vs_redis_always_s1000",
        "64 appenders × 1 KiB, 1,000 streams: Sync ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Redis(Fsync::Always),
        10_000,
        "local_vs_redis_always_s10000",
        "64 appenders × 1 KiB, 10,000 streams: Sync ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Redis(Fsync::EverySec),
        1,
        "local_vs_redis_everysec_s1",
        "64 appenders × 1 KiB, 1 stream: Sync ÷ Redis XADD, appendfsync everysec (not durable when acked)",
    ),
    (
        System::Redis(Fsync::EverySec),
        1000,
        "local_vs_redis_everysec_s1000",
        "64 appenders × 1 KiB, 1,000 streams: Sync ÷ Redis XADD, appendfsync everysec (not durable when acked)",
    ),
    (
        System::Redis(Fsync::EverySec),
        10_000,
        "local_vs_redis_everysec_s10000",
        "64 appenders × 1 KiB, 10,000 streams: Sync ÷ Redis XADD, appendfsync everysec (not durable when acked)",
    ),
    (
        System::Nats,
        1,
        "local_vs_nats_s1",
        "64 appenders × 1 KiB, 1 stream: Sync ÷ NATS JetStream publish, sync_interval always",
    ),
    (
        System::Nats,
        1000,
        "local_vs_nats_s1000",
        "64 appenders × 1 KiB, 1,000 streams: Sync ÷ NATS JetStream publish, sync_interval always",
    ),
    (
        System::Nats,
        10_000,
        "local_vs_nats_s10000",
        "64 appenders × 1 KiB, 10,000 streams: Sync ÷ NATS JetStream publish, sync_interval always",
    ),
];

/// The engine (`Sync`) ÷ each server peer, at each stream count.
pub fn ratios() -> Vec<RatioDef> {
    let local = System::Local(Durability::Sync).label();
    NAMES
        .iter()
        .map(|&(system, streams, name, what)| RatioDef {
            name,
            num: format!("{local}/{}", workload(streams)),
            den: format!("{}/{}", system.label(), workload(streams)),
            bandwidth: false,
            target: None,
            what,
        })
        .collect()
}
