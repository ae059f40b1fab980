//! Where a chain entry lives: its slot, and the `_id` and claim strings built from it.
//!
//! Every stream is one chain of documents in `<prefix>log`. A document's `_id` is its slot:
//! `<stream id> US <generation:020> US <offset:020> US <sub:010>` (US = U+001F, which a
//! `StreamId` can never contain, so the stream id part ends unambiguously and every id of one
//! stream sorts before every id of a longer stream that shares its prefix). The numbers are
//! zero-padded decimal, so the byte order of the `_id`s of one stream is the order of its chain:
//! generation, then offset, then sub-slot.

use streamstore::{IdempotencyKey, StreamId};

/// The separator inside `_id`s and claims; never part of a `StreamId` (a control character).
pub const SEP: char = '\u{1f}';

/// The position of one entry in a stream's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// The generation: 1 for a stream's first life, one more after each delete.
    pub generation: u64,
    /// The stream's next offset before this entry (a data entry's first offset).
    pub offset: u64,
    /// Entries that assign no offset (seal, trim, retention) take the next sub-slot at the same
    /// offset; a data entry after them keeps the sub-slot it finds free.
    pub sub: u32,
}

impl Slot {
    /// Where every stream's chain starts.
    pub const ORIGIN: Slot = Slot {
        generation: 1,
        offset: 0,
        sub: 0,
    };

    /// The first slot of `generation`.
    pub fn start_of(generation: u64) -> Slot {
        Slot {
            generation,
            offset: 0,
            sub: 0,
        }
    }

    /// The `_id` of the document in this slot of `stream`.
    pub fn id(&self, stream: &StreamId) -> String {
        format!(
            "{}{SEP}{:020}{SEP}{:020}{SEP}{:010}",
            stream.as_str(),
            self.generation,
            self.offset,
            self.sub
        )
    }

    /// The slot an `_id` names (the part after the stream id), if it is one of ours.
    pub fn parse(id: &str) -> Option<Slot> {
        let mut parts = id.rsplitn(4, SEP);
        let sub = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let generation = parts.next()?.parse().ok()?;
        parts.next()?;
        Some(Slot {
            generation,
            offset,
            sub,
        })
    }
}

/// The upper bound (inclusive) of `_id`s at `offset` in `generation`: every sub-slot.
pub fn last_id_at(stream: &StreamId, generation: u64, offset: u64) -> String {
    Slot {
        generation,
        offset,
        sub: u32::MAX,
    }
    .id(stream)
}

/// The claim of a keyed append: unique per stream, generation and key, so that a second
/// insert with the same key in the same life of the stream collides on the claim index.
/// The key's bytes are hex-encoded (keys are arbitrary bytes); the whole string is data.
pub fn key_claim(stream: &StreamId, generation: u64, key: &IdempotencyKey) -> String {
    use std::fmt::Write;
    let mut s = format!("k{SEP}{}{SEP}{generation}{SEP}", stream.as_str());
    for b in key.as_bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The claim of an unkeyed write: a random token, unique per call, so that an internal retry
/// of an insert whose outcome was unknown finds its own earlier insert instead of writing twice.
pub fn random_claim() -> String {
    format!("r{SEP}{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_chain_order_and_parse_back() {
        let s = StreamId::new("a.b$c{\"$gt\": \"\"}").unwrap();
        let a = Slot {
            generation: 1,
            offset: 9,
            sub: 3,
        };
        let b = Slot {
            generation: 1,
            offset: 10,
            sub: 0,
        };
        let c = Slot::start_of(2);
        assert!(a.id(&s) < b.id(&s) && b.id(&s) < c.id(&s));
        assert_eq!(Slot::parse(&a.id(&s)), Some(a));
        assert_eq!(Slot::parse(&c.id(&s)), Some(c));
        // A longer id sharing the prefix sorts after every slot of the shorter one.
        let longer = StreamId::new("a.b$c{\"$gt\": \"\"} ").unwrap();
        assert!(last_id_at(&s, u64::MAX, u64::MAX) < Slot::ORIGIN.id(&longer));
    }
}
