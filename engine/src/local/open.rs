//! Opening a data directory, in phases: the directories and their lock, recovery, the shared
//! state, the directory tidied for a new session, the active segment, and the writer with its
//! session's first frames. `LocalStore::open_blocking` then starts the writer thread.

use crate::implementor::ErrorShorthand;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::wait::Notifiers;

use super::fs::{self, FileSystem, CLEAN, QUARANTINE, SEGMENTS};
use super::lock::{self, DirLock};
use super::options::{Durability, LocalOptions};
use super::reader::Files;
use super::recovery::{self, Recovered};
use super::segment::{self, create_segment, Active};
use super::shared::Shared;
use super::state::{SegInfo, State};
use super::stats::Counters;
use super::writer::Writer;

/// The smallest segment accepted.
const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// A store opened and recovered, its writer ready to run.
pub(super) struct Opened {
    pub shared: Arc<Shared>,
    pub writer: Writer,
    pub lock: DirLock,
}

/// Opens (creating if needed) the store in `dir` and recovers what the last session left.
pub(super) fn open(dir: &Path, options: &LocalOptions) -> Result<Opened> {
    if options.segment_bytes < MIN_SEGMENT_BYTES {
        return Err(Error::invalid(format!(
            "segment_bytes must be at least {MIN_SEGMENT_BYTES}"
        )));
    }
    let (lock, seg_dir) = directories(options.fs.as_ref(), dir)?;
    let mut rec = recovery::recover(dir, &seg_dir, options)?;
    let shared = share(&mut rec, &seg_dir, options);
    let fs = options.fs.as_ref();
    tidy(fs, dir, &seg_dir)?;
    let active = active_segment(&shared, &rec, &seg_dir)?;
    // Everything recovery found is durable: earlier segments were synced at their roll (in
    // `Sync` mode) or by recovery itself (after an unclean shutdown, see `recovery/`), and the
    // last one is synced with the session's `Open` frame before the store is returned.
    *shared.durable() = (active.seq, active.pos);
    let mut writer = Writer::new(
        shared.clone(),
        dir.to_path_buf(),
        seg_dir,
        active,
        rec.next_number,
    );
    let floor = shared.state().report.checkpoint.map_or(0, |(seg, _)| seg);
    writer.set_checkpoint_floor(floor);
    writer
        .open_session(&rec.reincarnate)
        .map_err(|e| failed("writing the session start and new incarnations", e))?;
    Ok(Opened {
        shared,
        writer,
        lock,
    })
}

/// An I/O failure while opening: the store is unavailable.
fn failed(what: &str, e: io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("open: {what}")).with_source(e)
}

/// Creates the data and segment directories (mode 0700), refuses them if others could tamper
/// with them (`fs::check_private_dir`), and locks the data directory against
/// other processes (a locked directory is `Unavailable` naming the holder's pid).
fn directories(fs: &dyn FileSystem, dir: &Path) -> Result<(DirLock, PathBuf)> {
    let unavailable =
        |what: String, e: io::Error| Error::new(ErrorKind::Unavailable, what).with_source(e);
    fs::make_private_dir(fs, dir)
        .map_err(|e| unavailable(format!("cannot create {}", dir.display()), e))?;
    fs::check_private_dir(dir)?;
    let dir_lock = lock::lock(dir)?;
    let seg_dir = dir.join(SEGMENTS);
    fs::make_private_dir(fs, &seg_dir)
        .map_err(|e| unavailable(format!("cannot create {}", seg_dir.display()), e))?;
    fs::check_private_dir(&seg_dir)?;
    let quarantine = dir.join(QUARANTINE);
    if quarantine.exists() {
        fs::check_private_dir(&quarantine)?;
    }
    Ok((dir_lock, seg_dir))
}

/// The state shared by the writer and the readers, from what recovery rebuilt (its streams are
/// moved out of `rec`).
fn share(rec: &mut Recovered, seg_dir: &Path, options: &LocalOptions) -> Arc<Shared> {
    let streams = std::mem::take(&mut rec.streams);
    let mut state = State {
        tail_total: streams.values().map(|s| s.tail_bytes).sum(),
        streams,
        segments: std::mem::take(&mut rec.segments),
        // Set by the session's first group (`Writer::open_session`), before any checkpoint.
        published: (0, 0),
        poisoned: None,
        closed: false,
        report: std::mem::take(&mut rec.report),
        evict_after: None,
    };
    state.evict_tails(options.tail_cache_total_bytes);
    Arc::new(Shared {
        state: Mutex::new(state),
        notifiers: Notifiers::default(),
        files: Files::new(
            seg_dir.to_path_buf(),
            options.fs.clone(),
            options.max_open_files,
            options.mmap_reads,
        ),
        opts: options.clone(),
        segment_bytes: options.segment_bytes,
        abandoned: AtomicBool::new(false),
        poisoned: AtomicBool::new(false),
        durable: Mutex::new((0, 0)),
        durable_waiters: AtomicUsize::new(0),
        counters: Counters::default(),
    })
}

/// Readies the directory for a new session: the clean marker goes (from here on the log changes
/// and the old marker no longer describes it), and so do files left by a crash while a segment
/// was being prepared (they are not segments).
fn tidy(fs: &dyn FileSystem, dir: &Path, seg_dir: &Path) -> Result<()> {
    let clean = dir.join(CLEAN);
    if fs.exists(&clean) {
        fs.remove(&clean)
            .and_then(|()| fs.sync_dir(dir))
            .map_err(|e| failed("removing the clean marker", e))?;
    }
    segment::remove_leftovers(fs, seg_dir)
        .map_err(|e| failed("removing unfinished segment files", e))
}

/// The segment the session writes into: the last one recovery kept (in `Sync`/`Interval` mode
/// zero-filled to its full size first), or a new one.
fn active_segment(shared: &Shared, rec: &Recovered, seg_dir: &Path) -> Result<Active> {
    let fs = shared.opts.fs.as_ref();
    let segment_bytes = shared.segment_bytes;
    // `Sync` and `Interval` write only into segments zero-filled and synced in advance, so a
    // commit's `fdatasync` never allocates blocks or changes the file size.
    let fill = !matches!(shared.opts.durability, Durability::Buffered);
    let Some((seq, salt, pos)) = rec.active else {
        let a = create_segment(fs, seg_dir, rec.max_seq + 1, segment_bytes, fill)
            .map_err(|e| failed("creating a segment", e))?;
        let info = SegInfo {
            salt: a.salt,
            readable: a.pos,
            damaged: false,
        };
        shared.state().segments.insert(a.seq, info);
        return Ok(a);
    };
    let file = fs
        .open(&fs::segment_path(seg_dir, seq), true)
        .map_err(|e| failed("opening the last segment", e))?;
    if fill {
        // Bring the last segment to its full zero-filled size (past the data end and the file's
        // length everything is zeros: recovery cut any torn tail).
        let len = file
            .size()
            .map_err(|e| failed("reading the last segment", e))?;
        if len < segment_bytes {
            segment::zero_fill(file.as_ref(), len.max(pos), segment_bytes)
                .map_err(|e| failed("zero-filling the last segment", e))?;
        }
    }
    Ok(Active {
        seq,
        salt,
        file,
        pos,
        durable: pos,
        marked: pos,
    })
}
