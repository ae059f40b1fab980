//! Handing a written group to the sync thread (`Sync` mode's pipelined group commit), and the
//! overlay through which later groups see the streams of groups still in flight.

use std::io;
use std::sync::mpsc::Receiver;

use tokio::sync::oneshot;

use crate::error::Result;

use super::super::options::Durability;
use super::group::{Group, Inflight};
use super::ops::Queued;
use super::syncer::{Handoff, Syncer};
use super::Writer;

/// What became of a group offered to the sync thread.
pub(super) enum Handed {
    /// Written and handed over; the close and checkpoint requests it held are the caller's.
    Off {
        close: Option<oneshot::Sender<Result<()>>>,
        checkpoints: Vec<oneshot::Sender<Result<()>>>,
    },
    /// Not written: the caller writes, syncs and publishes it.
    Back(Group),
    /// Its write failed.
    Failed(Group, io::Error),
}

impl Writer {
    /// In `Sync` mode, writes the group and hands it to the sync thread (which syncs, publishes
    /// and answers it) so that the next group can be decided and written meanwhile — when there
    /// is a next group: more operations queued (one is taken from `rx` into `lookahead`), or a
    /// group still being synced. A lone appender's group is synced here, which saves it the
    /// hand-off to the sync thread. Gives the group back, unwritten, when it is finished here:
    /// then too in other modes, for a group that rolled to a new segment (the sync thread only
    /// syncs the active file), without a sync thread, or after a failed write.
    pub(super) fn hand_off(&mut self, mut g: Group, rx: Option<&Receiver<Queued>>) -> Handed {
        if self.durability != Durability::Sync
            || !g.rolled.is_empty()
            || !g.created.is_empty()
            || self.syncer_off
        {
            return Handed::Back(g);
        }
        let in_flight = self.syncer.as_ref().is_some_and(Syncer::busy);
        // Operations already in the writer's lanes (`fair.rs`) are a next group too.
        let queued = !self.sched.is_empty();
        if !queued && self.lookahead.is_none() {
            // Also when a group is in flight: whether another group follows this one is what
            // the sync thread's fill wait (`syncer::fill`) goes by.
            self.lookahead = rx.and_then(|rx| rx.try_recv().ok());
        }
        if !in_flight && !queued && self.lookahead.is_none() {
            return Handed::Back(g);
        }
        if self.syncer.is_none() {
            match Syncer::start(self.shared.clone()) {
                Ok(s) => self.syncer = Some(s),
                Err(e) => {
                    tracing::warn!("cannot start the sync thread ({e}); syncing inline");
                    self.syncer_off = true;
                    return Handed::Back(g);
                }
            }
        }
        if !g.buf.is_empty() {
            if let Err(e) = self.write_buf(&mut g) {
                return Handed::Failed(g, e);
            }
        }
        let Some(syncer) = self.syncer.as_mut() else {
            return Handed::Back(g);
        };
        // Later groups decide against these heads until this group is published.
        let number = syncer.next_number();
        for (id, w) in &g.work {
            let head = w.as_ref().map(|w| Inflight {
                number: w.number,
                head: w.head.without_keys(),
                cum_first: w.cum_first,
                keyed: !w.head.keys.is_empty(),
            });
            self.overlay.insert(id.clone(), (number, head));
        }
        let (close, checkpoints) = (g.close.take(), std::mem::take(&mut g.checkpoint));
        let h = Handoff {
            group: g,
            file: self.active.file.clone(),
            seq: self.active.seq,
            end: self.active.pos,
            more: queued || self.lookahead.is_some(),
        };
        match syncer.send(h) {
            Ok(()) => Handed::Off { close, checkpoints },
            Err(h) => {
                // The thread is gone (it cannot be: it only stops when the handle is dropped);
                // finish inline from now on.
                let mut g = h.group;
                (g.close, g.checkpoint) = (close, checkpoints);
                self.syncer = None;
                self.syncer_off = true;
                self.overlay.clear();
                Handed::Back(g)
            }
        }
    }

    /// Waits until the sync thread has finished every group handed to it; the committed state
    /// is then complete and the overlay empty.
    pub(super) fn drain(&mut self) {
        if let Some(s) = &self.syncer {
            s.drain();
        }
        self.overlay.clear();
        self.refresh_durable();
    }

    /// Forgets overlay entries of groups the sync thread has published, and takes over the
    /// durable position it reached.
    pub(super) fn catch_up(&mut self) {
        if let Some(s) = &self.syncer {
            if !self.overlay.is_empty() {
                let done = s.done();
                self.overlay.retain(|_, (n, _)| *n > done);
            }
            self.refresh_durable();
        }
    }

    /// `active.durable` from the position the sync thread last made durable.
    pub(super) fn refresh_durable(&mut self) {
        let (seq, pos) = *self.shared.durable();
        if seq == self.active.seq && pos > self.active.durable {
            self.active.durable = pos.min(self.active.pos);
        }
    }
}
