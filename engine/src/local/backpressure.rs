//! Admission to the writer's queue: bounded in operations and in bytes, per stream and in total.
//!
//! Every operation for the writer takes, before it is queued, a slot of its stream's budget, then
//! one of the total operation budget and its bytes of the total byte budget (always in that
//! order, so a caller waiting for its stream's budget holds nothing of the total). All budgets
//! are Tokio semaphores, which serve waiters in order: a large operation is not overtaken forever
//! by small ones. The slots are released when the writer has decided and encoded the operation
//! (the [`Admitted`] travels with it in `Queued`), so the bounds cover what waits for the
//! writer; what a group holds after that is bounded by `max_group_bytes` per group and by the
//! writer's pacing (at most two groups wait for a sync, `writer/fair.rs`).
//!
//! A stream's budget is one semaphore of `stream_queue_bytes` units; each operation takes at
//! least `ceil(stream_queue_bytes / stream_queue_ops)` of them, so both the stream's bytes and its
//! operations are bounded by one acquisition. A stream's entry exists only while operations of it
//! are queued or waiting (it is removed, under the map's lock, by the last one to leave).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::{Error, ErrorKind, Result};
use crate::implementor::ErrorShorthand;
use crate::sync::lock;
use crate::types::StreamId;

use super::options::{LocalOptions, Overload};

/// Bytes an operation counts for beyond its payload: a record's share of the frame and of the
/// `Bytes` holding it, and an operation's frame header and queue entry. The same count is used
/// for the queue bounds and for a stream's share of a group.
const RECORD_COST: u64 = 32;
const OP_COST: u64 = 64;

/// What an append of `records` records and `bytes` payload bytes counts for.
pub(crate) fn append_cost(records: usize, bytes: u64) -> u64 {
    bytes + RECORD_COST * records as u64 + OP_COST
}

/// What any other operation counts for.
pub(crate) const fn op_cost() -> u64 {
    OP_COST
}

/// Which bound refused an operation (`Overload::Reject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Stream,
    TotalOps,
    TotalBytes,
}

/// One stream with operations queued or waiting.
struct Lane {
    budget: Arc<Semaphore>,
    ops: AtomicU64,
    bytes: AtomicU64,
}

/// The queue's budgets and what is in the queue now.
pub(crate) struct Admission {
    policy: Overload,
    stream_units: u64,
    min_stream_units: u64,
    total_bytes_cap: u64,
    total_ops: Arc<Semaphore>,
    total_bytes: Arc<Semaphore>,
    lanes: Mutex<LaneMap>,
    queued_ops: AtomicU64,
    queued_bytes: AtomicU64,
    rejected: [AtomicU64; 3],
}

/// The streams with operations queued or waiting (foldhash, as on the writer's path).
type LaneMap = std::collections::HashMap<StreamId, Arc<Lane>, foldhash::fast::RandomState>;

/// An operation's place in the queue; dropping it frees the place.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    cost: u64,
    /// Declared before `lane`: the stream's slots are returned before its entry may be removed.
    _stream_permit: Option<OwnedSemaphorePermit>,
    _ops_permit: Option<OwnedSemaphorePermit>,
    _bytes_permit: Option<OwnedSemaphorePermit>,
    lane: Option<(StreamId, Arc<Lane>)>,
}

/// A stream's queue, for `LocalStats::queue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamQueue {
    /// The stream.
    pub stream: StreamId,
    /// Operations queued for the writer.
    pub ops: u64,
    /// Bytes queued (payload plus 32 bytes per record and 64 per operation).
    pub bytes: u64,
}

