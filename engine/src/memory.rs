//! `MemoryStore`: the reference semantics of the contract, kept in memory.
//!
//! Used by tests, as the model the local engine is checked against, and by applications that want
//! the API without durability. Thread-safe; every call takes one short critical section.

use crate::implementor::{ErrorShorthand, ListParts, ReadBatchParts};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::head::{Decision, StreamHead};
use crate::store::StreamStore;
use crate::sync::lock;
use crate::types::{
    AppendOptions, AppendResult, ListOptions, ListPage, ReadBatch, ReadOptions, Record, Retention,
    StreamId, StreamInfo,
};
use crate::validate::{check_append, check_read, now_ms};
use crate::wait::{wait_for_records, Notifiers};

struct MemStream {
    head: StreamHead,
    /// Records `head.first_offset..head.next_offset`, in order.
    records: VecDeque<Record>,
}

#[derive(Default)]
struct Inner {
    streams: BTreeMap<StreamId, MemStream>,
    closed: bool,
}

/// The in-memory reference store. Nothing survives the process.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notifiers: Notifiers,
    caps: Capabilities,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store with the default [`Capabilities`] limits.
    pub fn new() -> Self {
        MemoryStore::with_capabilities(Capabilities::default())
    }

    /// An empty store with other limits (e.g. to mirror a backend's in tests).
    pub fn with_capabilities(caps: Capabilities) -> Self {
        MemoryStore {
            inner: Mutex::default(),
            notifiers: Notifiers::default(),
            caps,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let inner = lock(&self.inner);
        if inner.closed {
            return Err(Error::closed());
        }
        Ok(inner)
    }

    fn key_capacity(&self) -> usize {
        self.caps.idempotency.map_or(0, |w| w.keys_per_stream)
    }

    /// Applies the time-based retention rules to `stream`; returns whether it was deleted.
    fn expire(&self, inner: &mut Inner, stream: &StreamId, now: u64) -> bool {
        let due = inner
            .streams
            .get(stream)
            .is_some_and(|s| s.head.is_expired(now));
        if due {
            inner.streams.remove(stream);
            self.notifiers.notify(stream);
        }
        due
    }

    fn read_now(&self, stream: &StreamId, from: u64, options: &ReadOptions) -> Result<ReadBatch> {
        let mut inner = self.lock()?;
        self.expire(&mut inner, stream, now_ms());
        let Some(s) = inner.streams.get(stream) else {
            return Ok(ReadBatch::missing(from));
        };
        let mut batch = s.head.empty_read(from)?;
        let skip = usize::try_from(from - s.head.first_offset).unwrap_or(usize::MAX);
        let mut bytes = 0usize;
        for r in s.records.iter().skip(skip) {
            if batch.records.len() >= options.max_records
                || (!batch.records.is_empty() && bytes + r.payload.len() > options.max_bytes)
            {
                break;
            }
            bytes += r.payload.len();
            batch.records.push(r.clone());
        }
        batch.next_offset = from + batch.records.len() as u64;
        Ok(batch)
    }
}

/// Trims the oldest records while the stream holds more than `max_bytes` (never the newest).
fn enforce_max_bytes(s: &mut MemStream) {
    let Some(max) = s.head.retention.max_bytes else {
        return;
    };
    while s.head.bytes > max && s.records.len() > 1 {
        if let Some(r) = s.records.pop_front() {
            s.head.bytes -= r.payload.len() as u64;
            s.head.first_offset += 1;
        }
    }
}

