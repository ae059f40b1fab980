//! The PostgreSQL statements: schema creation and one method per statement of
//! [`SqlDialect`]. Table names come only from the validated prefix; every stream id, key and
//! payload is a bound parameter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use streamstore::{Error, ErrorKind, Incarnation, Record, Result, StreamId};
use streamstore_sql::{
    bind_head, create_schema, drop_tables, from_db, id_head_of, id_of, mark_of, record_of, sid,
    to_db, to_db_incarnation, HeadRow, ListQuery, RecordRange, TablePrefix, Tables, SCHEMA_VERSION,
};

use crate::error::parse_postgres_error;
use crate::notify::Outbox;
use crate::shards::{Subscriptions, MAX_SHARDS};

/// The columns of a head row, in [`HeadColumns`] order.
const HEAD_COLUMNS: &str = "incarnation, first_offset, next_offset, created_ms, last_append_ms, \
     sealed_ms, bytes, seal_ttl_ms, idle_ttl_ms, max_bytes, key_count, expires_ms";

/// True when a time-based retention rule has fired at `$N` (ms since the epoch); never NULL.
/// `expires_ms` is kept by every head write (see `HeadColumns`).
fn expired_at(n: usize) -> String {
    format!("(expires_ms IS NOT NULL AND expires_ms <= ${n})")
}

/// The statements, formatted once per store with its table names.
struct Sql {
    lock_head: String,
    head: String,
    insert_head: String,
    update_head: String,
    delete_head: String,
    delete_records: String,
    delete_keys: String,
    find_key: String,
    insert_key: String,
    prune_keys: String,
    insert_records: String,
    append_records: String,
    delete_records_below: String,
    bytes_cut: String,
    records: String,
    records_within: String,
    expired: String,
    head_marks: String,
    heads: String,
    records_batch: String,
}

