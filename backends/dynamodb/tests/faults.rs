//! Lost replies while 4 writers append with idempotency keys: nothing acknowledged may be lost,
//! duplicated or skipped.
//!
//! moto keeps its data in memory and has no persistence option, so killing and restarting it
//! would lose every stream and prove nothing. Instead the store talks to moto through a TCP
//! proxy in this test that forwards every request and, at random, closes the connection instead
//! of forwarding the reply (the request was applied; the client cannot know) or before
//! forwarding the request (not applied). Both reach the adapter as an unknown outcome, which it
//! must resolve by reading the head and the batch's chunk, or report as `Unavailable`, on which
//! the writer retries with the same key.
//!
//! Needs `STREAMSTORE_DYNAMODB_ENDPOINT` (`scripts/services.sh up dynamodb`); prints SKIPPED and
//! passes without it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamkeep_dynamodb::{DynamoDbConfig, DynamoDbStore, ENDPOINT_ENV};
use streamstore::{
    AppendOptions, AppendResult, IdempotencyKey, ReadOptions, StreamId, StreamStore,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WRITERS: usize = 4;
const BATCHES: usize = 30;
/// Chance that a reply is dropped after the request was forwarded (applied, reply lost).
const DROP_REPLY: f64 = 0.12;
/// Chance that a request is dropped before it is forwarded (not applied).
const DROP_REQUEST: f64 = 0.04;

#[derive(Default)]
struct Counters {
    replies_dropped: AtomicU64,
    requests_dropped: AtomicU64,
}

/// Accepts connections on `listener` and forwards each to `upstream`, dropping some.
async fn proxy(listener: TcpListener, upstream: String, counters: Arc<Counters>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let upstream = upstream.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let c = Arc::clone(&counters);
            let up = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if rand::random::<f64>() < DROP_REQUEST {
                        c.requests_dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if rand::random::<f64>() < DROP_REPLY {
                    counters.replies_dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            // Dropping both halves closes both connections.
            up.abort();
        });
    }
}

fn payload(writer: usize, batch: usize, i: usize) -> Bytes {
    Bytes::from(format!("w{writer}-b{batch}-r{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_appends_survive_lost_replies() {
    let Some(endpoint) = std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty()) else {
        eprintln!("SKIPPED: {ENDPOINT_ENV} is not set");
        return;
    };
    let started = Instant::now();
    let table = format!("streamstore_faults_{:08x}", rand::random::<u32>());
    let direct_config = DynamoDbConfig::new(Some(&endpoint), &table).unwrap();
    let direct = DynamoDbStore::open(direct_config.clone()).await.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let upstream = endpoint.trim_start_matches("http://").to_owned();
    let counters = Arc::new(Counters::default());
    let proxy_task = tokio::spawn(proxy(listener, upstream, Arc::clone(&counters)));
    let mut faulty_config =
        DynamoDbConfig::new(Some(&format!("http://{proxy_addr}")), &table).unwrap();
    faulty_config.request_timeout = Duration::from_secs(5);
    // Opening checks the table through the proxy too: retried like any other request.
    let mut opened = None;
    for _ in 0..20 {
        if let Ok(s) = DynamoDbStore::open(faulty_config.clone()).await {
            opened = Some(s);
            break;
        }
    }
    let faulty = Arc::new(opened.expect("the store opens through the proxy"));

    let stream = StreamId::new("faults/one").unwrap();
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&faulty);
        let stream = stream.clone();
        let unavailable = Arc::clone(&unavailable);
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(usize, AppendResult)> = Vec::new();
            for b in 0..BATCHES {
                let records: Vec<Bytes> = (0..1 + (b % 3)).map(|i| payload(w, b, i)).collect();
                let key = IdempotencyKey::new(format!("w{w}-b{b}")).unwrap();
                let mut tries = 0;
                let result = loop {
                    tries += 1;
                    match store
                        .append(
                            &stream,
                            records.clone(),
                            AppendOptions::default().with_key(key.clone()),
                        )
                        .await
                    {
                        Ok(r) => break r,
                        Err(e) if e.is_retryable() && tries < 100 => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("writer {w} batch {b}: {e}"),
                    }
                };
                assert_eq!(result.count, records.len() as u64);
                acked.push((b, result));
            }
            (w, acked)
        }));
    }
    let mut all_acked = Vec::new();
    for t in tasks {
        all_acked.push(t.await.unwrap());
    }

    // Everything through the direct connection: contiguous from 0, each acknowledged batch at
    // its offsets exactly once, nothing else.
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let batch = direct
            .read(&stream, from, ReadOptions::limit(1000))
            .await
            .unwrap();
        if batch.records.is_empty() {
            break;
        }
        from = batch.next_offset;
        records.extend(batch.records);
    }
    let expected: usize = all_acked
        .iter()
        .flat_map(|(_, a)| a.iter().map(|(_, r)| usize::try_from(r.count).unwrap()))
        .sum();
    assert_eq!(records.len(), expected, "records stored vs acknowledged");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64, "offsets are dense from 0");
    }
    let mut seen = HashSet::new();
    for r in &records {
        assert!(seen.insert(r.payload.clone()), "duplicate {:?}", r.payload);
    }
    for (w, acked) in &all_acked {
        for (b, result) in acked {
            for i in 0..result.count {
                let at = usize::try_from(result.first_offset + i).unwrap();
                assert_eq!(
                    records[at].payload,
                    payload(*w, *b, usize::try_from(i).unwrap()),
                    "writer {w} batch {b} record {i}"
                );
            }
        }
    }

    // Phase 2, without keys: one writer with `Expect::Next`, so every refusal would be a false
    // `Conflict` caused by its own lost reply (nobody else writes). The adapter must recognize
    // its own batch by its id; only `Unavailable` may remain (the writer then looks itself).
    let lone = StreamId::new("faults/next").unwrap();
    let mut looked = 0;
    for (next, b) in (0u64..).zip(0..40usize) {
        let records = vec![payload(9, b, 0)];
        loop {
            match faulty
                .append(
                    &lone,
                    records.clone(),
                    AppendOptions::expect(streamstore::Expect::Next(next)),
                )
                .await
            {
                Ok(r) => {
                    assert_eq!(r.first_offset, next);
                    break;
                }
                Err(e) if e.is_retryable() && looked < 200 => {
                    looked += 1;
                    let now = direct.info(&lone).await.map_or(0, |i| i.next_offset);
                    if now == next + 1 {
                        break;
                    }
                    assert_eq!(now, next, "the stream moved by itself");
                }
                Err(e) => panic!("batch {b} at {next}: {e} (a lost reply taken for a conflict?)"),
            }
        }
    }
    let got = direct
        .read(&lone, 0, ReadOptions::limit(1000))
        .await
        .unwrap();
    assert_eq!(got.records.len(), 40);
    for (b, r) in got.records.iter().enumerate() {
        assert_eq!(r.payload, payload(9, b, 0));
    }

    proxy_task.abort();
    faulty.close().await.unwrap();
    direct.close().await.unwrap();
    DynamoDbStore::destroy(&direct_config).await.unwrap();
    let dropped = counters.replies_dropped.load(Ordering::Relaxed);
    println!(
        "dynamodb faults: {} appends by {WRITERS} writers, {} records, {dropped} replies and {} requests dropped by the proxy, {} Unavailable retried; 40 unkeyed Expect::Next appends, {looked} looked up after Unavailable, no false Conflict; nothing lost or duplicated ({:.1} s)",
        WRITERS * BATCHES,
        records.len(),
        counters.requests_dropped.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        dropped > 0,
        "the proxy dropped no reply: the test proved nothing"
    );
}
