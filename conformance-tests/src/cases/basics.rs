//! A. Append and read basics.

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, ReadOptions};

use crate::case::{case_list, Case, Outcome};
use crate::support::{b, expect_kind, offsets, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("basics";
        missing_stream_reads_empty,
        append_then_read_roundtrip,
        batch_offsets_are_consecutive,
        streams_are_isolated,
        empty_batch_is_invalid,
        binary_payloads_roundtrip,
        empty_payloads_roundtrip,
        timestamps_shared_in_batch_and_non_decreasing,
        info_reports_state,
    )
}

async fn missing_stream_reads_empty(ctx: &Ctx) -> Outcome {
    let id = ctx.id("never-written");
    for from in [0, 7] {
        let batch = ctx.store.read(&id, from, ReadOptions::default()).await?;
        ensure!(
            batch.records.is_empty(),
            "a missing stream returned records"
        );
        ensure_eq!(batch.incarnation, None);
        ensure_eq!(batch.next_offset, from);
        ensure_eq!(batch.end_offset, 0);
        ensure!(!batch.sealed, "a missing stream is not sealed");
    }
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)
}

async fn append_then_read_roundtrip(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let before = streamstore::implementor::validate::now_ms();
    let r = put(&ctx.store, &id, &["hello"]).await?;
    let after = streamstore::implementor::validate::now_ms();
    ensure_eq!(r.first_offset, 0);
    ensure_eq!(r.count, 1);
    ensure!(
        r.timestamp_ms + 5_000 >= before && r.timestamp_ms <= after + 5_000,
        "timestamp {} is not near the append time {before}..{after}",
        r.timestamp_ms
    );
    let batch = ctx.store.read(&id, 0, ReadOptions::default()).await?;
    ensure_eq!(batch.records.len(), 1);
    ensure_eq!(batch.records[0].payload, b("hello"));
    ensure_eq!(batch.records[0].offset, 0);
    ensure_eq!(batch.records[0].timestamp_ms, r.timestamp_ms);
    ensure_eq!(batch.next_offset, 1);
    ensure_eq!(batch.end_offset, 1);
    ensure_eq!(batch.incarnation, Some(r.incarnation));
    Ok(())
}

async fn batch_offsets_are_consecutive(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let r1 = put(&ctx.store, &id, &["a", "b", "c", "d", "e"]).await?;
    ensure_eq!(r1.offsets(), 0..5);
    let r2 = put(&ctx.store, &id, &["f", "g", "h"]).await?;
    ensure_eq!(r2.offsets(), 5..8);
    let all = read_all(&ctx.store, &id, 0).await?;
    ensure_eq!(offsets(&all), (0..8).collect::<Vec<_>>());
    ensure_eq!(texts(&all), vec!["a", "b", "c", "d", "e", "f", "g", "h"]);
    Ok(())
}

async fn streams_are_isolated(ctx: &Ctx) -> Outcome {
    let (a, b_) = (ctx.id("a"), ctx.id("b"));
    put(&ctx.store, &a, &["a0", "a1"]).await?;
    let rb = put(&ctx.store, &b_, &["b0"]).await?;
    ensure_eq!(rb.first_offset, 0);
    ensure_eq!(texts(&read_all(&ctx.store, &a, 0).await?), vec!["a0", "a1"]);
    ensure_eq!(texts(&read_all(&ctx.store, &b_, 0).await?), vec!["b0"]);
    Ok(())
}

async fn empty_batch_is_invalid(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    expect_kind(
        ctx.store
            .append(&id, Vec::new(), AppendOptions::default())
            .await,
        ErrorKind::InvalidArgument,
    )?;
    expect_kind(ctx.store.info(&id).await, ErrorKind::NotFound)
}

async fn binary_payloads_roundtrip(ctx: &Ctx) -> Outcome {
    let id = ctx.id("bin");
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let not_utf8 = vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0x00];
    let payloads = vec![
        Bytes::from(all_bytes),
        Bytes::from(not_utf8),
        Bytes::from(vec![0u8; 1000]),
    ];
    ctx.store
        .append(&id, payloads.clone(), AppendOptions::default())
        .await?;
    let got = read_all(&ctx.store, &id, 0).await?;
    ensure_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        payloads
    );
    Ok(())
}

async fn empty_payloads_roundtrip(ctx: &Ctx) -> Outcome {
    let id = ctx.id("empty");
    let r = ctx
        .store
        .append(
            &id,
            vec![Bytes::new(), Bytes::new()],
            AppendOptions::default(),
        )
        .await?;
    ensure_eq!(r.count, 2);
    put(&ctx.store, &id, &["x"]).await?;
    let got = read_all(&ctx.store, &id, 0).await?;
    ensure_eq!(texts(&got), vec!["", "", "x"]);
    ensure_eq!(ctx.store.info(&id).await?.bytes, 1);
    Ok(())
}

async fn timestamps_shared_in_batch_and_non_decreasing(ctx: &Ctx) -> Outcome {
    let id = ctx.id("ts");
    for _ in 0..5 {
        put(&ctx.store, &id, &["a", "b", "c"]).await?;
    }
    let got = read_all(&ctx.store, &id, 0).await?;
    for chunk in got.chunks(3) {
        ensure!(
            chunk
                .iter()
                .all(|r| r.timestamp_ms == chunk[0].timestamp_ms),
            "a batch has mixed timestamps"
        );
    }
    ensure!(
        got.windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms),
        "timestamps decreased"
    );
    Ok(())
}

async fn info_reports_state(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let r = put(&ctx.store, &id, &["abc", "de"]).await?;
    let info = ctx.store.info(&id).await?;
    ensure_eq!(info.stream, id);
    ensure_eq!(info.first_offset, 0);
    ensure_eq!(info.next_offset, 2);
    ensure!(!info.sealed, "new stream is sealed");
    ensure_eq!(info.sealed_ms, None);
    ensure_eq!(info.bytes, 5);
    ensure_eq!(info.incarnation, r.incarnation);
    ensure!(
        info.created_ms <= info.last_append_ms,
        "created after last append"
    );
    ensure_eq!(info.last_append_ms, r.timestamp_ms);
    Ok(())
}
