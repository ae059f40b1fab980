//! Reads across buckets, paged by count and bytes.
//!
//! A read is the stream's head, then its records below the head's `next`. A waiting reader's
//! read after a wake-up ([`Core::read_for_waiter`]) reads both in one statement when this
//! store knows where the stream's open head is: the head row and the records share the
//! bucket's partition, so one statement asks for the rows `(kind, off)` in
//! `[(0, 0), (2, from), …, (2, from + READ_AHEAD - 1)]` (the head row and the next
//! [`READ_AHEAD`] records). The wake says records are likely, and the re-read then costs one
//! statement (two before: the head and the records, at once) on a server whose answers are
//! the wake-up's tail (docs/benchmarks.md, issue 19). A reader further behind reads the rest
//! of its page below the same head's `next` with a second statement.
//!
//! # Why the overlapped read is exact
//!
//! Its records come from the partition of the head it read (same incarnation and bucket, the
//! head open and not expired), at offsets from `from` below that head's `next`. A record's
//! content never changes once written, and a record below `next` was committed with the
//! conditional batch that raised `next` past it, so each such record found, with the head or
//! after it, is the one that head describes. Records disappear only by a trim (below the
//! head's `first`, which only grows, and `from >= first` is checked: `Trimmed` otherwise) or a
//! delete (which closes the head first: a delete before the head read shows as a closed head,
//! one after it leaves the read linearized at the head read). A run of records found from
//! `from` with no gap is thus a valid page of the state the head shows; a shorter run than the
//! head allows (a record not visible yet at a replica, or the second statement finding the
//! rest trimmed) is a shorter page; anything else (no record at `from`, another head state,
//! an older bucket) falls back to the sequential read.

use std::sync::atomic::AtomicU64;

use super::*;
use streamstore::implementor::{ErrorShorthand, ReadBatchParts};

/// Records a woken reader's re-read asks for in the statement that reads the head: a wake-up
/// usually brings a few; a reader further behind reads the rest of its page with a second
/// statement.
pub(crate) const READ_AHEAD: u64 = 32;

/// The run of records from `from` with no gap, below `end`, within a byte budget: a page of
/// the state a head read shows.
struct Page {
    from: u64,
    /// The head's `next`, or the record limit if lower.
    end: u64,
    max_bytes: u64,
    records: Vec<Record>,
    bytes: u64,
    /// The run ended (a gap, `end`, or the byte budget): later records are not taken.
    done: bool,
}

impl Page {
    /// The offset the run continues at.
    fn next(&self) -> u64 {
        self.from
            .saturating_add(u64::try_from(self.records.len()).unwrap_or(u64::MAX))
    }

    /// Takes the record at `off` (rows come in offset order) if it continues the run.
    fn push(&mut self, off: u64, ts: Option<i64>, payload: Option<Vec<u8>>) -> Result<()> {
        if self.done || off >= self.end || off != self.next() {
            self.done = true;
            return Ok(());
        }
        let record = record(off, ts, payload)?;
        // The byte budget as in `read_now`: at least one record, then while it fits.
        let len = u64::try_from(record.payload.len()).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_add(len);
        if self.bytes > self.max_bytes && !self.records.is_empty() {
            self.done = true;
            return Ok(());
        }
        self.records.push(record);
        Ok(())
    }
}

/// How waiting readers' reads after a wake-up went (a test and diagnostic counter).
#[derive(Default)]
pub(crate) struct Rereads {
    /// Served by the overlapped head and records read.
    pub overlapped: AtomicU64,
    /// Fell back to the sequential read (no cached location, or the overlapped read could not
    /// decide).
    pub sequential: AtomicU64,
    /// Statements the overlapped reads ran (one each, two for a reader more than
    /// [`READ_AHEAD`] records behind).
    pub statements: AtomicU64,
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

    /// The head at `loc` and the records of that bucket from `from`, read by one statement
    /// (and a second for a reader more than [`READ_AHEAD`] records behind); `None` if the
    /// answer cannot be decided from them (module docs).
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
        // The offsets asked for with the head: the head row is `(kind 0, off 0)`, records
        // `(kind 2, offset)`.
        let ahead = hi.min(from.saturating_add(READ_AHEAD));
        let mut keys: Vec<(i8, i64)> =
            Vec::with_capacity(1 + usize::try_from(ahead - from).unwrap_or(0));
        keys.push((0, 0));
        for off in from..ahead {
            keys.push((2, db(off)?));
        }
        self.rereads.statements.fetch_add(1, Ordering::Relaxed);
        let found: Vec<Row> = rows(
            self.exec(
                &self.st.head_and_records,
                (stream.as_str(), loc.inc, loc.bucket, keys),
            )
            .await?,
        )?;
        let mut head = None;
        let mut found_records = Vec::with_capacity(found.len());
        for row in found {
            let c = row.columns;
            match c.first() {
                Some(Some(CqlValue::TinyInt(0))) => head = Some(marks::head_at(&c, 4)?),
                Some(Some(CqlValue::TinyInt(2))) => {
                    let off = marks::bigint(c.get(1).and_then(Option::as_ref))?
                        .ok_or_else(|| decode_error(&"a record row without its offset"))?;
                    let ts = marks::bigint(c.get(2).and_then(Option::as_ref))?;
                    let payload = match c.get(3).and_then(Option::as_ref) {
                        None => None,
                        Some(CqlValue::Blob(b)) => Some(b.clone()),
                        Some(other) => {
                            return Err(decode_error(&format!("a payload holds {other:?}")))
                        }
                    };
                    found_records.push((off, ts, payload));
                }
                _ => return Err(decode_error(&"a row of unexpected kind")),
            }
        }
        let Some(h) = head else {
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
        let mut page = Page {
            from,
            end,
            max_bytes,
            records: Vec::new(),
            bytes: 0,
            done: false,
        };
        for (off, ts, payload) in found_records {
            page.push(un(off)?, ts, payload)?;
        }
        if !page.done && page.next() == ahead && ahead < end {
            // A reader further behind than the records asked for with the head: the rest of
            // its page, below the same head's `next`.
            self.rereads.statements.fetch_add(1, Ordering::Relaxed);
            let n = i32::try_from(end - ahead).unwrap_or(i32::MAX);
            let qr = self
                .exec(
                    &self.st.records,
                    (
                        stream.as_str(),
                        loc.inc,
                        loc.bucket,
                        db(ahead)?,
                        db(end)?,
                        n,
                    ),
                )
                .await?;
            for (off, ts, payload) in rows::<(i64, Option<i64>, Option<Vec<u8>>)>(qr)? {
                page.push(un(off)?, ts, payload)?;
            }
        }
        Ok(batch.take_contiguous(page.records).then_some(batch))
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
