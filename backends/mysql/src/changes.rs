//! The change index of `<prefix>streams`: every head write stamps its row's `changed_us` with the
//! server's clock, so that the watcher of waiting reads asks only for the rows changed since its
//! last tick (one indexed range scan) instead of the heads of every waited-on stream.
//!
//! # Why the margin makes the index complete
//!
//! [`HeadSource::changes`] must report every change committed after the previous call started,
//! in that call's answer or a later one's. *Wide* calls do it alone: a wide call reads
//! `changed_us >= cursor - MARGIN_US`, where `cursor` is the server's clock when the previous
//! *wide* call's statement started (its read view, at READ COMMITTED, is created at the same
//! moment). Take a change committed after that moment:
//!
//! - Its stamp is the server's clock when its head-writing statement started (`UTC_TIMESTAMP(6)`
//!   is fixed per statement). One clock stamps every writer process, so clock skew between
//!   writers does not exist; only the server's clock stepping back could break the order.
//! - The stamp precedes the commit by the rest of the transaction: after the head write come at
//!   most the idempotency key's insert and prune, and the commit. So the stamp is later than
//!   `cursor - MARGIN_US` unless that rest took longer than [`MARGIN_US`].
//!
//! So the first wide call that starts after the commit reports it. Hence the only changes the
//! wide calls can miss are those of a transaction that took longer than the
//! margin from its head write to its commit (lock waits, a stalled server), of a server whose
//! clock stepped back by more than the margin, and of rows written by an older release of this
//! adapter (which does not stamp: its rows keep their old `changed_us`). The watcher's pass over
//! every waited-on stream every [`WatchOptions::full_pass`] finds those.
//!
//! Deletes leave no head row to stamp: each records its stream in `<prefix>deletions` with the
//! same stamp (`deleted_us`, in the delete's transaction), and a call reads those since the same
//! cursor, so a delete made through another store object is seen at the next tick, by the same
//! argument. An expiry writes nothing until the retention sweeper (of any store object, every
//! second) deletes the stream, which records it; an older release's deletes record nothing and
//! are found by the full pass. A stream listed both as deleted and with a head row was created
//! again after its delete (the creation stamps later than the delete): its head wins.
//!
//! # Narrow calls: the margin is not re-read every tick
//!
//! Re-reading the whole margin at every tick listed each change about eleven times (a 1 s
//! margin, a 100 ms tick): at W = 10,000 that cost the writers more server time than the
//! wake-ups' re-reads did (`docs/benchmarks.md`, issue 19). So a call is wide only when the
//! server's clock moved [`WIDE_EVERY_US`] since the last wide call (or there was none); the
//! calls in between are *narrow*: they read from the previous call's cursor minus
//! [`NARROW_US`], which covers a head write's transaction that commits within that time of its
//! stamp (all of them on a healthy server: the head write is the last write of an append). A
//! change that commits later is not lost: the next wide call, within [`WIDE_EVERY_US`], reports
//! it (above), so its wake-up is late by at most that. A change is listed by the narrow calls
//! of about `tick + NARROW_US` and by about two wide calls, instead of by every call of
//! `tick + MARGIN_US`.
//!
//! The rows are read by a join from the one-row table of the server's clock (always one row,
//! even with no change), which MariaDB runs as a range scan of the index without copying the
//! rows into a temporary table as it does for a `UNION`; the deletions are a second statement
//! over the same window, after the first (so it sees at least what the first saw). Each lists
//! at most [`MAX_CHANGES`] rows (more: the watcher reads every waited-on stream instead).
//!
//! [`HeadSource::changes`]: streamstore::implementor::wait::HeadSource::changes
//! [`WatchOptions::full_pass`]: streamstore::implementor::wait::WatchOptions::full_pass

use sqlx::{MySql, MySqlConnection, Row};
use streamstore::implementor::wait::Changes;
use streamstore::{Result, StreamId};
use streamstore_sql::{from_db, head_mark, id_of, Tables};

use crate::error::parse_mysql_error;

/// The server's clock in microseconds since the epoch, as of the start of the statement
/// (UTC, so no time-zone or daylight-saving step).
pub(crate) const SERVER_US: &str =
    "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))";

/// How far before the previous call's start a call reads (see the module docs): longer than a
/// head write's transaction normally takes from its head write to its commit, even on a loaded
/// server.
pub(crate) const MARGIN_US: u64 = 1_000_000;

