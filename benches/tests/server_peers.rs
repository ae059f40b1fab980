//! The server peers of the harness against real servers: each test starts its own `redis-server`
//! / `nats-server` / `streamstore-node` (prints SKIPPED and passes when the program is not installed:
//! `scripts/peers.sh install`), appends through the same `BenchBackend` the benchmark drives,
//! reads back what it acknowledged, and checks that closing the backend stops the server.

#![cfg(feature = "peers")]

use std::net::Ipv4Addr;

use bytes::Bytes;
use streamstore_bench::backend::BenchBackend;
use streamstore_bench::peers::nats::NatsBackend;
use streamstore_bench::peers::node::NodeBackend;
use streamstore_bench::peers::redis::{Fsync, RedisBackend};
use streamstore_bench::peers::servers::{find, Program};

fn installed(program: Program) -> bool {
    match find(program) {
        Ok(_) => true,
        Err(why) => {
            println!("SKIPPED: {why}");
            false
        }
    }
}

fn payload(stream: usize, i: usize) -> Bytes {
    Bytes::from(format!("stream {stream} record {i} {}", "x".repeat(i)))
}

/// Appends `n` single records to streams 0 and 1 (interleaved), then reads each back.
async fn append_and_read_back(backend: &dyn BenchBackend, n: usize) {
    for i in 0..n {
        for s in 0..2 {
            backend.append(s, vec![payload(s, i)]).await.unwrap();
        }
    }
    for s in 0..2 {
        let want: u64 = (0..n).map(|i| payload(s, i).len() as u64).sum();
        assert_eq!(backend.read(s, 0, n + 10).await.unwrap(), (n, want));
        // From an offset: the records from there on, no more than asked for.
        let from = n / 2;
        let want: u64 = (from..from + 2).map(|i| payload(s, i).len() as u64).sum();
        assert_eq!(backend.read(s, from as u64, 2).await.unwrap(), (2, want));
    }
    // A stream never written reads empty.
    assert_eq!(backend.read(2, 0, 10).await.unwrap(), (0, 0));
}

/// A batch of several records fails naming its size, and writes nothing (stream 2 stays empty).
async fn refuses_batches(backend: &dyn BenchBackend) {
    let e = backend
        .append(2, vec![payload(2, 0), payload(2, 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("2 records"), "{e}");
    assert_eq!(backend.read(2, 0, 10).await.unwrap(), (0, 0));
}

/// Nothing listens on `port` any more: closing the backend stopped the server `name`.
async fn assert_stopped(port: u16, name: &str) {
    assert!(
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_err(),
        "{name} still listening on {port} after close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_keep_dense_offsets_and_atomic_batches() {
    if !installed(Program::Redis) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = RedisBackend::open(dir.path(), Fsync::Always, 3)
        .await
        .unwrap();
    let port = backend.port();
    append_and_read_back(&backend, 8).await;
    // A batch lands whole, right after the single records.
    let batch: Vec<Bytes> = (0..5).map(|i| payload(9, i)).collect();
    let bytes: u64 = batch.iter().map(|b| b.len() as u64).sum();
    backend.append(2, batch).await.unwrap();
    assert_eq!(backend.read(2, 0, 100).await.unwrap(), (5, bytes));
    // The AOF is on and written: durable appends reach the data dir.
    let aof: u64 = std::fs::read_dir(dir.path().join("redis/appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(aof > bytes, "appendonlydir holds {aof} bytes");
    backend.close().await.unwrap();
    assert_stopped(port, "redis-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_acks_stored_messages_and_refuses_batches() {
    if !installed(Program::Nats) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = NatsBackend::open(dir.path(), 3).await.unwrap();
    let port = backend.port();
    append_and_read_back(&backend, 8).await;
    refuses_batches(&backend).await;
    backend.close().await.unwrap();
    assert_stopped(port, "nats-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_the_engine_over_http_and_refuses_batches() {
    if !installed(Program::Node) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = NodeBackend::open(dir.path(), 3).await.unwrap();
    let port = backend.port();
    append_and_read_back(&backend, 8).await;
    refuses_batches(&backend).await;
    backend.close().await.unwrap();
    assert_stopped(port, "streamstore-node").await;
    // The engine behind it kept the records: reopened in process, both streams hold them.
    let store = streamstore::LocalStore::open(dir.path().join("node"), Default::default())
        .await
        .unwrap();
    for s in 0..2 {
        let id = streamstore::StreamId::new(streamstore_bench::backend::stream_name(s)).unwrap();
        let info = streamstore::StreamStore::info(&store, &id).await.unwrap();
        assert_eq!(info.next_offset, 8, "{info:?}");
    }
}
