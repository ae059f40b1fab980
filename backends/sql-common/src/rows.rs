//! Rows to and from the driver, written once over `sqlx::Database`: the head row's columns, an
//! idempotency key row, a record, and stream ids as bytes; and the schema's creation and removal. Each helper takes the adapter's
//! error mapping (`parse_<db>_error`).

use bytes::Bytes;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use streamstore::{Error, Record, Result, StreamId};

use crate::model::{from_db, HeadColumns, HeadRow, KeyRow, SCHEMA_VERSION};
use crate::prefix::TablePrefix;

/// Maps a driver error with the adapter's `parse_<db>_error`.
pub type MapError = fn(sqlx::Error) -> Error;

/// A stream id as the bytes bound to `stream_id` columns.
pub fn sid(stream: &StreamId) -> &[u8] {
    stream.as_str().as_bytes()
}

/// A stream id read back from a `stream_id` column; invalid bytes are `Corruption`.
pub fn id_of(bytes: &[u8]) -> Result<StreamId> {
    StreamId::from_bytes(bytes).map_err(|e| {
        Error::new(
            streamstore::ErrorKind::Corruption,
            "a stored stream id is invalid",
        )
        .with_source(e)
    })
}

/// A head row selected as the columns of [`HeadColumns`], in order.
pub fn head_of<R>(row: &R, map_error: MapError) -> Result<HeadRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let db = |r: std::result::Result<_, sqlx::Error>| r.map_err(map_error);
    HeadRow::from_columns(HeadColumns {
        incarnation: db(row.try_get(0))?,
        first_offset: db(row.try_get(1))?,
        next_offset: db(row.try_get(2))?,
        created_ms: db(row.try_get(3))?,
        last_append_ms: db(row.try_get(4))?,
        sealed_ms: row.try_get(5).map_err(map_error)?,
        bytes: db(row.try_get(6))?,
        seal_ttl_ms: row.try_get(7).map_err(map_error)?,
        idle_ttl_ms: row.try_get(8).map_err(map_error)?,
        max_bytes: row.try_get(9).map_err(map_error)?,
        key_count: db(row.try_get(10))?,
        expires_ms: None,
    })
}

/// A row of the [`HeadColumns`] followed by `stream_id`.
pub fn id_head_of<R>(row: &R, map_error: MapError) -> Result<(StreamId, HeadRow)>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let id: Vec<u8> = row.try_get(12).map_err(map_error)?;
    Ok((id_of(&id)?, head_of(row, map_error)?))
}

/// A row of `stream_id, incarnation, next_offset, sealed_ms` as a stream and its
/// [`head_mark`](crate::head_mark).
pub fn mark_of<R>(row: &R, map_error: MapError) -> Result<(StreamId, u64)>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let id: Vec<u8> = row.try_get(0).map_err(map_error)?;
    let incarnation: i64 = row.try_get(1).map_err(map_error)?;
    let next_offset: i64 = row.try_get(2).map_err(map_error)?;
    let sealed_ms: Option<i64> = row.try_get(3).map_err(map_error)?;
    Ok((
        id_of(&id)?,
        crate::model::head_mark(incarnation, next_offset, sealed_ms.is_some()),
    ))
}

/// Binds a head row's columns in [`HeadColumns`] order.
pub fn bind_head<'q, DB>(
    q: Query<'q, DB, DB::Arguments<'q>>,
    c: HeadColumns,
) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB>,
{
    q.bind(c.incarnation)
        .bind(c.first_offset)
        .bind(c.next_offset)
        .bind(c.created_ms)
        .bind(c.last_append_ms)
        .bind(c.sealed_ms)
        .bind(c.bytes)
        .bind(c.seal_ttl_ms)
        .bind(c.idle_ttl_ms)
        .bind(c.max_bytes)
        .bind(c.key_count)
        .bind(c.expires_ms)
}

/// A key row selected as `incarnation, first_offset, count, ts_ms, digest`.
pub fn key_of<R>(row: &R, map_error: MapError) -> Result<KeyRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let db = |r: std::result::Result<i64, sqlx::Error>| r.map_err(map_error);
    KeyRow::from_columns(
        db(row.try_get(0))?,
        db(row.try_get(1))?,
        db(row.try_get(2))?,
        db(row.try_get(3))?,
        db(row.try_get(4))?,
    )
}

/// A record selected as `off, ts_ms, payload`.
pub fn record_of<R>(row: &R, map_error: MapError) -> Result<Record>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let db = |r: std::result::Result<i64, sqlx::Error>| r.map_err(map_error);
    Ok(Record {
        offset: from_db(db(row.try_get(0))?)?,
        timestamp_ms: from_db(db(row.try_get(1))?)?,
        payload: Bytes::from(row.try_get::<Vec<u8>, _>(2).map_err(map_error)?),
    })
}

/// Runs the schema statements `ddl` of `prefix` on `conn` (under the adapter's schema lock),
/// then reads the schema version from `<prefix>meta` and refuses tables of a newer one.
pub async fn create_schema<DB>(
    conn: &mut DB::Connection,
    prefix: &TablePrefix,
    ddl: &[String],
    map_error: MapError,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Type<DB> + for<'r> Decode<'r, DB>,
{
    for stmt in ddl {
        (&mut *conn)
            .execute(stmt.as_str())
            .await
            .map_err(map_error)?;
    }
    let sql = format!(
        "SELECT value FROM {} WHERE name = 'schema_version'",
        prefix.tables().meta
    );
    let version: i64 = sqlx::query_scalar(&sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_error)?;
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            streamstore::ErrorKind::Internal,
            format!(
                "tables {prefix:?} have schema version {version}; this build knows up to {SCHEMA_VERSION}"
            ),
        ));
    }
    Ok(())
}

/// Drops every table of `prefix` on `conn` (under the adapter's schema lock).
pub async fn drop_tables<DB>(
    conn: &mut DB::Connection,
    prefix: &TablePrefix,
    map_error: MapError,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    for table in prefix.tables().all() {
        (&mut *conn)
            .execute(format!("DROP TABLE IF EXISTS {table}").as_str())
            .await
            .map_err(map_error)?;
    }
    Ok(())
}
