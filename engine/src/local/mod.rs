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
//! use streamkeep::{AppendOptions, LocalOptions, LocalStore, ReadOptions, StreamId, StreamStore};
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
//! # Ok::<(), streamkeep::Error>(())
//! # }).unwrap();
//! ```

mod backpressure;
mod checkpoint;
mod codec;
mod flusher;
pub(crate) mod format;
pub(crate) mod fs;
mod index;
mod lock;
pub mod metrics;
mod mmap;
mod open;
mod options;
mod prealloc;
mod read;
mod reader;
mod recovery;
mod report;
mod segment;
mod shared;
mod small;
mod state;
mod stats;
mod stream;
mod streams;
mod verify;
mod writer;

use crate::implementor::{ErrorShorthand, ListParts};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::capabilities::{Capabilities, IdempotencyWindow};
use crate::error::{Error, ErrorKind, Result};
use crate::store::StreamStore;
use crate::sync::lock;
use crate::types::{
    AppendOptions, AppendResult, ListOptions, ListPage, ReadBatch, ReadOptions, Retention,
    StreamId, StreamInfo,
};
use crate::validate::{check_append, check_read, now_ms};
use crate::wait::wait_for_records;

pub use backpressure::{QueueStats, StreamQueue};
pub use options::{Durability, LocalOptions, Overload};
pub use report::{LostRange, Quarantine, RecoveryReport, TornTail};
pub use stats::LocalStats;
pub use verify::{verify_dir, VerifyProblem, VerifyReport};

use backpressure::{append_cost, op_cost, Admission};
use lock::DirLock;
use shared::Shared;
use writer::{fail_op, AppendOp, Op, Queued};

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
    admission: Arc<Admission>,
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
        let open::Opened {
            shared,
            writer,
            lock: dir_lock,
        } = open::open(&dir, &options)?;
        metrics::recovery(shared.state().report.duration);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("streamstore-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "open: starting the writer thread")
                    .with_source(e)
            })?;
        Ok(LocalStore {
            shared,
            tx,
            admission: Admission::new(&options),
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(dir_lock)),
            closing: AtomicBool::new(false),
            caps: capabilities(&options),
            dir,
        })
    }

    /// What the last open found: torn tail, quarantined damage, lost offsets, new incarnations.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.shared.state().report.clone()
    }

    /// This session's failures and skipped work: the poison message, failed log writes and
    /// syncs, failed erasures of failed groups, skipped byte retention and compaction; and the
    /// writer's queue: what is queued now (in total and for the streams with the most), and the
    /// operations refused by `Overload::Reject`.
    pub fn stats(&self) -> LocalStats {
        let poisoned = self.shared.state().poisoned.clone();
        let mut stats = self.shared.counters.snapshot(poisoned);
        stats.queue = self.admission.stats();
        stats
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments other than the one being written that live records keep from being deleted, with
    /// the streams that pin them (oldest segment first).
    pub fn pinned_segments(&self) -> Vec<PinnedSegment> {
        let st = self.shared.state();
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
        self.shared.state().segments.len()
    }

    /// Bytes held by the tail caches as counted against `tail_cache_total_bytes` (payload plus
    /// 48 bytes per record).
    pub fn cache_bytes(&self) -> usize {
        self.shared.state().tail_total
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
        self.submit(None, op_cost(), |tx| Op::Checkpoint { tx })
            .await
    }

    fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            let msg = self.shared.state().poisoned.clone().unwrap_or_default();
            return Err(Error::new(ErrorKind::Poisoned, msg));
        }
        Ok(())
    }

    /// Queues an operation of `stream` counting `cost` bytes (`backpressure`) for the writer
    /// and waits for its answer.
    async fn submit<T>(
        &self,
        stream: Option<&StreamId>,
        cost: u64,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        self.check_open()?;
        // Backpressure: the queue is bounded in operations and bytes, per stream and in total;
        // beyond a bound the caller waits or is refused (`LocalOptions::overload`).
        let permit = self.admission.admit(stream, cost).await?;
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
        let cost = append_cost(records.len(), bytes);
        let id = stream.clone();
        self.submit(Some(stream), cost, |tx| {
            Op::Append(AppendOp {
                stream: id,
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
            None => read::read_now(&self.shared, stream, from, &options).await,
            Some(wait) => {
                let _durable_waiter = read::durable_only(&self.shared, &options)
                    .then(|| read::DurableWaiter::new(&self.shared));
                wait_for_records(
                    wait,
                    options.incarnation,
                    || self.shared.notifiers.arm(stream),
                    || read::read_now(&self.shared, stream, from, &options),
                )
                .await
            }
        }
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let id = stream.clone();
        self.submit(Some(stream), op_cost(), |tx| Op::Seal { stream: id, tx })
            .await
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let id = stream.clone();
        self.submit(Some(stream), op_cost(), |tx| Op::Trim {
            stream: id,
            before,
            tx,
        })
        .await
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let id = stream.clone();
        self.submit(Some(stream), op_cost(), |tx| Op::Delete { stream: id, tx })
            .await
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let st = self.shared.state();
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
        let st = self.shared.state();
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
        let id = stream.clone();
        self.submit(Some(stream), op_cost(), |tx| Op::SetRetention {
            stream: id,
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
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // Callers still waiting for a place in the queue learn `Closed`.
        self.admission.close();
        {
            let mut st = self.shared.state();
            st.closed = true;
            st.streams.clear();
        }
        self.shared.notifiers.notify_all();
        // The writer has stopped: release the directory for the next opener.
        drop(lock(&self.lock).take());
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
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
