//! Segment files: the active segment, and preparing a segment off the commit path.
//!
//! In `Sync` and `Interval` mode every segment is zero-filled to its full size and synced
//! *before* it becomes the active segment, so a commit's `fdatasync` only ever overwrites blocks
//! that already exist (no extent allocation, no size change to commit). The zero-fill of the next
//! segment normally runs on a background thread (the preallocator, `prealloc.rs`), which keeps at
//! most one spare ready; the writer takes it at a roll without waiting. If none is ready, the
//! writer prepares one itself with [`create_segment`] (correct, only slower).
//!
//! Files being prepared end in [`TMP_SUFFIX`]; recovery never reads them (they are not segment
//! names) and `LocalStore::open` deletes them ([`remove_leftovers`]). A prepared file becomes a
//! segment only through [`activate`]: header written and synced, then renamed to its segment
//! name, then the directory synced. A crash leaves either a `*.seg.tmp` file (deleted at the next
//! open) or a segment with a valid, durable header followed by zeros (an empty segment).

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::fs::{segment_path, FileHandle, FileSystem};
use crate::validate::now_ms;

/// Names of files being prepared end with this; they are never segments.
pub(crate) const TMP_SUFFIX: &str = ".seg.tmp";

/// Zeros are written in chunks of this size.
const CHUNK: u64 = 1 << 20;

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

/// Zeros written after the last frame of a segment that is not zero-filled in advance.
pub(crate) const TAIL_PAD_BYTES: usize = 8;
pub(crate) const TAIL_PAD: u64 = TAIL_PAD_BYTES as u64;

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

/// Creates segment `seq` synchronously: prepared under `<seq>.seg.tmp` (zero-filled to
/// `segment_bytes` if `fill`, otherwise just past the header), then activated (header synced,
/// renamed, directory synced).
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    seg_dir: &Path,
    seq: u64,
    segment_bytes: u64,
    fill: bool,
) -> io::Result<Active> {
    let tmp = seg_dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    let len = if fill {
        segment_bytes
    } else {
        SEGMENT_HEADER_LEN + TAIL_PAD
    };
    let file = prepare(fs, &tmp, len)?;
    activate(fs, seg_dir, seq, file.as_ref(), &tmp)
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
