//! The file-system seam: every file operation of the local engine goes through [`FileSystem`], so
//! tests can inject `ENOSPC`, `EIO` and failed syncs (see `engine/tests/local_faults.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file: positional reads and writes, and data sync.
pub trait FileHandle: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// `fdatasync`: the written data (and the size, if it changed) are durable when this returns.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
    /// The operating-system file behind this handle, if there is one: finished segments of such
    /// files are read through a memory map (`local::mmap`). Wrappers (fault injection, tests)
    /// keep the default `None`, and every read of theirs goes through `read_at`.
    fn std_file(&self) -> Option<&File> {
        None
    }
}

/// The directory operations the engine needs.
pub trait FileSystem: Send + Sync + 'static {
    /// Opens `path` for reading and, with `write`, for writing (creating it with mode 0600).
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>>;
    /// Lists the file names in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

struct StdFile(File);

impl FileHandle for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn std_file(&self) -> Option<&File> {
        Some(&self.0)
    }
}

impl FileSystem for StdFs {
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o600)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Reads exactly `buf.len()` bytes at `pos`; a short file is `UnexpectedEof`.
pub(crate) fn read_exact_at(file: &dyn FileHandle, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        let n = file.read_at(rest, pos + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ends early",
            ));
        }
        done += n;
    }
    Ok(())
}

/// Reads the whole file (used by recovery and the checkpoint loader).
pub(crate) fn read_all(file: &dyn FileHandle) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        let rest = buf.get_mut(done..).unwrap_or_default();
        let n = file.read_at(rest, done as u64)?;
        if n == 0 {
            buf.truncate(done);
            break;
        }
        done += n;
    }
    Ok(buf)
}

/// The clean-shutdown marker's file name (in the data directory).
pub(crate) const CLEAN: &str = "CLEAN";
/// The directory of the segment files (in the data directory).
pub(crate) const SEGMENTS: &str = "segments";

/// The path of segment `seq` under `dir`: 20 zero-padded decimal digits, never a stream id.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// The sequence number of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
