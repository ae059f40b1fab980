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
//! notification sees the write. A send that failed (the connection broke, the server restarted,
//! its backend was terminated) puts its streams back in the outbox; they go out, with whatever
//! was queued meanwhile, on the next connection (at once, then every [`RECONNECT_PAUSE`] while
//! connecting fails). A send whose reply was lost may so be delivered twice: a notification is a
//! hint, and a reader woken for nothing reads again and waits again. So the only notifications
//! lost are those of a process that died between its commit and its send, and a send the
//! server refused (which sending again would not change); the watcher's safety net
//! (`push_tick_ms`, [`DEFAULT_PUSH_TICK`](crate::config::DEFAULT_PUSH_TICK)) covers those.

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

    /// Queues `streams` again after their send failed, and wakes the sender to retry. The queue
    /// stays a set: it holds each stream once, however often its sends failed.
    fn requeue(&self, streams: Vec<StreamId>) {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(streams);
        self.wake.notify_one();
    }

    /// Backend process id of the notify connection (0: none now).
    pub(crate) fn sender_pid(&self) -> u32 {
        self.sender_pid.load(Ordering::Relaxed)
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
                    // Kept for the next attempt, after a pause (the server may be restarting).
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    outbox.requeue(streams);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            outbox.requeue(streams);
            continue;
        };
        let channels: Vec<String> = streams.iter().map(|s| subs.channel_of(s)).collect();
        let payloads: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let sent =
            sqlx::query("SELECT pg_notify(c, s) FROM UNNEST($1::TEXT[], $2::TEXT[]) AS t(c, s)")
                .bind(&channels)
                .bind(&payloads)
                .execute(&mut *c)
                .await;
        if let Err(e) = sent {
            outbox.sender_pid.store(0, Ordering::Relaxed);
            conn = None;
            // Sent again, at once, on a new connection, when the connection was the problem. A
            // statement the server refused for what it says would be refused again: resending
            // it would block every later notification behind it.
            if connection_lost(&e) {
                outbox.requeue(streams);
            }
        }
    }
}

/// Whether `e` says the connection failed (I/O, protocol, pool, or the server's "admin shutdown"
/// and "connection exception" classes, `57P..` and `08...`) rather than that the server refused
/// the statement.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
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
