//! B and C. Reading from an offset, limits, resume tokens and pagination.

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, ReadOptions};

use crate::case::{case_list, Case, Outcome};
use crate::support::{expect_kind, offsets, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("ranges";
        read_from_offset_is_inclusive,
        record_count_limit,
        single_record_reads,
        zero_record_limit_is_invalid,
        read_at_or_past_end_is_empty,
        read_spanning_end_is_partial,
        resume_offset_returns_exactly_the_next_record,
        byte_budget_bounds_a_page,
        oversized_first_record_is_still_returned,
        count_pages_concatenate_to_one_read,
        byte_pages_concatenate_to_one_read,
        long_stream_reads_in_pages,
    )
}

async fn ten(ctx: &Ctx) -> Result<streamstore::StreamId, crate::Failure> {
    let id = ctx.id("ten");
    let items: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    put(&ctx.store, &id, &refs).await?;
    Ok(id)
}

async fn read_from_offset_is_inclusive(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    let got = read_all(&ctx.store, &id, 4).await?;
    ensure_eq!(offsets(&got), (4..10).collect::<Vec<_>>());
    ensure_eq!(texts(&got)[0], "r4");
    Ok(())
}

async fn record_count_limit(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    let page = ctx.store.read(&id, 2, ReadOptions::limit(3)).await?;
    ensure_eq!(offsets(&page.records), vec![2, 3, 4]);
    ensure_eq!(page.next_offset, 5);
    ensure_eq!(page.end_offset, 10);
    Ok(())
}

async fn single_record_reads(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    for k in [0, 5, 9] {
        let page = ctx.store.read(&id, k, ReadOptions::limit(1)).await?;
        ensure_eq!(offsets(&page.records), vec![k]);
        ensure_eq!(texts(&page.records), vec![format!("r{k}")]);
    }
    Ok(())
}

async fn zero_record_limit_is_invalid(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    expect_kind(
        ctx.store.read(&id, 0, ReadOptions::limit(0)).await,
        ErrorKind::InvalidArgument,
    )
}

async fn read_at_or_past_end_is_empty(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    for from in [10, 11, 1_000_000, u64::MAX] {
        let page = ctx.store.read(&id, from, ReadOptions::default()).await?;
        ensure!(page.records.is_empty(), "read from {from} returned records");
        ensure_eq!(page.next_offset, from);
        ensure_eq!(page.end_offset, 10);
        ensure!(
            page.incarnation.is_some(),
            "existing stream reported no incarnation"
        );
    }
    Ok(())
}

async fn read_spanning_end_is_partial(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    let page = ctx.store.read(&id, 8, ReadOptions::limit(100)).await?;
    ensure_eq!(offsets(&page.records), vec![8, 9]);
    ensure_eq!(page.next_offset, 10);
    Ok(())
}

async fn resume_offset_returns_exactly_the_next_record(ctx: &Ctx) -> Outcome {
    let id = ten(ctx).await?;
    let first = ctx.store.read(&id, 0, ReadOptions::limit(4)).await?;
    let second = ctx
        .store
        .read(&id, first.next_offset, ReadOptions::limit(1))
        .await?;
    ensure_eq!(offsets(&second.records), vec![4]);
    put(&ctx.store, &id, &["r10"]).await?;
    let tail = ctx.store.read(&id, 10, ReadOptions::default()).await?;
    ensure_eq!(texts(&tail.records), vec!["r10"]);
    Ok(())
}

async fn byte_budget_bounds_a_page(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let recs = vec![Bytes::from(vec![7u8; 100]); 5];
    ctx.store
        .append(&id, recs, AppendOptions::default())
        .await?;
    let page = ctx
        .store
        .read(&id, 0, ReadOptions::limit(100).bytes(250))
        .await?;
    ensure_eq!(page.records.len(), 2);
    let page = ctx
        .store
        .read(&id, 0, ReadOptions::limit(100).bytes(300))
        .await?;
    ensure_eq!(page.records.len(), 3);
    Ok(())
}

async fn oversized_first_record_is_still_returned(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let recs = vec![Bytes::from(vec![1u8; 1000]), Bytes::from(vec![2u8; 10])];
    ctx.store
        .append(&id, recs, AppendOptions::default())
        .await?;
    let page = ctx
        .store
        .read(&id, 0, ReadOptions::limit(10).bytes(1))
        .await?;
    ensure_eq!(page.records.len(), 1);
    ensure_eq!(page.records[0].payload.len(), 1000);
    ensure_eq!(page.next_offset, 1);
    Ok(())
}

async fn paged(
    ctx: &Ctx,
    id: &streamstore::StreamId,
    opts: ReadOptions,
) -> Result<Vec<streamstore::Record>, crate::Failure> {
    let mut out = Vec::new();
    let mut next = 0;
    let mut pages = 0;
    loop {
        let page = ctx.store.read(id, next, opts).await?;
        if page.records.is_empty() {
            break;
        }
        ensure!(
            page.records.len() <= opts.max_records,
            "page larger than max_records"
        );
        ensure_eq!(page.records[0].offset, next);
        next = page.next_offset;
        out.extend(page.records);
        pages += 1;
        ensure!(pages < 100_000, "pagination does not end");
    }
    Ok(out)
}

async fn count_pages_concatenate_to_one_read(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    for chunk in 0..4 {
        let recs: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("{chunk}-{i}")))
            .collect();
        ctx.store
            .append(&id, recs, AppendOptions::default())
            .await?;
    }
    let whole = ctx
        .store
        .read(&id, 0, ReadOptions::limit(1000))
        .await?
        .records;
    ensure_eq!(whole.len(), 200);
    for size in [1, 7, 50, 199, 200] {
        let pages = paged(ctx, &id, ReadOptions::limit(size)).await?;
        ensure!(pages == whole, "pages of {size} differ from one read");
    }
    Ok(())
}

async fn byte_pages_concatenate_to_one_read(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    let recs: Vec<Bytes> = (0..60)
        .map(|i| Bytes::from(vec![u8::try_from(i).unwrap_or(0); (i * 37) % 500]))
        .collect();
    ctx.store
        .append(&id, recs, AppendOptions::default())
        .await?;
    let whole = ctx
        .store
        .read(&id, 0, ReadOptions::limit(1000))
        .await?
        .records;
    for budget in [1, 300, 1024, 5000] {
        let pages = paged(ctx, &id, ReadOptions::limit(1000).bytes(budget)).await?;
        ensure!(
            pages == whole,
            "pages of {budget} bytes differ from one read"
        );
    }
    Ok(())
}

async fn long_stream_reads_in_pages(ctx: &Ctx) -> Outcome {
    let id = ctx.id("long");
    for chunk in 0..20u32 {
        let recs: Vec<Bytes> = (0..100u32)
            .map(|i| Bytes::from((chunk * 100 + i).to_le_bytes().to_vec()))
            .collect();
        ctx.store
            .append(&id, recs, AppendOptions::default())
            .await?;
    }
    let got = paged(ctx, &id, ReadOptions::limit(128)).await?;
    ensure_eq!(got.len(), 2000);
    for (i, r) in got.iter().enumerate() {
        let v = u32::from_le_bytes(
            r.payload
                .as_ref()
                .try_into()
                .map_err(|_| crate::Failure("bad payload".into()))?,
        );
        ensure_eq!(u64::from(v), r.offset);
        ensure_eq!(r.offset, i as u64);
    }
    Ok(())
}
