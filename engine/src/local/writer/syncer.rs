//! `Sync` mode's second thread: pipelined group commit.
//!
//! Without it the writer thread alternates between CPU work (deciding, encoding and writing a
//! group, then publishing it and answering its appenders) and waiting for the group's
//! `fdatasync`, and the disk idles during the CPU work. With it, the writer hands each written
//! group to this thread, which syncs it, then publishes it and answers its appenders, while the
//! writer already decides, encodes and writes the next group. Groups queued here meanwhile share
//! one `fdatasync`.
//!
//! Invariants:
//! - Groups are synced and published in the order they were written; a group is published (made
//!   visible, acknowledged) only after an `fdatasync` that covers it succeeded.
//! - Every group handed here was written entirely to one segment file, the active one: a group
//!   that rolls to a new segment is finished by the writer itself after [`Syncer::drain`].
//! - A failed sync poisons the store; the group, and every group handed here after it, fails and
//!   its bytes are erased, as when the writer's own sync fails.
//! - The writer decides later groups against the heads of groups still here (its overlay, see
//!   `Writer::work`) and waits with [`Syncer::drain`] before anything that needs the published
//!   state to be complete (rolls, checkpoints, reading records back, its own syncs).

use crate::sync::{lock, wait};
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::fs::FileHandle;
use super::super::metrics;
use super::super::shared::Shared;
use super::finish::{finish, Failure};
use super::group::Group;

/// A written group on its way to being synced and published.
pub(super) struct Handoff {
    pub group: Group,
    /// The active segment the group was written to, and the write position after it.
    pub file: Arc<dyn FileHandle>,
    pub seq: u64,
    pub end: u64,
    /// The writer already held the next operation when it handed this group over: another
    /// group follows within one group's processing time (see [`fill`]).
    pub more: bool,
}

/// What the writer sends: a written group, or word that nothing more follows for now (sent by
/// [`Syncer::drain`], so that a sync held back for more groups starts at once).
type Msg = Option<Handoff>;

/// Groups finished (published or failed) so far, with a condition variable to wait on.
#[derive(Default)]
struct Progress {
    done: Mutex<u64>,
    changed: Condvar,
}

/// The handle the writer keeps. Dropping it lets the thread finish what it was handed and stop.
pub(super) struct Syncer {
    tx: Option<mpsc::Sender<Msg>>,
    /// Finished groups come back here, emptied, so their allocations are reused.
    spare: mpsc::Receiver<Group>,
    progress: Arc<Progress>,
    sent: u64,
    /// `group_fill_wait` is set: the thread may be holding a sync back for more groups.
    fills: bool,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread.
    pub fn start(shared: Arc<Shared>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (spare_tx, spare) = mpsc::channel::<Group>();
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let fills = !shared.opts.group_fill_wait.is_zero();
        let thread = std::thread::Builder::new()
            .name("streamstore-sync".into())
            .spawn(move || run(&shared, &rx, &spare_tx, &p))?;
        Ok(Syncer {
            tx: Some(tx),
            spare,
            progress,
            sent: 0,
            fills,
            thread: Some(thread),
        })
    }

    /// Hands a written group over. Returns it if the thread is gone (the caller then finishes
    /// it itself).
    pub fn send(&mut self, h: Handoff) -> Result<(), Box<Handoff>> {
        match &self.tx {
            Some(tx) => match tx.send(Some(h)) {
                Ok(()) => {
                    self.sent += 1;
                    Ok(())
                }
                Err(mpsc::SendError(h)) => Err(Box::new(h.expect("sent a group"))),
            },
            None => Err(Box::new(h)),
        }
    }

    /// The number the next group handed over will have (groups count from 1).
    pub fn next_number(&self) -> u64 {
        self.sent + 1
    }

    /// The number of groups finished so far.
    pub fn done(&self) -> u64 {
        *lock(&self.progress.done)
    }

    /// Whether a group handed over is not finished yet.
    pub fn busy(&self) -> bool {
        self.done() < self.sent
    }

