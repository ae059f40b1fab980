#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod config;
mod core;
mod error;
#[cfg(feature = "conformance")]
mod factory;
mod model;
mod schema;

pub use crate::core::{Ambiguity, MarksMethod, RollCrash};
pub use backend::{CassandraStore, KEYS_PER_STREAM, MAX_BATCH_BYTES, MAX_RECORD_BYTES};
pub use config::{
    CassandraConfig, DEFAULT_BUCKET_SIZE, DEFAULT_FULL_PASS, DEFAULT_KEYSPACE, DEFAULT_PREFIX,
};
pub use error::{is_ambiguous, parse_cassandra_error};
#[cfg(feature = "conformance")]
pub use factory::CassandraFactory;

/// The URL scheme this adapter serves (`cassandra://…`).
pub const SCHEME: &str = "cassandra";

/// The environment variable the tests and the conformance factory read the contact points
/// from (`host:port[,host:port…]`); `scripts/services.sh up cassandra` exports it.
pub const NODES_ENV: &str = "STREAMSTORE_CASSANDRA_NODES";
