//! Shared by the background-checkpoint tests (`local_checkpoint`, `local_checkpoint_sync`): a
//! file system that counts, holds or fails the syncs of the checkpoint file and of the segments
//! (by the thread they run on), and records how far the log was written and synced when each
//! checkpoint was written; plus the tests' store options and append/read helpers.
// Each test file uses part of this module; the rest would be dead code there.
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep::implementor::fs::{FileHandle, FileSystem};
use streamkeep::{
    AppendOptions, Durability, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore,
};

use crate::common::WrapFs;

/// Which syncs the probe fails or holds.
#[derive(Default)]
pub struct Probe {
    /// Hold the next syncs of `CHECKPOINT.tmp` until `release`.
    pub hold: Mutex<bool>,
    pub released: Condvar,
    /// Fail the next sync of `CHECKPOINT.tmp`.
    pub fail_checkpoint_file: AtomicBool,
    /// Fail the next sync of a segment (the only segment syncs of a small `Buffered` store
    /// without rolls or writeback kicks are a checkpoint's sync of the log).
    pub fail_segment: AtomicBool,
    /// A sync was failed: the threads it ran on, by name.
    pub failed_on: Mutex<Vec<String>>,
    /// Syncs of `CHECKPOINT.tmp` begun, and the threads they ran on.
    pub checkpoint_syncs: AtomicU64,
    pub checkpoint_threads: Mutex<Vec<String>>,
    /// `CHECKPOINT.tmp` opened after a sync was failed.
    pub checkpoints_after_failure: AtomicU64,
    /// The threads segment syncs ran on, by name.
    pub segment_threads: Mutex<Vec<String>>,
    /// Hold the segment syncs of `Sync` mode's sync thread (`streamstore-sync`): while the flag
    /// is set, each waits for a permit (the count), so that the groups handed to it stay in
    /// flight, unpublished, until `pass_sync_thread` or `release_sync_thread`.
    pub hold_sync_thread: Mutex<(bool, u64)>,
    pub sync_thread_released: Condvar,
    /// Syncs of the sync thread that waited for a permit.
    pub sync_thread_held: AtomicU64,
    /// Fail the next sync of the sync thread once it is let through.
    pub fail_sync_thread: AtomicBool,
    /// Writes to a segment on the writer thread after a sync was failed.
    pub writer_writes_after_failure: AtomicU64,
    /// The end `(segment, byte)` of the furthest write of log to a segment (zero-fills left
    /// out: buffers of zeros only).
    pub written: Mutex<(u64, u64)>,
    /// How far the log is synced: the furthest `written` seen when a segment sync that then
    /// succeeded began.
    pub synced: Mutex<(u64, u64)>,
    /// The end of the first write of at least [`BIG_WRITE`] bytes to a segment.
    pub big_end: Mutex<Option<(u64, u64)>>,
    /// Each checkpoint written (`CHECKPOINT.tmp`): its position, and `synced` and `written` then.
    pub checkpoints: Mutex<Vec<CheckpointSeen>>,
}

/// A segment write at least this long is the one big append of
/// `sync_mode_background_checkpoint_is_taken_at_the_published_position`.
pub const BIG_WRITE: usize = 256 << 10;

/// A checkpoint as the probe saw it written.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointSeen {
    pub position: (u64, u64),
    pub synced: (u64, u64),
    pub written: (u64, u64),
}

impl Probe {
    pub fn release(&self) {
        *self.hold.lock().unwrap() = false;
        self.released.notify_all();
    }

    /// Lets one held sync of the sync thread through (the one waiting, or the next).
    pub fn pass_sync_thread(&self) {
        self.hold_sync_thread.lock().unwrap().1 += 1;
        self.sync_thread_released.notify_all();
    }

    pub fn release_sync_thread(&self) {
        self.hold_sync_thread.lock().unwrap().0 = false;
        self.sync_thread_released.notify_all();
    }

