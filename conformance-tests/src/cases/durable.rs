//! H'. Durable reads (`ReadOptions::durable`): only records a crash can no longer take away.
//!
//! The suite does not know a store's durability mode, so it checks what holds in every mode:
//! a durable read returns a prefix of the acknowledged records, records become durable without
//! further appends (a waiting durable read returns them), and a store without the capability
//! says `Unsupported` instead of serving records it cannot vouch for.

use std::time::{Duration, Instant};

use streamstore::{ErrorKind, ReadOptions};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{expect_kind, put, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("durable";
        durable_reads_match_the_capability,
        durable_read_is_a_prefix_of_what_was_acknowledged [DurableReads],
        durable_wait_returns_records_once_durable [DurableReads],
    )
}

/// Long enough that a wake-up by timeout is unmistakable.
const LONG: Duration = Duration::from_secs(30);
/// Generous for a store that syncs on a timer, on a loaded machine.
const PROMPT: Duration = Duration::from_secs(5);

async fn durable_reads_match_the_capability(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a"]).await?;
    let r = ctx
        .store
        .read(&id, 0, ReadOptions::limit(10).durable())
        .await;
    if ctx.caps().durable_reads {
        let batch = r?;
        ensure!(
            batch.records.len() <= 1,
            "a durable read returned more than was appended"
        );
        Ok(())
    } else {
        expect_kind(r, ErrorKind::Unsupported)
    }
}

async fn durable_read_is_a_prefix_of_what_was_acknowledged(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    put(&ctx.store, &id, &["c"]).await?;
    let all = ctx.store.read(&id, 0, ReadOptions::limit(10)).await?;
    ensure_eq!(texts(&all.records), vec!["a", "b", "c"]);
    let durable = ctx
        .store
        .read(&id, 0, ReadOptions::limit(10).durable())
        .await?;
    ensure!(
        durable.records.len() <= 3 && durable.records[..] == all.records[..durable.records.len()],
        "a durable read is not a prefix of the records: {durable:?}"
    );
    ensure_eq!(durable.next_offset, durable.records.len() as u64);
    ensure_eq!(durable.end_offset, 3);
    Ok(())
}

async fn durable_wait_returns_records_once_durable(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    put(&ctx.store, &id, &["a", "b"]).await?;
    let started = Instant::now();
    let batch = ctx
        .store
        .read(&id, 0, ReadOptions::limit(10).durable().wait(LONG))
        .await?;
    let took = started.elapsed();
    ensure!(
        !batch.records.is_empty(),
        "a waiting durable read returned nothing after {took:?}"
    );
    ensure!(took < PROMPT, "records took {took:?} to become durable");
    ensure_eq!(batch.records[0].offset, 0);
    ensure_eq!(texts(&batch.records)[0], "a");
    // And a durable waiter at the end is woken by a later append.
    let waiter = {
        let (store, id) = (ctx.store.clone(), id.clone());
        tokio::spawn(async move {
            store
                .read(&id, 2, ReadOptions::limit(10).durable().wait(LONG))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    put(&ctx.store, &id, &["c"]).await?;
    let batch = waiter
        .await
        .map_err(|e| Failure(format!("waiter panicked: {e}")))??;
    ensure!(
        started.elapsed() < PROMPT,
        "a durable waiter took {:?} to see an append",
        started.elapsed()
    );
    ensure_eq!(texts(&batch.records), vec!["c"]);
    Ok(())
}
