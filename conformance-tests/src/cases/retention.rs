//! F. Retention policies: bytes per stream, time after seal, time after the last append.

use std::time::Duration;

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, ReadOptions, Retention};

use crate::case::{case_list, Case, Outcome};
use crate::support::{expect_kind, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("retention";
        max_bytes_trims_the_oldest_records [Retention],
        max_bytes_never_trims_the_newest_record [Retention],
        delete_after_seal [Retention],
        delete_after_idle [Retention],
        retention_of_a_missing_stream_is_not_found [Retention],
    )
}

/// How long to wait for a time rule to fire: polling sweepers get a few seconds.
async fn gone_within(ctx: &Ctx, id: &streamstore::StreamId, limit: Duration) -> Outcome {
    let started = std::time::Instant::now();
    loop {
        match ctx.store.info(id).await {
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => return Err(e.into()),
            Ok(_) if started.elapsed() > limit => {
                return Err(crate::Failure(format!(
                    "stream still exists after {limit:?}"
                )))
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let page = ctx.store.read(id, 0, ReadOptions::default()).await?;
    ensure!(
        page.incarnation.is_none() && page.records.is_empty(),
        "expired stream still readable"
    );
    Ok(())
}

async fn max_bytes_trims_the_oldest_records(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["0123456789"]).await?;
    ctx.store
        .set_retention(&id, Retention::default().max_bytes(25))
        .await?;
    for i in 1..6 {
        put(
            &ctx.store,
            &id,
            &[&format!("{i}{i}{i}{i}{i}{i}{i}{i}{i}{i}")],
        )
        .await?;
    }
    let info = ctx.store.info(&id).await?;
    ensure!(
        info.bytes <= 25,
        "stream holds {} bytes over a 25-byte cap",
        info.bytes
    );
    ensure_eq!(info.next_offset, 6);
    ensure_eq!(info.first_offset, 4);
    ensure_eq!(
        texts(&read_all(&ctx.store, &id, info.first_offset).await?),
        vec!["4444444444", "5555555555"]
    );
    expect_kind(
        ctx.store.read(&id, 0, ReadOptions::default()).await,
        ErrorKind::Trimmed { first_available: 4 },
    )?;
    ensure_eq!(ctx.store.info(&id).await?.retention.max_bytes, Some(25));
    Ok(())
}

async fn max_bytes_never_trims_the_newest_record(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["small"]).await?;
    ctx.store
        .set_retention(&id, Retention::default().max_bytes(10))
        .await?;
    ctx.store
        .append(
            &id,
            vec![Bytes::from(vec![9u8; 100])],
            AppendOptions::default(),
        )
        .await?;
    let info = ctx.store.info(&id).await?;
    ensure_eq!(
        (info.first_offset, info.next_offset, info.bytes),
        (1, 2, 100)
    );
    Ok(())
}

async fn delete_after_seal(ctx: &Ctx) -> Outcome {
    let (id, keep) = (ctx.id("s"), ctx.id("unsealed"));
    let policy = Retention::default().delete_after_seal(Duration::from_millis(300));
    for s in [&id, &keep] {
        put(&ctx.store, s, &["a"]).await?;
        ctx.store.set_retention(s, policy).await?;
    }
    ctx.store.seal(&id).await?;
    gone_within(ctx, &id, Duration::from_secs(15)).await?;
    ensure!(
        ctx.store.info(&keep).await.is_ok(),
        "an unsealed stream expired by the seal rule"
    );
    let r = put(&ctx.store, &id, &["new life"]).await?;
    ensure_eq!(r.first_offset, 0);
    Ok(())
}

async fn delete_after_idle(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let policy = Retention::default().delete_after_idle(Duration::from_millis(800));
    ctx.store.set_retention(&id, policy).await?;
    ensure!(ctx.store.info(&id).await.is_ok(), "expired at once");
    gone_within(ctx, &id, Duration::from_secs(15)).await
}

async fn retention_of_a_missing_stream_is_not_found(ctx: &Ctx) -> Outcome {
    expect_kind(
        ctx.store
            .set_retention(&ctx.id("missing"), Retention::default().max_bytes(1))
            .await,
        ErrorKind::NotFound,
    )
}
