//! SQLite (bundled, WAL) with a table keyed by (stream, offset).
//!
//! One connection behind a mutex: SQLite admits one writer at a time, so this is how an async
//! service uses it. Each append is one transaction that reads the stream's next offset and inserts
//! the batch; with `synchronous=FULL` the WAL is synced at every commit, with `NORMAL` only at
//! checkpoints (a crash may lose recent commits: comparable to the engine's `Interval` mode).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection};

use super::blocking;
use crate::backend::{stream_name, BenchBackend, Result};

/// `PRAGMA synchronous` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// Sync the WAL at every commit (durable).
    Full,
    /// Sync only at checkpoints.
    Normal,
}

/// The SQLite peer.
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
    names: Arc<Vec<String>>,
}

impl SqliteBackend {
    /// Creates `dir/streams.sqlite` for `streams` streams.
    pub fn open(dir: &Path, sync: Synchronous, streams: usize) -> Result<Self> {
        let conn = Connection::open(dir.join("streams.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let level = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 stream TEXT NOT NULL,
                 off INTEGER NOT NULL,
                 ts INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 PRIMARY KEY (stream, off)
             ) WITHOUT ROWID;",
        )?;
        Ok(SqliteBackend {
            conn: Arc::new(Mutex::new(conn)),
            names: Arc::new((0..streams).map(stream_name).collect()),
        })
    }
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl BenchBackend for SqliteBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let conn = Arc::clone(&self.conn);
        let names = Arc::clone(&self.names);
        blocking(move || {
            let name = names.get(stream).ok_or("stream out of range")?;
            let mut conn = conn.lock().map_err(|_| "sqlite mutex poisoned")?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let next: i64 = tx
                    .prepare_cached(
                        "SELECT COALESCE(MAX(off) + 1, 0) FROM records WHERE stream = ?1",
                    )?
                    .query_row(params![name], |r| r.get(0))?;
                let ts = now_ms();
                let mut insert = tx.prepare_cached(
                    "INSERT INTO records (stream, off, ts, payload) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (off, rec) in (next..).zip(&records) {
                    insert.execute(params![name, off, ts, rec.as_ref()])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let conn = Arc::clone(&self.conn);
        let names = Arc::clone(&self.names);
        blocking(move || {
            let name = names.get(stream).ok_or("stream out of range")?;
            let conn = conn.lock().map_err(|_| "sqlite mutex poisoned")?;
            let mut stmt = conn.prepare_cached(
                "SELECT payload FROM records WHERE stream = ?1 AND off >= ?2 ORDER BY off LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![name, i64::try_from(from)?, i64::try_from(max)?])?;
            let (mut n, mut bytes) = (0usize, 0u64);
            while let Some(row) = rows.next()? {
                let payload = row.get_ref(0)?.as_blob()?;
                n += 1;
                bytes += payload.len() as u64;
            }
            Ok((n, bytes))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let conn = Arc::clone(&self.conn);
        blocking(move || {
            let conn = conn.lock().map_err(|_| "sqlite mutex poisoned")?;
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(())
        })
        .await
    }
}