impl Sql {
    fn new(t: &Tables) -> Self {
        let (s, r, k) = (&t.streams, &t.records, &t.idempotency);
        Sql {
            lock_head: format!("SELECT {HEAD_COLUMNS} FROM {s} WHERE stream_id = $1 FOR UPDATE"),
            head: format!("SELECT {HEAD_COLUMNS} FROM {s} WHERE stream_id = $1"),
            insert_head: format!(
                "INSERT INTO {s} (stream_id, {HEAD_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (stream_id) DO NOTHING"
            ),
            update_head: format!(
                "UPDATE {s} SET incarnation = $2, first_offset = $3, next_offset = $4, \
                 created_ms = $5, last_append_ms = $6, sealed_ms = $7, bytes = $8, \
                 seal_ttl_ms = $9, idle_ttl_ms = $10, max_bytes = $11, key_count = $12, \
                 expires_ms = $13 \
                 WHERE stream_id = $1"
            ),
            delete_head: format!("DELETE FROM {s} WHERE stream_id = $1"),
            delete_records: format!("DELETE FROM {r} WHERE stream_id = $1"),
            delete_keys: format!("DELETE FROM {k} WHERE stream_id = $1"),
            find_key: format!(
                "SELECT incarnation, first_offset, count, ts_ms, digest FROM {k} \
                 WHERE stream_id = $1 AND idem_key = $2"
            ),
            insert_key: format!(
                "INSERT INTO {k} (stream_id, idem_key, incarnation, first_offset, count, ts_ms, digest) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (stream_id, idem_key) DO UPDATE SET incarnation = EXCLUDED.incarnation, \
                 first_offset = EXCLUDED.first_offset, count = EXCLUDED.count, \
                 ts_ms = EXCLUDED.ts_ms, digest = EXCLUDED.digest"
            ),
            prune_keys: format!(
                "DELETE FROM {k} WHERE stream_id = $1 AND first_offset < \
                 (SELECT first_offset FROM {k} WHERE stream_id = $1 \
                  ORDER BY first_offset DESC OFFSET $2 LIMIT 1)"
            ),
            // One statement for the whole batch, whatever its size: the payloads travel as one
            // bytea[] parameter (no 65535-parameter limit), offsets come from the ordinality.
            insert_records: format!(
                "INSERT INTO {r} (stream_id, off, incarnation, ts_ms, len, payload) \
                 SELECT $1, $2::BIGINT + t.o - 1, $3, $4, octet_length(t.p)::BIGINT, t.p \
                 FROM UNNEST($5::BYTEA[]) WITH ORDINALITY AS t(p, o)"
            ),
            // `insert_records` and `update_head` in one statement (a data-modifying CTE): the
            // records at `$2..` as above, the head's columns as `$6..$17`.
            append_records: format!(
                "WITH ins AS (INSERT INTO {r} (stream_id, off, incarnation, ts_ms, len, payload) \
                 SELECT $1, $2::BIGINT + t.o - 1, $3, $4, octet_length(t.p)::BIGINT, t.p \
                 FROM UNNEST($5::BYTEA[]) WITH ORDINALITY AS t(p, o)) \
                 UPDATE {s} SET incarnation = $6, first_offset = $7, next_offset = $8, \
                 created_ms = $9, last_append_ms = $10, sealed_ms = $11, bytes = $12, \
                 seal_ttl_ms = $13, idle_ttl_ms = $14, max_bytes = $15, key_count = $16, \
                 expires_ms = $17 \
                 WHERE stream_id = $1"
            ),
            delete_records_below: format!(
                "WITH d AS (DELETE FROM {r} WHERE stream_id = $1 AND off < $2 RETURNING len) \
                 SELECT COALESCE(SUM(len), 0)::BIGINT FROM d"
            ),
            bytes_cut: format!(
                "SELECT off FROM (SELECT off, SUM(len) OVER (ORDER BY off) AS run FROM {r} \
                 WHERE stream_id = $1 AND off >= $2) w WHERE run >= $3 ORDER BY off LIMIT 1"
            ),
            // `$3..$4` is at most max_records offsets; of those, as many as fit the byte budget
            // `$5` by the running sum of lengths (payloads beyond it are never fetched), and at
            // least one.
            records_within: format!(
                "SELECT off, ts_ms, payload FROM {r} \
                 WHERE stream_id = $1 AND incarnation = $2 AND off >= $3 AND off < $4 \
                 AND off < $3 + GREATEST(1, (SELECT COUNT(*) FROM \
                   (SELECT SUM(len) OVER (ORDER BY off) AS run FROM {r} \
                    WHERE stream_id = $1 AND incarnation = $2 AND off >= $3 AND off < $4) w \
                   WHERE w.run <= $5)) \
                 ORDER BY off"
            ),
            // No byte budget: `$3..$4` is at most max_records offsets.
            records: format!(
                "SELECT off, ts_ms, payload FROM {r} \
                 WHERE stream_id = $1 AND incarnation = $2 AND off >= $3 AND off < $4 \
                 ORDER BY off"
            ),
            expired: format!(
                "SELECT stream_id FROM {s} \
                 WHERE {} ORDER BY expires_ms LIMIT $2",
                expired_at(1)
            ),
            // Waiting reads' batched re-read of heads: the head columns, then the id.
            heads: format!("SELECT {HEAD_COLUMNS}, stream_id FROM {s} WHERE stream_id = ANY($1)"),
            // Woken waiting reads' batched records: one range scan of the primary key per
            // (stream, incarnation, from, end) of the four arrays, tagged with its position.
            records_batch: format!(
                "SELECT r.off, r.ts_ms, r.payload, q.i FROM \
                 UNNEST($1::BYTEA[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[]) \
                 WITH ORDINALITY AS q(sid, inc, lo, hi, i) \
                 CROSS JOIN LATERAL (SELECT off, ts_ms, payload FROM {r} \
                 WHERE stream_id = q.sid AND incarnation = q.inc AND off >= q.lo AND off < q.hi) r"
            ),
            // The watcher's batched head read: one index probe per id, ids as one bytea[].
            head_marks: format!(
                "SELECT stream_id, incarnation, next_offset, sealed_ms FROM {s} \
                 WHERE stream_id = ANY($1) AND NOT {}",
                expired_at(2)
            ),
        }
    }
}

