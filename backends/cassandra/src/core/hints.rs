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
//! mark differs from any baseline read before the change).
//!
//! The watcher's source (`Core::hinted_changes_split`) answers a wide call after reading only
//! its narrow part (from `c - NARROW_US`, what a narrow call reads) and reads the rest of the
//! window (from `window_start` to `c - NARROW_US`) at the same time in a task of its own, whose
//! hints the next call reports, or the next wide call at the latest (which waits for the task
//! first): the windows read are the same, so is what they find, only the hints that the wide
//! part alone holds (those that missed (b) or (c) by more than `NARROW_US`) are reported a tick
//! (at most a second) later, and no wake-up waits for the read of ~5× the rows of a narrow
//! window. An error of either read fails the call and drops the task: the watcher then reads
//! every entry, which finds every change committed before that read. What falls to the full
//! pass: lost
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
    let period = since / WIDE_EVERY_US;
    if now / WIDE_EVERY_US > period {
        (period * WIDE_EVERY_US).saturating_sub(MARGIN_US)
    } else {
        since.saturating_sub(NARROW_US)
    }
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

    /// The hints since `window_start(since, now)` in one statement (module docs); the cursor
    /// is this process's clock before the statement. (The watcher's source reads a wide
    /// window in two parts instead: [`Core::hinted_changes_split`].)
    pub(crate) async fn hinted_changes(&self, since: Option<u64>) -> Result<Changes> {
        let cursor = now_micros();
        let now = u64::try_from(cursor).unwrap_or(0);
        // The first call lists nothing (the watcher reads every stream after it): the cursor.
        let Some(since) = since else {
            return Ok(listed(now, Vec::new()));
        };
        let from = window_start(since, now);
        if too_long(from, now) {
            return Ok(unlisted(now));
        }
        let found = self.hint_rows(from, None, now, since).await?;
        changes_of(now, found)
    }

    /// [`HeadSource::changes`](streamstore::implementor::wait::HeadSource::changes) as the
    /// watcher's source calls it: a wide call reads only the narrow window (from
    /// `since - NARROW_US`) before it answers, and leaves the rest of its window (from
    /// `window_start` to there) to a task of its own, whose hints a later call reports:
    /// the next call if the task is done by then, the next wide call at the latest (which
    /// waits for it). `late` is the task the previous call returned; the answer comes with
    /// the task to pass to the next call. So no answer waits for the read of a wide window
    /// (~5× the rows of a narrow one), and what only the wide window holds (a hint stamped
    /// more than `NARROW_US` before it became visible) is reported a tick or a second later
    /// than in one statement (module docs).
    pub(crate) async fn hinted_changes_split(
        self: &Arc<Self>,
        since: Option<u64>,
        late: Option<LateHints>,
    ) -> Result<(Changes, Option<LateHints>)> {
        let cursor = now_micros();
        let now = u64::try_from(cursor).unwrap_or(0);
        let Some(since) = since else {
            // The watcher reads every entry after this call: what `late` holds is older.
            if let Some(task) = late {
                task.abort();
            }
            return Ok((listed(now, Vec::new()), None));
        };
        let from = window_start(since, now);
        if too_long(from, now) {
            if let Some(task) = late {
                task.abort();
            }
            return Ok((unlisted(now), None));
        }
        let narrow = since.saturating_sub(NARROW_US);
        let (fresh_from, next) = if from < narrow {
            let core = Arc::clone(self);
            let task =
                tokio::spawn(
                    async move { core.hint_rows(from, Some(narrow), narrow, since).await },
                );
            (narrow, Some(task))
        } else {
            (from, None)
        };
        // The previous call's task: reported now if done, or if a new one starts (so at most
        // one is pending and a wide window is reported by the next wide call at the latest).
        let (earlier, kept) = match late {
            Some(task) if next.is_some() || task.is_finished() => (Some(task), None),
            other => (None, other),
        };
        let earlier =
            async {
                match earlier {
                    Some(task) => match task.await {
                        Ok(read) => read,
                        Err(e) => Err(Error::new(ErrorKind::Internal, "a hint read task failed")
                            .with_source(e)),
                    },
                    None => Ok(Vec::new()),
                }
            };
        let (fresh, earlier) = tokio::join!(self.hint_rows(fresh_from, None, now, since), earlier);
        let mut found = earlier?;
        found.extend(fresh?);
        Ok((changes_of(now, found)?, next.or(kept)))
    }

    /// The hints stamped from `from` (µs) on, below `until` if given, of every partition of
    /// the seconds from `from` to `until` (or `now`); timed as wide or narrow by the call
    /// whose cursor was `since`.
    async fn hint_rows(
        &self,
        from: u64,
        until: Option<u64>,
        now: u64,
        since: u64,
    ) -> Result<Vec<HintRow>> {
        let us = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let last = until.map_or(now, |u| u.saturating_sub(1)).max(from);
        let slots: Vec<i64> =
            (us(from).div_euclid(SLOT_US)..=us(last).div_euclid(SLOT_US)).collect();
        let shards: Vec<i32> = (0..HINT_SHARDS).collect();
        let limit = i32::try_from(MAX_CHANGES + 1).unwrap_or(i32::MAX);
        let asked = std::time::Instant::now();
        let answer = match until {
            None => {
                self.exec(&self.st.hints_since, (slots, shards, us(from), limit))
                    .await
            }
            Some(until) => {
                self.exec(
                    &self.st.hints_between,
                    (slots, shards, us(from), us(until), limit),
                )
                .await
            }
        };
        let t = &self.timings;
        let timings = if until.is_some() {
            &t.hint_late
        } else if now / WIDE_EVERY_US > since / WIDE_EVERY_US {
            &t.hint_wide
        } else {
            &t.hint_narrow
        };
        timings.record(asked.elapsed());
        rows(answer?)
    }
}

