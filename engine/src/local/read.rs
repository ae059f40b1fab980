//! The read path: a read served from the tail cache, or planned under the state lock and run on
//! a blocking thread (`reader::scan`).

use crate::implementor::{ErrorShorthand, ReadBatchParts};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::types::{ReadBatch, ReadOptions, Record, StreamId};
use crate::validate::now_ms;

use super::options::Durability;
use super::reader::{plan_for, scan, Plan};
use super::shared::Shared;

/// Whether `options` asks for more than what is visible: durable records in a mode that
/// publishes before syncing.
pub(super) fn durable_only(shared: &Shared, options: &ReadOptions) -> bool {
    options.durable && !matches!(shared.opts.durability, Durability::Sync)
}

/// Reads `stream` from `from` without waiting.
pub(super) async fn read_now(
    shared: &Arc<Shared>,
    stream: &StreamId,
    from: u64,
    options: &ReadOptions,
) -> Result<ReadBatch> {
    // A segment deleted between planning and reading (trim + checkpoint) is retried once.
    let mut attempt = 0;
    loop {
        match read_once(shared, stream, from, options).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && attempt == 0 => attempt += 1,
            other => return other,
        }
    }
}

/// One read attempt, without waiting.
async fn read_once(
    shared: &Arc<Shared>,
    stream: &StreamId,
    from: u64,
    options: &ReadOptions,
) -> Result<ReadBatch> {
    let (plan, meta) = {
        let st = shared.state();
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
        let durable_only = durable_only(shared, options);
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
            let synced = *shared.durable();
            plan.synced_end = Some(synced);
        }
        (plan, meta)
    };
    let shared = Arc::clone(shared);
    let options = *options;
    tokio::task::spawn_blocking(move || read_plan(&shared, &plan, meta, &options))
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "a read task failed").with_source(e))?
}

/// Counts a reader waiting for durable records while it waits.
pub(super) struct DurableWaiter<'a>(&'a Shared);

impl<'a> DurableWaiter<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
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
