//! Notifications against the server at `STREAMSTORE_POSTGRES_URL` (each test prints SKIPPED and
//! passes without it).

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep_postgres::{PostgresStore, URL_ENV};
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};

/// `url` with the watcher's safety net at `ms`.
fn with_push_tick(url: &str, ms: u64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}push_tick_ms={ms}")
}

/// The notify sender's backend is terminated between two writes: the next write's notification
/// fails on the dead connection, and must be sent again on a new one. A reader on another store
/// object (another process, as far as the server can tell) is then woken by it, not by the
/// watcher's safety net, which is set to a minute here so that only the resent notification can
/// wake the reader within the bound (without the resend the reader slept until its net: 23 s
/// with the 30 s default).
#[tokio::test]
async fn a_failed_notify_is_sent_again() {
    let Some(url) = streamstore_adapter_testing::cases::url(URL_ENV, "postgres") else {
        return;
    };
    let url = with_push_tick(&url, 60_000);
    let p = streamstore_adapter_testing::cases::prefix("renotify");
    let writer = PostgresStore::connect(&url, &p).await.unwrap();
    let reader = std::sync::Arc::new(PostgresStore::connect(&url, &p).await.unwrap());
    let s = StreamId::new("renotify/s").unwrap();
    writer
        .append(&s, vec![Bytes::from("0")], AppendOptions::default())
        .await
        .unwrap();
    // The sender connects on the first write; its pid is known once it has.
    let started = Instant::now();
    let pid = loop {
        let pid = writer.notify_sender_pid();
        if pid != 0 {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no notify connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wait = tokio::spawn({
        let (reader, s) = (reader.clone(), s.clone());
        async move {
            let b = reader
                .read(&s, 1, ReadOptions::default().wait(Duration::from_secs(40)))
                .await
                .unwrap();
            (Instant::now(), b)
        }
    });
    // The reader's listener is up and listens on the stream's channel (its watcher's head read
    // waits for that); its watcher then polls only every minute.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(i32::try_from(pid).unwrap())
        .fetch_one(writer.pool())
        .await
        .unwrap();
    assert!(killed, "no backend {pid} to terminate");
    // Gone from the server before the write, so the write's notification meets a dead connection.
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(i32::try_from(pid).unwrap())
            .fetch_one(writer.pool())
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "backend {pid} lives on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let appended = Instant::now();
    writer
        .append(&s, vec![Bytes::from("1")], AppendOptions::default())
        .await
        .unwrap();
    let (woke, batch) = wait.await.unwrap();
    let took = woke.saturating_duration_since(appended);
    assert_eq!(
        batch.records.len(),
        1,
        "the waiting read returned {batch:?}"
    );
    // A reconnect and a resend take milliseconds; the bound is loose for a loaded CI machine and
    // far below the one-minute net that wakes the reader without the resend.
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
    let new_pid = writer.notify_sender_pid();
    assert!(
        new_pid != 0 && new_pid != pid,
        "sender pid {new_pid} after {pid}"
    );
    println!("woken {took:?} after the append whose first send failed");
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    PostgresStore::destroy(&url, &p).await.unwrap();
}
