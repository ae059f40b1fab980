//! The commit path: frames encoded into the group's buffer, one write, the sync the durability
//! mode asks for, and the roll to the next segment when a frame does not fit.

use std::io;
use std::time::Instant;

use super::super::flusher::Flusher;
use super::super::format::{self, FrameHeader, SEGMENT_HEADER_LEN};
use super::super::metrics;
use super::super::options::Durability;
use super::super::prealloc::{Preallocator, Spare};
use super::super::segment::{activate, create_segment, Active, TAIL_PAD, TAIL_PAD_BYTES};
use super::super::state::SegInfo;
use super::finish::finish;
use super::group::Group;
use super::Writer;

/// In `Buffered`/`Interval` mode, writeback of the active segment is started in the background
/// every this many bytes, so that the roll's `fdatasync` does not write the whole segment.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// In `Buffered`/`Interval` mode, at most this many finished segments wait for their roll sync
/// (a roll waits for the oldest otherwise): bounds the unsynced log a crash can cut.
const MAX_PENDING_ROLLS: usize = 2;

impl Writer {
    /// Encodes one frame into the group, rolling to a new segment first if it does not fit.
    /// Returns the frame's segment and position.
    pub(super) fn emit(
        &mut self,
        g: &mut Group,
        frame: &FrameHeader,
        body: &[u8],
    ) -> io::Result<(u64, u64)> {
        self.emit_with(g, frame, body.len(), |b| b.extend_from_slice(body))
    }

