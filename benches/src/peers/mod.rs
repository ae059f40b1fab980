//! The systems people would pick instead of the local engine, doing the same work.
//!
//! Each peer implements [`BenchBackend`](crate::backend::BenchBackend) with the durability the
//! comparison needs, and assigns offsets itself (dense from 0 per stream, like the engine). The
//! blocking peers run on Tokio's blocking pool, as an async service would use them. The server
//! peers (Redis, NATS JetStream, and the matching node `streamstore-node` over HTTP) run as child
//! processes of the harness ([`servers`]), one fresh server per case, on loopback.

pub mod filelog;
#[cfg(feature = "peers")]
pub mod lsm;
#[cfg(feature = "peers")]
pub mod nats;
#[cfg(feature = "peers")]
pub mod node;
#[cfg(feature = "peers")]
pub mod redis;
#[cfg(feature = "peers")]
pub mod servers;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "peers")]
pub mod sqlite;

use crate::backend::{BoxError, Result};

/// Runs blocking `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| -> BoxError { format!("blocking task failed: {e}").into() })?
}
