#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admin;
mod append;
mod backend;
mod chain;
mod config;
mod core;
mod entry;
mod error;
#[cfg(feature = "conformance")]
mod factory;
mod marks;
mod read;
mod slot;

pub use backend::{MongoStore, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
pub use config::{MongoConfig, DEFAULT_DATABASE, DEFAULT_PREFIX};
pub use error::parse_mongo_error;
#[cfg(feature = "conformance")]
pub use factory::MongoFactory;

/// The URL scheme this adapter serves (`mongodb://…`, `mongodb+srv://…`).
pub const SCHEME: &str = "mongodb";

/// The environment variable the tests and the conformance factory read the URL from.
pub const URL_ENV: &str = "STREAMSTORE_MONGODB_URL";
