//! Counts of events that no single reply reports: the store's own failures and the work it
//! skipped. Read with `LocalStore::stats`; each event is also a `tracing` event.

use std::sync::atomic::{AtomicU64, Ordering};

use super::backpressure::QueueStats;

/// The counters, shared by the writer, its threads and `LocalStore`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Failed log writes, syncs, checkpoints and closes (the first one poisoned the store).
    pub log_failures: AtomicU64,
    /// Failed groups whose bytes could not be erased (their appends may reappear after reopen).
    pub erase_failures: AtomicU64,
    /// Byte retention skipped because the records could not be read back (tried again later).
    pub retention_skipped: AtomicU64,
    /// Streams compaction skipped because their records could not be read back.
    pub compactions_skipped: AtomicU64,
}

/// What `LocalStore::stats` returns: this session's failures and skipped work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalStats {
    /// Why the store is poisoned, if it is (every later mutation fails until it is reopened).
    pub poisoned: Option<String>,
    /// Failed log writes, syncs, checkpoints and closes; the first one poisoned the store.
    pub log_failures: u64,
    /// Failed groups whose bytes could not be erased: their appends, reported as failed, may
    /// reappear (whole) after a reopen.
    pub erase_failures: u64,
    /// Byte retention (`max_bytes`) skipped because records could not be read back; the next
    /// append or sweep of the stream tries again.
    pub retention_skipped: u64,
    /// Streams compaction skipped because their records could not be read back.
    pub compactions_skipped: u64,
    /// The writer's queue now (depth in total and of the streams with the most queued) and the
    /// operations refused by `Overload::Reject` so far.
    pub queue: QueueStats,
}

impl Counters {
    /// The counts now, with the poison message.
    pub fn snapshot(&self, poisoned: Option<String>) -> LocalStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LocalStats {
            poisoned,
            log_failures: get(&self.log_failures),
            erase_failures: get(&self.erase_failures),
            retention_skipped: get(&self.retention_skipped),
            compactions_skipped: get(&self.compactions_skipped),
            queue: QueueStats::default(),
        }
    }
}
