//! Cross-process wake-ups: `NOTIFY` after the commit, never inside the writing transaction.
//!
//! A `NOTIFY` in a transaction makes its commit take a cluster-wide lock (`PreCommit_Notify` in
//! PostgreSQL's `async.c` locks "database 0" until after the commit's WAL flush), so every
//! notifying transaction on the cluster commits one at a time: with 16 concurrent appenders,
//! 5–6× fewer commits per second (see `docs/benchmarks.md`). So writes only queue the stream in
//! an [`Outbox`] once they committed, and one task per store sends what is queued on a
//! connection of its own: one `pg_notify` per stream, on the channel of the stream's shard (see
//! `shards`), all streams queued since its last send in one statement, at most one such transaction per [`COALESCE`], each with
//! `synchronous_commit = off` (a notification is a wake-up hint: it need not survive a crash).
//!
//! Because a stream is queued only after its write committed, a reader woken by the
//! notification sees the write. Notifications lost with the connection are not resent: the
//! waiting readers' polling covers them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use streamstore::StreamId;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::shards::Subscriptions;

/// Shortest time between two notify transactions of one store: the streams changed meanwhile
/// go out together.
const COALESCE: Duration = Duration::from_millis(1);

/// Pause before connecting again after the notify connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Streams changed by committed writes, waiting to be announced.
#[derive(Default)]
pub(crate) struct Outbox {
    streams: Mutex<HashSet<StreamId>>,
    wake: Notify,
    /// Backend process id of the notify connection (0: none yet). The store's own listener
    /// skips these notifications: this process's readers were already woken directly.
    sender_pid: AtomicU32,
}

impl Outbox {
    /// Queues a wake-up for `stream` (whose change has committed). Never waits.
    pub(crate) fn push(&self, stream: &StreamId) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if !streams.contains(stream) {
            streams.insert(stream.clone());
        }
        drop(streams);
        self.wake.notify_one();
    }

    /// The queued streams, emptying the queue.
    fn take(&self) -> Vec<StreamId> {
        let streams =
            std::mem::take(&mut *self.streams.lock().unwrap_or_else(PoisonError::into_inner));
        streams.into_iter().collect()
    }

    /// Whether a notification with this sender was sent by this store.
    pub(crate) fn sent_by_us(&self, pid: u32) -> bool {
        pid != 0 && self.sender_pid.load(Ordering::Relaxed) == pid
    }
}

/// Sends the outbox's streams as `NOTIFY`s, each on its shard's channel, until aborted.
pub(crate) async fn send_loop(
    connect: PgConnectOptions,
    subs: Arc<Subscriptions>,
    outbox: Arc<Outbox>,
) {
    let mut conn: Option<PgConnection> = None;
    let mut last = Instant::now();
    loop {
        outbox.wake.notified().await;
        tokio::time::sleep_until(last + COALESCE).await;
        let streams = outbox.take();
        if streams.is_empty() {
            continue;
        }
        last = Instant::now();
        if conn.is_none() {
            match open(&connect).await {
                Ok((c, pid)) => {
                    outbox.sender_pid.store(pid, Ordering::Relaxed);
                    conn = Some(c);
                }
                Err(_) => {
                    // These hints are lost; the readers' polling covers them.
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let channels: Vec<String> = streams.iter().map(|s| subs.channel_of(s)).collect();
        let payloads: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let sent =
            sqlx::query("SELECT pg_notify(c, s) FROM UNNEST($1::TEXT[], $2::TEXT[]) AS t(c, s)")
                .bind(&channels)
                .bind(&payloads)
                .execute(&mut *c)
                .await;
        if sent.is_err() {
            outbox.sender_pid.store(0, Ordering::Relaxed);
            conn = None;
        }
    }
}

/// A connection for notifications: commits without waiting for the WAL flush; and its backend
/// pid.
async fn open(connect: &PgConnectOptions) -> sqlx::Result<(PgConnection, u32)> {
    let mut conn = PgConnection::connect_with(connect).await?;
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    Ok((conn, u32::try_from(pid).unwrap_or(0)))
}
