#![doc = include_str!("../README.md")]
//!
//! # Where things are
//!
//! - [`StreamStore`]: the contract, one `async fn` per call; [`StreamStoreExt`] adds
//!   [`append_one`](StreamStoreExt::append_one) and [`subscribe`](StreamStoreExt::subscribe) to
//!   every store (bare or in an `Arc`).
//! - [`LocalStore`] (module [`local`]): the durable local engine; [`MemoryStore`]: in memory.
//! - The values that cross the boundary: [`StreamId`], [`AppendOptions`], [`ReadOptions`],
//!   [`ReadBatch`], [`StreamInfo`], [`Retention`], [`Error`] and its [`ErrorKind`].
//! - [`implementor`]: only for those who write a new `StreamStore` (the database adapters).

// `unsafe` is denied everywhere except `local::mmap`, which allows it for its one map call.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod capabilities;
mod error;
mod ext;
pub mod implementor;
pub mod local;
pub mod memory;
mod store;
mod sync;
mod types;

// Inside the crate the implementor modules keep their short paths (`crate::head::..`).
use implementor::{head, validate, wait};

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
