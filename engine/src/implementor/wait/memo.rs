//! Reads the watcher spares: what a waiting read found at a stream's end, kept on the stream's
//! [`Watcher`] entry, so that the next waiting read from there costs no statement while nothing
//! changed.
//!
//! A reader that follows a stream loops over `read(next, wait)`. Without a memo each wake-up
//! costs two reads: the woken read, which returns the new records, and the first read of the
//! next call, which finds nothing more and parks; a wait that times out costs two as well. With
//! one, the woken read leaves a memo of the stream's end it reached, and the next call parks on
//! it: one read per wake-up, one per timeout at most.
//!
//! # Why a memo is as good as a read
//!
//! A waiter is safe because it arms (subscribes at its entry's version) before the read it
//! guards: a change after that read moves a later mark away from the baseline and wakes every
//! subscriber of that version (module docs of `watcher`). A memo is the result of such a read,
//! made after an arm at version `v`, and is used only while the entry is still at `v` (every
//! wake, whatever its cause, moves the version): a waiter that arms at `v` now and takes the memo
//! instead of reading stands where the waiter that made the read stood, and every change after
//! that read wakes it too.
//!
//! What it gives up is freshness: a change committed after the memo's read and not noticed yet
//! is seen when the watcher notices it (the waiter wakes then), not at once. That is the bound a
//! waiting read already has, so a memo is kept at most one tick ([`Watcher::options`]), and
//! never past the stream's time-based expiry (a change no mark reports when it happens).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{wait_for_records, Watcher};
use crate::error::Result;
use crate::implementor::validate::now_ms;
use crate::types::{Incarnation, ReadBatch, StreamId};

/// Which arm of which entry a read was guarded by (see [`Watcher::arm_read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The entry (a new entry for the same stream gets a new serial).
    pub(super) serial: u64,
    /// The entry's version when the waiter armed.
    pub(super) version: u64,
}

/// What a waiting read found at the end of a stream that exists and is not sealed.
#[derive(Clone, Debug)]
pub(super) struct Memo {
    /// The entry's version the read was armed at: the memo holds while the entry is at it.
    pub(super) version: u64,
    /// The empty batch at the stream's end.
    pub(super) batch: ReadBatch,
    /// When the read completed.
    pub(super) taken: Instant,
    /// The stream's time-based expiry (ms since the epoch), if it has one.
    pub(super) expires_ms: Option<u64>,
}

impl Memo {
    /// The memo of `batch`, read after an arm at `version`: `None` unless the read reached the
    /// end of a stream that exists and is not sealed (every other answer ends a wait anyway, or
    /// is one a later call must read again).
    pub(super) fn of(version: u64, batch: &ReadBatch, expires_ms: Option<u64>) -> Option<Memo> {
        let incarnation: Incarnation = batch.incarnation?;
        if batch.sealed || batch.next_offset != batch.end_offset {
            return None;
        }
        Some(Memo {
            version,
            batch: ReadBatch {
                records: Vec::new(),
                next_offset: batch.end_offset,
                end_offset: batch.end_offset,
                first_available: batch.first_available,
                sealed: false,
                incarnation: Some(incarnation),
            },
            taken: Instant::now(),
            expires_ms,
        })
    }

    /// The batch a read from `from` would return, if the memo still answers it: the entry is at
    /// the memo's `version`, the memo is younger than `max_age`, the stream has not expired, and
    /// `from` is the end the memo found.
    pub(super) fn answer(&self, version: u64, from: u64, max_age: Duration) -> Option<ReadBatch> {
        let holds = self.version == version
            && self.batch.next_offset == from
            && self.taken.elapsed() <= max_age
            && self.expires_ms.is_none_or(|at| now_ms() < at);
        holds.then(|| self.batch.clone())
    }
}

