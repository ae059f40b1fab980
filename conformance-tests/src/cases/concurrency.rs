//! D. Concurrency: one winner per conditional append, contiguous offsets, per-writer order,
//! atomic batches under concurrent readers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use streamstore::{AppendOptions, ErrorKind, Expect, ReadOptions, StreamId};

use crate::case::{case_list, Case, Failure, Outcome};
use crate::support::{batch, expect_kind, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("concurrency";
        same_expectation_has_exactly_one_winner,
        conditional_appenders_with_retries_stay_contiguous,
        unconditional_appenders_all_land_in_order,
        concurrent_creation_of_different_streams,
        batches_are_atomic_under_concurrent_readers,
        failed_batch_writes_nothing,
    )
}

fn join_err(e: tokio::task::JoinError) -> Failure {
    Failure(format!("task panicked: {e}"))
}

async fn same_expectation_has_exactly_one_winner(ctx: &Ctx) -> Outcome {
    for (round, expect) in [Expect::NoStream, Expect::Next(1)].into_iter().enumerate() {
        let id = ctx.id("race");
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let (store, id) = (Arc::clone(&ctx.store), id.clone());
                tokio::spawn(async move {
                    let payload = format!("round{round}-writer{w}");
                    (
                        payload.clone(),
                        store
                            .append(
                                &id,
                                vec![Bytes::from(payload)],
                                AppendOptions::expect(expect),
                            )
                            .await,
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (payload, result) = t.await.map_err(join_err)?;
            match result {
                Ok(r) => winners.push((payload, r)),
                Err(e) => ensure_eq!(
                    e.kind(),
                    ErrorKind::Conflict {
                        actual_next: round as u64 + 1
                    }
                ),
            }
        }
        ensure_eq!(winners.len(), 1);
        let stored = read_all(&ctx.store, &id, round as u64).await?;
        ensure_eq!(texts(&stored), vec![winners[0].0.clone()]);
    }
    Ok(())
}

async fn conditional_appenders_with_retries_stay_contiguous(ctx: &Ctx) -> Outcome {
    let id = ctx.id("cas");
    let (writers, per_writer) = (5usize, 10usize);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, id) = (Arc::clone(&ctx.store), id.clone());
            tokio::spawn(async move {
                let mut expect = 0u64;
                let mut attempts = 0u32;
                for i in 0..per_writer {
                    loop {
                        attempts += 1;
                        if attempts > 10_000 {
                            return Err(Failure("writer starved".into()));
                        }
                        let rec = vec![Bytes::from(format!("{w}:{i}"))];
                        match store
                            .append(&id, rec, AppendOptions::expect(Expect::Next(expect)))
                            .await
                        {
                            Ok(r) => {
                                expect = r.next_offset();
                                break;
                            }
                            Err(e) => match e.kind() {
                                ErrorKind::Conflict { actual_next } => expect = actual_next,
                                _ if e.is_retryable() => {}
                                _ => return Err(Failure(format!("writer {w}: {e}"))),
                            },
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(join_err)??;
    }
    let all = read_all(&ctx.store, &id, 0).await?;
    ensure_eq!(all.len(), writers * per_writer);
    for (i, r) in all.iter().enumerate() {
        ensure_eq!(r.offset, i as u64);
    }
    check_per_writer_order(&texts(&all), writers, per_writer)
}

fn check_per_writer_order(items: &[String], writers: usize, per_writer: usize) -> Outcome {
    let mut next = vec![0usize; writers];
    for item in items {
        let (w, i) = item
            .split_once(':')
            .ok_or_else(|| Failure(format!("bad record {item}")))?;
        let w: usize = w
            .parse()
            .map_err(|_| Failure(format!("bad record {item}")))?;
        let i: usize = i
            .parse()
            .map_err(|_| Failure(format!("bad record {item}")))?;
        ensure!(w < writers, "unknown writer in {item}");
        ensure_eq!(i, next[w]);
        next[w] += 1;
    }
    ensure!(
        next.iter().all(|&n| n == per_writer),
        "missing records: {next:?}"
    );
    Ok(())
}

async fn unconditional_appenders_all_land_in_order(ctx: &Ctx) -> Outcome {
    let id = ctx.id("any");
    let (writers, per_writer) = (4usize, 25usize);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, id) = (Arc::clone(&ctx.store), id.clone());
            tokio::spawn(async move {
                for i in 0..per_writer {
                    store
                        .append(
                            &id,
                            vec![Bytes::from(format!("{w}:{i}"))],
                            AppendOptions::default(),
                        )
                        .await?;
                }
                Ok::<_, streamstore::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(join_err)??;
    }
    let all = read_all(&ctx.store, &id, 0).await?;
    check_per_writer_order(&texts(&all), writers, per_writer)
}

async fn concurrent_creation_of_different_streams(ctx: &Ctx) -> Outcome {
    let ids: Vec<StreamId> = (0..16).map(|i| ctx.id(&format!("new-{i}"))).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (Arc::clone(&ctx.store), id.clone());
            tokio::spawn(async move {
                store
                    .append(
                        &id,
                        batch(&["first", "second"]),
                        AppendOptions::expect(Expect::NoStream),
                    )
                    .await
            })
        })
        .collect();
    let mut incarnations = HashSet::new();
    for t in tasks {
        let r = t.await.map_err(join_err)??;
        ensure_eq!(r.first_offset, 0);
        incarnations.insert(r.incarnation);
    }
    for id in &ids {
        ensure_eq!(
            texts(&read_all(&ctx.store, id, 0).await?),
            vec!["first", "second"]
        );
    }
    Ok(())
}

async fn batches_are_atomic_under_concurrent_readers(ctx: &Ctx) -> Outcome {
    let id = ctx.id("atomic");
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, id, done) = (Arc::clone(&ctx.store), id.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut reads = 0u32;
                while !done.load(Ordering::Acquire) || reads < 5 {
                    let page = store
                        .read(&id, 0, ReadOptions::limit(10_000).bytes(usize::MAX))
                        .await?;
                    if page.end_offset % 10 != 0 || page.records.len() % 10 != 0 {
                        return Err(Failure(format!(
                            "saw a partial batch: end {} with {} records",
                            page.end_offset,
                            page.records.len()
                        )));
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        })
        .collect();
    for b in 0..30u32 {
        let recs: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("{b}.{i}"))).collect();
        ctx.store
            .append(&id, recs, AppendOptions::default())
            .await?;
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.await.map_err(join_err)??;
    }
    ensure_eq!(read_all(&ctx.store, &id, 0).await?.len(), 300);
    Ok(())
}

async fn failed_batch_writes_nothing(ctx: &Ctx) -> Outcome {
    let id = ctx.id("s");
    crate::support::put(&ctx.store, &id, &["a"]).await?;
    let max = ctx.caps().max_record_bytes;
    let recs = vec![
        Bytes::from_static(b"ok"),
        Bytes::from(vec![0u8; max + 1]),
        Bytes::from_static(b"ok"),
    ];
    expect_kind(
        ctx.store.append(&id, recs, AppendOptions::default()).await,
        ErrorKind::TooLarge,
    )?;
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["a"]);
    ensure_eq!(ctx.store.info(&id).await?.next_offset, 1);
    Ok(())
}
