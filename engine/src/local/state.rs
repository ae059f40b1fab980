//! The committed state every reader sees: streams (heads, points, tail caches) and segments.
//!
//! Only the writer thread (and recovery, before the writer starts) changes it, so the writer may
//! read it, decide, release the lock, do I/O, and lock again to publish without races.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::types::StreamId;

use super::report::RecoveryReport;
use super::streams::Streams;

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
    /// The log position `(segment, byte)` this state describes: the end of the last group
    /// published (set with it, `writer/finish.rs`; at open by the session's first group). In
    /// `Sync` mode every byte before it was covered by a successful `fdatasync` before the group
    /// was published, so a checkpoint of this state at this position needs no sync (issue 15);
    /// groups written after it may be in flight with the sync thread.
    pub published: (u64, u64),
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
