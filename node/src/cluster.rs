//! Membership, failure detection and stream ownership.
//!
//! Membership and failure detection come from gossip: `chitchat` (Scuttlebutt anti-entropy with a
//! phi-accrual failure detector) on UDP at the node's advertised address (the same `host:port` as
//! its HTTP listener: UDP and TCP ports are separate). `--peers` are the seeds; a node started with
//! any one live member as seed joins, and every node learns about it by gossip. A member whose
//! heartbeats stop is declared dead by every node's own failure detector. See node/README.md
//! ("Cluster") for the choice of library.
//!
//! A member that a forward could not connect to is also *suspected* at once for
//! [`SUSPECT_FOR`], so requests do not wait for gossip to notice a crash; after that the gossip view
//! is trusted again.
//!
//! Ownership is rendezvous (highest-random-weight) hashing of the stream id over the live members'
//! advertised addresses: every node that sees the same live set computes the same owner, and when
//! a member leaves only the streams it owned move (each to the member with the next-highest
//! weight). Nodes may briefly disagree while they detect a failure; that is safe because every
//! node serves a forwarded request itself (no forwarding loops) and the shared store checks each
//! append's expectation and idempotency key atomically.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::observe::LIVE_MEMBERS;

/// How long a member stays suspected after a forward to it could not connect.
pub const SUSPECT_FOR: Duration = Duration::from_secs(3);

/// One other member.
#[derive(Debug)]
pub struct Peer {
    /// Its advertised `host:port` (HTTP over TCP, gossip over UDP).
    pub addr: String,
    /// Alive according to gossip.
    alive: AtomicBool,
    /// Suspected until then (a forward could not connect).
    suspect_until: Mutex<Option<Instant>>,
}

impl Peer {
    fn new(addr: String, alive: bool) -> Self {
        Peer {
            addr,
            alive: AtomicBool::new(alive),
            suspect_until: Mutex::new(None),
        }
    }

    /// Alive by gossip and not suspected.
    pub fn is_live(&self) -> bool {
        if !self.alive.load(Ordering::Acquire) {
            return false;
        }
        let suspect = self.suspect_until.lock().map_or(None, |s| *s);
        suspect.is_none_or(|until| Instant::now() >= until)
    }
}

/// This node's view of the cluster.
#[derive(Debug)]
pub struct Cluster {
    me: String,
    /// Every member ever seen (gossip may add members that were not in `--peers`), by address.
    peers: RwLock<BTreeMap<String, Arc<Peer>>>,
}

impl Cluster {
    /// A cluster of `me` plus `peers` (duplicates and `me` itself are dropped). Peers start down
    /// and become live once gossip reports them.
    pub fn new(me: String, peers: &[String]) -> Self {
        let peers = peers
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && *p != me)
            .map(|addr| (addr.clone(), Arc::new(Peer::new(addr, false))))
            .collect();
        Cluster {
            me,
            peers: RwLock::new(peers),
        }
    }

    /// This node's advertised address.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this node has other members (seeds or gossiped ones).
    pub fn is_clustered(&self) -> bool {
        self.peers.read().is_ok_and(|p| !p.is_empty())
    }

    fn snapshot(&self) -> Vec<Arc<Peer>> {
        self.peers
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Live members' addresses, this node first.
    pub fn live(&self) -> Vec<String> {
        std::iter::once(self.me.clone())
            .chain(
                self.snapshot()
                    .into_iter()
                    .filter(|p| p.is_live())
                    .map(|p| p.addr.clone()),
            )
            .collect()
    }

    /// Number of other members known (live or not).
    pub fn known_peers(&self) -> usize {
        self.peers.read().map_or(0, |p| p.len())
    }

    /// The owner of `stream` among the live members: `None` means this node.
    pub fn owner(&self, stream: &str) -> Option<Arc<Peer>> {
        let mut best = (weight(stream, &self.me), None);
        for p in self.snapshot() {
            if !p.is_live() {
                continue;
            }
            let w = weight(stream, &p.addr);
            if w > best.0 {
                best = (w, Some(p));
            }
        }
        best.1
    }

    /// Applies gossip's set of live members (addresses, this node's own included or not).
    pub fn set_alive(&self, alive: &[String]) {
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        let mut changed = false;
        for addr in alive.iter().filter(|a| **a != self.me) {
            if !peers.contains_key(addr) {
                peers.insert(addr.clone(), Arc::new(Peer::new(addr.clone(), false)));
            }
        }
        for (addr, peer) in peers.iter() {
            let now = alive.contains(addr);
            if peer.alive.swap(now, Ordering::AcqRel) != now {
                changed = true;
                let what = if now { "up" } else { "down" };
                eprintln!(
                    "streamstore-node {}: peer {addr} is {what} (gossip)",
                    self.me
                );
            }
        }
        drop(peers);
        if changed {
            self.publish();
        }
    }

    /// Suspects `peer` for [`SUSPECT_FOR`] (a forward to it could not connect).
    pub fn suspect(&self, peer: &Peer) {
        if let Ok(mut until) = peer.suspect_until.lock() {
            *until = Some(Instant::now() + SUSPECT_FOR);
        }
        eprintln!(
            "streamstore-node {}: peer {} suspected (connect failed)",
            self.me, peer.addr
        );
        self.publish();
    }

    fn publish(&self) {
        #[expect(clippy::cast_precision_loss, reason = "a member count is small")]
        let live = self.live().len() as f64;
        metrics::gauge!(LIVE_MEMBERS).set(live);
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
        let peers: Vec<String> = peers.iter().map(|s| (*s).to_owned()).collect();
        let c = Cluster::new(me.into(), &peers);
        c.set_alive(&peers);
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
        after.set_alive(&["a:1".into(), "b:2".into()]);
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
    fn gossip_adds_members_and_suspicion_expires() {
        let c = cluster("a:1", &["b:2"]);
        assert_eq!(c.live(), vec!["a:1", "b:2"]);
        c.set_alive(&["b:2".into(), "d:4".into()]);
        assert_eq!(c.live(), vec!["a:1", "b:2", "d:4"]);
        let b = c.snapshot().into_iter().find(|p| p.addr == "b:2").unwrap();
        c.suspect(&b);
        assert_eq!(c.live(), vec!["a:1", "d:4"]);
        *b.suspect_until.lock().unwrap() = Some(Instant::now());
        assert_eq!(c.live(), vec!["a:1", "b:2", "d:4"]);
        c.set_alive(&[]);
        assert_eq!(c.live(), vec!["a:1"]);
    }
}
