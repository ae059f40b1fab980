#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod append;
mod backend;
mod config;
mod core;
mod error;
#[cfg(feature = "conformance")]
mod factory;
mod model;
mod read;

pub use backend::{capabilities, DynamoDbStore, KEYS_PER_STREAM};
pub use config::{validate_table_name, AwsCredentials, DynamoDbConfig, AWS_HOST};
pub use error::{parse_dynamodb_error, Outcome};
#[cfg(feature = "conformance")]
pub use factory::DynamoDbFactory;
pub use model::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};

/// The URL scheme this adapter serves (`dynamodb://…`).
pub const SCHEME: &str = "dynamodb";

/// The environment variable the tests and the conformance factory read the endpoint from
/// (`http://127.0.0.1:58000` with `scripts/services.sh`).
pub const ENDPOINT_ENV: &str = "STREAMSTORE_DYNAMODB_ENDPOINT";
