#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod changes;
mod config;
mod core;
mod error;
#[cfg(feature = "conformance")]
mod factory;

pub use backend::{MysqlStore, KEYS_PER_STREAM, MAX_RECORD_BYTES};
pub use config::MysqlConfig;
pub use error::parse_mysql_error;
#[cfg(feature = "conformance")]
pub use factory::MysqlFactory;

/// The URL scheme this adapter serves (`mysql://…`, for MySQL 8 and MariaDB alike).
pub const SCHEME: &str = "mysql";

/// The environment variable the tests and the conformance factory read the URL from.
pub const URL_ENV: &str = "STREAMSTORE_MYSQL_URL";