/// The writer's queue now and the operations refused so far (`Overload::Reject`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Operations queued for the writer (admitted, not yet decided).
    pub ops: u64,
    /// Bytes queued, counted as for `LocalOptions::queue_bytes`.
    pub bytes: u64,
    /// Operations refused because their stream's queue was full.
    pub rejected_stream: u64,
    /// Operations refused because the queue was full (`queue_capacity` operations).
    pub rejected_total_ops: u64,
    /// Operations refused because the queue was full (`queue_bytes`).
    pub rejected_total_bytes: u64,
    /// The streams with the most bytes queued (at most 10), largest first.
    pub top_streams: Vec<StreamQueue>,
}

/// How many streams `QueueStats::top_streams` lists.
const TOP_STREAMS: usize = 10;

/// Semaphore units of one acquisition (`acquire_many` takes a `u32`).
fn units(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A semaphore's initial permits (at most `u32::MAX` here, see [`units`]).
fn permits(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Admission {
    /// The budgets of `opts`.
    pub(crate) fn new(opts: &LocalOptions) -> Arc<Self> {
        // Semaphores hold at most `u32::MAX` units per acquisition: the byte budgets are capped
        // there (4 GiB), far above any sensible setting.
        let cap = |n: usize| u64::from(units(n.max(1) as u64));
        let stream_units = cap(opts.stream_queue_bytes);
        let ops = opts.stream_queue_ops.max(1) as u64;
        Arc::new(Admission {
            policy: opts.overload,
            stream_units,
            min_stream_units: stream_units.div_ceil(ops),
            total_bytes_cap: cap(opts.queue_bytes),
            total_ops: Arc::new(Semaphore::new(opts.queue_capacity.max(1))),
            total_bytes: Arc::new(Semaphore::new(permits(cap(opts.queue_bytes)))),
            lanes: Mutex::new(LaneMap::default()),
            queued_ops: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            rejected: Default::default(),
        })
    }

    /// The lane of `stream`, created if needed (under the map's lock: see [`Admitted`]'s drop).
    fn lane(&self, stream: &StreamId) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        lanes
            .entry(stream.clone())
            .or_insert_with(|| {
                Arc::new(Lane {
                    budget: Arc::new(Semaphore::new(permits(self.stream_units))),
                    ops: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Takes a place in the queue for an operation of `stream` (`None`: not of one stream)
    /// counting `cost` bytes: waits for it, or refuses at once with `Unavailable`, as `overload`
    /// says. `Closed` if the store closed meanwhile.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        stream: Option<&StreamId>,
        cost: u64,
    ) -> Result<Admitted> {
        // Built first so that, however this ends (refused, cancelled), what was taken is
        // returned and the lane entry released by `Admitted`'s drop.
        let mut admitted = Admitted {
            admission: self.clone(),
            cost: 0,
            _stream_permit: None,
            _ops_permit: None,
            _bytes_permit: None,
            lane: stream.map(|s| (s.clone(), self.lane(s))),
        };
        // The stream's budget first: the callers a flood of one stream keeps waiting hold
        // nothing of the total budgets, which the other streams need.
        if let Some((_, lane)) = &admitted.lane {
            let n = units(cost.clamp(self.min_stream_units, self.stream_units));
            match self.take(&lane.budget, n).await? {
                Some(p) => admitted._stream_permit = Some(p),
                None => return Err(self.refuse_stream(stream, lane)),
            }
        }
        match self.take(&self.total_ops, 1).await? {
            Some(p) => admitted._ops_permit = Some(p),
            None => return Err(self.refuse(Bound::TotalOps)),
        }
        let n = units(cost.min(self.total_bytes_cap));
        match self.take(&self.total_bytes, n).await? {
            Some(p) => admitted._bytes_permit = Some(p),
            None => return Err(self.refuse(Bound::TotalBytes)),
        }
        admitted.cost = cost;
        self.queued_ops.fetch_add(1, Ordering::Relaxed);
        self.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        if let Some((_, lane)) = &admitted.lane {
            lane.ops.fetch_add(1, Ordering::Relaxed);
            lane.bytes.fetch_add(cost, Ordering::Relaxed);
        }
        Ok(admitted)
    }

    /// `n` units of `sem`: waited for (`Wait`), or `None` at once if there are not enough now
    /// (`Reject`). `Closed` if the semaphore was closed (the store is closing).
    async fn take(&self, sem: &Arc<Semaphore>, n: u32) -> Result<Option<OwnedSemaphorePermit>> {
        match self.policy {
            Overload::Wait => sem
                .clone()
                .acquire_many_owned(n)
                .await
                .map(Some)
                .map_err(|_| Error::closed()),
            Overload::Reject => match sem.clone().try_acquire_many_owned(n) {
                Ok(p) => Ok(Some(p)),
                Err(TryAcquireError::Closed) => Err(Error::closed()),
                Err(TryAcquireError::NoPermits) => Ok(None),
            },
        }
    }

    fn refuse(&self, bound: Bound) -> Error {
        self.rejected[bound as usize].fetch_add(1, Ordering::Relaxed);
        let (ops, bytes) = (
            self.queued_ops.load(Ordering::Relaxed),
            self.queued_bytes.load(Ordering::Relaxed),
        );
        let which = match bound {
            Bound::TotalOps => "queue_capacity",
            _ => "queue_bytes",
        };
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "overloaded: the writer's queue is full ({ops} operations, {bytes} bytes queued; \
                 bound {which}); retry later"
            ),
        )
    }

    fn refuse_stream(&self, stream: Option<&StreamId>, lane: &Lane) -> Error {
        self.rejected[Bound::Stream as usize].fetch_add(1, Ordering::Relaxed);
        let name = stream.map_or("", StreamId::as_str);
        let (ops, bytes) = (
            lane.ops.load(Ordering::Relaxed),
            lane.bytes.load(Ordering::Relaxed),
        );
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "overloaded: the queue of stream {name:?} is full ({ops} operations, {bytes} \
                 bytes queued; bounds stream_queue_ops, stream_queue_bytes); retry later"
            ),
        )
    }

    /// What is queued now, and the refusals so far.
    pub(crate) fn stats(&self) -> QueueStats {
        let mut top: Vec<StreamQueue> = lock(&self.lanes)
            .iter()
            .map(|(id, l)| StreamQueue {
                stream: id.clone(),
                ops: l.ops.load(Ordering::Relaxed),
                bytes: l.bytes.load(Ordering::Relaxed),
            })
            .filter(|q| q.ops > 0)
            .collect();
        top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.ops.cmp(&a.ops)));
        top.truncate(TOP_STREAMS);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueueStats {
            ops: get(&self.queued_ops),
            bytes: get(&self.queued_bytes),
            rejected_stream: get(&self.rejected[Bound::Stream as usize]),
            rejected_total_ops: get(&self.rejected[Bound::TotalOps as usize]),
            rejected_total_bytes: get(&self.rejected[Bound::TotalBytes as usize]),
            top_streams: top,
        }
    }

    /// Wakes every waiter with `Closed` (the store is closing).
    pub(crate) fn close(&self) {
        self.total_ops.close();
        self.total_bytes.close();
        for lane in lock(&self.lanes).values() {
            lane.budget.close();
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        if self.cost > 0 {
            a.queued_ops.fetch_sub(1, Ordering::Relaxed);
            a.queued_bytes.fetch_sub(self.cost, Ordering::Relaxed);
        }
        if let Some((id, lane)) = self.lane.take() {
            if self.cost > 0 {
                lane.ops.fetch_sub(1, Ordering::Relaxed);
                lane.bytes.fetch_sub(self.cost, Ordering::Relaxed);
            }
            // The stream's slots go back first (the permit holds the semaphore, not the lane).
            drop(self._stream_permit.take());
            let mut lanes = lock(&a.lanes);
            // Every holder of the lane took its clone under this lock: two references (the map's
            // and this one) mean nobody else queues or waits on this stream.
            if Arc::strong_count(&lane) == 2 {
                lanes.remove(&id);
            }
        }
    }
}
