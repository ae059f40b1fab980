//! One watcher per store object: the waiting reads of a database adapter, however many, cost one
//! batched head read per tick.
//!
//! Each waited-on stream has one entry: a `watch` channel its waiters subscribe to, and the mark
//! the last completed head read returned for it (its *baseline*). The watcher task reads the marks
//! of every entry in batches of [`WatchOptions::batch`] streams through the adapter's
//! [`HeadSource`], once per jittered tick, and wakes the entries whose mark moved. Passes run at
//! a fixed rate: each starts a tick after the previous one started. One that took longer is
//! followed by the next at once with a change index (its cost does not grow with the waited-on
//! streams), and after a pause as long as it took without one (a full pass: the server is not
//! kept busy by polling); one pass at a time, missed ticks are skipped, not made up.
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
//!
//! An entry also keeps what the last waiting read found at the stream's end (a memo), so that the
//! next waiting read from there parks without reading while the entry was not woken: see
//! [`wait_on_watcher`](super::wait_on_watcher).
//!
//! # Change index (a source that [tracks changes](HeadSource::tracks_changes))
//!
//! A pass then reads only what changed: [`HeadSource::changes`] since the cursor of the last
//! successful call, intersected with the entries in memory, whatever their number. As a safety
//! net (a change the index cannot report, such as a delete or an expiry, or one stamped too late
//! for the source's margin), every entry is also read once per [`WatchOptions::full_pass`]: a
//! share of them after each tick's change read (a *round*), not all at once, so that no tick
//! waits behind a read of every entry.
//! Baselines stay safe: the source guarantees that every change committed after a call started is
//! reported by the next call or a later one (see [`HeadSource::changes`]), and each call starts after the
//! previous read completed (one task reads, in sequence), so a change committed after a
//! baseline's read is reported by a later call; and a change committed before the first call
//! (no cursor yet) is seen by the pass over every entry that always follows that first call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::memo::{Memo, Ticket};
use super::round::Delta;
use super::{Timings, Wakeup};
use crate::error::Result;
use crate::types::{ReadBatch, StreamId};

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

    /// Whether [`HeadSource::changes`] is implemented (a change index); if not (the default),
    /// every pass reads the marks of every waited-on stream.
    fn tracks_changes(&self) -> bool {
        false
    }

    /// The marks of the streams (waited on or not) changed since `since`, the cursor a previous
    /// call returned (`None`: the first call, which need report nothing but the cursor).
    ///
    /// Contract: every change committed after the call that returned `since` started must be
    /// in the answer, or in the answer of a later call (the source's margin, e.g. for clock
    /// skew or transactions committing later than their change stamp, is its own business; a
    /// source may list a late-committing change only at a later call, which delays its
    /// wake-up but loses none), unless the answer is [`Changes::marks`] `None` (too many to
    /// list: the watcher reads every entry instead).
    /// Reporting more is harmless: an unchanged mark wakes nobody. A stream may be reported with
    /// mark `None` (deleted or expired); streams not reported are taken as unchanged.
    async fn changes(&self, since: Option<u64>) -> Result<Changes> {
        use crate::implementor::ErrorShorthand;
        let _ = since;
        Err(crate::error::Error::unsupported("HeadSource::changes"))
    }
}

/// The answer of [`HeadSource::changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The cursor to pass to the next call (opaque to the watcher; e.g. the database's clock when
    /// the statement started).
    pub cursor: u64,
    /// Each changed stream and its mark (`None`: it no longer exists); `None` if there were too
    /// many changes to list.
    pub marks: Option<Vec<(StreamId, Option<u64>)>>,
}

