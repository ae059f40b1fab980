//! The tables and the prepared statements over them.
//!
//! Table names come only from the validated keyspace and prefix (`[a-z][a-z0-9_]*`); stream
//! ids, keys and payloads are always bound values.
//!
//! - `<p>log((sid, inc, bucket), kind, off, key)`: one partition per bucket of one incarnation
//!   of a stream. `kind 0` is the head row (`off = 0`, `key = 0x00`), `kind 1` an idempotency
//!   key (`off = 0`, `key` = the key's bytes), `kind 2` a record (`off` = its offset,
//!   `key = 0x00`). Every append is one conditional batch in one such partition.
//! - `<p>streams(sid)`: the current incarnation and a hint of the current bucket; written only
//!   with LWT.
//! - `<p>names((shard), sid)`: the ids, sharded, in byte order within a shard, for `list` and
//!   the retention sweeper (`timed`: the stream has a time-based retention rule).
//! - `<p>changes((slot, shard), at, sid)`: change hints for the watcher of waiting reads (see
//!   `core/hints.rs`): after each head write, the stream's new mark, stamped `at` (client clock,
//!   µs) in the partition of its second (`slot`) and a shard of its id; rows expire after
//!   [`HINT_TTL_SECS`].

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use streamstore::Result;

use crate::config::CassandraConfig;
use crate::error::parse_cassandra_error;

/// Shards of the names table (a stream's shard is a hash of its id).
pub(crate) const NAME_SHARDS: i32 = 8;

/// How long a change hint lives (`default_time_to_live` of `<p>changes`): far beyond a tick plus
/// the margin a watcher reads back (`core/hints.rs`).
pub(crate) const HINT_TTL_SECS: u32 = 300;

/// The columns of a head row, in the order every head statement uses.
const HEAD_COLUMNS: &str = "ver, base, first, next, created, last_ts, sealed, closed, moved_to, \
                            prev, bytes, seal_ttl, idle_ttl, max_bytes, closed_at";

/// The primary key of the head row of a bucket, with its three bound partition-key columns.
const HEAD_ROW: &str = "sid = ? AND inc = ? AND bucket = ? AND kind = 0 AND off = 0 AND key = 0x00";

/// The DDL, in order; every statement is idempotent.
fn ddl(config: &CassandraConfig) -> Vec<String> {
    let (ks, p) = (&config.keyspace, config.prefix());
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            config.replication_factor
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{p}log (sid text, inc bigint, bucket bigint, \
             kind tinyint, off bigint, key blob, \
             ver bigint, base bigint, first bigint, next bigint, created bigint, last_ts bigint, \
             sealed bigint, closed tinyint, moved_to bigint, prev bigint, bytes bigint, \
             seal_ttl bigint, idle_ttl bigint, max_bytes bigint, closed_at bigint, \
             n bigint, ts bigint, digest bigint, len bigint, payload blob, batch_id blob, \
             PRIMARY KEY ((sid, inc, bucket), kind, off, key))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{p}streams (sid text PRIMARY KEY, inc bigint, \
             bucket bigint)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{p}names (shard int, sid text, timed boolean, \
             PRIMARY KEY (shard, sid))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{p}changes (slot bigint, shard int, at bigint, \
             sid text, mark bigint, PRIMARY KEY ((slot, shard), at, sid)) \
             WITH default_time_to_live = {HINT_TTL_SECS}"
        ),
    ]
}

/// Creates the keyspace and tables if missing, and waits for schema agreement.
pub(crate) async fn create(session: &Session, config: &CassandraConfig) -> Result<()> {
    for statement in ddl(config) {
        session
            .query_unpaged(statement, &[])
            .await
            .map_err(parse_cassandra_error)?;
    }
    session.await_schema_agreement().await.map_err(|e| {
        streamstore::Error::new(
            streamstore::ErrorKind::Unavailable,
            "Cassandra nodes did not agree on the schema",
        )
        .with_source(e)
    })?;
    Ok(())
}

/// Drops the tables of the configured prefix, if they exist.
pub(crate) async fn drop_tables(session: &Session, config: &CassandraConfig) -> Result<()> {
    let (ks, p) = (&config.keyspace, config.prefix());
    // Only tables that exist: a DROP of a missing table would still be a schema change round.
    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (ks.as_str(),),
        )
        .await
        .map_err(parse_cassandra_error)?;
    let rows = rows
        .into_rows_result()
        .map_err(|e| crate::core::decode_error(&e))?;
    let mut existing = Vec::new();
    for row in rows
        .rows::<(String,)>()
        .map_err(|e| crate::core::decode_error(&e))?
    {
        existing.push(row.map_err(|e| crate::core::decode_error(&e))?.0);
    }
    for table in ["log", "streams", "names", "changes"] {
        let name = format!("{p}{table}");
        if existing.contains(&name) {
            session
                .query_unpaged(format!("DROP TABLE IF EXISTS {ks}.{name}"), &[])
                .await
                .map_err(parse_cassandra_error)?;
        }
    }
    Ok(())
}