/// [`wait_for_records`] for a store that waits on a [`Watcher`], with the reads it spares: each
/// read is guarded by [`Watcher::arm_read`], answered by the stream's memo when one holds
/// ([`Watcher::recall`]), and otherwise made by `read_now`, whose answer is kept as the memo
/// ([`Watcher::remember`]). `read_now(after_wake)` returns the batch read from `from` and the
/// stream's time-based expiry (ms since the epoch; `None` if it has none, does not exist, or the
/// adapter does not track it: a memo lasts at most a tick, and a reader parked that long before
/// an expiry waits for the watcher to notice it as well); `after_wake` is `false` for the
/// first read of the wait only (records are then less likely: an adapter may read differently).
pub async fn wait_on_watcher<R, F>(
    watcher: &Watcher,
    stream: &StreamId,
    from: u64,
    wait: Duration,
    expected: Option<Incarnation>,
    mut read_now: R,
) -> Result<ReadBatch>
where
    R: FnMut(bool) -> F,
    F: Future<Output = Result<(ReadBatch, Option<u64>)>>,
{
    // Set by each arm, read by the read that follows it (the loop alternates the two; a mutex
    // only because the future must be `Send`).
    let ticket: Mutex<Option<Ticket>> = Mutex::new(None);
    let ticket = &ticket;
    let mut first = true;
    wait_for_records(
        wait,
        expected,
        || {
            let (wakeup, armed) = watcher.arm_read(stream);
            *ticket.lock().unwrap_or_else(PoisonError::into_inner) = armed;
            wakeup
        },
        || {
            let after_wake = !std::mem::replace(&mut first, false);
            let pending = match watcher.recall(stream, from) {
                Some(batch) => Ok(batch),
                None => Err(read_now(after_wake)),
            };
            let armed = *ticket.lock().unwrap_or_else(PoisonError::into_inner);
            async move {
                match pending {
                    Ok(batch) => Ok(batch),
                    Err(read) => {
                        let (batch, expires_ms) = read.await?;
                        if let Some(armed) = armed {
                            watcher.remember(stream, armed, &batch, expires_ms);
                        }
                        Ok(batch)
                    }
                }
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(next: u64, end: u64, sealed: bool, incarnation: Option<u64>) -> ReadBatch {
        ReadBatch {
            records: Vec::new(),
            next_offset: next,
            end_offset: end,
            first_available: 0,
            sealed,
            incarnation: incarnation.map(Incarnation),
        }
    }

    #[test]
    fn only_a_read_that_reached_the_end_of_a_live_stream_is_kept() {
        assert!(Memo::of(1, &batch(5, 5, false, Some(7)), None).is_some());
        assert!(
            Memo::of(1, &batch(4, 5, false, Some(7)), None).is_none(),
            "not at the end"
        );
        assert!(
            Memo::of(1, &batch(5, 5, true, Some(7)), None).is_none(),
            "sealed"
        );
        assert!(
            Memo::of(1, &batch(5, 0, false, None), None).is_none(),
            "missing"
        );
    }

    #[test]
    fn a_memo_answers_only_its_version_its_end_its_age_and_before_expiry() {
        let hour = Duration::from_secs(3600);
        let memo = Memo::of(3, &batch(5, 5, false, Some(7)), None).unwrap();
        let answer = memo.answer(3, 5, hour).unwrap();
        assert_eq!((answer.next_offset, answer.end_offset), (5, 5));
        assert!(answer.records.is_empty());
        assert!(
            memo.answer(4, 5, hour).is_none(),
            "the entry was woken since"
        );
        assert!(memo.answer(3, 4, hour).is_none(), "another offset");
        std::thread::sleep(Duration::from_millis(3));
        assert!(
            memo.answer(3, 5, Duration::from_millis(1)).is_none(),
            "too old"
        );
        let expired = Memo::of(3, &batch(5, 5, false, Some(7)), Some(now_ms() - 1)).unwrap();
        assert!(expired.answer(3, 5, hour).is_none(), "the stream expired");
        let later = Memo::of(3, &batch(5, 5, false, Some(7)), Some(now_ms() + 60_000)).unwrap();
        assert!(later.answer(3, 5, hour).is_some());
    }
}