    /// Waits until every group handed over is finished.
    pub fn drain(&self) {
        if self.fills && self.busy() {
            // A sync held back for more groups (`fill`) starts now: none follows until this
            // returns.
            if let Some(tx) = &self.tx {
                let _ = tx.send(None);
            }
        }
        let mut done = lock(&self.progress.done);
        while *done < self.sent {
            done = wait(&self.progress.changed, done);
        }
    }

    /// Waits until at most `n` groups handed over are unfinished (the writer's pacing,
    /// `fair.rs`).
    pub fn wait_unfinished_at_most(&self, n: u64) {
        if self.fills && self.sent.saturating_sub(self.done()) > n {
            // The writer is about to wait for the sync thread, so the groups a held-back sync
            // (`fill`) waits for cannot come until it is done: it must start now, or the two
            // wait on each other until `group_fill_wait` runs out.
            if let Some(tx) = &self.tx {
                let _ = tx.send(None);
            }
        }
        let mut done = lock(&self.progress.done);
        while self.sent.saturating_sub(*done) > n {
            done = wait(&self.progress.changed, done);
        }
    }

    /// An emptied group to reuse, if one came back.
    pub fn spare(&self) -> Option<Group> {
        self.spare.try_recv().ok()
    }
}

impl Drop for Syncer {
    /// Lets the thread finish every group handed over, then stops it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: takes everything queued, syncs once, finishes each group in order.
fn run(
    shared: &Shared,
    rx: &mpsc::Receiver<Msg>,
    spare: &mpsc::Sender<Group>,
    progress: &Progress,
) {
    let mut touched = Vec::new();
    let wait = shared.opts.group_fill_wait;
    while let Ok(first) = rx.recv() {
        let Some(first) = first else { continue };
        let mut batch = vec![first];
        if !take_queued(rx, &mut batch) {
            fill(rx, &mut batch, wait);
        }
        let mut synced: Vec<&Arc<dyn FileHandle>> = Vec::new();
        let mut result: io::Result<()> = Ok(());
        if let Some(p) = shared.state().poisoned.clone() {
            result = Err(io::Error::other(p));
        }
        // Normally one file (rolls drain this thread first); newest first, once each.
        for h in batch.iter().rev() {
            if result.is_err() {
                break;
            }
            if !synced.iter().any(|f| Arc::ptr_eq(f, &h.file)) {
                result = metrics::timed_sync(|| h.file.sync_data());
                synced.push(&h.file);
            }
        }
        let n = batch.len() as u64;
        if result.is_ok() {
            if let Some(last) = batch.last() {
                *shared.durable() = (last.seq, last.end);
            }
        }
        for mut h in batch {
            let file = |_| Ok(h.file.clone());
            let failure = result.as_ref().err().map(|error| Failure {
                error,
                what: "sync",
                file: &file,
            });
            finish(shared, &mut h.group, &mut touched, (h.seq, h.end), failure);
            let _ = spare.send(h.group.recycle());
        }
        let mut done = lock(&progress.done);
        *done += n;
        progress.changed.notify_all();
    }
}

/// Adds every group already queued to `batch` (a `None` only says nothing more follows).
fn take_queued(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Handoff>) -> bool {
    let mut ended = false;
    while let Ok(m) = rx.try_recv() {
        match m {
            Some(h) => batch.push(h),
            None => ended = true,
        }
    }
    ended
}

/// Holds the sync back, for at most `wait`, while the writer is writing more groups right
/// behind the last one (it held the next operation when it handed that one over), adding them to
/// `batch`: under many closed-loop appenders, appenders answered by the previous sync resubmit
/// while this one is being formed, and without the wait they would form a cohort of their own,
/// each sync covering half of them. Stops at the first group handed over with nothing behind it,
/// at a [`Syncer::drain`], or when the writer stops. With `wait` zero it does nothing.
fn fill(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Handoff>, wait: Duration) {
    if wait.is_zero() {
        return;
    }
    let deadline = Instant::now() + wait;
    while batch.last().is_some_and(|h| h.more) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        match rx.recv_timeout(left) {
            Ok(Some(h)) => {
                batch.push(h);
                if take_queued(rx, batch) {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}
