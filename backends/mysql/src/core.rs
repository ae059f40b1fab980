//! The MySQL statements (MySQL 8 syntax that MariaDB also runs: no `RETURNING`, no `LATERAL`,
//! no MariaDB-only functions): schema creation and one method per statement of [`SqlDialect`].
//! Table names come only from the validated prefix; every stream id, key and payload is a bound
//! parameter.

use bytes::Bytes;
use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{Connection, MySql, MySqlConnection, Row, Transaction};
use streamstore::implementor::wait::Changes;
use streamstore::{Error, Incarnation, Record, Result, StreamId};
use streamstore_sql::{
    bind_head, create_schema, drop_tables, from_db, id_head_of, id_of, mark_of, record_of, sid,
    to_db, to_db_incarnation, HeadRow, ListQuery, RecordRange, TablePrefix, Tables,
    RECORDS_STREAMS_PER_STATEMENT, SCHEMA_VERSION,
};

use crate::changes::{self, SERVER_US};
use crate::error::{parse_mysql_error, ER_DUP_ENTRY};

/// The columns of a head row, in [`HeadColumns`] order.
const HEAD_COLUMNS: &str = "incarnation, first_offset, next_offset, created_ms, last_append_ms, \
     sealed_ms, bytes, seal_ttl_ms, idle_ttl_ms, max_bytes, key_count, expires_ms";

/// True when a time-based retention rule has fired at `?` (ms since the epoch); never NULL.
/// `expires_ms` is kept by every head write (see `HeadColumns`).
const EXPIRED: &str = "(expires_ms IS NOT NULL AND expires_ms <= ?)";

/// Largest number of rows in one multi-row `INSERT`. Batches are split into chunks whose sizes
/// are powers of two up to this, so a connection prepares at most 9 distinct insert statements
/// however batch sizes vary. With at most 4 MiB per batch every chunk stays far below the
/// servers' default `max_allowed_packet` (16 MiB on MariaDB, 64 MiB on MySQL 8).
const MAX_CHUNK: usize = 256;

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
    key_cutoff: String,
    delete_keys_below: String,
    /// `insert_records[i]` inserts `2^i` rows.
    insert_records: Vec<String>,
    bytes_below: String,
    delete_records_below: String,
    bytes_cut: String,
    records: String,
    records_within: String,
    /// `records_batch[k]` reads `2^(k + 2)` ranges (see [`records_batch_sql`]).
    records_batch: Vec<String>,
    expired: String,
    /// The change index's reads ([`changes::changes_sql`], [`changes::deleted_sql`]).
    changes: String,
    deleted: String,
    note_deletion: String,
    prune_deletions: String,
}

