//! The writer thread: the only code that changes the store.
//!
//! Every mutation (append, seal, trim, delete, retention) is queued to one dedicated thread. It
//! takes everything queued (a *group*), decides each operation in order against the committed
//! state plus the group's earlier operations, encodes the frames into one buffer, writes it with
//! one positional write and (in `Sync` mode) one `fdatasync`, then publishes the new state to
//! readers and completes every waiter. Nothing is visible or acknowledged before its group is
//! durable in `Sync` mode. A failed write or sync poisons the store.

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::error::{Error, ErrorKind, Result};
use crate::head::{Decision, StreamHead};
use crate::types::{
    AppendResult, Expect, IdempotencyKey, Incarnation, Record, Retention, StreamId, StreamInfo,
};
use crate::validate::now_ms;

use super::codec::{put_retention, Put};
use super::format::{self, FrameFields, Kind, FLAG_COPY, FLAG_KEY, SEGMENT_HEADER_LEN};
use super::fs::{segment_path, FileHandle};
use super::index::Point;
use super::options::Durability;
use super::reader::{scan, Plan};
use super::spare::{self, activate, Flusher, Preallocator, Spare, TMP_SUFFIX};
use super::state::{SegInfo, State, Stream};
use super::syncer::{Handoff, Syncer};
use super::{checkpoint, Shared, CLEAN};

/// A mutation waiting for the writer.
pub(crate) enum Op {
    Append {
        stream: StreamId,
        records: Vec<Bytes>,
        bytes: u64,
        expect: Expect,
        key: Option<(IdempotencyKey, u64)>,
        tx: oneshot::Sender<Result<AppendResult>>,
    },
    Seal {
        stream: StreamId,
        tx: oneshot::Sender<Result<StreamInfo>>,
    },
    Trim {
        stream: StreamId,
        before: u64,
        tx: oneshot::Sender<Result<u64>>,
    },
    Delete {
        stream: StreamId,
        tx: oneshot::Sender<Result<bool>>,
    },
    SetRetention {
        stream: StreamId,
        retention: Retention,
        tx: oneshot::Sender<Result<()>>,
    },
    /// Apply time-based retention to every stream.
    Sweep,
    /// Write a checkpoint now (tests and tools).
    Checkpoint { tx: oneshot::Sender<Result<()>> },
    /// Flush, checkpoint, mark clean and stop.
    Close { tx: oneshot::Sender<Result<()>> },
}

/// An operation with the queue slot it holds (released when the writer is done with it).
pub(crate) struct Queued {
    pub op: Op,
    pub _permit: Option<OwnedSemaphorePermit>,
}

/// An answer sent once the group is durable (or failed).
enum Reply {
    Append(oneshot::Sender<Result<AppendResult>>, AppendResult),
    Info(oneshot::Sender<Result<StreamInfo>>, StreamInfo),
    Offset(oneshot::Sender<Result<u64>>, u64),
    Existed(oneshot::Sender<Result<bool>>, bool),
    Done(oneshot::Sender<Result<()>>),
}

