//! The per-stream state machine every in-process store shares: expectations, idempotency keys,
//! seal, trim and timestamps. Backends that keep this state in a database implement the same rules
//! in their queries; the conformance suite holds them all to it.

use crate::implementor::{ErrorShorthand, ReadBatchParts};
use std::collections::{HashMap, VecDeque};

use crate::error::{Error, Result};
use crate::types::{
    AppendResult, Expect, IdempotencyKey, Incarnation, ReadBatch, Retention, StreamId, StreamInfo,
};

/// The most recent idempotency keys of one stream, with the result each produced.
///
/// Most streams never use a key, and a store may hold many idle streams: until the first key, the
/// window is one null pointer (an empty `VecDeque` and `HashMap` inline would take 80 bytes).
#[derive(Clone, Debug, Default)]
pub struct KeyWindow {
    keys: Option<Box<Keys>>,
}

/// The keys of a [`KeyWindow`] that has held at least one.
#[derive(Clone, Debug, Default)]
struct Keys {
    order: VecDeque<IdempotencyKey>,
    map: HashMap<IdempotencyKey, (AppendResult, u64)>,
}

impl KeyWindow {
    /// The remembered result and batch digest for `key`.
    pub fn get(&self, key: &IdempotencyKey) -> Option<&(AppendResult, u64)> {
        self.keys.as_ref().and_then(|k| k.map.get(key))
    }

    /// Remembers `key`, forgetting the oldest keys beyond `capacity`.
    pub fn insert(
        &mut self,
        key: IdempotencyKey,
        result: AppendResult,
        digest: u64,
        capacity: usize,
    ) {
        let k = self.keys.get_or_insert_with(Box::default);
        if k.map.insert(key.clone(), (result, digest)).is_none() {
            k.order.push_back(key);
        }
        while k.order.len() > capacity {
            if let Some(old) = k.order.pop_front() {
                k.map.remove(&old);
            }
        }
    }

    /// Keys oldest first, with their results (for checkpoints).
    pub fn iter(&self) -> impl Iterator<Item = (&IdempotencyKey, &(AppendResult, u64))> {
        self.keys
            .iter()
            .flat_map(|k| k.order.iter().filter_map(|key| k.map.get_key_value(key)))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.order.len())
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The state of one live stream, apart from its records.
#[derive(Clone, Debug)]
pub struct StreamHead {
    /// This life of the stream.
    pub incarnation: Incarnation,
    /// Lowest readable offset.
    pub first_offset: u64,
    /// Offset of the next append.
    pub next_offset: u64,
    /// Creation time (ms since the epoch).
    pub created_ms: u64,
    /// Last append time (ms since the epoch); timestamps never decrease.
    pub last_append_ms: u64,
    /// Seal time, if sealed.
    pub sealed_ms: Option<u64>,
    /// Payload bytes in `first_offset..next_offset`.
    pub bytes: u64,
    /// Retention policy.
    pub retention: Retention,
    /// Recent idempotency keys.
    pub keys: KeyWindow,
}

impl StreamHead {
    /// A copy without the idempotency keys (the local writer's view of a stream whose group is
    /// still being synced; copying a full key window per group would cost more than the group).
    pub(crate) fn without_keys(&self) -> StreamHead {
        StreamHead {
            incarnation: self.incarnation,
            first_offset: self.first_offset,
            next_offset: self.next_offset,
            created_ms: self.created_ms,
            last_append_ms: self.last_append_ms,
            sealed_ms: self.sealed_ms,
            bytes: self.bytes,
            retention: self.retention,
            keys: KeyWindow::default(),
        }
    }
}

/// What an append must do, decided under the stream's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A retry of an append that already happened: return this, write nothing.
    Duplicate(AppendResult),
    /// Write the batch at `first_offset` with this timestamp; create the stream first if `create`.
    Write {
        /// Offset of the first record.
        first_offset: u64,
        /// The batch's timestamp (never below the stream's last one).
        timestamp_ms: u64,
        /// The stream does not exist yet: a new incarnation starts with this batch.
        create: bool,
    },
}

impl StreamHead {
    /// A new stream created at `now_ms`.
    pub fn new(now_ms: u64, retention: Retention) -> Self {
        StreamHead {
            incarnation: Incarnation::random(),
            first_offset: 0,
            next_offset: 0,
            created_ms: now_ms,
            last_append_ms: now_ms,
            sealed_ms: None,
            bytes: 0,
            retention,
            keys: KeyWindow::default(),
        }
    }

