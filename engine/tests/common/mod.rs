//! Shared by the fault-injection tests: a file system that is the real one except for the files it
//! opens, which a test wraps to inject failures or delays.

use std::io;
use std::path::Path;
use std::sync::Arc;

use streamkeep::implementor::fs::{FileHandle, FileSystem, StdFs};

/// Opens files with [`StdFs`] and hands each one, with its path, to the closure, which returns the
/// handle the store gets; listing, removing, renaming and directory syncs are [`StdFs`]'s.
pub struct WrapFs<W>(pub W);

impl<W> FileSystem for WrapFs<W>
where
    W: Fn(&Path, Arc<dyn FileHandle>) -> Arc<dyn FileHandle> + Send + Sync + 'static,
{
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>> {
        Ok((self.0)(path, StdFs.open(path, write)?))
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
