//! Segment preparation off the commit path.
//!
//! In `Sync` and `Interval` mode every segment is zero-filled to its full size and synced
//! *before* it becomes the active segment, so a commit's `fdatasync` only ever overwrites blocks
//! that already exist (no extent allocation, no size change to commit). The zero-fill of the next
//! segment runs on a background thread (the *preallocator*), which keeps at most one spare ready
//! under the name [`SPARE`]; the writer takes it at a roll without waiting. If none is ready, the
//! writer prepares one itself (correct, only slower).
//!
//! Files being prepared end in [`TMP_SUFFIX`]; recovery never reads them (they are not segment
//! names) and `LocalStore::open` deletes them. A spare becomes a segment only through
//! [`activate`]: header written and synced, then renamed to its segment name, then the directory
//! synced. A crash leaves either a `*.seg.tmp` file (deleted at the next open) or a segment with a
//! valid, durable header followed by zeros (an empty segment).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::fs::{segment_path, FileHandle, FileSystem};
use super::writer::Active;
use crate::validate::now_ms;

/// Names of files being prepared end with this; they are never segments.
pub(crate) const TMP_SUFFIX: &str = ".seg.tmp";
/// The preallocator's spare.
pub(crate) const SPARE: &str = "spare.seg.tmp";
/// Zeros are written in chunks of this size.
const CHUNK: u64 = 1 << 20;

/// Writes zeros over `from..len` of `file` (nothing if `len <= from`), then syncs it.
pub(crate) fn zero_fill(file: &dyn FileHandle, from: u64, len: u64) -> io::Result<()> {
    if len > from {
        let zeros = vec![0u8; usize::try_from(CHUNK.min(len - from)).unwrap_or(0)];
        let mut pos = from;
        while pos < len {
            let n = usize::try_from((len - pos).min(CHUNK)).unwrap_or(0);
            file.write_all_at(zeros.get(..n).unwrap_or_default(), pos)?;
            pos += n as u64;
        }
    }
    file.sync_data()
}

/// Creates `path` afresh (removing what was there), zero-filled to `len` bytes and synced.
pub(crate) fn prepare(
    fs: &dyn FileSystem,
    path: &Path,
    len: u64,
) -> io::Result<Arc<dyn FileHandle>> {
    if let Err(e) = fs.remove(path) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    let file = fs.open(path, true)?;
    zero_fill(file.as_ref(), 0, len.max(SEGMENT_HEADER_LEN))?;
    Ok(file)
}

/// Turns the prepared file `spare` (at `spare_path`, zeros, synced) into segment `seq`: header written and synced, renamed to the segment's name, directory
/// synced. Returns the segment, reopened under its own name, as the active one.
pub(crate) fn activate(
    fs: &dyn FileSystem,
    seg_dir: &Path,
    seq: u64,
    spare: &dyn FileHandle,
    spare_path: &Path,
) -> io::Result<Active> {
    let header = SegmentHeader {
        seq,
        generation: loop {
            let g: u64 = rand::random();
            if g != 0 {
                break g;
            }
        },
        created_ms: now_ms(),
    };
    // The header is durable before the file gets a segment name, and the name is durable before
    // any frame is written after it: a segment found on recovery always has a valid header.
    spare.write_all_at(&header.encode(), 0)?;
    spare.sync_data()?;
    let path = segment_path(seg_dir, seq);
    fs.rename(spare_path, &path)?;
    fs.sync_dir(seg_dir)?;
    let file = fs.open(&path, true)?;
    Ok(Active {
        seq,
        salt: header.salt(),
        file,
        pos: SEGMENT_HEADER_LEN,
        durable: SEGMENT_HEADER_LEN,
        marked: SEGMENT_HEADER_LEN,
    })
}

