//! The watcher's head check: which waited-on streams moved, for many streams in one query.
//!
//! Every write lands as the insert of one entry at the successor slot of the stream's last
//! entry ([`Entry::next_slot`]): appends, seals, trims, retention changes, deletes (a delete's
//! successor is the first slot of the next generation, so a re-creation lands there too), and
//! the sweeper's removal of an expired stream (a delete entry). Entries are never removed and a
//! slot holds at most one entry ever (see `chain.rs`). So for a known entry `e` of a stream,
//! "the slot after `e` is empty" means exactly "`e` is the stream's last entry now", and "it is
//! taken" means the stream moved on since `e`.
//!
//! A pass therefore asks ONE query for the successor slots of every stream it checks (the
//! entry this process last saw of it, from the start cache, or the origin slot for a stream it
//! never saw: an empty origin means the stream was never written), and walks only the streams
//! whose slot was taken. Its cost is one query plus work proportional to the streams that
//! changed, not to the streams waited on. The one change without a write, a retention deadline
//! passing, is seen from the cached entry itself (`Entry::live_head` at the pass's time).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use futures::{StreamExt, TryStreamExt};
use streamstore::implementor::validate::now_ms;
use streamstore::{Error, Result, StreamId};

use crate::chain::{start_of, walk, StartCache, Walked};
use crate::core::MongoCore;
use crate::entry::Entry;
use crate::slot::Slot;

/// Streams that moved are walked at once, this many at a time.
const WALK_CONCURRENCY: usize = 32;

/// The mark of a stream whose last entry is `e` at `now_ms`: a hash of its slot while it is
/// live, `None` once deleted or expired.
fn mark_of(e: &Entry, now_ms: u64) -> Option<u64> {
    e.live_head(now_ms)?;
    let mut h = DefaultHasher::new();
    e.slot.hash(&mut h);
    Some(h.finish())
}

/// For each of `streams` that exists and is live, a hash of its last entry's slot: it changes
/// with every write (append, seal, trim, retention, delete, re-creation) and when the stream
/// expires. One `$in` query on the successor slots, then walks of the streams that moved.
pub(crate) async fn marks(
    core: &MongoCore,
    cache: &StartCache,
    streams: &[StreamId],
) -> Result<Vec<(StreamId, u64)>> {
    let known: Vec<Option<Entry>> = streams.iter().map(|s| cache.get(s)).collect();
    let next_ids: Vec<String> = streams
        .iter()
        .zip(&known)
        .map(|(s, e)| e.as_ref().map_or(Slot::ORIGIN, Entry::next_slot).id(s))
        .collect();
    let taken = core.taken(next_ids.clone()).await?;
    // Taken after the query started, so a cached entry whose successor was empty was the last
    // entry at some instant during the pass: the mark is the state then, as a walk's would be.
    let now = now_ms();
    let mut out = Vec::with_capacity(streams.len());
    let mut moved = Vec::new();
    for ((s, e), id) in streams.iter().zip(&known).zip(&next_ids) {
        if taken.contains(id) {
            moved.push(s.clone());
        } else if let Some(m) = e.as_ref().and_then(|e| mark_of(e, now)) {
            out.push((s.clone(), m));
        }
        // Neither: never seen by this process and its origin slot is empty: never written.
    }
    out.extend(walked_marks(core, cache, moved).await?);
    Ok(out)
}

/// The marks of `streams` by walking each to its last entry (cached as it goes), concurrently.
pub(crate) async fn walked_marks(
    core: &MongoCore,
    cache: &StartCache,
    streams: Vec<StreamId>,
) -> Result<Vec<(StreamId, u64)>> {
    let found: Vec<Option<(StreamId, u64)>> = futures::stream::iter(streams)
        .map(|s: StreamId| async move {
            let start = start_of(core, cache, &s).await?;
            let Walked { last, .. } = walk(core, &s, start).await?;
            let Some(e) = last else {
                return Ok::<_, Error>(None);
            };
            cache.put(&s, &e);
            Ok(mark_of(&e, now_ms()).map(|m| (s, m)))
        })
        .buffer_unordered(WALK_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}
