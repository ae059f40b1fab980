//! Trims and byte retention: moving a stream's first offset, which needs the cumulative byte count
//! there (from this group's records, the tail cache, or read back from the log).

use crate::implementor::ErrorShorthand;
use std::io;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::types::{Record, StreamId};

use super::super::format::FrameHeader;
use super::super::reader::{plan_for, scan};
use super::group::Group;
use super::Writer;

impl Writer {
    /// Trims the oldest records while the stream holds more than its `max_bytes` (never the
    /// newest record), as the memory store does.
    pub(super) fn enforce_max_bytes(&mut self, g: &mut Group, id: &StreamId) -> io::Result<()> {
        let Some(w) = self.work(g, id) else {
            return Ok(());
        };
        let Some(max) = w.head.retention.max_bytes else {
            return Ok(());
        };
        if w.head.bytes <= max || w.head.next_offset - w.head.first_offset <= 1 {
            return Ok(());
        }
        let target = match self.max_bytes_target(g, id, max) {
            Ok(t) => t,
            Err(e) => {
                // The records could not be read back: leave the stream as is; the next append or
                // sweep tries again.
                self.retention_skipped(id, &e);
                return Ok(());
            }
        };
        match self.trim(g, id, target) {
            Ok(_) => Ok(()),
            Err(TrimError::Io(e)) => Err(e),
            Err(TrimError::Store(e)) => {
                self.retention_skipped(id, &e);
                Ok(())
            }
        }
    }

    /// Notes byte retention of `id` skipped (its records could not be read back).
    fn retention_skipped(&self, id: &StreamId, e: &Error) {
        let counters = &self.shared.counters;
        counters.retention_skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("byte retention of {id:?} skipped: {e}");
    }

    /// Moves the first offset of `id` to `target` (logs a `Trim` frame); returns the first offset.
    pub(super) fn trim(
        &mut self,
        g: &mut Group,
        id: &StreamId,
        target: u64,
    ) -> Result<u64, TrimError> {
        let (number, first) = match self.work(g, id) {
            Some(w) => (w.number, w.head.first_offset),
            None => return Err(TrimError::Store(Error::not_found(id))),
        };
        if target <= first {
            return Ok(first);
        }
        let cum = self.cum_at(g, id, target).map_err(TrimError::Store)?;
        let now = g.now;
        self.emit(g, &FrameHeader::trim(number, target, cum, now), &[])
            .map_err(TrimError::Io)?;
        let w = self
            .work(g, id)
            .ok_or_else(|| TrimError::Store(Error::not_found(id)))?;
        let cum_next = w.cum_next();
        w.head.first_offset = target;
        w.cum_first = cum;
        w.head.bytes = cum_next.saturating_sub(cum);
        w.trimmed = true;
        Ok(target)
    }

    /// Cumulative payload bytes of `id` before offset `t` (`first <= t <= next`).
    pub(super) fn cum_at(&mut self, g: &mut Group, id: &StreamId, t: u64) -> Result<u64> {
        let w = self.work(g, id).ok_or_else(|| Error::not_found(id))?;
        if t >= w.head.next_offset {
            return Ok(w.cum_next());
        }
        if t <= w.head.first_offset {
            return Ok(w.cum_first);
        }
        // Newest records first: this group's, then the committed tail cache.
        let mut cum = w.cum_next();
        let mut covered = w.head.next_offset;
        if walk_back(w.pending.iter(), t, &mut cum, &mut covered) {
            return Ok(cum);
        }
        if w.fresh {
            return Err(Error::new(ErrorKind::Internal, "trim target not in memory"));
        }
        // Older records: the committed state must hold every group before this one.
        self.drain();
        let st = self.state();
        let s = st.streams.get(id).ok_or_else(|| Error::not_found(id))?;
        if s.tail.back().is_some_and(|b| b.offset + 1 == covered)
            && walk_back(s.tail.iter(), t, &mut cum, &mut covered)
        {
            return Ok(cum);
        }
        // Read it back from the log. A target inside a lost range counts from the range's end.
        let t = s.lost_at(t).map_or(t, |(_, b)| b);
        if t >= s.head.next_offset {
            return Ok(s.cum_next());
        }
        let plan = plan_for(&st, s, t, t + 1);
        drop(st);
        let mut found = None;
        scan(&self.shared.files, &plan, |_, _, cum, _| {
            found = Some(cum);
            ControlFlow::Break(())
        })?;
        found.ok_or_else(|| Error::new(ErrorKind::Corruption, "record not found in the log"))
    }

    /// The first offset after enforcing `max` bytes on `id`.
    pub(super) fn max_bytes_target(
        &mut self,
        g: &mut Group,
        id: &StreamId,
        max: u64,
    ) -> Result<u64> {
        let w = self.work(g, id).ok_or_else(|| Error::not_found(id))?;
        let next = w.head.next_offset;
        let first = w.head.first_offset;
        let need = w.cum_next().saturating_sub(max);
        if w.cum_first >= need {
            return Ok(first);
        }
        let newest = next - 1;
        let mut cum = w.cum_next();
        let mut t = next;
        for r in w.pending.iter().rev() {
            let before = cum - r.payload.len() as u64;
            if before < need {
                return Ok(t.min(newest));
            }
            cum = before;
            t = r.offset;
        }
        if w.fresh {
            return Ok(t.max(first).min(newest));
        }
        self.drain();
        let st = self.state();
        let s = st.streams.get(id).ok_or_else(|| Error::not_found(id))?;
        if s.tail.back().is_some_and(|b| b.offset + 1 == t) {
            for r in s.tail.iter().rev() {
                let before = cum - r.payload.len() as u64;
                if before < need {
                    return Ok(t.min(newest));
                }
                cum = before;
                t = r.offset;
            }
        }
        // Older records: scan from the last point at or below the needed cumulative count.
        let start = s
            .points
            .find_cum(need)
            .and_then(|i| s.points.get(i))
            .map_or(first, |p| p.offset.max(first));
        let start = s.lost_at(start).map_or(start, |(_, b)| b);
        if start >= t {
            return Ok(t.max(first).min(newest));
        }
        let plan = plan_for(&st, s, start, t);
        drop(st);
        let mut found = None;
        scan(&self.shared.files, &plan, |off, _, cum_before, _| {
            if cum_before >= need {
                found = Some(off);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found.unwrap_or(t).max(first).min(newest))
    }
}

/// Why a trim failed.
pub(super) enum TrimError {
    /// Writing the log failed: the group fails.
    Io(io::Error),
    /// The trim itself cannot be done (missing stream, unreadable records).
    Store(Error),
}

/// Walks `records` (in offset order, ending at `covered`) from the newest back, taking each
/// payload off `cum` (the cumulative bytes at `covered`), until `t` is reached. Returns whether
/// `cum` is now the cumulative byte count at offset `t`.
fn walk_back<'a>(
    records: impl DoubleEndedIterator<Item = &'a Record>,
    t: u64,
    cum: &mut u64,
    covered: &mut u64,
) -> bool {
    for r in records.rev() {
        if r.offset < t {
            return true;
        }
        *cum -= r.payload.len() as u64;
        *covered = r.offset;
    }
    *covered == t
}