/// The PostgreSQL dialect: a pool, the table names, the NOTIFY channels (sharded by stream) and
/// the outbox of notifications to send after commits.
pub(crate) struct PgCore {
    pool: PgPool,
    /// The watcher's head reads and waiting reads' re-reads.
    wait_pool: PgPool,
    tables: Tables,
    /// The notification channels listened to; the watcher's head reads wait for theirs.
    subs: Arc<Subscriptions>,
    sql: Sql,
    outbox: Arc<Outbox>,
}

fn db<T>(r: std::result::Result<T, sqlx::Error>) -> Result<T> {
    r.map_err(parse_postgres_error)
}

impl PgCore {
    /// Creates or migrates the schema of `prefix`, then returns the dialect over `pool`.
    ///
    /// Safe when several processes start at once: the DDL runs in one transaction holding a
    /// transaction-level advisory lock keyed by the prefix, so one process creates the tables
    /// and the others find them (the lock is released at commit or when the connection dies).
    pub(crate) async fn open(
        pool: PgPool,
        wait_pool: PgPool,
        prefix: &TablePrefix,
        notify_shards: u32,
        unlisten_after: Duration,
    ) -> Result<Self> {
        let t = prefix.tables();
        let mut tx = db(pool.begin().await)?;
        db(sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(prefix.lock_key())
            .execute(&mut *tx)
            .await)?;
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
                t.meta
            ),
            // Ids are bytea: they compare and sort byte-wise, and ids that differ in any byte
            // never alias (no collation is involved).
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 stream_id BYTEA PRIMARY KEY, incarnation BIGINT NOT NULL, \
                 first_offset BIGINT NOT NULL, next_offset BIGINT NOT NULL, \
                 created_ms BIGINT NOT NULL, last_append_ms BIGINT NOT NULL, sealed_ms BIGINT, \
                 bytes BIGINT NOT NULL, seal_ttl_ms BIGINT, idle_ttl_ms BIGINT, max_bytes BIGINT, \
                 key_count BIGINT NOT NULL, expires_ms BIGINT)",
                t.streams
            ),
            // Only streams with a time rule are indexed: the sweeper's range scan.
            format!(
                "CREATE INDEX IF NOT EXISTS {0}_expires ON {0} (expires_ms) \
                 WHERE expires_ms IS NOT NULL",
                t.streams
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 stream_id BYTEA NOT NULL, off BIGINT NOT NULL, incarnation BIGINT NOT NULL, \
                 ts_ms BIGINT NOT NULL, len BIGINT NOT NULL, payload BYTEA NOT NULL, \
                 PRIMARY KEY (stream_id, off))",
                t.records
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 stream_id BYTEA NOT NULL, idem_key BYTEA NOT NULL, incarnation BIGINT NOT NULL, \
                 first_offset BIGINT NOT NULL, count BIGINT NOT NULL, ts_ms BIGINT NOT NULL, \
                 digest BIGINT NOT NULL, PRIMARY KEY (stream_id, idem_key))",
                t.idempotency
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {0}_order ON {0} (stream_id, first_offset)",
                t.idempotency
            ),
            format!(
                "INSERT INTO {} (name, value) VALUES ('schema_version', {SCHEMA_VERSION}) \
                 ON CONFLICT (name) DO NOTHING",
                t.meta
            ),
            // The first process to create the tables fixes the notification shards for all.
            format!(
                "INSERT INTO {} (name, value) VALUES ('notify_shards', {}) \
                 ON CONFLICT (name) DO NOTHING",
                t.meta,
                notify_shards.clamp(1, MAX_SHARDS)
            ),
        ];
        create_schema::<Postgres>(&mut tx, prefix, &ddl, parse_postgres_error).await?;
        let shards: i64 = db(sqlx::query_scalar(&format!(
            "SELECT value FROM {} WHERE name = 'notify_shards'",
            t.meta
        ))
        .fetch_one(&mut *tx)
        .await)?;
        let shards = u32::try_from(shards)
            .ok()
            .filter(|s| (1..=MAX_SHARDS).contains(s))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("tables {prefix:?} have notify_shards {shards}, not 1..={MAX_SHARDS}"),
                )
            })?;
        db(tx.commit().await)?;
        Ok(PgCore {
            sql: Sql::new(&t),
            subs: Arc::new(Subscriptions::new(prefix.as_str(), shards, unlisten_after)),
            tables: t,
            pool,
            wait_pool,
            outbox: Arc::new(Outbox::default()),
        })
    }

    /// Drops every table of `prefix` (under the same lock as creation).
    pub(crate) async fn destroy(pool: &PgPool, prefix: &TablePrefix) -> Result<()> {
        let mut tx = db(pool.begin().await)?;
        db(sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(prefix.lock_key())
            .execute(&mut *tx)
            .await)?;
        drop_tables::<Postgres>(&mut tx, prefix, parse_postgres_error).await?;
        db(tx.commit().await)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The `LISTEN` channels of this prefix (payloads are stream ids, hints only) and which of
    /// them this store object needs.
    pub(crate) fn subscriptions(&self) -> Arc<Subscriptions> {
        Arc::clone(&self.subs)
    }

    /// The notifications to send (by `notify::send_loop`).
    pub(crate) fn outbox(&self) -> Arc<Outbox> {
        Arc::clone(&self.outbox)
    }
}

