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

/// What an operation does when the writer's queue is full (`LocalOptions::overload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overload {
    /// The caller waits (asynchronously) until the queue has room: backpressure. The default.
    #[default]
    Wait,
    /// The caller gets a retryable `Unavailable` at once, saying which bound was reached (its
    /// stream's queue or the whole queue). Nothing of the operation was queued or written.
    Reject,
}

/// Options of [`LocalStore::open`](super::LocalStore::open). Start from `Default` and set what
/// you need with the methods of the same names; each field says its default.
///
/// ```
/// use std::time::Duration;
/// use streamkeep::{Durability, LocalOptions};
/// let options = LocalOptions::default()
///     .durability(Durability::Interval(Duration::from_millis(50)))
///     .segment_bytes(16 << 20);
/// assert_eq!(options.queue_capacity, 4096);
/// ```
#[non_exhaustive]
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
    /// Most bytes (payload plus 32 bytes per record and 64 per operation) queued for the writer
    /// in total (default 64 MiB); beyond it `overload` applies. An operation larger than the
    /// bound is admitted alone.
    pub queue_bytes: usize,
    /// Most bytes (counted as for `queue_bytes`) queued for the writer per stream (default
    /// 16 MiB); beyond it `overload` applies to that stream only.
    pub stream_queue_bytes: usize,
    /// Most operations queued for the writer per stream (default 1024); beyond it `overload`
    /// applies to that stream only.
    pub stream_queue_ops: usize,
    /// What an operation does when one of the queue bounds is reached (default
    /// [`Overload::Wait`]).
    pub overload: Overload,
    /// Most frame bytes gathered into one group commit (default 8 MiB).
    pub max_group_bytes: usize,
    /// A stream's share of one group commit (default 256 KiB): a group takes from each stream with
    /// work in turn, at most this many bytes (counted as for `queue_bytes`) of each, plus the
    /// one operation that crosses it (deficit round robin; see `docs/design.md`). Smaller: a
    /// quiet stream's append waits behind less of a busy stream; larger: a busy stream gets more
    /// of the disk per `fdatasync`.
    pub stream_group_bytes: usize,
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
    /// is always read with `pread`. Off: every read is a `pread`. The one risk of maps: a segment
    /// file truncated by another program while mapped makes the process receive `SIGBUS`.
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
    /// The file system every file operation goes through (default: the real one,
    /// [`StdFs`](crate::implementor::fs::StdFs)); tests inject faults here.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            durability: Durability::Sync,
            segment_bytes: 64 << 20,
            queue_capacity: 4096,
            queue_bytes: 64 << 20,
            stream_queue_bytes: 16 << 20,
            stream_queue_ops: 1024,
            overload: Overload::Wait,
            max_group_bytes: 8 << 20,
            stream_group_bytes: 256 << 10,
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

impl LocalOptions {
    /// Sets [`LocalOptions::durability`] (see there for the default).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`LocalOptions::segment_bytes`] (see there for the default).
    #[must_use]
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// Sets [`LocalOptions::queue_capacity`] (see there for the default).
    #[must_use]
    pub fn queue_capacity(mut self, queue_capacity: usize) -> Self {
        self.queue_capacity = queue_capacity;
        self
    }

    /// Sets [`LocalOptions::queue_bytes`] (see there for the default).
    #[must_use]
    pub fn queue_bytes(mut self, queue_bytes: usize) -> Self {
        self.queue_bytes = queue_bytes;
        self
    }

    /// Sets [`LocalOptions::stream_queue_bytes`] (see there for the default).
    #[must_use]
    pub fn stream_queue_bytes(mut self, stream_queue_bytes: usize) -> Self {
        self.stream_queue_bytes = stream_queue_bytes;
        self
    }

    /// Sets [`LocalOptions::stream_queue_ops`] (see there for the default).
    #[must_use]
    pub fn stream_queue_ops(mut self, stream_queue_ops: usize) -> Self {
        self.stream_queue_ops = stream_queue_ops;
        self
    }

