//! The preallocator: a background thread that keeps the next segment ready, so that a roll does
//! not wait for a segment's zero-fill (see `segment.rs`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::fs::{FileHandle, FileSystem};
use super::segment::{self, prepare_paced, Active};

/// The preallocator's spare.
pub(crate) const SPARE: &str = "spare.seg.tmp";

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
                    let r = prepare_paced(fs2.as_ref(), &path2, len).and_then(|f| {
                        if activate {
                            segment::activate(fs2.as_ref(), &dir2, seq, f.as_ref(), &path2)
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
                tracing::warn!(error = %e, "preparing a spare segment failed; the roll prepares one");
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
