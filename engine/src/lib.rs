//! streamstore: durable per-stream logs for services that hand asynchronous outputs to waiting
//! clients.
//!
//! An application holds an `Arc<dyn StreamStore>` and appends records to streams, reads them back
//! from any offset, waits for new ones, and seals a stream when it is finished. The contract of
//! every call is written on [`StreamStore`]; every implementation passes the same conformance
//! suite (`streamstore-conformance`).
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use streamkeep::{AppendOptions, Expect, MemoryStore, ReadOptions, StreamId, StreamStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store: Arc<dyn StreamStore> = Arc::new(MemoryStore::new());
//! let job = StreamId::new("job/42")?;
//! let r = store
//!     .append(&job, vec![Bytes::from("step 1")], AppendOptions::expect(Expect::NoStream))
//!     .await?;
//! assert_eq!(r.first_offset, 0);
//! store.seal(&job).await?;
//! let batch = store.read(&job, 0, ReadOptions::default()).await?;
//! assert_eq!(batch.records[0].payload, "step 1");
//! assert!(batch.is_finished());
//! # Ok::<(), streamkeep::Error>(())
//! # }).unwrap();
//! ```

// `unsafe` is denied everywhere except `local::mmap`, which allows it for its one map call.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod capabilities;
mod error;
mod ext;
pub mod head;
pub mod local;
pub mod memory;
mod store;
mod sync;
mod types;
pub mod validate;
pub mod wait;

pub use capabilities::{Capabilities, IdempotencyWindow, WaitMechanism};
pub use error::{Error, ErrorKind, Result};
pub use ext::{StreamStoreExt, SubscribeOptions};
pub use local::{Durability, LocalOptions, LocalStore};
pub use memory::MemoryStore;
pub use store::StreamStore;
pub use types::{
    AppendOptions, AppendResult, Expect, IdempotencyKey, Incarnation, ListOptions, ListPage,
    ReadBatch, ReadOptions, Record, Retention, StreamId, StreamInfo, MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_STREAM_ID_BYTES,
};
