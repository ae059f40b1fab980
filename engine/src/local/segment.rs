//! Segment files: the active segment, and preparing a segment off the commit path.
//!
//! In `Sync` and `Interval` mode every segment is zero-filled to its full size and synced
//! *before* it becomes the active segment, so a commit's `fdatasync` only ever overwrites blocks
//! that already exist (no extent allocation, no size change to commit). The zero-fill of the next
//! segment normally runs on a background thread (the preallocator, `prealloc.rs`), which keeps at
//! most one spare ready; the writer takes it at a roll without waiting. If none is ready, the
//! writer prepares one itself with [`create_segment`] (correct, only slower). The preallocator
//! writes its zeros by direct I/O in small chunks ([`prepare_paced`]), so that they never queue
//! up ahead of the commits' syncs.
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

/// The preallocator's zeros are written by direct I/O in chunks of this size, one at a time.
///
/// Why: written through the page cache, a spare's 64 MiB of zeros stay dirty until its
/// `fdatasync`, which then submits them all at once; every commit `fdatasync` issued meanwhile
/// waits behind that writeback (its device cache flush covers everything queued), which measured
/// 56–87 ms stalls at 10,000 streams. Syncing every few MiB instead only made the stalls smaller
/// and more frequent. Written directly, at most one chunk of zeros is in flight at any time, so a
/// commit waits for at most one chunk. 64 KiB rather than 256 KiB (issue 15, measured at
/// 10,000 streams, two alternating rounds, load ~2.6): appends over 10 ms fell from
/// 6,338 / 6,440 to 3,418 / 3,548 per case, p99 from 11.6 / 11.0 to 8.8 / 7.2 ms, p99.9 from
/// 23 / 28 to 18 / 18 ms, at the same throughput; the spare then takes ~0.5 s instead of ~0.35 s
/// to prepare, well inside the 7/8 of a segment's fill time it has. (A 0.5 ms pause between
/// 64 KiB chunks gained nothing more and doubled that time.)
pub(crate) const PACED_CHUNK: usize = 64 << 10;

/// The alignment direct I/O needs (buffer, position and length): the page size, which covers
/// every logical block size in use.
const DIRECT_ALIGN: usize = 4096;

/// [`prepare`] for the preallocator: the same result (`path` created afresh, `len` bytes of
/// zeros, synced), with the zeros written by direct I/O one [`PACED_CHUNK`] at a time where the
/// file system offers it ([`FileSystem::open_direct`]); the rest (all of it without direct I/O,
/// or after a direct write fails) through the page cache as in [`prepare`]. The file is a
/// `*.seg.tmp` until `activate`, so how its zeros got there changes nothing for recovery: the
/// final `fdatasync` makes them (and the file's size and blocks) durable before the header is
/// written.
pub(crate) fn prepare_paced(
    fs: &dyn FileSystem,
    path: &Path,
    len: u64,
) -> io::Result<Arc<dyn FileHandle>> {
    if let Err(e) = fs.remove(path) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    let len = len.max(SEGMENT_HEADER_LEN);
    // A `Buffered` spare (a header's length) has no whole chunk: no direct file.
    let direct = if len >= PACED_CHUNK as u64 {
        fs.open_direct(path)?
            .map_or(0, |d| write_zeros_direct(d.as_ref(), len))
    } else {
        0
    };
    let file = fs.open(path, true)?;
    zero_fill(file.as_ref(), direct, len)?;
    Ok(file)
}

/// Writes whole [`PACED_CHUNK`]s of zeros from the start of `file` (opened for direct I/O), each
/// waited for before the next, up to `len`. Returns how far it got: a failed write (an alignment
/// the device refuses, or a real error, which the page-cache write of the rest then meets
/// again) stops it, and its chunk counts as not written.
fn write_zeros_direct(file: &dyn FileHandle, len: u64) -> u64 {
    let mut raw = vec![0u8; PACED_CHUNK + DIRECT_ALIGN];
    let skip = raw.as_mut_ptr().align_offset(DIRECT_ALIGN);
    let Some(zeros) = skip
        .checked_add(PACED_CHUNK)
        .and_then(|end| raw.get(skip..end))
    else {
        return 0;
    };
    let chunk = PACED_CHUNK as u64;
    let mut pos = 0u64;
    while pos + chunk <= len {
        if let Err(e) = file.write_all_at(zeros, pos) {
            tracing::debug!(error = %e, pos, "direct write of zeros failed; the rest goes through the page cache");
            break;
        }
        pos += chunk;
    }
    pos
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::fs::StdFs;

    /// Every byte of `path` is zero and the file is `len` long.
    fn all_zeros(path: &Path, len: u64) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert!(bytes.iter().all(|b| *b == 0), "a byte is not zero");
    }

    #[test]
    fn a_paced_spare_is_zeros_of_the_full_length_over_an_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spare.seg.tmp");
        // An old, longer spare full of non-zero bytes: removed, not reused.
        std::fs::write(&path, vec![0xa5u8; 5 * PACED_CHUNK]).unwrap();
        // Whole chunks by direct I/O, then an unaligned rest through the page cache.
        let len = 3 * PACED_CHUNK as u64 + 4096 + 7;
        let file = prepare_paced(&StdFs, &path, len).unwrap();
        assert_eq!(file.size().unwrap(), len);
        all_zeros(&path, len);
    }

    /// A file system whose direct writes fail after the first chunk: the rest goes through the
    /// page cache, and the result is the same.
    struct FailingDirect;

    struct FailAfterOne(Arc<dyn FileHandle>);

    impl FileHandle for FailAfterOne {
        fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
            self.0.read_at(buf, pos)
        }
        fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
            if pos > 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.0.write_all_at(buf, pos)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
        fn size(&self) -> io::Result<u64> {
            self.0.size()
        }
    }

    impl FileSystem for FailingDirect {
        fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>> {
            StdFs.open(path, write)
        }
        fn open_direct(&self, path: &Path) -> io::Result<Option<Arc<dyn FileHandle>>> {
            let inner = StdFs
                .open_direct(path)?
                .expect("direct I/O in the test directory");
            Ok(Some(Arc::new(FailAfterOne(inner))))
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            StdFs.list(dir)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            StdFs.remove(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            StdFs.sync_dir(dir)
        }
        fn exists(&self, path: &Path) -> bool {
            StdFs.exists(path)
        }
    }

    #[test]
    fn a_failed_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spare.seg.tmp");
        std::fs::write(&path, vec![0x5au8; 4 * PACED_CHUNK]).unwrap();
        let len = 4 * PACED_CHUNK as u64;
        prepare_paced(&FailingDirect, &path, len).unwrap();
        all_zeros(&path, len);
    }
}
