//! Replay: each valid frame applied, in log order, to the streams being rebuilt.

use bytes::Bytes;

use crate::head::StreamHead;
use crate::types::{Incarnation, Record, Retention, StreamId};

use super::super::codec::{get_retention, Get};
use super::super::format::{self, FrameHeader, Kind};
use super::super::index::Point;
use super::super::stream::Stream;
use super::Rec;

impl Rec<'_> {
    /// Replays one valid frame.
    pub(super) fn apply(
        &mut self,
        h: &FrameHeader,
        body: &[u8],
        seq: u64,
        pos: u64,
        barrier: Option<u64>,
    ) {
        match h.kind {
            Kind::Commit => return,
            Kind::Open => {
                self.session = h.aux;
                return;
            }
            Kind::Create if !self.create(h, body, seq, pos) => return,
            _ => {}
        }
        let Some(id) = self.numbers.get(&h.stream).cloned() else {
            if h.kind != Kind::Delete {
                self.orphans += 1;
            }
            return;
        };
        self.last_seen.insert(h.stream, (seq, pos));
        if h.kind == Kind::Data && h.flags & format::FLAG_COPY != 0 {
            // A compaction copy: its points take over only when its `Moved` frame follows.
            let contiguous = true;
            self.moves.entry(h.stream).or_default().note_frame(
                Point {
                    offset: h.first,
                    cum: h.aux,
                    seg: seq,
                    pos,
                },
                contiguous,
                None,
            );
            return;
        }
        // Copies are followed by their `Moved` frame in the same group; any other frame of the
        // stream in between means the move never completed: forget its copies.
        let moved = self.moves.remove(&h.stream);
        if h.kind == Kind::Moved {
            if let (Some(points), Some(s)) = (moved, self.streams.get_mut(&id)) {
                let starts = points.get(0).map(|p| p.offset) == Some(h.first);
                if starts && h.first <= s.head.first_offset && h.aux == s.head.next_offset {
                    s.points = points;
                    s.points.trim(s.head.first_offset);
                }
            }
            return;
        }
        // Every stream frame says how far the stream reached; offsets missing before it were lost.
        let reached = match h.kind {
            Kind::Data | Kind::Seal | Kind::Retention | Kind::Reincarnate | Kind::Trim => h.first,
            _ => 0,
        };
        if self
            .streams
            .get(&id)
            .is_some_and(|s| reached > s.head.next_offset)
        {
            let next = self.streams.get(&id).map_or(0, |s| s.head.next_offset);
            self.lose(&id, next, reached);
        }
        self.apply_to(&id, h, body, seq, pos, barrier);
    }

    /// Replays a `Create` frame: a new incarnation of the stream it names. `false` if the id is
    /// unreadable (the frame is then skipped).
    fn create(&mut self, h: &FrameHeader, body: &[u8], seq: u64, pos: u64) -> bool {
        let Ok(id) = Get::new(body)
            .bytes16()
            .map_err(|_| ())
            .and_then(|b| StreamId::from_bytes(b).map_err(|_| ()))
        else {
            self.report.warnings.push(format!(
                "unreadable stream id at byte {pos} of segment {seq}"
            ));
            return false;
        };
        if let Some(old) = self.streams.remove(&id) {
            self.numbers.remove(&old.number);
        }
        let mut head = StreamHead::new(h.timestamp, Retention::default());
        head.incarnation = Incarnation(h.aux);
        self.streams.insert(id.clone(), Stream::new(h.stream, head));
        self.numbers.insert(h.stream, id);
        self.next_number = self.next_number.max(h.stream + 1);
        true
    }

    /// Replays a frame of stream `id` on its state.
    fn apply_to(
        &mut self,
        id: &StreamId,
        h: &FrameHeader,
        body: &[u8],
        seq: u64,
        pos: u64,
        barrier: Option<u64>,
    ) {
        let cap = self.opts.idempotency_keys;
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        match h.kind {
            Kind::Data => {
                if h.first < s.head.next_offset {
                    self.report.warnings.push(format!(
                        "a frame at byte {pos} of segment {seq} repeats offsets of {id:?}; ignored"
                    ));
                    return;
                }
                let contiguous = s.lost.last().is_none_or(|(_, b)| *b != h.first);
                let Ok(data) = format::decode_data_body(h, &Bytes::copy_from_slice(body)) else {
                    self.report.warnings.push(format!(
                        "undecodable data frame at byte {pos} of segment {seq}"
                    ));
                    return;
                };
                let bytes: u64 = data.records.iter().map(|r| r.len() as u64).sum();
                // The frame knows the cumulative count before it; it differs only after a loss.
                s.head.bytes = h.aux.saturating_sub(s.cum_first);
                s.head
                    .apply_append(u64::from(h.count), bytes, h.timestamp, data.key, cap);
                s.points.note_frame(
                    Point {
                        offset: h.first,
                        cum: h.aux,
                        seg: seq,
                        pos,
                    },
                    contiguous,
                    barrier,
                );
                let recs: Vec<Record> = data
                    .records
                    .into_iter()
                    .zip(h.first..)
                    .map(|(payload, offset)| Record {
                        offset,
                        timestamp_ms: h.timestamp,
                        payload,
                    })
                    .collect();
                s.push_tail(
                    &recs,
                    self.opts.tail_cache_records,
                    self.opts.tail_cache_bytes,
                );
            }
            Kind::Seal => {
                if s.head.sealed_ms.is_none() {
                    s.head.sealed_ms = Some(h.timestamp);
                }
            }
            Kind::Trim => {
                if h.first > s.head.first_offset {
                    let cum_next = s.cum_next();
                    s.head.first_offset = h.first.min(s.head.next_offset);
                    s.cum_first = h.aux;
                    s.head.bytes = cum_next.saturating_sub(h.aux);
                    s.points.trim(s.head.first_offset);
                    s.trim_tail();
                    s.trim_lost();
                }
            }
            Kind::Delete => {
                let number = s.number;
                self.streams.remove(id);
                self.numbers.remove(&number);
            }
            Kind::Retention => match get_retention(&mut Get::new(body)) {
                Ok(r) => s.head.retention = r,
                Err(_) => self.report.warnings.push(format!(
                    "undecodable retention at byte {pos} of segment {seq}"
                )),
            },
            Kind::Reincarnate => {
                s.head.incarnation = Incarnation(h.aux);
                s.clear_tail();
            }
            Kind::Create | Kind::Commit | Kind::Open | Kind::Moved => {}
        }
    }
}
