//! Reads across buckets, paged by count and bytes.
//!
//! A read is the stream's head, then its records below the head's `next`. A waiting reader's
//! read after a wake-up ([`Core::read_for_waiter`]) runs both statements at once when this
//! store knows where the stream's open head is: the wake says records are likely, and the
//! re-read then costs the slower of two statements instead of their sum.
//!
//! # Why the overlapped read is exact
//!
//! Its records come from the partition of the head it read (same incarnation and bucket, the
//! head open and not expired), at offsets from `from` below that head's `next`. A record's
//! content never changes once written, and a record below `next` was committed with the
//! conditional batch that raised `next` past it, so each such record found, before or after
//! the head read, is the one that head describes. Records disappear only by a trim (below the
//! head's `first`, which only grows, and `from >= first` is checked: `Trimmed` otherwise) or a
//! delete (which closes the head first: a delete before the head read shows as a closed head,
//! one after it leaves the read linearized at the head read). A run of records found from
//! `from` with no gap is thus a valid page of the state the head shows; a shorter run than the
//! head allows (appended between the two statements) is a shorter page; anything else (no
//! record at `from`, another head state, an older bucket) falls back to the sequential read.

use std::sync::atomic::AtomicU64;

use super::*;
use streamstore::implementor::{ErrorShorthand, ReadBatchParts};

/// How waiting readers' reads after a wake-up went (a test and diagnostic counter).
#[derive(Default)]
pub(crate) struct Rereads {
    /// Served by the overlapped head and records read.
    pub overlapped: AtomicU64,
    /// Fell back to the sequential read (no cached location, or the overlapped read could not
    /// decide).
    pub sequential: AtomicU64,
}

impl Core {
    /// A read of a waiting reader: `woken` says it follows a wake-up (records likely), where
    /// the head and the records are read at once if the stream's open head location is cached
    /// (module docs); otherwise, and for the first read of a wait, [`Core::read_now`].
    pub(crate) async fn read_for_waiter(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
        woken: bool,
    ) -> Result<ReadBatch> {
        if woken {
            let started = std::time::Instant::now();
            let read = self.reread(stream, from, options).await;
            self.timings.reread.record(started.elapsed());
            return read;
        }
        self.read_now(stream, from, options).await
    }

    /// [`Core::read_for_waiter`] after a wake-up.
    async fn reread(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        self.check_open()?;
        if let Some(loc) = self.cached_loc(stream) {
            if let Some(batch) = self.read_overlapped(stream, from, options, loc).await? {
                self.rereads.overlapped.fetch_add(1, Ordering::Relaxed);
                return Ok(batch);
            }
        }
        self.rereads.sequential.fetch_add(1, Ordering::Relaxed);
        self.read_now(stream, from, options).await
    }

    /// The head at `loc` and the records of that bucket from `from`, read at once; `None` if
    /// the answer cannot be decided from them (module docs).
    async fn read_overlapped(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
        loc: Loc,
    ) -> Result<Option<ReadBatch>> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        let n = i32::try_from(max_records).unwrap_or(i32::MAX);
        let hi = from.saturating_add(u64::try_from(n).unwrap_or(0));
        let (head, records) = tokio::join!(
            self.head(stream, loc),
            self.exec(
                &self.st.records,
                (stream.as_str(), loc.inc, loc.bucket, db(from)?, db(hi)?, n),
            ),
        );
        let Some(h) = head? else {
            return Ok(None);
        };
        if h.closed != OPEN || h.expired(now_ms()) {
            return Ok(None);
        }
        let mut batch = h.engine(loc, None, 0)?.empty_read(from)?;
        if from >= h.next {
            return Ok(Some(batch));
        }
        if from < h.base {
            return Ok(None);
        }
        let end = h.next.min(hi);
        let mut page = Vec::new();
        let mut bytes = 0u64;
        for (off, ts, payload) in rows::<(i64, Option<i64>, Option<Vec<u8>>)>(records?)? {
            let off = un(off)?;
            // The run from `from` with no gap, below the head's `next`.
            let expected = u64::try_from(page.len()).map(|i| from.saturating_add(i));
            if off >= end || expected != Ok(off) {
                break;
            }
            let record = record(off, ts, payload)?;
            // The byte budget as in `read_now`: at least one record, then while it fits.
            let len = u64::try_from(record.payload.len()).unwrap_or(u64::MAX);
            bytes = bytes.saturating_add(len);
            if bytes > max_bytes && !page.is_empty() {
                break;
            }
            page.push(record);
        }
        Ok(batch.take_contiguous(page).then_some(batch))
    }

    pub(crate) async fn read_now(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        for _ in 0..MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Some((loc, h)) = self.live(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let mut batch = h.engine(loc, None, 0)?.empty_read(from)?;
            if from >= h.next {
                return Ok(batch);
            }
            let mut end = h.next.min(from.saturating_add(max_records));
            let Some(buckets) = self.buckets_from(stream, loc, &h, from).await? else {
                continue;
            };
            // The head's byte count covers every record the read can return: if it fits the
            // budget, the budget cannot cut the page; otherwise the lengths decide first.
            if h.bytes > max_bytes {
                let lens = self
                    .lens(stream, loc.inc, &buckets, from, end, end - from)
                    .await?;
                let mut total = 0u64;
                let mut fit = 0u64;
                for (_, len) in &lens {
                    total = total.saturating_add(*len);
                    if total > max_bytes && fit > 0 {
                        break;
                    }
                    fit += 1;
                }
                end = from + fit.max(1);
            }
            let mut records = Vec::new();
            for (i, &(bucket, base)) in buckets.iter().enumerate() {
                let hi = buckets.get(i + 1).map_or(end, |b| b.1).min(end);
                let lo = base.max(from);
                if lo >= hi {
                    continue;
                }
                let n = i32::try_from(hi - lo).unwrap_or(i32::MAX);
                let qr = self
                    .exec(
                        &self.st.records,
                        (stream.as_str(), loc.inc, bucket, db(lo)?, db(hi)?, n),
                    )
                    .await?;
                for (off, ts, payload) in rows::<(i64, Option<i64>, Option<Vec<u8>>)>(qr)? {
                    records.push(record(un(off)?, ts, payload)?);
                }
            }
            // Every record below the head's `next` was written before the head was read, so
            // only a trim or delete in between can leave a hole: read again.
            if u64::try_from(records.len()).ok() == Some(end - from)
                && batch.take_contiguous(records)
            {
                return Ok(batch);
            }
        }
        Err(Error::kept_changing(stream))
    }
}

/// A record from its row in the records table (offset already converted; no timestamp or
/// payload column reads as 0 and empty).
fn record(offset: u64, ts: Option<i64>, payload: Option<Vec<u8>>) -> Result<Record> {
    Ok(Record {
        offset,
        timestamp_ms: un(ts.unwrap_or(0))?,
        payload: Bytes::from(payload.unwrap_or_default()),
    })
}
