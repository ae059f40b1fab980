//! What one group changes: the streams it touched, its frames, its replies.

use std::collections::{HashMap, HashSet};

use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::head::StreamHead;
use crate::types::{Record, StreamId};

use super::super::index::Point;
use super::super::state::SegInfo;
use super::ops::Reply;

/// A stream as changed by the current group.
pub(super) struct Work {
    pub(super) number: u64,
    pub(super) head: StreamHead,
    pub(super) cum_first: u64,
    /// No committed `Stream` to merge into: created (or re-created) in this group.
    pub(super) fresh: bool,
    /// Every data frame written in this group, in order (inline: most streams get one append per
    /// group, and with thousands of streams an allocation per stream per group shows in profiles).
    pub(super) frames: SmallVec<[Point; 1]>,
    /// Records appended in this group, in order.
    pub(super) pending: SmallVec<[Record; 1]>,
    /// The first offset moved.
    pub(super) trimmed: bool,
    /// The incarnation changed (recovery).
    pub(super) reincarnated: bool,
}

impl Work {
    pub(super) fn cum_next(&self) -> u64 {
        self.cum_first + self.head.bytes
    }
}

/// Hash maps keyed by stream id on the writer's path: foldhash is several times faster than
/// SipHash on short ids and still seeded per process, so ids chosen by clients cannot be aimed at
/// one bucket.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What one group changes.
#[derive(Default)]
pub(super) struct Group {
    /// The time of the group: every decision and frame of the group uses it (one clock read).
    pub(super) now: u64,
    /// Frames for the active segment, starting at `Active::pos`.
    pub(super) buf: Vec<u8>,
    /// Touched streams; `None` means deleted by this group.
    pub(super) work: FastMap<StreamId, Option<Work>>,
    /// Committed streams this group deleted (removed before fresh ones are inserted).
    pub(super) deleted: HashSet<StreamId, foldhash::fast::RandomState>,
    pub(super) replies: Vec<Reply>,
    /// Ranges written by this group (zeroed if the group fails).
    pub(super) written: Vec<(u64, u64, u64)>,
    /// Segments finished by a roll in this group, with their final length.
    pub(super) rolled: Vec<(u64, u64)>,
    /// Segments created by this group.
    pub(super) created: Vec<(u64, SegInfo)>,
    pub(super) close: Option<oneshot::Sender<Result<()>>>,
    pub(super) checkpoint: Vec<oneshot::Sender<Result<()>>>,
}

impl Group {
    /// An empty group at time `now`.
    pub(super) fn at(now: u64) -> Self {
        Group {
            now,
            ..Group::default()
        }
    }

    /// Empties a finished group, keeping its allocations (its buffer only up to
    /// [`KEPT_BUFFER_BYTES`]) for the next one.
    pub(super) fn recycle(mut self) -> Self {
        if self.buf.capacity() > KEPT_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.work.clear();
        self.deleted.clear();
        self.replies.clear();
        self.written.clear();
        self.rolled.clear();
        self.created.clear();
        self.close = None;
        self.checkpoint.clear();
        self
    }
}

/// The largest group buffer kept from one group to the next: enough for the groups of small
/// appends that come by the thousand (growing it from empty every group cost reallocations and
/// copies of the whole buffer); a rare large group's buffer is freed.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

/// A stream as a group handed to the sync thread left it (see `Writer::overlay`).
pub(super) struct Inflight {
    pub(super) number: u64,
    /// Without the idempotency keys.
    pub(super) head: StreamHead,
    pub(super) cum_first: u64,
    /// The head has keys: a later group waits for the publish and reads the committed head.
    pub(super) keyed: bool,
}
