//! Long-poll and SSE semantics on one node with the local engine: real process, real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{client, enc, Follower, Next, NodeProc, Sse, SseParser};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    node: NodeProc,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mut args = vec!["--store", store.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Fixture {
        node: NodeProc::start(&args).await,
        http: client(),
        _dir: dir,
    }
}

impl Fixture {
    fn base(&self) -> String {
        self.node.url("")
    }

    async fn append(&self, stream: &str, payload: &str) -> reqwest::Response {
        self.http
            .post(
                self.node
                    .url(&format!("/v1/streams/{}/records", enc(stream))),
            )
            .body(payload.to_owned())
            .send()
            .await
            .expect("append")
    }

    async fn append_ok(&self, stream: &str, payload: &str) -> Value {
        let r = self.append(stream, payload).await;
        assert_eq!(r.status(), 200, "append {payload:?}");
        r.json().await.expect("json")
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(self.node.url(path))
            .send()
            .await
            .expect("post")
    }

    async fn follow(&self, stream: &str, token: Option<&str>) -> Follower {
        Follower::connect(&self.http, &self.base(), stream, token)
            .await
            .expect("connect")
    }
}

async fn records(f: &mut Follower, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = f.event().await;
        let (offset, payload) = e.record().unwrap_or_else(|| panic!("not a record: {e:?}"));
        out.push((offset, payload, e.id().expect("id").to_owned()));
    }
    out
}