/// How a [`Watcher`] polls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchOptions {
    /// The time from the start of one pass over the waited-on streams to the start of the next
    /// (fixed rate; a pass that takes longer is followed by the next at once with a change
    /// index, after a pause as long as it took without one; missed ticks are skipped): about the
    /// longest a change made by another process waits to be noticed when no push channel
    /// reports it.
    pub tick: Duration,
    /// Each interval between the starts of two passes is `tick` scaled by a random factor in
    /// `1 ± jitter` (clamped to `0..=1`), so the store objects of many processes do not poll in
    /// step. With a jitter, the first pass comes at a random point of the first tick, so store
    /// objects opened together start out of step; the jitter keeps them there. Small by
    /// default: the longest interval is what a change waits to be noticed when no push reports
    /// it (with ±20 % the waits' p99 was 104–111 ms at a 100 ms tick, docs/benchmarks.md).
    pub jitter: f64,
    /// Streams per [`HeadSource::marks`] call (at least 1).
    pub batch: usize,
    /// How long new waiters are gathered before their first head read (one read for all of
    /// them).
    pub settle: Duration,
    /// With a source that [tracks changes](HeadSource::tracks_changes): the time in which every
    /// waited-on stream is read once, a share of them at each tick after the change read (a
    /// round; a new round starts when the last one ended and this time has passed). Bounds how
    /// long a change the index does not report (a delete, an expiry) waits to be noticed.
    pub full_pass: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            tick: Duration::from_millis(100),
            jitter: 0.05,
            batch: 1000,
            settle: Duration::from_millis(2),
            full_pass: Duration::from_secs(2),
        }
    }
}

impl WatchOptions {
    /// `jitter`, clamped to `0..=1` (0 if not finite).
    fn jitter(&self) -> f64 {
        if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// One interval between the starts of two passes: `tick` with its jitter applied.
    fn interval(&self, tick: Duration) -> Duration {
        let jitter = self.jitter();
        if jitter == 0.0 {
            return tick;
        }
        let factor = rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter);
        tick.mul_f64(factor)
    }

