//! How a group ends, the same on the writer and on the sync thread: published (visible, its
//! waiters answered) once a sync covering it returned, or, if its write or sync failed, the store
//! poisoned, the group's bytes erased and its waiters failed.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::types::StreamId;

use super::super::fs::{segment_path, FileHandle};
use super::super::metrics;
use super::super::shared::Shared;
use super::super::stream::Stream;
use super::group::Group;
use super::ops::{fail_op, Op, Queued};
use super::Writer;

/// Why a group failed: the step of the log that failed, and where the group's bytes are (to
/// erase them).
pub(super) struct Failure<'a> {
    pub error: &'a io::Error,
    /// `"write"` or `"sync"` (in the poison message and the waiters' error).
    pub what: &'static str,
    /// The file of segment `seq` (the group may have written into a segment it then rolled).
    pub file: &'a dyn Fn(u64) -> io::Result<Arc<dyn FileHandle>>,
}

/// Ends a group, on the writer or on the sync thread. Without a failure (a sync covering the group
/// returned, or none is needed in this mode): publishes it — applies it to the shared state, wakes
/// readers, answers its waiters; `active` is the active segment and the write position after the
/// group (readers may read up to it). With a failure: poisons the store, tries to erase the
/// group's frames so that a reopen does not resurrect appends reported as failed, and fails its
/// waiters and checkpoint requests with the returned error (the caller fails the rest of the
/// queue with it).
pub(super) fn finish(
    shared: &Shared,
    g: &mut Group,
    touched: &mut Vec<StreamId>,
    active: (u64, u64),
    failure: Option<Failure<'_>>,
) -> Option<Error> {
    let Some(f) = failure else {
        publish(shared, g, touched, active);
        return None;
    };
    shared.poison(f.error, f.what);
    for (seq, start, len) in &g.written {
        let erased = (f.file)(*seq).and_then(|file| {
            let zeros = vec![0u8; usize::try_from(*len).unwrap_or(0)];
            file.write_all_at(&zeros, *start)?;
            file.sync_data()
        });
        if let Err(e2) = erased {
            shared
                .counters
                .erase_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "could not erase a failed group in segment {seq} ({e2}); its appends may \
                 reappear after reopen"
            );
        }
    }
    let (what, e) = (f.what, f.error);
    let err = Error::new(ErrorKind::Poisoned, format!("the log {what} failed: {e}"));
    for r in g.replies.drain(..) {
        r.send(Some(&err));
    }
    for tx in g.checkpoint.drain(..) {
        let _ = tx.send(Err(Error::new(ErrorKind::Poisoned, err.message())));
    }
    Some(err)
}

impl Writer {
    /// Ends a group whose write (or a roll's sync) failed on the writer ([`finish`]), and fails
    /// the operations of the batch not run yet. Returns the close request, if one was among them.
    pub(super) fn fail_group(
        &mut self,
        mut g: Group,
        e: &io::Error,
        rest: impl Iterator<Item = Queued>,
    ) -> Option<oneshot::Sender<Result<()>>> {
        let (active, shared, seg_dir) = (&self.active, &self.shared, &self.seg_dir);
        let file = |seq: u64| {
            if seq == active.seq {
                Ok(active.file.clone())
            } else {
                // A segment finished by a roll in this group: open it for writing again.
                shared.opts.fs.open(&segment_path(seg_dir, seq), true)
            }
        };
        let failure = Failure {
            error: e,
            what: "write",
            file: &file,
        };
        let end = (active.seq, active.pos);
        let err = finish(shared, &mut g, &mut self.touched, end, Some(failure))
            .unwrap_or_else(|| Error::new(ErrorKind::Poisoned, "the log write failed"));
        let mut close = g.close;
        for q in rest {
            match q.op {
                Op::Close { tx } => close = Some(tx),
                op => fail_op(op, &err),
            }
        }
        close
    }
}

/// Makes the group visible: applies it to the shared state, wakes readers, answers waiters.
/// `active` is the active segment and the write position after the group (readers may read up
/// to it).
fn publish(shared: &Shared, g: &mut Group, touched: &mut Vec<StreamId>, active: (u64, u64)) {
    let opts = &shared.opts;
    let mut st = shared.state();
    // Created first: a group that rolled twice created a segment and finished it too.
    for (seq, info) in &g.created {
        st.segments.insert(*seq, *info);
    }
    for (seq, len) in &g.rolled {
        if let Some(s) = st.segments.get_mut(seq) {
            s.readable = *len;
        }
    }
    if let Some(s) = st.segments.get_mut(&active.0) {
        s.readable = active.1;
    }
    // The state describes the log up to here from now on (a checkpoint takes the two together).
    st.published = active;
    for id in &g.deleted {
        if let Some(s) = st.streams.remove(id) {
            st.tail_total = st.tail_total.saturating_sub(s.tail_bytes);
        }
    }
    for (id, w) in g.work.drain() {
        let Some(w) = w else { continue };
        if w.fresh {
            st.streams
                .insert(id.clone(), Stream::new(w.number, w.head.clone()));
        }
        let Some(s) = st.streams.get_mut(&id) else {
            continue;
        };
        let cached_before = s.tail_bytes;
        s.head = w.head;
        s.cum_first = w.cum_first;
        for p in &w.frames {
            s.points.note_frame(*p, true, None);
        }
        s.push_tail(&w.pending, opts.tail_cache_records, opts.tail_cache_bytes);
        if w.trimmed {
            s.points.trim(s.head.first_offset, s.head.next_offset);
            s.trim_tail();
            s.trim_lost();
        }
        if w.reincarnated {
            s.clear_tail();
        }
        let cached_after = s.tail_bytes;
        st.tail_total = (st.tail_total + cached_after).saturating_sub(cached_before);
        touched.push(id);
    }
    st.evict_tails(opts.tail_cache_total_bytes);
    drop(st);
    // Counted before anyone is answered: an appender that reads the metrics after its
    // acknowledgement sees its append counted.
    let a = g.appended;
    metrics::group(a.appends, a.records, a.bytes);
    // Readers first: a waiting reader's wake-up (a Tokio worker to unpark) then overlaps the
    // appenders' replies instead of queueing behind them. Both see the state published above.
    shared
        .notifiers
        .notify_each(g.deleted.iter().chain(touched.iter()));
    for r in g.replies.drain(..) {
        r.send(None);
    }
    touched.clear();
}
