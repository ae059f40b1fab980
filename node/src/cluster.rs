//! Membership, failure detection and stream ownership.
//!
//! Members are the static `--peers` plus this node. Each peer's `/healthz` is probed every
//! `--probe-interval`; after `--probe-failures` failures in a row (or at once when forwarding to
//! it cannot connect) it counts as down until a probe succeeds again. This is health-probing of a
//! static member list, not gossip: see node/README.md ("Cluster") for why.
//!
//! Ownership is rendezvous (highest-random-weight) hashing of the stream id over the live members'
//! advertised addresses: every node that sees the same live set computes the same owner, and when
//! a member leaves only the streams it owned move (each to the member with the next-highest
//! weight). Nodes may briefly disagree while they detect a failure; that is safe because every
//! node serves a forwarded request itself (no forwarding loops) and the shared store checks each
//! append's expectation and idempotency key atomically.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::LIVE_MEMBERS;

/// One other member.
#[derive(Debug)]
pub struct Peer {
    /// Its advertised `host:port`.
    pub addr: String,
    live: AtomicBool,
    failures: AtomicU32,
}

/// This node's view of the cluster.
#[derive(Debug)]
pub struct Cluster {
    me: String,
    peers: Vec<Arc<Peer>>,
    failure_threshold: u32,
}

impl Cluster {
    /// A cluster of `me` plus `peers` (duplicates and `me` itself are dropped). Peers start down
    /// and become live with their first successful probe.
    pub fn new(me: String, peers: &[String], failure_threshold: u32) -> Self {
        let mut addrs: Vec<String> = peers
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && *p != me)
            .collect();
        addrs.sort();
        addrs.dedup();
        Cluster {
            me,
            peers: addrs
                .into_iter()
                .map(|addr| {
                    Arc::new(Peer {
                        addr,
                        live: AtomicBool::new(false),
                        failures: AtomicU32::new(0),
                    })
                })
                .collect(),
            failure_threshold: failure_threshold.max(1),
        }
    }

    /// This node's advertised address.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The other members.
    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// Live members' addresses, this node first.
    pub fn live(&self) -> Vec<&str> {
        std::iter::once(self.me.as_str())
            .chain(
                self.peers
                    .iter()
                    .filter(|p| p.live.load(Ordering::Acquire))
                    .map(|p| p.addr.as_str()),
            )
            .collect()
    }

    /// The owner of `stream` among the live members: `None` means this node.
    pub fn owner(&self, stream: &str) -> Option<Arc<Peer>> {
        let mut best = (weight(stream, &self.me), None);
        for p in &self.peers {
            if !p.live.load(Ordering::Acquire) {
                continue;
            }
            let w = weight(stream, &p.addr);
            if w > best.0 {
                best = (w, Some(p));
            }
        }
        best.1.cloned()
    }

    /// Records a successful probe of `peer`.
    pub fn probe_succeeded(&self, peer: &Peer) {
        peer.failures.store(0, Ordering::Release);
        if !peer.live.swap(true, Ordering::AcqRel) {
            eprintln!("streamstore-node {}: peer {} is up", self.me, peer.addr);
            self.publish();
        }
    }

    /// Records a failed probe; the peer is down after `failure_threshold` of them in a row.
    pub fn probe_failed(&self, peer: &Peer) {
        let failures = peer
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.failure_threshold {
            self.mark_down(peer);
        }
    }

    /// Marks `peer` down at once (forwarding to it could not connect).
    pub fn mark_down(&self, peer: &Peer) {
        peer.failures
            .store(self.failure_threshold, Ordering::Release);
        if peer.live.swap(false, Ordering::AcqRel) {
            eprintln!("streamstore-node {}: peer {} is down", self.me, peer.addr);
            self.publish();
        }
    }

    fn publish(&self) {
        #[expect(clippy::cast_precision_loss, reason = "a member count is small")]
        let live = self.live().len() as f64;
        metrics::gauge!(LIVE_MEMBERS).set(live);
    }
}

/// Probes every peer's `/healthz` forever.
pub async fn probe_forever(cluster: Arc<Cluster>, client: reqwest::Client, every: Duration) {
    cluster.publish();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = cluster.peers().iter().map(|peer| {
            let client = client.clone();
            let cluster = Arc::clone(&cluster);
            async move {
                let ok = client
                    .get(format!("http://{}/healthz", peer.addr))
                    .timeout(every.max(Duration::from_millis(200)) * 2)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    cluster.probe_succeeded(peer);
                } else {
                    cluster.probe_failed(peer);
                }
            }
        });
        futures::future::join_all(probes).await;
    }
}

/// The rendezvous weight of `member` for `stream`: a fixed 64-bit hash (FNV-1a, then the
/// SplitMix64 finalizer to spread the bits), identical on every node and every build.
pub fn weight(stream: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(stream.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(me: &str, peers: &[&str]) -> Cluster {
        let c = Cluster::new(
            me.into(),
            &peers.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            2,
        );
        for p in c.peers() {
            c.probe_succeeded(p);
        }
        c
    }

    fn owner_addr(c: &Cluster, s: &str) -> String {
        c.owner(s)
            .map_or_else(|| c.me().to_owned(), |p| p.addr.clone())
    }

    #[test]
    fn every_node_agrees_and_load_is_spread() {
        let addrs = ["a:1", "b:2", "c:3"];
        let views: Vec<Cluster> = addrs.iter().map(|me| cluster(me, &addrs)).collect();
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            let s = format!("job/{i}");
            let owners: Vec<String> = views.iter().map(|c| owner_addr(c, &s)).collect();
            assert!(owners.iter().all(|o| *o == owners[0]), "{s}: {owners:?}");
            *counts.entry(owners[0].clone()).or_insert(0) += 1;
        }
        for a in addrs {
            let n = counts[a];
            assert!((800..=1200).contains(&n), "{a} owns {n} of 3000");
        }
    }

    #[test]
    fn only_the_dead_members_streams_move() {
        let all = cluster("a:1", &["b:2", "c:3"]);
        let after = cluster("a:1", &["b:2", "c:3"]);
        let c = after.peers().iter().find(|p| p.addr == "c:3").unwrap();
        after.mark_down(c);
        for i in 0..1000 {
            let s = format!("s{i}");
            let (before, now) = (owner_addr(&all, &s), owner_addr(&after, &s));
            if before == "c:3" {
                assert_ne!(now, "c:3");
            } else {
                assert_eq!(before, now, "{s} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn a_peer_goes_down_after_the_threshold_and_back_up() {
        let c = cluster("a:1", &["b:2"]);
        let b = Arc::clone(&c.peers()[0]);
        c.probe_failed(&b);
        assert_eq!(c.live().len(), 2);
        c.probe_failed(&b);
        assert_eq!(c.live(), vec!["a:1"]);
        c.probe_succeeded(&b);
        assert_eq!(c.live().len(), 2);
    }
}
