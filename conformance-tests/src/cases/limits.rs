//! G. Size limits: at the limit works, over it is `TooLarge` and writes nothing.

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind};

use crate::case::{case_list, Case, Outcome};
use crate::support::{expect_kind, read_all, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("limits";
        record_at_the_limit_works_and_over_it_is_too_large,
        batch_at_the_record_count_limit_works_and_over_it_is_too_large,
        batch_over_the_byte_limit_is_too_large,
    )
}

async fn record_at_the_limit_works_and_over_it_is_too_large(ctx: &Ctx) -> Outcome {
    let max = ctx.caps().max_record_bytes;
    let id = ctx.id("s");
    let big: Vec<u8> = (0..max)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    ctx.store
        .append(
            &id,
            vec![Bytes::from(big.clone())],
            AppendOptions::default(),
        )
        .await?;
    let got = read_all(&ctx.store, &id, 0).await?;
    ensure_eq!(got.len(), 1);
    ensure!(
        got[0].payload == big,
        "record at the limit did not round-trip"
    );
    let over = Bytes::from(vec![1u8; max + 1]);
    expect_kind(
        ctx.store
            .append(&id, vec![over], AppendOptions::default())
            .await,
        ErrorKind::TooLarge,
    )?;
    ensure_eq!(ctx.store.info(&id).await?.next_offset, 1);
    Ok(())
}

async fn batch_at_the_record_count_limit_works_and_over_it_is_too_large(ctx: &Ctx) -> Outcome {
    let max = ctx.caps().max_batch_records;
    let id = ctx.id("s");
    let r = ctx
        .store
        .append(
            &id,
            vec![Bytes::from_static(b"x"); max],
            AppendOptions::default(),
        )
        .await?;
    ensure_eq!(r.count, max as u64);
    expect_kind(
        ctx.store
            .append(
                &id,
                vec![Bytes::from_static(b"x"); max + 1],
                AppendOptions::default(),
            )
            .await,
        ErrorKind::TooLarge,
    )?;
    ensure_eq!(ctx.store.info(&id).await?.next_offset, max as u64);
    Ok(())
}

async fn batch_over_the_byte_limit_is_too_large(ctx: &Ctx) -> Outcome {
    let caps = ctx.caps();
    let id = ctx.id("s");
    let per = caps.max_record_bytes.min(caps.max_batch_bytes);
    let n = caps.max_batch_bytes / per + 1;
    ensure!(
        n <= caps.max_batch_records,
        "limits leave no batch that is over in bytes only"
    );
    let recs = vec![Bytes::from(vec![3u8; per]); n];
    expect_kind(
        ctx.store.append(&id, recs, AppendOptions::default()).await,
        ErrorKind::TooLarge,
    )?;
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)
}
