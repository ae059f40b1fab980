//! The matching node (`streamstore-node`) under load, against a real node process on 127.0.0.1
//! with the local engine in `Sync` mode:
//!
//! 1. **append → SSE delivery**, per client count (default 1,000 and 10,000): the clients follow
//!    `clients / 10` streams (10 followers each) over raw HTTP/1.1 connections; 500 appends, spread
//!    over the streams at ~250/s, each carry their send time; every delivery to every follower is
//!    one sample (p50/p99/max, from the POST being sent to the event being read).
//! 2. **memory per idle SSE connection**: the node's RSS (`/proc/<pid>/status`) once the clients
//!    are connected and idle, minus its RSS before they connected, divided by the client count.
//! 3. **HTTP records/s vs in-process**: 64 writers append 1 record each call to their own streams
//!    for `secs` through the node's HTTP API, then the same against a `LocalStore` opened in this
//!    process; one run, side by side, as a ratio.
//!
//! `cargo build --release -p streamstore-node && cargo run --release -p streamstore-bench --example node_sse -- [clients,…] [secs] [dir]`
//!
//! The node binary is found next to this example's directory (`target/release/streamstore-node`)
//! or at `STREAMSTORE_NODE_BIN`. Needs `ulimit -n` above twice the largest client count plus a
//! margin (one descriptor per client here and one per connection in the node).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use streamstore::{AppendOptions, LocalOptions, LocalStore, StreamId, StreamStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const FOLLOWERS_PER_STREAM: usize = 10;
const APPENDS: usize = 500;
const WRITERS: usize = 64;

fn node_bin() -> PathBuf {
    if let Ok(p) = std::env::var("STREAMSTORE_NODE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("streamstore-node"))
        .expect("target directory")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Node {
    child: tokio::process::Child,
    addr: String,
}

async fn start_node(dir: &std::path::Path) -> Node {
    let mut child = tokio::process::Command::new(node_bin())
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start streamstore-node (build it with cargo build --release -p streamstore-node)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .expect("stdout")
        .expect("listening line");
    let addr = line
        .split("listening on http://")
        .nth(1)
        .expect("address")
        .trim()
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Node { child, addr }
}

/// Milliseconds-resolution clock shared by producer and followers (one process).
fn now_us(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Opens one SSE connection and records, for every record event, now − the send time the
/// payload carries.
async fn follow(
    addr: String,
    stream: String,
    origin: Instant,
    samples: Arc<Mutex<Histogram<u64>>>,
    connected: Arc<AtomicU64>,
) {
    let mut sock = loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let request = format!(
        "GET /v1/streams/{stream}/events HTTP/1.1\r\nHost: n\r\nAccept: text/event-stream\r\n\r\n"
    );
    if sock.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    connected.fetch_add(1, Ordering::AcqRel);
    let mut buf = vec![0u8; 2048];
    let mut pending = Vec::new();
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let at = now_us(origin);
        pending.extend_from_slice(&buf[..n]);
        // Each record's data line carries `"payload":"t=<send time in µs>"`.
        while let Some(i) = find(&pending, b"\"t=") {
            let rest = &pending[i + 3..];
            let Some(end) = rest.iter().position(|b| *b == b'"') else {
                break;
            };
            let sent: u64 = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(at);
            if let Ok(mut h) = samples.lock() {
                let _ = h.record(at.saturating_sub(sent).max(1));
            }
            let consumed = i + 3 + end;
            pending.drain(..consumed);
        }
        if pending.len() > 4096 {
            let keep = pending.len() - 64;
            pending.drain(..keep);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn delivery(clients: usize, dir: &std::path::Path) {
    let node = start_node(&dir.join(format!("sse-{clients}"))).await;
    let pid = node.child.id().expect("pid");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let streams = (clients / FOLLOWERS_PER_STREAM).max(1);
    // Create the streams first, so the followers wait on existing streams.
    for s in 0..streams {
        let url = format!("http://{}/v1/streams/bench-{s}/records", node.addr);
        http.post(url).body("t=0").send().await.expect("create");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);
    let origin = Instant::now();
    let samples = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let stream = format!("bench-{}", c % streams);
        tasks.push(tokio::spawn(follow(
            node.addr.clone(),
            stream,
            origin,
            Arc::clone(&samples),
            Arc::clone(&connected),
        )));
    }
    while connected.load(Ordering::Acquire) < clients as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every follower deliver the creation record and go idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = rss_kib(pid);
    if let Ok(mut h) = samples.lock() {
        h.reset();
    }
    let pause = Duration::from_micros(4000);
    for i in 0..APPENDS {
        let url = format!(
            "http://{}/v1/streams/bench-{}/records",
            node.addr,
            (i * 7919) % streams
        );
        let body = format!("t={}", now_us(origin));
        let http = http.clone();
        tokio::spawn(async move {
            let _ = http.post(url).body(body).send().await;
        });
        tokio::time::sleep(pause).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = samples.lock().expect("lock").clone();
    let per_conn = (rss_idle.saturating_sub(rss_before) * 1024) / clients as u64;
    println!(
        "node sse clients={clients}: delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} deliveries of {} expected); idle RSS {} KiB -> {} KiB, {} B per idle connection",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len(),
        APPENDS * FOLLOWERS_PER_STREAM,
        rss_before,
        rss_idle,
        per_conn,
    );
    for t in tasks {
        t.abort();
    }
}

async fn throughput(secs: u64, dir: &std::path::Path) {
    let node = start_node(&dir.join("http")).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let run = |label: &'static str,
               op: Arc<
        dyn Fn(usize, u64) -> futures::future::BoxFuture<'static, ()> + Send + Sync,
    >| async move {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (stop, done, op) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&op));
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    op(w, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::AcqRel);
                }
            }));
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Release);
        for t in tasks {
            let _ = t.await;
        }
        let rate = done.load(Ordering::Acquire) as f64 / started.elapsed().as_secs_f64();
        println!(
            "node {label}: {rate:.0} records/s ({WRITERS} writers, 1 record per append, Sync)"
        );
        rate
    };
    let addr = node.addr.clone();
    let over_http = run(
        "http",
        Arc::new(move |w, i| {
            let url = format!("http://{addr}/v1/streams/w{w}/records");
            let req = http.post(url).body(format!("record {i}"));
            Box::pin(async move {
                let r = req.send().await.expect("append");
                assert!(r.status().is_success());
            })
        }),
    )
    .await;
    let store: Arc<dyn StreamStore> = Arc::new(
        LocalStore::open(dir.join("inproc"), LocalOptions::default())
            .await
            .expect("open"),
    );
    let s2 = Arc::clone(&store);
    let in_process = run(
        "in-process",
        Arc::new(move |w, i| {
            let store = Arc::clone(&s2);
            Box::pin(async move {
                let id = StreamId::new(format!("w{w}")).expect("id");
                store
                    .append(
                        &id,
                        vec![Bytes::from(format!("record {i}"))],
                        AppendOptions::default(),
                    )
                    .await
                    .expect("append");
            })
        }),
    )
    .await;
    store.close().await.expect("close");
    println!(
        "ratio node_http_vs_in_process {:.3}",
        over_http / in_process
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clients: Vec<usize> = args
        .first()
        .map(|s| s.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let tmp = match args.get(2) {
        Some(d) => tempfile::Builder::new().prefix("node-bench").tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    for c in clients {
        delivery(c, tmp.path()).await;
    }
    throughput(secs, tmp.path()).await;
}
