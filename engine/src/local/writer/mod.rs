//! The writer thread: the only code that changes the store.
//!
//! Every mutation (append, seal, trim, delete, retention) is queued to one dedicated thread. It
//! takes everything queued (a *group*), decides each operation in order against the committed
//! state plus the group's earlier operations, encodes the frames into one buffer, writes it with
//! one positional write and (in `Sync` mode) one `fdatasync`, then publishes the new state to
//! readers and completes every waiter. Nothing is visible or acknowledged before its group is
//! durable in `Sync` mode. A failed write or sync poisons the store.
//!
//! The rooms (each adds methods to [`Writer`] or holds one of its parts):
//!
//! | File | Holds |
//! |---|---|
//! | `mod.rs` | [`Writer`], its thread loop, running one group ([`Writer::process`]), close |
//! | `ops.rs` | the operations queued to the thread and the replies sent when a group finishes |
//! | `fair.rs` | which queued operations a group takes (per-stream deficit round robin), pacing |
//! | `group.rs` | what one group changes ([`Group`], the per-stream `Work`) |
//! | `decide.rs` | the decision step: expire, create, append, seal, delete, retention |
//! | `trim.rs` | trims and byte retention (reading records back for their byte counts) |
//! | `commit.rs` | the commit path: encode frames, write, sync, roll to the next segment |
//! | `handoff.rs` | handing a written group to the sync thread, and the overlay of groups in flight |
//! | `finish.rs` | the one way a group ends: publish, or poison + erase + fail |
//! | `checkpoint.rs` | checkpoints (in the background when due; on this thread on request, on close), collection of dead segments |
//! | `maintenance.rs` | compaction |
//! | `syncer.rs` | `Sync` mode's sync thread (pipelined group commit) |

mod checkpoint;
mod commit;
mod decide;
mod fair;
mod finish;
mod group;
mod handoff;
mod maintenance;
mod ops;
mod syncer;
mod trim;

use crate::implementor::ErrorShorthand;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::types::StreamId;
use crate::validate::now_ms;

use super::flusher::Flusher;
use super::fs::CLEAN;
use super::options::Durability;
use super::prealloc::Preallocator;
use super::segment::Active;
use super::shared::Shared;
use super::state::State;

use fair::Scheduler;
use group::{FastMap, Group, Inflight};
use handoff::Handed;
pub(crate) use ops::{fail_op, AppendOp, Op, Queued};
use syncer::Syncer;

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    seg_dir: PathBuf,
    active: Active,
    next_number: u64,
    durability: Durability,
    segment_bytes: u64,
    last_sync: Instant,
    last_checkpoint: Instant,
    bytes_since_checkpoint: u64,
    last_sweep: Instant,
    /// Streams changed by the group being published (reused buffer).
    touched: Vec<StreamId>,
    /// Segments are zero-filled to `segment_bytes` before use (`Sync` and `Interval` mode).
    fill: bool,
    /// Keeps the next segment ready (started when the active segment is an eighth full).
    prealloc: Option<Preallocator>,
    /// The preallocator could not be started: rolls prepare segments themselves.
    prealloc_off: bool,
    /// Starts writeback of the active segment early (`Buffered`/`Interval`; started on first use).
    flusher: Option<Flusher>,
    /// Position in the active segment up to which writeback was last started.
    kicked: u64,
    /// Size of the last checkpoint encoded (0 before the first); set where it is encoded, on the
    /// flusher thread for a background checkpoint.
    checkpoint_len: Arc<AtomicU64>,
    /// The segment of the previous checkpoint's position (0: none). Recovery falls back to
    /// `CHECKPOINT.prev` when `CHECKPOINT` is unreadable, and scans from its position, so no
    /// segment from there on is collected (`Writer::take`).
    prev_checkpoint_seg: u64,
    /// The last group's allocations, reused by the next (see [`Group::recycle`]).
    spare: Group,
    /// `Sync` mode: the thread that syncs and publishes written groups (started on first use).
    syncer: Option<Syncer>,
    /// The sync thread could not be started: groups are synced inline.
    syncer_off: bool,
    /// Streams changed by groups handed to the sync thread and not yet published, by the number
    /// of the last such group; `None`: deleted. Later groups decide against these, not against
    /// the committed state, which lags behind them.
    overlay: FastMap<StreamId, (u64, Option<Inflight>)>,
    /// An operation taken from the queue to see whether another group follows; it starts the
    /// next group.
    lookahead: Option<Queued>,
    /// The queue by stream: which operations the next group takes (`fair.rs`).
    sched: Scheduler,
}

impl Writer {
    /// Tells the writer where the checkpoint recovery found starts (its segment): the first
    /// checkpoint of the session keeps the segments from there on.
    pub(crate) fn set_checkpoint_floor(&mut self, seg: u64) {
        self.prev_checkpoint_seg = seg;
    }

    /// The writer of the store in `dir`, continuing the log at `active`; `next_number` is the
    /// number the next created stream gets.
    pub(crate) fn new(
        shared: Arc<Shared>,
        dir: PathBuf,
        seg_dir: PathBuf,
        active: Active,
        next_number: u64,
    ) -> Self {
        let durability = shared.opts.durability;
        let sched = Scheduler::new(shared.opts.stream_group_bytes);
        Writer {
            segment_bytes: shared.segment_bytes,
            // `Sync` and `Interval` write only into segments zero-filled and synced in advance, so
            // a commit's `fdatasync` never allocates blocks or changes the file size.
            fill: !matches!(durability, Durability::Buffered),
            shared,
            dir,
            seg_dir,
            active,
            next_number,
            durability,
            last_sync: Instant::now(),
            last_checkpoint: Instant::now(),
            bytes_since_checkpoint: 0,
            last_sweep: Instant::now(),
            touched: Vec::new(),
            prealloc: None,
            prealloc_off: false,
            flusher: None,
            kicked: 0,
            checkpoint_len: Arc::default(),
            prev_checkpoint_seg: 0,
            spare: Group::default(),
            syncer: None,
            syncer_off: false,
            overlay: FastMap::default(),
            lookahead: None,
            sched,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    fn key_capacity(&self) -> usize {
        self.shared.opts.idempotency_keys
    }

    /// The thread's main loop: runs until `Close` or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Queued>) {
        let opts = self.shared.opts.clone();
        let mut tick = opts.sweep_interval.min(opts.checkpoint_interval);
        if let Durability::Interval(d) = self.durability {
            tick = tick.min(d);
        }
        let tick = tick.max(Duration::from_millis(1));
        let mut closing: Option<oneshot::Sender<Result<()>>> = None;
        loop {
            self.pace();
            if let Some(q) = self.lookahead.take() {
                self.sched.push(q);
            }
            let batch = match self.sched.next_batch(&rx, tick, opts.max_group_bytes) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => {
                    self.periodic(&rx);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
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
        for q in self.sched.drain() {
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
        self.checkpoint_if_due();
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
        self.shared.poison(e, what);
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
}
