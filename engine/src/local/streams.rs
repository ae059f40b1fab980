//! The live streams by id: a hash map for lookups plus an ordered set of the ids for listing.
//!
//! The writer looks streams up by id twice per stream per group (to decide, then to publish). In a
//! B-tree of 10,000 ids each lookup compared ~14 ids byte by byte (ids often share long prefixes,
//! like `stream-000…`), and those comparisons were the largest share of the writer thread's CPU
//! with thousands of streams (docs/benchmarks.md). A hash lookup hashes the id once. Listing,
//! checkpoints and the round-robin tail-cache eviction need the ids in order, hence the set; each
//! id is an `Arc<str>`, so keeping it twice costs a pointer and a length, not the bytes.
//!
//! Invariant: `order` holds exactly the keys of `map`.
//!
//! Each stream is held in an `Arc` so that a checkpoint can take the whole map in one cheap copy
//! of pointers ([`Streams::share`]) under the state lock and encode it on another thread while
//! the writer goes on: the writer changes a stream through [`Streams::get_mut`], which copies it
//! first only if such a copy still shares it (copy-on-write), so the copy keeps describing the
//! moment it was taken.

use std::collections::{BTreeSet, HashMap};
use std::ops::RangeBounds;
use std::sync::Arc;

use crate::types::StreamId;

use super::stream::Stream;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// Each `Stream` is behind a pointer: the map's slots then hold 24 B per entry instead of the
    /// whole stream (tables are often only half to seven-eighths full); the stream itself is
    /// allocated at its exact size, plus the `Arc`'s two counts (16 B).
    map: HashMap<StreamId, Arc<Stream>, foldhash::fast::RandomState>,
    order: BTreeSet<StreamId>,
}

impl Streams {
    /// Number of streams.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The stream named `id`.
    pub fn get(&self, id: &StreamId) -> Option<&Stream> {
        self.map.get(id).map(|s| &**s)
    }

    /// The stream named `id`, to change it: copied first if a [`Streams::share`] copy still
    /// holds it (that copy keeps the stream as it was).
    pub fn get_mut(&mut self, id: &StreamId) -> Option<&mut Stream> {
        self.map.get_mut(id).map(Arc::make_mut)
    }

    /// Every stream as of now, sharing each with this map until either side changes it: a copy
    /// of the map's pointers (and an increment of each stream's and id's count), not of the
    /// streams. A checkpoint takes it under the state lock and encodes it on the flusher thread.
    pub fn share(&self) -> SharedStreams {
        SharedStreams {
            map: self.map.clone(),
        }
    }

    /// Adds or replaces the stream named `id`; returns the one replaced.
    pub fn insert(&mut self, id: StreamId, stream: Arc<Stream>) -> Option<Arc<Stream>> {
        let old = self.map.insert(id.clone(), stream);
        if old.is_none() {
            self.order.insert(id);
        }
        old
    }

    /// Removes the stream named `id`.
    pub fn remove(&mut self, id: &StreamId) -> Option<Arc<Stream>> {
        let old = self.map.remove(id);
        if old.is_some() {
            self.order.remove(id);
        }
        old
    }

    /// Removes every stream.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// The streams in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&StreamId, &Stream)> + '_ {
        self.order
            .iter()
            .filter_map(|id| self.map.get(id).map(|s| (id, &**s)))
    }

    /// The streams whose ids fall in `range`, in id order.
    pub fn range<R: RangeBounds<StreamId>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&StreamId, &Stream)> + '_ {
        self.order
            .range(range)
            .filter_map(|id| self.map.get(id).map(|s| (id, &**s)))
    }

    /// The ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &StreamId> + '_ {
        self.order.iter()
    }

    /// The streams in no particular order (faster than [`Streams::iter`]).
    pub fn values(&self) -> impl Iterator<Item = &Stream> + '_ {
        self.map.values().map(|s| &**s)
    }

    /// The streams in no particular order, to change them (each copied first if shared, see
    /// [`Streams::get_mut`]).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Stream> + '_ {
        self.map.values_mut().map(Arc::make_mut)
    }
}

