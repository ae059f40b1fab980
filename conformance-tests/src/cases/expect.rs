//! D. Expectations: conditional appends that write nothing on mismatch.

use streamstore::{AppendOptions, ErrorKind, Expect};

use crate::case::{case_list, Case, Outcome};
use crate::ensure_eq;
use crate::support::{batch, expect_kind, put, read_all, texts, Ctx};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("expect";
        correct_next_offset_succeeds,
        wrong_next_offset_conflicts_and_writes_nothing,
        no_stream_on_new_stream_succeeds,
        no_stream_on_existing_stream_conflicts,
        next_on_missing_stream,
        any_always_appends,
    )
}

async fn correct_next_offset_succeeds(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    let r = ctx
        .store
        .append(&id, batch(&["c"]), AppendOptions::expect(Expect::Next(2)))
        .await?;
    ensure_eq!(r.first_offset, 2);
    Ok(())
}

async fn wrong_next_offset_conflicts_and_writes_nothing(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b", "c"]).await?;
    for wrong in [0, 2, 4, 100] {
        expect_kind(
            ctx.store
                .append(
                    &id,
                    batch(&["x", "y"]),
                    AppendOptions::expect(Expect::Next(wrong)),
                )
                .await,
            ErrorKind::Conflict { actual_next: 3 },
        )?;
    }
    ensure_eq!(
        texts(&read_all(&ctx.store, &id, 0).await?),
        vec!["a", "b", "c"]
    );
    ensure_eq!(ctx.store.info(&id).await?.next_offset, 3);
    Ok(())
}

async fn no_stream_on_new_stream_succeeds(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let r = ctx
        .store
        .append(&id, batch(&["a"]), AppendOptions::expect(Expect::NoStream))
        .await?;
    ensure_eq!(r.first_offset, 0);
    Ok(())
}

async fn no_stream_on_existing_stream_conflicts(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    expect_kind(
        ctx.store
            .append(&id, batch(&["x"]), AppendOptions::expect(Expect::NoStream))
            .await,
        ErrorKind::Conflict { actual_next: 2 },
    )?;
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["a", "b"]);
    Ok(())
}

async fn next_on_missing_stream(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    expect_kind(
        ctx.store
            .append(&id, batch(&["x"]), AppendOptions::expect(Expect::Next(5)))
            .await,
        ErrorKind::Conflict { actual_next: 0 },
    )?;
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)?;
    let r = ctx
        .store
        .append(&id, batch(&["x"]), AppendOptions::expect(Expect::Next(0)))
        .await?;
    ensure_eq!(r.first_offset, 0);
    Ok(())
}

async fn any_always_appends(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    for i in 0..5u64 {
        let r = ctx
            .store
            .append(&id, batch(&["x"]), AppendOptions::expect(Expect::Any))
            .await?;
        ensure_eq!(r.first_offset, i);
    }
    Ok(())
}
