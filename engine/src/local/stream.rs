//! One live stream as readers and the writer share it: head, sparse index, lost ranges and the
//! tail cache of its newest records.

use std::sync::Arc;

use crate::head::StreamHead;
use crate::types::Record;

use super::index::Points;
use super::small::SmallDeque;

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
    /// A stream with no records yet, in the `Arc` that [`Streams`](super::streams::Streams)
    /// holds it in.
    pub fn new(number: u64, head: StreamHead) -> Arc<Self> {
        Arc::new(Stream {
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