    /// [`Writer::emit`] with the body (of `body_len` bytes) written by `body` straight into the
    /// group's buffer.
    pub(super) fn emit_with(
        &mut self,
        g: &mut Group,
        frame: &FrameHeader,
        body_len: usize,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<(u64, u64)> {
        let need = format::align((format::FRAME_HEADER_LEN + body_len) as u64);
        let marker = format::align(format::FRAME_HEADER_LEN as u64);
        if self.active.pos + g.buf.len() as u64 + need + marker > self.segment_bytes {
            self.roll(g)?;
        }
        if g.buf.is_empty() && self.active.durable > self.active.marked {
            // Record how far this segment is durable: recovery uses it to tell a torn tail from
            // damage in the middle.
            let durable = self.active.durable;
            let (seq, salt) = (self.active.seq, self.active.salt);
            let frame = FrameHeader::commit(seq, durable, 0, g.now);
            format::encode_frame(&mut g.buf, salt, &frame, &[]);
            self.active.marked = durable;
        }
        let pos = self.active.pos + g.buf.len() as u64;
        let start = g.buf.len();
        format::encode_frame_with(&mut g.buf, self.active.salt, frame, body);
        debug_assert_eq!(
            g.buf.len() - start,
            usize::try_from(need).unwrap_or(usize::MAX),
            "the frame's size was announced wrongly"
        );
        Ok((self.active.seq, pos))
    }

    /// Writes the group's buffer to the active segment (zero-filling ahead), and syncs it as the
    /// durability mode requires.
    pub(super) fn write_group(&mut self, g: &mut Group) -> io::Result<()> {
        if !g.buf.is_empty() {
            self.write_buf(g)?;
        }
        let sync = match self.durability {
            Durability::Sync => true,
            Durability::Interval(d) => self.last_sync.elapsed() >= d,
            Durability::Buffered => false,
        };
        if sync && self.unsynced() {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes the group's buffer at the active position. In `Sync`/`Interval` mode the segment was
    /// zero-filled and synced before it became active, so nothing else is written here.
    pub(super) fn write_buf(&mut self, g: &mut Group) -> io::Result<()> {
        let len = g.buf.len() as u64;
        let end = self.active.pos + len;
        g.written.push((self.active.seq, self.active.pos, len));
        if !self.fill {
            // A not zero-filled segment (`Buffered`) still ends in zeros after its last frame, so
            // that recovery can tell a file cut at a frame boundary from a complete one.
            g.buf.extend_from_slice(&[0u8; TAIL_PAD_BYTES]);
        }
        self.active.file.write_all_at(&g.buf, self.active.pos)?;
        self.active.pos = end;
        self.bytes_since_checkpoint += len;
        g.buf.clear();
        self.start_writeback();
        let ahead = self.fill || self.durability != Durability::Sync;
        if ahead && !self.prealloc_off && end >= self.segment_bytes / 8 {
            self.want_spare();
        }
        Ok(())
    }

    /// In `Buffered`/`Interval` mode, asks the flusher to start writeback of the active segment
    /// once enough was written since the last time (starting it on first use).
    pub(super) fn start_writeback(&mut self) {
        if self.durability == Durability::Sync || self.active.pos < self.kicked + WRITEBACK_BYTES {
            return;
        }
        if !self.started_flusher() {
            self.kicked = u64::MAX / 2;
            return;
        }
        if let Some(f) = &self.flusher {
            f.kick(self.active.file.clone());
        }
        self.kicked = self.active.pos;
    }

    /// Asks the preallocator for the next segment's file, or in `Buffered`/`Interval` mode for
    /// the next segment itself (starting it on first use).
    pub(super) fn want_spare(&mut self) {
        let activate = self.durability != Durability::Sync;
        if self.prealloc.is_none() {
            let len = if self.fill {
                self.segment_bytes
            } else {
                SEGMENT_HEADER_LEN + TAIL_PAD
            };
            match Preallocator::start(self.shared.opts.fs.clone(), &self.seg_dir, len, activate) {
                Ok(p) => self.prealloc = Some(p),
                Err(e) => {
                    // Not fatal: rolls prepare the next segment synchronously.
                    tracing::warn!(
                        "cannot start the segment preallocator ({e}); rolls prepare segments"
                    );
                    self.prealloc_off = true;
                    return;
                }
            }
        }
        if let Some(p) = &mut self.prealloc {
            p.request(self.active.seq + 1);
        }
    }

    /// The next active segment: the preallocator's spare if one is ready (in `Sync` mode never
    /// waiting for it), otherwise one prepared here. In `Buffered`/`Interval` mode a segment the
    /// preallocator is activating is waited for: it must not be created twice.
    pub(super) fn next_segment(&mut self, seq: u64) -> io::Result<Active> {
        let fs = self.shared.opts.fs.clone();
        let wait = self.durability != Durability::Sync;
        match self.prealloc.as_mut().and_then(|p| p.take(wait)) {
            Some(Spare::Segment(a)) if a.seq == seq => return Ok(a),
            Some(Spare::Segment(a)) => {
                return Err(io::Error::other(format!(
                    "the preallocator activated segment {} for the roll to {seq}",
                    a.seq
                )))
            }
            Some(Spare::File(file, path)) if self.fill => {
                return activate(fs.as_ref(), &self.seg_dir, seq, file.as_ref(), &path);
            }
            Some(Spare::File(..)) | None => {}
        }
        create_segment(
            fs.as_ref(),
            &self.seg_dir,
            seq,
            self.segment_bytes,
            self.fill,
        )
    }

    /// `fdatasync` of the active segment, after waiting for the roll syncs of finished segments.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        // Groups handed to the sync thread come first (their publish order, and `durable`).
        self.drain();
        {
            // Everything before the active segment first: segments finished by a roll in
            // `Buffered`/`Interval` mode are synced in the background, and the durable position
            // published below means "everything before this is on disk".
            if let Some(f) = &self.flusher {
                f.wait_rolls();
            }
            // Wait for a background sync in progress (writeback, a roll's, a checkpoint's); a
            // failure it saw (and the kernel may report only once) is this sync's failure. And
            // this sync's failure is recorded there, so that a background checkpoint waiting for
            // the lock cannot sync after it and take the log for durable.
            let flusher = self.flusher.as_ref();
            let mut failed = flusher.map(Flusher::lock);
            if let Some(e) = failed.as_ref().and_then(|f| (**f).clone()) {
                return Err(io::Error::other(format!("background sync: {e}")));
            }
            let file = &self.active.file;
            if let Err(e) = metrics::timed_sync(|| file.sync_data()) {
                if let (Some(flusher), Some(failed)) = (flusher, failed.as_mut()) {
                    flusher.record_failure(failed, &e);
                }
                return Err(e);
            }
        }
        self.active.durable = self.active.pos;
        self.last_sync = Instant::now();
        let shared = &self.shared;
        // In `Sync` mode publishing (after this sync) wakes readers; otherwise readers waiting
        // for durable records were woken by a publish before their records were synced.
        if self.durability == Durability::Sync {
            *shared.durable() = (self.active.seq, self.active.pos);
        } else {
            shared.publish_durable((self.active.seq, self.active.pos));
        }
        Ok(())
    }

    /// Finishes the active segment and starts the next one.
    ///
    /// In `Sync` mode the finished segment is synced here, before the next one starts. In
    /// `Buffered`/`Interval` mode its `fdatasync` is handed to the flusher thread and the next
    /// segment starts at once; the next segment begins with a `Commit` frame whose `aux` is the
    /// finished segment's end, so that recovery can tell a finished segment that lost its last
    /// bytes from a complete one (`recovery/`). Anything that claims durability (`sync`, and so
    /// checkpoints and close) waits for the pending roll syncs first.
    pub(super) fn roll(&mut self, g: &mut Group) -> io::Result<()> {
        // The finished segment's groups must all be synced and published before it is finished.
        self.drain();
        if !g.buf.is_empty() {
            self.write_buf(g)?;
        }
        let end = self.active.pos;
        let background = self.durability != Durability::Sync && self.roll_flusher()?;
        if !background {
            self.sync()?;
        }
        g.rolled.push((self.active.seq, end));
        // The next segment is created (small syncs of its own) before the finished one's sync is
        // queued: a sync issued while the disk writes out most of a segment waits behind it.
        let next = self.next_segment(self.active.seq + 1)?;
        if background {
            if let Some(f) = &self.flusher {
                // Backpressure: at most `MAX_PENDING_ROLLS` finished segments wait for their sync.
                f.wait_rolls_below(MAX_PENDING_ROLLS);
                // Once synced, everything before the new segment is durable: durable reads may
                // see the finished segment without waiting for the next sync.
                let (shared, durable) = (self.shared.clone(), (next.seq, SEGMENT_HEADER_LEN));
                let done = Box::new(move || shared.publish_durable(durable));
                f.roll(self.active.file.clone(), done);
            }
        }
        g.created.push((
            next.seq,
            SegInfo {
                salt: next.salt,
                readable: next.pos,
                damaged: false,
            },
        ));
        self.active = next;
        self.kicked = 0;
        if background {
            // Only the header of the new segment is durable; `aux` names the end of the finished
            // one (its frames end there). Not a durability claim about the finished segment.
            let (seq, salt) = (self.active.seq, self.active.salt);
            let frame = FrameHeader::commit(seq, SEGMENT_HEADER_LEN, end, g.now);
            format::encode_frame(&mut g.buf, salt, &frame, &[]);
        }
        Ok(())
    }

    /// The flusher, started if needed, for a roll sync in the background. `Ok(false)` if it
    /// cannot be started (the roll then syncs itself); an error if an earlier background sync
    /// failed (the group fails and the store is poisoned, as if this roll's sync had failed).
    pub(super) fn roll_flusher(&mut self) -> io::Result<bool> {
        if !self.started_flusher() {
            return Ok(false); // the roll syncs itself
        }
        if let Some(e) = self.flusher.as_ref().and_then(Flusher::failure) {
            return Err(io::Error::other(format!("background sync: {e}")));
        }
        Ok(true)
    }

    /// Whether something written is not known to be durable: the active segment past its synced
    /// position, or a finished segment whose roll sync is still pending.
    pub(super) fn unsynced(&self) -> bool {
        self.active.durable < self.active.pos
            || self.flusher.as_ref().is_some_and(|f| f.rolls_pending() > 0)
    }

    /// Makes the group visible: applies it to the shared state, wakes readers, answers waiters.
    pub(super) fn publish(&mut self, g: &mut Group) {
        let end = (self.active.seq, self.active.pos);
        finish(&self.shared, g, &mut self.touched, end, None);
    }
}
