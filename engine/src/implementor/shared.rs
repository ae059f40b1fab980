//! The preamble every adapter's `StreamStore` calls share: the open flag, the checks before an
//! append, and the background tasks that must not outlive the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::parts::ErrorShorthand;
use super::validate::check_append;
use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::types::{AppendOptions, IdempotencyKey, StreamId};

/// Whether a store is still open; every call checks it first.
#[derive(Debug, Default)]
pub struct OpenFlag {
    closed: AtomicBool,
}

impl OpenFlag {
    /// `Closed` once [`close`](Self::close) was called.
    pub fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// Whether [`close`](Self::close) has not been called.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Marks the store closed; returns whether it was open (the first `close` does the work).
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }
}

/// An append checked before anything is written: [`check_append`] against `caps`, after the
/// open check. Returns the batch's payload bytes and, for a keyed append, the key with the batch
/// digest to store beside it.
pub fn prepare_append<'a>(
    open: &OpenFlag,
    stream: &StreamId,
    records: &[Bytes],
    options: &'a AppendOptions,
    caps: &Capabilities,
) -> Result<(u64, Option<(&'a IdempotencyKey, u64)>)> {
    open.check()?;
    let key = options.idempotency_key.as_ref();
    let (bytes, digest) = check_append(stream, records, key, caps)?;
    Ok((bytes, key.zip(digest)))
}

/// Background tasks owned by a store (a retention sweeper, a notification listener): aborted
/// when the store closes or is dropped, so none outlives it.
#[derive(Debug, Default)]
pub struct Tasks {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    /// Tasks that start with `tasks`.
    pub fn new(tasks: impl IntoIterator<Item = JoinHandle<()>>) -> Self {
        Tasks {
            tasks: Mutex::new(tasks.into_iter().collect()),
        }
    }

    /// Adds a task.
    pub fn push(&self, task: JoinHandle<()>) {
        self.lock().push(task);
    }

    /// Aborts every task (they end at their next await point).
    pub fn abort_all(&self) {
        for task in self.lock().drain(..) {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}
