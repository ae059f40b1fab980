//! The batched reads of waiting reads: after a wake storm (a mass seal, an append to many
//! streams at once) every woken reader re-reads its stream, and a burst of readers arriving
//! together (or re-arming after a wake) reads theirs; queued together, their heads cost one
//! statement per [`HEADS_PER_STATEMENT`] readers and their records one statement per
//! [`RECORDS_STREAMS_PER_STATEMENT`] streams, instead of two statements per reader. One batch
//! starts at most every [`MIN_BATCH_GAP`], gathering whatever arrived meanwhile.
//!
//! Only the reads of waiting reads (their first read and their re-reads) come here; ordinary
//! reads run their own statements. The
//! batcher only *prefetches*: each reader still checks what it got exactly as an ordinary read
//! checks its own statements' results (`empty_read`, then `take_contiguous`), and reads again on
//! its own (on the wait pool) when a trim or delete ran between the head and the records, when
//! the byte budget probably cuts its page, or when the batched records statement failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use streamstore::{Error, ErrorKind, Record, Result, StreamId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::dialect::{RecordRange, SqlDialect};
use crate::model::{is_expired, HeadRow};

/// Heads per batched head statement.
const HEADS_PER_STATEMENT: usize = 1000;

/// Shortest time from the start of one batch to the start of the next: a batch gathers what
/// arrived meanwhile, so a steady flow of waiting reads (every append waking a reader that
/// reads, then reads again to wait) shares statements instead of running two per read, at the
/// cost of at most this much latency for a read that arrives right after a batch started. A
/// read arriving when no batch ran for this long starts one at once.
const MIN_BATCH_GAP: Duration = Duration::from_millis(2);

/// Streams per batched records statement.
pub const RECORDS_STREAMS_PER_STATEMENT: usize = 256;

/// Records (by the ranges' lengths) per batched records statement; a larger range is read by
/// its reader alone.
const RECORDS_PER_STATEMENT: u64 = 4096;

/// Payload bytes (estimated by each stream's mean record length) per batched records
/// statement; a larger range is read by its reader alone.
const BYTES_PER_STATEMENT: u64 = 8 << 20;

/// What a woken waiting read asks for.
#[derive(Clone, Debug)]
pub(crate) struct Wanted {
    pub stream: StreamId,
    pub from: u64,
    pub max_records: u64,
    pub max_bytes: u64,
}

/// What the batcher read for one waiting read: the stream's head (`None`: no head row; expiry
/// is the reader's to check) and, when the head showed records the read wants and the batch
/// could read them, the records of [`record_range`] of that head (the byte budget applied),
/// which the reader checks for contiguity like any read's records.
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    pub head: Option<HeadRow>,
    pub records: Option<Vec<Record>>,
}

/// The records a read from `from` of at most `max_records` / `max_bytes` asks for, given the
/// stream's head (`from` must be below its `next_offset`). The same for ordinary reads and the
/// batcher, so what the batcher read is what the reader would have read.
pub(crate) fn record_range(
    h: &HeadRow,
    from: u64,
    max_records: u64,
    max_bytes: u64,
) -> RecordRange {
    let held = h.head.next_offset - h.head.first_offset;
    RecordRange {
        incarnation: h.head.incarnation,
        from,
        end: h.head.next_offset.min(from.saturating_add(max_records)),
        // The head's byte count covers every record the read can return: if it fits the
        // budget, the budget cannot cut the page.
        max_bytes: if h.head.bytes <= max_bytes {
            u64::MAX
        } else {
            max_bytes
        },
        mean_len: h.head.bytes.div_ceil(held.max(1)),
    }
}

/// How many re-reads the batcher served, and with how many statements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RereadStats {
    /// Woken waiting reads answered by the batcher (each got at least its head).
    pub reads: u64,
    /// Of those, reads whose records came from a batched records statement.
    pub records_prefetched: u64,
    /// Batched head statements run.
    pub head_statements: u64,
    /// Batched records statements run.
    pub records_statements: u64,
}

type Reply = oneshot::Sender<Result<Prefetched>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(Wanted, Reply)>,
    /// Whether a flusher task is running (it drains the queue until it finds it empty).
    flushing: bool,
    /// When the last batch started (see [`MIN_BATCH_GAP`]).
    last_batch: Option<Instant>,
    stats: RereadStats,
}

/// The per-store batcher of woken waiting reads' re-reads.
pub(crate) struct Rereads<D> {
    dialect: Arc<D>,
    queue: Mutex<Queue>,
}

