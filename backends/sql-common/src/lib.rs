//! Shared logic of the streamkeep SQL adapters (`streamkeep-postgres`, `streamkeep-mysql`).
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
//! - Over sqlx, written once for both databases: the row helpers ([`head_of`], [`bind_head`],
//!   [`key_of`], [`record_of`], …), schema creation and removal ([`create_schema`],
//!   [`drop_tables`]), the [`sqlx_dialect!`] macro with the [`SqlDialect`] methods whose
//!   statements run alike, [`forward_stream_store!`], [`config_target_methods!`], and the
//!   configuration, pool, capability and driver-error helpers of the adapters ([`DbTarget`],
//!   [`pool_options`], [`capabilities`], [`driver_error`]).
//!
//! The adapters' shared tests live in the test-only crate `streamstore-adapter-testing`
//! (`backends/testing`, a dev-dependency): `cases` with the `sql_adapter_tests!` macro, `faults`
//! with `restart_test!`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adapter;
mod dialect;
mod macros;
mod model;
mod prefix;
mod rereads;
mod rows;
mod store;
mod url;

pub use adapter::{
    capabilities, driver_error, pool_options, DbTarget, WaitSettings, DEFAULT_ACQUIRE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_SWEEP_INTERVAL, DEFAULT_WAIT_BATCH, DEFAULT_WAIT_CONNECTIONS,
    IDLE_PING, MAX_BATCH_BYTES, MAX_BATCH_RECORDS,
};
pub use dialect::{ListQuery, RecordRange, RolledBack, SqlDialect};
pub use model::{
    from_db, from_db_incarnation, head_mark, is_expired, to_db, to_db_incarnation, HeadColumns,
    HeadRow, KeyRow, SCHEMA_VERSION,
};
pub use prefix::{TablePrefix, Tables};
pub use rereads::{RereadStats, RECORDS_STREAMS_PER_STATEMENT};
pub use rows::{
    bind_head, create_schema, drop_tables, head_of, id_head_of, id_of, key_of, mark_of, record_of,
    sid, MapError,
};
pub use store::{SqlStore, StoreOptions};
pub use url::{DbUrl, DEFAULT_PREFIX};

/// What the macros of this crate name; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use bytes;
    pub use sqlx;
    pub use streamstore;
}