impl Sql {
    fn new(t: &Tables) -> Self {
        let (s, r, k) = (&t.streams, &t.records, &t.idempotency);
        let mut insert_records = Vec::new();
        let mut n = 1;
        while n <= MAX_CHUNK {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ");
            insert_records.push(format!(
                "INSERT INTO {r} (stream_id, off, incarnation, ts_ms, len, payload) VALUES {rows}"
            ));
            n *= 2;
        }
        Sql {
            lock_head: format!("SELECT {HEAD_COLUMNS} FROM {s} WHERE stream_id = ? FOR UPDATE"),
            head: format!("SELECT {HEAD_COLUMNS} FROM {s} WHERE stream_id = ?"),
            // Every head write stamps `changed_us` (the change index, `changes.rs`).
            insert_head: format!(
                "INSERT INTO {s} (stream_id, {HEAD_COLUMNS}, changed_us) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {SERVER_US})"
            ),
            update_head: format!(
                "UPDATE {s} SET incarnation = ?, first_offset = ?, next_offset = ?, \
                 created_ms = ?, last_append_ms = ?, sealed_ms = ?, bytes = ?, \
                 seal_ttl_ms = ?, idle_ttl_ms = ?, max_bytes = ?, key_count = ?, expires_ms = ?, \
                 changed_us = {SERVER_US} WHERE stream_id = ?"
            ),
            delete_head: format!("DELETE FROM {s} WHERE stream_id = ?"),
            delete_records: format!("DELETE FROM {r} WHERE stream_id = ?"),
            delete_keys: format!("DELETE FROM {k} WHERE stream_id = ?"),
            find_key: format!(
                "SELECT incarnation, first_offset, count, ts_ms, digest FROM {k} \
                 WHERE stream_id = ? AND idem_key = ?"
            ),
            // VALUES() works on MySQL 8 (deprecated there in favour of a row alias, which
            // MariaDB lacks) and on MariaDB.
            insert_key: format!(
                "INSERT INTO {k} (stream_id, idem_key, incarnation, first_offset, count, ts_ms, digest) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE incarnation = VALUES(incarnation), \
                 first_offset = VALUES(first_offset), count = VALUES(count), \
                 ts_ms = VALUES(ts_ms), digest = VALUES(digest)"
            ),
            // Two statements: MySQL refuses a DELETE whose subquery reads the same table.
            key_cutoff: format!(
                "SELECT first_offset FROM {k} WHERE stream_id = ? \
                 ORDER BY first_offset DESC LIMIT 1 OFFSET ?"
            ),
            delete_keys_below: format!("DELETE FROM {k} WHERE stream_id = ? AND first_offset < ?"),
            insert_records,
            bytes_below: format!(
                "SELECT CAST(COALESCE(SUM(len), 0) AS SIGNED) FROM {r} WHERE stream_id = ? AND off < ?"
            ),
            delete_records_below: format!("DELETE FROM {r} WHERE stream_id = ? AND off < ?"),
            bytes_cut: format!(
                "SELECT off FROM (SELECT off, SUM(len) OVER (ORDER BY off) AS run FROM {r} \
                 WHERE stream_id = ? AND off >= ?) w WHERE run >= ? ORDER BY off LIMIT 1"
            ),
            // `from..end` is at most max_records offsets: the records in order, a range scan of
            // the primary key.
            records: format!(
                "SELECT off, ts_ms, payload, len FROM {r} \
                 WHERE stream_id = ? AND incarnation = ? AND off >= ? AND off < ? \
                 ORDER BY off"
            ),
            // Of `from..end`, as many as fit the byte budget by the running sum of lengths
            // (payloads beyond it are never fetched), and at least one. Costs about three times
            // `records` (MySQL reads the rows twice, into a temporary table, and sorts them), so
            // it only runs when the budget probably cuts the page.
            records_within: format!(
                "SELECT off, ts_ms, payload FROM {r} \
                 WHERE stream_id = ? AND incarnation = ? AND off >= ? AND off < ? \
                 AND off < ? + GREATEST(1, (SELECT COUNT(*) FROM \
                   (SELECT SUM(len) OVER (ORDER BY off) AS run FROM {r} \
                    WHERE stream_id = ? AND incarnation = ? AND off >= ? AND off < ?) w \
                   WHERE w.run <= ?)) \
                 ORDER BY off"
            ),
            records_batch: (2..=RECORDS_STREAMS_PER_STATEMENT.ilog2())
                .map(|level| records_batch_sql(r, 1 << level))
                .collect(),
            expired: format!(
                "SELECT stream_id FROM {s} \
                 WHERE {EXPIRED} ORDER BY expires_ms LIMIT ?"
            ),
            changes: changes::changes_sql(t),
            deleted: changes::deleted_sql(t),
            note_deletion: changes::note_deletion_sql(t),
            prune_deletions: changes::prune_deletions_sql(t),
        }
    }
}

/// Woken waiting reads' batched records for `n` ranges: ONE `SELECT` whose condition is an `OR`
/// of the ranges `(stream, from, end)` of the primary key, which the range optimizer reads as
/// one scan of `n` key ranges; each row carries its stream and incarnation, and the caller
/// hands it to every range it falls in (of the same incarnation). A `UNION ALL` of one `SELECT`
/// per range cost the server about three times as much for 256 ranges (each part optimized and
/// run on its own, the rows copied into a temporary table; `docs/benchmarks.md`, issue 19).
/// MariaDB has no array parameter, so batches are padded to a power of two (at least 4) with
/// empty ranges, and a few prepared statements serve every batch size.
fn records_batch_sql(records: &str, n: usize) -> String {
    let ranges = vec!["(stream_id = ? AND off >= ? AND off < ?)"; n].join(" OR ");
    format!("SELECT off, ts_ms, payload, stream_id, incarnation FROM {records} WHERE {ranges}")
}

