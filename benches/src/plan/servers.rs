//! The server peers' part of the plan: Redis Streams, NATS JetStream and the matching node
//! (`streamstore-node`, the engine behind HTTP) under the same 64-appender closed loop of 1 KiB
//! durable appends as the engine's `Sync` cases, over 1, 1,000 and 10,000 streams, and the ratios
//! of the engine to each of them, and of the node to Redis.
//!
//! Fairness, stated once: the engine runs in the harness's process; each server is a separate
//! process reached over loopback TCP by its usual Rust client (`redis`, `async-nats`, `hyper`'s
//! HTTP/1.1 client connections for the node's HTTP API), with 64 connections so the 64 appenders look like 64 clients. The
//! node ÷ Redis ratios compare two servers on equal terms: both pay a round trip and a request
//! parse per append. A server's cases run in every plan; a server that is not installed makes them
//! skipped (`scripts/peers.sh install` installs Redis and NATS; the node is built with
//! `cargo build --release -p streamstore-node`).

use streamstore::Durability;

use super::{Plan, RatioDef, Work, KIB};
use crate::peers::redis::Fsync;
use crate::systems::System;
use crate::workload::Spread;

/// The server peers, in plan order.
pub const SYSTEMS: [System; 4] = [
    System::Redis(Fsync::Always),
    System::Redis(Fsync::EverySec),
    System::Nats,
    System::Node,
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

/// Ratios of two systems: (numerator, denominator, streams, name, what).
const NODE_NAMES: [(System, System, usize, &str, &str); 6] = [
    (
        System::Node,
        System::Redis(Fsync::Always),
        1,
        "node_vs_redis_always_s1",
        "64 HTTP clients × 1 KiB, 1 stream: streamstore-node (Sync) ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Node,
        System::Redis(Fsync::Always),
        1000,
        "node_vs_redis_always_s1000",
        "64 HTTP clients × 1 KiB, 1,000 streams: streamstore-node (Sync) ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Node,
        System::Redis(Fsync::Always),
        10_000,
        "node_vs_redis_always_s10000",
        "64 HTTP clients × 1 KiB, 10,000 streams: streamstore-node (Sync) ÷ Redis XADD, appendfsync always",
    ),
    (
        System::Node,
        System::Local(Durability::Sync),
        1,
        "node_vs_local_s1",
        "64 appenders × 1 KiB, 1 stream: streamstore-node over HTTP ÷ the engine in process (Sync)",
    ),
    (
        System::Node,
        System::Local(Durability::Sync),
        1000,
        "node_vs_local_s1000",
        "64 appenders × 1 KiB, 1,000 streams: streamstore-node over HTTP ÷ the engine in process (Sync)",
    ),
    (
        System::Node,
        System::Local(Durability::Sync),
        10_000,
        "node_vs_local_s10000",
        "64 appenders × 1 KiB, 10,000 streams: streamstore-node over HTTP ÷ the engine in process (Sync)",
    ),
];

/// The engine (`Sync`) ÷ each server peer, and the node ÷ Redis and ÷ the engine in process, at
/// each stream count.
pub fn ratios() -> Vec<RatioDef> {
    let local = System::Local(Durability::Sync);
    let pairs = NAMES
        .iter()
        .map(|&(system, streams, name, what)| (local, system, streams, name, what))
        .chain(NODE_NAMES);
    pairs
        .map(|(num, den, streams, name, what)| RatioDef {
            name,
            num: format!("{}/{}", num.label(), workload(streams)),
            den: format!("{}/{}", den.label(), workload(streams)),
            bandwidth: false,
            target: None,
            what,
        })
        .collect()
}
