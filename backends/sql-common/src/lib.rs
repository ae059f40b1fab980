//! Shared logic of the streamstore SQL adapters (`streamstore-postgres`, `streamstore-mysql`).
//! Not for direct use.
//!
//! The adapters keep the same schema shape and run the same algorithms; only the SQL text and
//! the error mapping differ. This crate holds what they share:
//!
//! - [`TablePrefix`] / [`Tables`]: the validated table-name prefix and the table names built from
//!   it (the only text ever spliced into SQL; stream ids and payloads are always bound).
//! - [`HeadRow`], [`KeyRow`] and the integer conversions between `u64` and `BIGINT`.
//! - [`SqlDialect`]: the statements an adapter provides, one method per statement.
//! - [`SqlStore`]: the `StreamStore` algorithms (append, read, seal, trim, delete, retention)
//!   written once over a [`SqlDialect`], including the internal retry of transactions the
//!   database rolled back ([`RolledBack`]) and the retention sweeper.
//! - [`DbUrl`]: connection URLs, with the project's options split off and the password hidden.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dialect;
mod model;
mod prefix;
mod store;
mod url;

pub use dialect::{ListQuery, RolledBack, SqlDialect};
pub use model::{
    from_db, from_db_incarnation, is_expired, to_db, to_db_incarnation, HeadColumns, HeadRow,
    KeyRow, SCHEMA_VERSION,
};
pub use prefix::{TablePrefix, Tables};
pub use store::{SqlStore, StoreOptions};
pub use url::{DbUrl, DEFAULT_PREFIX};
