//! Maintenance on the writer thread: compaction (moving the few live records that keep old
//! segments alive) after a checkpoint. Checkpoints and the collection of dead segments are in
//! `checkpoint.rs`.

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::types::StreamId;
use crate::validate::now_ms;

use super::super::format::{self, FrameHeader, FLAG_COPY};
use super::super::index::{Point, Points};
use super::super::reader::{plan_for, scan};
use super::group::Group;
use super::Writer;

impl Writer {
    /// Compaction: rewrites the live records of small streams that keep mostly-dead old segments
    /// alive into the active segment (as `FLAG_COPY` frames and a `Moved` frame), so that the next
    /// checkpoint can delete those segments. Bounded per call.
    pub(super) fn compact(&mut self) -> io::Result<()> {
        const MAX_STREAM_BYTES: u64 = 4 << 20;
        const MAX_TOTAL_BYTES: u64 = 16 << 20;
        let candidates: Vec<StreamId> = {
            let st = self.state();
            let mut live: HashMap<u64, u64> = HashMap::new();
            let mut pins: HashMap<u64, Vec<&StreamId>> = HashMap::new();
            for (id, s) in &st.streams {
                let pts: Vec<Point> = s.points.iter().copied().collect();
                for (i, p) in pts.iter().enumerate() {
                    let end = pts.get(i + 1).map_or(s.cum_next(), |q| q.cum);
                    *live.entry(p.seg).or_default() += end.saturating_sub(p.cum.max(s.cum_first));
                    if p.seg < self.active.seq {
                        pins.entry(p.seg).or_default().push(id);
                    }
                }
            }
            let mut out: Vec<StreamId> = Vec::new();
            let mut total = 0u64;
            for (seg, ids) in pins {
                if live.get(&seg).copied().unwrap_or(0).saturating_mul(4) >= self.segment_bytes {
                    continue; // still mostly live
                }
                for id in ids {
                    let Some(s) = st.streams.get(id) else {
                        continue;
                    };
                    if s.head.bytes > MAX_STREAM_BYTES || !s.lost.is_empty() || out.contains(id) {
                        continue;
                    }
                    if total + s.head.bytes > MAX_TOTAL_BYTES {
                        break;
                    }
                    total += s.head.bytes;
                    out.push(id.clone());
                }
            }
            out
        };
        for id in candidates {
            self.move_stream(&id)?;
        }
        Ok(())
    }

    /// Copies the live records of `id` into the active segment and points its index there.
    ///
    /// Reads the stream from the committed state, so it first waits for the groups handed to the
    /// sync thread (`Sync` mode): one of them may hold records of `id`. Moved without them, the
    /// `Moved` frame would end before the stream's head and the new index, which replaces the
    /// old one, would lack their points once they are published — those records unreachable,
    /// and after a crash too once a checkpoint holds that index (issue 15: compaction after a
    /// background checkpoint runs right after a group was handed over). If one of them failed,
    /// the store is poisoned and nothing is moved: a poisoned store writes nothing more.
    pub(super) fn move_stream(&mut self, id: &StreamId) -> io::Result<()> {
        self.drain();
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let (plan, number, first, next) = {
            let st = self.state();
            let Some(s) = st.streams.get(id) else {
                return Ok(());
            };
            let (first, next) = (s.head.first_offset, s.head.next_offset);
            if first >= next {
                return Ok(());
            }
            (plan_for(&st, s, first, next), s.number, first, next)
        };
        let mut records: Vec<(u64, u64, u64, Bytes)> = Vec::new();
        let read = scan(&self.shared.files, &plan, |off, ts, cum, payload| {
            records.push((off, ts, cum, payload));
            ControlFlow::Continue(())
        });
        if let Err(e) = read {
            let counters = &self.shared.counters;
            counters.compactions_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("compaction skipped {id:?}: {e}");
            return Ok(());
        }
        let mut g = Group::at(now_ms());
        let mut points = Vec::new();
        let mut chunk: Vec<Bytes> = Vec::new();
        let mut head: Option<(u64, u64, u64)> = None; // offset, timestamp, cum of the chunk
        let mut chunk_bytes = 0usize;
        let mut flush =
            |w: &mut Self, g: &mut Group, chunk: &mut Vec<Bytes>, head: (u64, u64, u64)| {
                let mut body = Vec::new();
                format::encode_data_body(&mut body, None, chunk);
                let count = u32::try_from(chunk.len()).map_err(io::Error::other)?;
                // `head`: the chunk's first offset, timestamp and cumulative bytes.
                let frame = FrameHeader::data(number, head.0, head.2, head.1, count);
                let (seg, pos) = w.emit(g, &frame.with_flags(FLAG_COPY), &body)?;
                points.push(Point {
                    offset: head.0,
                    cum: head.2,
                    seg,
                    pos,
                });
                chunk.clear();
                Ok::<(), io::Error>(())
            };
        for (off, ts, cum, payload) in records {
            // One frame holds records of one timestamp, at most 1000 of them and about 1 MiB.
            if let Some(h) = head {
                if h.1 != ts || chunk.len() >= 1000 || chunk_bytes + payload.len() > 1 << 20 {
                    flush(self, &mut g, &mut chunk, h)?;
                    head = None;
                    chunk_bytes = 0;
                }
            }
            head.get_or_insert((off, ts, cum));
            chunk_bytes += payload.len();
            chunk.push(payload);
        }
        if let Some(h) = head {
            flush(self, &mut g, &mut chunk, h)?;
        }
        self.emit(
            &mut g,
            &FrameHeader::moved(number, first, next, now_ms()),
            &[],
        )?;
        self.write_group(&mut g)?;
        if self.active.durable < self.active.pos {
            self.sync()?;
        }
        self.publish(&mut g);
        let mut st = self.state();
        if let Some(s) = st.streams.get_mut(id) {
            let mut index = Points::default();
            for p in points {
                index.note_frame(p, true, None);
            }
            s.points = index;
        }
        Ok(())
    }
}
