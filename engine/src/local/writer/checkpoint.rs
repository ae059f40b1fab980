//! Checkpoints, made on the writer thread (`LocalStore::checkpoint`, close, or without a flusher
//! thread) or, when one falls due, in the background on the flusher thread; and the
//! collection of segments no live record needs, which follows each checkpoint.
//!
//! **Invariant (both ways):** a checkpoint only ever describes log that is durable before the
//! checkpoint itself is: its file is created only after the log up to its position was synced
//! (every segment before the position's, and the position's segment up to it), with success, and
//! with no sync failure recorded or poisoning since. Recovery relies on it twice: it replays only
//! the log after the position, and it takes the position as proof that the bytes before it are
//! durable (damage there is quarantined, not cut as a torn tail). A segment is deleted only after
//! the checkpoint that made it unnecessary was synced with its directory.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::super::checkpoint;
use super::super::flusher::{CheckpointWork, Flusher};
use super::super::fs::segment_path;
use super::super::index::Points;
use super::super::options::Durability;
use super::super::shared::Shared;
use super::super::streams::SharedStreams;
use super::Writer;

/// A checkpoint as the writer takes it, under the state lock and without encoding it: the
/// committed state's streams (shared with the live state, copy-on-write: `Streams::share`), the
/// log position that state describes (`State::published`), and the segments that may go once it
/// is durable unless a stream of it still names them. Encoded by [`Taken::encode`], on the
/// flusher thread for a background checkpoint.
struct Taken {
    position: (u64, u64),
    next_number: u64,
    durability: u64,
    streams: SharedStreams,
    /// Existing segments below `floor`, ascending.
    candidates: Vec<u64>,
    floor: u64,
    /// The encoding buffer's size (the last checkpoint's, with room to grow).
    capacity: usize,
    /// Where the encoded size goes (the writer sizes the next checkpoint's buffer and interval
    /// from it).
    len: Arc<AtomicU64>,
}

/// A checkpoint to be written: its bytes (without their CRC: the writing thread adds it,
/// `checkpoint::seal`), its position, and the segments that may be deleted once it is durable.
struct Snapshot {
    bytes: Vec<u8>,
    position: (u64, u64),
    dead: Vec<u64>,
}

impl Taken {
    /// Encodes the checkpoint and chooses the dead segments: the candidates no stream of this
    /// state names. Chosen against this state, not the one current when they are deleted: a
    /// trim or delete decided meanwhile is not in this checkpoint, and a segment only it freed
    /// may still be needed by a recovery from this checkpoint. A segment no stream of this state
    /// names stays unnamed (new frames go to the active segment; compaction moves points there).
    fn encode(self) -> Snapshot {
        let bytes = checkpoint::encode_unsealed(
            self.position.0,
            self.position.1,
            self.next_number,
            self.durability,
            &self.streams,
            self.capacity,
        );
        let dead = if self.candidates.is_empty() {
            Vec::new()
        } else {
            let points = self.streams.values().map(|s| &s.points);
            still_dead(self.candidates, points, self.floor)
        };
        self.len.store(bytes.len() as u64 + 4, Ordering::Relaxed); // and its CRC
        Snapshot {
            bytes,
            position: self.position,
            dead,
        }
    }
}

/// A checkpoint is due after `checkpoint_bytes` of log, or after this many times the size of the
/// last checkpoint if that is more: with many streams a checkpoint is large (~170 B per stream;
/// 16 MiB and ~140 ms at 100,000 streams), and this keeps its cost a small share of the writing.
const CHECKPOINT_SIZE_FACTOR: u64 = 16;

