//! Damage: cutting the log where its durable part ended, quarantining damaged bytes, and
//! recording the offsets they held as lost.

use std::io;

use crate::error::{Error, ErrorKind, Result};
use crate::types::StreamId;

use super::super::format::SegmentHeader;
use super::super::fs::segment_path;
use super::super::report::{LostRange, Quarantine, TornTail};
use super::scan::count_all_frames;
use super::{Cut, Rec};

impl Rec<'_> {
    /// Ends the log at `c.pos` of segment `seq`: removes every later segment (the newest first,
    /// so that a crash in between leaves the same cut to find again), then zeros the bytes after
    /// the cut, both durably.
    pub(super) fn apply_cut(&mut self, seq: u64, c: &Cut) -> Result<()> {
        let io = |what: &str, e: io::Error| {
            Error::new(ErrorKind::Unavailable, format!("recovery: {what}")).with_source(e)
        };
        let later: Vec<u64> = self.seqs.iter().copied().filter(|m| *m > seq).collect();
        let mut frames = c.frames;
        for &m in later.iter().rev() {
            if let Ok(data) = self.read_segment(m) {
                if let Ok(h) = SegmentHeader::decode(&data) {
                    frames += count_all_frames(&data, h.salt());
                }
            }
            self.fs
                .remove(&segment_path(self.seg_dir, m))
                .map_err(|e| io("removing a segment after the cut", e))?;
            self.report.dropped_segments.insert(0, m);
        }
        if !later.is_empty() {
            self.fs
                .sync_dir(self.seg_dir)
                .map_err(|e| io("syncing the segment directory", e))?;
        }
        if c.bytes > 0 {
            let file = self
                .fs
                .open(&segment_path(self.seg_dir, seq), true)
                .map_err(|e| io("opening a segment to cut it", e))?;
            let zeros = vec![0u8; usize::try_from(c.bytes).unwrap_or(0)];
            file.write_all_at(&zeros, c.pos)
                .and_then(|()| file.sync_data())
                .map_err(|e| io("cutting a finished segment", e))?;
        }
        eprintln!(
            "streamstore: the log ends at byte {} of segment {seq}, whose roll sync by a \
             non-Sync session was not proven complete; dropped {frames} frames after it and \
             segments {later:?}",
            c.pos
        );
        self.report.torn_tail = Some(TornTail {
            segment: seq,
            position: c.pos,
            bytes: c.bytes,
            dropped_frames: frames,
        });
        Ok(())
    }

    /// Records offsets `[a, b)` of `id` as lost and moves its end past them.
    pub(super) fn lose(&mut self, id: &StreamId, a: u64, b: u64) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        // Everything from the stream's current end up to `b` is missing.
        let _ = a;
        let a = s.head.next_offset;
        if b <= a {
            return;
        }
        s.lost.push((a, b));
        s.head.next_offset = b;
        s.clear_tail();
        self.report.lost.push(LostRange {
            stream: id.clone(),
            start: a,
            end: b,
        });
        eprintln!("streamstore: offsets {a}..{b} of stream {id:?} were lost to damage");
    }

    pub(super) fn quarantine(
        &mut self,
        seq: u64,
        start: u64,
        end: u64,
        data: &[u8],
        reason: String,
    ) {
        let qdir = self.dir.join("quarantine");
        let path = qdir.join(format!("{seq:020}-{start}.bin"));
        let bytes = data
            .get(
                usize::try_from(start).unwrap_or(usize::MAX)
                    ..usize::try_from(end).unwrap_or(usize::MAX),
            )
            .unwrap_or_default();
        let saved = std::fs::create_dir_all(&qdir)
            .and_then(|()| {
                let f = self.fs.open(&path, true)?;
                f.write_all_at(bytes, 0)?;
                f.sync_data()
            })
            .is_ok();
        eprintln!("streamstore: quarantined bytes {start}..{end} of segment {seq}: {reason}");
        self.report.quarantined.push(Quarantine {
            segment: seq,
            start,
            end,
            reason,
            saved_to: saved.then_some(path),
        });
    }
}
