//! The `StreamStore` trait: the contract every implementation keeps.

use async_trait::async_trait;
use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::types::{
    AppendOptions, AppendResult, ListOptions, ListPage, ReadBatch, ReadOptions, Retention,
    StreamId, StreamInfo,
};

/// A store of many append-only streams of records.
///
/// # Contract
///
/// Every implementation (the memory store, the local engine, the database adapters) keeps these
/// rules; `streamstore-conformance` checks each of them. `docs/contract.md` says the same in prose.
///
/// - **Streams** are named by a [`StreamId`]. A stream exists from its first append until it is
///   deleted (explicitly or by retention). Ids that differ in any byte are different streams.
/// - **Offsets** are `u64`, assigned by the store, dense from 0 within an incarnation: the records
///   of a stream are at `first_offset..next_offset` with no gaps. An offset is never assigned twice
///   in one incarnation: not after trim, not after seal, not after a crash in `Sync` mode.
/// - **Incarnations**: deleting a stream and writing the same id again starts a new
///   [`Incarnation`](crate::Incarnation) whose offsets start at 0 again; the incarnation is reported
///   by `append`, `read` and `info`, so a resuming client can tell.
/// - **Appends are atomic**: all records of one call become visible together, at consecutive
///   offsets, or none do. No reader ever observes part of a batch.
/// - **Conditional appends**: the [`Expect`](crate::Expect) is checked atomically with the write.
///   Of several appends made with the same expectation, exactly one succeeds; the others fail with
///   `Conflict { actual_next }` and write nothing.
/// - **Idempotent appends**: with an idempotency key, repeating an append that succeeded returns the
///   original [`AppendResult`] and writes nothing, even if the stream moved on or was sealed since.
///   The key is checked before the expectation and the seal. Reusing a key for different records is
///   `InvalidArgument`.
/// - **Errors** are typed ([`ErrorKind`](crate::ErrorKind)) and a failed call changes nothing,
///   except `Unavailable`, whose outcome is unknown (retry with an idempotency key).
/// - **After `close`** every call fails with `Closed`; `close` itself may be called again.
///
/// # The methods as written
///
/// The trait is declared with [`async_trait`](https://docs.rs/async-trait) so that it can be
/// used as `Arc<dyn StreamStore>`; rustdoc shows each method desugared to a
/// `Pin<Box<dyn Future + Send>>`. Written and called, they are these `async fn`s:
///
/// ```text
/// fn capabilities(&self) -> Capabilities;
/// async fn append(&self, stream: &StreamId, records: Vec<Bytes>, options: AppendOptions) -> Result<AppendResult>;
/// async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch>;
/// async fn seal(&self, stream: &StreamId) -> Result<StreamInfo>;
/// async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64>;
/// async fn delete(&self, stream: &StreamId) -> Result<bool>;
/// async fn info(&self, stream: &StreamId) -> Result<StreamInfo>;
/// async fn list(&self, options: ListOptions) -> Result<ListPage>;
/// async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()>;
/// async fn close(&self) -> Result<()>;
/// ```
///
/// An implementation writes them the same way, under `#[async_trait::async_trait]`; the shared
/// rules it needs are in [`implementor`](crate::implementor).
///
/// ```
/// use bytes::Bytes;
/// use streamkeep::{AppendOptions, MemoryStore, ReadOptions, StreamId, StreamStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let id = StreamId::new("orders/7")?;
/// let done = store.append(&id, vec![Bytes::from("a"), Bytes::from("b")], AppendOptions::default()).await?;
/// assert_eq!(done.offsets(), 0..2);
/// let batch = store.read(&id, 1, ReadOptions::default()).await?;
/// assert_eq!(batch.records[0].payload, "b");
/// # Ok::<(), streamkeep::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// What this store supports and its limits.
    fn capabilities(&self) -> Capabilities;

    /// Appends `records` to `stream` atomically, creating the stream if it does not exist.
    ///
    /// # Contract
    /// - Returns the offsets assigned (`first_offset..first_offset + records.len()`).
    /// - An empty batch is `InvalidArgument`. A record above `max_record_bytes`, or a batch above
    ///   `max_batch_records` / `max_batch_bytes`, is `TooLarge`. Both write nothing.
    /// - A sealed stream refuses with `Sealed`; an unmet expectation fails with `Conflict`.
    /// - With an idempotency key that was used for the same records on this stream inside the
    ///   idempotency window, returns the first result and writes nothing.
    /// - Readers waiting on the stream wake once the records are visible.
    async fn append(
        &self,
        stream: &StreamId,
        records: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendResult>;

    /// Reads records of `stream` from offset `from` (inclusive).
    ///
    /// # Contract
    /// - Returns records `from, from+1, …` in order, at most `max_records` of them and at most
    ///   `max_bytes` of payload, except that at least one record is returned if one is available.
    /// - Reading below the first available offset fails with `Trimmed { first_available }`.
    /// - Reading at or past the end returns an empty batch with `next_offset == from`.
    /// - A stream that does not exist reads as an empty batch with `incarnation: None`.
    /// - `max_records == 0` is `InvalidArgument`.
    /// - With `wait`, an empty result is held back until a record at `from` exists, the stream is
    ///   sealed or deleted (or re-created), or the wait times out; then it reads again and returns.
    ///   Waiting on a stream that does not exist yet is allowed at offset 0; above offset 0 a
    ///   missing stream returns at once (those offsets only existed in a deleted life, see
    ///   [`ReadBatch::is_finished`](crate::ReadBatch::is_finished)). With
    ///   [`ReadOptions::incarnation`](crate::ReadOptions::incarnation), a stream whose incarnation
    ///   is another one (deleted, or deleted and written again) returns at once.
    /// - With `durable`, only records that a crash of the store can no longer take away are
    ///   returned: always a prefix of what a plain read returns (`end_offset` still reports the
    ///   stream's end), and a waiting durable read returns once records become durable. A store
    ///   without [`Capabilities::durable_reads`](crate::Capabilities::durable_reads) answers
    ///   `Unsupported`.
    async fn read(&self, stream: &StreamId, from: u64, options: ReadOptions) -> Result<ReadBatch>;

    /// Seals `stream`: later appends fail with `Sealed`, waiting readers wake and see the end.
    ///
    /// Sealing a sealed stream succeeds and changes nothing. A missing stream is `NotFound`.
    async fn seal(&self, stream: &StreamId) -> Result<StreamInfo>;

    /// Removes the records of `stream` below `before`, and returns the new first offset.
    ///
    /// `before` is clamped to the stream's next offset; trimming below the current first offset
    /// changes nothing. Offsets are never reused: the next append still gets `next_offset`.
    /// A missing stream is `NotFound`.
    async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64>;

    /// Deletes `stream` with all its records; returns whether it existed.
    ///
    /// Waiting readers wake and return at once (their batch shows `incarnation: None`), and
    /// subscriptions end with `NotFound`. The next append to the same id starts a new incarnation
    /// at offset 0.
    async fn delete(&self, stream: &StreamId) -> Result<bool>;

    /// Describes `stream`; a missing stream is `NotFound`.
    async fn info(&self, stream: &StreamId) -> Result<StreamInfo>;

    /// Lists existing streams in ascending byte order of their ids.
    async fn list(&self, options: ListOptions) -> Result<ListPage>;

    /// Sets the retention policy of an existing stream (`NotFound` otherwise). The policy is
    /// enforced from then on; see [`Retention`].
    async fn set_retention(&self, stream: &StreamId, retention: Retention) -> Result<()>;

    /// Flushes what is pending and releases resources. Later calls fail with `Closed`.
    async fn close(&self) -> Result<()>;
}