impl<D: SqlDialect> Rereads<D> {
    pub(crate) fn new(dialect: Arc<D>) -> Self {
        Rereads {
            dialect,
            queue: Mutex::new(Queue::default()),
        }
    }

    pub(crate) fn stats(&self) -> RereadStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `wanted` and waits for the batch it joins. The statements run in a task of their
    /// own, so a cancelled read strands nobody.
    pub(crate) async fn reread(self: &Arc<Self>, wanted: Wanted) -> Result<Prefetched> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = self.lock();
            q.waiting.push((wanted, tx));
            !std::mem::replace(&mut q.flushing, true)
        };
        if lead {
            tokio::spawn(Arc::clone(self).flush());
        }
        rx.await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the store is closing"))?
    }

    /// Answers queued re-reads, [`HEADS_PER_STATEMENT`] per batch and at most one batch per
    /// [`MIN_BATCH_GAP`], until none is left.
    async fn flush(self: Arc<Self>) {
        loop {
            // Let the other readers woken by the same event queue up first.
            tokio::task::yield_now().await;
            let last = self.lock().last_batch;
            if let Some(last) = last {
                tokio::time::sleep_until(last + MIN_BATCH_GAP).await;
            }
            let batch: Vec<_> = {
                let mut q = self.lock();
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
                q.last_batch = Some(Instant::now());
                let take = q.waiting.len().min(HEADS_PER_STATEMENT);
                q.waiting.drain(..take).collect()
            };
            self.answer(batch).await;
        }
    }

    /// One batch: its heads in one statement, then the records the heads show in as few
    /// statements as the limits allow; every reader gets its answer.
    async fn answer(&self, batch: Vec<(Wanted, Reply)>) {
        let mut ids: Vec<StreamId> = batch.iter().map(|(w, _)| w.stream.clone()).collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        let heads: HashMap<StreamId, HeadRow> = match self.dialect.heads(&ids).await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                for (_, tx) in batch {
                    let _ = tx.send(Err(Error::new(e.kind(), e.message())));
                }
                return;
            }
        };
        let mut answers: Vec<Prefetched> = batch
            .iter()
            .map(|(w, _)| Prefetched {
                head: heads.get(&w.stream).cloned(),
                records: None,
            })
            .collect();
        let wanted: Vec<(usize, RecordRange)> = batch
            .iter()
            .zip(&answers)
            .enumerate()
            .filter_map(|(i, ((w, _), a))| Some((i, prefetchable(w, a.head.as_ref()?)?)))
            .collect();
        let mut statements = 0u64;
        for group in groups(&wanted) {
            let reads: Vec<(&StreamId, RecordRange)> = group
                .iter()
                .map(|&(i, range)| (&batch[i].0.stream, range))
                .collect();
            statements += 1;
            // A failed batch leaves its readers to read on their own (and meet the error, if it
            // persists, on their own statements).
            let Ok(rows) = self.dialect.records_batch(&reads).await else {
                continue;
            };
            for (slot, records) in group.iter().zip(split(rows, group.len())) {
                let (i, range) = *slot;
                answers[i].records = Some(within_budget(records, range.max_bytes));
            }
        }
        let prefetched = answers.iter().filter(|a| a.records.is_some()).count();
        {
            let mut q = self.lock();
            q.stats.reads += u64::try_from(batch.len()).unwrap_or(u64::MAX);
            q.stats.records_prefetched += u64::try_from(prefetched).unwrap_or(u64::MAX);
            q.stats.head_statements += 1;
            q.stats.records_statements += statements;
        }
        for ((_, tx), answer) in batch.into_iter().zip(answers) {
            let _ = tx.send(Ok(answer));
        }
    }
}

/// The records range the batcher reads for `w` given its stream's head, if any: the head must
/// be live, hold records at `from` and after it, and the byte budget must probably not cut the
/// page (a cut page runs the adapter's budgeted statement, by the reader alone). A range larger
/// than a batched statement takes is left to the reader too.
fn prefetchable(w: &Wanted, h: &HeadRow) -> Option<RecordRange> {
    if is_expired(h, streamstore::implementor::validate::now_ms())
        || w.from < h.head.first_offset
        || w.from >= h.head.next_offset
    {
        return None;
    }
    let range = record_range(h, w.from, w.max_records, w.max_bytes);
    let count = range.end - range.from;
    let fits = count <= RECORDS_PER_STATEMENT
        && range.mean_len.saturating_mul(count) <= BYTES_PER_STATEMENT;
    (fits && !range.likely_cut()).then_some(range)
}