/// Every statement the adapter runs, prepared once per store.
pub(crate) struct Statements {
    pub head: PreparedStatement,
    /// The watcher's multi-partition head read: `sid`, `inc`, `bucket` and the head columns of
    /// every head row in the cartesian product of three bound lists (Cassandra allows `IN` on
    /// each partition-key column, not on the tuple of them).
    pub heads_in: PreparedStatement,
    pub head_insert: PreparedStatement,
    pub head_update: PreparedStatement,
    pub key: PreparedStatement,
    pub keys_all: PreparedStatement,
    pub key_insert: PreparedStatement,
    pub record_insert: PreparedStatement,
    pub record_batch_serial: PreparedStatement,
    pub records: PreparedStatement,
    /// A woken reader's re-read in one statement (`core/read.rs`): `kind`, `off`, `ts`,
    /// `payload` and the head columns of the rows of one partition whose `(kind, off)` is in
    /// a bound list (the head row `(0, 0)` and records `(2, offset)`).
    pub head_and_records: PreparedStatement,
    pub lens: PreparedStatement,
    pub records_delete_below: PreparedStatement,
    pub body_delete: PreparedStatement,
    pub stream: PreparedStatement,
    pub stream_insert: PreparedStatement,
    pub stream_move: PreparedStatement,
    pub stream_delete: PreparedStatement,
    pub name_insert: PreparedStatement,
    pub name_timed: PreparedStatement,
    pub name_delete: PreparedStatement,
    pub names_from: PreparedStatement,
    pub names_after: PreparedStatement,
    pub names_timed: PreparedStatement,
    /// A change hint: `slot`, `shard`, `at`, `sid`, `mark` (null: the stream is gone).
    pub hint_insert: PreparedStatement,
    /// The hints of a list of slots and a list of shards (every partition of the product)
    /// stamped at or after `?`, at most `?` rows.
    pub hints_since: PreparedStatement,
}

/// How a statement is run: a plain read or write at the configured consistency, a
/// conditional write (Paxos at LOCAL_SERIAL, committed at the configured consistency), or a
/// SERIAL read (which also completes any Paxos round in flight on the partition).
#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Lwt,
    Serial,
}

