//! The data directory's lock: an exclusive `flock` on `LOCK`, held while the store is open. The
//! kernel drops it when the process dies, so a crash never leaves a stale lock; the file holds the
//! holder's pid for the error message only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// The lock file's name.
pub(crate) const LOCK: &str = "LOCK";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Locks `dir` or fails with `Unavailable` naming the holder's pid.
pub(crate) fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // A symlink planted as `LOCK` would otherwise have its target truncated below.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot open {}", path.display()),
            )
            .with_source(e)
        })?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            if holder == std::process::id().to_string() {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the data directory {} is already open in this process (pid {holder}): close that LocalStore (or share it through an Arc) before opening the directory again",
                        dir.display()
                    ),
                ));
            }
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the data directory {} is locked by {who}; a directory is opened by one store at a time",
                    dir.display()
                ),
            ));
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot lock {}", path.display()),
            )
            .with_source(e))
        }
    }
    // Best effort: the pid only improves the message another opener gets.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = write!(file, "{}", std::process::id());
    let _ = file.sync_data();
    Ok(DirLock { _file: file })
}
