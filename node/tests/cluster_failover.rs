//! End to end: three node processes sharing one PostgreSQL database; producers append through
//! random nodes with idempotency keys and `expect=N`; an SSE consumer follows every stream; one
//! node is SIGKILLed mid-run and the consumers reconnect elsewhere with `Last-Event-ID`. Every
//! acknowledged record must reach its consumer exactly once, in order, and every stream must end
//! at its seal.
//!
//! Needs `STREAMSTORE_POSTGRES_URL` (`eval "$(scripts/services.sh up postgres)"`); without it the
//! test says so and passes without running.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, enc, free_port, Follower, Next, NodeProc, Sse};
use rand::Rng;
use serde_json::Value;

const STREAMS: usize = 120;
const RECORDS: u64 = 25;
const NODES: usize = 3;

/// The addresses producers and consumers may pick from (the killed node is removed).
type Alive = Arc<Mutex<Vec<String>>>;

fn pick(alive: &Alive) -> String {
    let alive = alive.lock().expect("lock");
    alive[rand::thread_rng().gen_range(0..alive.len())].clone()
}

fn payload(stream: usize, i: u64) -> String {
    format!("s{stream}-r{i}")
}

fn stream_name(i: usize) -> String {
    format!("failover/job {i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_and_duplicates_nothing() {
    let Ok(url) = std::env::var("STREAMSTORE_POSTGRES_URL") else {
        let _ = writeln!(
            std::io::stdout(),
            "node failover: skipped (STREAMSTORE_POSTGRES_URL is not set)"
        );
        return;
    };
    let prefix = format!("nodefo{:08x}_", rand::random::<u32>());
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = format!("{url}{sep}table_prefix={prefix}");
    let started = Instant::now();

    let addrs: Vec<String> = (0..NODES)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let peers: Vec<&str> = addrs
            .iter()
            .filter(|a| *a != addr)
            .map(String::as_str)
            .collect();
        let peers = peers.join(",");
        let id = format!("node{i}");
        let args = [
            "--listen",
            addr,
            "--store",
            &store,
            "--node-id",
            &id,
            "--peers",
            &peers,
            "--heartbeat",
            "1s",
        ];
        // The first node creates the tables; the others start once it answers.
        nodes.push(NodeProc::start(&args).await);
    }
    let http = client();
    wait_for_full_membership(&http, &nodes).await;

    let alive: Alive = Arc::new(Mutex::new(addrs.clone()));
    let acked = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for s in 0..STREAMS {
        consumers.push(tokio::spawn(consume(http.clone(), Arc::clone(&alive), s)));
    }
    let mut producers = Vec::new();
    for s in 0..STREAMS {
        producers.push(tokio::spawn(produce(
            http.clone(),
            Arc::clone(&alive),
            Arc::clone(&acked),
            s,
        )));
    }

    // Kill node 1 once about a third of the records are acknowledged.
    let total = STREAMS as u64 * RECORDS;
    while acked.load(Ordering::Acquire) < total / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alive.lock().expect("lock").retain(|a| *a != addrs[1]);
    nodes[1].kill().await;
    let killed_at = acked.load(Ordering::Acquire);

    let mut acknowledged = 0;
    for p in producers {
        acknowledged += p.await.expect("producer");
    }
    let mut lost = 0;
    let mut duplicated = 0;
    let mut unended = 0;
    let mut reconnects = 0;
    for (s, c) in consumers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .unwrap_or_else(|_| panic!("consumer of stream {s} did not reach the end in 60 s"))
            .expect("consumer");
        reconnects += seen.connections - 1;
        if !seen.ended {
            unended += 1;
        }
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for (offset, text) in &seen.records {
            assert_eq!(
                *text,
                payload(s, *offset),
                "stream {s} offset {offset} has the wrong payload"
            );
            *counts.entry(*offset).or_default() += 1;
        }
        lost += (0..RECORDS).filter(|o| !counts.contains_key(o)).count();
        duplicated += counts.values().map(|n| n - 1).sum::<u64>();
        let offsets: Vec<u64> = seen.records.iter().map(|r| r.0).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "stream {s} delivered out of order");
        assert!(
            seen.records.len() as u64 <= RECORDS,
            "stream {s} got records that were never acknowledged"
        );
    }
    // Written to stdout directly (not `println!`), so the summary shows even though libtest
    // captures a passing test's prints.
    let _ = writeln!(
        std::io::stdout(),
        "node failover: {acknowledged} records, {lost} lost, {duplicated} duplicated \
         ({STREAMS} streams, node1 SIGKILLed after {killed_at} acks, {reconnects} consumer reconnects, \
         {unended} streams without end, {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acknowledged, total);
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(unended, 0);
    assert!(
        reconnects > 0,
        "no consumer had to reconnect: the kill tested nothing"
    );

    for node in &mut nodes {
        if node.child.id().is_some() {
            let _ = node.terminate().await;
        }
    }
    let _ = streamstore_postgres::PostgresStore::destroy(&url, &prefix).await;
}

