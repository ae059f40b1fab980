//! Notification channels sharded by a hash of the stream id, so that a store object receives
//! the notifications of (about) the streams it has waiting readers for, not of every stream.
//!
//! # Design
//!
//! A write's notification goes to channel `<prefix>n<shard>`, `shard` = FNV-1a of the stream id
//! modulo the shard count. The count is stored in `<prefix>meta` by the first process that
//! creates the tables, so every process sharing them agrees on it. A store object `LISTEN`s on
//! the shards of the streams its watcher reads, and `UNLISTEN`s shards nobody read for a while.
//!
//! Filtering on one channel instead was rejected: PostgreSQL delivers every notification of a
//! channel to every listener, so a filter in the client saves nothing of what the issue asks
//! (notifications received per node). Shards trade that against `LISTEN`s: a node waiting on
//! `n` streams listens on about `S·(1 − e^(−n/S))` channels and receives the notifications of its
//! own streams plus those of other streams that share a shard with one of them, a fraction
//! `1 − e^(−n/S)` of the rest. With the default `S` = 4,096: 333 waited-on streams of 1,000
//! (three nodes) → about 39 % of the notifications instead of 100 %; the ideal is 33 %.
//!
//! # Why no wake-up is missed
//!
//! The watcher's head read of a stream ([`Subscriptions::ensure`], called by the dialect's
//! `head_marks` before its query) returns only once the stream's shard is `LISTEN`ed on the
//! current connection. A write that committed before the head read is seen by it; one that
//! commits after is notified after its commit (the outbox sends after commits), hence after the
//! `LISTEN`, and is delivered. The watcher's baseline for a stream always comes from such a head
//! read (see `streamstore::wait`), so every change after a waiter's arm is either in a later head
//! read or notified on a channel being listened to. A shard is dropped from the listened set (under
//! the lock, before its `UNLISTEN` is sent) only after no head read asked for it for
//! [`Subscriptions::stale_after`], far longer than the watcher's pass; a head read that asks again
//! waits for a fresh `LISTEN`. While the connection is down nothing waits: the watcher polls at the
//! short tick, and on reconnecting the listener listens on every wanted shard before it wakes every
//! waiter.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use streamstore::StreamId;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Shards of a prefix created by this build (kept in `<prefix>meta` as `notify_shards`).
pub(crate) const DEFAULT_SHARDS: u32 = 4096;
/// The most shards a prefix may have (`<prefix>n65535` stays within PostgreSQL's 63-byte names).
pub(crate) const MAX_SHARDS: u32 = 65_536;
/// How long a head read waits for its shards' `LISTEN` before going on without (the watcher's
/// next pass covers the gap; only a dead connection makes it wait this long).
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// The shard of `stream` among `shards`: FNV-1a over the id's bytes, stable across processes,
/// builds and platforms (every process sharing the tables must compute the same shard).
pub(crate) fn shard_of(stream: &StreamId, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in stream.as_str().as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(h % u64::from(shards.max(1))).unwrap_or(0)
}

/// The channel of `shard` (never derived from stream text: only the prefix and a number).
pub(crate) fn channel(prefix: &str, shard: u32) -> String {
    format!("{prefix}n{shard}")
}

#[derive(Default)]
struct State {
    /// Shards a head read asked for, with when it last did.
    wanted: HashMap<u32, Instant>,
    /// Shards `LISTEN`ed on the current connection.
    listening: HashSet<u32>,
    /// Requests made to the listener (compared with the generation it applied).
    requested: u64,
    /// Whether the listener has a connection that listens on every shard in `listening`.
    connected: bool,
}

/// Which notification channels this store object needs and listens on, shared by the watcher's
/// head reads and the listener task.
pub(crate) struct Subscriptions {
    prefix: String,
    shards: u32,
    /// How long a shard stays listened to after the last head read that asked for it.
    stale_after: Duration,
    state: Mutex<State>,
    /// Wakes the listener: shards to listen on.
    pub(crate) kick: Notify,
    /// The last request generation the listener applied (or gave up on).
    applied: watch::Sender<u64>,
    /// Notifications received on the listening connection (this store's own included).
    pub(crate) received: AtomicU64,
}