/// `SELECT columns FROM table WHERE stream_id IN (?, …) rest` for `count` ids, with the
/// placeholders rounded up (to a power of two, at least 16, up to 256; then to a multiple of
/// 256) so that a few prepared statements serve every batch size without binding many unused
/// ids; and that placeholder count. `None` for no ids.
fn in_list(columns: &str, table: &str, count: usize, rest: &str) -> Option<(String, usize)> {
    if count == 0 {
        return None;
    }
    let n = if count <= 256 {
        count.next_power_of_two().max(16)
    } else {
        count.div_ceil(256) * 256
    };
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE stream_id IN ({}) {rest}",
        vec!["?"; n].join(", ")
    );
    Some((sql, n))
}

/// Binds `streams` to the `n` placeholders of [`in_list`], repeating the last id (an `IN` list
/// ignores duplicates).
fn bind_padded<'q>(
    mut q: sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>,
    streams: &'q [StreamId],
    n: usize,
) -> sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments> {
    let last = streams.last();
    for s in streams
        .iter()
        .chain(std::iter::repeat_n(last, n).flatten())
        .take(n)
    {
        q = q.bind(sid(s));
    }
    q
}

/// The MySQL dialect: the pools and the table names.
pub(crate) struct MysqlCore {
    pool: MySqlPool,
    /// The watcher's head reads and waiting reads' re-reads.
    wait_pool: MySqlPool,
    tables: Tables,
    sql: Sql,
    /// The cursor of the watcher's last wide change read (`changes::read_changes`).
    last_wide: std::sync::Mutex<Option<u64>>,
}

fn db<T>(r: std::result::Result<T, sqlx::Error>) -> Result<T> {
    r.map_err(parse_mysql_error)
}

/// Runs `f` on a connection of its own holding the named lock of `prefix`, so that schema
/// changes of several processes starting at once are serialized. The connection is closed
/// afterwards, which releases the lock even if `f` failed half-way (MySQL DDL is not
/// transactional).
async fn with_schema_lock<T>(
    options: &MySqlConnectOptions,
    prefix: &TablePrefix,
    f: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T>,
) -> Result<T> {
    let mut conn = db(MySqlConnection::connect_with(options).await)?;
    let got: Option<i64> = db(sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
        .bind(format!("streamstore:{prefix}"))
        .fetch_one(&mut conn)
        .await)?;
    if got != Some(1) {
        return Err(Error::new(
            streamstore::ErrorKind::Unavailable,
            "timed out waiting for another process to create the schema",
        ));
    }
    let result = f(&mut conn).await;
    let _ = conn.close().await;
    result
}