impl Statements {
    pub(crate) async fn prepare(session: &Session, config: &CassandraConfig) -> Result<Self> {
        let (ks, p) = (&config.keyspace, config.prefix());
        let log = format!("{ks}.{p}log");
        let streams = format!("{ks}.{p}streams");
        let names = format!("{ks}.{p}names");
        let changes = format!("{ks}.{p}changes");
        let cl = config.consistency;
        let prep = |cql: String, mode: Mode| async move {
            let mut ps = session
                .prepare(cql)
                .await
                .map_err(|e| parse_cassandra_error(e.into()))?;
            match mode {
                Mode::Plain => ps.set_consistency(cl),
                Mode::Lwt => {
                    ps.set_consistency(cl);
                    ps.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                }
                Mode::Serial => ps.set_consistency(Consistency::LocalSerial),
            }
            Ok::<_, streamstore::Error>(ps)
        };
        let head_select = format!("SELECT {HEAD_COLUMNS} FROM {log} WHERE {HEAD_ROW}");
        Ok(Statements {
            head: prep(head_select, Mode::Plain).await?,
            heads_in: prep(
                format!(
                    "SELECT sid, inc, bucket, {HEAD_COLUMNS} FROM {log} WHERE sid IN ? \
                     AND inc IN ? AND bucket IN ? AND kind = 0 AND off = 0 AND key = 0x00"
                ),
                Mode::Plain,
            )
            .await?,
            head_insert: prep(
                format!(
                    "INSERT INTO {log} (sid, inc, bucket, kind, off, key, {HEAD_COLUMNS}) \
                     VALUES (?, ?, ?, 0, 0, 0x00, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     IF NOT EXISTS"
                ),
                Mode::Lwt,
            )
            .await?,
            head_update: prep(
                format!(
                    "UPDATE {log} SET ver = ?, first = ?, next = ?, last_ts = ?, sealed = ?, \
                     closed = ?, moved_to = ?, bytes = ?, seal_ttl = ?, idle_ttl = ?, \
                     max_bytes = ?, closed_at = ? WHERE {HEAD_ROW} IF ver = ?"
                ),
                Mode::Lwt,
            )
            .await?,
            key: prep(
                format!(
                    "SELECT first, n, ts, digest FROM {log} WHERE sid = ? AND inc = ? \
                     AND bucket = ? AND kind = 1 AND off = 0 AND key = ?"
                ),
                Mode::Plain,
            )
            .await?,
            keys_all: prep(
                format!(
                    "SELECT key, first, n, ts, digest FROM {log} WHERE sid = ? AND inc = ? \
                     AND bucket = ? AND kind = 1"
                ),
                Mode::Plain,
            )
            .await?,
            key_insert: prep(
                format!(
                    "INSERT INTO {log} (sid, inc, bucket, kind, off, key, first, n, ts, digest) \
                     VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?, ?)"
                ),
                Mode::Plain,
            )
            .await?,
            record_insert: prep(
                format!(
                    "INSERT INTO {log} (sid, inc, bucket, kind, off, key, ts, len, payload, batch_id) \
                     VALUES (?, ?, ?, 2, ?, 0x00, ?, ?, ?, ?)"
                ),
                Mode::Plain,
            )
            .await?,
            record_batch_serial: prep(
                format!(
                    "SELECT batch_id FROM {log} WHERE sid = ? AND inc = ? AND bucket = ? \
                     AND kind = 2 AND off = ? AND key = 0x00"
                ),
                Mode::Serial,
            )
            .await?,
            records: prep(
                format!(
                    "SELECT off, ts, payload FROM {log} WHERE sid = ? AND inc = ? AND bucket = ? \
                     AND kind = 2 AND off >= ? AND off < ? LIMIT ?"
                ),
                Mode::Plain,
            )
            .await?,
            head_and_records: prep(
                format!(
                    "SELECT kind, off, ts, payload, {HEAD_COLUMNS} FROM {log} WHERE sid = ? \
                     AND inc = ? AND bucket = ? AND (kind, off) IN ?"
                ),
                Mode::Plain,
            )
            .await?,
            lens: prep(
                format!(
                    "SELECT off, len FROM {log} WHERE sid = ? AND inc = ? AND bucket = ? \
                     AND kind = 2 AND off >= ? AND off < ? LIMIT ?"
                ),
                Mode::Plain,
            )
            .await?,
            records_delete_below: prep(
                format!(
                    "DELETE FROM {log} WHERE sid = ? AND inc = ? AND bucket = ? AND kind = 2 \
                     AND off < ?"
                ),
                Mode::Plain,
            )
            .await?,
            body_delete: prep(
                format!("DELETE FROM {log} WHERE sid = ? AND inc = ? AND bucket = ? AND kind > 0"),
                Mode::Plain,
            )
            .await?,
            stream: prep(
                format!("SELECT inc, bucket FROM {streams} WHERE sid = ?"),
                Mode::Plain,
            )
            .await?,
            stream_insert: prep(
                format!(
                    "INSERT INTO {streams} (sid, inc, bucket) VALUES (?, ?, 0) IF NOT EXISTS"
                ),
                Mode::Lwt,
            )
            .await?,
            stream_move: prep(
                format!(
                    "UPDATE {streams} SET bucket = ? WHERE sid = ? IF inc = ? AND bucket < ?"
                ),
                Mode::Lwt,
            )
            .await?,
            stream_delete: prep(
                format!("DELETE FROM {streams} WHERE sid = ? IF inc = ?"),
                Mode::Lwt,
            )
            .await?,
            name_insert: prep(
                format!("INSERT INTO {names} (shard, sid) VALUES (?, ?) USING TIMESTAMP ?"),
                Mode::Plain,
            )
            .await?,
            name_timed: prep(
                format!("UPDATE {names} SET timed = ? WHERE shard = ? AND sid = ?"),
                Mode::Plain,
            )
            .await?,
            name_delete: prep(
                format!("DELETE FROM {names} USING TIMESTAMP ? WHERE shard = ? AND sid = ?"),
                Mode::Plain,
            )
            .await?,
            names_from: prep(
                format!("SELECT sid FROM {names} WHERE shard = ? AND sid >= ? LIMIT ?"),
                Mode::Plain,
            )
            .await?,
            names_after: prep(
                format!("SELECT sid FROM {names} WHERE shard = ? AND sid > ? LIMIT ?"),
                Mode::Plain,
            )
            .await?,
            names_timed: prep(
                format!("SELECT sid, timed FROM {names} WHERE shard = ?"),
                Mode::Plain,
            )
            .await?,
            hint_insert: prep(
                format!(
                    "INSERT INTO {changes} (slot, shard, at, sid, mark) VALUES (?, ?, ?, ?, ?)"
                ),
                Mode::Plain,
            )
            .await?,
            hints_since: prep(
                format!(
                    "SELECT at, sid, mark FROM {changes} WHERE slot IN ? AND shard IN ? \
                     AND at >= ? LIMIT ?"
                ),
                Mode::Plain,
            )
            .await?,
        })
    }
}
