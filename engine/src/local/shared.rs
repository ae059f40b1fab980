//! What the writer thread, its helper threads and the readers share.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::sync::lock;
use crate::wait::Notifiers;

use super::options::LocalOptions;
use super::reader::Files;
use super::state::State;

/// What the writer thread and the readers share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub notifiers: Notifiers,
    pub files: Files,
    pub opts: LocalOptions,
    pub segment_bytes: u64,
    /// Set by `abandon`: the writer stops without checkpoint or clean marker.
    pub abandoned: AtomicBool,
    /// Mirrors `State::poisoned.is_some()`, so callers check it without taking the state lock.
    pub poisoned: AtomicBool,
    /// The log position `(segment, byte)` below which every frame is covered by an `fdatasync`;
    /// advanced by the writer after each sync. Durable reads in `Interval`/`Buffered` mode stop
    /// there (in `Sync` mode nothing is published before it is synced).
    pub durable: Mutex<(u64, u64)>,
    /// Readers waiting for durable records: while nonzero, each non-`Sync` sync wakes every
    /// waiting reader (a publish woke them before their records were durable).
    pub durable_waiters: AtomicUsize,
}

impl Shared {
    /// The committed state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The durable log position, locked.
    pub fn durable(&self) -> MutexGuard<'_, (u64, u64)> {
        lock(&self.durable)
    }

    /// Marks the store poisoned (the first failure's message is kept).
    pub fn poison(&self, e: &io::Error, what: &str) {
        let msg = format!("a {what} of the log failed ({e}); reopen the store");
        let mut st = self.state();
        if st.poisoned.is_none() {
            eprintln!("streamstore: {msg}");
            st.poisoned = Some(msg);
            self.poisoned.store(true, Ordering::Release);
        }
    }

    /// Moves the durable log position forward to `to` (never back) and wakes readers waiting for
    /// durable records (in the modes that publish before they sync).
    pub fn publish_durable(&self, to: (u64, u64)) {
        {
            let mut d = self.durable();
            if *d >= to {
                return;
            }
            *d = to;
        }
        if self.durable_waiters.load(Ordering::Acquire) > 0 {
            self.notifiers.notify_all();
        }
    }
}