impl MysqlCore {
    /// Creates or migrates the schema of `prefix`, then returns the dialect over `pool`.
    pub(crate) async fn open(
        pool: MySqlPool,
        wait_pool: MySqlPool,
        options: &MySqlConnectOptions,
        prefix: &TablePrefix,
    ) -> Result<Self> {
        let t = prefix.tables();
        with_schema_lock(options, prefix, async |conn| {
            let ddl = [
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(64) NOT NULL PRIMARY KEY, \
                     value BIGINT NOT NULL) ENGINE=InnoDB",
                    t.meta
                ),
                // Ids are VARBINARY: compared and sorted byte-wise with no collation or
                // padding, so ids that differ in any byte never alias.
                format!(
                    "CREATE TABLE IF NOT EXISTS {0} (\
                     stream_id VARBINARY(512) NOT NULL PRIMARY KEY, incarnation BIGINT NOT NULL, \
                     first_offset BIGINT NOT NULL, next_offset BIGINT NOT NULL, \
                     created_ms BIGINT NOT NULL, last_append_ms BIGINT NOT NULL, sealed_ms BIGINT NULL, \
                     bytes BIGINT NOT NULL, seal_ttl_ms BIGINT NULL, idle_ttl_ms BIGINT NULL, \
                     max_bytes BIGINT NULL, key_count BIGINT NOT NULL, expires_ms BIGINT NULL, \
                     KEY {0}_expires (expires_ms), {1}) ENGINE=InnoDB",
                    t.streams,
                    changes::column_ddl(&t.streams)
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (\
                     stream_id VARBINARY(512) NOT NULL, off BIGINT NOT NULL, \
                     incarnation BIGINT NOT NULL, ts_ms BIGINT NOT NULL, len BIGINT NOT NULL, \
                     payload MEDIUMBLOB NOT NULL, PRIMARY KEY (stream_id, off)) ENGINE=InnoDB",
                    t.records
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {0} (\
                     stream_id VARBINARY(512) NOT NULL, idem_key VARBINARY(128) NOT NULL, \
                     incarnation BIGINT NOT NULL, first_offset BIGINT NOT NULL, \
                     count BIGINT NOT NULL, ts_ms BIGINT NOT NULL, digest BIGINT NOT NULL, \
                     PRIMARY KEY (stream_id, idem_key), KEY {0}_order (stream_id, first_offset)) \
                     ENGINE=InnoDB",
                    t.idempotency
                ),
                changes::deletions_ddl(&t),
                format!(
                    "INSERT INTO {} (name, value) VALUES ('schema_version', {SCHEMA_VERSION}) \
                     ON DUPLICATE KEY UPDATE name = name",
                    t.meta
                ),
            ];
            create_schema::<MySql>(conn, prefix, &ddl, parse_mysql_error).await?;
            // Tables of an older release lack the change index.
            changes::migrate(conn, &t).await
        })
        .await?;
        Ok(MysqlCore {
            sql: Sql::new(&t),
            tables: t,
            pool,
            wait_pool,
            last_wide: std::sync::Mutex::new(None),
        })
    }

    /// Drops every table of `prefix` (under the same lock as creation).
    pub(crate) async fn destroy(options: &MySqlConnectOptions, prefix: &TablePrefix) -> Result<()> {
        with_schema_lock(options, prefix, async |conn| {
            drop_tables::<MySql>(conn, prefix, parse_mysql_error).await
        })
        .await
    }

    pub(crate) fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

type Tx = Transaction<'static, MySql>;

impl MysqlCore {
    /// Records the deletion of `stream` in `<prefix>deletions` (stamped like a head write), so
    /// that other store objects' watchers see it at their next tick through the change index
    /// instead of at their next full pass; and, on one delete in [`changes::PRUNE_EVERY`],
    /// forgets the deletions older than [`changes::KEEP_DELETIONS_US`].
    async fn after_delete(&self, tx: &mut Tx, stream: &StreamId) -> Result<()> {
        db(sqlx::query(&self.sql.note_deletion)
            .bind(sid(stream))
            .execute(&mut **tx)
            .await)?;
        if rand::random::<u32>() % changes::PRUNE_EVERY == 0 {
            db(sqlx::query(&self.sql.prune_deletions)
                .bind(changes::KEEP_DELETIONS_US)
                .execute(&mut **tx)
                .await)?;
        }
        Ok(())
    }
}

