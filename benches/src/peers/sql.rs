//! The database adapters against their raw driver (`sqlx`) doing the equivalent work.
//!
//! The raw side is what a careful hand-written log on the same database would do: one table of
//! heads (`stream → next offset`) and one of records keyed by (stream, offset); an append is one
//! transaction that takes the stream's head row lock while assigning offsets, inserts the batch in
//! one statement, and moves the head. Reads are one range query. Both sides use a pool of
//! [`POOL`] connections (the adapters' default). Tables get a per-case prefix and are dropped on
//! close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use streamstore::StreamStore;

use crate::backend::{stream_name, BenchBackend, Result, StoreBackend};

/// Connections per pool, both sides (the adapters' default `max_connections`).
pub const POOL: u32 = 8;

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// PostgreSQL, `STREAMSTORE_POSTGRES_URL`.
    Postgres,
    /// MySQL / MariaDB, `STREAMSTORE_MYSQL_URL`.
    Mysql,
}

impl Db {
    /// The environment variable holding the server URL.
    pub fn env(self) -> &'static str {
        match self {
            Db::Postgres => "STREAMSTORE_POSTGRES_URL",
            Db::Mysql => "STREAMSTORE_MYSQL_URL",
        }
    }

    /// The URL, if the variable is set.
    pub fn url(self) -> Option<String> {
        std::env::var(self.env()).ok().filter(|u| !u.is_empty())
    }
}

fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "bench{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An adapter (`PostgresStore` / `MysqlStore`) whose tables are dropped on close.
pub struct AdapterBackend {
    inner: StoreBackend,
    db: Db,
    url: String,
    prefix: String,
}

impl AdapterBackend {
    /// Connects the adapter of `db` with a fresh table prefix.
    pub async fn open(db: Db, streams: usize) -> Result<Self> {
        let url = db.url().ok_or_else(|| format!("{} is not set", db.env()))?;
        let prefix = unique_prefix();
        let store: Arc<dyn StreamStore> = match db {
            Db::Postgres => {
                Arc::new(streamstore_postgres::PostgresStore::connect(&url, &prefix).await?)
            }
            Db::Mysql => Arc::new(streamstore_mysql::MysqlStore::connect(&url, &prefix).await?),
        };
        Ok(AdapterBackend {
            inner: StoreBackend::new(store, streams)?,
            db,
            url,
            prefix,
        })
    }
}

#[async_trait]
impl BenchBackend for AdapterBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        self.inner.append(stream, records).await
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        self.inner.read(stream, from, max).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await?;
        match self.db {
            Db::Postgres => {
                streamstore_postgres::PostgresStore::destroy(&self.url, &self.prefix).await?;
            }
            Db::Mysql => streamstore_mysql::MysqlStore::destroy(&self.url, &self.prefix).await?,
        }
        Ok(())
    }
}

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// The raw-driver side.
pub struct RawSqlBackend {
    pool: Pool,
    heads: String,
    records: String,
    names: Vec<String>,
}

impl RawSqlBackend {
    /// Connects to `db` and creates fresh tables.
    pub async fn open(db: Db, streams: usize) -> Result<Self> {
        let url = db.url().ok_or_else(|| format!("{} is not set", db.env()))?;
        let prefix = unique_prefix();
        let heads = format!("{prefix}heads");
        let records = format!("{prefix}records");
        let pool = match db {
            Db::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(POOL)
                    .connect(&url)
                    .await?;
                sqlx::query(&format!(
                    "CREATE TABLE {heads} (stream TEXT PRIMARY KEY, next BIGINT NOT NULL)"
                ))
                .execute(&pool)
                .await?;
                sqlx::query(&format!(
                    "CREATE TABLE {records} (stream TEXT NOT NULL, off BIGINT NOT NULL, \
                     ts BIGINT NOT NULL, payload BYTEA NOT NULL, PRIMARY KEY (stream, off))"
                ))
                .execute(&pool)
                .await?;
                Pool::Pg(pool)
            }
            Db::Mysql => {
                let pool = MySqlPoolOptions::new()
                    .max_connections(POOL)
                    .connect(&url)
                    .await?;
                sqlx::query(&format!(
                    "CREATE TABLE {heads} (stream VARBINARY(512) PRIMARY KEY, next BIGINT NOT NULL) \
                     ENGINE=InnoDB"
                ))
                .execute(&pool)
                .await?;
                sqlx::query(&format!(
                    "CREATE TABLE {records} (stream VARBINARY(512) NOT NULL, off BIGINT NOT NULL, \
                     ts BIGINT NOT NULL, payload LONGBLOB NOT NULL, PRIMARY KEY (stream, off)) \
                     ENGINE=InnoDB"
                ))
                .execute(&pool)
                .await?;
                Pool::My(pool)
            }
        };
        Ok(RawSqlBackend {
            pool,
            heads,
            records,
            names: (0..streams).map(stream_name).collect(),
        })
    }
}