async fn wait_for_full_membership(http: &reqwest::Client, nodes: &[NodeProc]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        loop {
            let live = async {
                let v: Value = http
                    .get(node.url("/healthz"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                Some(v["live"].as_array()?.len())
            }
            .await;
            if live == Some(nodes.len()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw every member",
                node.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Appends records 0..RECORDS in order, each through a random node, retrying the same
/// idempotency key and expectation until acknowledged; then seals. Returns the records acked.
async fn produce(http: reqwest::Client, alive: Alive, acked: Arc<AtomicU64>, s: usize) -> u64 {
    let stream = stream_name(s);
    for i in 0..RECORDS {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 200, "record {i} of stream {s} never acknowledged");
            let url = format!(
                "http://{}/v1/streams/{}/records?expect={i}",
                pick(&alive),
                enc(&stream)
            );
            let sent = http
                .post(url)
                .header("idempotency-key", format!("{s}-{i}"))
                .body(payload(s, i))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => {
                    let v: Value = r.json().await.expect("append answer");
                    assert_eq!(v["first_offset"], i, "stream {s}: {v}");
                    acked.fetch_add(1, Ordering::AcqRel);
                    break;
                }
                Ok(r) if r.status().is_server_error() => {}
                Ok(r) => panic!("stream {s} record {i}: {} {:?}", r.status(), r.text().await),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pause = rand::thread_rng().gen_range(5..40);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries < 200, "stream {s} never sealed");
        let url = format!("http://{}/v1/streams/{}/seal", pick(&alive), enc(&stream));
        match http.post(url).timeout(Duration::from_secs(10)).send().await {
            Ok(r) if r.status() == 200 => return RECORDS,
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => panic!("seal of stream {s}: {}", r.status()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Seen {
    records: Vec<(u64, String)>,
    ended: bool,
    connections: u64,
}

/// Follows one stream from the start through random nodes until its `end` event, reconnecting
/// with the last event id whenever a connection breaks or ends early.
async fn consume(http: reqwest::Client, alive: Alive, s: usize) -> Seen {
    let stream = stream_name(s);
    let mut seen = Seen {
        records: Vec::new(),
        ended: false,
        connections: 0,
    };
    let mut last_id: Option<String> = None;
    while !seen.ended {
        let base = format!("http://{}", pick(&alive));
        let Ok(mut f) = Follower::connect(&http, &base, &stream, last_id.as_deref()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        seen.connections += 1;
        loop {
            match f.next(Duration::from_secs(30)).await {
                Next::Item(Sse::Comment(_)) => {}
                Next::Item(e) => {
                    match e.kind() {
                        Some("message") => {
                            let r = e.record().expect("record event");
                            seen.records.push(r);
                        }
                        Some("end") => seen.ended = true,
                        other => panic!("stream {s}: unexpected event {other:?}: {e:?}"),
                    }
                    last_id = e.id().map(str::to_owned);
                    if seen.ended {
                        break;
                    }
                }
                Next::Closed | Next::Broken(_) => break,
                Next::TimedOut => panic!("stream {s}: nothing for 30 s (not even a heartbeat)"),
            }
        }
    }
    seen
}