/// How far before the previous call's start a narrow call reads (see the module docs).
pub(crate) const NARROW_US: u64 = 200_000;

/// A call is wide when the server's clock moved this much since the last wide call started: the
/// longest a change that committed more than [`NARROW_US`] after its stamp waits to be listed.
pub(crate) const WIDE_EVERY_US: u64 = 1_000_000;

/// Changed rows listed per call at most; beyond, the watcher reads every waited-on stream.
pub(crate) const MAX_CHANGES: usize = 4096;

/// One delete in this many also forgets old deletions (see [`KEEP_DELETIONS_US`]).
pub(crate) const PRUNE_EVERY: u32 = 64;

/// How long a deletion is remembered: far beyond any tick plus [`MARGIN_US`] (a watcher that
/// fell further behind reads every stream in its next full pass anyway).
pub(crate) const KEEP_DELETIONS_US: i64 = 600_000_000;

/// `<prefix>deletions`: the stream ids deleted recently, with the server's clock at the delete.
pub(crate) fn deletions_ddl(t: &Tables) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {0} (stream_id VARBINARY(512) NOT NULL PRIMARY KEY, \
         deleted_us BIGINT NOT NULL, KEY {0}_at (deleted_us)) ENGINE=InnoDB",
        t.deletions
    )
}

/// Records a delete of `?` (in the delete's transaction).
pub(crate) fn note_deletion_sql(t: &Tables) -> String {
    format!(
        "INSERT INTO {} (stream_id, deleted_us) VALUES (?, {SERVER_US}) \
         ON DUPLICATE KEY UPDATE deleted_us = VALUES(deleted_us)",
        t.deletions
    )
}

/// Forgets the deletions older than `?` microseconds.
pub(crate) fn prune_deletions_sql(t: &Tables) -> String {
    format!(
        "DELETE FROM {} WHERE deleted_us < {SERVER_US} - ?",
        t.deletions
    )
}

/// The column and its index, in `CREATE TABLE <prefix>streams`.
pub(crate) fn column_ddl(streams: &str) -> String {
    format!("changed_us BIGINT NOT NULL DEFAULT 0, KEY {streams}_changed (changed_us)")
}

/// Adds the column and its index to a `<prefix>streams` created by an older release (which
/// lacked them). Runs under the schema lock. Old rows keep `changed_us = 0`: never reported as
/// changed, they are found by the full pass until their next write.
pub(crate) async fn migrate(conn: &mut MySqlConnection, t: &Tables) -> Result<()> {
    let has: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'changed_us'",
    )
    .bind(t.streams.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(parse_mysql_error)?;
    if has == 0 {
        let sql = format!(
            "ALTER TABLE {0} ADD COLUMN changed_us BIGINT NOT NULL DEFAULT 0, \
             ADD KEY {0}_changed (changed_us)",
            t.streams
        );
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .map_err(parse_mysql_error)?;
    }
    Ok(())
}

/// The first statement of a call: the server's clock (always one row, even with no change) and
/// the rows changed since `?` (at most `?` rows in all). A join from the one-row table, not a
/// `UNION`: MariaDB copies a union's rows into a temporary table.
pub(crate) fn changes_sql(t: &Tables) -> String {
    format!(
        "SELECT n.now_us, c.stream_id, c.incarnation, c.next_offset, c.sealed_ms, c.expires_ms \
         FROM (SELECT {SERVER_US} AS now_us) n LEFT JOIN {} c ON c.changed_us >= ? LIMIT ?",
        t.streams
    )
}

/// The second statement of a call: the streams deleted since `?` (at most `?`).
pub(crate) fn deleted_sql(t: &Tables) -> String {
    format!(
        "SELECT stream_id FROM {} WHERE deleted_us >= ? LIMIT ?",
        t.deletions
    )
}

/// Where a call reads from (a stamp in the server's microseconds) and whether it is wide, given
/// the previous call's cursor `since` and the cursor of the last wide call (see the module
/// docs). A clock that stepped back since the last wide call makes the call wide.
pub(crate) fn window(since: u64, last_wide: Option<u64>) -> (u64, bool) {
    match last_wide {
        Some(w) if since >= w && since - w < WIDE_EVERY_US => {
            (since.saturating_sub(NARROW_US), false)
        }
        Some(w) => (w.min(since).saturating_sub(MARGIN_US), true),
        None => (since.saturating_sub(MARGIN_US), true),
    }
}