type Tx = Transaction<'static, Postgres>;

impl PgCore {
    /// Nothing to record after a delete: `NOTIFY` (sent after the commit) tells the other store
    /// objects' watchers.
    async fn after_delete(&self, _tx: &mut Tx, _stream: &StreamId) -> Result<()> {
        Ok(())
    }
}

// The statements that differ from MySQL's; the others are written once in `sqlx_dialect!`.
streamstore_sql::sqlx_dialect! {
    impl SqlDialect for PgCore {
        database: Postgres,
        map_error: parse_postgres_error;

        async fn insert_head(&self, tx: &mut Tx, stream: &StreamId, head: &HeadRow) -> Result<bool> {
            let q = bind_head(
                sqlx::query(&self.sql.insert_head).bind(sid(stream)),
                head.to_columns()?,
            );
            Ok(db(q.execute(&mut **tx).await)?.rows_affected() == 1)
        }

        async fn update_head(&self, tx: &mut Tx, stream: &StreamId, head: &HeadRow) -> Result<()> {
            let q = bind_head(
                sqlx::query(&self.sql.update_head).bind(sid(stream)),
                head.to_columns()?,
            );
            db(q.execute(&mut **tx).await)?;
            Ok(())
        }

        async fn prune_keys(&self, tx: &mut Tx, stream: &StreamId, keep: u64) -> Result<()> {
            db(sqlx::query(&self.sql.prune_keys)
                .bind(sid(stream))
                .bind(to_db(keep.saturating_sub(1))?)
                .execute(&mut **tx)
                .await)?;
            Ok(())
        }

        async fn insert_records(
            &self,
            tx: &mut Tx,
            stream: &StreamId,
            incarnation: Incarnation,
            first_offset: u64,
            ts_ms: u64,
            records: &[Bytes],
        ) -> Result<()> {
            let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_ref()).collect();
            db(sqlx::query(&self.sql.insert_records)
                .bind(sid(stream))
                .bind(to_db(first_offset)?)
                .bind(to_db_incarnation(incarnation))
                .bind(to_db(ts_ms)?)
                .bind(payloads)
                .execute(&mut **tx)
                .await)?;
            Ok(())
        }

        async fn delete_records_below(
            &self,
            tx: &mut Tx,
            stream: &StreamId,
            before: u64,
        ) -> Result<u64> {
            let removed: i64 = db(sqlx::query_scalar(&self.sql.delete_records_below)
                .bind(sid(stream))
                .bind(to_db(before)?)
                .fetch_one(&mut **tx)
                .await)?;
            from_db(removed)
        }

        async fn append_records(
            &self,
            tx: &mut Tx,
            stream: &StreamId,
            head: &HeadRow,
            first_offset: u64,
            ts_ms: u64,
            records: &[Bytes],
        ) -> Result<()> {
            let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_ref()).collect();
            let q = sqlx::query(&self.sql.append_records)
                .bind(sid(stream))
                .bind(to_db(first_offset)?)
                .bind(to_db_incarnation(head.head.incarnation))
                .bind(to_db(ts_ms)?)
                .bind(payloads);
            db(bind_head(q, head.to_columns()?).execute(&mut **tx).await)?;
            Ok(())
        }

        async fn head_marks(&self, streams: &[StreamId], now_ms: u64) -> Result<Vec<(StreamId, u64)>> {
            // Listen first: a change committed after this read is then notified to us (see
            // `shards`). `now_ms` may be a little old by then, which only keeps a stream that
            // just expired one pass longer.
            self.subs.ensure(streams).await;
            let ids: Vec<&[u8]> = streams.iter().map(sid).collect();
            let rows = db(sqlx::query(&self.sql.head_marks)
                .bind(ids)
                .bind(to_db(now_ms)?)
                .fetch_all(&self.wait_pool)
                .await)?;
            rows.iter().map(|r| mark_of(r, parse_postgres_error)).collect()
        }

        async fn heads(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, HeadRow)>> {
            let ids: Vec<&[u8]> = streams.iter().map(sid).collect();
            let rows = db(sqlx::query(&self.sql.heads).bind(ids).fetch_all(&self.wait_pool).await)?;
            rows.iter().map(|r| id_head_of(r, parse_postgres_error)).collect()
        }

        async fn records_batch(
            &self,
            reads: &[(&StreamId, RecordRange)],
        ) -> Result<Vec<(usize, Record)>> {
            let ids: Vec<&[u8]> = reads.iter().map(|(s, _)| sid(s)).collect();
            let inc: Vec<i64> = reads.iter().map(|(_, r)| to_db_incarnation(r.incarnation)).collect();
            let lo = reads.iter().map(|(_, r)| to_db(r.from)).collect::<Result<Vec<i64>>>()?;
            let hi = reads.iter().map(|(_, r)| to_db(r.end)).collect::<Result<Vec<i64>>>()?;
            let rows = db(sqlx::query(&self.sql.records_batch)
                .bind(ids)
                .bind(inc)
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.wait_pool)
                .await)?;
            rows.iter()
                .map(|row| {
                    // Ordinality counts from 1.
                    let i: i64 = db(sqlx::Row::try_get(row, 3))?;
                    let i = usize::try_from(i - 1).map_err(|_| {
                        Error::new(ErrorKind::Internal, "a batched read's position is out of range")
                    })?;
                    Ok((i, record_of(row, parse_postgres_error)?))
                })
                .collect()
        }

        fn changed(&self, stream: &StreamId) {
            // Sent after the commit by `notify::send_loop`, to listeners only; a hint, never data.
            self.outbox.push(stream);
        }

        async fn records(
            &self,
            conn: &mut Self::Conn,
            stream: &StreamId,
            range: &RecordRange,
        ) -> Result<Vec<Record>> {
            let q = if range.bounded() {
                sqlx::query(&self.sql.records_within)
            } else {
                sqlx::query(&self.sql.records)
            };
            let mut q = q
                .bind(sid(stream))
                .bind(to_db_incarnation(range.incarnation))
                .bind(to_db(range.from)?)
                .bind(to_db(range.end)?);
            if range.bounded() {
                q = q.bind(i64::try_from(range.max_bytes).unwrap_or(i64::MAX));
            }
            let rows = db(q.fetch_all(&mut **conn).await)?;
            rows.iter()
                .map(|r| record_of(r, parse_postgres_error))
                .collect()
        }

        async fn list(&self, query: &ListQuery, now_ms: u64) -> Result<Vec<StreamId>> {
            let op = if query.lower_inclusive { ">=" } else { ">" };
            let upper = if query.upper.is_some() {
                "AND stream_id < $4"
            } else {
                ""
            };
            let sql = format!(
                "SELECT stream_id FROM {} WHERE stream_id {op} $1 {upper} AND NOT {} \
                 ORDER BY stream_id LIMIT $3",
                self.tables.streams,
                expired_at(2)
            );
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(&sql)
                .bind(query.lower.as_slice())
                .bind(to_db(now_ms)?)
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
            if let Some(upper) = &query.upper {
                q = q.bind(upper.as_slice());
            }
            let ids = db(q.fetch_all(&self.pool).await)?;
            ids.iter().map(|id| id_of(id)).collect()
        }
    }
}
