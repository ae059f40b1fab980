//! Where a watcher with a change index stands: the cursor of its change reads, and the round
//! over every entry that its ticks read a share of each (the safety net; `watcher` module docs).

use std::time::Duration;

use tokio::time::Instant;

use crate::types::StreamId;

/// Where the change index reads stand, and the round over every entry that the ticks read a
/// share of each.
///
/// The safety net (a read of every entry every [`WatchOptions::full_pass`](super::WatchOptions::full_pass)) is spread over the
/// ticks instead of run at once: a round lists the entries in order when it starts, and each
/// tick reads the share of it due by the next tick, so the round ends within `full_pass` of its
/// start and the next one starts then. An entry keeps its place from one round to the next
/// (the order is the streams' order), so it is read about every `full_pass`; an entry created
/// during a round joins its end, so it too is read again within `full_pass` of its first read.
/// A tick's work thus stays
/// one change read plus a share of the entries (not a read of every entry every `full_pass`),
/// and the next tick is not held back by a long pass.
pub(super) struct Delta {
    /// The cursor of the last successful [`HeadSource::changes`](super::HeadSource::changes) call.
    pub(super) cursor: Option<u64>,
    /// The entries of the current round, in order (the first `round_read` are read).
    pub(super) round: Vec<StreamId>,
    /// How many of `round` were read.
    pub(super) round_read: usize,
    /// When the current round started.
    pub(super) round_started: Instant,
}

impl Delta {
    /// Starts a round over `all` (sorted, so an entry's place is the same in every round).
    pub(super) fn start_round(&mut self, mut all: Vec<StreamId>) {
        all.sort_unstable();
        self.round = all;
        self.round_read = 0;
        self.round_started = Instant::now();
    }

    /// Adds new entries (just given their first read) to the end of the round in progress, if
    /// any (without one, the read of every entry that starts the first round includes them).
    pub(super) fn join_round(&mut self, fresh: &[StreamId]) {
        if !self.round.is_empty() {
            self.round.extend_from_slice(fresh);
        }
    }

    /// Whether the round ended and `full_pass` has passed since it started: time for the next.
    pub(super) fn round_ended(&self, full_pass: Duration) -> bool {
        self.round_read >= self.round.len() && self.round_started.elapsed() >= full_pass
    }

    /// The entries of the round to read now: those due by the next tick (`tick` away), so the
    /// round ends within `full_pass` of its start.
    pub(super) fn due(&mut self, tick: Duration, full_pass: Duration) -> Vec<StreamId> {
        let len = self.round.len();
        let full = full_pass.as_nanos();
        let by_now = if full == 0 {
            len
        } else {
            let part = (self.round_started.elapsed() + tick).as_nanos().min(full);
            // `part <= full`, so the quotient is at most `len`.
            usize::try_from((len as u128 * part).div_ceil(full)).map_or(len, |n| n.min(len))
        };
        let from = self.round_read.min(by_now);
        self.round_read = by_now.max(self.round_read);
        self.round[from..by_now].to_vec()
    }
}