    /// Sets [`LocalOptions::overload`] (see there for the default).
    #[must_use]
    pub fn overload(mut self, overload: Overload) -> Self {
        self.overload = overload;
        self
    }

    /// Sets [`LocalOptions::stream_group_bytes`] (see there for the default).
    #[must_use]
    pub fn stream_group_bytes(mut self, stream_group_bytes: usize) -> Self {
        self.stream_group_bytes = stream_group_bytes;
        self
    }

    /// Sets [`LocalOptions::group_fill_wait`] (see there for the default).
    #[must_use]
    pub fn group_fill_wait(mut self, group_fill_wait: Duration) -> Self {
        self.group_fill_wait = group_fill_wait;
        self
    }

    /// Sets [`LocalOptions::max_group_bytes`] (see there for the default).
    #[must_use]
    pub fn max_group_bytes(mut self, max_group_bytes: usize) -> Self {
        self.max_group_bytes = max_group_bytes;
        self
    }

    /// Sets [`LocalOptions::checkpoint_interval`] (see there for the default).
    #[must_use]
    pub fn checkpoint_interval(mut self, checkpoint_interval: Duration) -> Self {
        self.checkpoint_interval = checkpoint_interval;
        self
    }

    /// Sets [`LocalOptions::checkpoint_bytes`] (see there for the default).
    #[must_use]
    pub fn checkpoint_bytes(mut self, checkpoint_bytes: u64) -> Self {
        self.checkpoint_bytes = checkpoint_bytes;
        self
    }

    /// Sets [`LocalOptions::sweep_interval`] (see there for the default).
    #[must_use]
    pub fn sweep_interval(mut self, sweep_interval: Duration) -> Self {
        self.sweep_interval = sweep_interval;
        self
    }

    /// Sets [`LocalOptions::max_open_files`] (see there for the default).
    #[must_use]
    pub fn max_open_files(mut self, max_open_files: usize) -> Self {
        self.max_open_files = max_open_files;
        self
    }

    /// Sets [`LocalOptions::mmap_reads`] (see there for the default).
    #[must_use]
    pub fn mmap_reads(mut self, mmap_reads: bool) -> Self {
        self.mmap_reads = mmap_reads;
        self
    }

    /// Sets [`LocalOptions::tail_cache_records`] (see there for the default).
    #[must_use]
    pub fn tail_cache_records(mut self, tail_cache_records: usize) -> Self {
        self.tail_cache_records = tail_cache_records;
        self
    }

    /// Sets [`LocalOptions::tail_cache_bytes`] (see there for the default).
    #[must_use]
    pub fn tail_cache_bytes(mut self, tail_cache_bytes: usize) -> Self {
        self.tail_cache_bytes = tail_cache_bytes;
        self
    }

    /// Sets [`LocalOptions::tail_cache_total_bytes`] (see there for the default).
    #[must_use]
    pub fn tail_cache_total_bytes(mut self, tail_cache_total_bytes: usize) -> Self {
        self.tail_cache_total_bytes = tail_cache_total_bytes;
        self
    }

    /// Sets [`LocalOptions::idempotency_keys`] (see there for the default).
    #[must_use]
    pub fn idempotency_keys(mut self, idempotency_keys: usize) -> Self {
        self.idempotency_keys = idempotency_keys;
        self
    }

    /// Sets [`LocalOptions::fs`] (see there for the default).
    #[must_use]
    pub fn fs(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = fs;
        self
    }
}

impl fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOptions")
            .field("durability", &self.durability)
            .field("segment_bytes", &self.segment_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_bytes", &self.queue_bytes)
            .field("stream_queue_bytes", &self.stream_queue_bytes)
            .field("stream_queue_ops", &self.stream_queue_ops)
            .field("overload", &self.overload)
            .field("max_group_bytes", &self.max_group_bytes)
            .field("stream_group_bytes", &self.stream_group_bytes)
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