impl Reply {
    fn send(self, err: Option<&Error>) {
        let e = || {
            Error::new(
                ErrorKind::Poisoned,
                err.map_or(String::new(), Error::to_string),
            )
        };
        match (self, err) {
            (Reply::Append(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Info(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Offset(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Existed(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Done(tx), None) => drop(tx.send(Ok(()))),
            (Reply::Append(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Info(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Offset(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Existed(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Done(tx), Some(_)) => drop(tx.send(Err(e()))),
        }
    }
}

/// The segment being written.
pub(crate) struct Active {
    pub seq: u64,
    pub salt: u32,
    pub file: Arc<dyn FileHandle>,
    /// Where the next frame goes.
    pub pos: u64,
    /// Everything before this was synced.
    pub durable: u64,
    /// The durable position last recorded in a `Commit` frame.
    pub marked: u64,
}

/// A stream as changed by the current group.
struct Work {
    number: u64,
    head: StreamHead,
    cum_first: u64,
    /// No committed `Stream` to merge into: created (or re-created) in this group.
    fresh: bool,
    /// Every data frame written in this group, in order (inline: most streams get one append per
    /// group, and with thousands of streams an allocation per stream per group shows in profiles).
    frames: SmallVec<[Point; 1]>,
    /// Records appended in this group, in order.
    pending: SmallVec<[Record; 1]>,
    /// The first offset moved.
    trimmed: bool,
    /// The incarnation changed (recovery).
    reincarnated: bool,
}

impl Work {
    fn cum_next(&self) -> u64 {
        self.cum_first + self.head.bytes
    }
}

/// Hash maps keyed by stream id on the writer's path: foldhash is several times faster than
/// SipHash on short ids and still seeded per process, so ids chosen by clients cannot be aimed at
/// one bucket.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What one group changes.
#[derive(Default)]
pub(crate) struct Group {
    /// The time of the group: every decision and frame of the group uses it (one clock read).
    now: u64,
    /// Frames for the active segment, starting at `Active::pos`.
    buf: Vec<u8>,
    /// Touched streams; `None` means deleted by this group.
    work: FastMap<StreamId, Option<Work>>,
    /// Committed streams this group deleted (removed before fresh ones are inserted).
    deleted: HashSet<StreamId, foldhash::fast::RandomState>,
    replies: Vec<Reply>,
    /// Ranges written by this group (zeroed if the group fails).
    written: Vec<(u64, u64, u64)>,
    /// Segments finished by a roll in this group, with their final length.
    rolled: Vec<(u64, u64)>,
    /// Segments created by this group.
    created: Vec<(u64, SegInfo)>,
    close: Option<oneshot::Sender<Result<()>>>,
    checkpoint: Vec<oneshot::Sender<Result<()>>>,
}

impl Group {
    /// An empty group at time `now`.
    fn at(now: u64) -> Self {
        Group {
            now,
            ..Group::default()
        }
    }

    /// Empties a finished group, keeping its allocations (its buffer only up to
    /// [`KEPT_BUFFER_BYTES`]) for the next one.
    fn recycle(mut self) -> Self {
        if self.buf.capacity() > KEPT_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.work.clear();
        self.deleted.clear();
        self.replies.clear();
        self.written.clear();
        self.rolled.clear();
        self.created.clear();
        self.close = None;
        self.checkpoint.clear();
        self
    }
}

/// The largest group buffer kept from one group to the next: enough for the groups of small
/// appends that come by the thousand (growing it from empty every group cost reallocations and
/// copies of the whole buffer); a rare large group's buffer is freed.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

/// What became of a group offered to the sync thread.
enum Handed {
    /// Written and handed over; the close and checkpoint requests it held are the caller's.
    Off {
        close: Option<oneshot::Sender<Result<()>>>,
        checkpoints: Vec<oneshot::Sender<Result<()>>>,
    },
    /// Not written: the caller writes, syncs and publishes it.
    Back(Group),
    /// Its write failed.
    Failed(Group, io::Error),
}

/// A stream as a group handed to the sync thread left it (see `Writer::overlay`).
pub(crate) struct Inflight {
    number: u64,
    /// Without the idempotency keys.
    head: StreamHead,
    cum_first: u64,
    /// The head has keys: a later group waits for the publish and reads the committed head.
    keyed: bool,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub dir: PathBuf,
    pub seg_dir: PathBuf,
    pub active: Active,
    pub next_number: u64,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub last_sync: Instant,
    pub last_checkpoint: Instant,
    pub bytes_since_checkpoint: u64,
    pub last_sweep: Instant,
    /// Streams changed by the group being published (reused buffer).
    pub touched: Vec<StreamId>,
    /// Segments are zero-filled to `segment_bytes` before use (`Sync` and `Interval` mode).
    pub fill: bool,
    /// Keeps the next segment ready (started when the active segment is an eighth full).
    pub prealloc: Option<Preallocator>,
    /// The preallocator could not be started: rolls prepare segments themselves.
    pub prealloc_off: bool,
    /// Starts writeback of the active segment early (`Buffered`/`Interval`; started on first use).
    pub flusher: Option<Flusher>,
    /// Position in the active segment up to which writeback was last started.
    pub kicked: u64,
    /// Size of the last checkpoint written (0 before the first).
    pub checkpoint_len: u64,
    /// The last group's allocations, reused by the next (see [`Group::recycle`]).
    pub spare: Group,
    /// `Sync` mode: the thread that syncs and publishes written groups (started on first use).
    pub syncer: Option<Syncer>,
    /// The sync thread could not be started: groups are synced inline.
    pub syncer_off: bool,
    /// Streams changed by groups handed to the sync thread and not yet published, by the number
    /// of the last such group; `None`: deleted. Later groups decide against these, not against
    /// the committed state, which lags behind them.
    pub overlay: FastMap<StreamId, (u64, Option<Inflight>)>,
    /// An operation taken from the queue to see whether another group follows; it starts the
    /// next group.
    pub lookahead: Option<Queued>,
}

/// A checkpoint is due after `checkpoint_bytes` of log, or after this many times the size of the
/// last checkpoint if that is more: with many streams a checkpoint is large (~170 B per stream;
/// 16 MiB and ~140 ms at 100,000 streams), and this keeps its cost a small share of the writing.
const CHECKPOINT_SIZE_FACTOR: u64 = 16;

/// In `Buffered`/`Interval` mode, writeback of the active segment is started in the background
/// every this many bytes, so that the roll's `fdatasync` does not write the whole segment.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// In `Buffered`/`Interval` mode, at most this many finished segments wait for their roll sync
/// (a roll waits for the oldest otherwise): bounds the unsynced log a crash can cut.
const MAX_PENDING_ROLLS: usize = 2;

impl Writer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn key_capacity(&self) -> usize {
        self.shared.opts.idempotency_keys
    }

    /// The thread's main loop: runs until `Close` or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Queued>) {
        let opts = self.shared.opts.clone();
        let mut tick = opts.sweep_interval.min(opts.checkpoint_interval);
        if let Durability::Interval(d) = self.durability {
            tick = tick.min(d);
        }
        let tick = tick.max(Duration::from_millis(1));
        let mut closing: Option<oneshot::Sender<Result<()>>> = None;
        loop {
            let next = match self.lookahead.take() {
                Some(q) => Ok(q),
                None => rx.recv_timeout(tick),
            };
            let first = match next {
                Ok(q) => q,
                Err(RecvTimeoutError::Timeout) => {
                    self.periodic(&rx);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            let mut bytes = 0usize;
            while bytes < opts.max_group_bytes && batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(q) => {
                        if let Op::Append { records, .. } = &q.op {
                            bytes += records.iter().map(Bytes::len).sum::<usize>();
                        }
                        batch.push(q);
                    }
                    Err(_) => break,
                }
            }
            if let Some(tx) = self.process(batch, Some(&rx)) {
                closing = Some(tx);
                break;
            }
            self.after_group();
        }
        // `LocalStore::abandon` (tests): stop like a killed process, without the final checkpoint
        // and clean marker.
        let result = if self
            .shared
            .abandoned
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Ok(())
        } else {
            self.shutdown()
        };
        if let Some(tx) = closing {
            let _ = tx.send(result);
        }
        // Anything still queued after close fails.
        if let Some(q) = self.lookahead.take() {
            fail_op(q.op, &Error::closed());
        }
        while let Ok(q) = rx.try_recv() {
            fail_op(q.op, &Error::closed());
        }
    }

    /// Timer work: interval syncs, checkpoints, retention sweeps.
    fn periodic(&mut self, _rx: &Receiver<Queued>) {
        if self.state().poisoned.is_some() {
            return;
        }
        if let Durability::Interval(d) = self.durability {
            if self.unsynced() && self.last_sync.elapsed() >= d {
                if let Err(e) = self.sync() {
                    self.poison(&e, "sync");
                }
            }
        }
        self.after_group();
    }

    /// Sweeps retention and checkpoints when due (after every group, and on the timer, so both
    /// happen under constant load too).
    fn after_group(&mut self) {
        if self.last_sweep.elapsed() >= self.shared.opts.sweep_interval {
            self.last_sweep = Instant::now();
            let sweep = Queued {
                op: Op::Sweep,
                _permit: None,
            };
            let _ = self.process(vec![sweep], None);
        }
        let opts = &self.shared.opts;
        let due = self.bytes_since_checkpoint > 0
            && (self.last_checkpoint.elapsed() >= opts.checkpoint_interval
                || self.bytes_since_checkpoint
                    >= opts
                        .checkpoint_bytes
                        .max(self.checkpoint_len.saturating_mul(CHECKPOINT_SIZE_FACTOR)));
        // In `Buffered`/`Interval` mode a checkpoint that falls due while a roll sync runs waits
        // until the roll sync is done (a later group or the timer): its own sync would wait for
        // it, stalling every append. `Checkpoint` and `Close` operations never wait for this.
        // Bounded: at twice its size or interval it no longer waits.
        let roll_syncing = self.flusher.as_ref().is_some_and(|f| f.rolls_pending() > 0);
        let overdue = self.last_checkpoint.elapsed() >= opts.checkpoint_interval * 2
            || self.bytes_since_checkpoint
                >= opts
                    .checkpoint_bytes
                    .max(self.checkpoint_len.saturating_mul(CHECKPOINT_SIZE_FACTOR))
                    .saturating_mul(2);
        if due && (!roll_syncing || overdue) && self.state().poisoned.is_none() {
            if let Err(e) = self.checkpoint() {
                self.poison(&e, "checkpoint");
            }
        }
    }

    /// Final flush on close: sync, checkpoint, clean marker.
    fn shutdown(&mut self) -> Result<()> {
        if let Some(p) = self.state().poisoned.clone() {
            return Err(Error::new(ErrorKind::Poisoned, p));
        }
        let r = self.checkpoint().and_then(|()| {
            let f = self.shared.opts.fs.open(&self.dir.join(CLEAN), true)?;
            f.sync_data()?;
            self.shared.opts.fs.sync_dir(&self.dir)
        });
        r.map_err(|e| {
            self.poison(&e, "close");
            Error::new(ErrorKind::Poisoned, "closing the store failed").with_source(e)
        })
    }

    /// Marks the store poisoned.
    fn poison(&self, e: &io::Error, what: &str) {
        poison(&self.shared, e, what);
    }

    /// Runs one group. Returns the close reply if the group held `Close`.
    fn process(
        &mut self,
        batch: Vec<Queued>,
        rx: Option<&Receiver<Queued>>,
    ) -> Option<oneshot::Sender<Result<()>>> {
        let poisoned = self.state().poisoned.clone();
        if let Some(p) = poisoned {
            let e = Error::new(ErrorKind::Poisoned, p);
            let mut close = None;
            for q in batch {
                match q.op {
                    Op::Close { tx } => close = Some(tx),
                    op => fail_op(op, &e),
                }
            }
            return close;
        }
        let mut g = self
            .syncer
            .as_ref()
            .and_then(Syncer::spare)
            .unwrap_or_else(|| std::mem::take(&mut self.spare));
        g.now = now_ms();
        self.catch_up();
        let mut ops = batch.into_iter();
        for q in ops.by_ref() {
            let is_close = matches!(q.op, Op::Close { .. });
            if let Err(e) = self.apply_op(&mut g, q.op) {
                // An I/O failure while rolling a segment: the whole group fails.
                return self.fail_group(g, &e, ops);
            }
            if is_close {
                break;
            }
        }
        let rest: Vec<Queued> = ops.collect();
        let (close, checkpoints) = match self.hand_off(g, rx) {
            Handed::Off { close, checkpoints } => (close, checkpoints),
            Handed::Failed(g, e) => {
                self.drain();
                return self.fail_group(g, &e, rest.into_iter());
            }
            Handed::Back(mut g) => {
                // Finished here: after every group handed to the sync thread, in order.
                self.drain();
                if self
                    .shared
                    .poisoned
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    let e = io::Error::other("the store was poisoned by an earlier sync");
                    return self.fail_group(g, &e, rest.into_iter());
                }
                if let Err(e) = self.write_group(&mut g) {
                    return self.fail_group(g, &e, rest.into_iter());
                }
                self.publish(&mut g);
                let close = g.close.take();
                let checkpoints = std::mem::take(&mut g.checkpoint);
                self.spare = g.recycle();
                (close, checkpoints)
            }
        };
        if close.is_some() || !checkpoints.is_empty() {
            self.drain();
        }
        for tx in checkpoints {
            let r = self.checkpoint().map_err(|e| {
                self.poison(&e, "checkpoint");
                Error::new(ErrorKind::Poisoned, "checkpoint failed").with_source(e)
            });
            let _ = tx.send(r);
        }
        for q in rest {
            fail_op(q.op, &Error::closed());
        }
        close
    }

    /// In `Sync` mode, writes the group and hands it to the sync thread (which syncs, publishes
    /// and answers it) so that the next group can be decided and written meanwhile — when there
    /// is a next group: more operations queued (one is taken from `rx` into `lookahead`), or a
    /// group still being synced. A lone appender's group is synced here, which saves it the
    /// hand-off to the sync thread. Gives the group back, unwritten, when it is finished here:
    /// then too in other modes, for a group that rolled to a new segment (the sync thread only
    /// syncs the active file), without a sync thread, or after a failed write.
    fn hand_off(&mut self, mut g: Group, rx: Option<&Receiver<Queued>>) -> Handed {
        if self.durability != Durability::Sync
            || !g.rolled.is_empty()
            || !g.created.is_empty()
            || self.syncer_off
        {
            return Handed::Back(g);
        }
        let in_flight = self.syncer.as_ref().is_some_and(Syncer::busy);
        if !in_flight && self.lookahead.is_none() {
            self.lookahead = rx.and_then(|rx| rx.try_recv().ok());
        }
        if !in_flight && self.lookahead.is_none() {
            return Handed::Back(g);
        }
        if self.syncer.is_none() {
            match Syncer::start(self.shared.clone()) {
                Ok(s) => self.syncer = Some(s),
                Err(e) => {
                    eprintln!("streamstore: cannot start the sync thread ({e}); syncing inline");
                    self.syncer_off = true;
                    return Handed::Back(g);
                }
            }
        }
        if !g.buf.is_empty() {
            if let Err(e) = self.write_buf(&mut g) {
                return Handed::Failed(g, e);
            }
        }
        let Some(syncer) = self.syncer.as_mut() else {
            return Handed::Back(g);
        };
        // Later groups decide against these heads until this group is published.
        let number = syncer.next_number();
        for (id, w) in &g.work {
            let head = w.as_ref().map(|w| Inflight {
                number: w.number,
                head: w.head.without_keys(),
                cum_first: w.cum_first,
                keyed: !w.head.keys.is_empty(),
            });
            self.overlay.insert(id.clone(), (number, head));
        }
        let (close, checkpoints) = (g.close.take(), std::mem::take(&mut g.checkpoint));
        let h = Handoff {
            group: g,
            file: self.active.file.clone(),
            seq: self.active.seq,
            end: self.active.pos,
        };
        match syncer.send(h) {
            Ok(()) => Handed::Off { close, checkpoints },
            Err(h) => {
                // The thread is gone (it cannot be: it only stops when the handle is dropped);
                // finish inline from now on.
                let mut g = h.group;
                (g.close, g.checkpoint) = (close, checkpoints);
                self.syncer = None;
                self.syncer_off = true;
                self.overlay.clear();
                Handed::Back(g)
            }
        }
    }

    /// Waits until the sync thread has finished every group handed to it; the committed state
    /// is then complete and the overlay empty.
    fn drain(&mut self) {
        if let Some(s) = &self.syncer {
            s.drain();
        }
        self.overlay.clear();
        self.refresh_durable();
    }

    /// Forgets overlay entries of groups the sync thread has published, and takes over the
    /// durable position it reached.
    fn catch_up(&mut self) {
        if let Some(s) = &self.syncer {
            if !self.overlay.is_empty() {
                let done = s.done();
                self.overlay.retain(|_, (n, _)| *n > done);
            }
            self.refresh_durable();
        }
    }

    /// `active.durable` from the position the sync thread last made durable.
    fn refresh_durable(&mut self) {
        let (seq, pos) = *self
            .shared
            .durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seq == self.active.seq && pos > self.active.durable {
            self.active.durable = pos.min(self.active.pos);
        }
    }

    /// Fails every waiter of a group whose write or sync failed, poisons the store, and tries to
    /// erase the group's frames so that a reopen does not resurrect appends reported as failed.
    fn fail_group(
        &mut self,
        g: Group,
        e: &io::Error,
        rest: impl Iterator<Item = Queued>,
    ) -> Option<oneshot::Sender<Result<()>>> {
        self.poison(e, "write");
        for (seq, start, len) in &g.written {
            let file = if *seq == self.active.seq {
                Ok(self.active.file.clone())
            } else {
                // A segment finished by a roll in this group: open it for writing again.
                self.shared
                    .opts
                    .fs
                    .open(&segment_path(&self.seg_dir, *seq), true)
            };
            let erased = file.and_then(|f| {
                let zeros = vec![0u8; usize::try_from(*len).unwrap_or(0)];
                f.write_all_at(&zeros, *start)?;
                f.sync_data()
            });
            if let Err(e2) = erased {
                eprintln!(
                    "streamstore: could not erase a failed group in segment {seq} ({e2}); its \
                     appends may reappear after reopen"
                );
            }
        }
        let err = Error::new(ErrorKind::Poisoned, format!("the log write failed: {e}"));
        for r in g.replies {
            r.send(Some(&err));
        }
        for tx in g.checkpoint {
            let _ = tx.send(Err(Error::new(ErrorKind::Poisoned, err.message())));
        }
        let mut close = g.close;
        for q in rest {
            match q.op {
                Op::Close { tx } => close = Some(tx),
                op => fail_op(op, &err),
            }
        }
        close
    }

    /// The stream as this group sees it (on first touch: as the last group still being synced
    /// left it, else the committed one).
    fn work<'g>(&mut self, g: &'g mut Group, id: &StreamId) -> Option<&'g mut Work> {
        if !g.work.contains_key(id) {
            if self
                .overlay
                .get(id)
                .is_some_and(|(_, w)| w.as_ref().is_some_and(|w| w.keyed))
            {
                // Its key window is only complete in the committed state.
                self.drain();
            }
            let w = match self.overlay.get(id) {
                Some((_, None)) => return None,
                Some((_, Some(w))) => Work {
                    number: w.number,
                    head: w.head.clone(),
                    cum_first: w.cum_first,
                    fresh: false,
                    frames: SmallVec::new(),
                    pending: SmallVec::new(),
                    trimmed: false,
                    reincarnated: false,
                },
                None => {
                    let st = self.state();
                    let s = st.streams.get(id)?;
                    Work {
                        number: s.number,
                        head: s.head.clone(),
                        cum_first: s.cum_first,
                        fresh: false,
                        frames: SmallVec::new(),
                        pending: SmallVec::new(),
                        trimmed: false,
                        reincarnated: false,
                    }
                }
            };
            g.work.insert(id.clone(), Some(w));
        }
        g.work.get_mut(id).and_then(Option::as_mut)
    }

    /// Deletes the stream in this group (logs a `Delete` frame).
    fn delete(&mut self, g: &mut Group, id: &StreamId) -> io::Result<bool> {
        let Some(number) = self.work(g, id).map(|w| w.number) else {
            return Ok(false);
        };
        let now = g.now;
        self.emit(g, Kind::Delete, 0, number, 0, 0, now, 0, &[])?;
        if let Some(Some(w)) = g.work.insert(id.clone(), None) {
            if !w.fresh {
                g.deleted.insert(id.clone());
            }
        }
        Ok(true)
    }

    /// Applies time-based retention to `id` before an operation touches it.
    fn expire(&mut self, g: &mut Group, id: &StreamId, now: u64) -> io::Result<()> {
        let due = self.work(g, id).is_some_and(|w| w.head.is_expired(now));
        if due {
            self.delete(g, id)?;
        }
        Ok(())
    }

    /// Decides and encodes one operation. `Err` only for I/O failures (which fail the group).
    fn apply_op(&mut self, g: &mut Group, op: Op) -> io::Result<()> {
        let now = g.now;
        match op {
            Op::Append {
                stream,
                records,
                bytes,
                expect,
                key,
                tx,
            } => {
                self.expire(g, &stream, now)?;
                let decision = {
                    let head = self.work(g, &stream).map(|w| &w.head);
                    StreamHead::decide(
                        &stream,
                        head,
                        expect,
                        key.as_ref().map(|(k, d)| (k, *d)),
                        now,
                    )
                };
                match decision {
                    Err(e) => drop(tx.send(Err(e))),
                    Ok(Decision::Duplicate(r)) => g.replies.push(Reply::Append(tx, r)),
                    Ok(Decision::Write {
                        timestamp_ms,
                        create,
                        ..
                    }) => {
                        let written = (|| {
                            if create {
                                self.create(g, &stream, now)?;
                            }
                            let r = self.append(g, &stream, records, bytes, timestamp_ms, key)?;
                            self.enforce_max_bytes(g, &stream)?;
                            Ok(r)
                        })();
                        match written {
                            Ok(r) => g.replies.push(Reply::Append(tx, r)),
                            Err(e) => {
                                // The group fails with this error (a roll's write or sync):
                                // this append learns it, rather than `Closed` from a dropped
                                // reply.
                                let msg = format!("the log write failed: {e}");
                                let _ = tx.send(Err(Error::new(ErrorKind::Poisoned, msg)));
                                return Err(e);
                            }
                        }
                    }
                }
            }
            Op::Seal { stream, tx } => {
                self.expire(g, &stream, now)?;
                let Some(w) = self.work(g, &stream) else {
                    let _ = tx.send(Err(Error::not_found(&stream)));
                    return Ok(());
                };
                if w.head.sealed_ms.is_none() {
                    let (number, next) = (w.number, w.head.next_offset);
                    w.head.sealed_ms = Some(now);
                    self.emit(g, Kind::Seal, 0, number, next, 0, now, 0, &[])?;
                }
                let info = self
                    .work(g, &stream)
                    .map(|w| w.head.info(&stream))
                    .ok_or_else(|| io::Error::other("sealed stream vanished"))?;
                g.replies.push(Reply::Info(tx, info));
            }
            Op::Trim { stream, before, tx } => {
                self.expire(g, &stream, now)?;
                let Some(w) = self.work(g, &stream) else {
                    let _ = tx.send(Err(Error::not_found(&stream)));
                    return Ok(());
                };
                let target = w.head.trim_target(before);
                match self.trim(g, &stream, target) {
                    Ok(first) => g.replies.push(Reply::Offset(tx, first)),
                    Err(TrimError::Io(e)) => return Err(e),
                    Err(TrimError::Store(e)) => drop(tx.send(Err(e))),
                }
            }
            Op::Delete { stream, tx } => {
                let existed = self.delete(g, &stream)?;
                g.replies.push(Reply::Existed(tx, existed));
            }
            Op::SetRetention {
                stream,
                retention,
                tx,
            } => {
                let Some(w) = self.work(g, &stream) else {
                    let _ = tx.send(Err(Error::not_found(&stream)));
                    return Ok(());
                };
                w.head.retention = retention;
                let (number, next) = (w.number, w.head.next_offset);
                let mut body = Vec::new();
                put_retention(&mut body, &retention);
                self.emit(g, Kind::Retention, 0, number, next, 0, now, 0, &body)?;
                self.enforce_max_bytes(g, &stream)?;
                g.replies.push(Reply::Done(tx));
            }
            Op::Sweep => {
                let due: Vec<StreamId> = self
                    .state()
                    .streams
                    .iter()
                    .filter(|(_, s)| s.head.is_expired(now))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    self.expire(g, &id, now)?;
                }
            }
            Op::Checkpoint { tx } => g.checkpoint.push(tx),
            Op::Close { tx } => g.close = Some(tx),
        }
        Ok(())
    }

    /// Starts a new incarnation of `id` (logs a `Create` frame).
    fn create(&mut self, g: &mut Group, id: &StreamId, now: u64) -> io::Result<()> {
        let number = self.next_number;
        self.next_number += 1;
        let head = StreamHead::new(now, Retention::default());
        let mut body = Vec::new();
        body.bytes16(id.as_str().as_bytes());
        self.emit(
            g,
            Kind::Create,
            0,
            number,
            0,
            head.incarnation.0,
            now,
            0,
            &body,
        )?;
        let w = Work {
            number,
            head,
            cum_first: 0,
            fresh: true,
            frames: SmallVec::new(),
            pending: SmallVec::new(),
            trimmed: false,
            reincarnated: false,
        };
        g.work.insert(id.clone(), Some(w));
        Ok(())
    }

    /// Gives `id` a new incarnation (recovery, after records readers may have seen were lost).
    pub fn reincarnate(&mut self, ids: &[StreamId]) -> io::Result<()> {
        let mut g = Group::at(now_ms());
        for id in ids {
            let Some((number, next)) = self
                .work(&mut g, id)
                .map(|w| (w.number, w.head.next_offset))
            else {
                continue;
            };
            let inc = Incarnation::random();
            self.emit(
                &mut g,
                Kind::Reincarnate,
                0,
                number,
                next,
                inc.0,
                now_ms(),
                0,
                &[],
            )?;
            if let Some(w) = self.work(&mut g, id) {
                w.head.incarnation = inc;
                w.reincarnated = true;
            }
        }
        self.write_group(&mut g)?;
        self.sync()?;
        self.publish(&mut g);
        Ok(())
    }

    /// Logs the `Open` frame of this session and syncs it, before any operation is accepted.
    pub fn open_session(&mut self) -> io::Result<()> {
        let mut g = Group::at(now_ms());
        let code = self.durability.code();
        self.emit(&mut g, Kind::Open, 0, 0, 0, code, now_ms(), 0, &[])?;
        self.write_group(&mut g)?;
        self.sync()?;
        self.publish(&mut g);
        Ok(())
    }

    /// Logs a data frame and applies the append to the group's view.
    fn append(
        &mut self,
        g: &mut Group,
        id: &StreamId,
        records: Vec<Bytes>,
        bytes: u64,
        timestamp: u64,
        key: Option<(IdempotencyKey, u64)>,
    ) -> io::Result<AppendResult> {
        let (number, first, cum) = match self.work(g, id) {
            Some(w) => (w.number, w.head.next_offset, w.cum_next()),
            None => return Err(io::Error::other("append to a stream that does not exist")),
        };
        let flags = if key.is_some() { FLAG_KEY } else { 0 };
        let count = u32::try_from(records.len()).map_err(io::Error::other)?;
        let key_ref = key.as_ref().map(|(k, d)| (k, *d));
        let fields = FrameFields {
            kind: Kind::Data,
            flags,
            stream: number,
            first,
            aux: cum,
            timestamp,
            count,
        };
        let body_len = format::data_body_len(key_ref.map(|(k, _)| k), &records);
        let (seg, pos) = self.emit_with(g, &fields, body_len, |b| {
            format::encode_data_body(b, key_ref, &records);
        })?;
        let cap = self.key_capacity();
        let w = self
            .work(g, id)
            .ok_or_else(|| io::Error::other("stream vanished"))?;
        w.frames.push(Point {
            offset: first,
            cum,
            seg,
            pos,
        });
        w.pending.extend(
            records
                .into_iter()
                .zip(first..)
                .map(|(payload, offset)| Record {
                    offset,
                    timestamp_ms: timestamp,
                    payload,
                }),
        );
        Ok(w.head
            .apply_append(count.into(), bytes, timestamp, key, cap))
    }

    /// Trims the oldest records while the stream holds more than its `max_bytes` (never the
    /// newest record), as the memory store does.
    fn enforce_max_bytes(&mut self, g: &mut Group, id: &StreamId) -> io::Result<()> {
        let Some(w) = self.work(g, id) else {
            return Ok(());
        };
        let Some(max) = w.head.retention.max_bytes else {
            return Ok(());
        };
        if w.head.bytes <= max || w.head.next_offset - w.head.first_offset <= 1 {
            return Ok(());
        }
        let target = match self.max_bytes_target(g, id, max) {
            Ok(t) => t,
            Err(e) => {
                // The records could not be read back: leave the stream as is; the next append or
                // sweep tries again.
                eprintln!("streamstore: byte retention of {id:?} skipped: {e}");
                return Ok(());
            }
        };
        match self.trim(g, id, target) {
            Ok(_) => Ok(()),
            Err(TrimError::Io(e)) => Err(e),
            Err(TrimError::Store(e)) => {
                eprintln!("streamstore: byte retention of {id:?} skipped: {e}");
                Ok(())
            }
        }
    }

    /// Moves the first offset of `id` to `target` (logs a `Trim` frame); returns the first offset.
    fn trim(&mut self, g: &mut Group, id: &StreamId, target: u64) -> Result<u64, TrimError> {
        let (number, first) = match self.work(g, id) {
            Some(w) => (w.number, w.head.first_offset),
            None => return Err(TrimError::Store(Error::not_found(id))),
        };
        if target <= first {
            return Ok(first);
        }
        let cum = self.cum_at(g, id, target).map_err(TrimError::Store)?;
        let now = g.now;
        self.emit(g, Kind::Trim, 0, number, target, cum, now, 0, &[])
            .map_err(TrimError::Io)?;
        let w = self
            .work(g, id)
            .ok_or_else(|| TrimError::Store(Error::not_found(id)))?;
        let cum_next = w.cum_next();
        w.head.first_offset = target;
        w.cum_first = cum;
        w.head.bytes = cum_next.saturating_sub(cum);
        w.trimmed = true;
        Ok(target)
    }

    /// Cumulative payload bytes of `id` before offset `t` (`first <= t <= next`).
    fn cum_at(&mut self, g: &mut Group, id: &StreamId, t: u64) -> Result<u64> {
        let w = self.work(g, id).ok_or_else(|| Error::not_found(id))?;
        if t >= w.head.next_offset {
            return Ok(w.cum_next());
        }
        if t <= w.head.first_offset {
            return Ok(w.cum_first);
        }
        // Newest records first: this group's, then the committed tail cache.
        let mut cum = w.cum_next();
        let mut covered = w.head.next_offset;
        if walk_back(w.pending.iter(), t, &mut cum, &mut covered) {
            return Ok(cum);
        }
        if w.fresh {
            return Err(Error::new(ErrorKind::Internal, "trim target not in memory"));
        }
        // Older records: the committed state must hold every group before this one.
        self.drain();
        let st = self.state();
        let s = st.streams.get(id).ok_or_else(|| Error::not_found(id))?;
        if s.tail.back().is_some_and(|b| b.offset + 1 == covered)
            && walk_back(s.tail.iter(), t, &mut cum, &mut covered)
        {
            return Ok(cum);
        }
        // Read it back from the log. A target inside a lost range counts from the range's end.
        let t = s.lost_at(t).map_or(t, |(_, b)| b);
        if t >= s.head.next_offset {
            return Ok(s.cum_next());
        }
        let plan = plan_for(&st, s, t, t + 1);
        drop(st);
        let mut found = None;
        scan(&self.shared.files, &plan, |_, _, cum, _| {
            found = Some(cum);
            ControlFlow::Break(())
        })?;
        found.ok_or_else(|| Error::new(ErrorKind::Corruption, "record not found in the log"))
    }

    /// The first offset after enforcing `max` bytes on `id`.
    fn max_bytes_target(&mut self, g: &mut Group, id: &StreamId, max: u64) -> Result<u64> {
        let w = self.work(g, id).ok_or_else(|| Error::not_found(id))?;
        let next = w.head.next_offset;
        let first = w.head.first_offset;
        let need = w.cum_next().saturating_sub(max);
        if w.cum_first >= need {
            return Ok(first);
        }
        let newest = next - 1;
        let mut cum = w.cum_next();
        let mut t = next;
        for r in w.pending.iter().rev() {
            let before = cum - r.payload.len() as u64;
            if before < need {
                return Ok(t.min(newest));
            }
            cum = before;
            t = r.offset;
        }
        if w.fresh {
            return Ok(t.max(first).min(newest));
        }
        self.drain();
        let st = self.state();
        let s = st.streams.get(id).ok_or_else(|| Error::not_found(id))?;
        if s.tail.back().is_some_and(|b| b.offset + 1 == t) {
            for r in s.tail.iter().rev() {
                let before = cum - r.payload.len() as u64;
                if before < need {
                    return Ok(t.min(newest));
                }
                cum = before;
                t = r.offset;
            }
        }
        // Older records: scan from the last point at or below the needed cumulative count.
        let start = s
            .points
            .find_cum(need)
            .and_then(|i| s.points.get(i))
            .map_or(first, |p| p.offset.max(first));
        let start = s.lost_at(start).map_or(start, |(_, b)| b);
        if start >= t {
            return Ok(t.max(first).min(newest));
        }
        let plan = plan_for(&st, s, start, t);
        drop(st);
        let mut found = None;
        scan(&self.shared.files, &plan, |off, _, cum_before, _| {
            if cum_before >= need {
                found = Some(off);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found.unwrap_or(t).max(first).min(newest))
    }

    /// Encodes one frame into the group, rolling to a new segment first if it does not fit.
    /// Returns the frame's segment and position.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the frame header fields one to one"
    )]
    fn emit(
        &mut self,
        g: &mut Group,
        kind: Kind,
        flags: u8,
        stream: u64,
        first: u64,
        aux: u64,
        timestamp: u64,
        count: u32,
        body: &[u8],
    ) -> io::Result<(u64, u64)> {
        let fields = FrameFields {
            kind,
            flags,
            stream,
            first,
            aux,
            timestamp,
            count,
        };
        self.emit_with(g, &fields, body.len(), |b| b.extend_from_slice(body))
    }

    /// [`Writer::emit`] with the body (of `body_len` bytes) written by `body` straight into the
    /// group's buffer.
    fn emit_with(
        &mut self,
        g: &mut Group,
        fields: &FrameFields,
        body_len: usize,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<(u64, u64)> {
        let need = format::align((format::FRAME_HEADER_LEN + body_len) as u64);
        let marker = format::align(format::FRAME_HEADER_LEN as u64);
        if self.active.pos + g.buf.len() as u64 + need + marker > self.segment_bytes {
            self.roll(g)?;
        }
        if g.buf.is_empty() && self.active.durable > self.active.marked {
            // Record how far this segment is durable: recovery uses it to tell a torn tail from
            // damage in the middle.
            let durable = self.active.durable;
            let (seq, salt) = (self.active.seq, self.active.salt);
            format::encode_commit(&mut g.buf, salt, seq, durable, 0, g.now);
            self.active.marked = durable;
        }
        let pos = self.active.pos + g.buf.len() as u64;
        let start = g.buf.len();
        format::encode_frame_with(&mut g.buf, self.active.salt, fields, body);
        debug_assert_eq!(
            g.buf.len() - start,
            usize::try_from(need).unwrap_or(usize::MAX),
            "the frame's size was announced wrongly"
        );
        Ok((self.active.seq, pos))
    }

    /// Writes the group's buffer to the active segment (zero-filling ahead), and syncs it as the
    /// durability mode requires.
    fn write_group(&mut self, g: &mut Group) -> io::Result<()> {
        if !g.buf.is_empty() {
            self.write_buf(g)?;
        }
        let sync = match self.durability {
            Durability::Sync => true,
            Durability::Interval(d) => self.last_sync.elapsed() >= d,
            Durability::Buffered => false,
        };
        if sync && self.unsynced() {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes the group's buffer at the active position. In `Sync`/`Interval` mode the segment was
    /// zero-filled and synced before it became active, so nothing else is written here.
    fn write_buf(&mut self, g: &mut Group) -> io::Result<()> {
        let len = g.buf.len() as u64;
        let end = self.active.pos + len;
        g.written.push((self.active.seq, self.active.pos, len));
        if !self.fill {
            // A not zero-filled segment (`Buffered`) still ends in zeros after its last frame, so
            // that recovery can tell a file cut at a frame boundary from a complete one.
            g.buf.extend_from_slice(&[0u8; TAIL_PAD_BYTES]);
        }
        self.active.file.write_all_at(&g.buf, self.active.pos)?;
        self.active.pos = end;
        self.bytes_since_checkpoint += len;
        g.buf.clear();
        self.start_writeback();
        let ahead = self.fill || self.durability != Durability::Sync;
        if ahead && !self.prealloc_off && end >= self.segment_bytes / 8 {
            self.want_spare();
        }
        Ok(())
    }

    /// In `Buffered`/`Interval` mode, asks the flusher to start writeback of the active segment
    /// once enough was written since the last time (starting it on first use).
    fn start_writeback(&mut self) {
        if self.durability == Durability::Sync || self.active.pos < self.kicked + WRITEBACK_BYTES {
            return;
        }
        if self.flusher.is_none() {
            match Flusher::start() {
                Ok(f) => self.flusher = Some(f),
                Err(e) => {
                    eprintln!("streamstore: cannot start the writeback thread ({e})");
                    self.kicked = u64::MAX / 2;
                    return;
                }
            }
        }
        if let Some(f) = &self.flusher {
            f.kick(self.active.file.clone());
        }
        self.kicked = self.active.pos;
    }

    /// Asks the preallocator for the next segment's file, or in `Buffered`/`Interval` mode for
    /// the next segment itself (starting it on first use).
    fn want_spare(&mut self) {
        let activate = self.durability != Durability::Sync;
        if self.prealloc.is_none() {
            let len = if self.fill {
                self.segment_bytes
            } else {
                SEGMENT_HEADER_LEN + TAIL_PAD
            };
            match Preallocator::start(self.shared.opts.fs.clone(), &self.seg_dir, len, activate) {
                Ok(p) => self.prealloc = Some(p),
                Err(e) => {
                    // Not fatal: rolls prepare the next segment synchronously.
                    eprintln!("streamstore: cannot start the segment preallocator ({e})");
                    self.prealloc_off = true;
                    return;
                }
            }
        }
        if let Some(p) = &mut self.prealloc {
            p.request(self.active.seq + 1);
        }
    }

    /// The next active segment: the preallocator's spare if one is ready (in `Sync` mode never
    /// waiting for it), otherwise one prepared here. In `Buffered`/`Interval` mode a segment the
    /// preallocator is activating is waited for: it must not be created twice.
    fn next_segment(&mut self, seq: u64) -> io::Result<Active> {
        let fs = self.shared.opts.fs.clone();
        let wait = self.durability != Durability::Sync;
        match self.prealloc.as_mut().and_then(|p| p.take(wait)) {
            Some(Spare::Segment(a)) if a.seq == seq => return Ok(a),
            Some(Spare::Segment(a)) => {
                return Err(io::Error::other(format!(
                    "the preallocator activated segment {} for the roll to {seq}",
                    a.seq
                )))
            }
            Some(Spare::File(file, path)) if self.fill => {
                return activate(fs.as_ref(), &self.seg_dir, seq, file.as_ref(), &path);
            }
            Some(Spare::File(..)) | None => {}
        }
        create_segment(&self.shared, &self.seg_dir, seq, self.fill)
    }

    /// `fdatasync` of the active segment, after waiting for the roll syncs of finished segments.
    fn sync(&mut self) -> io::Result<()> {
        // Groups handed to the sync thread come first (their publish order, and `durable`).
        self.drain();
        {
            // Everything before the active segment first: segments finished by a roll in
            // `Buffered`/`Interval` mode are synced in the background, and the durable position
            // published below means "everything before this is on disk".
            if let Some(f) = &self.flusher {
                f.wait_rolls();
            }
            // Wait for a background writeback sync in progress; a failure it saw (and the kernel
            // may report only once) is this sync's failure.
            let failed = self.flusher.as_ref().map(Flusher::lock);
            if let Some(e) = failed.as_ref().and_then(|f| (**f).clone()) {
                return Err(io::Error::other(format!("background sync: {e}")));
            }
            self.active.file.sync_data()?;
        }
        self.active.durable = self.active.pos;
        self.last_sync = Instant::now();
        let shared = &self.shared;
        // In `Sync` mode publishing (after this sync) wakes readers; otherwise readers waiting
        // for durable records were woken by a publish before their records were synced.
        if self.durability == Durability::Sync {
            *shared
                .durable
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = (self.active.seq, self.active.pos);
        } else {
            publish_durable(shared, (self.active.seq, self.active.pos));
        }
        Ok(())
    }

    /// Finishes the active segment and starts the next one.
    ///
    /// In `Sync` mode the finished segment is synced here, before the next one starts. In
    /// `Buffered`/`Interval` mode its `fdatasync` is handed to the flusher thread and the next
    /// segment starts at once; the next segment begins with a `Commit` frame whose `aux` is the
    /// finished segment's end, so that recovery can tell a finished segment that lost its last
    /// bytes from a complete one (`recovery.rs`). Anything that claims durability (`sync`, and so
    /// checkpoints and close) waits for the pending roll syncs first.
    fn roll(&mut self, g: &mut Group) -> io::Result<()> {
        // The finished segment's groups must all be synced and published before it is finished.
        self.drain();
        if !g.buf.is_empty() {
            self.write_buf(g)?;
        }
        let end = self.active.pos;
        let background = self.durability != Durability::Sync && self.roll_flusher()?;
        if !background {
            self.sync()?;
        }
        g.rolled.push((self.active.seq, end));
        // The next segment is created (small syncs of its own) before the finished one's sync is
        // queued: a sync issued while the disk writes out most of a segment waits behind it.
        let next = self.next_segment(self.active.seq + 1)?;
        if background {
            if let Some(f) = &self.flusher {
                // Backpressure: at most `MAX_PENDING_ROLLS` finished segments wait for their sync.
                f.wait_rolls_below(MAX_PENDING_ROLLS);
                // Once synced, everything before the new segment is durable: durable reads may
                // see the finished segment without waiting for the next sync.
                let (shared, durable) = (self.shared.clone(), (next.seq, SEGMENT_HEADER_LEN));
                let done = Box::new(move || publish_durable(&shared, durable));
                f.roll(self.active.file.clone(), done);
            }
        }
        g.created.push((
            next.seq,
            SegInfo {
                salt: next.salt,
                readable: next.pos,
                damaged: false,
            },
        ));
        self.active = next;
        self.kicked = 0;
        if background {
            // Only the header of the new segment is durable; `aux` names the end of the finished
            // one (its frames end there). Not a durability claim about the finished segment.
            let (seq, salt) = (self.active.seq, self.active.salt);
            format::encode_commit(&mut g.buf, salt, seq, SEGMENT_HEADER_LEN, end, g.now);
        }
        Ok(())
    }

    /// The flusher, started if needed, for a roll sync in the background. `Ok(false)` if it
    /// cannot be started (the roll then syncs itself); an error if an earlier background sync
    /// failed (the group fails and the store is poisoned, as if this roll's sync had failed).
    fn roll_flusher(&mut self) -> io::Result<bool> {
        if self.flusher.is_none() {
            match Flusher::start() {
                Ok(f) => self.flusher = Some(f),
                Err(e) => {
                    eprintln!("streamstore: cannot start the writeback thread ({e})");
                    return Ok(false);
                }
            }
        }
        if let Some(e) = self.flusher.as_ref().and_then(Flusher::failure) {
            return Err(io::Error::other(format!("background sync: {e}")));
        }
        Ok(true)
    }

    /// Whether something written is not known to be durable: the active segment past its synced
    /// position, or a finished segment whose roll sync is still pending.
    fn unsynced(&self) -> bool {
        self.active.durable < self.active.pos
            || self.flusher.as_ref().is_some_and(|f| f.rolls_pending() > 0)
    }

    /// Makes the group visible: applies it to the shared state, wakes readers, answers waiters.
    fn publish(&mut self, g: &mut Group) {
        let mut touched = std::mem::take(&mut self.touched);
        publish(
            &self.shared,
            g,
            &mut touched,
            (self.active.seq, self.active.pos),
        );
        self.touched = touched;
    }

    /// Syncs the log, writes a checkpoint at the current position and deletes segments no live
    /// record needs any more.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.drain();
        if self.unsynced() {
            self.sync()?;
        }
        let bytes = {
            let st = self.state();
            checkpoint::encode(
                self.active.seq,
                self.active.pos,
                self.next_number,
                self.durability.code(),
                &st.streams,
            )
        };
        checkpoint::write(self.shared.opts.fs.as_ref(), &self.dir, &bytes)?;
        self.checkpoint_len = bytes.len() as u64;
        self.last_checkpoint = Instant::now();
        self.bytes_since_checkpoint = 0;
        self.collect_garbage()?;
        self.compact()
    }

    /// Compaction: rewrites the live records of small streams that keep mostly-dead old segments
    /// alive into the active segment (as `FLAG_COPY` frames and a `Moved` frame), so that the next
    /// checkpoint can delete those segments. Bounded per call.
    fn compact(&mut self) -> io::Result<()> {
        const MAX_STREAM_BYTES: u64 = 4 << 20;
        const MAX_TOTAL_BYTES: u64 = 16 << 20;
        let candidates: Vec<StreamId> = {
            let st = self.state();
            let mut live: HashMap<u64, u64> = HashMap::new();
            let mut pins: HashMap<u64, Vec<&StreamId>> = HashMap::new();
            for (id, s) in &st.streams {
                let pts: Vec<Point> = s.points.iter().copied().collect();
                for (i, p) in pts.iter().enumerate() {
                    let end = pts.get(i + 1).map_or(s.cum_next(), |q| q.cum);
                    *live.entry(p.seg).or_default() += end.saturating_sub(p.cum.max(s.cum_first));
                    if p.seg < self.active.seq {
                        pins.entry(p.seg).or_default().push(id);
                    }
                }
            }
            let mut out: Vec<StreamId> = Vec::new();
            let mut total = 0u64;
            for (seg, ids) in pins {
                if live.get(&seg).copied().unwrap_or(0).saturating_mul(4) >= self.segment_bytes {
                    continue; // still mostly live
                }
                for id in ids {
                    let Some(s) = st.streams.get(id) else {
                        continue;
                    };
                    if s.head.bytes > MAX_STREAM_BYTES || !s.lost.is_empty() || out.contains(id) {
                        continue;
                    }
                    if total + s.head.bytes > MAX_TOTAL_BYTES {
                        break;
                    }
                    total += s.head.bytes;
                    out.push(id.clone());
                }
            }
            out
        };
        for id in candidates {
            self.move_stream(&id)?;
        }
        Ok(())
    }

    /// Copies the live records of `id` into the active segment and points its index there.
    fn move_stream(&mut self, id: &StreamId) -> io::Result<()> {
        let (plan, number, first, next) = {
            let st = self.state();
            let Some(s) = st.streams.get(id) else {
                return Ok(());
            };
            let (first, next) = (s.head.first_offset, s.head.next_offset);
            if first >= next {
                return Ok(());
            }
            (plan_for(&st, s, first, next), s.number, first, next)
        };
        let mut records: Vec<(u64, u64, u64, Bytes)> = Vec::new();
        let read = scan(&self.shared.files, &plan, |off, ts, cum, payload| {
            records.push((off, ts, cum, payload));
            ControlFlow::Continue(())
        });
        if let Err(e) = read {
            eprintln!("streamstore: compaction skipped {id:?}: {e}");
            return Ok(());
        }
        let mut g = Group::at(now_ms());
        let mut points = Vec::new();
        let mut chunk: Vec<Bytes> = Vec::new();
        let mut head: Option<(u64, u64, u64)> = None; // offset, timestamp, cum of the chunk
        let mut chunk_bytes = 0usize;
        let mut flush =
            |w: &mut Self, g: &mut Group, chunk: &mut Vec<Bytes>, head: (u64, u64, u64)| {
                let mut body = Vec::new();
                format::encode_data_body(&mut body, None, chunk);
                let count = u32::try_from(chunk.len()).map_err(io::Error::other)?;
                let (seg, pos) = w.emit(
                    g,
                    Kind::Data,
                    FLAG_COPY,
                    number,
                    head.0,
                    head.2,
                    head.1,
                    count,
                    &body,
                )?;
                points.push(Point {
                    offset: head.0,
                    cum: head.2,
                    seg,
                    pos,
                });
                chunk.clear();
                Ok::<(), io::Error>(())
            };
        for (off, ts, cum, payload) in records {
            // One frame holds records of one timestamp, at most 1000 of them and about 1 MiB.
            if let Some(h) = head {
                if h.1 != ts || chunk.len() >= 1000 || chunk_bytes + payload.len() > 1 << 20 {
                    flush(self, &mut g, &mut chunk, h)?;
                    head = None;
                    chunk_bytes = 0;
                }
            }
            head.get_or_insert((off, ts, cum));
            chunk_bytes += payload.len();
            chunk.push(payload);
        }
        if let Some(h) = head {
            flush(self, &mut g, &mut chunk, h)?;
        }
        self.emit(
            &mut g,
            Kind::Moved,
            0,
            number,
            first,
            next,
            now_ms(),
            0,
            &[],
        )?;
        self.write_group(&mut g)?;
        if self.active.durable < self.active.pos {
            self.sync()?;
        }
        self.publish(&mut g);
        let mut st = self.state();
        if let Some(s) = st.streams.get_mut(id) {
            let mut index = super::index::Points::default();
            for p in points {
                index.note_frame(p, true, None);
            }
            s.points = index;
        }
        Ok(())
    }

    /// Deletes segments before the checkpointed position that no live stream's index names.
    fn collect_garbage(&mut self) -> io::Result<()> {
        let dead: Vec<u64> = {
            let mut st = self.state();
            let live: HashSet<u64> = st
                .streams
                .values()
                .flat_map(|s| s.points.iter().map(|p| p.seg))
                .collect();
            let dead: Vec<u64> = st
                .segments
                .keys()
                .copied()
                .filter(|seq| *seq < self.active.seq && !live.contains(seq))
                .collect();
            for seq in &dead {
                st.segments.remove(seq);
            }
            dead
        };
        if dead.is_empty() {
            return Ok(());
        }
        for seq in &dead {
            self.shared.files.forget(*seq);
            let path = segment_path(&self.seg_dir, *seq);
            if let Err(e) = self.shared.opts.fs.remove(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
            }
        }
        self.shared.opts.fs.sync_dir(&self.seg_dir)
    }
}

/// Moves the durable log position forward to `to` (never back) and wakes readers waiting for
/// durable records (in the modes that publish before they sync).
fn publish_durable(shared: &Shared, to: (u64, u64)) {
    {
        let mut d = shared
            .durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *d >= to {
            return;
        }
        *d = to;
    }
    if shared
        .durable_waiters
        .load(std::sync::atomic::Ordering::Acquire)
        > 0
    {
        shared.notifiers.notify_all();
    }
}

/// Why a trim failed.
enum TrimError {
    /// Writing the log failed: the group fails.
    Io(io::Error),
    /// The trim itself cannot be done (missing stream, unreadable records).
    Store(Error),
}

/// Zeros written after the last frame of a segment that is not zero-filled in advance.
const TAIL_PAD_BYTES: usize = 8;
const TAIL_PAD: u64 = TAIL_PAD_BYTES as u64;

/// Creates segment `seq` synchronously: prepared under `<seq>.seg.tmp` (zero-filled to
/// `segment_bytes` if `fill`, otherwise just past the header), then activated (header synced,
/// renamed, directory synced).
pub(crate) fn create_segment(
    shared: &Shared,
    seg_dir: &std::path::Path,
    seq: u64,
    fill: bool,
) -> io::Result<Active> {
    let fs = shared.opts.fs.as_ref();
    let tmp = seg_dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    let len = if fill {
        shared.segment_bytes
    } else {
        SEGMENT_HEADER_LEN + TAIL_PAD
    };
    let file = spare::prepare(fs, &tmp, len)?;
    activate(fs, seg_dir, seq, file.as_ref(), &tmp)
}

/// Walks `records` (in offset order, ending at `covered`) from the newest back, taking each
/// payload off `cum` (the cumulative bytes at `covered`), until `t` is reached. Returns whether
/// `cum` is now the cumulative byte count at offset `t`.
fn walk_back<'a>(
    records: impl DoubleEndedIterator<Item = &'a Record>,
    t: u64,
    cum: &mut u64,
    covered: &mut u64,
) -> bool {
    for r in records.rev() {
        if r.offset < t {
            return true;
        }
        *cum -= r.payload.len() as u64;
        *covered = r.offset;
    }
    *covered == t
}

/// A read plan for stream `s` covering offsets `from..until` (bounded by what is committed).
pub(crate) fn plan_for(st: &State, s: &Stream, from: u64, until: u64) -> Plan {
    let end = until
        .min(s.head.next_offset)
        .min(s.lost_after(from).unwrap_or(u64::MAX));
    let start = s.points.find(from).unwrap_or(0);
    let mut points = Vec::new();
    for p in s.points.window(start, usize::MAX) {
        let past = p.offset >= end;
        points.push(p);
        if past {
            break;
        }
    }
    let segs = points
        .iter()
        .filter_map(|p| st.segments.get(&p.seg).map(|i| (p.seg, *i)))
        .collect();
    Plan {
        number: s.number,
        points,
        segs,
        from,
        end,
        synced_end: None,
        newest_seg: st.segments.keys().next_back().copied().unwrap_or(0),
    }
}

/// Fails an operation that was never run.
pub(crate) fn fail_op(op: Op, e: &Error) {
    let err = || Error::new(e.kind(), e.message());
    match op {
        Op::Append { tx, .. } => drop(tx.send(Err(err()))),
        Op::Seal { tx, .. } => drop(tx.send(Err(err()))),
        Op::Trim { tx, .. } => drop(tx.send(Err(err()))),
        Op::Delete { tx, .. } => drop(tx.send(Err(err()))),
        Op::SetRetention { tx, .. } => drop(tx.send(Err(err()))),
        Op::Checkpoint { tx } | Op::Close { tx } => drop(tx.send(Err(err()))),
        Op::Sweep => {}
    }
}

/// Makes the group visible: applies it to the shared state, wakes readers, answers waiters.
/// `active` is the active segment and the write position after the group (readers may read up
/// to it).
fn publish(shared: &Shared, g: &mut Group, touched: &mut Vec<StreamId>, active: (u64, u64)) {
    let opts = &shared.opts;
    let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    // Created first: a group that rolled twice created a segment and finished it too.
    for (seq, info) in &g.created {
        st.segments.insert(*seq, *info);
    }
    for (seq, len) in &g.rolled {
        if let Some(s) = st.segments.get_mut(seq) {
            s.readable = *len;
        }
    }
    if let Some(s) = st.segments.get_mut(&active.0) {
        s.readable = active.1;
    }
    for id in &g.deleted {
        if let Some(s) = st.streams.remove(id) {
            st.tail_total = st.tail_total.saturating_sub(s.tail_bytes);
        }
    }
    for (id, w) in g.work.drain() {
        let Some(w) = w else { continue };
        if w.fresh {
            st.streams
                .insert(id.clone(), Stream::new(w.number, w.head.clone()));
        }
        let Some(s) = st.streams.get_mut(&id) else {
            continue;
        };
        let cached_before = s.tail_bytes;
        s.head = w.head;
        s.cum_first = w.cum_first;
        for p in &w.frames {
            s.points.note_frame(*p, true, None);
        }
        s.push_tail(&w.pending, opts.tail_cache_records, opts.tail_cache_bytes);
        if w.trimmed {
            s.points.trim(s.head.first_offset);
            s.trim_tail();
            s.trim_lost();
        }
        if w.reincarnated {
            s.clear_tail();
        }
        let cached_after = s.tail_bytes;
        st.tail_total = (st.tail_total + cached_after).saturating_sub(cached_before);
        touched.push(id);
    }
    st.evict_tails(opts.tail_cache_total_bytes);
    drop(st);
    // Readers first: a waiting reader's wake-up (a Tokio worker to unpark) then overlaps the
    // appenders' replies instead of queueing behind them. Both see the state published above.
    shared
        .notifiers
        .notify_each(g.deleted.iter().chain(touched.iter()));
    for r in g.replies.drain(..) {
        r.send(None);
    }
    touched.clear();
}

/// Marks the store poisoned (the first failure's message is kept).
pub(crate) fn poison(shared: &Shared, e: &io::Error, what: &str) {
    let msg = format!("a {what} of the log failed ({e}); reopen the store");
    let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    if st.poisoned.is_none() {
        eprintln!("streamstore: {msg}");
        st.poisoned = Some(msg);
        shared
            .poisoned
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The sync thread's end of a group: publishes it if its sync succeeded; otherwise poisons the
/// store, erases the group's bytes (so a reopen does not resurrect appends reported as failed)
/// and fails its waiters. Returns the emptied group for reuse.
pub(crate) fn finish_handoff(
    shared: &Shared,
    mut h: Handoff,
    touched: &mut Vec<StreamId>,
    err: Option<&io::Error>,
) -> Group {
    match err {
        None => publish(shared, &mut h.group, touched, (h.seq, h.end)),
        Some(e) => {
            poison(shared, e, "sync");
            for (seq, start, len) in &h.group.written {
                let zeros = vec![0u8; usize::try_from(*len).unwrap_or(0)];
                let erased = h
                    .file
                    .write_all_at(&zeros, *start)
                    .and_then(|()| h.file.sync_data());
                if let Err(e2) = erased {
                    eprintln!(
                        "streamstore: could not erase a failed group in segment {seq} ({e2}); \
                         its appends may reappear after reopen"
                    );
                }
            }
            let err = Error::new(ErrorKind::Poisoned, format!("the log sync failed: {e}"));
            for r in h.group.replies.drain(..) {
                r.send(Some(&err));
            }
        }
    }
    h.group.recycle()
}
