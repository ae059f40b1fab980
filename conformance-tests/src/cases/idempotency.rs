//! E. Idempotent retries.

use std::sync::Arc;

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, Expect, IdempotencyKey};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{batch, expect_kind, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("idempotency";
        retry_returns_the_original_result [Idempotency],
        retry_after_more_appends_ignores_the_expectation [Idempotency],
        key_reused_for_different_records_is_rejected [Idempotency],
        retry_after_seal_returns_the_original_result [Idempotency],
        keys_are_per_stream [Idempotency],
        concurrent_retries_write_once [Idempotency],
        different_records_at_a_used_offset_conflict,
    )
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(Bytes::copy_from_slice(k.as_bytes())).expect("valid key")
}

fn keyed(expect: Expect, k: &str) -> AppendOptions {
    AppendOptions::expect(expect).with_key(key(k))
}

async fn retry_returns_the_original_result(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let first = ctx
        .store
        .append(&id, batch(&["a", "b"]), keyed(Expect::Any, "k1"))
        .await?;
    for _ in 0..3 {
        let again = ctx
            .store
            .append(&id, batch(&["a", "b"]), keyed(Expect::Any, "k1"))
            .await?;
        ensure_eq!(again, first);
    }
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["a", "b"]);
    Ok(())
}

async fn retry_after_more_appends_ignores_the_expectation(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let first = ctx
        .store
        .append(&id, batch(&["a"]), keyed(Expect::NoStream, "k1"))
        .await?;
    put(&ctx.store, &id, &["b", "c"]).await?;
    let again = ctx
        .store
        .append(&id, batch(&["a"]), keyed(Expect::NoStream, "k1"))
        .await?;
    ensure_eq!(again, first);
    let again = ctx
        .store
        .append(&id, batch(&["a"]), keyed(Expect::Next(0), "k1"))
        .await?;
    ensure_eq!(again, first);
    ensure_eq!(
        texts(&read_all(&ctx.store, &id, 0).await?),
        vec!["a", "b", "c"]
    );
    Ok(())
}

async fn key_reused_for_different_records_is_rejected(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    ctx.store
        .append(&id, batch(&["a"]), keyed(Expect::Any, "k1"))
        .await?;
    expect_kind(
        ctx.store
            .append(&id, batch(&["different"]), keyed(Expect::Any, "k1"))
            .await,
        ErrorKind::InvalidArgument,
    )?;
    expect_kind(
        ctx.store
            .append(&id, batch(&["a", "extra"]), keyed(Expect::Any, "k1"))
            .await,
        ErrorKind::InvalidArgument,
    )?;
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["a"]);
    Ok(())
}

async fn retry_after_seal_returns_the_original_result(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let first = ctx
        .store
        .append(&id, batch(&["last"]), keyed(Expect::Any, "k1"))
        .await?;
    ctx.store.seal(&id).await?;
    let again = ctx
        .store
        .append(&id, batch(&["last"]), keyed(Expect::Any, "k1"))
        .await?;
    ensure_eq!(again, first);
    expect_kind(
        ctx.store
            .append(&id, batch(&["new"]), keyed(Expect::Any, "k2"))
            .await,
        ErrorKind::Sealed,
    )
}

async fn keys_are_per_stream(ctx: &Ctx) -> Outcome {
    let (a, b) = (ctx.id("a"), ctx.id("b"));
    put(&ctx.store, &b, &["b0"]).await?;
    let ra = ctx
        .store
        .append(&a, batch(&["x"]), keyed(Expect::Any, "same"))
        .await?;
    let rb = ctx
        .store
        .append(&b, batch(&["x"]), keyed(Expect::Any, "same"))
        .await?;
    ensure_eq!(ra.first_offset, 0);
    ensure_eq!(rb.first_offset, 1);
    ensure_eq!(texts(&read_all(&ctx.store, &b, 0).await?), vec!["b0", "x"]);
    Ok(())
}

async fn concurrent_retries_write_once(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["before"]).await?;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (Arc::clone(&ctx.store), id.clone());
            tokio::spawn(async move {
                store
                    .append(&id, batch(&["once", "twice"]), keyed(Expect::Any, "k"))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.map_err(|e| Failure(e.to_string()))??);
    }
    ensure!(
        results.iter().all(|r| *r == results[0]),
        "retries returned different results: {results:?}"
    );
    ensure_eq!(results[0].first_offset, 1);
    ensure_eq!(
        texts(&read_all(&ctx.store, &id, 0).await?),
        vec!["before", "once", "twice"]
    );
    Ok(())
}

async fn different_records_at_a_used_offset_conflict(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    ctx.store
        .append(&id, batch(&["a"]), AppendOptions::expect(Expect::Next(0)))
        .await?;
    expect_kind(
        ctx.store
            .append(&id, batch(&["b"]), AppendOptions::expect(Expect::Next(0)))
            .await,
        ErrorKind::Conflict { actual_next: 1 },
    )?;
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["a"]);
    Ok(())
}