fn db<T>(r: std::result::Result<T, sqlx::Error>) -> Result<T> {
    r.map_err(parse_mysql_error)
}

/// Runs [`changes_sql`] and [`deleted_sql`] (`sql`) since `since` on `pool`, from the window
/// [`window`] gives with the last wide call's cursor in `last_wide` (updated after a wide call
/// that succeeded); marks are `None` for streams expired at `now_ms`.
pub(crate) async fn read_changes(
    pool: &sqlx::Pool<MySql>,
    sql: (&str, &str),
    last_wide: &std::sync::Mutex<Option<u64>>,
    since: Option<u64>,
    now_ms: u64,
) -> Result<Changes> {
    let lock = || {
        last_wide
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    // The first call lists nothing (the watcher reads every stream after it): only the cursor,
    // which the next wide call reads from (minus the margin).
    let (from, wide) = match since {
        Some(c) => window(c, *lock()),
        None => (u64::MAX, true),
    };
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    // One row more than listed: the clock's row when nothing changed, else the overflow sign.
    let limit = i64::try_from(MAX_CHANGES + 1).unwrap_or(i64::MAX);
    let rows = db(sqlx::query(sql.0)
        .bind(from)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    let gone = db(sqlx::query_scalar::<_, Vec<u8>>(sql.1)
        .bind(from)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    let cursor = match rows.first() {
        Some(r) => from_db(db(r.try_get::<i64, _>(0))?)?,
        None => {
            return Err(streamstore::Error::new(
                streamstore::ErrorKind::Internal,
                "the change query returned no row",
            ))
        }
    };
    let mut marks: Vec<(StreamId, Option<u64>)> = Vec::with_capacity(rows.len() + gone.len());
    let deleted = gone
        .iter()
        .map(|id| id_of(id))
        .collect::<Result<Vec<_>>>()?;
    for r in &rows {
        let Some(id) = db(r.try_get::<Option<Vec<u8>>, _>(1))? else {
            continue;
        };
        let incarnation: i64 = db(r.try_get(2))?;
        let next_offset: i64 = db(r.try_get(3))?;
        let sealed_ms: Option<i64> = db(r.try_get(4))?;
        let expires_ms: Option<i64> = db(r.try_get(5))?;
        let expired = expires_ms.is_some_and(|e| u64::try_from(e).is_ok_and(|e| e <= now_ms));
        let mark = (!expired).then(|| head_mark(incarnation, next_offset, sealed_ms.is_some()));
        marks.push((id_of(&id)?, mark));
    }
    // A stream deleted and created again since the cursor has a head row: it wins.
    let live: std::collections::HashSet<StreamId> = marks.iter().map(|(s, _)| s.clone()).collect();
    marks.extend(
        deleted
            .into_iter()
            .filter(|s| !live.contains(s))
            .map(|s| (s, None)),
    );
    let listed = rows.len() <= MAX_CHANGES && gone.len() <= MAX_CHANGES;
    if wide {
        *lock() = Some(cursor);
    }
    Ok(Changes {
        cursor,
        marks: listed.then_some(marks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_between_wide_ones_read_only_the_narrow_margin() {
        let s = 10_000_000;
        // No wide call yet: the whole margin.
        assert_eq!(window(s, None), (s - MARGIN_US, true));
        // A wide call 300 ms ago: narrow, from the previous call's cursor minus NARROW_US.
        assert_eq!(window(s, Some(s - 300_000)), (s - NARROW_US, false));
        assert_eq!(window(s, Some(s)), (s - NARROW_US, false));
        // WIDE_EVERY_US since the last wide call: wide, from that call's cursor minus the margin
        // (so it covers what the narrow calls since could have missed).
        let w = s - WIDE_EVERY_US;
        assert_eq!(window(s, Some(w)), (w - MARGIN_US, true));
        assert_eq!(window(s, Some(w - 5)), (w - 5 - MARGIN_US, true));
        // The clock stepped back: wide, from the earlier of the two.
        assert_eq!(window(s, Some(s + 1)), (s - MARGIN_US, true));
        assert_eq!(window(5, Some(9)), (0, true));
    }
}
