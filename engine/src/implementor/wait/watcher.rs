//! One watcher per store object: the waiting reads of a database adapter, however many, cost one
//! batched head read per tick.
//!
//! Each waited-on stream has one entry: a `watch` channel its waiters subscribe to, and the mark
//! the last completed head read returned for it (its *baseline*). The watcher task reads the marks
//! of every entry in batches of [`WatchOptions::batch`] streams through the adapter's
//! [`HeadSource`], once per jittered tick, and wakes the entries whose mark moved.
//!
//! # Why no wake-up is missed
//!
//! A waiter arms (subscribes) before the read it guards. If the entry already has a baseline, that
//! baseline came from a head read that completed before the arm, hence before the waiter's read:
//! the waiter has seen at least that state, so any later change makes a later mark differ from the
//! baseline and wakes it. A baseline is replaced only together with a wake of every subscriber, so
//! it stays older than the reads of the waiters it guards.
//!
//! A new entry has no baseline, and the first head read of it may run before or after the
//! waiter's own read, so it cannot tell whether a change fell in between. That read therefore
//! sets the baseline and wakes the entry once: the waiter reads again and re-arms on an entry
//! whose baseline is now safe. New entries are read promptly (after [`WatchOptions::settle`], to
//! batch arrivals), not at the next tick, and entries outlive their waiters for two ticks so a
//! reader that loops over `read(.., wait)` pays this once, not per wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::Wakeup;
use crate::error::Result;
use crate::types::StreamId;

/// A batched read of stream heads, implemented by each adapter: ONE statement or request for
/// many streams (SQL `WHERE stream = ANY($1)` / `IN (…)`, Cassandra `IN` or concurrent
/// single-partition reads, DynamoDB `BatchGetItem`, MongoDB `find({_id: {$in: […]}})`).
#[async_trait]
pub trait HeadSource: Send + Sync + 'static {
    /// For each of `streams` (at most [`WatchOptions::batch`] of them) that exists, a mark that
    /// changes whenever anything a waiting reader could notice changes: an append, a seal, a
    /// delete, a re-creation (new incarnation). Streams absent from the answer do not exist.
    ///
    /// An error wakes the waiters of the whole batch, whose own reads then report it (or find
    /// that the failure has passed).
    async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>>;
}

/// How a [`Watcher`] polls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchOptions {
    /// The pause between two passes over every waited-on stream: the longest a change made by
    /// another process waits to be noticed when no push channel reports it.
    pub tick: Duration,
    /// Each pause is `tick` scaled by a random factor in `1 ± jitter` (clamped to `0..=1`), so
    /// the store objects of many processes do not poll in step.
    pub jitter: f64,
    /// Streams per [`HeadSource::marks`] call (at least 1).
    pub batch: usize,
    /// How long new waiters are gathered before their first head read (one read for all of
    /// them).
    pub settle: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            tick: Duration::from_millis(100),
            jitter: 0.2,
            batch: 1000,
            settle: Duration::from_millis(2),
        }
    }
}

impl WatchOptions {
    /// One pause between passes: `tick` with its jitter applied.
    fn interval(&self, tick: Duration) -> Duration {
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if jitter == 0.0 {
            return tick;
        }
        let factor = rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter);
        tick.mul_f64(factor)
    }
}

/// Counters of a [`Watcher`]'s work since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// [`HeadSource::marks`] calls (statements or requests).
    pub reads: u64,
    /// Streams asked for in those calls.
    pub streams_read: u64,
    /// Streams whose waiters were woken by a head read (moved marks, first reads, errors).
    pub wakes: u64,
    /// Head reads that failed.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    streams_read: AtomicU64,
    wakes: AtomicU64,
    errors: AtomicU64,
}

/// What the last completed head read said about a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No head read has completed since the entry was created.
    Fresh,
    /// The mark read (`None`: the stream did not exist).
    Mark(Option<u64>),
}

struct Entry {
    /// Bumped to wake every subscribed waiter.
    tx: watch::Sender<u64>,
    seen: Seen,
    /// Consecutive passes that found no waiter; the entry is dropped at two.
    idle_passes: u8,
}

