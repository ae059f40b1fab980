//! `LocalOptions` and `Durability`: how the local engine is tuned.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::fs::{FileSystem, StdFs};

/// When an append is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// An append returns only after an `fdatasync` that covers it. Concurrent appends of all
    /// streams share one write and one `fdatasync` (group commit). The default.
    #[default]
    Sync,
    /// An append returns once written to the OS; the log is synced at least this often. A crash
    /// loses at most about one interval of acknowledged appends, and recovery then gives every
    /// stream that may have lost records a new incarnation.
    Interval(Duration),
    /// An append returns once written to the OS; syncs happen only on segment roll, checkpoint and
    /// close. Same crash behaviour as `Interval`, with an unbounded window.
    Buffered,
}

impl Durability {
    /// The code stored in the `OPEN` frame of a session (see `docs/format.md`).
    pub(crate) fn code(self) -> u64 {
        match self {
            Durability::Sync => 0,
            Durability::Interval(_) => 1,
            Durability::Buffered => 2,
        }
    }
}

/// Options of [`LocalStore::open`](super::LocalStore::open). Start from `Default`.
#[derive(Clone)]
pub struct LocalOptions {
    /// When appends are acknowledged (default [`Durability::Sync`]).
    pub durability: Durability,
    /// Size of each shared segment file (default 64 MiB, at least 64 KiB). A batch must fit in one
    /// segment, so small segments lower `Capabilities::max_batch_bytes`.
    pub segment_bytes: u64,
    /// Most operations queued for the writer; callers wait (asynchronously) beyond it
    /// (backpressure). Default 4096.
    pub queue_capacity: usize,
    /// Most frame bytes gathered into one group commit (default 8 MiB).
    pub max_group_bytes: usize,
    /// A checkpoint is written at least this often while the log grows (default 30 s), and on close.
    pub checkpoint_interval: Duration,
    /// A checkpoint is also written after this many log bytes (default 64 MiB), or after 16 times
    /// the size of the last checkpoint if that is more (many streams: a checkpoint costs ~170 B
    /// per stream). An unclean reopen scans at most this much log.
    pub checkpoint_bytes: u64,
    /// How often time-based retention is swept (default 1 s); reads and appends also apply it at once.
    pub sweep_interval: Duration,
    /// Most segment files kept open for reading (default 64); finished segments read through a
    /// memory map keep at most as many maps (a map holds no file descriptor).
    pub max_open_files: usize,
    /// Read finished segments through read-only memory maps (default `true`); the active segment
    /// is always read with `pread`. Off: every read is a `pread`. See `local::mmap` for the one
    /// risk of maps (a segment truncated by another program).
    pub mmap_reads: bool,
    /// Most recent records kept in memory per stream for tail reads (default 32).
    pub tail_cache_records: usize,
    /// Most payload bytes kept in memory per stream for tail reads (default 64 KiB).
    pub tail_cache_bytes: usize,
    /// Most bytes kept in the tail caches of all streams together (default 64 MiB), counting
    /// each cached record as its payload plus the record's own size (48 bytes), so that many
    /// small records are bounded too; beyond it, caches are emptied round-robin.
    pub tail_cache_total_bytes: usize,
    /// Recent idempotency keys remembered per stream (default 1024).
    pub idempotency_keys: usize,
    /// `Sync` mode: how long the sync thread may hold back a written group's `fdatasync` while
    /// the writer is writing more groups right behind it (it had more operations in hand when it
    /// handed the group over), so that one sync covers them all (default 0: never). A lone
    /// appender never waits: its group is synced by the writer itself. See `docs/design.md`
    /// (*Pipelined group commit*) and `docs/benchmarks.md` for the measured trade-off.
    pub group_fill_wait: Duration,
    /// The file system every file operation goes through (tests inject faults here).
    pub fs: Arc<dyn FileSystem>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            durability: Durability::Sync,
            segment_bytes: 64 << 20,
            queue_capacity: 4096,
            max_group_bytes: 8 << 20,
            checkpoint_interval: Duration::from_secs(30),
            checkpoint_bytes: 64 << 20,
            sweep_interval: Duration::from_secs(1),
            max_open_files: 64,
            mmap_reads: true,
            tail_cache_records: 32,
            tail_cache_bytes: 64 << 10,
            tail_cache_total_bytes: 64 << 20,
            idempotency_keys: 1024,
            group_fill_wait: Duration::ZERO,
            fs: Arc::new(StdFs),
        }
    }
}

impl fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOptions")
            .field("durability", &self.durability)
            .field("segment_bytes", &self.segment_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_group_bytes", &self.max_group_bytes)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("checkpoint_bytes", &self.checkpoint_bytes)
            .field("sweep_interval", &self.sweep_interval)
            .field("max_open_files", &self.max_open_files)
            .field("tail_cache_records", &self.tail_cache_records)
            .field("tail_cache_bytes", &self.tail_cache_bytes)
            .field("tail_cache_total_bytes", &self.tail_cache_total_bytes)
            .field("idempotency_keys", &self.idempotency_keys)
            .field("group_fill_wait", &self.group_fill_wait)
            .finish_non_exhaustive()
    }
}