    /// Run by a sync of the sync thread: waits (bounded) while held and no permit is left.
    fn sync_thread_gate(&self) {
        let mut h = self.hold_sync_thread.lock().unwrap();
        if !h.0 {
            return;
        }
        self.sync_thread_held.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while h.0 && h.1 == 0 && Instant::now() < deadline {
            h = self
                .sync_thread_released
                .wait_timeout(h, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        if h.0 && h.1 > 0 {
            h.1 -= 1;
        }
    }
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

struct ProbedFile {
    inner: Arc<dyn FileHandle>,
    probe: Arc<Probe>,
    checkpoint: bool,
    segment: bool,
    /// The segment's sequence number (segments only).
    seq: u64,
}

impl FileHandle for ProbedFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let p = &self.probe;
        if self.segment
            && thread_name() == "streamstore-writer"
            && !p.failed_on.lock().unwrap().is_empty()
        {
            p.writer_writes_after_failure.fetch_add(1, Ordering::SeqCst);
        }
        if self.checkpoint && buf.len() >= 40 {
            // magic, version, zero, body length; then the position.
            let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
            let seen = CheckpointSeen {
                position: (word(24), word(32)),
                synced: *p.synced.lock().unwrap(),
                written: *p.written.lock().unwrap(),
            };
            p.checkpoints.lock().unwrap().push(seen);
        }
        self.inner.write_all_at(buf, pos)?;
        if self.segment && buf.iter().any(|b| *b != 0) {
            let end = (self.seq, pos + buf.len() as u64);
            let mut w = p.written.lock().unwrap();
            *w = (*w).max(end);
            drop(w);
            if buf.len() >= BIG_WRITE {
                p.big_end.lock().unwrap().get_or_insert(end);
            }
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let p = &self.probe;
        let fail = (self.checkpoint && p.fail_checkpoint_file.swap(false, Ordering::SeqCst))
            || (self.segment && p.fail_segment.swap(false, Ordering::SeqCst));
        if fail {
            p.failed_on.lock().unwrap().push(thread_name());
            return Err(io::Error::other("injected EIO"));
        }
        if self.segment {
            let name = thread_name();
            if name == "streamstore-sync" {
                p.sync_thread_gate();
                if p.fail_sync_thread.swap(false, Ordering::SeqCst) {
                    p.failed_on.lock().unwrap().push(name);
                    return Err(io::Error::other("injected EIO"));
                }
            }
            p.segment_threads.lock().unwrap().push(name);
        }
        if self.checkpoint {
            p.checkpoint_threads.lock().unwrap().push(thread_name());
            p.checkpoint_syncs.fetch_add(1, Ordering::SeqCst);
            let mut held = p.hold.lock().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while *held && Instant::now() < deadline {
                held = p
                    .released
                    .wait_timeout(held, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        }
        let covered = *p.written.lock().unwrap();
        self.inner.sync_data()?;
        if self.segment {
            let mut synced = p.synced.lock().unwrap();
            *synced = (*synced).max(covered);
        }
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

pub fn probed_fs(probe: &Arc<Probe>) -> Arc<dyn FileSystem> {
    let probe = probe.clone();
    Arc::new(WrapFs(move |path: &Path, inner| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let checkpoint = name == "CHECKPOINT.tmp";
        if checkpoint && !probe.failed_on.lock().unwrap().is_empty() {
            probe
                .checkpoints_after_failure
                .fetch_add(1, Ordering::SeqCst);
        }
        Arc::new(ProbedFile {
            inner,
            probe: probe.clone(),
            checkpoint,
            segment: path.extension().is_some_and(|e| e == "seg"),
            seq: path
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        }) as Arc<dyn FileHandle>
    }))
}

pub fn options(probe: &Arc<Probe>, durability: Durability) -> LocalOptions {
    LocalOptions::default()
        .durability(durability)
        .checkpoint_interval(Duration::from_millis(20))
        .fs(probed_fs(probe))
}

pub fn payload(n: u64) -> Bytes {
    Bytes::from(format!("record {n} ").repeat(1 + usize::try_from(n % 7).unwrap()))
}

/// Appends one record to `s` and returns its offset.
pub async fn append(store: &LocalStore, s: &StreamId, n: u64) -> streamkeep::Result<u64> {
    let r = store
        .append(s, vec![payload(n)], AppendOptions::default())
        .await?;
    Ok(r.first_offset)
}

/// The records of `s` on a store, in order.
pub async fn read_all(store: &LocalStore, s: &StreamId) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let b = store.read(s, from, ReadOptions::limit(1000)).await.unwrap();
        if b.records.is_empty() {
            return out;
        }
        for r in &b.records {
            assert_eq!(r.offset, from, "gap at {from}");
            out.push(r.payload.clone());
            from += 1;
        }
    }
}