    /// The pause before the first pass: a random part of `tick` (without jitter, all of it:
    /// passes then come exactly `tick` apart from the watcher's start).
    fn first_interval(&self, tick: Duration) -> Duration {
        if self.jitter() == 0.0 {
            return tick;
        }
        tick.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
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
    /// [`HeadSource::changes`] calls (also counted in `reads`).
    pub change_reads: u64,
    /// Passes over every waited-on stream with a source that tracks changes: reads of every
    /// entry at once (after the first change read, or when the changes could not be listed) and
    /// rounds spread over the ticks (counted when they start).
    pub full_passes: u64,
    /// Reads of waiting reads answered by a memo instead of the database ([`Watcher::recall`]).
    pub spared_reads: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    streams_read: AtomicU64,
    wakes: AtomicU64,
    errors: AtomicU64,
    change_reads: AtomicU64,
    full_passes: AtomicU64,
    spared_reads: AtomicU64,
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
    /// Tells this entry from a later one for the same stream ([`Ticket`]).
    serial: u64,
    /// What the last waiting read found at the stream's end (`memo` module docs).
    memo: Option<Memo>,
}

impl Entry {
    /// Moves the version, which wakes every subscribed waiter and voids the memo.
    fn wake(&self) {
        self.tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn version(&self) -> u64 {
        *self.tx.borrow()
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<StreamId, Entry, foldhash::fast::RandomState>,
    /// Entries created since the last read of new entries (some may be gone already).
    fresh: Vec<StreamId>,
    /// The serial of the next entry.
    next_serial: u64,
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
    /// Off unless a benchmark enables them ([`Watcher::timings`]).
    timings: PassTimings,
}

/// What [`Watcher::timings`] lists.
#[derive(Default)]
struct PassTimings {
    /// From the start of one pass to the start of the next.
    interval: Arc<Timings>,
    /// [`HeadSource::changes`] calls (the part of a pass that wakes with a change index).
    change_read: Arc<Timings>,
    /// Whole passes (with a change index: the change read, then the round's share).
    pass: Arc<Timings>,
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
            timings: PassTimings::default(),
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
        self.arm_read(stream).0
    }

    /// [`Watcher::arm`], also returning the ticket of this arm for [`Watcher::remember`] (`None`
    /// once the watcher is closed).
    pub fn arm_read(&self, stream: &StreamId) -> (Wakeup<'static>, Option<Ticket>) {
        let (mut rx, ticket) = {
            let mut state = self.shared.lock();
            if state.closed {
                return (Box::pin(std::future::ready(())), None);
            }
            let State {
                entries,
                fresh,
                next_serial,
                ..
            } = &mut *state;
            let entry = entries.entry(stream.clone()).or_insert_with(|| {
                if fresh.is_empty() {
                    self.shared.kick.notify_one();
                }
                fresh.push(stream.clone());
                *next_serial += 1;
                Entry {
                    tx: watch::channel(0).0,
                    seen: Seen::Fresh,
                    idle_passes: 0,
                    serial: *next_serial,
                    memo: None,
                }
            });
            entry.idle_passes = 0;
            let rx = entry.tx.subscribe();
            let ticket = Ticket {
                serial: entry.serial,
                version: *rx.borrow(),
            };
            (rx, ticket)
        };
        let wakeup = Box::pin(async move {
            // An error means the entry is gone (the watcher was dropped): treat as a change.
            let _ = rx.changed().await;
        });
        (wakeup, Some(ticket))
    }

    /// The batch a waiting read of `stream` from `from` gets without reading, if the memo a
    /// previous waiting read left still holds: no wake-up since that read, younger than a
    /// tick, `from` is the end it found, and the stream not expired (`memo` module docs).
    pub fn recall(&self, stream: &StreamId, from: u64) -> Option<ReadBatch> {
        let max_age = self.shared.tick();
        let state = self.shared.lock();
        let entry = state.entries.get(stream)?;
        let batch = entry
            .memo
            .as_ref()?
            .answer(entry.version(), from, max_age)?;
        drop(state);
        self.shared
            .counters
            .spared_reads
            .fetch_add(1, Ordering::Relaxed);
        Some(batch)
    }

    /// Keeps what a waiting read of `stream`, armed with `ticket`, found (`batch`; the stream's
    /// time-based expiry in ms since the epoch, if any) as the memo later waiting reads from the
    /// same offset take instead of reading; only a read that reached the end of a live stream
    /// is kept, and only while its entry has not been woken since the arm.
    pub fn remember(
        &self,
        stream: &StreamId,
        ticket: Ticket,
        batch: &ReadBatch,
        expires_ms: Option<u64>,
    ) {
        let mut state = self.shared.lock();
        let Some(entry) = state.entries.get_mut(stream) else {
            return;
        };
        if entry.serial != ticket.serial || entry.version() != ticket.version {
            return;
        }
        // A read that ended elsewhere (sealed, behind the end, gone) replaces the memo too: it
        // is newer.
        entry.memo = Memo::of(ticket.version, batch, expires_ms);
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

    /// How long the watcher's steps took, recorded while each is enabled (a diagnostics hook
    /// for benchmarks): `pass_interval` (start to start), `change_read`
    /// ([`HeadSource::changes`] calls) and `pass` (whole passes).
    #[doc(hidden)]
    pub fn timings(&self) -> Vec<(&'static str, Arc<Timings>)> {
        let t = &self.shared.timings;
        vec![
            ("pass_interval", Arc::clone(&t.interval)),
            ("change_read", Arc::clone(&t.change_read)),
            ("pass", Arc::clone(&t.pass)),
        ]
    }

    /// What the watcher has done so far.
    pub fn stats(&self) -> WatchStats {
        let c = &self.shared.counters;
        WatchStats {
            reads: c.reads.load(Ordering::Relaxed),
            streams_read: c.streams_read.load(Ordering::Relaxed),
            wakes: c.wakes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            change_reads: c.change_reads.load(Ordering::Relaxed),
            full_passes: c.full_passes.load(Ordering::Relaxed),
            spared_reads: c.spared_reads.load(Ordering::Relaxed),
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
        // A random phase within the first tick (see `WatchOptions::jitter`).
        let mut next_pass = Instant::now() + self.options.first_interval(self.tick());
        let mut delta = Delta {
            cursor: None,
            round: Vec::new(),
            round_read: 0,
            round_started: Instant::now(),
        };
        let mut last_start: Option<Instant> = None;
        loop {
            // Biased to the pass: a steady stream of new waiters must not postpone it.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(next_pass) => {
                    let started = Instant::now();
                    if let Some(last) = last_start.replace(started) {
                        self.timings.interval.record(started - last);
                    }
                    let indexed = self.source.tracks_changes();
                    if indexed {
                        // New entries the kick branch has not read yet: when passes overrun
                        // their tick and follow each other at once, the biased select never
                        // gets to that branch, and a pass with a change index reads only
                        // changes and its round, so they would wait. (Without a change index
                        // the pass below reads every entry, new ones included.)
                        let fresh = self.take_fresh();
                        if !fresh.is_empty() {
                            delta.join_round(&fresh);
                            self.read(fresh).await;
                        }
                        let all = self.sweep();
                        self.read_changes(all, &mut delta).await;
                    } else {
                        let all = self.sweep();
                        self.read(all).await;
                    }
                    // Fixed rate: the next pass is due one interval after this one *started*,
                    // so the time a pass takes is not added to the pause after it and a change
                    // waits at most about one interval (plus the reads) to be noticed.
                    //
                    // A pass that overran its interval: with a change index it read the changes
                    // (and a bounded round), work that does not grow with the waited-on streams,
                    // so the next follows at once (missed ticks skipped, not made up in a
                    // burst; one task, so at most one pass in flight): a server slow to answer
                    // sees one client reading in sequence. Without one it read every entry's
                    // head, work that grows with the waited-on streams, so the pause after it
                    // is at least as long as it took: the server spends at most about half its
                    // time on this watcher's full passes, and the writes that would wake the
                    // waiters are not starved by polling for them.
                    self.timings.pass.record(started.elapsed());
                    let rest = if indexed { Duration::ZERO } else { started.elapsed() };
                    next_pass = (started + self.interval()).max(Instant::now() + rest);
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
                    delta.join_round(&fresh);
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

    /// A pass with a change index: the changes since the last call, then the share of the
    /// current round over every entry that is due (see [`Delta`]); when the changes cannot be
    /// listed (first call, error, too many), a read of every entry in `all` at once.
    async fn read_changes(&self, all: Vec<StreamId>, delta: &mut Delta) {
        if all.is_empty() {
            // Nobody waits: no reads. The next entries get first reads of their own, and the
            // next pass starts over with a cursor and a full pass.
            delta.cursor = None;
            delta.round.clear();
            return;
        }
        let c = &self.counters;
        c.reads.fetch_add(1, Ordering::Relaxed);
        c.change_reads.fetch_add(1, Ordering::Relaxed);
        // The first call only fetches a cursor: what changed before it is found by the full
        // pass that follows (module docs).
        let mut full = delta.cursor.is_none();
        let asked = Instant::now();
        let answer = self.source.changes(delta.cursor).await;
        self.timings.change_read.record(asked.elapsed());
        match answer {
            Ok(changes) => {
                delta.cursor = Some(changes.cursor);
                match changes.marks {
                    Some(marks) => {
                        let n = u64::try_from(marks.len()).unwrap_or(u64::MAX);
                        c.streams_read.fetch_add(n, Ordering::Relaxed);
                        let mut state = self.lock();
                        let woken: u64 = marks.iter().map(|(s, m)| see(&mut state, s, *m)).sum();
                        drop(state);
                        c.wakes.fetch_add(woken, Ordering::Relaxed);
                    }
                    // Too many to list: the full pass below, which starts after this call did,
                    // sees every change committed before it; later ones are reported from the
                    // new cursor on.
                    None => full = true,
                }
            }
            // The cursor stays, so the next call reports these changes too; meanwhile a full
            // pass (whose own errors wake every waiter) covers them.
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                full = true;
            }
        }
        if full {
            c.full_passes.fetch_add(1, Ordering::Relaxed);
            // A round starts with it, so every entry is read again within `full_pass`; this
            // read covers the round's first share.
            delta.start_round(all.clone());
            let _ = delta.due(self.tick(), self.options.full_pass);
            self.read(all).await;
            return;
        }
        if delta.round_ended(self.options.full_pass) {
            c.full_passes.fetch_add(1, Ordering::Relaxed);
            delta.start_round(all);
        }
        let due = delta.due(self.tick(), self.options.full_pass);
        if !due.is_empty() {
            self.read(due).await;
        }
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
                        woken += see(&mut state, stream, marks.get(stream).copied());
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

/// Records a head read's `mark` for `stream` (if watched); wakes its waiters if the mark moved.
/// Returns the number of entries woken (0 or 1).
fn see(state: &mut State, stream: &StreamId, mark: Option<u64>) -> u64 {
    let Some(entry) = state.entries.get_mut(stream) else {
        return 0;
    };
    let now = Seen::Mark(mark);
    // A first read (`Fresh`) always wakes: see the module docs.
    if entry.seen == now {
        return 0;
    }
    entry.seen = now;
    entry.wake();
    1
}
