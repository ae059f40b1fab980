//! Change hints: after every head write, the stream's new mark goes into `<prefix>changes`, so
//! that the watcher of waiting reads asks each tick for the hints written since its last call
//! (one multi-partition statement) instead of the heads of every waited-on stream.
//!
//! # Why only a hint
//!
//! A conditional batch stays in one partition, so the hint cannot be written in the head's
//! Paxos round: it is a second, plain write after the head write succeeded. A crash (or a
//! failed write) between the two loses it, and its stamp is the writing process's clock, which
//! may differ from the watcher's. Hence [`HeadSource::changes`] here reports the changes whose
//! hints it finds, and the watcher's read of every waited-on stream every
//! [`WatchOptions::full_pass`] (`wait_full_ms=`) finds the others.
//!
//! # What the margin covers
//!
//! A hint is `(slot, shard, at, sid, mark)`: `at` is the writer's clock in microseconds taken
//! after the head write was acknowledged, `slot` is `at` in whole seconds, `shard` a hash of the
//! stream id (8 shards, so that no single partition takes every write of a second), `mark` the
//! mark the head read of `Core::heads_marks` returns for the new head (null when the write
//! deleted the stream). A call with cursor `c` (the watcher's clock when the previous call
//! started) reads every partition of the seconds from `window_start(c, now)` to now, the rows
//! with `at >= window_start(c, now)`: `c - NARROW_US` (300 ms), or, for the first call of each
//! second (a *wide* call), `MARGIN_US` (1 s) before the start of `c`'s second. The wide calls'
//! windows overlap by the margin, so they alone read what one margin per call read (see
//! `window_start`); the narrow calls read ~5× fewer rows per tick and report the usual hint at
//! the first tick after its write. A change committed after the previous call started is
//! therefore in the answer if its hint (a) was written at all, (b) is stamped by a clock at
//! most [`NARROW_US`] behind the watcher's (the stamp is taken after the commit, so with equal
//! clocks it is later than `c`), and (c) became visible before this call's statement ran. A
//! hint that missed (b) or (c) (a lagging clock, a hint still on its way) is found by the next
//! call whose window reaches back to its stamp: the next one if stamp-to-visibility stays
//! under `NARROW_US`, else the next wide call (within a second and a tick) if skew plus
//! stamp-to-visibility stay under `MARGIN_US`; reporting it late is safe (the
//! mark differs from any baseline read before the change). What falls to the full pass: lost
//! hints (a crash or a failed insert after the head write; counted by
//! `CassandraStore::lost_hints`), writers whose clocks lag the watcher's by more than the margin, hints
//! delayed longer than the margin, expiries not yet swept (the sweeper's delete writes a
//! hint), heads written by an older release of this adapter (no hints), and more than
//! [`MAX_CHANGES`] hints (or a window of more than [`MAX_SLOTS`] seconds: a stalled watcher) in
//! the window (the watcher then reads every entry).
//!
//! A stream with several hints in the window is reported with the mark of its latest stamp.
//! With skewed clocks that may be an older mark than the current one: the watcher then wakes
//! its waiters once more than needed (they read the current state and wait again), never
//! fewer, since every head write makes a new mark (`ver` grows, incarnations are random).
//!
//! [`HeadSource::changes`]: streamstore::implementor::wait::HeadSource::changes
//! [`WatchOptions::full_pass`]: streamstore::implementor::wait::WatchOptions::full_pass

use std::sync::atomic::AtomicU64;

use streamstore::implementor::wait::Changes;

use super::*;

/// How far before the previous call's start a call reads (see the module docs): clock skew
/// between writer processes and the watcher, plus a hint's delay from stamp to visibility,
/// plus a tick. Only the first call of each [`WIDE_EVERY_US`] period reads this far back (from
/// before the previous period's start, see [`window_start`]); the others read [`NARROW_US`].
pub(crate) const MARGIN_US: u64 = 1_000_000;

/// How far before the previous call's start the calls between two wide ones read: enough for
/// the usual stamp-to-visibility delay of a hint (its insert's latency, up to ~200 ms measured
/// on a loaded 2-core machine), so that almost every hint is reported at the first tick after
/// its write; a hint that misses it is reported by the next wide call (module docs).
pub(crate) const NARROW_US: u64 = 300_000;

