//! A power-loss file system for the tests (issue 13): an in-memory [`FileSystem`] that remembers
//! what completed syncs cover and, on a simulated power cut, keeps only that.
//!
//! Model (the strict POSIX reading, which is what a power loss can leave):
//! - A file's bytes and size are durable up to its last completed `sync_data`; later writes live
//!   only in the "page cache" (`live`).
//! - A directory entry (creation, rename, removal) is durable only once `sync_dir` of its parent
//!   completed after it. A file whose entry is not durable is gone after the cut, whatever was
//!   synced through its handle.
//! - On a cut, each unsynced sector of a surviving file independently may or may not have reached
//!   the disk (write-back can happen any time), and the last one may be torn ([`Tear`]).
//!
//! The assumption the engine states in `docs/format.md` (power-safe overwrite) is built in: a
//! tear garbles, zeroes or half-writes only the bytes a write *changed*; bytes of a sector that
//! were synced and not rewritten keep their value.
//!
//! Power is cut by an operation count ([`PowerLossFs::arm`]): the n-th mutating operation
//! (write, sync, create, rename, remove, directory sync) finds the power gone; it and every later
//! operation, reads included, fail with `EIO`, as if the process died there. [`PowerLossFs::restart`]
//! then applies the cut and powers the disk back on.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use streamkeep::implementor::fs::{FileHandle, FileSystem};

/// The sector size: the unit a disk writes atomically under the power-safe-overwrite assumption.
pub const SECTOR: usize = 512;

/// What happens to the last unsynced sector of a file at a cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// Nothing beyond the random persistence of whole sectors.
    None,
    /// The bytes the unsynced writes changed in that sector read as zeros.
    Zeros,
    /// The bytes the unsynced writes changed in that sector read as garbage.
    Garbage,
    /// A prefix of that sector was written, the rest is old.
    Partial,
}

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `true` with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

#[derive(Default)]
struct Inode {
    /// What the process sees (the page cache).
    live: Vec<u8>,
    /// What the disk holds for sure: the bytes and size at the last completed sync.
    durable: Vec<u8>,
}

#[derive(Default)]
struct Disk {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries as the process sees them.
    live: BTreeMap<PathBuf, u64>,
    /// Directory entries a completed directory sync covers.
    durable: BTreeMap<PathBuf, u64>,
    /// Mutating operations left before the power goes (`None`: not armed).
    left: Option<u64>,
    /// The power is gone: everything fails until [`PowerLossFs::restart`].
    dead: bool,
}

impl Disk {
    /// Counts one mutating operation; fails once the power is gone.
    fn mutate(&mut self) -> io::Result<()> {
        self.alive()?;
        if let Some(left) = self.left.as_mut() {
            if *left == 0 {
                self.dead = true;
                return Err(power_gone());
            }
            *left -= 1;
        }
        Ok(())
    }
    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(power_gone())
        } else {
            Ok(())
        }
    }
}

fn power_gone() -> io::Error {
    io::Error::other("power-loss fs: the power is gone")
}

