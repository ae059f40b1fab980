//! The flusher: `Buffered` and `Interval` mode's background syncs (writeback kicks of the active
//! segment, the roll syncs of finished segments) and background checkpoints (every mode; `Sync`
//! mode starts it for these only).

use crate::sync::{lock, wait};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::fs::FileHandle;

/// The background thread that syncs log files off the append path in `Buffered` and `Interval`
/// mode, and makes checkpoints off the writer thread in every mode. Its jobs:
///
/// - *Writeback kicks*: an `fdatasync` of the active segment while the writer goes on appending,
///   so that the page cache never holds much unwritten log. Best effort: a kick is dropped if one
///   is already waiting.
/// - *Roll syncs*: the `fdatasync` of a finished segment, handed over by `Writer::roll` so that
///   the writer starts the next segment at once instead of waiting for the disk. Never dropped:
///   the writer counts them, and everything that claims durability (`Writer::sync`, and through
///   it checkpoints and close) first waits for all of them ([`Flusher::wait_rolls`]).
/// - *Checkpoints* ([`Flusher::checkpoint`]): the log synced up to the checkpoint's position (not
///   in `Sync` mode, where the position is that of the published state, synced already), then
///   the checkpoint's own work (its encoding, its file, collection), while the writer goes on
///   appending. At most one at a time.
///
/// It never makes anything durable that the writer relies on without the writer waiting for it: a
/// failure of any job is kept and returned by the writer's next sync, which then poisons the
/// store (a checkpoint's failure poisons it at once as well).
///
/// Order: roll syncs run first, oldest first, then a checkpoint, then a kick. So when a checkpoint
/// starts, every roll sync queued before it has finished (one thread, and none is queued): with
/// the sync of the checkpoint's own segment, everything before its position is durable, or a
/// failure is recorded (`failed`), which the checkpoint then reports instead of writing.
pub(crate) struct Flusher {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    queue: Mutex<Queue>,
    /// Signals new work (to the thread) and finished roll syncs (to the writer).
    cv: Condvar,
    /// The first failed background sync. Held while a background sync runs, so that the writer's
    /// own sync (which takes it first) cannot miss a failure the kernel reported only once.
    failed: Mutex<Option<String>>,
    /// `failed` holds a failure (checked at each roll without waiting for a sync in progress).
    has_failed: AtomicBool,
}

/// Run by the flusher thread after a roll sync succeeded (publishes the durable position).
pub(crate) type RollDone = Box<dyn FnOnce() + Send>;

/// A background checkpoint's own work, run by the flusher thread with the outcome of the log's
/// sync (every roll sync queued before it, then the checkpoint's segment): it must write nothing
/// unless that is `Ok`. Its result says whether the checkpoint was made.
pub(crate) type CheckpointWork = Box<dyn FnOnce(io::Result<()>) -> io::Result<()> + Send>;

#[derive(Default)]
struct Queue {
    /// A waiting writeback kick.
    kick: Option<Arc<dyn FileHandle>>,
    /// Finished segments waiting for their roll sync, oldest first, each with what to do once it
    /// succeeded.
    rolls: VecDeque<(Arc<dyn FileHandle>, RollDone)>,
    /// Roll syncs queued or in progress.
    rolls_pending: usize,
    /// A checkpoint waiting: the file of the segment its position is in (`None`: the log is
    /// durable up to the position already), and its work.
    checkpoint: Option<(Option<Arc<dyn FileHandle>>, CheckpointWork)>,
    /// A checkpoint is queued or in progress.
    checkpoint_busy: bool,
    /// How the last background checkpoint ended (`true`: made), until the writer takes it.
    checkpoint_done: Option<bool>,
    stop: bool,
}