/// The period of wide calls: the first call in each period of this length reads back
/// [`MARGIN_US`] before the start of the period of the previous call.
pub(crate) const WIDE_EVERY_US: u64 = 1_000_000;

/// Where a call started at `now` after a call started at `since` reads from (microseconds).
///
/// A call in the same [`WIDE_EVERY_US`] period as the previous one reads from
/// `since - NARROW_US`. The first call of a later period (a *wide* call) reads from the start
/// of the previous call's period minus [`MARGIN_US`]: that is at or before the previous wide
/// call's start minus the margin (the previous wide call is the first call of that period, or
/// of an earlier one), so the wide calls' windows overlap by the margin and together cover
/// every hint stamped at most `MARGIN_US` before it became visible, as one margin per call
/// did; the narrow calls only report most hints sooner. Rows read per second at 500 head
/// writes/s and a 100 ms tick: ~1,050 a second for the wide call plus ~200 for each narrow
/// one (against ~550 for every call with the margin on each).
pub(crate) fn window_start(since: u64, now: u64) -> u64 {
    if is_wide(since, now) {
        (since / WIDE_EVERY_US * WIDE_EVERY_US).saturating_sub(MARGIN_US)
    } else {
        since.saturating_sub(NARROW_US)
    }
}

/// Whether the call at `now` after the one at `since` is the first of its second: a wide read
/// (see [`window_start`]).
fn is_wide(since: u64, now: u64) -> bool {
    now / WIDE_EVERY_US > since / WIDE_EVERY_US
}

/// The length of a slot (one partition per shard).
const SLOT_US: i64 = 1_000_000;

/// Shards per slot.
const HINT_SHARDS: i32 = 8;

/// Slots a call reads at most (each is [`HINT_SHARDS`] partitions); a call whose window spans
/// more reports "too many" and the watcher reads every entry.
const MAX_SLOTS: i64 = 16;

/// Hints listed per call at most; beyond, the watcher reads every waited-on stream.
pub(crate) const MAX_CHANGES: usize = 4096;

/// The hint state of a store: a test seam that suppresses hints, and the count of hints lost.
#[derive(Default)]
pub(crate) struct HintState {
    /// Hints are not written (a test seam: a lost hint, as after a crash).
    pub off: AtomicBool,
    /// Hint inserts that failed (the full pass covers their changes).
    pub lost: AtomicU64,
}

