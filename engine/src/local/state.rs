//! The committed state every reader sees: streams (heads, points, tail caches) and segments.
//!
//! Only the writer thread (and recovery, before the writer starts) changes it, so the writer may
//! read it, decide, release the lock, do I/O, and lock again to publish without races.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::head::StreamHead;
use crate::types::{Record, StreamId};

use super::index::Points;
use super::report::RecoveryReport;
use super::small::SmallDeque;

pub(crate) use super::streams::Streams;

/// One live stream.
///
/// Kept small because every idle stream costs its `Stream` (see docs/benchmarks.md, "100,000 idle
/// streams"): the parts most streams never use (lost ranges; idempotency keys inside `head`) take
/// one pointer until used, and the index and the tail cache hold their first element inline.
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
    pub lost: Lost,
    /// The newest records, contiguous and ending at `head.next_offset`.
    pub tail: SmallDeque<Record>,
    /// What `tail` costs, as counted against the tail cache limits: payload bytes plus
    /// [`TAIL_RECORD_COST`] per record.
    pub tail_bytes: usize,
}

/// What a cached record costs beyond its payload: the `Record` itself (offset, timestamp and the
/// payload's `Bytes` handle). Counted so that `tail_cache_total_bytes` bounds the memory of many
/// small records too, not only their payload.
pub(crate) const TAIL_RECORD_COST: usize = std::mem::size_of::<Record>();

impl Stream {
    /// A stream with no records yet, boxed for [`Streams`].
    pub fn new(number: u64, head: StreamHead) -> Box<Self> {
        Box::new(Stream {
            number,
            head,
            cum_first: 0,
            points: Points::default(),
            lost: Lost::default(),
            tail: SmallDeque::default(),
            tail_bytes: 0,
        })
    }

    /// Cumulative payload bytes before `head.next_offset`.
    pub fn cum_next(&self) -> u64 {
        self.cum_first + self.head.bytes
    }

    /// Adds newly committed records to the tail cache, keeping at most `max_records` records and
    /// `max_bytes` payload bytes (but always the newest record if it alone fits the byte limit).
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
        // Only the records that can stay: the newest `max_records` (pushing and popping the
        // others would only churn the queue's buffer).
        let skip = records.len().saturating_sub(max_records);
        for r in records.iter().skip(skip) {
            self.tail_bytes += r.payload.len() + TAIL_RECORD_COST;
            self.tail.push_back(r.clone());
        }
        while self.tail.len() > max_records
            || self.tail_bytes - self.tail.len() * TAIL_RECORD_COST > max_bytes
        {
            match self.tail.pop_front() {
                Some(r) => self.tail_bytes -= r.payload.len() + TAIL_RECORD_COST,
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
                self.tail_bytes -= r.payload.len() + TAIL_RECORD_COST;
            }
        }
    }

    /// Empties the tail cache (and frees its buffer).
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

/// A stream's offset ranges lost to corruption. Almost always empty, so it costs one pointer
/// until the first range is added (and again once the last is trimmed away).
/// Invariant: `Some` holds at least one range.
#[derive(Clone, Debug, Default)]
// A boxed `Vec` on purpose: one pointer inline instead of a `Vec`'s three.
#[allow(clippy::box_collection)]
pub(crate) struct Lost(Option<Box<Vec<(u64, u64)>>>);

impl Lost {
    /// The ranges, ascending.
    pub fn iter(&self) -> std::slice::Iter<'_, (u64, u64)> {
        self.0.as_deref().map_or(&[][..], Vec::as_slice).iter()
    }

    /// Whether there is no range.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// The last (highest) range.
    pub fn last(&self) -> Option<&(u64, u64)> {
        self.0.as_ref().and_then(|v| v.last())
    }

    /// Adds a range above all others.
    pub fn push(&mut self, range: (u64, u64)) {
        self.0.get_or_insert_with(Box::default).push(range);
    }

    /// Keeps the ranges for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&(u64, u64)) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl<'a> IntoIterator for &'a Lost {
    type Item = &'a (u64, u64);
    type IntoIter = std::slice::Iter<'a, (u64, u64)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
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
    pub streams: Streams,
    /// Existing segments by sequence number.
    pub segments: BTreeMap<u64, SegInfo>,
    /// Set by the first failed write or sync; every later write fails with `Poisoned`.
    pub poisoned: Option<String>,
    /// Set by `close`.
    pub closed: bool,
    /// What the last open found.
    pub report: RecoveryReport,
    /// `tail_bytes` of all streams together (bounded by `tail_cache_total_bytes`).
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
