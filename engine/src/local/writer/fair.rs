//! Per-stream fairness in group commit: which queued operations the next group takes.
//!
//! The writer moves every operation it receives into a lane of its stream (FIFO within the
//! stream) and forms each group by one pass of deficit round robin over the streams with work:
//! each stream, in turn, gets a credit of `stream_group_bytes` (any debt it carries is kept) and
//! gives operations while its credit is positive; the last one may overdraw, and the debt is paid
//! from its later visits. So one group holds of each stream less than `stream_group_bytes` plus
//! one operation, and over many groups a stream gets at most `stream_group_bytes` per group on
//! average, however deep its backlog or large its batches. A group that reaches
//! `max_group_bytes` or 4096 operations ends early; the streams not visited are first in the
//! next one. A stream's operations keep their order; operations of different streams, which no
//! caller saw ordered (none was answered), may be reordered.
//!
//! `Checkpoint` and `Close` belong to no stream: they are barriers. Once one is received, the
//! writer takes nothing more from its channel until the lanes are empty (their groups are formed
//! fairly, as always); the barrier then ends the last group. Everything queued before it is
//! therefore decided before it, as with a single FIFO queue.
//!
//! Fairness in a group is not enough with the sync thread: a log is synced in order, so an
//! append waits for every byte written before it. [`Writer::pace`] bounds those: the writer
//! forms a group only while at most one group waits for the sync thread. An append queued at any
//! moment is then in the log behind at most the group being synced, one group waiting, and its
//! own group — each holding less than `stream_group_bytes` plus one operation of any other
//! stream (`docs/design.md`, "Fairness").

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::types::StreamId;

use super::super::backpressure::{append_cost, op_cost};
use super::group::FastMap;
use super::ops::{Op, Queued};
use super::Writer;

/// Most operations in one group.
const MAX_GROUP_OPS: usize = 4096;

/// The queued operations of one stream.
struct Lane {
    ops: VecDeque<(Queued, i64)>,
    /// Credit left (positive) or debt (negative) from the stream's last visit.
    deficit: i64,
}

/// The writer's queue, by stream.
pub(super) struct Scheduler {
    lanes: FastMap<StreamId, Lane>,
    /// Streams with work, in the order they are visited.
    ring: VecDeque<StreamId>,
    /// A `Checkpoint` or `Close` received: nothing more is received until the lanes are empty.
    barrier: Option<Queued>,
    /// A stream's credit per group (`LocalOptions::stream_group_bytes`).
    quantum: i64,
}

/// The stream of an operation (`None`: a barrier) and what it counts for.
fn classify(op: &Op) -> (Option<&StreamId>, u64) {
    match op {
        Op::Append(a) => (Some(&a.stream), append_cost(a.records.len(), a.bytes)),
        Op::Seal { stream, .. }
        | Op::Trim { stream, .. }
        | Op::Delete { stream, .. }
        | Op::SetRetention { stream, .. } => (Some(stream), op_cost()),
        Op::Sweep | Op::Checkpoint { .. } | Op::Close { .. } => (None, op_cost()),
    }
}

impl Scheduler {
    /// An empty queue; each stream gets `stream_group_bytes` of a group.
    pub(super) fn new(stream_group_bytes: usize) -> Self {
        Scheduler {
            lanes: FastMap::default(),
            ring: VecDeque::new(),
            barrier: None,
            quantum: i64::try_from(stream_group_bytes.max(1)).unwrap_or(i64::MAX),
        }
    }

    /// Nothing queued.
    pub(super) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.barrier.is_none()
    }

    /// Queues one operation in its stream's lane (or as the barrier).
    pub(super) fn push(&mut self, q: Queued) {
        let (stream, cost) = classify(&q.op);
        let Some(id) = stream.cloned() else {
            // At most one barrier: none is received while one waits.
            debug_assert!(self.barrier.is_none(), "two barriers queued");
            self.barrier = Some(q);
            return;
        };
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.ops.push_back((q, cost));
            return;
        }
        let mut ops = VecDeque::new();
        ops.push_back((q, cost));
        self.lanes.insert(id.clone(), Lane { ops, deficit: 0 });
        self.ring.push_back(id);
    }

    /// Receives what is queued in `rx` (blocking up to `tick` for the first operation if nothing
    /// is queued here) and returns the next group's operations; empty only if nothing came.
    pub(super) fn next_batch(
        &mut self,
        rx: &Receiver<Queued>,
        tick: Duration,
        max_bytes: usize,
    ) -> Result<Vec<Queued>, RecvTimeoutError> {
        if self.is_empty() {
            let q = rx.recv_timeout(tick)?;
            self.push(q);
        }
        while self.barrier.is_none() {
            match rx.try_recv() {
                Ok(q) => self.push(q),
                Err(_) => break,
            }
        }
        Ok(self.take(i64::try_from(max_bytes).unwrap_or(i64::MAX)))
    }

    /// One pass of deficit round robin (repeated only while it takes nothing: every lane was in
    /// debt, and the passes that pay it off would have been groups without these streams).
    fn take(&mut self, max_bytes: i64) -> Vec<Queued> {
        let mut out = Vec::new();
        let mut bytes = 0i64;
        while out.is_empty() && !self.ring.is_empty() {
            for _ in 0..self.ring.len() {
                if out.len() >= MAX_GROUP_OPS || bytes >= max_bytes {
                    break;
                }
                let Some(id) = self.ring.pop_front() else {
                    break;
                };
                let Some(lane) = self.lanes.get_mut(&id) else {
                    continue;
                };
                // Credit is not banked from visit to visit; debt is.
                lane.deficit = lane.deficit.min(0).saturating_add(self.quantum);
                while lane.deficit > 0 && out.len() < MAX_GROUP_OPS && bytes < max_bytes {
                    let Some((q, cost)) = lane.ops.pop_front() else {
                        break;
                    };
                    lane.deficit -= cost;
                    bytes = bytes.saturating_add(cost);
                    out.push(q);
                }
                if lane.ops.is_empty() {
                    self.lanes.remove(&id);
                } else {
                    self.ring.push_back(id);
                }
            }
        }
        if self.ring.is_empty() {
            // Everything received before the barrier is in this group or an earlier one.
            out.extend(self.barrier.take());
        }
        out
    }

    /// Every operation still queued (the store is closing).
    pub(super) fn drain(&mut self) -> Vec<Queued> {
        self.ring.clear();
        let mut out: Vec<Queued> = self
            .lanes
            .drain()
            .flat_map(|(_, l)| l.ops.into_iter().map(|(q, _)| q))
            .collect();
        out.extend(self.barrier.take());
        out
    }
}

impl Writer {
    /// `Sync` mode with the sync thread: waits until at most one group waits for it before the
    /// next group is formed, so that an append queued now is written behind a bounded amount of
    /// unsynced log (see the module docs). Operations that arrive meanwhile join that next group.
    pub(super) fn pace(&self) {
        if let Some(s) = &self.syncer {
            s.wait_unfinished_at_most(1);
        }
    }
}
