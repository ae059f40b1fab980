//! H. Waiting reads: wake on append, on seal, on delete, on a stream created later; time out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamstore::{ErrorKind, ReadOptions};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{expect_kind, put, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("waits";
        wait_wakes_on_append,
        wait_wakes_on_seal,
        wait_on_a_stream_created_later,
        wait_times_out_empty,
        wait_returns_at_once_when_records_exist,
        wait_wakes_on_delete [Delete],
        wait_below_the_trim_point_is_trimmed [Trim],
    )
}

/// Long enough that a wake-up by timeout is unmistakable.
const LONG: Duration = Duration::from_secs(30);
/// A wake-up must come well before `LONG`; generous for polling backends on a loaded machine.
const PROMPT: Duration = Duration::from_secs(5);

fn spawn_wait(
    ctx: &Ctx,
    name: &str,
    from: u64,
) -> tokio::task::JoinHandle<(Duration, streamstore::Result<streamstore::ReadBatch>)> {
    let (store, id) = (Arc::clone(&ctx.store), ctx.id(name));
    tokio::spawn(async move {
        let started = Instant::now();
        let r = store
            .read(&id, from, ReadOptions::limit(100).wait(LONG))
            .await;
        (started.elapsed(), r)
    })
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn join(e: tokio::task::JoinError) -> Failure {
    Failure(format!("waiter panicked: {e}"))
}

async fn wait_wakes_on_append(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["old"]).await?;
    let waiter = spawn_wait(ctx, "s", 1);
    settle().await;
    put(&ctx.store, &id, &["new"]).await?;
    let (took, r) = waiter.await.map_err(join)?;
    let batch = r?;
    ensure!(took < PROMPT, "the waiter took {took:?} to see an append");
    ensure_eq!(texts(&batch.records), vec!["new"]);
    ensure_eq!(batch.records[0].offset, 1);
    Ok(())
}

async fn wait_wakes_on_seal(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let waiter = spawn_wait(ctx, "s", 1);
    settle().await;
    ctx.store.seal(&id).await?;
    let (took, r) = waiter.await.map_err(join)?;
    let batch = r?;
    ensure!(took < PROMPT, "the waiter took {took:?} to see the seal");
    ensure!(
        batch.records.is_empty() && batch.is_finished(),
        "waiter did not see the end: {batch:?}"
    );
    Ok(())
}

async fn wait_on_a_stream_created_later(ctx: &Ctx) -> Outcome {
    let waiter = spawn_wait(ctx, "later", 0);
    settle().await;
    put(&ctx.store, &ctx.id("later"), &["first"]).await?;
    let (took, r) = waiter.await.map_err(join)?;
    let batch = r?;
    ensure!(
        took < PROMPT,
        "the waiter took {took:?} to see the new stream"
    );
    ensure_eq!(texts(&batch.records), vec!["first"]);
    Ok(())
}

async fn wait_times_out_empty(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let batch = ctx
        .store
        .read(&id, 1, ReadOptions::limit(10).wait(wait))
        .await?;
    let took = started.elapsed();
    ensure!(batch.records.is_empty(), "records appeared from nowhere");
    ensure_eq!(batch.next_offset, 1);
    ensure!(
        took >= wait - Duration::from_millis(20),
        "returned after {took:?}, before the {wait:?} timeout"
    );
    ensure!(took < PROMPT, "a {wait:?} wait took {took:?}");
    Ok(())
}

async fn wait_returns_at_once_when_records_exist(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    let started = Instant::now();
    let batch = ctx
        .store
        .read(&id, 0, ReadOptions::limit(10).wait(LONG))
        .await?;
    ensure!(
        started.elapsed() < PROMPT,
        "waited although records existed"
    );
    ensure_eq!(texts(&batch.records), vec!["a", "b"]);
    Ok(())
}

async fn wait_wakes_on_delete(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let waiter = spawn_wait(ctx, "s", 1);
    settle().await;
    ctx.store.delete(&id).await?;
    let (took, r) = waiter.await.map_err(join)?;
    let batch = r?;
    ensure!(took < PROMPT, "the waiter took {took:?} to see the delete");
    ensure_eq!(batch.incarnation, None);
    Ok(())
}

async fn wait_below_the_trim_point_is_trimmed(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b", "c"]).await?;
    ctx.store.trim(&id, 2).await?;
    expect_kind(
        ctx.store
            .read(&id, 0, ReadOptions::limit(10).wait(LONG))
            .await,
        ErrorKind::Trimmed { first_available: 2 },
    )
}
