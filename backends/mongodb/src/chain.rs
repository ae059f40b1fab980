//! Walking a stream's chain to its last entry, and the in-process cache of where to start.
//!
//! The chain of a stream cannot fork: each entry determines the one slot that may follow it
//! ([`Entry::next_slot`]), and an insert into a slot succeeds for exactly one writer (the `_id`
//! is unique). So the last entry is found by following slots from any entry already known
//! (cached in this process, or the advisory hint stored in `<prefix>hints`) until a slot is
//! empty, by point reads on `_id`, the only lookup FerretDB pushes down to SQLite. Entries are
//! never removed, so every known entry stays a valid starting point forever.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use streamstore::{Result, StreamId};

use crate::core::MongoCore;
use crate::entry::Entry;
use crate::slot::Slot;

/// Streams whose last seen entry is cached; the cache is emptied when it reaches this size.
const CACHE_CAP: usize = 1 << 16;

/// A walk that took this many steps raises the stored hint (so other processes, and this one
/// after a cache reset, start close to the end).
pub const HINT_AFTER_STEPS: u32 = 8;

/// Where walks start: the last entry this process saw of each stream.
#[derive(Default)]
pub struct StartCache {
    map: Mutex<HashMap<StreamId, Entry>>,
}

impl StartCache {
    /// The cached entry of `stream`.
    pub fn get(&self, stream: &StreamId) -> Option<Entry> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .cloned()
    }

    /// Remembers `entry` of `stream` if it is further along the chain than the cached one.
    pub fn put(&self, stream: &StreamId, entry: &Entry) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAP && !map.contains_key(stream) {
            map.clear();
        }
        match map.get_mut(stream) {
            Some(old) if old.slot >= entry.slot => {}
            Some(old) => *old = entry.clone(),
            None => {
                map.insert(stream.clone(), entry.clone());
            }
        }
    }
}

/// The outcome of a walk: the last entry (`None`: the stream was never written) and how many
/// entries were read on the way.
pub struct Walked {
    /// The last entry of the chain when the walk ended.
    pub last: Option<Entry>,
    /// Entries read.
    pub steps: u32,
}

/// Follows the chain of `stream` from `start` (or from its origin) to its last entry.
pub async fn walk(core: &MongoCore, stream: &StreamId, start: Option<Entry>) -> Result<Walked> {
    let mut last = start;
    let mut slot = last.as_ref().map_or(Slot::ORIGIN, Entry::next_slot);
    let mut steps = 0;
    while let Some(e) = core.entry(stream, slot).await? {
        slot = e.next_slot();
        last = Some(e);
        steps += 1;
    }
    Ok(Walked { last, steps })
}

/// The best place to start a walk of `stream`: the cached entry, else the stored hint.
pub async fn start_of(
    core: &MongoCore,
    cache: &StartCache,
    stream: &StreamId,
) -> Result<Option<Entry>> {
    if let Some(e) = cache.get(stream) {
        return Ok(Some(e));
    }
    match core.hint(stream).await? {
        Some(slot) => core.entry(stream, slot).await,
        None => Ok(None),
    }
}