/// The power-loss file system; clone the `Arc` into `LocalOptions::fs`.
#[derive(Default)]
pub struct PowerLossFs {
    disk: Arc<Mutex<Disk>>,
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PowerLossFs {
    /// A new, empty disk.
    pub fn new() -> Arc<PowerLossFs> {
        Arc::new(PowerLossFs::default())
    }

    /// Cuts the power at the `ops`-th mutating operation from now.
    pub fn arm(&self, ops: u64) {
        lock(&self.disk).left = Some(ops);
    }

    /// Cuts now (if not already cut), applies the cut and powers the disk back on: only what
    /// completed syncs covered survives, plus unsynced sectors written back by chance (each with
    /// probability `persist_pct` %), the last unsynced sector of each file torn by `tear`.
    pub fn restart(&self, rng: &mut Rng, persist_pct: u64, tear: Tear) {
        let mut disk = lock(&self.disk);
        disk.dead = false;
        disk.left = None;
        disk.live = disk.durable.clone();
        let keep: Vec<u64> = disk.durable.values().copied().collect();
        disk.inodes.retain(|ino, _| keep.contains(ino));
        for inode in disk.inodes.values_mut() {
            let image = cut_image(inode, rng, persist_pct, tear);
            inode.live.clone_from(&image);
            inode.durable = image;
        }
    }

    fn handle(&self, ino: u64) -> Arc<dyn FileHandle> {
        Arc::new(PlFile {
            disk: self.disk.clone(),
            ino,
        })
    }
}

/// What a file holds after a cut.
fn cut_image(inode: &Inode, rng: &mut Rng, persist_pct: u64, tear: Tear) -> Vec<u8> {
    let mut image = inode.durable.clone();
    let len = inode.live.len().max(inode.durable.len());
    let mut last_dirty = None;
    let mut start = 0;
    while start < len {
        let end = (start + SECTOR).min(len);
        let live = inode.live.get(start..end.min(inode.live.len()));
        let durable = inode.durable.get(start..end.min(inode.durable.len()));
        if live != durable {
            if rng.chance(persist_pct, 100) {
                write_range(&mut image, &inode.live, start, end);
            } else {
                last_dirty = Some(start);
            }
        }
        start = end;
    }
    if let Some(start) = last_dirty {
        let end = (start + SECTOR).min(inode.live.len());
        let cut = start + usize::try_from(rng.below(SECTOR as u64)).unwrap_or(0);
        for i in start..end {
            let new = inode.live.get(i).copied().unwrap_or(0);
            let old = inode.durable.get(i).copied();
            if old == Some(new) {
                continue; // Power-safe overwrite: bytes not changed keep their value.
            }
            let byte = match tear {
                Tear::None => continue,
                Tear::Zeros => 0,
                Tear::Garbage => u8::try_from(rng.below(256)).unwrap_or(0xA5),
                Tear::Partial if i < cut => new,
                Tear::Partial => continue,
            };
            set(&mut image, i, byte);
        }
    }
    image
}

fn write_range(image: &mut Vec<u8>, live: &[u8], start: usize, end: usize) {
    for i in start..end.min(live.len()) {
        set(image, i, live.get(i).copied().unwrap_or(0));
    }
}

fn set(image: &mut Vec<u8>, i: usize, byte: u8) {
    if image.len() <= i {
        image.resize(i + 1, 0);
    }
    if let Some(b) = image.get_mut(i) {
        *b = byte;
    }
}

struct PlFile {
    disk: Arc<Mutex<Disk>>,
    ino: u64,
}

fn gone() -> io::Error {
    io::Error::other("power-loss fs: file lost in a cut")
}

impl FileHandle for PlFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let disk = lock(&self.disk);
        disk.alive()?;
        let inode = disk.inodes.get(&self.ino).ok_or_else(gone)?;
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        let data = inode.live.get(pos..).unwrap_or_default();
        let n = data.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(data.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.mutate()?;
        let inode = disk.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        let end = pos + buf.len();
        if inode.live.len() < end {
            inode.live.resize(end, 0);
        }
        inode
            .live
            .get_mut(pos..end)
            .unwrap_or_default()
            .copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.mutate()?;
        let inode = disk.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        inode.durable.clone_from(&inode.live);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        let disk = lock(&self.disk);
        disk.alive()?;
        let inode = disk.inodes.get(&self.ino).ok_or_else(gone)?;
        Ok(inode.live.len() as u64)
    }
}

impl FileSystem for PowerLossFs {
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn FileHandle>> {
        let mut disk = lock(&self.disk);
        disk.alive()?;
        if let Some(&ino) = disk.live.get(path) {
            return Ok(self.handle(ino));
        }
        if !write {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        disk.mutate()?;
        let ino = disk.next_inode;
        disk.next_inode += 1;
        disk.inodes.insert(ino, Inode::default());
        disk.live.insert(path.to_path_buf(), ino);
        Ok(self.handle(ino))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = lock(&self.disk);
        disk.alive()?;
        Ok(disk
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.mutate()?;
        disk.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.mutate()?;
        let ino = disk
            .live
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.live.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.mutate()?;
        // The directory's entries become durable as the process sees them; entries of other
        // directories keep their durable state.
        disk.durable.retain(|p, _| p.parent() != Some(dir));
        let entries: Vec<(PathBuf, u64)> = disk
            .live
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        disk.durable.extend(entries);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        lock(&self.disk).live.contains_key(path)
    }
}