impl Writer {
    /// Syncs the log, writes a checkpoint at the current position and deletes segments no live
    /// record needs any more, here on the writer thread (after a background checkpoint in
    /// progress, if any: one at a time, in order).
    ///
    /// A poisoned store writes nothing more: a checkpoint requested in a group that the sync
    /// thread failed is refused here, after the drain that waited for that failure (the file's
    /// next `fsync` would "succeed" on pages whose write-back failed, and the checkpoint would
    /// name them durable; collection and compaction would follow).
    pub(crate) fn checkpoint(&mut self) -> io::Result<()> {
        if let Some(f) = &self.flusher {
            f.wait_checkpoint();
            // This checkpoint compacts itself: the background one's outcome is moot now.
            let _ = f.take_checkpoint_done();
        }
        self.drain();
        if let Some(p) = self.state().poisoned.clone() {
            return Err(io::Error::other(p));
        }
        if self.unsynced() {
            self.sync()?;
        }
        let taken = self
            .take()
            .ok_or_else(|| io::Error::other("the store is poisoned"))?;
        debug_assert_eq!(
            taken.position,
            (self.active.seq, self.active.pos),
            "drained: every group written is published"
        );
        write_and_collect(&self.shared, &self.dir, &self.seg_dir, taken.encode())?;
        self.compact()
    }

    /// Checkpoints if one is due (after every group, and on the timer, so that it happens under
    /// constant load too): in the background, or here without a flusher thread. Also
    /// takes the outcome of a background checkpoint that ended, and compacts after it.
    pub(super) fn checkpoint_if_due(&mut self) {
        if self.state().poisoned.is_some() {
            return;
        }
        if let Some(done) = self
            .flusher
            .as_ref()
            .and_then(Flusher::take_checkpoint_done)
        {
            // A failed one poisoned the store already (its work did). In `Sync` mode groups may be
            // in flight with the sync thread here (this runs right after a group was handed
            // over): the compaction waits for them before it moves a stream (`move_stream`).
            if done {
                if let Err(e) = self.compact() {
                    self.poison(&e, "checkpoint");
                    return;
                }
            }
        }
        let interval = self.shared.opts.checkpoint_interval;
        let last_len = self.checkpoint_len.load(Ordering::Relaxed);
        let size = (self.shared.opts.checkpoint_bytes)
            .max(last_len.saturating_mul(CHECKPOINT_SIZE_FACTOR));
        let age = self.last_checkpoint.elapsed();
        let due = self.bytes_since_checkpoint > 0
            && (age >= interval || self.bytes_since_checkpoint >= size);
        if !due {
            return;
        }
        if self.started_flusher() {
            // One at a time: a checkpoint due while one is in progress is made after it.
            if !self.flusher.as_ref().is_some_and(Flusher::checkpoint_busy) {
                self.checkpoint_in_background();
            }
            return;
        }
        // Here on the writer only without a flusher thread (it could not be started), when no
        // roll sync can be pending either. The wait below is for a
        // flusher's roll sync: a checkpoint that falls due while one runs waits until it is done
        // (a later group or the timer), since its own sync would wait for it, stalling every
        // append. `Checkpoint` and `Close` operations never wait for this. Bounded: at twice its
        // size or interval it no longer waits.
        let roll_syncing = self.flusher.as_ref().is_some_and(|f| f.rolls_pending() > 0);
        let overdue = age >= interval * 2 || self.bytes_since_checkpoint >= size.saturating_mul(2);
        if !roll_syncing || overdue {
            if let Err(e) = self.checkpoint() {
                self.poison(&e, "checkpoint");
            }
        }
    }

