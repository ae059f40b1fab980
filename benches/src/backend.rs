//! `BenchBackend`: the one interface every measured system is driven through.
//!
//! The engine (any `StreamStore`) and each peer implement it, so a workload is written once and the
//! same code path drives every system. Streams are numbered `0..n`; each backend maps a number to
//! its own key (a `StreamId`, a SQL column, a key prefix, a file).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};

/// Errors of the harness: any error, with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A result of the harness.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// A system under test, seen as "many append-only streams".
#[async_trait]
pub trait BenchBackend: Send + Sync + 'static {
    /// Appends `records` to stream number `stream` as one atomic batch, with the backend's
    /// configured durability; returns when the backend acknowledges it.
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()>;

    /// Reads at most `max` records of `stream` from offset `from`; returns (records, payload bytes).
    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)>;

    /// Flushes and releases the backend.
    async fn close(&self) -> Result<()>;
}

/// The name of stream number `i` (the same for every backend).
pub fn stream_name(i: usize) -> String {
    format!("bench/{i:06}")
}

/// Any `StreamStore` (the local engine, the memory store, a database adapter) as a `BenchBackend`.
pub struct StoreBackend {
    store: Arc<dyn StreamStore>,
    ids: Vec<StreamId>,
}

impl StoreBackend {
    /// Wraps `store`, preparing the ids of `streams` streams.
    pub fn new(store: Arc<dyn StreamStore>, streams: usize) -> Result<Self> {
        let ids = (0..streams)
            .map(|i| StreamId::new(stream_name(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreBackend { store, ids })
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn StreamStore> {
        &self.store
    }

    /// The id of stream number `i`.
    pub fn id(&self, i: usize) -> Result<&StreamId> {
        self.ids
            .get(i)
            .ok_or_else(|| format!("stream {i} out of range").into())
    }
}

#[async_trait]
impl BenchBackend for StoreBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let id = self.id(stream)?;
        self.store
            .append(id, records, AppendOptions::default())
            .await?;
        Ok(())
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let id = self.id(stream)?;
        let batch = self
            .store
            .read(id, from, ReadOptions::limit(max).bytes(usize::MAX))
            .await?;
        let bytes = batch.records.iter().map(|r| r.payload.len() as u64).sum();
        Ok((batch.records.len(), bytes))
    }

    async fn close(&self) -> Result<()> {
        self.store.close().await?;
        Ok(())
    }
}
