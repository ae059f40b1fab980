//! fjall (an embedded LSM) keyed by (stream, offset).
//!
//! The key is the stream name, a 0 byte, then the offset as 8 big-endian bytes, so a stream's
//! records are one contiguous, ordered key range. Offsets come from an in-memory counter per stream,
//! held while the batch commits (that is what keeps them dense and ordered). With `durable`, every
//! batch commits with `PersistMode::SyncData` (fjall syncs its journal under the journal lock: no
//! group commit across writers); otherwise the journal is left to the OS.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::blocking;
use crate::backend::{stream_name, BenchBackend, Result};

struct Inner {
    db: Database,
    records: Keyspace,
    names: Vec<String>,
    next: Vec<Mutex<u64>>,
    durable: bool,
}

/// The fjall peer.
pub struct FjallBackend(Arc<Inner>);

#[expect(clippy::big_endian_bytes, reason = "keys must sort by offset")]
fn key(name: &str, offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

impl FjallBackend {
    /// Opens a fresh database in `dir` for `streams` streams.
    pub fn open(dir: &Path, durable: bool, streams: usize) -> Result<Self> {
        let db = Database::builder(dir).open()?;
        let records = db.keyspace("records", KeyspaceCreateOptions::default)?;
        Ok(FjallBackend(Arc::new(Inner {
            db,
            records,
            names: (0..streams).map(stream_name).collect(),
            next: (0..streams).map(|_| Mutex::new(0)).collect(),
            durable,
        })))
    }
}

#[async_trait]
impl BenchBackend for FjallBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let inner = Arc::clone(&self.0);
        blocking(move || {
            let name = inner.names.get(stream).ok_or("stream out of range")?;
            let mut next = inner
                .next
                .get(stream)
                .ok_or("stream out of range")?
                .lock()
                .map_err(|_| "counter mutex poisoned")?;
            let mode = inner.durable.then_some(PersistMode::SyncData);
            let mut batch = inner.db.batch().durability(mode);
            for (off, rec) in (*next..).zip(&records) {
                batch.insert(&inner.records, key(name, off), rec.as_ref());
            }
            batch.commit()?;
            *next += records.len() as u64;
            Ok(())
        })
        .await
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let inner = Arc::clone(&self.0);
        blocking(move || {
            let name = inner.names.get(stream).ok_or("stream out of range")?;
            let (mut n, mut bytes) = (0usize, 0u64);
            for kv in inner
                .records
                .range(key(name, from)..=key(name, u64::MAX))
                .take(max)
            {
                let v = kv.value()?;
                n += 1;
                bytes += v.len() as u64;
            }
            Ok((n, bytes))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let inner = Arc::clone(&self.0);
        blocking(move || {
            inner.db.persist(PersistMode::SyncAll)?;
            Ok(())
        })
        .await
    }
}
