//! H. Followers learn of a delete (or a new incarnation) at once: a waiting read and a
//! subscription parked when a delete is made through the same store object end within 100 ms of
//! it; one that starts after the delete returns after one read (100 ms plus twice a plain read's
//! measured round trip), never after a wait or a poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use streamstore::{ErrorKind, ReadOptions, StreamStoreExt, SubscribeOptions};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{put, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("follow";
        a_parked_wait_sees_a_delete_within_100ms [Delete],
        a_wait_started_after_a_delete_returns_at_once [Delete],
        a_wait_on_an_old_incarnation_returns_at_once [Delete],
        a_parked_subscription_sees_a_delete_within_100ms [Delete],
        a_subscription_resumed_after_a_delete_ends_at_once [Delete],
    )
}

/// What "at once" means here: the bound, measured from the end of the `delete` call.
const AT_ONCE: Duration = Duration::from_millis(100);
/// Long enough that ending by timeout or by a poll is unmistakable.
const LONG: Duration = Duration::from_secs(30);

/// How long after `since` the follower finished (zero if it finished before).
fn after(done: Instant, since: Instant) -> Duration {
    done.saturating_duration_since(since)
}

/// What a wait that starts after the change may take: "at once" plus twice a plain read's round
/// trip to the server, measured just before (a wait that returns at once still reads once; on a
/// loaded machine a database round trip alone can exceed 100 ms).
async fn read_bound(ctx: &Ctx, id: &streamstore::StreamId) -> Result<Duration, Failure> {
    let started = Instant::now();
    ctx.store.read(id, 0, ReadOptions::limit(1)).await?;
    Ok(AT_ONCE + 2 * started.elapsed())
}

fn join(e: tokio::task::JoinError) -> Failure {
    Failure(format!("follower panicked: {e}"))
}

async fn a_parked_wait_sees_a_delete_within_100ms(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let (store, wid) = (Arc::clone(&ctx.store), id.clone());
    let waiter = tokio::spawn(async move {
        let r = store.read(&wid, 1, ReadOptions::limit(10).wait(LONG)).await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    ctx.store.delete(&id).await?;
    let deleted = Instant::now();
    let (done, r) = waiter.await.map_err(join)?;
    let batch = r?;
    let took = after(done, deleted);
    ensure!(
        took < AT_ONCE,
        "the waiting read saw the delete after {took:?}"
    );
    ensure_eq!(batch.incarnation, None);
    ensure!(
        batch.is_finished(),
        "a follower of a deleted stream is not finished: {batch:?}"
    );
    Ok(())
}

async fn a_wait_started_after_a_delete_returns_at_once(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    ctx.store.delete(&id).await?;
    let bound = read_bound(ctx, &id).await?;
    // A follower that had read both records comes back for more.
    let started = Instant::now();
    let batch = ctx
        .store
        .read(&id, 2, ReadOptions::limit(10).wait(LONG))
        .await?;
    let took = started.elapsed();
    ensure!(
        took < bound,
        "a wait after the delete took {took:?} (bound {bound:?})"
    );
    ensure_eq!(batch.incarnation, None);
    ensure!(
        batch.is_finished(),
        "not finished after a delete: {batch:?}"
    );
    Ok(())
}

async fn a_wait_on_an_old_incarnation_returns_at_once(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let old = put(&ctx.store, &id, &["a", "b"]).await?.incarnation;
    ctx.store.delete(&id).await?;
    let new = put(&ctx.store, &id, &["other life"]).await?.incarnation;
    ensure!(new != old, "a re-created stream kept its incarnation");
    let bound = read_bound(ctx, &id).await?;
    // Offset 2 does not exist in the new life: without the incarnation this would wait.
    let started = Instant::now();
    let batch = ctx
        .store
        .read(
            &id,
            2,
            ReadOptions::limit(10).wait(LONG).incarnation(Some(old)),
        )
        .await?;
    let took = started.elapsed();
    ensure!(
        took < bound,
        "a wait on the old incarnation took {took:?} (bound {bound:?})"
    );
    ensure_eq!(batch.incarnation, Some(new));
    Ok(())
}

fn opts() -> SubscribeOptions {
    // A long poll: only a prompt wake-up, never a poll, can pass these cases.
    SubscribeOptions::default().batch(10).poll(LONG)
}

async fn a_parked_subscription_sees_a_delete_within_100ms(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let mut sub = ctx.store.subscribe(&id, 0, opts());
    let first = sub
        .next()
        .await
        .ok_or_else(|| Failure("no first record".into()))??;
    ensure_eq!(first.offset, 0);
    let follower = tokio::spawn(async move {
        let next = sub.next().await;
        (Instant::now(), next)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    ctx.store.delete(&id).await?;
    let deleted = Instant::now();
    let (done, next) = tokio::time::timeout(LONG, follower)
        .await
        .map_err(|_| Failure("the subscription did not notice the delete".into()))?
        .map_err(join)?;
    let took = after(done, deleted);
    ensure!(
        took < AT_ONCE,
        "the subscription saw the delete after {took:?}"
    );
    match next {
        Some(Err(e)) => ensure_eq!(e.kind(), ErrorKind::NotFound),
        other => {
            return Err(Failure(format!(
                "expected NotFound after the delete, got {other:?}"
            )))
        }
    }
    Ok(())
}

async fn a_subscription_resumed_after_a_delete_ends_at_once(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    let mut sub = ctx.store.subscribe(&id, 0, opts());
    // The first read fetched both records; the delete happens while the consumer is busy.
    let first = sub
        .next()
        .await
        .ok_or_else(|| Failure("no first record".into()))??;
    ensure_eq!(first.offset, 0);
    ctx.store.delete(&id).await?;
    put(&ctx.store, &id, &["other life"]).await?;
    let bound = read_bound(ctx, &id).await?;
    let started = Instant::now();
    let mut rest = Vec::new();
    while let Some(item) = tokio::time::timeout(LONG, sub.next())
        .await
        .map_err(|_| Failure("the subscription did not notice the delete".into()))?
    {
        rest.push(item.map(|r| r.offset).map_err(|e| e.kind()));
    }
    let took = started.elapsed();
    ensure!(
        took < bound,
        "the subscription took {took:?} to notice the delete (bound {bound:?})"
    );
    // Record 1 was fetched before the delete and may be delivered; then NotFound, then the end.
    ensure!(
        rest == vec![Err(ErrorKind::NotFound)] || rest == vec![Ok(1), Err(ErrorKind::NotFound)],
        "expected [1?, NotFound] after the delete, got {rest:?}"
    );
    Ok(())
}