impl Entry {
    fn wake(&self) {
        self.tx.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<StreamId, Entry, foldhash::fast::RandomState>,
    /// Entries created since the last read of new entries (some may be gone already).
    fresh: Vec<StreamId>,
    closed: bool,
}

struct Shared {
    source: Arc<dyn HeadSource>,
    options: WatchOptions,
    state: Mutex<State>,
    /// Wakes the task for new entries or for close.
    kick: Notify,
    /// The tick in force ([`Watcher::set_tick`]), in nanoseconds.
    tick_nanos: AtomicU64,
    /// Wakes the task when the tick was shortened.
    retick: Notify,
    closed: AtomicBool,
    counters: Counters,
}

/// The waiters of one store object, checked together (see the module docs).
///
/// Waiting reads arm it before each read (`wait_for_records(wait, || watcher.arm(stream), ..)`);
/// writes made through the same store object call [`Watcher::notify`] so their readers wake at
/// once; a push channel calls `notify` for what it hears and [`Watcher::wake_all`] after it
/// reconnects. Dropping the watcher closes it.
pub struct Watcher {
    shared: Arc<Shared>,
}

impl Watcher {
    /// Starts the watcher task over `source`. Must be called within a Tokio runtime.
    pub fn new(source: Arc<dyn HeadSource>, options: WatchOptions) -> Self {
        let options = WatchOptions {
            batch: options.batch.max(1),
            ..options
        };
        let shared = Arc::new(Shared {
            source,
            options,
            state: Mutex::new(State::default()),
            kick: Notify::new(),
            tick_nanos: AtomicU64::new(nanos(options.tick)),
            retick: Notify::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        tokio::spawn(Arc::clone(&shared).run());
        Watcher { shared }
    }

    /// The options in force (with the tick last set by [`Watcher::set_tick`]).
    pub fn options(&self) -> WatchOptions {
        WatchOptions {
            tick: self.shared.tick(),
            ..self.shared.options
        }
    }

    /// Changes the tick, e.g. long while a push channel is healthy and short while it is down. A
    /// shorter tick takes effect at once, a longer one after the pass already scheduled.
    pub fn set_tick(&self, tick: Duration) {
        let old = self.shared.tick_nanos.swap(nanos(tick), Ordering::Relaxed);
        if nanos(tick) < old {
            self.shared.retick.notify_one();
        }
    }

    /// Registers a waiter on `stream` before the read it guards; the future completes on the next
    /// change after this call: a `notify`, a moved mark seen by the watcher task, the first read
    /// of a newly watched stream, `wake_all`, or `close` (after close it is ready at once).
    pub fn arm(&self, stream: &StreamId) -> Wakeup<'static> {
        let mut rx = {
            let mut state = self.shared.lock();
            if state.closed {
                return Box::pin(std::future::ready(()));
            }
            let State { entries, fresh, .. } = &mut *state;
            let entry = entries.entry(stream.clone()).or_insert_with(|| {
                if fresh.is_empty() {
                    self.shared.kick.notify_one();
                }
                fresh.push(stream.clone());
                Entry {
                    tx: watch::channel(0).0,
                    seen: Seen::Fresh,
                    idle_passes: 0,
                }
            });
            entry.idle_passes = 0;
            entry.tx.subscribe()
        };
        Box::pin(async move {
            // An error means the entry is gone (the watcher was dropped): treat as a change.
            let _ = rx.changed().await;
        })
    }

    /// Wakes every reader waiting on `stream` (a write through this store object, or a push).
    pub fn notify(&self, stream: &StreamId) {
        self.notify_each(std::iter::once(stream));
    }

    /// Wakes every reader waiting on any of `streams`, under one lock.
    pub fn notify_each<'a>(&self, streams: impl IntoIterator<Item = &'a StreamId>) {
        let state = self.shared.lock();
        if state.entries.is_empty() {
            return;
        }
        for stream in streams {
            if let Some(entry) = state.entries.get(stream) {
                entry.wake();
            }
        }
    }

    /// Wakes every waiting reader (a push channel reconnected and may have missed changes).
    pub fn wake_all(&self) {
        let state = self.shared.lock();
        for entry in state.entries.values() {
            entry.wake();
        }
    }