/// Splits `wanted` into the groups of one records statement each: at most
/// [`RECORDS_STREAMS_PER_STATEMENT`] ranges, [`RECORDS_PER_STATEMENT`] records and
/// [`BYTES_PER_STATEMENT`] estimated bytes.
fn groups(wanted: &[(usize, RecordRange)]) -> Vec<&[(usize, RecordRange)]> {
    let mut out = Vec::new();
    let (mut start, mut records, mut bytes) = (0, 0u64, 0u64);
    for (k, (_, range)) in wanted.iter().enumerate() {
        let count = range.end - range.from;
        let size = range.mean_len.saturating_mul(count);
        if k > start
            && (k - start == RECORDS_STREAMS_PER_STATEMENT
                || records + count > RECORDS_PER_STATEMENT
                || bytes + size > BYTES_PER_STATEMENT)
        {
            out.push(&wanted[start..k]);
            (start, records, bytes) = (k, 0, 0);
        }
        records += count;
        bytes += size;
    }
    if start < wanted.len() {
        out.push(&wanted[start..]);
    }
    out
}

/// The rows of a records statement (each with the index of its range) as one vector per range,
/// in offset order.
fn split(rows: Vec<(usize, Record)>, ranges: usize) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = (0..ranges).map(|_| Vec::new()).collect();
    for (i, r) in rows {
        if let Some(v) = out.get_mut(i) {
            v.push(r);
        }
    }
    for v in &mut out {
        v.sort_unstable_by_key(|r| r.offset);
    }
    out
}

/// The first records of `records` whose payloads fit `max_bytes` by their running sum, and at
/// least one (the contract of [`SqlDialect::records`]).
fn within_budget(mut records: Vec<Record>, max_bytes: u64) -> Vec<Record> {
    if max_bytes == u64::MAX {
        return records;
    }
    let mut bytes = 0u64;
    let keep = records
        .iter()
        .position(|r| {
            bytes = bytes.saturating_add(u64::try_from(r.payload.len()).unwrap_or(u64::MAX));
            bytes > max_bytes
        })
        .map_or(records.len(), |cut| cut.max(1));
    records.truncate(keep);
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(offset: u64, len: usize) -> Record {
        Record {
            offset,
            timestamp_ms: 0,
            payload: Bytes::from(vec![b'x'; len]),
        }
    }

    fn range(from: u64, end: u64, mean_len: u64) -> RecordRange {
        RecordRange {
            incarnation: streamstore::Incarnation(1),
            from,
            end,
            max_bytes: u64::MAX,
            mean_len,
        }
    }

    #[test]
    fn the_budget_keeps_at_least_one_record() {
        let r = || vec![rec(0, 10), rec(1, 10), rec(2, 10)];
        assert_eq!(within_budget(r(), u64::MAX).len(), 3);
        assert_eq!(within_budget(r(), 25).len(), 2);
        assert_eq!(within_budget(r(), 20).len(), 2);
        assert_eq!(within_budget(r(), 5).len(), 1);
        assert_eq!(within_budget(Vec::new(), 5).len(), 0);
    }

    #[test]
    fn rows_are_split_by_range_in_offset_order() {
        let rows = vec![
            (1, rec(7, 1)),
            (0, rec(3, 1)),
            (1, rec(6, 1)),
            (9, rec(0, 1)),
        ];
        let per = split(rows, 3);
        let offsets: Vec<Vec<u64>> = per
            .iter()
            .map(|v| v.iter().map(|r| r.offset).collect())
            .collect();
        assert_eq!(offsets, vec![vec![3], vec![6, 7], vec![]]);
    }

    #[test]
    fn groups_respect_every_limit() {
        let many: Vec<_> = (0..600).map(|i| (i, range(0, 1, 10))).collect();
        let sizes: Vec<usize> = groups(&many).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![256, 256, 88]);
        let long: Vec<_> = (0..3).map(|i| (i, range(0, 3000, 1))).collect();
        assert_eq!(groups(&long).len(), 3);
        let big: Vec<_> = (0..4).map(|i| (i, range(0, 2, 3 << 20))).collect();
        assert_eq!(groups(&big).len(), 4);
        assert!(groups(&[]).is_empty());
    }
}
