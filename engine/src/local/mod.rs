//! `LocalStore`: the durable local engine.
//!
//! Many streams share a few preallocated segment files (named by sequence number, never by stream
//! id). Each append batch is one checksummed frame; a dedicated writer thread gathers every
//! queued operation into one write and, in `Sync` mode, one `fdatasync` (group commit) before
//! anything is acknowledged or visible. Each stream keeps a small in-memory state, a sparse index
//! of where its frames are, and a cache of its newest records. A checkpoint bounds recovery, which
//! cuts a torn tail, quarantines damage in the middle and reports what was lost. See
//! `docs/design.md` and `docs/format.md`.
//!
//! ```
//! use bytes::Bytes;
//! use streamstore::{AppendOptions, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("streamstore-doc-{}", std::process::id()));
//! let store = LocalStore::open(&dir, LocalOptions::default()).await?;
//! let job = StreamId::new("job/42")?;
//! store.append(&job, vec![Bytes::from("step 1")], AppendOptions::default()).await?;
//! store.close().await?;
//!
//! let store = LocalStore::open(&dir, LocalOptions::default()).await?;
//! let batch = store.read(&job, 0, ReadOptions::default()).await?;
//! assert_eq!(batch.records[0].payload, "step 1");
//! store.close().await?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), streamstore::Error>(())
//! # }).unwrap();
//! ```

mod checkpoint;
mod codec;
mod flusher;
pub mod format;
pub mod fs;
mod index;
mod lock;
mod mmap;
mod options;
mod prealloc;
mod reader;
mod recovery;
mod report;
mod segment;
mod shared;
mod small;
mod state;
mod streams;
mod verify;
mod writer;

use std::ops::{Bound, ControlFlow};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};

use crate::capabilities::{Capabilities, IdempotencyWindow};
use crate::error::{Error, ErrorKind, Result};
use crate::store::StreamStore;
use crate::types::{
    AppendOptions, AppendResult, ListOptions, ListPage, ReadBatch, ReadOptions, Record, Retention,
    StreamId, StreamInfo,
};
use crate::validate::{check_append, check_read, now_ms};
use crate::wait::{wait_for_records, Notifiers};

pub use fs::{FileHandle, FileSystem, StdFs};
pub use options::{Durability, LocalOptions};
pub use report::{LostRange, Quarantine, RecoveryReport, TornTail};
pub use verify::{verify_dir, VerifyProblem, VerifyReport};

use fs::{CLEAN, SEGMENTS};
use lock::DirLock;
use reader::{plan_for, scan, Files, Plan};
use segment::{create_segment, Active};
use shared::Shared;
use state::State;
use writer::{fail_op, AppendOp, Op, Queued, Writer};
/// The smallest segment accepted.
const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// A segment kept alive by streams that still have records in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedSegment {
    /// Segment sequence number.
    pub segment: u64,
    /// The streams whose live records are in it.
    pub streams: Vec<StreamId>,
}

