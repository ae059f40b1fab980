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
//! A pass therefore steps along every checked stream's chain at once: ONE query for the
//! successor slots of all of them (the entry this process last saw of a stream, from the start
//! cache), which returns the entries found there, then one query for the successors of those,
//! and so on while more than [`WALK_CONCURRENCY`] streams moved, at most [`MAX_STEPS`] queries;
//! the streams still moving after that are walked on their own from where the steps got (a few
//! walks side by side take less time than one more query over them all). A stream this process
//! never saw is asked for its origin slot: empty means never written, taken means it is walked
//! from its stored hint. So a pass costs one query when nothing moved, and one more per entry
//! the busiest stream gained (up to the bound), not a point read per moved stream plus one to
//! find its end empty: with a reader per stream, every stream the writers touched moved, and
//! the per-stream reads were what a pass spent its time on (measured on FerretDB in
//! docs/benchmarks.md). The one change without a write, a retention deadline passing, is seen
//! from the entry itself (`Entry::live_head` at the time of the query that found its successor
//! empty).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use futures::{StreamExt, TryStreamExt};
use streamstore::implementor::validate::now_ms;
use streamstore::{Error, Result, StreamId};

use crate::chain::{start_of, walk, StartCache, Walked};
use crate::core::MongoCore;
use crate::entry::Entry;
use crate::slot::Slot;

/// Streams left to walk (never seen, or still moving after the batched steps) are walked at
/// once, this many at a time.
const WALK_CONCURRENCY: usize = 32;

/// Batched steps per pass: queries after which the streams still moving are walked one by one
/// (a stream written faster than a pass steps would otherwise keep every pass stepping).
const MAX_STEPS: usize = 4;

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
/// expires. Batched steps along the cached streams' chains, then walks of the rest.
pub(crate) async fn marks(
    core: &MongoCore,
    cache: &StartCache,
    streams: &[StreamId],
) -> Result<Vec<(StreamId, u64)>> {
    let mut out = Vec::with_capacity(streams.len());
    // (stream, entry known to be in its chain, `None`: its origin): the streams being stepped.
    let mut stepping: Vec<(StreamId, Option<Entry>)> =
        streams.iter().map(|s| (s.clone(), cache.get(s))).collect();
    // (stream, where to start: `None` from its hint): the streams to walk one by one.
    let mut walks = Vec::new();
    for _ in 0..MAX_STEPS {
        if stepping.is_empty() {
            break;
        }
        let ids: Vec<String> = stepping
            .iter()
            .map(|(s, e)| e.as_ref().map_or(Slot::ORIGIN, Entry::next_slot).id(s))
            .collect();
        let mut found = core.entries_in(ids.clone()).await?;
        // Taken after the query started, so an entry whose successor was empty was the last
        // entry at some instant during the query: the mark is the state then, as a walk's is.
        let now = now_ms();
        let mut moved = Vec::new();
        for ((s, e), id) in std::mem::take(&mut stepping).into_iter().zip(&ids) {
            match (found.remove(id), e) {
                (Some(next), Some(_)) => moved.push((s, Some(next))),
                // Never seen here and written: its hint is a better start than its origin.
                (Some(_), None) => walks.push((s, None)),
                (None, Some(e)) => {
                    cache.put(&s, &e);
                    if let Some(m) = mark_of(&e, now) {
                        out.push((s, m));
                    }
                }
                // Never seen here and its origin slot is empty: never written, no mark.
                (None, None) => {}
            }
        }
        // A few left: one concurrent round of walks costs less time than another query
        // over every one of them (on FerretDB a scan of the collection).
        if moved.len() <= WALK_CONCURRENCY {
            walks.extend(moved);
            break;
        }
        stepping = moved;
    }
    walks.extend(stepping);
    out.extend(walked_marks(core, cache, walks).await?);
    Ok(out)
}

/// The marks of `streams` by walking each to its last entry from its start (`None`: the cached
/// entry or the stored hint), caching the last entry, concurrently. A stream never written has
/// none.
pub(crate) async fn walked_marks(
    core: &MongoCore,
    cache: &StartCache,
    streams: Vec<(StreamId, Option<Entry>)>,
) -> Result<Vec<(StreamId, u64)>> {
    let found: Vec<Option<(StreamId, u64)>> = futures::stream::iter(streams)
        .map(|(s, start): (StreamId, Option<Entry>)| async move {
            let start = match start {
                Some(e) => Some(e),
                None => start_of(core, cache, &s).await?,
            };
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