impl Core {
    /// Writes the hint that `stream`'s head now has `mark` (`None`: deleted). Called after the
    /// head write succeeded; a failure is counted, never returned (module docs).
    pub(super) async fn hint(&self, stream: &StreamId, mark: Option<u64>) {
        if self.hints.off.load(Ordering::Acquire) {
            return;
        }
        let at = now_micros();
        let mark = mark.map(|m| i64::from_le_bytes(m.to_le_bytes()));
        let r = self
            .exec(
                &self.st.hint_insert,
                (
                    at.div_euclid(SLOT_US),
                    shard_of(stream, HINT_SHARDS),
                    at,
                    stream.as_str(),
                    mark,
                ),
            )
            .await;
        if r.is_err() {
            self.hints.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hint inserts that failed so far.
    pub(crate) fn lost_hints(&self) -> u64 {
        self.hints.lost.load(Ordering::Relaxed)
    }

    /// Test seam: stops (`false`) or resumes writing hints.
    pub(crate) fn set_hints(&self, on: bool) {
        self.hints.off.store(!on, Ordering::Release);
    }

    /// [`HeadSource::changes`](streamstore::implementor::wait::HeadSource::changes): the hints
    /// since `window_start(since, now)` (module docs); the cursor is this process's clock before the
    /// statement.
    pub(crate) async fn hinted_changes(&self, since: Option<u64>) -> Result<Changes> {
        let cursor = now_micros();
        // The first call lists nothing (the watcher reads every stream after it): the cursor.
        let Some(since) = since else {
            return Ok(Changes {
                cursor: u64::try_from(cursor).unwrap_or(0),
                marks: Some(Vec::new()),
            });
        };
        let from = i64::try_from(window_start(since, u64::try_from(cursor).unwrap_or(0)))
            .unwrap_or(i64::MAX);
        let (first, last) = (from.div_euclid(SLOT_US), cursor.div_euclid(SLOT_US));
        if last.saturating_sub(first) >= MAX_SLOTS {
            // The last call is long past (a slow pass, a stalled process): rather than a read
            // of that many partitions, the watcher reads every entry.
            return Ok(Changes {
                cursor: u64::try_from(cursor).unwrap_or(0),
                marks: None,
            });
        }
        let slots: Vec<i64> = (first..=last).collect();
        let shards: Vec<i32> = (0..HINT_SHARDS).collect();
        let limit = i32::try_from(MAX_CHANGES + 1).unwrap_or(i32::MAX);
        let asked = std::time::Instant::now();
        let answer = self
            .exec(&self.st.hints_since, (slots, shards, from, limit))
            .await;
        let t = &self.timings;
        let wide = is_wide(since, u64::try_from(cursor).unwrap_or(0));
        let timings = if wide { &t.hint_wide } else { &t.hint_narrow };
        timings.record(asked.elapsed());
        let found: Vec<(Option<i64>, Option<String>, Option<i64>)> = rows(answer?)?;
        let cursor = u64::try_from(cursor).unwrap_or(0);
        if found.len() > MAX_CHANGES {
            return Ok(Changes {
                cursor,
                marks: None,
            });
        }
        // The latest stamp of each stream wins (module docs).
        let mut latest: HashMap<String, (i64, Option<u64>)> = HashMap::with_capacity(found.len());
        for (at, sid, mark) in found {
            let (Some(at), Some(sid)) = (at, sid) else {
                return Err(decode_error(&"a change hint lacks a key column"));
            };
            let mark = mark.map(|m| u64::from_le_bytes(m.to_le_bytes()));
            let e = latest.entry(sid).or_insert((at, mark));
            if at >= e.0 {
                *e = (at, mark);
            }
        }
        let mut marks = Vec::with_capacity(latest.len());
        for (sid, (_, mark)) in latest {
            marks.push((StreamId::new(sid)?, mark));
        }
        Ok(Changes {
            cursor,
            marks: Some(marks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls a tick apart (jittered): every hint stamped at most `MARGIN_US` before it became
    /// visible is inside the window of some call that started after it became visible, and
    /// a hint visible `NARROW_US` after its stamp is in the window of the first such call.
    #[test]
    fn wide_windows_keep_the_margin() {
        let mut starts = vec![5_000_000_123u64];
        let mut x = 7u64;
        for _ in 0..2_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let last = *starts.last().unwrap();
            starts.push(last + 60_000 + (x >> 33) % 90_000);
        }
        let windows: Vec<(u64, u64)> = starts
            .windows(2)
            .map(|w| (window_start(w[0], w[1]), w[1]))
            .collect();
        let (lo, hi) = (starts[20], starts[starts.len() - 20]);
        for stamp in (lo..hi).step_by(7_919) {
            for delay in [0, 1_000, NARROW_US - 1_000, 500_000, MARGIN_US - 1_000] {
                let visible = stamp + delay;
                let first = windows
                    .iter()
                    .position(|&(_, start)| start > visible)
                    .unwrap();
                let found = windows[first..]
                    .iter()
                    .find(|&&(from, _)| from <= stamp)
                    .map(|&(_, start)| start);
                let found = found.expect("some later call's window holds the hint");
                assert!(
                    found <= visible + WIDE_EVERY_US + 200_000,
                    "{stamp} {delay}"
                );
                if delay + 150_000 <= NARROW_US {
                    assert!(windows[first].0 <= stamp, "{stamp} {delay}: the next call");
                }
            }
        }
    }

    #[test]
    fn narrow_and_wide_calls() {
        assert_eq!(window_start(5_400_000, 5_500_000), 5_100_000);
        assert_eq!(window_start(5_950_000, 6_050_000), 4_000_000);
        assert_eq!(window_start(100, 200), 0);
    }
}