#[async_trait]
impl StreamStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        let key = options.idempotency_key.as_ref();
        let (bytes, digest) = check_append(stream, &records, key, &self.caps)?;
        let key = options.idempotency_key.zip(digest);
        let now = now_ms();
        let mut inner = self.lock()?;
        self.expire(&mut inner, stream, now);
        let head = inner.streams.get(stream).map(|s| &s.head);
        let decision = StreamHead::decide(
            stream,
            head,
            options.expect,
            key.as_ref().map(|(k, d)| (k, *d)),
            now,
        )?;
        let (timestamp_ms, create) = match decision {
            Decision::Duplicate(result) => return Ok(result),
            Decision::Write {
                timestamp_ms,
                create,
                ..
            } => (timestamp_ms, create),
        };
        if create {
            let head = StreamHead::new(now, Retention::default());
            inner.streams.insert(
                stream.clone(),
                MemStream {
                    head,
                    records: VecDeque::new(),
                },
            );
        }
        let capacity = self.key_capacity();
        let s = inner
            .streams
            .get_mut(stream)
            .ok_or_else(|| Error::not_found(stream))?;
        let count = records.len() as u64;
        let first = s.head.next_offset;
        s.records.extend(
            records
                .into_iter()
                .zip(first..)
                .map(|(payload, offset)| Record {
                    offset,
                    timestamp_ms,
                    payload,
                }),
        );
        let result = s
            .head
            .apply_append(count, bytes, timestamp_ms, key, capacity);
        enforce_max_bytes(s);
        drop(inner);
        self.notifiers.notify(stream);
        Ok(result)
    }

    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch> {
        check_read(&options, &self.caps)?;
        match options.wait {
            None => self.read_now(stream, from, &options),
            Some(wait) => {
                wait_for_records(
                    wait,
                    options.incarnation,
                    || self.notifiers.arm(stream),
                    || std::future::ready(self.read_now(stream, from, &options)),
                )
                .await
            }
        }
    }

    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let now = now_ms();
        let mut inner = self.lock()?;
        self.expire(&mut inner, stream, now);
        let s = inner
            .streams
            .get_mut(stream)
            .ok_or_else(|| Error::not_found(stream))?;
        if s.head.sealed_ms.is_none() {
            s.head.sealed_ms = Some(now);
        }
        let info = s.head.info(stream);
        drop(inner);
        self.notifiers.notify(stream);
        Ok(info)
    }

    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        if !self.caps.trim {
            return Err(Error::unsupported("trim"));
        }
        let mut inner = self.lock()?;
        self.expire(&mut inner, stream, now_ms());
        let s = inner
            .streams
            .get_mut(stream)
            .ok_or_else(|| Error::not_found(stream))?;
        let target = s.head.trim_target(before);
        while s.head.first_offset < target {
            if let Some(r) = s.records.pop_front() {
                s.head.bytes -= r.payload.len() as u64;
            }
            s.head.first_offset += 1;
        }
        Ok(s.head.first_offset)
    }

    async fn delete(&self, stream: &StreamId) -> Result<bool> {
        if !self.caps.delete {
            return Err(Error::unsupported("delete"));
        }
        let mut inner = self.lock()?;
        let existed = inner.streams.remove(stream).is_some();
        drop(inner);
        self.notifiers.notify(stream);
        Ok(existed)
    }

    async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        let mut inner = self.lock()?;
        self.expire(&mut inner, stream, now_ms());
        let s = inner
            .streams
            .get(stream)
            .ok_or_else(|| Error::not_found(stream))?;
        Ok(s.head.info(stream))
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        if !self.caps.list {
            return Err(Error::unsupported("list"));
        }
        let now = now_ms();
        let mut inner = self.lock()?;
        let expired: Vec<StreamId> = inner
            .streams
            .iter()
            .filter(|(_, s)| s.head.is_expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.expire(&mut inner, id, now);
        }
        Ok(options.page(
            inner
                .streams
                .range((options.lower_bound(), Bound::Unbounded))
                .map(|(id, _)| id),
        ))
    }

    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()> {
        if !self.caps.retention {
            return Err(Error::unsupported("retention"));
        }
        let mut inner = self.lock()?;
        let s = inner
            .streams
            .get_mut(stream)
            .ok_or_else(|| Error::not_found(stream))?;
        s.head.retention = retention;
        enforce_max_bytes(s);
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        inner.streams.clear();
        drop(inner);
        self.notifiers.notify_all();
        Ok(())
    }
}
