//! F. Trim and delete: no offset reuse, incarnations.

use streamstore::{AppendOptions, ErrorKind, Expect, ReadOptions};

use crate::case::{case_list, Case, Outcome};
use crate::support::{batch, expect_kind, offsets, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("trim_delete";
        trim_removes_a_prefix [Trim],
        trim_everything_keeps_the_next_offset [Trim],
        trim_is_clamped_and_idempotent [Trim],
        trim_of_a_missing_stream_is_not_found [Trim],
        trim_of_a_sealed_stream [Trim],
        delete_removes_only_that_stream [Delete],
        delete_then_append_starts_a_new_incarnation [Delete],
        no_stream_after_delete_succeeds [Delete],
    )
}

async fn filled(ctx: &Ctx, n: usize) -> Result<streamstore::StreamId, crate::Failure> {
    let id = ctx.id("s");
    let items: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    put(&ctx.store, &id, &refs).await?;
    Ok(id)
}

async fn trim_removes_a_prefix(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 10).await?;
    ensure_eq!(ctx.store.trim(&id, 5).await?, 5);
    expect_kind(
        ctx.store.read(&id, 4, ReadOptions::default()).await,
        ErrorKind::Trimmed { first_available: 5 },
    )?;
    expect_kind(
        ctx.store.read(&id, 0, ReadOptions::default()).await,
        ErrorKind::Trimmed { first_available: 5 },
    )?;
    let page = ctx.store.read(&id, 5, ReadOptions::default()).await?;
    ensure_eq!(offsets(&page.records), (5..10).collect::<Vec<_>>());
    ensure_eq!(page.first_available, 5);
    let info = ctx.store.info(&id).await?;
    ensure_eq!((info.first_offset, info.next_offset), (5, 10));
    ensure_eq!(info.bytes, 10);
    Ok(())
}

async fn trim_everything_keeps_the_next_offset(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 4).await?;
    ensure_eq!(ctx.store.trim(&id, 4).await?, 4);
    let info = ctx.store.info(&id).await?;
    ensure_eq!((info.first_offset, info.next_offset, info.bytes), (4, 4, 0));
    ensure!(
        read_all(&ctx.store, &id, 4).await?.is_empty(),
        "records after trimming all"
    );
    let r = put(&ctx.store, &id, &["again"]).await?;
    ensure_eq!(r.first_offset, 4);
    ensure_eq!(r.incarnation, info.incarnation);
    expect_kind(
        ctx.store
            .append(&id, batch(&["x"]), AppendOptions::expect(Expect::NoStream))
            .await,
        ErrorKind::Conflict { actual_next: 5 },
    )
}

async fn trim_is_clamped_and_idempotent(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 5).await?;
    ensure_eq!(ctx.store.trim(&id, 1_000).await?, 5);
    ensure_eq!(ctx.store.trim(&id, 2).await?, 5);
    ensure_eq!(ctx.store.trim(&id, 5).await?, 5);
    ensure_eq!(ctx.store.info(&id).await?.next_offset, 5);
    let id2 = ctx.id("t");
    put(&ctx.store, &id2, &["a", "b", "c"]).await?;
    ensure_eq!(ctx.store.trim(&id2, 0).await?, 0);
    ensure_eq!(ctx.store.trim(&id2, 2).await?, 2);
    ensure_eq!(ctx.store.trim(&id2, 2).await?, 2);
    ensure_eq!(texts(&read_all(&ctx.store, &id2, 2).await?), vec!["c"]);
    Ok(())
}

async fn trim_of_a_missing_stream_is_not_found(ctx: &Ctx) -> Outcome {
    expect_kind(
        ctx.store.trim(&ctx.id("missing"), 3).await,
        ErrorKind::NotFound,
    )
}

async fn trim_of_a_sealed_stream(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 3).await?;
    ctx.store.seal(&id).await?;
    ensure_eq!(ctx.store.trim(&id, 2).await?, 2);
    let info = ctx.store.info(&id).await?;
    ensure!(info.sealed, "trim unsealed the stream");
    ensure_eq!(texts(&read_all(&ctx.store, &id, 2).await?), vec!["r2"]);
    Ok(())
}

async fn delete_removes_only_that_stream(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 3).await?;
    let other = ctx.id("other");
    put(&ctx.store, &other, &["keep"]).await?;
    ensure!(
        ctx.store.delete(&id).await?,
        "delete of an existing stream returned false"
    );
    let page = ctx.store.read(&id, 0, ReadOptions::default()).await?;
    ensure!(
        page.records.is_empty() && page.incarnation.is_none(),
        "deleted stream still readable"
    );
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)?;
    ensure!(!ctx.store.delete(&id).await?, "second delete returned true");
    ensure!(
        !ctx.store.delete(&ctx.id("never")).await?,
        "deleting a missing stream returned true"
    );
    ensure_eq!(texts(&read_all(&ctx.store, &other, 0).await?), vec!["keep"]);
    Ok(())
}

async fn delete_then_append_starts_a_new_incarnation(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 3).await?;
    let old = ctx.store.info(&id).await?.incarnation;
    ctx.store.seal(&id).await?;
    ctx.store.delete(&id).await?;
    let r = put(&ctx.store, &id, &["new0", "new1"]).await?;
    ensure_eq!(r.first_offset, 0);
    ensure!(
        r.incarnation != old,
        "re-created stream kept its incarnation"
    );
    let page = ctx.store.read(&id, 0, ReadOptions::default()).await?;
    ensure_eq!(page.incarnation, Some(r.incarnation));
    ensure_eq!(texts(&page.records), vec!["new0", "new1"]);
    let info = ctx.store.info(&id).await?;
    ensure!(!info.sealed, "the new incarnation inherited the seal");
    Ok(())
}

async fn no_stream_after_delete_succeeds(ctx: &Ctx) -> Outcome {
    let id = filled(ctx, 2).await?;
    ctx.store.delete(&id).await?;
    let r = ctx
        .store
        .append(&id, batch(&["x"]), AppendOptions::expect(Expect::NoStream))
        .await?;
    ensure_eq!(r.first_offset, 0);
    Ok(())
}