// The statements that differ from PostgreSQL's; the others are written once in
// `sqlx_dialect!`.
streamstore_sql::sqlx_dialect! {
    impl SqlDialect for MysqlCore {
        database: MySql,
        map_error: parse_mysql_error;

        async fn insert_head(&self, tx: &mut Tx, stream: &StreamId, head: &HeadRow) -> Result<bool> {
            let q = bind_head(
                sqlx::query(&self.sql.insert_head).bind(sid(stream)),
                head.to_columns()?,
            );
            match q.execute(&mut **tx).await {
                Ok(_) => Ok(true),
                // Another transaction created the stream and committed (the insert waited for it).
                Err(sqlx::Error::Database(e))
                    if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                        .is_some_and(|m| m.number() == ER_DUP_ENTRY) =>
                {
                    Ok(false)
                }
                Err(e) => Err(parse_mysql_error(e)),
            }
        }

        async fn update_head(&self, tx: &mut Tx, stream: &StreamId, head: &HeadRow) -> Result<()> {
            let q = bind_head(sqlx::query(&self.sql.update_head), head.to_columns()?).bind(sid(stream));
            db(q.execute(&mut **tx).await)?;
            Ok(())
        }

        async fn prune_keys(&self, tx: &mut Tx, stream: &StreamId, keep: u64) -> Result<()> {
            let cutoff: Option<i64> = db(sqlx::query_scalar(&self.sql.key_cutoff)
                .bind(sid(stream))
                .bind(to_db(keep.saturating_sub(1))?)
                .fetch_optional(&mut **tx)
                .await)?;
            if let Some(cutoff) = cutoff {
                db(sqlx::query(&self.sql.delete_keys_below)
                    .bind(sid(stream))
                    .bind(cutoff)
                    .execute(&mut **tx)
                    .await)?;
            }
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
            let (incarnation, ts_ms) = (to_db_incarnation(incarnation), to_db(ts_ms)?);
            let mut offset = first_offset;
            let mut rest = records;
            while !rest.is_empty() {
                // The largest power of two that fits both the rest and MAX_CHUNK.
                let level = rest.len().min(MAX_CHUNK).ilog2();
                let n = 1usize << level;
                let (chunk, tail) = rest.split_at(n);
                let sql = &self.sql.insert_records[usize::try_from(level).unwrap_or(0)];
                let mut q = sqlx::query(sql);
                for (r, off) in chunk.iter().zip(offset..) {
                    q = q
                        .bind(sid(stream))
                        .bind(to_db(off)?)
                        .bind(incarnation)
                        .bind(ts_ms)
                        .bind(to_db(u64::try_from(r.len()).unwrap_or(u64::MAX))?)
                        .bind(r.as_ref());
                }
                db(q.execute(&mut **tx).await)?;
                offset += u64::try_from(n).unwrap_or(u64::MAX);
                rest = tail;
            }
            Ok(())
        }

        async fn delete_records_below(
            &self,
            tx: &mut Tx,
            stream: &StreamId,
            before: u64,
        ) -> Result<u64> {
            // No RETURNING: sum first, then delete, both under the head lock this transaction holds,
            // so no other writer changes the records in between.
            let removed: i64 = db(sqlx::query_scalar(&self.sql.bytes_below)
                .bind(sid(stream))
                .bind(to_db(before)?)
                .fetch_one(&mut **tx)
                .await)?;
            db(sqlx::query(&self.sql.delete_records_below)
                .bind(sid(stream))
                .bind(to_db(before)?)
                .execute(&mut **tx)
                .await)?;
            from_db(removed)
        }

        async fn records(
            &self,
            conn: &mut Self::Conn,
            stream: &StreamId,
            range: &RecordRange,
        ) -> Result<Vec<Record>> {
            let (inc, from_db_, end_db) =
                (to_db_incarnation(range.incarnation), to_db(range.from)?, to_db(range.end)?);
            if !range.likely_cut() {
                // The budget, if any, is applied while reading the rows in order; when it cuts
                // (records longer than the stream's mean), the rest of the result is discarded.
                let mut rows = sqlx::query(&self.sql.records)
                    .bind(sid(stream))
                    .bind(inc)
                    .bind(from_db_)
                    .bind(end_db)
                    .fetch(&mut **conn);
                let mut records = Vec::new();
                let mut bytes = 0u64;
                while let Some(row) = db(rows.try_next().await)? {
                    let len = from_db(db(row.try_get::<i64, _>(3))?)?;
                    bytes = bytes.saturating_add(len);
                    if bytes > range.max_bytes && !records.is_empty() {
                        break;
                    }
                    records.push(record_of(&row, parse_mysql_error)?);
                }
                return Ok(records);
            }
            let rows = db(sqlx::query(&self.sql.records_within)
                .bind(sid(stream))
                .bind(inc)
                .bind(from_db_)
                .bind(end_db)
                .bind(from_db_)
                .bind(sid(stream))
                .bind(inc)
                .bind(from_db_)
                .bind(end_db)
                .bind(i64::try_from(range.max_bytes).unwrap_or(i64::MAX))
                .fetch_all(&mut **conn)
                .await)?;
            rows.iter()
                .map(|r| record_of(r, parse_mysql_error))
                .collect()
        }

        async fn head_marks(&self, streams: &[StreamId], now_ms: u64) -> Result<Vec<(StreamId, u64)>> {
            let Some((sql, n)) = in_list(
                "stream_id, incarnation, next_offset, sealed_ms",
                &self.tables.streams,
                streams.len(),
                &format!("AND NOT {EXPIRED}"),
            ) else {
                return Ok(Vec::new());
            };
            let q = bind_padded(sqlx::query(&sql), streams, n);
            let rows = db(q.bind(to_db(now_ms)?).fetch_all(&self.wait_pool).await)?;
            rows.iter().map(|r| mark_of(r, parse_mysql_error)).collect()
        }

        fn tracks_changes(&self) -> bool {
            true
        }

        async fn head_changes(&self, since: Option<u64>, now_ms: u64) -> Result<Changes> {
            let sql = (self.sql.changes.as_str(), self.sql.deleted.as_str());
            changes::read_changes(&self.wait_pool, sql, &self.last_wide, since, now_ms).await
        }

        async fn heads(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, HeadRow)>> {
            let columns = format!("{HEAD_COLUMNS}, stream_id");
            let Some((sql, n)) = in_list(&columns, &self.tables.streams, streams.len(), "") else {
                return Ok(Vec::new());
            };
            let q = bind_padded(sqlx::query(&sql), streams, n);
            let rows = db(q.fetch_all(&self.wait_pool).await)?;
            rows.iter().map(|r| id_head_of(r, parse_mysql_error)).collect()
        }

        async fn records_batch(
            &self,
            reads: &[(&StreamId, RecordRange)],
        ) -> Result<Vec<(usize, Record)>> {
            if reads.is_empty() {
                return Ok(Vec::new());
            }
            let n = reads.len().next_power_of_two().max(4);
            let level = usize::try_from(n.ilog2()).unwrap_or(usize::MAX) - 2;
            let Some(sql) = self.sql.records_batch.get(level) else {
                return Err(Error::new(
                    streamstore::ErrorKind::Internal,
                    "too many ranges for one batched read",
                ));
            };
            let mut q = sqlx::query(sql);
            for (stream, range) in reads {
                q = q
                    .bind(sid(stream))
                    .bind(to_db(range.from)?)
                    .bind(to_db(range.end)?);
            }
            // Padding: empty ranges (`off >= 0 AND off < 0`) of the empty id, which is never a
            // stream's.
            for _ in reads.len()..n {
                q = q.bind(&b""[..]).bind(0i64).bind(0i64);
            }
            let rows = db(q.fetch_all(&self.wait_pool).await)?;
            // The positions of each stream's ranges (a stream may be asked for more than once).
            let mut by_stream: std::collections::HashMap<&[u8], Vec<usize>> =
                std::collections::HashMap::with_capacity(reads.len());
            for (i, (stream, _)) in reads.iter().enumerate() {
                by_stream.entry(sid(stream)).or_default().push(i);
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: Vec<u8> = db(row.try_get(3))?;
                let incarnation: i64 = db(row.try_get(4))?;
                let record = record_of(row, parse_mysql_error)?;
                for &i in by_stream.get(id.as_slice()).into_iter().flatten() {
                    let range = &reads[i].1;
                    if to_db_incarnation(range.incarnation) == incarnation
                        && (range.from..range.end).contains(&record.offset)
                    {
                        out.push((i, record.clone()));
                    }
                }
            }
            Ok(out)
        }

        async fn list(&self, query: &ListQuery, now_ms: u64) -> Result<Vec<StreamId>> {
            let op = if query.lower_inclusive { ">=" } else { ">" };
            let upper = if query.upper.is_some() {
                "AND stream_id < ?"
            } else {
                ""
            };
            let sql = format!(
                "SELECT stream_id FROM {} WHERE stream_id {op} ? {upper} AND NOT {EXPIRED} \
                 ORDER BY stream_id LIMIT ?",
                self.tables.streams
            );
            let now = to_db(now_ms)?;
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(&sql).bind(query.lower.as_slice());
            if let Some(upper) = &query.upper {
                q = q.bind(upper.as_slice());
            }
            let q = q
                .bind(now)
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
            let ids = db(q.fetch_all(&self.pool).await)?;
            ids.iter().map(|id| id_of(id)).collect()
        }
    }
}