    /// Hands a checkpoint of the committed state to the flusher thread, which encodes it, syncs
    /// the log up to its position (after the roll syncs queued before it; in `Sync` mode there is
    /// nothing to sync), then writes it and deletes the segments it made unnecessary, while this
    /// thread goes on appending. Here only the state is taken, under the state lock: a shared
    /// copy of the streams and the position it describes. A failure on the flusher poisons the
    /// store there; the writer learns it at its next group.
    ///
    /// In `Sync` mode (issue 15) this waits for nothing: the committed state is published only
    /// after the `fdatasync` covering it, so its position (`State::published`) lies before the
    /// groups still in flight with the sync thread, and every byte before it is durable. The
    /// checkpoint describes that state at that position; the groups in flight are replayed from
    /// the log after it. The writer used to drain the sync thread first (one commit sync of
    /// waiting) and encode here (8–22 ms at 10,000 streams), every append queued meanwhile.
    fn checkpoint_in_background(&mut self) {
        let Some(taken) = self.take() else {
            return; // poisoned: nothing more is written
        };
        // `Buffered`/`Interval`: the position is the active one (these modes publish right after
        // the write), the segments before it were handed to the flusher's roll syncs, queued
        // before this checkpoint.
        let log = (self.durability != Durability::Sync).then(|| self.active.file.clone());
        let shared = self.shared.clone();
        let (dir, seg_dir) = (self.dir.clone(), self.seg_dir.clone());
        let work: CheckpointWork = Box::new(move |synced: io::Result<()>| {
            let made = synced.and_then(|()| {
                let snap = taken.encode();
                // The log is durable up to the position, unless the store was poisoned meanwhile:
                // a write-back failure reported to another thread's sync (an erasure) after ours
                // could have hidden pages before the position. Checked after the sync: a poison
                // set before it is seen here, and a failure after it cannot concern our sync. In
                // `Sync` mode a failed group after the position poisons the store as well: the
                // checkpoint is refused then too (a poisoned store writes nothing more).
                if shared.poisoned.load(Ordering::Acquire) {
                    return Err(io::Error::other("the store is poisoned"));
                }
                shared.publish_durable(snap.position);
                write_and_collect(&shared, &dir, &seg_dir, snap)
            });
            if let Err(e) = &made {
                if !shared.poisoned.load(Ordering::Acquire) {
                    shared.poison(e, "checkpoint");
                }
            }
            made
        });
        if let Some(f) = &self.flusher {
            f.checkpoint(log, work);
        }
    }

    /// Takes a checkpoint of the committed state, under the state lock (`None` if the store is
    /// poisoned): its streams, shared (a copy of pointers, see `Streams::share`), the position it
    /// describes, and the segments that may go; the checkpoint bookkeeping moves on to it.
    ///
    /// Only segments before the previous checkpoint's segment are candidates: recovery falls
    /// back to `CHECKPOINT.prev` when `CHECKPOINT` is unreadable, and scans from its position.
    fn take(&mut self) -> Option<Taken> {
        let (position, streams, candidates, floor) = {
            let st = self.state();
            if st.poisoned.is_some() {
                return None;
            }
            let position = st.published;
            let floor = self.prev_checkpoint_seg.min(position.0);
            let old = |seq: &u64| *seq < floor;
            let candidates: Vec<u64> = st.segments.keys().copied().filter(old).collect();
            (position, st.streams.share(), candidates, floor)
        };
        // Sized from the last checkpoint, with room to grow by an eighth.
        let last = usize::try_from(self.checkpoint_len.load(Ordering::Relaxed)).unwrap_or(0);
        self.prev_checkpoint_seg = position.0;
        self.last_checkpoint = Instant::now();
        // Groups in flight after the position (`Sync` mode) are not counted towards the next
        // checkpoint: a few groups against `checkpoint_bytes`, and counting them would make the
        // next one due at once, at the same position, while the sync thread is slow.
        self.bytes_since_checkpoint = 0;
        Some(Taken {
            position,
            next_number: self.next_number,
            durability: self.durability.code(),
            streams,
            candidates,
            floor,
            capacity: last.saturating_add(last / 8).saturating_add(4096),
            len: self.checkpoint_len.clone(),
        })
    }

    /// The flusher thread, started if needed; `false` if it cannot be started.
    pub(super) fn started_flusher(&mut self) -> bool {
        if self.flusher.is_none() {
            match Flusher::start() {
                Ok(f) => self.flusher = Some(f),
                Err(e) => {
                    tracing::warn!("cannot start the writeback thread ({e})");
                    return false;
                }
            }
        }
        true
    }
}

