//! H. Subscriptions (`StreamStoreExt::subscribe`): history, then live records, until the seal.

use std::time::Duration;

use futures::StreamExt;
use streamstore::{ErrorKind, StreamStoreExt, SubscribeOptions};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{put, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("subscribe";
        follows_history_then_live_records_until_sealed,
        starts_at_an_offset,
        starts_before_the_stream_exists,
        several_subscribers_see_the_same_records,
        ends_with_an_error_when_the_stream_is_deleted [Delete],
    )
}

fn opts() -> SubscribeOptions {
    SubscribeOptions::default()
        .batch(3)
        .poll(Duration::from_secs(2))
}

async fn collect(
    sub: futures::stream::BoxStream<'static, streamstore::Result<streamstore::Record>>,
) -> Result<Vec<(u64, String)>, Failure> {
    let all = tokio::time::timeout(Duration::from_secs(60), sub.collect::<Vec<_>>())
        .await
        .map_err(|_| Failure("subscription did not end after the seal".into()))?;
    all.into_iter()
        .map(|r| {
            r.map(|r| (r.offset, String::from_utf8_lossy(&r.payload).into_owned()))
                .map_err(Failure::from)
        })
        .collect()
}

async fn follows_history_then_live_records_until_sealed(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["h0", "h1", "h2", "h3"]).await?;
    let sub = ctx.store.subscribe(&id, 0, opts());
    let task = tokio::spawn(collect(sub));
    tokio::time::sleep(Duration::from_millis(100)).await;
    put(&ctx.store, &id, &["l4"]).await?;
    put(&ctx.store, &id, &["l5", "l6"]).await?;
    ctx.store.seal(&id).await?;
    let got = task.await.map_err(|e| Failure(e.to_string()))??;
    let expected: Vec<(u64, String)> = ["h0", "h1", "h2", "h3", "l4", "l5", "l6"]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, (*s).to_owned()))
        .collect();
    ensure_eq!(got, expected);
    Ok(())
}

async fn starts_at_an_offset(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b", "c", "d"]).await?;
    ctx.store.seal(&id).await?;
    let got = collect(ctx.store.subscribe(&id, 2, opts())).await?;
    ensure_eq!(got, vec![(2, "c".to_owned()), (3, "d".to_owned())]);
    let got = collect(ctx.store.subscribe(&id, 4, opts())).await?;
    ensure!(
        got.is_empty(),
        "subscription from the end of a sealed stream yielded {got:?}"
    );
    Ok(())
}

async fn starts_before_the_stream_exists(ctx: &Ctx) -> Outcome {
    let id = ctx.id("later");
    let task = tokio::spawn(collect(ctx.store.subscribe(&id, 0, opts())));
    tokio::time::sleep(Duration::from_millis(150)).await;
    put(&ctx.store, &id, &["first"]).await?;
    ctx.store.seal(&id).await?;
    let got = task.await.map_err(|e| Failure(e.to_string()))??;
    ensure_eq!(got, vec![(0, "first".to_owned())]);
    Ok(())
}

async fn several_subscribers_see_the_same_records(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let tasks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(collect(ctx.store.subscribe(&id, 0, opts()))))
        .collect();
    for i in 0..10 {
        put(&ctx.store, &id, &[&format!("r{i}")]).await?;
    }
    ctx.store.seal(&id).await?;
    for t in tasks {
        let got = t.await.map_err(|e| Failure(e.to_string()))??;
        ensure_eq!(got.len(), 10);
        ensure!(
            got.iter()
                .enumerate()
                .all(|(i, (o, p))| *o == i as u64 && *p == format!("r{i}")),
            "wrong records {got:?}"
        );
    }
    Ok(())
}

async fn ends_with_an_error_when_the_stream_is_deleted(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let mut sub = ctx.store.subscribe(&id, 0, opts());
    let first = sub
        .next()
        .await
        .ok_or_else(|| Failure("no first record".into()))??;
    ensure_eq!(first.offset, 0);
    ctx.store.delete(&id).await?;
    put(&ctx.store, &id, &["other life"]).await?;
    let next = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .map_err(|_| Failure("subscription did not notice the delete".into()))?;
    match next {
        Some(Err(e)) => ensure_eq!(e.kind(), ErrorKind::NotFound),
        other => {
            return Err(Failure(format!(
                "expected NotFound after delete, got {other:?}"
            )))
        }
    }
    ensure!(
        sub.next().await.is_none(),
        "subscription went on after the error"
    );
    Ok(())
}
