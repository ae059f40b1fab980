//! Test cases shared by the streamstore database adapters' integration tests. Test-only: each
//! adapter takes this crate as a dev-dependency; it is never published.
//!
//! - [`cases`]: what the conformance suite does not reach for the SQL adapters (several stores on
//!   the same tables, schema creation races, id bytes a collation could fold, key-window
//!   pruning), and the [`sql_adapter_tests!`] macro that turns them into `#[tokio::test]`s for
//!   one store type.
//! - [`storm`]: a wake storm through the SQL adapters' re-read batcher (exact answers per reader).
//! - [`follow`]: followers looping over waiting reads, one read per wake-up.
//! - [`faults`]: the server-restart workload (idempotent appends retried across a restart of the
//!   server of `scripts/services.sh`; nothing acknowledged may be lost or duplicated) and the
//!   [`restart_test!`] macro, used by the PostgreSQL, MySQL and MongoDB tests; the Cassandra test
//!   calls [`faults::run`] itself.
//!
//! The macros expand in the calling test crate: it needs `tokio` (with `macros`), `bytes`,
//! `streamstore` and, for [`sql_adapter_tests!`], `sqlx` and a store type with `connect`,
//! `destroy`, `sweep`, `pool`, `reread_stats` and `watcher`.

pub mod cases;
pub mod faults;
pub mod follow;
pub mod storm;

use bytes::Bytes;
use streamstore::{AppendOptions, StreamId, StreamStore};

/// Appends `n` two-byte records (`r`, index) to `s`, panicking on failure: the writes the
/// watcher-mark tests make through "another store object".
pub async fn put(store: &dyn StreamStore, s: &StreamId, n: u8) {
    let recs = (0..n).map(|i| Bytes::from(vec![b'r', i])).collect();
    store
        .append(s, recs, AppendOptions::default())
        .await
        .unwrap();
}