/// A hint as read: its stamp, stream id and mark.
type HintRow = (Option<i64>, Option<String>, Option<i64>);

/// The older part of a wide call's window, read by a task of its own for a later call
/// ([`Core::hinted_changes_split`]).
pub(crate) type LateHints = tokio::task::JoinHandle<Result<Vec<HintRow>>>;

/// Whether a window from `from` to `now` spans too many seconds to read (a slow pass, a
/// stalled process): the watcher then reads every entry instead.
fn too_long(from: u64, now: u64) -> bool {
    let slot = |t: u64| t / SLOT_US.unsigned_abs();
    slot(now).saturating_sub(slot(from)) >= MAX_SLOTS.unsigned_abs()
}

fn listed(cursor: u64, marks: Vec<(StreamId, Option<u64>)>) -> Changes {
    Changes {
        cursor,
        marks: Some(marks),
    }
}

fn unlisted(cursor: u64) -> Changes {
    Changes {
        cursor,
        marks: None,
    }
}

/// The answer for the hints `found`: each stream with the mark of its latest stamp (module
/// docs), or "too many" beyond [`MAX_CHANGES`].
fn changes_of(cursor: u64, found: Vec<HintRow>) -> Result<Changes> {
    if found.len() > MAX_CHANGES {
        return Ok(unlisted(cursor));
    }
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
    Ok(listed(cursor, marks))
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

    /// A wide call of the watcher's source answers with its narrow part; a hint only the rest
    /// of its window holds (stamped more than `NARROW_US` before the previous call's start)
    /// comes with a later call, from the task the wide call started. (Needs the server, as
    /// `tests/`; passes without it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wide_call_answers_with_its_narrow_part_and_reports_the_rest_later() {
        let Ok(nodes) = std::env::var(crate::NODES_ENV) else {
            println!("SKIPPED: {} is not set", crate::NODES_ENV);
            return;
        };
        let prefix = format!("hs{:08x}_", rand::random::<u32>());
        let config = CassandraConfig::new(&nodes, "streamstore_test")
            .unwrap()
            .with_prefix(&prefix)
            .unwrap();
        let core = Arc::new(
            Core::open(config.clone(), Capabilities::default())
                .await
                .unwrap(),
        );
        let s = StreamId::new("split/s").unwrap();
        let at_second = |t: u64| t / WIDE_EVERY_US;
        // A hint, then a cursor more than `NARROW_US` later, and a call in the next second
        // (a wide call: its window reaches back a second before the cursor's second).
        let (since, first, late) = loop {
            core.hint(&s, Some(7)).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            let since = u64::try_from(now_micros()).unwrap();
            let next = (at_second(since) + 1) * WIDE_EVERY_US;
            tokio::time::sleep(Duration::from_micros(next - since + 20_000)).await;
            let (first, late) = core.hinted_changes_split(Some(since), None).await.unwrap();
            if at_second(first.cursor) == at_second(since) + 1 {
                break (since, first, late);
            }
            // The call came more than a second late (a loaded machine): again.
        };
        let reported = |c: &Changes| {
            c.marks
                .as_ref()
                .expect("listed")
                .iter()
                .any(|(id, m)| id == &s && *m == Some(7))
        };
        assert!(!reported(&first), "the narrow part is answered alone");
        let whole = core.hinted_changes(Some(since)).await.unwrap();
        assert!(
            reported(&whole),
            "one statement over the window reports it at once"
        );
        // The next calls report it, from the task.
        let mut late = Some(late.expect("a wide call leaves the rest of its window to a task"));
        let mut cursor = first.cursor;
        let mut found = false;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (next, rest) = core.hinted_changes_split(Some(cursor), late).await.unwrap();
            cursor = next.cursor;
            late = rest;
            if reported(&next) {
                found = true;
                break;
            }
        }
        assert!(found, "a later call reports the rest of the wide window");
        crate::schema::drop_tables(&core.session, &config)
            .await
            .unwrap();
    }

    #[test]
    fn narrow_and_wide_calls() {
        assert_eq!(window_start(5_400_000, 5_500_000), 5_100_000);
        assert_eq!(window_start(5_950_000, 6_050_000), 4_000_000);
        assert_eq!(window_start(100, 200), 0);
    }
}
