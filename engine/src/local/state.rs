//! The committed state every reader sees: streams (heads, points, tail caches) and segments.
//!
//! Only the writer thread (and recovery, before the writer starts) changes it, so the writer may
//! read it, decide, release the lock, do I/O, and lock again to publish without races.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use crate::head::StreamHead;
use crate::types::{Record, StreamId};

use super::index::Points;
use super::recovery::RecoveryReport;

/// One live stream.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    /// The internal number of this incarnation; frames name the stream by it.
    pub number: u64,
    /// Offsets, times, seal, retention and idempotency keys.
    pub head: StreamHead,
    /// Cumulative payload bytes of the incarnation before `head.first_offset` (trimmed bytes).
    pub cum_first: u64,
    /// The sparse index.
    pub points: Points,
    /// Offset ranges lost to corruption (`[start, end)`, ascending); reading them is `Corruption`.
    pub lost: Vec<(u64, u64)>,
    /// The newest records, contiguous and ending at `head.next_offset`.
    pub tail: VecDeque<Record>,
    /// Payload bytes in `tail`.
    pub tail_bytes: usize,
}

impl Stream {
    /// A stream with no records yet.
    pub fn new(number: u64, head: StreamHead) -> Self {
        Stream {
            number,
            head,
            cum_first: 0,
            points: Points::default(),
            lost: Vec::new(),
            tail: VecDeque::new(),
            tail_bytes: 0,
        }
    }

    /// Cumulative payload bytes before `head.next_offset`.
    pub fn cum_next(&self) -> u64 {
        self.cum_first + self.head.bytes
    }

    /// Adds newly committed records to the tail cache, keeping at most `max_records` records and
    /// `max_bytes` bytes (but always the newest record if it alone fits the byte limit).
    pub fn push_tail(&mut self, records: &[Record], max_records: usize, max_bytes: usize) {
        if let Some(first) = records.first() {
            // The cache must stay contiguous with the stream's end.
            if self
                .tail
                .back()
                .is_some_and(|b| b.offset + 1 != first.offset)
            {
                self.clear_tail();
            }
        }
        for r in records {
            self.tail_bytes += r.payload.len();
            self.tail.push_back(r.clone());
        }
        while self.tail.len() > max_records || self.tail_bytes > max_bytes {
            match self.tail.pop_front() {
                Some(r) => self.tail_bytes -= r.payload.len(),
                None => break,
            }
        }
    }

    /// Drops cached records below the first offset.
    pub fn trim_tail(&mut self) {
        while self
            .tail
            .front()
            .is_some_and(|r| r.offset < self.head.first_offset)
        {
            if let Some(r) = self.tail.pop_front() {
                self.tail_bytes -= r.payload.len();
            }
        }
    }

    /// Empties the tail cache.
    pub fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }

    /// The lost range containing `offset`, if any.
    pub fn lost_at(&self, offset: u64) -> Option<(u64, u64)> {
        self.lost
            .iter()
            .copied()
            .find(|(a, b)| *a <= offset && offset < *b)
    }

    /// The start of the first lost range above `offset`.
    pub fn lost_after(&self, offset: u64) -> Option<u64> {
        self.lost.iter().map(|(a, _)| *a).find(|a| *a > offset)
    }

    /// Drops lost ranges wholly below the first offset.
    pub fn trim_lost(&mut self) {
        let first = self.head.first_offset;
        self.lost.retain(|(_, b)| *b > first);
    }
}

/// What readers need to know about a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegInfo {
    /// CRC seed of its frames.
    pub salt: u32,
    /// End of the committed frames: readers never look past it.
    pub readable: u64,
    /// Recovery found the segment unreadable (bad header): every read of it is `Corruption`.
    pub damaged: bool,
}

/// Everything readers share with the writer.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Live streams by id.
    pub streams: BTreeMap<StreamId, Stream>,
    /// Existing segments by sequence number.
    pub segments: BTreeMap<u64, SegInfo>,
    /// Set by the first failed write or sync; every later write fails with `Poisoned`.
    pub poisoned: Option<String>,
    /// Set by `close`.
    pub closed: bool,
    /// What the last open found.
    pub report: RecoveryReport,
    /// Payload bytes in all tail caches.
    pub tail_total: usize,
    /// Where the round-robin eviction of tail caches continues.
    pub evict_after: Option<StreamId>,
}

impl State {
    /// Empties tail caches, round-robin over the streams, until all of them together hold at
    /// most `cap` bytes.
    pub fn evict_tails(&mut self, cap: usize) {
        let mut steps = 0usize;
        while self.tail_total > cap {
            steps += 1;
            if steps > self.streams.len() + 1 {
                // The running total drifted: recount (never loop forever).
                self.tail_total = self.streams.values().map(|s| s.tail_bytes).sum();
                if self.tail_total > cap {
                    for s in self.streams.values_mut() {
                        s.clear_tail();
                    }
                    self.tail_total = 0;
                }
                break;
            }
            let next = self
                .evict_after
                .as_ref()
                .and_then(|after| {
                    self.streams
                        .range((Bound::Excluded(after.clone()), Bound::Unbounded))
                        .next()
                        .map(|(k, _)| k.clone())
                })
                .or_else(|| self.streams.keys().next().cloned());
            let Some(id) = next else {
                self.tail_total = 0;
                break;
            };
            if let Some(s) = self.streams.get_mut(&id) {
                self.tail_total = self.tail_total.saturating_sub(s.tail_bytes);
                s.clear_tail();
            }
            self.evict_after = Some(id);
        }
    }
}