/// Deletes leftover `*.seg.tmp` files (a crash while preparing a segment).
pub(crate) fn remove_leftovers(fs: &dyn FileSystem, seg_dir: &Path) -> io::Result<()> {
    let mut removed = false;
    for name in fs.list(seg_dir)? {
        if name.ends_with(TMP_SUFFIX) {
            match fs.remove(&seg_dir.join(&name)) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if removed {
        fs.sync_dir(seg_dir)?;
    }
    Ok(())
}

/// What the preallocator made ready.
pub(crate) enum Spare {
    /// A zero-filled, synced file under [`SPARE`], to be activated by the writer.
    File(Arc<dyn FileHandle>, PathBuf),
    /// A segment already activated (`Buffered`/`Interval` mode): header durable, named, the
    /// directory synced. Until the writer rolls to it, it is an empty segment after the active
    /// one, which recovery reads as the (empty) last segment.
    Segment(Active),
}

type Ready = io::Result<Spare>;

/// The background thread that keeps the next segment ready: in `Sync` mode one zero-filled spare
/// file (activated by the writer at the roll, without waiting); in `Buffered`/`Interval` mode the
/// next segment itself, activated here, so that a roll does no `fdatasync` on the writer thread
/// (one issued while the flusher writes out a finished segment waits behind it).
pub(crate) struct Preallocator {
    req: Option<mpsc::Sender<u64>>,
    ready: mpsc::Receiver<Ready>,
    /// A spare was asked for and not yet taken.
    pending: bool,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
}

impl Preallocator {
    /// Starts the thread (idle until [`Preallocator::request`]). Spares are `len` bytes of
    /// zeros; with `activate`, each becomes the segment named in its request.
    pub fn start(
        fs: Arc<dyn FileSystem>,
        seg_dir: &Path,
        len: u64,
        activate: bool,
    ) -> io::Result<Self> {
        let path = seg_dir.join(SPARE);
        let (req, req_rx) = mpsc::channel::<u64>();
        let (ready_tx, ready) = mpsc::channel::<Ready>();
        let (fs2, path2, dir2) = (fs.clone(), path.clone(), seg_dir.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("streamstore-prealloc".into())
            .spawn(move || {
                for seq in req_rx {
                    let r = prepare(fs2.as_ref(), &path2, len).and_then(|f| {
                        if activate {
                            self::activate(fs2.as_ref(), &dir2, seq, f.as_ref(), &path2)
                                .map(Spare::Segment)
                        } else {
                            Ok(Spare::File(f, path2.clone()))
                        }
                    });
                    if ready_tx.send(r).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Preallocator {
            req: Some(req),
            ready,
            pending: false,
            thread: Some(thread),
            path,
            fs,
        })
    }

    /// Asks for a spare (segment `seq`, when activating) unless one is already asked for or ready.
    pub fn request(&mut self, seq: u64) {
        if !self.pending {
            if let Some(req) = &self.req {
                self.pending = req.send(seq).is_ok();
            }
        }
    }

    /// The ready spare, if there is one; waits for one being prepared only with `wait`.
    pub fn take(&mut self, wait: bool) -> Option<Spare> {
        if !self.pending {
            return None;
        }
        let got = if wait {
            self.ready.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.ready.try_recv()
        };
        match got {
            Ok(Ok(f)) => {
                self.pending = false;
                Some(f)
            }
            Ok(Err(e)) => {
                // Not fatal: the writer prepares the next segment itself.
                eprintln!("streamstore: preparing a spare segment failed ({e})");
                self.pending = false;
                None
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.pending = false;
                None
            }
        }
    }
}

impl Drop for Preallocator {
    /// Stops the thread (waiting for a spare being prepared) and deletes the spare file (an
    /// activated segment not yet used stays: an empty segment).
    fn drop(&mut self) {
        drop(self.req.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.fs.remove(&self.path);
    }
}

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
            q = self
                .inner
                .cv
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
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
        self.inner
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
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
                    q = self.cv.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let ok = {
                let mut f = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
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