    /// Decides an append against `head` (`None`: the stream does not exist). Order: idempotency key,
    /// then seal, then expectation.
    pub fn decide(
        stream: &StreamId,
        head: Option<&StreamHead>,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
        now_ms: u64,
    ) -> Result<Decision> {
        if let (Some(h), Some((key, digest))) = (head, key) {
            if let Some((result, seen)) = h.keys.get(key) {
                if *seen != digest {
                    return Err(Error::invalid(
                        "this idempotency key was used for different records on this stream",
                    ));
                }
                return Ok(Decision::Duplicate(*result));
            }
        }
        let next = head.map_or(0, |h| h.next_offset);
        if head.is_some_and(|h| h.sealed_ms.is_some()) {
            return Err(Error::sealed(stream));
        }
        match expect {
            Expect::Any => {}
            Expect::NoStream if head.is_some() => {
                return Err(Error::conflict(
                    next,
                    format!("stream {stream:?} already exists"),
                ))
            }
            Expect::NoStream => {}
            Expect::Next(n) if n != next => {
                return Err(Error::conflict(
                    next,
                    format!("expected next offset {n} of {stream:?}, but it is {next}"),
                ))
            }
            Expect::Next(_) => {}
        }
        Ok(Decision::Write {
            first_offset: next,
            timestamp_ms: head.map_or(now_ms, |h| now_ms.max(h.last_append_ms)),
            create: head.is_none(),
        })
    }

    /// Applies a written batch of `count` records and `bytes` payload bytes.
    pub fn apply_append(
        &mut self,
        count: u64,
        bytes: u64,
        timestamp_ms: u64,
        key: Option<(IdempotencyKey, u64)>,
        key_capacity: usize,
    ) -> AppendResult {
        let result = AppendResult {
            first_offset: self.next_offset,
            count,
            incarnation: self.incarnation,
            timestamp_ms,
        };
        self.next_offset += count;
        self.bytes += bytes;
        self.last_append_ms = timestamp_ms;
        if let Some((key, digest)) = key {
            self.keys.insert(key, result, digest, key_capacity);
        }
        result
    }

    /// Whether a time-based retention rule has expired the stream at `now_ms`: sealed longer than
    /// `delete_after_seal`, or idle longer than `delete_after_idle`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms().is_some_and(|at| at <= now_ms)
    }

    /// When a time-based retention rule deletes this stream (ms since the epoch, saturating), if
    /// one is set: the earlier of `sealed_ms + delete_after_seal` and
    /// `last_append_ms + delete_after_idle`. The stream is expired once this is `<= now`.
    pub fn expires_ms(&self) -> Option<u64> {
        let at = |start: u64, d: std::time::Duration| {
            start.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        let sealed = self
            .sealed_ms
            .zip(self.retention.delete_after_seal)
            .map(|(t, d)| at(t, d));
        let idle = self
            .retention
            .delete_after_idle
            .map(|d| at(self.last_append_ms, d));
        match (sealed, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The empty batch at `from`, or `Trimmed` (see [`ReadBatch::empty_at`]).
    pub fn empty_read(&self, from: u64) -> Result<ReadBatch> {
        let sealed = self.sealed_ms.is_some();
        ReadBatch::empty_at(
            from,
            self.first_offset,
            self.next_offset,
            sealed,
            self.incarnation,
        )
    }

    /// What `info` reports for this stream.
    pub fn info(&self, stream: &StreamId) -> StreamInfo {
        StreamInfo {
            stream: stream.clone(),
            incarnation: self.incarnation,
            first_offset: self.first_offset,
            next_offset: self.next_offset,
            sealed: self.sealed_ms.is_some(),
            created_ms: self.created_ms,
            last_append_ms: self.last_append_ms,
            sealed_ms: self.sealed_ms,
            bytes: self.bytes,
            retention: self.retention,
        }
    }

    /// The first offset after trimming below `before` (clamped; never moves backwards).
    pub fn trim_target(&self, before: u64) -> u64 {
        before.min(self.next_offset).max(self.first_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StreamId {
        StreamId::new("s").unwrap()
    }

    #[test]
    fn expectations() {
        let s = id();
        let mut h = StreamHead::new(10, Retention::default());
        assert!(matches!(
            StreamHead::decide(&s, None, Expect::NoStream, None, 5),
            Ok(Decision::Write {
                first_offset: 0,
                create: true,
                ..
            })
        ));
        h.apply_append(3, 3, 10, None, 8);
        let e = StreamHead::decide(&s, Some(&h), Expect::Next(2), None, 5).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conflict { actual_next: 3 });
        // Timestamps never go backwards even if the clock does.
        assert!(matches!(
            StreamHead::decide(&s, Some(&h), Expect::Next(3), None, 5),
            Ok(Decision::Write {
                first_offset: 3,
                timestamp_ms: 10,
                create: false
            })
        ));
    }

    #[test]
    fn key_window_forgets_oldest() {
        let mut w = KeyWindow::default();
        let r = AppendResult {
            first_offset: 0,
            count: 1,
            incarnation: Incarnation(1),
            timestamp_ms: 0,
        };
        for i in 0..5u8 {
            w.insert(IdempotencyKey::new(vec![i]).unwrap(), r, 0, 3);
        }
        assert_eq!(w.len(), 3);
        assert!(w.get(&IdempotencyKey::new(vec![1]).unwrap()).is_none());
        assert!(w.get(&IdempotencyKey::new(vec![4]).unwrap()).is_some());
    }
}
