#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod config;
mod core;
mod error;
#[cfg(feature = "conformance")]
mod factory;
mod notify;
mod shards;

pub use backend::{PostgresStore, KEYS_PER_STREAM, MAX_RECORD_BYTES};
pub use config::PostgresConfig;
pub use error::parse_postgres_error;
#[cfg(feature = "conformance")]
pub use factory::PostgresFactory;

/// The URL schemes this adapter serves (`postgres://…`, `postgresql://…`).
pub const SCHEME: &str = "postgres";

/// The environment variable the tests and the conformance factory read the URL from.
pub const URL_ENV: &str = "STREAMSTORE_POSTGRES_URL";
