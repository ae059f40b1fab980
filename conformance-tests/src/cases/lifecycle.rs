//! J. Lifecycle: close, use after close, reopen.

use std::sync::Arc;
use std::time::Duration;

use streamstore::{AppendOptions, ErrorKind, Expect, IdempotencyKey, ListOptions, ReadOptions};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{batch, expect_kind, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("lifecycle";
        calls_after_close_fail_with_closed,
        close_wakes_waiting_readers,
        reads_in_flight_at_close_fail_with_closed,
        store_is_shareable_across_tasks,
        reopen_preserves_streams [Persistent],
        reopen_never_reuses_offsets [Persistent, Trim],
        reopen_remembers_idempotency_keys [Persistent, Idempotency],
    )
}

async fn calls_after_close_fail_with_closed(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let id = ctx.id("s");
    put(&store, &id, &["a"]).await?;
    store.close().await?;
    store.close().await?;
    expect_kind(
        store
            .append(&id, batch(&["b"]), AppendOptions::default())
            .await,
        ErrorKind::Closed,
    )?;
    expect_kind(
        store.read(&id, 0, ReadOptions::default()).await,
        ErrorKind::Closed,
    )?;
    expect_kind(store.info(&id).await, ErrorKind::Closed)?;
    expect_kind(store.seal(&id).await, ErrorKind::Closed)?;
    expect_kind(store.list(ListOptions::default()).await, ErrorKind::Closed)?;
    Ok(())
}

async fn close_wakes_waiting_readers(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let id = ctx.id("s");
    put(&store, &id, &["a"]).await?;
    let waiter = {
        let (store, id) = (Arc::clone(&store), id.clone());
        tokio::spawn(async move {
            store
                .read(&id, 1, ReadOptions::limit(1).wait(Duration::from_secs(60)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.close().await?;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .map_err(|_| Failure("a waiting reader was not woken by close".into()))?
        .map_err(|e| Failure(e.to_string()))?;
    expect_kind(r, ErrorKind::Closed)
}

/// Close lands while reads run: plain reads and short waiting reads in a loop on several tasks.
/// Each loop ends with `Closed`, never with whatever the shut-down connections, pools or
/// threads underneath say (a read changes nothing, so nothing is left unknown).
async fn reads_in_flight_at_close_fail_with_closed(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let id = ctx.id("s");
    put(&store, &id, &["a", "b"]).await?;
    let readers: Vec<_> = (0..8u64)
        .map(|i| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                loop {
                    let options = if i % 2 == 0 {
                        ReadOptions::limit(2)
                    } else {
                        ReadOptions::limit(1).wait(Duration::from_millis(20))
                    };
                    match store.read(&id, i % 3, options).await {
                        Ok(_) => reads += 1,
                        Err(e) => return (reads, e),
                    }
                    // An in-memory read never yields; without this, eight loops would hold
                    // every worker and close would never run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.close().await?;
    for reader in readers {
        let (reads, e) = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .map_err(|_| Failure("a reader did not end after close".into()))?
            .map_err(|e| Failure(e.to_string()))?;
        ensure!(
            e.kind() == ErrorKind::Closed,
            "after {reads} reads: expected Closed, got {e} ({:?})",
            e.kind()
        );
    }
    Ok(())
}

async fn store_is_shareable_across_tasks(ctx: &Ctx) -> Outcome {
    fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
    assert_send_sync(&ctx.store);
    let id = ctx.id("s");
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (store, id) = (Arc::clone(&ctx.store), ctx.id(&format!("t{i}")));
            tokio::spawn(async move {
                store
                    .append(&id, batch(&["x"]), AppendOptions::default())
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| Failure(e.to_string()))??;
    }
    put(&ctx.store, &id, &["done"]).await?;
    Ok(())
}

async fn reopen_preserves_streams(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let (a, b, c) = (ctx.id("a"), ctx.id("b"), ctx.id("c"));
    put(&store, &a, &["a0", "a1", "a2"]).await?;
    put(&store, &b, &["b0"]).await?;
    store.seal(&b).await?;
    put(&store, &c, &["gone"]).await?;
    store.delete(&c).await?;
    let before = (store.info(&a).await?, store.info(&b).await?);
    store.close().await?;
    let store = ctx.open_own().await?;
    ensure_eq!(store.info(&a).await?, before.0);
    ensure_eq!(store.info(&b).await?, before.1);
    expect_kind(store.info(&c).await, ErrorKind::NotFound)?;
    ensure_eq!(
        texts(&read_all(&store, &a, 0).await?),
        vec!["a0", "a1", "a2"]
    );
    expect_kind(
        store
            .append(&b, batch(&["x"]), AppendOptions::default())
            .await,
        ErrorKind::Sealed,
    )?;
    let r = store
        .append(&a, batch(&["a3"]), AppendOptions::expect(Expect::Next(3)))
        .await?;
    ensure_eq!(r.incarnation, before.0.incarnation);
    store.close().await?;
    Ok(())
}

async fn reopen_never_reuses_offsets(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let id = ctx.id("s");
    put(&store, &id, &["a", "b", "c"]).await?;
    store.trim(&id, 3).await?;
    store.close().await?;
    let store = ctx.open_own().await?;
    let info = store.info(&id).await?;
    ensure_eq!((info.first_offset, info.next_offset), (3, 3));
    let r = put(&store, &id, &["d"]).await?;
    ensure_eq!(r.first_offset, 3);
    ensure!(
        read_all(&store, &id, 3).await?.len() == 1,
        "trimmed records came back"
    );
    store.close().await?;
    Ok(())
}

async fn reopen_remembers_idempotency_keys(ctx: &Ctx) -> Outcome {
    let store = ctx.open_own().await?;
    let id = ctx.id("s");
    let key = IdempotencyKey::new(&b"retry-me"[..])?;
    let first = store
        .append(
            &id,
            batch(&["once"]),
            AppendOptions::default().with_key(key.clone()),
        )
        .await?;
    store.close().await?;
    let store = ctx.open_own().await?;
    let again = store
        .append(
            &id,
            batch(&["once"]),
            AppendOptions::default().with_key(key),
        )
        .await?;
    ensure_eq!(again, first);
    ensure_eq!(texts(&read_all(&store, &id, 0).await?), vec!["once"]);
    store.close().await?;
    Ok(())
}
