//! I. Listing streams by prefix, in byte order, with pages.

use streamstore::{ListOptions, StreamId};

use crate::case::{case_list, Case, Outcome};
use crate::support::{put, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("list";
        lists_by_prefix_in_byte_order [List],
        paginates_without_gaps_or_duplicates [List],
        deleted_streams_are_not_listed [List, Delete],
    )
}

async fn list_all(ctx: &Ctx, prefix: &str, limit: usize) -> Result<Vec<StreamId>, crate::Failure> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = ctx
            .store
            .list(
                ListOptions::default()
                    .prefix(prefix.to_owned())
                    .after(after)
                    .limit(limit),
            )
            .await?;
        ensure!(
            limit == 0 || page.streams.len() <= limit,
            "page over the limit"
        );
        out.extend(page.streams);
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Ok(out),
        }
        ensure!(out.len() < 100_000, "listing does not end");
    }
}

async fn lists_by_prefix_in_byte_order(ctx: &Ctx) -> Outcome {
    let names = ["b/2", "a/1", "a/10", "a/2", "a", "ab", "a/é", "a/Z"];
    for n in names {
        put(&ctx.store, &ctx.id(n), &["x"]).await?;
    }
    let got = list_all(ctx, &format!("{}a/", ctx.prefix()), 0).await?;
    let mut want: Vec<String> = ["a/1", "a/10", "a/2", "a/Z", "a/é"]
        .iter()
        .map(|n| ctx.id(n).as_str().to_owned())
        .collect();
    want.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    ensure_eq!(
        got.iter()
            .map(|s| s.as_str().to_owned())
            .collect::<Vec<_>>(),
        want
    );
    let everything = list_all(ctx, ctx.prefix(), 0).await?;
    ensure_eq!(everything.len(), names.len());
    ensure!(
        everything
            .windows(2)
            .all(|w| w[0].as_str().as_bytes() < w[1].as_str().as_bytes()),
        "not in byte order"
    );
    Ok(())
}

async fn paginates_without_gaps_or_duplicates(ctx: &Ctx) -> Outcome {
    for i in 0..25 {
        put(&ctx.store, &ctx.id(&format!("s{i:02}")), &["x"]).await?;
    }
    let first = ctx
        .store
        .list(
            ListOptions::default()
                .prefix(ctx.prefix().to_owned())
                .after(None)
                .limit(10),
        )
        .await?;
    ensure_eq!(first.streams.len(), 10);
    ensure!(
        first.next_after.is_some(),
        "first page claims to be the last"
    );
    let all = list_all(ctx, ctx.prefix(), 10).await?;
    let want: Vec<String> = (0..25)
        .map(|i| ctx.id(&format!("s{i:02}")).as_str().to_owned())
        .collect();
    ensure_eq!(
        all.iter()
            .map(|s| s.as_str().to_owned())
            .collect::<Vec<_>>(),
        want
    );
    let exact = list_all(ctx, ctx.prefix(), 25).await?;
    ensure_eq!(exact.len(), 25);
    Ok(())
}

async fn deleted_streams_are_not_listed(ctx: &Ctx) -> Outcome {
    for n in ["x", "y", "z"] {
        put(&ctx.store, &ctx.id(n), &["x"]).await?;
    }
    ctx.store.delete(&ctx.id("y")).await?;
    let got = list_all(ctx, ctx.prefix(), 0).await?;
    ensure_eq!(got, vec![ctx.id("x"), ctx.id("z")]);
    Ok(())
}