impl Flusher {
    /// Starts the thread (idle until [`Flusher::kick`] or [`Flusher::roll`]).
    pub fn start() -> io::Result<Self> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
        });
        let inner2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name("streamstore-flush".into())
            .spawn(move || inner2.run())?;
        Ok(Flusher {
            inner,
            thread: Some(thread),
        })
    }

    /// Asks for a background sync of `file` unless one is already waiting; never waits.
    pub fn kick(&self, file: Arc<dyn FileHandle>) {
        let mut q = self.inner.queue();
        if q.kick.is_none() {
            q.kick = Some(file);
            self.inner.cv.notify_all();
        }
    }

    /// Queues the roll sync of a finished segment; never waits. `done` runs on the flusher thread
    /// after the sync succeeded (roll syncs run in order, so every earlier one succeeded too).
    pub fn roll(&self, file: Arc<dyn FileHandle>, done: RollDone) {
        let mut q = self.inner.queue();
        q.rolls.push_back((file, done));
        q.rolls_pending += 1;
        self.inner.cv.notify_all();
    }

    /// Queues a checkpoint; never waits. The flusher syncs `file` (the segment holding the
    /// checkpoint's position) after every roll sync queued before, then runs `work` with the
    /// outcome. Without `file` (`Sync` mode: every byte before the position was covered by a
    /// successful `fdatasync` before the state the writer took was published) nothing is synced,
    /// and `work` gets `Ok` unless an earlier background sync failed. The caller checks
    /// [`Flusher::checkpoint_busy`] first: one at a time.
    pub fn checkpoint(&self, file: Option<Arc<dyn FileHandle>>, work: CheckpointWork) {
        let mut q = self.inner.queue();
        debug_assert!(!q.checkpoint_busy, "one background checkpoint at a time");
        q.checkpoint = Some((file, work));
        q.checkpoint_busy = true;
        self.inner.cv.notify_all();
    }

    /// A checkpoint is queued or in progress.
    pub fn checkpoint_busy(&self) -> bool {
        self.inner.queue().checkpoint_busy
    }

    /// Waits until no checkpoint is queued or in progress.
    pub fn wait_checkpoint(&self) {
        let mut q = self.inner.queue();
        while q.checkpoint_busy {
            q = wait(&self.inner.cv, q);
        }
    }

    /// How the last background checkpoint ended, once (`Some(true)`: made); never waits.
    pub fn take_checkpoint_done(&self) -> Option<bool> {
        self.inner.queue().checkpoint_done.take()
    }

    /// Records `e` as the failure of a sync of the log made while holding `failed` (the guard of
    /// [`Flusher::lock`]), so that no later sync, on any thread, reports success after it: the
    /// kernel may report a failed write-back to one `fsync` only.
    pub fn record_failure(&self, failed: &mut Option<String>, e: &io::Error) {
        if failed.is_none() {
            *failed = Some(e.to_string());
            self.inner.has_failed.store(true, Ordering::Release);
        }
    }

    /// Roll syncs queued or in progress.
    pub fn rolls_pending(&self) -> usize {
        self.inner.queue().rolls_pending
    }

    /// Waits until every roll sync queued so far has finished (successfully or not: a failure is
    /// in [`Flusher::lock`]).
    pub fn wait_rolls(&self) {
        self.wait_rolls_below(1);
    }

    /// Waits until fewer than `n` roll syncs are queued or in progress.
    pub fn wait_rolls_below(&self, n: usize) {
        let mut q = self.inner.queue();
        while q.rolls_pending >= n {
            q = wait(&self.inner.cv, q);
        }
    }

    /// The first failure of a background sync, if one is known already; never waits.
    pub fn failure(&self) -> Option<String> {
        self.inner.has_failed.load(Ordering::Acquire).then(|| {
            let f = self.lock();
            f.clone().unwrap_or_default()
        })
    }

    /// Waits for a background sync in progress; the guard holds the first failure, if any.
    pub fn lock(&self) -> MutexGuard<'_, Option<String>> {
        lock(&self.inner.failed)
    }
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    fn run(&self) {
        loop {
            let job = {
                let mut q = self.queue();
                loop {
                    // Roll syncs first: the writer may be waiting for them, and a checkpoint
                    // needs every one queued before it.
                    if let Some((f, done)) = q.rolls.pop_front() {
                        break Job::Roll(f, done);
                    }
                    if let Some((f, work)) = q.checkpoint.take() {
                        break Job::Checkpoint(f, work);
                    }
                    if let Some(f) = q.kick.take() {
                        break Job::Kick(f);
                    }
                    if q.stop {
                        return;
                    }
                    q = wait(&self.cv, q);
                }
            };
            match job {
                Job::Kick(file) => {
                    let _ = self.sync(file.as_ref());
                }
                Job::Roll(file, done) => {
                    let ok = self.sync(file.as_ref()).is_ok();
                    drop(file);
                    if ok {
                        done();
                    }
                    let mut q = self.queue();
                    q.rolls_pending -= 1;
                    self.cv.notify_all();
                }
                Job::Checkpoint(file, work) => {
                    let synced = match file {
                        Some(file) => self.sync(file.as_ref()),
                        None => self.earlier_failure(),
                    };
                    let made = work(synced).is_ok();
                    let mut q = self.queue();
                    q.checkpoint_busy = false;
                    q.checkpoint_done = Some(made);
                    self.cv.notify_all();
                }
            }
        }
    }

    /// The failure of an earlier background sync, if any, as an error.
    fn earlier_failure(&self) -> io::Result<()> {
        failure_as_error(&lock(&self.failed))
    }

    /// `fdatasync` of `file` unless an earlier background sync failed; a failure is recorded
    /// (`failed`) and returned.
    fn sync(&self, file: &dyn FileHandle) -> io::Result<()> {
        let mut f = lock(&self.failed);
        failure_as_error(&f)?;
        file.sync_data().inspect_err(|e| {
            *f = Some(e.to_string());
            self.has_failed.store(true, Ordering::Release);
        })
    }
}

/// One piece of the flusher's work.
/// `failed` (an earlier background sync's error) as the error of a sync that did not run.
fn failure_as_error(failed: &Option<String>) -> io::Result<()> {
    match failed {
        Some(e) => Err(io::Error::other(format!(
            "an earlier background sync failed: {e}"
        ))),
        None => Ok(()),
    }
}

enum Job {
    Kick(Arc<dyn FileHandle>),
    Roll(Arc<dyn FileHandle>, RollDone),
    Checkpoint(Option<Arc<dyn FileHandle>>, CheckpointWork),
}

impl Drop for Flusher {
    /// Stops the thread after the work queued (roll syncs are never abandoned).
    fn drop(&mut self) {
        {
            let mut q = self.inner.queue();
            q.stop = true;
            self.inner.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