/// The streams as of one moment ([`Streams::share`]), without the id order (a checkpoint lists
/// them in any order).
#[derive(Debug)]
pub(crate) struct SharedStreams {
    map: HashMap<StreamId, Arc<Stream>, foldhash::fast::RandomState>,
}

impl SharedStreams {
    /// Number of streams.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every stream, in no particular order: a walk of the map alone, without an id order
    /// (a checkpoint at 10,000 streams).
    pub fn iter_unordered(&self) -> impl Iterator<Item = (&StreamId, &Stream)> + '_ {
        self.map.iter().map(|(id, s)| (id, &**s))
    }

    /// The streams in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &Stream> + '_ {
        self.map.values().map(|s| &**s)
    }
}

impl FromIterator<(StreamId, Arc<Stream>)> for Streams {
    /// Builds the map and the set in one pass (the set in bulk when the ids come sorted, as they
    /// do from a checkpoint).
    fn from_iter<I: IntoIterator<Item = (StreamId, Arc<Stream>)>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut map: HashMap<StreamId, Arc<Stream>, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(iter.size_hint().0, Default::default());
        let mut ids = Vec::with_capacity(iter.size_hint().0);
        for (id, s) in iter {
            if map.insert(id.clone(), s).is_none() {
                ids.push(id);
            }
        }
        Streams {
            map,
            order: ids.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Streams {
    type Item = (&'a StreamId, &'a Stream);
    type IntoIter = Box<dyn Iterator<Item = (&'a StreamId, &'a Stream)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::StreamHead;
    use crate::types::Retention;

    fn stream(n: u64) -> Arc<Stream> {
        Stream::new(n, StreamHead::new(0, Retention::default()))
    }

    fn id(s: &str) -> StreamId {
        StreamId::new(s).expect("valid id")
    }

    #[test]
    fn map_and_order_agree() {
        let mut s: Streams = [("b", 2), ("a", 1), ("c", 3)]
            .into_iter()
            .map(|(k, n)| (id(k), stream(n)))
            .collect();
        assert_eq!(s.len(), 3);
        let keys: Vec<&str> = s.keys().map(StreamId::as_str).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert!(s.insert(id("b"), stream(20)).is_some(), "replaced");
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&id("b")).map(|x| x.number), Some(20));
        assert!(s.remove(&id("a")).is_some());
        assert!(s.remove(&id("a")).is_none());
        let listed: Vec<(&str, u64)> = s.iter().map(|(k, v)| (k.as_str(), v.number)).collect();
        assert_eq!(listed, [("b", 20), ("c", 3)]);
        let after_b: Vec<&str> = s
            .range((
                std::ops::Bound::Excluded(id("b")),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(after_b, ["c"]);
        if let Some(x) = s.get_mut(&id("c")) {
            x.number = 30;
        }
        assert_eq!(s.values().map(|x| x.number).sum::<u64>(), 50);
        s.clear();
        assert_eq!((s.len(), s.keys().count()), (0, 0));
    }

    #[test]
    fn a_shared_copy_keeps_the_streams_as_they_were() {
        let mut s: Streams = [("a", 1), ("b", 2)]
            .into_iter()
            .map(|(k, n)| (id(k), stream(n)))
            .collect();
        let copy = s.share();
        if let Some(x) = s.get_mut(&id("a")) {
            x.number = 10;
        }
        assert!(s.remove(&id("b")).is_some());
        s.insert(id("c"), stream(3));
        let mut seen: Vec<(&str, u64)> = copy
            .iter_unordered()
            .map(|(k, v)| (k.as_str(), v.number))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [("a", 1), ("b", 2)], "the copy changed with the map");
        assert_eq!(copy.len(), 2);
        assert_eq!(s.get(&id("a")).map(|x| x.number), Some(10));
        // Once the copy is gone, a change no longer copies the stream.
        drop(copy);
        let before = s.get(&id("a")).map(std::ptr::from_ref);
        if let Some(x) = s.get_mut(&id("a")) {
            x.number = 11;
        }
        assert_eq!(s.get(&id("a")).map(std::ptr::from_ref), before);
    }
}