#[tokio::test]
async fn resume_tokens_continue_exactly_after_the_last_event() {
    let fx = start(&[]).await;
    let s = "job/resume 1";
    for i in 0..5 {
        fx.append_ok(s, &format!("r{i}")).await;
    }
    let mut f = fx.follow(s, None).await;
    let first = records(&mut f, 5).await;
    let offsets: Vec<u64> = first.iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_eq!(first[2].1, "r2");
    drop(f);
    for i in 5..8 {
        fx.append_ok(s, &format!("r{i}")).await;
    }
    // Resume after the third record (offset 2): exactly 3..8 follow.
    let mut f = fx.follow(s, Some(&first[2].2)).await;
    let again = records(&mut f, 5).await;
    let got: Vec<(u64, String)> = again.iter().map(|r| (r.0, r.1.clone())).collect();
    let want: Vec<(u64, String)> = (3..8).map(|i| (i, format!("r{i}"))).collect();
    assert_eq!(got, want);
    // Nothing more is there: the next thing is a heartbeat or a timeout, never a record.
    match f.next(Duration::from_millis(300)).await {
        Next::TimedOut | Next::Item(Sse::Comment(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    // The same token as a query parameter (clients that cannot set headers).
    let url = format!(
        "{}/v1/streams/{}/events?last_event_id={}",
        fx.base(),
        enc(s),
        again[3].2
    );
    let mut raw = fx.http.get(url).send().await.expect("get");
    let mut parser = SseParser::default();
    let mut items = Vec::new();
    while items.iter().all(|i: &Sse| i.record().is_none()) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), raw.chunk())
            .await
            .expect("chunk in time")
            .expect("chunk")
            .expect("not closed");
        items.extend(parser.feed(&chunk));
    }
    let first_record = items.iter().find_map(Sse::record).expect("record");
    assert_eq!(first_record, (7, "r7".to_owned()));
    // A malformed token is a 400, not a silent restart.
    let bad = fx
        .http
        .get(format!("{}/v1/streams/{}/events", fx.base(), enc(s)))
        .header("last-event-id", "garbage")
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn long_poll_returns_at_once_or_on_append_or_at_the_timeout() {
    let fx = start(&[]).await;
    let s = "poll";
    fx.append_ok(s, "a").await;
    let read = |from: u64, wait: &str| {
        let url = fx
            .node
            .url(&format!("/v1/streams/{s}/records?from={from}&wait={wait}"));
        let http = fx.http.clone();
        async move {
            let started = Instant::now();
            let v: Value = http
                .get(url)
                .send()
                .await
                .expect("read")
                .json()
                .await
                .expect("json");
            (v, started.elapsed())
        }
    };
    let (v, took) = read(0, "5s").await;
    assert_eq!(v["records"][0]["payload"], "a");
    assert!(
        took < Duration::from_secs(2),
        "existing records waited {took:?}"
    );
    let (v, took) = read(1, "300ms").await;
    assert_eq!(v["records"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["next_offset"], 1);
    assert!(
        took >= Duration::from_millis(250),
        "returned after {took:?}"
    );
    let waiting = tokio::spawn(read(1, "10s"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.append_ok(s, "b").await;
    let (v, took) = waiting.await.expect("join");
    assert_eq!(v["records"][0]["payload"], "b");
    assert!(took < Duration::from_secs(5), "woke after {took:?}");
    // A missing stream reads empty with no incarnation.
    let (v, _) = read(0, "0s").await;
    assert_eq!(v["sealed"], false);
    let missing: Value = fx
        .http
        .get(fx.node.url("/v1/streams/nothing/records"))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(missing["incarnation"], Value::Null);
}

#[tokio::test]
async fn reset_after_delete_never_serves_the_old_life() {
    let fx = start(&[]).await;
    let s = "job/reset";
    for i in 0..3 {
        fx.append_ok(s, &format!("old{i}")).await;
    }
    let mut f = fx.follow(s, None).await;
    let old = records(&mut f, 3).await;
    drop(f);
    let deleted: Value = fx
        .http
        .delete(fx.node.url(&format!("/v1/streams/{}", enc(s))))
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(deleted["existed"], true);
    fx.append_ok(s, "new0").await;
    fx.append_ok(s, "new1").await;
    // Resuming with the old life's token (offset 1 exists in the new life too): a reset first.
    let mut f = fx.follow(s, Some(&old[0].2)).await;
    let reset = f.event().await;
    assert_eq!(reset.kind(), Some("reset"), "{reset:?}");
    assert_eq!(reset.json()["from"], 0);
    let new = records(&mut f, 2).await;
    assert_eq!(
        new.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(),
        vec![(0, "new0"), (1, "new1")]
    );
    // While following: delete and write again; the follower is told, then gets the new life.
    fx.http
        .delete(fx.node.url(&format!("/v1/streams/{}", enc(s))))
        .send()
        .await
        .expect("delete");
    let reset = f.event().await;
    assert_eq!(reset.kind(), Some("reset"), "{reset:?}");
    fx.append_ok(s, "third").await;
    let mut next = f.event().await;
    if next.kind() == Some("reset") {
        // Deleted (incarnation null) and then re-created: told twice, both before any record.
        next = f.event().await;
    }
    assert_eq!(next.record(), Some((0, "third".to_owned())));
}

#[tokio::test]
async fn the_stream_ends_with_an_end_event_at_seal() {
    let fx = start(&[]).await;
    let s = "sealme";
    fx.append_ok(s, "only").await;
    let mut f = fx.follow(s, None).await;
    let got = records(&mut f, 1).await;
    assert_eq!(got[0].1, "only");
    let sealed = fx.post(&format!("/v1/streams/{s}/seal")).await;
    assert_eq!(sealed.status(), 200);
    let end = f.event().await;
    assert_eq!(end.kind(), Some("end"));
    assert_eq!(end.json()["next_offset"], 1);
    assert!(matches!(f.next(Duration::from_secs(5)).await, Next::Closed));
    // A client reconnecting with the end token gets `end` again at once.
    let mut f = fx.follow(s, end.id()).await;
    assert_eq!(f.event().await.kind(), Some("end"));
    // Appends after the seal: 410.
    let r = fx.append(s, "late").await;
    assert_eq!(r.status(), 410);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "sealed");
}

#[tokio::test]
async fn idle_connections_get_heartbeat_comments() {
    let fx = start(&["--heartbeat", "200ms"]).await;
    let mut f = fx.follow("quiet", None).await;
    let started = Instant::now();
    let mut comments = 0;
    while started.elapsed() < Duration::from_millis(1100) {
        match f.next(Duration::from_millis(1200)).await {
            Next::Item(Sse::Comment(c)) => {
                assert_eq!(c.trim(), "heartbeat");
                comments += 1;
            }
            Next::TimedOut => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(comments >= 3, "{comments} heartbeats in 1.1 s at 200 ms");
}

#[tokio::test]
async fn errors_have_documented_codes() {
    let fx = start(&["--max-body", "4096"]).await;
    let s = "codes";
    let r = fx
        .http
        .post(fx.node.url(&format!("/v1/streams/{s}/records?expect=none")))
        .body("a")
        .send()
        .await
        .expect("append");
    assert_eq!(r.status(), 200);
    let r = fx
        .http
        .post(fx.node.url(&format!("/v1/streams/{s}/records?expect=5")))
        .body("b")
        .send()
        .await
        .expect("append");
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["streamstore-next-offset"], "1");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["actual_next"], 1);
    let r = fx
        .http
        .post(
            fx.node
                .url(&format!("/v1/streams/{s}/records?expect=maybe")),
        )
        .body("b")
        .send()
        .await
        .expect("append");
    assert_eq!(r.status(), 400);
    let r = fx.append(s, &"x".repeat(8192)).await;
    assert_eq!(r.status(), 413);
    let r = fx
        .http
        .post(fx.node.url(&format!("/v1/streams/{s}/records")))
        .header("content-type", "application/x-ndjson")
        .body("{\"ok\":1}\n{broken\n")
        .send()
        .await
        .expect("append");
    assert_eq!(r.status(), 400);
    let r = fx
        .http
        .get(fx.node.url("/v1/streams/missing"))
        .send()
        .await
        .expect("info");
    assert_eq!(r.status(), 404);
    let r = fx.post("/v1/streams/missing/seal").await;
    assert_eq!(r.status(), 404);
    let r = fx
        .http
        .get(fx.node.url(&format!("/v1/streams/{s}/records?limit=0")))
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 400);
    let info: Value = fx
        .http
        .get(fx.node.url(&format!("/v1/streams/{s}")))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(
        info["next_offset"], 1,
        "failed appends wrote nothing: {info}"
    );
    // Idempotency: the same key and body answer the first result, even after the seal.
    let keyed = |body: &'static str| {
        fx.http
            .post(fx.node.url(&format!("/v1/streams/{s}/records")))
            .header("idempotency-key", "k-1")
            .body(body)
            .send()
    };
    let a: Value = keyed("same")
        .await
        .expect("append")
        .json()
        .await
        .expect("json");
    fx.post(&format!("/v1/streams/{s}/seal")).await;
    let b: Value = keyed("same")
        .await
        .expect("append")
        .json()
        .await
        .expect("json");
    assert_eq!(a, b);
    assert_eq!(keyed("different").await.expect("append").status(), 400);
    let page = fx
        .http
        .get(fx.node.url("/?stream=codes"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("EventSource"));
    let metrics = fx
        .http
        .get(fx.node.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("streamstore_node_requests_total"), "{text}");
    assert!(text.contains("streamstore_node_append_seconds"), "{text}");
}

/// A client that stops reading does not make the node buffer the stream: the node reads the
/// store only as fast as the connection drains. Then the client reads everything, in order.
#[tokio::test]
async fn a_slow_client_is_held_back_not_buffered() {
    let mut fx = start(&["--sse-batch", "16", "--sse-batch-bytes", "65536"]).await;
    let s = "firehose";
    let record = format!("\"{}\"", "y".repeat(16 << 10));
    let (batches, per_batch) = (32, 64);
    let total = batches * per_batch;
    let mut sock = tokio::net::TcpStream::connect(&fx.node.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /v1/streams/{s}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    );
    sock.write_all(request.as_bytes()).await.expect("send");
    // Read only the response head, then stop reading.
    let mut head = vec![0u8; 256];
    let n = sock.read(&mut head).await.expect("head");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let body = vec![record.as_str(); per_batch].join("\n");
    for _ in 0..batches {
        let r = fx
            .http
            .post(fx.node.url(&format!("/v1/streams/{s}/records")))
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .expect("append");
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = fx
        .node
        .metric(&fx.http, "streamstore_node_records_delivered_total")
        .await;
    let rss_kib = rss_kib(fx.node.pid());
    eprintln!(
        "slow client: {delivered} of {total} records handed to the connection while it did not read; node RSS {rss_kib} KiB"
    );
    assert!(
        delivered < (total / 2) as f64,
        "{delivered} of {total} records were pushed to a client that reads nothing"
    );
    // Now read everything: every record, in order, once.
    let mut parser = SseParser::default();
    let mut next = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while next < total as u64 {
        let n = tokio::time::timeout(Duration::from_secs(20), sock.read(&mut buf))
            .await
            .expect("data in time")
            .expect("read");
        assert!(n > 0, "closed after {next} records");
        for item in parser.feed(&buf[..n]) {
            if let Some((offset, payload)) = item.record() {
                assert_eq!(offset, next);
                assert_eq!(payload, record, "offset {offset}");
                next += 1;
            }
        }
    }
    // Graceful shutdown ends the open stream cleanly and exits 0.
    let status = fx.node.terminate().await;
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest)).await;
    let tail = String::from_utf8_lossy(&rest);
    assert!(
        tail.ends_with("0\r\n\r\n"),
        "the chunked body was not ended cleanly: {tail:?}"
    );
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

/// The local engine's own figures reach the node's `/metrics` through the `metrics` facade with
/// no wiring in the node: appends, bytes, group sizes, fsync latency and recovery time.
#[tokio::test]
async fn metrics_show_the_engines_own_figures() {
    let fx = start(&[]).await;
    let s = "metered";
    for payload in ["one", "two", "three"] {
        fx.append_ok(s, payload).await;
    }
    let batch = fx
        .http
        .post(fx.node.url(&format!("/v1/streams/{s}/records")))
        .header("content-type", "application/x-ndjson")
        .body("\"a\"\n\"bb\"\n\"ccc\"\n")
        .send()
        .await
        .expect("append");
    assert_eq!(batch.status(), 200);
    let text = fx
        .http
        .get(fx.node.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value =
        |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    // A fresh store in its own process: these appends are all the engine has seen.
    assert_eq!(value("streamstore_appends_total"), 4.0, "{text}");
    assert_eq!(
        value("streamstore_appended_bytes_total"),
        f64::from(3 + 3 + 5 + 3 + 4 + 5),
        "{text}"
    );
    assert_eq!(value("streamstore_group_records_sum"), 6.0, "{text}");
    assert_eq!(value("streamstore_group_records_count"), 4.0, "{text}");
    // `sync` durability and each append awaited before the next: every one had its own
    // `fdatasync` before it was acknowledged.
    assert!(value("streamstore_fsync_seconds_count") >= 4.0, "{text}");
    assert!(value("streamstore_fsync_seconds_sum") > 0.0, "{text}");
    assert!(
        text.contains("streamstore_fsync_seconds_bucket{le=\"0.0005\"}"),
        "{text}"
    );
    assert!(value("streamstore_recovery_seconds") >= 0.0, "{text}");
}

/// The value of the unlabelled sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