/// The segments of `candidates` (below `floor`, ascending) that no stream's points name.
///
/// A stream's points ascend by log position, so only its leading ones can name a segment below
/// the floor; and the walk stops once every candidate is named (the usual case when old segments
/// still hold live records). A walk of every point into a hash set cost 7–10 ms of the writer's
/// time at 10,000 streams (issue 15).
fn still_dead<'a>(
    mut candidates: Vec<u64>,
    points: impl Iterator<Item = &'a Points>,
    floor: u64,
) -> Vec<u64> {
    candidates.sort_unstable();
    let mut named = vec![false; candidates.len()];
    let mut left = candidates.len();
    'streams: for pts in points {
        for seg in pts.iter().map(|p| p.seg).take_while(|s| *s < floor) {
            if let Ok(i) = candidates.binary_search(&seg) {
                if let Some(n) = named.get_mut(i).filter(|n| !**n) {
                    *n = true;
                    left -= 1;
                    if left == 0 {
                        break 'streams;
                    }
                }
            }
        }
    }
    candidates
        .into_iter()
        .zip(named)
        .filter_map(|(seg, named)| (!named).then_some(seg))
        .collect()
}

/// A checkpoint's file (its CRC computed here) and collection, once the log up to its position is
/// durable.
fn write_and_collect(
    shared: &Shared,
    dir: &Path,
    seg_dir: &Path,
    mut snap: Snapshot,
) -> io::Result<()> {
    checkpoint::seal(&mut snap.bytes);
    checkpoint::write(shared.opts.fs.as_ref(), dir, &snap.bytes)?;
    remove_segments(shared, seg_dir, &snap.dead)
}

/// Deletes segments `dead` (chosen by [`Taken::encode`] for a checkpoint that is durable now):
/// out of the shared state and the readers' caches first, then their files, then the directory
/// synced. A crash in the middle leaves some of them; the next checkpoint deletes them again.
fn remove_segments(shared: &Shared, seg_dir: &Path, dead: &[u64]) -> io::Result<()> {
    if dead.is_empty() {
        return Ok(());
    }
    {
        let mut st = shared.state();
        for seq in dead {
            st.segments.remove(seq);
        }
    }
    let fs = shared.opts.fs.as_ref();
    for seq in dead {
        shared.files.forget(*seq);
        if let Err(e) = fs.remove(&segment_path(seg_dir, *seq)) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    fs.sync_dir(seg_dir)
}

#[cfg(test)]
mod tests {
    use super::super::super::index::Point;
    use super::*;

    /// Points of one stream in segments `segs` (ascending), one frame each.
    fn points(segs: &[u64]) -> Points {
        let mut p = Points::default();
        for (i, &seg) in segs.iter().enumerate() {
            let i = i as u64;
            p.note_frame(
                Point {
                    offset: i,
                    cum: i,
                    seg,
                    pos: 64,
                },
                true,
                None,
            );
        }
        p
    }

    #[test]
    fn still_dead_keeps_the_segments_no_stream_names() {
        let streams = [points(&[2, 5, 7]), points(&[4, 7]), points(&[])];
        // Candidates below the floor 6, unsorted: 1, 3 are named by nobody; 2, 4, 5 are named.
        let dead = still_dead(vec![5, 1, 4, 3, 2], streams.iter(), 6);
        assert_eq!(dead, vec![1, 3]);
        // Nothing named: every candidate stays dead.
        let none = [points(&[9])];
        assert_eq!(still_dead(vec![3, 1], none.iter(), 6), vec![1, 3]);
        // Every candidate named by the first stream: the walk may stop there.
        assert!(still_dead(vec![2, 5], streams.iter(), 6).is_empty());
    }
}
