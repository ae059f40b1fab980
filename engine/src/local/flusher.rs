//! The flusher: `Buffered` and `Interval` mode's background syncs (writeback kicks of the active
//! segment, and the roll syncs of finished segments).

use crate::sync::{lock, wait};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::fs::FileHandle;

/// The background thread that syncs log files off the append path in `Buffered` and `Interval`
/// mode. It does two jobs:
///
/// - *Writeback kicks*: an `fdatasync` of the active segment while the writer goes on appending,
///   so that the page cache never holds much unwritten log. Best effort: a kick is dropped if one
///   is already waiting.
/// - *Roll syncs*: the `fdatasync` of a finished segment, handed over by `Writer::roll` so that
///   the writer starts the next segment at once instead of waiting for the disk. Never dropped:
///   the writer counts them, and everything that claims durability (`Writer::sync`, and through
///   it checkpoints and close) first waits for all of them ([`Flusher::wait_rolls`]).
///
/// It never makes anything durable that the writer relies on without the writer waiting for it: a
/// failure of either job is kept and returned by the writer's next sync, which then poisons the
/// store.
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

#[derive(Default)]
struct Queue {
    /// A waiting writeback kick.
    kick: Option<Arc<dyn FileHandle>>,
    /// Finished segments waiting for their roll sync, oldest first, each with what to do once it
    /// succeeded.
    rolls: VecDeque<(Arc<dyn FileHandle>, RollDone)>,
    /// Roll syncs queued or in progress.
    rolls_pending: usize,
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
            let (file, roll) = {
                let mut q = self.queue();
                loop {
                    // Roll syncs first: the writer may be waiting for them.
                    if let Some((f, done)) = q.rolls.pop_front() {
                        break (f, Some(done));
                    }
                    if let Some(f) = q.kick.take() {
                        break (f, None);
                    }
                    if q.stop {
                        return;
                    }
                    q = wait(&self.cv, q);
                }
            };
            let ok = {
                let mut f = lock(&self.failed);
                if f.is_none() {
                    if let Err(e) = file.sync_data() {
                        *f = Some(e.to_string());
                        self.has_failed.store(true, Ordering::Release);
                    }
                }
                f.is_none()
            };
            drop(file);
            if let Some(done) = roll {
                if ok {
                    done();
                }
                let mut q = self.queue();
                q.rolls_pending -= 1;
                self.cv.notify_all();
            }
        }
    }
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
