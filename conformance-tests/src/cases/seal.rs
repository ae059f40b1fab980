//! Seal: the end of a stream.

use streamstore::{AppendOptions, ErrorKind, Expect, ReadOptions};

use crate::case::{case_list, Case, Outcome};
use crate::support::{batch, expect_kind, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("seal";
        sealed_stream_refuses_appends,
        seal_is_idempotent,
        sealing_a_missing_stream_is_not_found,
        sealed_stream_stays_readable,
    )
}

async fn sealed_stream_refuses_appends(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    let info = ctx.store.seal(&id).await?;
    ensure!(info.sealed, "seal returned an unsealed info");
    ensure!(info.sealed_ms.is_some(), "no seal time");
    ensure_eq!(info.next_offset, 2);
    for expect in [Expect::Any, Expect::Next(2), Expect::NoStream] {
        let r = ctx
            .store
            .append(&id, batch(&["c"]), AppendOptions::expect(expect))
            .await;
        expect_kind(r, ErrorKind::Sealed)?;
    }
    ensure_eq!(ctx.store.info(&id).await?.next_offset, 2);
    Ok(())
}

async fn seal_is_idempotent(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let first = ctx.store.seal(&id).await?;
    let second = ctx.store.seal(&id).await?;
    ensure_eq!(first.sealed_ms, second.sealed_ms);
    ensure!(second.sealed, "second seal unsealed");
    Ok(())
}

async fn sealing_a_missing_stream_is_not_found(ctx: &Ctx) -> Outcome {
    let id = ctx.id("missing");
    expect_kind(ctx.store.seal(&id).await, ErrorKind::NotFound)?;
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)
}

async fn sealed_stream_stays_readable(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b", "c"]).await?;
    ctx.store.seal(&id).await?;
    ensure_eq!(
        texts(&read_all(&ctx.store, &id, 0).await?),
        vec!["a", "b", "c"]
    );
    let page = ctx.store.read(&id, 1, ReadOptions::limit(1)).await?;
    ensure!(page.sealed, "read did not report the seal");
    ensure!(
        !page.is_finished(),
        "a page before the end reported finished"
    );
    let end = ctx.store.read(&id, 3, ReadOptions::default()).await?;
    ensure!(
        end.is_finished(),
        "the end of a sealed stream is not finished"
    );
    Ok(())
}