#[async_trait]
impl BenchBackend for RawSqlBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let name = self.names.get(stream).ok_or("stream out of range")?;
        let n = i64::try_from(records.len())?;
        let (heads, table) = (&self.heads, &self.records);
        match &self.pool {
            Pool::Pg(pool) => {
                let mut tx = pool.begin().await?;
                // Create-or-lock the head and reserve n offsets in one statement.
                let first: i64 = sqlx::query(&format!(
                    "INSERT INTO {heads} AS h (stream, next) VALUES ($1, $2) \
                     ON CONFLICT (stream) DO UPDATE SET next = h.next + $2 RETURNING next - $2"
                ))
                .bind(name)
                .bind(n)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                let payloads: Vec<&[u8]> = records.iter().map(AsRef::as_ref).collect();
                sqlx::query(&format!(
                    "INSERT INTO {table} (stream, off, ts, payload) \
                     SELECT $1, $2::BIGINT + t.o - 1, $3, t.p \
                     FROM UNNEST($4::BYTEA[]) WITH ORDINALITY AS t(p, o)"
                ))
                .bind(name)
                .bind(first)
                .bind(now_ms())
                .bind(payloads)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Pool::My(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO {heads} (stream, next) VALUES (?, 0) \
                     ON DUPLICATE KEY UPDATE next = next"
                ))
                .bind(name.as_bytes())
                .execute(&mut *tx)
                .await?;
                let first: i64 = sqlx::query(&format!(
                    "SELECT next FROM {heads} WHERE stream = ? FOR UPDATE"
                ))
                .bind(name.as_bytes())
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                let values = vec!["(?, ?, ?, ?)"; records.len()].join(", ");
                let sql = format!("INSERT INTO {table} (stream, off, ts, payload) VALUES {values}");
                let mut q = sqlx::query(&sql);
                let ts = now_ms();
                for (off, r) in (first..).zip(&records) {
                    q = q.bind(name.as_bytes()).bind(off).bind(ts).bind(r.as_ref());
                }
                q.execute(&mut *tx).await?;
                sqlx::query(&format!(
                    "UPDATE {heads} SET next = next + ? WHERE stream = ?"
                ))
                .bind(n)
                .bind(name.as_bytes())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let name = self.names.get(stream).ok_or("stream out of range")?;
        let (from, max) = (i64::try_from(from)?, i64::try_from(max)?);
        let table = &self.records;
        let lens: Vec<usize> = match &self.pool {
            Pool::Pg(pool) => sqlx::query(&format!(
                "SELECT payload FROM {table} WHERE stream = $1 AND off >= $2 ORDER BY off LIMIT $3"
            ))
            .bind(name)
            .bind(from)
            .bind(max)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<&[u8], _>(0).map(<[u8]>::len))
            .collect::<Result<_, _>>()?,
            Pool::My(pool) => sqlx::query(&format!(
                "SELECT payload FROM {table} WHERE stream = ? AND off >= ? ORDER BY off LIMIT ?"
            ))
            .bind(name.as_bytes())
            .bind(from)
            .bind(max)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<&[u8], _>(0).map(<[u8]>::len))
            .collect::<Result<_, _>>()?,
        };
        Ok((lens.len(), lens.iter().map(|&l| l as u64).sum()))
    }

    async fn close(&self) -> Result<()> {
        let drop = format!("DROP TABLE IF EXISTS {}, {}", self.records, self.heads);
        match &self.pool {
            Pool::Pg(pool) => {
                sqlx::query(&drop).execute(pool).await?;
                pool.close().await;
            }
            Pool::My(pool) => {
                sqlx::query(&drop).execute(pool).await?;
                pool.close().await;
            }
        }
        Ok(())
    }
}
