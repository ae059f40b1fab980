//! The systems under test and how to open each one in a fresh directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streamstore::{Durability, LocalOptions, LocalStore, MemoryStore, StreamStore};

use crate::backend::{BenchBackend, Result, StoreBackend};

/// A system the harness can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// `LocalStore` with this durability.
    Local(Durability),
    /// `MemoryStore` (the reference, no I/O: an upper bound for the engine's code path).
    Memory,
    /// SQLite in WAL mode, `synchronous=FULL` (`true`) or `NORMAL` (`false`).
    #[cfg(feature = "peers")]
    Sqlite {
        /// `synchronous=FULL`.
        full: bool,
    },
    /// fjall; `durable` commits every batch with `SyncData`.
    #[cfg(feature = "peers")]
    Fjall {
        /// Sync every batch.
        durable: bool,
    },
    /// Redis Streams (`XADD`) with the AOF on and this `appendfsync` policy, in a
    /// `redis-server` the harness starts.
    #[cfg(feature = "peers")]
    Redis(crate::peers::redis::Fsync),
    /// NATS JetStream, a file-storage stream with `sync_interval: always`, in a `nats-server`
    /// the harness starts.
    #[cfg(feature = "peers")]
    Nats,
    /// The matching node (`streamstore-node`) over HTTP, the local engine in `Sync` mode behind
    /// it, in a process the harness starts.
    #[cfg(feature = "peers")]
    Node,
    /// A database adapter (`raw: false`) or the raw `sqlx` equivalent (`raw: true`).
    #[cfg(feature = "sql")]
    Sql {
        /// Which database.
        db: crate::peers::sql::Db,
        /// The raw driver instead of the adapter.
        raw: bool,
    },
    /// One file per stream; `durable` does `fdatasync` after every append.
    FileLog {
        /// Sync every append.
        durable: bool,
    },
}

/// The `Interval` period the harness uses.
pub const INTERVAL: Duration = Duration::from_millis(10);

impl System {
    /// The short label used in tables.
    pub fn label(self) -> String {
        match self {
            System::Local(Durability::Sync) => "local-sync".into(),
            System::Local(Durability::Interval(d)) => format!("local-interval-{}ms", d.as_millis()),
            System::Local(Durability::Buffered) => "local-buffered".into(),
            System::Memory => "memory".into(),
            #[cfg(feature = "peers")]
            System::Sqlite { full: true } => "sqlite-full".into(),
            #[cfg(feature = "peers")]
            System::Sqlite { full: false } => "sqlite-normal".into(),
            #[cfg(feature = "peers")]
            System::Fjall { durable: true } => "fjall-sync".into(),
            #[cfg(feature = "peers")]
            System::Fjall { durable: false } => "fjall-nosync".into(),
            #[cfg(feature = "peers")]
            System::Redis(fsync) => format!("redis-{}", fsync.name()),
            #[cfg(feature = "peers")]
            System::Nats => "nats-js-sync-always".into(),
            #[cfg(feature = "peers")]
            System::Node => "node-http-sync".into(),
            #[cfg(feature = "sql")]
            System::Sql { db, raw } => {
                let db = match db {
                    crate::peers::sql::Db::Postgres => "postgres",
                    crate::peers::sql::Db::Mysql => "mysql",
                };
                if raw {
                    format!("{db}-raw-sqlx")
                } else {
                    format!("{db}-adapter")
                }
            }
            System::FileLog { durable: true } => "filelog-sync".into(),
            System::FileLog { durable: false } => "filelog-nosync".into(),
        }
    }

    /// Why the system cannot run on this machine (a server program that is not installed), if
    /// it cannot: its cases are then reported as skipped with this reason.
    pub fn unavailable(self) -> Option<String> {
        match self {
            #[cfg(feature = "peers")]
            System::Redis(_) => {
                crate::peers::servers::find(crate::peers::servers::Program::Redis).err()
            }
            #[cfg(feature = "peers")]
            System::Nats => crate::peers::servers::find(crate::peers::servers::Program::Nats).err(),
            #[cfg(feature = "peers")]
            System::Node => crate::peers::servers::find(crate::peers::servers::Program::Node).err(),
            _ => None,
        }
    }

    /// Opens the system in `dir` (created if missing) for `streams` streams.
    pub async fn open(self, dir: &Path, streams: usize) -> Result<Arc<dyn BenchBackend>> {
        std::fs::create_dir_all(dir)?;
        Ok(match self {
            System::Local(d) => Arc::new(StoreBackend::new(open_local(dir, d).await?, streams)?),
            System::Memory => Arc::new(StoreBackend::new(Arc::new(MemoryStore::new()), streams)?),
            #[cfg(feature = "peers")]
            System::Sqlite { full } => {
                use crate::peers::sqlite::{SqliteBackend, Synchronous};
                let sync = if full {
                    Synchronous::Full
                } else {
                    Synchronous::Normal
                };
                Arc::new(SqliteBackend::open(dir, sync, streams)?)
            }
            #[cfg(feature = "peers")]
            System::Fjall { durable } => Arc::new(crate::peers::lsm::FjallBackend::open(
                dir, durable, streams,
            )?),
            #[cfg(feature = "peers")]
            System::Redis(fsync) => {
                Arc::new(crate::peers::redis::RedisBackend::open(dir, fsync, streams).await?)
            }
            #[cfg(feature = "peers")]
            System::Nats => Arc::new(crate::peers::nats::NatsBackend::open(dir, streams).await?),
            #[cfg(feature = "peers")]
            System::Node => Arc::new(crate::peers::node::NodeBackend::open(dir, streams).await?),
            #[cfg(feature = "sql")]
            System::Sql { db, raw: false } => {
                Arc::new(crate::peers::sql::AdapterBackend::open(db, streams).await?)
            }
            #[cfg(feature = "sql")]
            System::Sql { db, raw: true } => {
                Arc::new(crate::peers::sql::RawSqlBackend::open(db, streams).await?)
            }
            System::FileLog { durable } => Arc::new(crate::peers::filelog::FileLogBackend::open(
                dir, durable, streams,
            )?),
        })
    }
}

/// Opens a `LocalStore` in `dir` with `durability` and otherwise default options, except
/// `group_fill_wait` from `STREAMSTORE_BENCH_GROUP_FILL_WAIT_US` (microseconds) when set: the
/// trade-off curve of that option in `docs/benchmarks.md` was measured with it.
pub async fn open_local(dir: &Path, durability: Durability) -> Result<Arc<dyn StreamStore>> {
    let mut opts = LocalOptions::default().durability(durability);
    if let Some(us) = std::env::var("STREAMSTORE_BENCH_GROUP_FILL_WAIT_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        opts.group_fill_wait = std::time::Duration::from_micros(us);
    }
    Ok(Arc::new(LocalStore::open(dir, opts).await?))
}
