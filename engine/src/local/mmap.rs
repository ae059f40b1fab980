//! Memory maps of finished segments: the engine's only `unsafe` code.
//!
//! A segment is mapped only once it is finished (a newer segment exists): from then on no byte of
//! it below its readable length is ever written again, by this process or (the directory is locked
//! with `flock`) by another streamstore process. Recovery rewrites only the last segment, and only
//! before the store serves reads. Collection deletes finished segments with `unlink`, which leaves
//! existing maps valid until they are dropped.
//!
//! What a map cannot defend against: another program truncating a segment file while it is
//! mapped turns a read of the lost pages into `SIGBUS`. Every mmap-based store shares that limit
//! (LMDB, redb's mmap backend); `LocalOptions::mmap_reads = false` reads with `pread` only.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// A read-only map of the first `len` bytes of a finished segment.
pub(crate) struct Mapped {
    map: memmap2::Mmap,
}

impl Mapped {
    /// Maps `[0, len)` of `file`, which must be a finished segment at least `len` bytes long.
    pub fn new(file: &File, len: u64) -> io::Result<Mapped> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a segment file is shorter than its readable length",
            ));
        }
        // SAFETY: `memmap2::Mmap` is unsafe because the mapped file could change underneath the
        // returned slice. Here the file is a finished segment (see the module docs): nothing in
        // this process writes or truncates `[0, len)` again, the directory lock keeps other
        // streamstore processes out, and the length was checked just above, so every page of the
        // map is backed by the file. The map is read-only (`PROT_READ`), so no aliasing `&mut`
        // exists.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        // Reads of a finished segment walk frames forward; tell the kernel so.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Mapped { map })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
