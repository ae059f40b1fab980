//! Waiting reads: one loop shared by every implementation, the per-stream [`Notifiers`] of
//! in-process stores, and the [`Watcher`] that database adapters poll their streams' heads with.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Result;
use crate::types::{Incarnation, ReadBatch, StreamId};

mod memo;
mod round;
mod timings;
mod watcher;

pub use memo::{wait_on_watcher, Ticket};
#[doc(hidden)]
pub use timings::Timings;
pub use watcher::{Changes, HeadSource, WatchOptions, WatchStats, Watcher};

/// A future that completes when the stream may have changed (a notification or a poll tick).
pub type Wakeup<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs a waiting read.
///
/// `arm` is called before every `read_now` and returns the wake-up for changes after that point,
/// so an append between the read and the wait is never missed. The loop returns the first batch
/// that has records, is sealed, shows a different incarnation than `expected` (the incarnation
/// the caller follows, [`ReadOptions::incarnation`](crate::ReadOptions::incarnation)) or, without
/// one, than the first read that found the stream (it was deleted or re-created), finds no stream
/// above offset 0 (such offsets only existed in a deleted life), or is read at or after the
/// deadline.
pub async fn wait_for_records<'a, R, F>(
    wait: Duration,
    expected: Option<Incarnation>,
    mut arm: impl FnMut() -> Wakeup<'a>,
    mut read_now: R,
) -> Result<ReadBatch>
where
    R: FnMut() -> F,
    F: Future<Output = Result<ReadBatch>>,
{
    let deadline = Instant::now() + wait;
    let mut first_incarnation = expected.map(Some);
    loop {
        let wakeup = arm();
        let batch = read_now().await?;
        // A stream that did not exist at the first read and was created since is the one waited
        // for: its records (not its creation alone) end the wait. A durable read of it may see
        // the new incarnation before any of its records is durable.
        if first_incarnation == Some(None) {
            first_incarnation = Some(batch.incarnation);
        }
        let incarnation = *first_incarnation.get_or_insert(batch.incarnation);
        if !batch.records.is_empty()
            || batch.sealed
            || batch.incarnation != incarnation
            || batch.is_gone()
            || Instant::now() >= deadline
        {
            return Ok(batch);
        }
        tokio::select! {
            () = wakeup => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Per-stream notifiers for in-process stores: waiters register, writers wake them.
///
/// A `watch` channel per waited-on stream: subscribing marks the current version as seen, so a
/// change made after `arm` and before the wake-up is polled is never lost. Entries exist only while
/// someone waits (they are swept once no receiver is left), so idle streams cost nothing here.
#[derive(Default)]
pub struct Notifiers {
    map: Mutex<HashMap<StreamId, watch::Sender<u64>, foldhash::fast::RandomState>>,
}

impl Notifiers {
    /// A wake-up for the next change of `stream`, registered before this returns.
    pub fn arm(&self, stream: &StreamId) -> Wakeup<'static> {
        let mut rx = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= 1024 && map.len().is_power_of_two() {
                map.retain(|_, tx| tx.receiver_count() > 0);
            }
            map.entry(stream.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        Box::pin(async move {
            // An error means the sender is gone (the store dropped it): treat as a change.
            let _ = rx.changed().await;
        })
    }

    /// Wakes every reader waiting on `stream`.
    pub fn notify(&self, stream: &StreamId) {
        self.notify_each(std::iter::once(stream));
    }

    /// Wakes every reader waiting on any of `streams`, under one lock (the local writer publishes
    /// groups touching thousands of streams; with nobody waiting this costs one check).
    pub fn notify_each<'a>(&self, streams: impl IntoIterator<Item = &'a StreamId>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return;
        }
        for stream in streams {
            if let Some(tx) = map.get(stream) {
                if tx.receiver_count() == 0 {
                    map.remove(stream);
                } else {
                    tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
        }
    }

    /// Wakes every waiting reader (on close).
    pub fn notify_all(&self) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for tx in map.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

/// The retention sweeper every database adapter runs: `sweep` every `every` (a late tick is
/// delayed, never bunched) for as long as `open` says the store is open.
///
/// A sweep's errors (a server restarting) are not reported: the sweeper only removes data
/// early; reads and writes never serve an expired stream whether it ran or not.
pub async fn sweep_periodically<T, F, Fut>(every: Duration, open: impl Fn() -> bool, mut sweep: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !open() {
            return;
        }
        let _ = sweep().await;
    }
}