/// The durable local engine. See the [module docs](self).
pub struct LocalStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Queued>,
    permits: Arc<Semaphore>,
    thread: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<DirLock>>,
    closing: AtomicBool,
    caps: Capabilities,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir`, recovering what the last session left.
    ///
    /// The directory is created with mode 0700 and locked against other processes; a locked
    /// directory is `Unavailable` naming the holder's pid. The recovery runs on a blocking thread.
    pub async fn open(dir: impl AsRef<Path>, options: LocalOptions) -> Result<LocalStore> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || LocalStore::open_blocking(dir, options))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, "the open task failed").with_source(e))?
    }

    /// [`open`](Self::open) for callers outside an async runtime.
    pub fn open_blocking(dir: impl AsRef<Path>, options: LocalOptions) -> Result<LocalStore> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(Error::invalid(format!(
                "segment_bytes must be at least {MIN_SEGMENT_BYTES}"
            )));
        }
        let unavailable = |what: String, e: std::io::Error| {
            Error::new(ErrorKind::Unavailable, what).with_source(e)
        };
        make_private_dir(&dir)
            .map_err(|e| unavailable(format!("cannot create {}", dir.display()), e))?;
        let dir_lock = lock::lock(&dir)?;
        let seg_dir = dir.join(SEGMENTS);
        make_private_dir(&seg_dir)
            .map_err(|e| unavailable(format!("cannot create {}", seg_dir.display()), e))?;

        let rec = recovery::recover(&dir, &seg_dir, &options)?;
        let segment_bytes = options.segment_bytes;
        let mut state = State {
            tail_total: rec.streams.values().map(|s| s.tail_bytes).sum(),
            streams: rec.streams,
            segments: rec.segments,
            poisoned: None,
            closed: false,
            report: rec.report,
            evict_after: None,
        };
        state.evict_tails(options.tail_cache_total_bytes);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            notifiers: Notifiers::default(),
            files: Files::new(
                seg_dir.clone(),
                options.fs.clone(),
                options.max_open_files,
                options.mmap_reads,
            ),
            opts: options.clone(),
            segment_bytes,
            abandoned: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            durable: Mutex::new((0, 0)),
            durable_waiters: AtomicUsize::new(0),
        });
        let fs = options.fs.clone();
        let io = |what: &str, e: std::io::Error| {
            Error::new(ErrorKind::Unavailable, format!("open: {what}")).with_source(e)
        };
        // From here on the log changes: the old clean marker no longer describes it.
        let clean = dir.join(CLEAN);
        if fs.exists(&clean) {
            fs.remove(&clean)
                .and_then(|()| fs.sync_dir(&dir))
                .map_err(|e| io("removing the clean marker", e))?;
        }
        // Files left by a crash while a segment was being prepared are not segments.
        segment::remove_leftovers(fs.as_ref(), &seg_dir)
            .map_err(|e| io("removing unfinished segment files", e))?;
        // `Sync` and `Interval` write only into segments zero-filled and synced in advance, so a
        // commit's `fdatasync` never allocates blocks or changes the file size.
        let fill = !matches!(options.durability, Durability::Buffered);
        let active = match rec.active {
            Some((seq, salt, pos)) => {
                let file = fs
                    .open(&fs::segment_path(&seg_dir, seq), true)
                    .map_err(|e| io("opening the last segment", e))?;
                if fill {
                    // Bring the last segment to its full zero-filled size (past the data end and
                    // the file's length everything is zeros: recovery cut any torn tail).
                    let len = file.size().map_err(|e| io("reading the last segment", e))?;
                    if len < segment_bytes {
                        segment::zero_fill(file.as_ref(), len.max(pos), segment_bytes)
                            .map_err(|e| io("zero-filling the last segment", e))?;
                    }
                }
                Active {
                    seq,
                    salt,
                    file,
                    pos,
                    durable: pos,
                    marked: pos,
                }
            }
            None => {
                let a = create_segment(fs.as_ref(), &seg_dir, rec.max_seq + 1, segment_bytes, fill)
                    .map_err(|e| io("creating a segment", e))?;
                lock_state(&shared).segments.insert(
                    a.seq,
                    state::SegInfo {
                        salt: a.salt,
                        readable: a.pos,
                        damaged: false,
                    },
                );
                a
            }
        };
        // Everything recovery found is durable: earlier segments were synced at their roll (in
        // `Sync` mode) or by recovery itself (after an unclean shutdown, see `recovery.rs`), and
        // the last one is synced with the session's `Open` frame before the store is returned.
        *shared
            .durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (active.seq, active.pos);
        let mut writer = Writer::new(
            shared.clone(),
            dir.clone(),
            seg_dir,
            active,
            rec.next_number,
        );
        writer
            .open_session()
            .map_err(|e| io("writing the session start", e))?;
        if !rec.reincarnate.is_empty() {
            writer
                .reincarnate(&rec.reincarnate)
                .map_err(|e| io("recording new incarnations", e))?;
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("streamstore-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io("starting the writer thread", e))?;
        Ok(LocalStore {
            shared,
            tx,
            permits: Arc::new(Semaphore::new(options.queue_capacity.max(1))),
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(dir_lock)),
            closing: AtomicBool::new(false),
            caps: capabilities(&options),
            dir,
        })
    }

    /// What the last open found: torn tail, quarantined damage, lost offsets, new incarnations.
    pub fn recovery_report(&self) -> RecoveryReport {
        lock_state(&self.shared).report.clone()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments other than the one being written that live records keep from being deleted, with
    /// the streams that pin them (oldest segment first).
    pub fn pinned_segments(&self) -> Vec<PinnedSegment> {
        let st = lock_state(&self.shared);
        let newest = st.segments.keys().next_back().copied();
        let mut out: std::collections::BTreeMap<u64, Vec<StreamId>> = Default::default();
        for (id, s) in &st.streams {
            let mut segs: Vec<u64> = s.points.iter().map(|p| p.seg).collect();
            segs.dedup();
            for seg in segs {
                if Some(seg) != newest {
                    out.entry(seg).or_default().push(id.clone());
                }
            }
        }
        out.into_iter()
            .map(|(segment, streams)| PinnedSegment { segment, streams })
            .collect()
    }

    /// Number of segment files on disk (as the store knows them).
    pub fn segment_count(&self) -> usize {
        lock_state(&self.shared).segments.len()
    }

    /// Bytes held by the tail caches as counted against `tail_cache_total_bytes` (payload plus
    /// 48 bytes per record).
    pub fn cache_bytes(&self) -> usize {
        lock_state(&self.shared).tail_total
    }

    /// Number of segment files open for reading (bounded by `max_open_files`).
    pub fn open_files(&self) -> usize {
        self.shared.files.open_count()
    }

    /// Number of finished segments currently memory-mapped for reading (bounded by
    /// `max_open_files`; 0 with `mmap_reads: false`).
    pub fn mapped_segments(&self) -> usize {
        self.shared.files.mapped_count()
    }

    /// Stops the store as if the process had been killed after its last acknowledged operation:
    /// no final checkpoint and no clean-shutdown marker, so the next open replays the log. For
    /// tests of recovery; use [`close`](StreamStore::close) otherwise.
    #[doc(hidden)]
    pub async fn abandon(&self) {
        self.shared.abandoned.store(true, Ordering::Release);
        let _ = self.close().await;
    }

    /// Writes a checkpoint now and deletes the segments no live record needs.
    pub async fn checkpoint(&self) -> Result<()> {
        self.submit(|tx| Op::Checkpoint { tx }).await
    }

    fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            let msg = lock_state(&self.shared)
                .poisoned
                .clone()
                .unwrap_or_default();
            return Err(Error::new(ErrorKind::Poisoned, msg));
        }
        Ok(())
    }

    /// Queues an operation for the writer and waits for its answer.
    async fn submit<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        self.check_open()?;
        // Backpressure: at most `queue_capacity` operations wait for the writer.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::closed())?;
        self.check_open()?;
        let (tx, rx) = oneshot::channel();
        let queued = Queued {
            op: make(tx),
            _permit: Some(permit),
        };
        if let Err(mpsc::SendError(q)) = self.tx.send(queued) {
            fail_op(q.op, &Error::closed());
            return Err(Error::closed());
        }
        rx.await.map_err(|_| Error::closed())?
    }

    /// One read attempt, without waiting.
    /// Whether `options` asks for more than what is visible: durable records in a mode that
    /// publishes before syncing.
    fn durable_only(&self, options: &ReadOptions) -> bool {
        options.durable && !matches!(self.shared.opts.durability, Durability::Sync)
    }

    async fn read_now(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        // A segment deleted between planning and reading (trim + checkpoint) is retried once.
        let mut attempt = 0;
        loop {
            match self.read_once(stream, from, options).await {
                Err(e) if e.kind() == ErrorKind::Unavailable && attempt == 0 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn read_once(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        let (plan, meta) = {
            let st = lock_state(&self.shared);
            if st.closed {
                return Err(Error::closed());
            }
            let Some(s) = st.streams.get(stream) else {
                return Ok(ReadBatch::missing(from));
            };
            let h = &s.head;
            if h.is_expired(now_ms()) {
                return Ok(ReadBatch::missing(from));
            }
            let meta = h.empty_read(from)?;
            if from >= h.next_offset {
                return Ok(meta);
            }
            if let Some((a, b)) = s.lost_at(from) {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    format!(
                        "offsets {a}..{b} of stream {stream:?} were lost to damage (see the recovery report)"
                    ),
                ));
            }
            // The tail cache does not know which of its records are synced yet.
            let durable_only = self.durable_only(options);
            if !durable_only && s.tail.front().is_some_and(|r| r.offset <= from) {
                let mut batch = meta;
                let mut bytes = 0usize;
                for r in s.tail.iter().filter(|r| r.offset >= from) {
                    if !take(&batch.records, bytes, r.payload.len(), options) {
                        break;
                    }
                    bytes += r.payload.len();
                    batch.records.push(r.clone());
                }
                batch.next_offset = from + batch.records.len() as u64;
                return Ok(batch);
            }
            let until = from.saturating_add(options.max_records as u64);
            let mut plan = plan_for(&st, s, from, until);
            if durable_only {
                let synced = *self
                    .shared
                    .durable
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                plan.synced_end = Some(synced);
            }
            (plan, meta)
        };
        let shared = self.shared.clone();
        let options = *options;
        tokio::task::spawn_blocking(move || read_plan(&shared, &plan, meta, &options))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, "a read task failed").with_source(e))?
    }
}

/// Runs every decoder of the on-disk format on `data` (segment header, frame header and body with
/// salt 0 and with the salt read from a segment header, checkpoint) and returns how many accepted
/// it. For fuzzing (`fuzz/`): no input may panic.
#[doc(hidden)]
pub fn fuzz_decoders(data: &[u8]) -> usize {
    let mut ok = 0;
    let salt = format::SegmentHeader::decode(data).map_or(0, |h| {
        ok += 1;
        h.salt()
    });
    for salt in [0, salt] {
        if let Ok(h) = format::decode_header(data, salt) {
            ok += 1;
            let body =
                Bytes::copy_from_slice(data.get(format::FRAME_HEADER_LEN..).unwrap_or_default());
            if format::body_ok(&h, &body, salt) {
                ok += 1;
            }
            if format::decode_data_body(&h, &body).is_ok() {
                ok += 1;
            }
        }
    }
    // A segment: walk its frames with the header's salt.
    if salt != 0 {
        let mut pos = format::SEGMENT_HEADER_LEN;
        while let Some(rest) = usize::try_from(pos).ok().and_then(|p| data.get(p..)) {
            let Ok(h) = format::decode_header(rest, salt) else {
                break;
            };
            let body = Bytes::copy_from_slice(
                rest.get(format::FRAME_HEADER_LEN..h.len as usize)
                    .unwrap_or_default(),
            );
            if !format::body_ok(&h, &body, salt) {
                break;
            }
            ok += 1;
            if h.kind == format::Kind::Data && format::decode_data_body(&h, &body).is_ok() {
                ok += 1;
            }
            pos += h.padded_len();
        }
    }
    if checkpoint::decode(data, 16).is_ok() {
        ok += 1;
    }
    ok
}

/// Counts a reader waiting for durable records while it waits.
struct DurableWaiter<'a>(&'a Shared);

impl<'a> DurableWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.durable_waiters.fetch_add(1, Ordering::AcqRel);
        DurableWaiter(shared)
    }
}

impl Drop for DurableWaiter<'_> {
    fn drop(&mut self) {
        self.0.durable_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether one more record of `len` bytes fits the read's limits (the first always does).
fn take(records: &[Record], bytes: usize, len: usize, options: &ReadOptions) -> bool {
    records.len() < options.max_records
        && (records.is_empty() || bytes.saturating_add(len) <= options.max_bytes)
}

/// Runs a read plan on a blocking thread.
fn read_plan(
    shared: &Shared,
    plan: &Plan,
    mut batch: ReadBatch,
    options: &ReadOptions,
) -> Result<ReadBatch> {
    let mut bytes = 0usize;
    let scanned = scan(&shared.files, plan, |offset, timestamp_ms, _, payload| {
        if !take(&batch.records, bytes, payload.len(), options) {
            return ControlFlow::Break(());
        }
        bytes += payload.len();
        batch.records.push(Record {
            offset,
            timestamp_ms,
            payload,
        });
        ControlFlow::Continue(())
    });
    // Every record visited came from a frame whose checks passed, so the records before a
    // damaged frame (or a failed read) are served, and the read that starts at the damage gets
    // the error. Failing the whole page would hide good records behind a bad one.
    if let Err(e) = scanned {
        if batch.records.is_empty() {
            return Err(e);
        }
    }
    batch.next_offset = plan.from + batch.records.len() as u64;
    Ok(batch)
}

fn lock_state(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state()
}

/// Creates `dir` with mode 0700 if it does not exist.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // The mode given to mkdir is masked by the umask; set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The limits this configuration supports: a batch must fit in one segment with its framing.
fn capabilities(opts: &LocalOptions) -> Capabilities {
    let d = Capabilities::default();
    let overhead = format::SEGMENT_HEADER_LEN
        + 3 * format::FRAME_HEADER_LEN as u64
        + 1
        + crate::types::MAX_IDEMPOTENCY_KEY_BYTES as u64
        + 8
        + 4 * d.max_batch_records as u64
        + 64;
    let room = usize::try_from(opts.segment_bytes.saturating_sub(overhead)).unwrap_or(usize::MAX);
    Capabilities {
        max_batch_bytes: d.max_batch_bytes.min(room),
        max_record_bytes: d.max_record_bytes.min(room),
        idempotency: (opts.idempotency_keys > 0).then_some(IdempotencyWindow {
            keys_per_stream: opts.idempotency_keys,
            max_age: None,
        }),
        persistent: true,
        durable_reads: true,
        ..d
    }
}

#[async_trait]
impl StreamStore for LocalStore {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        let key = options.idempotency_key.as_ref();
        let (bytes, digest) = check_append(stream, &records, key, &self.caps)?;
        let key = options.idempotency_key.zip(digest);
        let stream = stream.clone();
        self.submit(|tx| {
            Op::Append(AppendOp {
                stream,
                records,
                bytes,
                expect: options.expect,
                key,
                tx,
            })
        })
        .await
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        check_read(&options, &self.caps)?;
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        match options.wait {
            None => self.read_now(stream, from, &options).await,
            Some(wait) => {
                let _durable_waiter = self
                    .durable_only(&options)
                    .then(|| DurableWaiter::new(&self.shared));
                wait_for_records(
                    wait,
                    || self.shared.notifiers.arm(stream),
                    || self.read_now(stream, from, &options),
                )
                .await
            }
        }
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let stream = stream.clone();
        self.submit(|tx| Op::Seal { stream, tx }).await
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let stream = stream.clone();
        self.submit(|tx| Op::Trim { stream, before, tx }).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let stream = stream.clone();
        self.submit(|tx| Op::Delete { stream, tx }).await
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let st = lock_state(&self.shared);
        if st.closed {
            return Err(Error::closed());
        }
        match st.streams.get(stream) {
            Some(s) if !s.head.is_expired(now_ms()) => Ok(s.head.info(stream)),
            _ => Err(Error::not_found(stream)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let now = now_ms();
        let st = lock_state(&self.shared);
        if st.closed {
            return Err(Error::closed());
        }
        let live = st
            .streams
            .range((options.lower_bound(), Bound::Unbounded))
            .filter(|(_, s)| !s.head.is_expired(now))
            .map(|(id, _)| id);
        Ok(options.page(live))
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        let stream = stream.clone();
        self.submit(|tx| Op::SetRetention {
            stream,
            retention,
            tx,
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        if self.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let result = match self.tx.send(Queued {
            op: Op::Close { tx },
            _permit: None,
        }) {
            Ok(()) => rx.await.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        {
            let mut st = lock_state(&self.shared);
            st.closed = true;
            st.streams.clear();
        }
        self.shared.notifiers.notify_all();
        // The writer has stopped: release the directory for the next opener.
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        result
    }
}

impl Drop for LocalStore {
    /// Without `close`, the writer still flushes, checkpoints and stops before the lock is freed;
    /// this blocks the dropping thread for that long.
    fn drop(&mut self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tx, _rx) = oneshot::channel();
        let _ = self.tx.send(Queued {
            op: Op::Close { tx },
            _permit: None,
        });
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
