//! The file-system seam: every file operation of the local engine goes through [`FileSystem`], so
//! tests can inject `ENOSPC`, `EIO` and failed syncs (see `engine/tests/local_faults.rs`).

use crate::implementor::ErrorShorthand;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
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
    /// Drops the file's pages from the operating system's page cache, so that the next reads
    /// come from the device (`posix_fadvise(DONTNEED)`). Recovery calls it before scanning a
    /// segment: after a failed `fsync` Linux marks the pages whose write-back failed clean, and a
    /// reopen in the same boot would otherwise read them from the cache as if they were durable.
    /// Advisory; the default (test file systems without a cache) does nothing.
    fn drop_cache(&self) -> io::Result<()> {
        Ok(())
    }
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
    /// Creates `path` for reading and writing (mode 0600), failing with `AlreadyExists` if
    /// something is there already (`O_EXCL`, which also refuses a symlink planted at `path`).
    /// The default checks [`FileSystem::exists`] first (test file systems).
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        if self.exists(path) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        self.open(path, true)
    }
    /// Opens `path` for writing with direct I/O (`O_DIRECT`: no page cache; each write returns
    /// when the device has the data, though not yet durably), creating it (mode 0600). `Ok(None)`
    /// where direct I/O is not available; the default (test file systems). The preallocator
    /// writes a spare segment's zeros through it, one chunk at a time, so that at most one chunk
    /// of zeros is ever queued ahead of a commit's `fdatasync` (see `segment::prepare_paced`).
    /// Writes through it must be aligned (position, length and buffer) to 4 KiB.
    fn open_direct(&self, _path: &Path) -> io::Result<Option<Arc<dyn FileHandle>>> {
        Ok(None)
    }
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
    fn drop_cache(&self) -> io::Result<()> {
        rustix::fs::fadvise(&self.0, 0, None, rustix::fs::Advice::DontNeed).map_err(io::Error::from)
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
            // Never through a symlink at the last component (the directory is checked for
            // symlinks at open; this also covers one planted later).
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }
    fn open_direct(&self, path: &Path) -> io::Result<Option<Arc<dyn FileHandle>>> {
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECT)
            .open(path);
        match opened {
            Ok(file) => Ok(Some(Arc::new(StdFile(file)))),
            // A file system without direct I/O (tmpfs, some FUSE ones).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
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
/// The directory of quarantined damage (in the data directory).
pub(crate) const QUARANTINE: &str = "quarantine";
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

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist, and makes the new
/// entries durable: each created directory's parent is synced (a directory's entry in its parent
/// is lost in a power cut until the parent is synced, and with it everything beneath).
pub(crate) fn make_private_dir(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut created = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        created.push(p.to_path_buf());
        d = p.parent();
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // The mode given to mkdir is masked by the umask; set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    // Top down: a parent's entry is durable before the entries beneath it.
    for p in created.iter().rev() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => fs.sync_dir(parent)?,
            _ => fs.sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Refuses a data directory (or one of its subdirectories) that others could tamper with: one
/// owned by another user, writable by group or others, or holding a symlink (the engine never
/// creates one; a symlink there could point a rename, a truncation or a removal elsewhere).
/// `InvalidArgument`, naming the path and what is wrong.
pub(crate) fn check_private_dir(dir: &Path) -> crate::error::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        crate::error::Error::invalid(format!(
            "refusing the data directory {}: {why}",
            dir.display()
        ))
    };
    let meta =
        std::fs::metadata(dir).map_err(|e| refuse(format!("cannot read its metadata ({e})")))?;
    if !meta.is_dir() {
        return Err(refuse("not a directory".to_owned()));
    }
    // The process's effective uid is the owner of `/proc/self` (Linux); elsewhere, or without
    // `/proc`, the owner check is skipped.
    if let Ok(me) = std::fs::metadata("/proc/self") {
        if meta.uid() != me.uid() {
            return Err(refuse(format!(
                "owned by uid {}, not by this process's uid {}",
                meta.uid(),
                me.uid()
            )));
        }
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "writable by group or others (mode {mode:04o}); `chmod 700` it"
        )));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| refuse(format!("cannot list it ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| refuse(format!("cannot list it ({e})")))?;
        let kind = entry
            .file_type()
            .map_err(|e| refuse(format!("cannot read an entry ({e})")))?;
        if kind.is_symlink() {
            return Err(refuse(format!(
                "it holds a symlink, {}",
                entry.file_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}