    /// Stops the watcher task and wakes every waiting reader; later arms complete at once.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Streams currently watched (with waiters, or without for less than two ticks).
    pub fn watched(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// What the watcher has done so far.
    pub fn stats(&self) -> WatchStats {
        let c = &self.shared.counters;
        WatchStats {
            reads: c.reads.load(Ordering::Relaxed),
            streams_read: c.streams_read.load(Ordering::Relaxed),
            wakes: c.wakes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("options", &self.shared.options)
            .field("watched", &self.watched())
            .finish_non_exhaustive()
    }
}

/// `d` in nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_nanos.load(Ordering::Relaxed))
    }

    fn interval(&self) -> Duration {
        self.options.interval(self.tick())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        // Dropping the senders wakes every subscribed waiter.
        state.entries.clear();
        state.fresh.clear();
        drop(state);
        self.kick.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The watcher task: first reads of new entries as they come, a pass over all entries per
    /// tick.
    async fn run(self: Arc<Self>) {
        let mut next_pass = Instant::now() + self.interval();
        loop {
            // Biased to the pass: a steady stream of new waiters must not postpone it.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(next_pass) => {
                    let all = self.sweep();
                    let started = Instant::now();
                    self.read(all).await;
                    // The pause is at least as long as the pass took: a server slow to answer
                    // (many waited-on streams, a loaded machine) spends at most about half its
                    // time on this watcher's head reads, and the writes that would wake the
                    // waiters are not starved by polling for them.
                    next_pass = Instant::now() + self.interval().max(started.elapsed());
                }
                () = self.retick.notified() => {
                    next_pass = next_pass.min(Instant::now() + self.interval());
                }
                () = self.kick.notified() => {
                    if self.is_closed() {
                        return;
                    }
                    tokio::time::sleep(self.options.settle).await;
                    let fresh = self.take_fresh();
                    self.read(fresh).await;
                }
            }
            if self.is_closed() {
                return;
            }
        }
    }

    /// The new entries still waiting for their first read.
    fn take_fresh(&self) -> Vec<StreamId> {
        let mut state = self.lock();
        let State { entries, fresh, .. } = &mut *state;
        let mut taken = std::mem::take(fresh);
        taken.retain(|s| entries.get(s).is_some_and(|e| e.seen == Seen::Fresh));
        taken
    }

    /// Drops entries idle for two passes and lists the others.
    fn sweep(&self) -> Vec<StreamId> {
        let mut state = self.lock();
        state.entries.retain(|_, e| {
            if e.tx.receiver_count() > 0 {
                e.idle_passes = 0;
                return true;
            }
            e.idle_passes = e.idle_passes.saturating_add(1);
            e.idle_passes < 2
        });
        state.entries.keys().cloned().collect()
    }

    /// Reads the marks of `streams` in batches and wakes the entries that moved.
    async fn read(&self, streams: Vec<StreamId>) {
        for chunk in streams.chunks(self.options.batch) {
            if self.is_closed() {
                return;
            }
            let answer = self.source.marks(chunk).await;
            let c = &self.counters;
            c.reads.fetch_add(1, Ordering::Relaxed);
            c.streams_read.fetch_add(
                u64::try_from(chunk.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            let mut woken = 0u64;
            let mut state = self.lock();
            match answer {
                Ok(marks) => {
                    let marks: HashMap<&StreamId, u64, foldhash::fast::RandomState> =
                        marks.iter().map(|(s, m)| (s, *m)).collect();
                    for stream in chunk {
                        let Some(entry) = state.entries.get_mut(stream) else {
                            continue;
                        };
                        let now = Seen::Mark(marks.get(stream).copied());
                        // A first read (`Fresh`) always wakes: see the module docs.
                        if entry.seen != now {
                            entry.seen = now;
                            entry.wake();
                            woken += 1;
                        }
                    }
                }
                Err(_) => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    for stream in chunk {
                        if let Some(entry) = state.entries.get(stream) {
                            entry.wake();
                            woken += 1;
                        }
                    }
                }
            }
            drop(state);
            c.wakes.fetch_add(woken, Ordering::Relaxed);
        }
    }
}