impl Subscriptions {
    /// Subscriptions of `prefix` over `shards` channels; a shard unread for `stale_after` is
    /// unlistened.
    pub(crate) fn new(prefix: &str, shards: u32, stale_after: Duration) -> Self {
        Subscriptions {
            prefix: prefix.to_owned(),
            shards: shards.clamp(1, MAX_SHARDS),
            stale_after,
            state: Mutex::new(State::default()),
            kick: Notify::new(),
            applied: watch::channel(0).0,
            received: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel a write to `stream` is announced on.
    pub(crate) fn channel_of(&self, stream: &StreamId) -> String {
        channel(&self.prefix, shard_of(stream, self.shards))
    }

    /// Returns once the shards of `streams` are listened to (or the listener is down, or after
    /// [`LISTEN_WAIT`]); called before every head read of the watcher (see the module docs).
    pub(crate) async fn ensure(&self, streams: &[StreamId]) {
        let generation = {
            let mut state = self.lock();
            let now = Instant::now();
            let mut missing = false;
            for s in streams {
                let shard = shard_of(s, self.shards);
                state.wanted.insert(shard, now);
                missing |= !state.listening.contains(&shard);
            }
            if !missing || !state.connected {
                return;
            }
            state.requested += 1;
            state.requested
        };
        self.kick.notify_one();
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(LISTEN_WAIT, applied.wait_for(|g| *g >= generation)).await;
    }

    /// Shards wanted and not listened to, and the request generation they answer.
    pub(crate) fn to_listen(&self) -> (Vec<String>, Vec<u32>, u64) {
        let state = self.lock();
        let shards: Vec<u32> = state
            .wanted
            .keys()
            .filter(|s| !state.listening.contains(s))
            .copied()
            .collect();
        let names = shards.iter().map(|&s| channel(&self.prefix, s)).collect();
        (names, shards, state.requested)
    }

    /// Records that `shards` are listened to; with `connect`, that the connection is now up,
    /// unless more shards became wanted meanwhile (then returns `false`: listen on those too).
    pub(crate) fn listened(&self, shards: &[u32], generation: u64, connect: bool) -> bool {
        let mut state = self.lock();
        state.listening.extend(shards.iter().copied());
        if connect {
            if state.wanted.keys().any(|s| !state.listening.contains(s)) {
                return false;
            }
            state.connected = true;
            // Requests made before the connection came up returned at once.
            let requested = state.requested;
            drop(state);
            self.applied.send_replace(requested);
            return true;
        }
        drop(state);
        self.applied.send_modify(|g| *g = (*g).max(generation));
        true
    }

    /// The connection is gone: nothing is listened to; release every waiting head read.
    pub(crate) fn disconnected(&self) {
        let mut state = self.lock();
        state.connected = false;
        state.listening.clear();
        let requested = state.requested;
        drop(state);
        self.applied.send_replace(requested);
    }

    /// Removes the shards no head read asked for in [`Self::stale_after`] from the wanted and
    /// listened sets (under the lock, before they are unlistened); returns their channels.
    pub(crate) fn take_stale(&self) -> Vec<String> {
        let mut state = self.lock();
        let cutoff = Instant::now().checked_sub(self.stale_after);
        let Some(cutoff) = cutoff else {
            return Vec::new();
        };
        let stale: Vec<u32> = state
            .wanted
            .iter()
            .filter(|(_, at)| **at < cutoff)
            .map(|(s, _)| *s)
            .collect();
        let mut names = Vec::new();
        for s in stale {
            state.wanted.remove(&s);
            if state.listening.remove(&s) {
                names.push(channel(&self.prefix, s));
            }
        }
        names
    }

    /// How often the listener looks for stale shards.
    pub(crate) fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Channels listened to now.
    pub(crate) fn listening(&self) -> usize {
        self.lock().listening.len()
    }

    /// Notifications received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        StreamId::new(s).unwrap()
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: every process and build must agree.
        assert_eq!(
            shard_of(&id("a"), 4096),
            0xc8c // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c
        );
        assert_eq!(shard_of(&id("a"), 1), 0);
        let mut used = HashSet::new();
        for i in 0..1000 {
            used.insert(shard_of(&id(&format!("stream/{i}")), 64));
        }
        assert_eq!(used.len(), 64, "1,000 ids must cover all 64 shards");
        assert_eq!(channel("app_", 17), "app_n17");
    }

    #[tokio::test]
    async fn ensure_returns_at_once_while_disconnected_and_waits_for_listen_when_connected() {
        let subs = std::sync::Arc::new(Subscriptions::new("p_", 16, Duration::from_secs(60)));
        // Down: nothing waits, but the shard is remembered for the connect.
        subs.ensure(&[id("x")]).await;
        let (names, shards, g) = subs.to_listen();
        assert_eq!(names, vec![channel("p_", shard_of(&id("x"), 16))]);
        assert!(subs.listened(&shards, g, true));
        assert_eq!(subs.listening(), 1);
        // Up and listened: at once.
        subs.ensure(&[id("x")]).await;
        // Up, a new shard: waits until the listener applied it.
        let other = (0..100)
            .map(|i| id(&format!("y{i}")))
            .find(|s| shard_of(s, 16) != shard_of(&id("x"), 16))
            .unwrap();
        let waiting = {
            let subs = std::sync::Arc::clone(&subs);
            let other = other.clone();
            tokio::spawn(async move { subs.ensure(&[other]).await })
        };
        subs.kick.notified().await;
        assert!(!waiting.is_finished());
        let (names, shards, g) = subs.to_listen();
        assert_eq!(names.len(), 1);
        subs.listened(&shards, g, false);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(subs.listening(), 2);
    }

    #[tokio::test]
    async fn stale_shards_leave_both_sets() {
        let subs = Subscriptions::new("p_", 16, Duration::from_millis(200));
        subs.ensure(&[id("x")]).await;
        let (_, shards, g) = subs.to_listen();
        subs.listened(&shards, g, true);
        assert!(subs.take_stale().is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(subs.take_stale().len(), 1);
        assert_eq!(subs.listening(), 0);
        assert!(subs.to_listen().0.is_empty());
    }
}
