//! Redis Streams: one Redis stream per stream, `XADD` with the append-only file on, driven through
//! the `redis` crate (tokio) against a `redis-server` the harness starts for the case.
//!
//! - Durability: `appendonly yes` with `appendfsync always` (Redis writes and fsyncs the AOF in
//!   its event loop before it sends the replies of the commands it ran: one `fdatasync` covers
//!   every command read in that loop iteration, Redis's group commit) or `everysec` (acknowledged
//!   from memory; a background fsync once a second). RDB snapshots are off (`save ""`).
//! - Offsets: `XADD key 0-* …` lets Redis assign ids `0-1, 0-2, …` in the key, so offset `n` is
//!   id `0-(n+1)`: dense from 0 per stream, assigned by the server like the engine's.
//! - A batch of several records is one `MULTI`/`EXEC` of `XADD`s (atomic, one reply).
//! - Clients: [`CONNECTIONS`] connections, each append on the next one in turn, so the 64
//!   closed-loop appenders look to Redis like 64 clients (one event-loop pass then reads and
//!   syncs the commands of all of them, as it would for 64 application processes).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::backend::{stream_name, BenchBackend, Result};
use crate::peers::servers::{free_port, Program, Server};

/// Connections to the server (one per appender of the 64-appender cases).
pub const CONNECTIONS: usize = 64;

/// Redis's `appendfsync` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// `appendfsync always`: every reply after its fsync.
    Always,
    /// `appendfsync everysec`: replies from memory, fsync once a second.
    EverySec,
}

impl Fsync {
    /// The `appendfsync` value.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
        }
    }
}

/// A `redis-server` of its own and connections to it.
pub struct RedisBackend {
    server: Mutex<Option<Server>>,
    port: u16,
    conns: Vec<MultiplexedConnection>,
    next: AtomicUsize,
    keys: Vec<String>,
}

impl RedisBackend {
    /// Starts `redis-server` with its data in `dir` and the AOF policy `fsync`, and connects.
    pub async fn open(dir: &Path, fsync: Fsync, streams: usize) -> Result<Self> {
        let data = dir.join("redis");
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let (port_arg, dir_arg) = (port.to_string(), data.to_string_lossy());
        let args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--port",
            port_arg.as_str(),
            "--dir",
            &*dir_arg,
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync.name(),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--maxclients",
            "1000",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let server = Server::start(Program::Redis, &args, port, &dir.join("redis.log")).await?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        // The crate's default response timeout (500 ms) would fail an append whose fsync is
        // slow on a busy disk; a benchmark measures that latency instead of erroring on it.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(60)));
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            conns.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        Ok(RedisBackend {
            server: Mutex::new(Some(server)),
            port,
            conns,
            next: AtomicUsize::new(0),
            keys: (0..streams).map(stream_name).collect(),
        })
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn conn(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    fn key(&self, stream: usize) -> Result<&str> {
        self.keys
            .get(stream)
            .map(String::as_str)
            .ok_or_else(|| format!("stream {stream} out of range").into())
    }
}

#[async_trait]
impl BenchBackend for RedisBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let key = self.key(stream)?;
        let mut conn = self.conn();
        if let [one] = records.as_slice() {
            let _id: String = redis::cmd("XADD")
                .arg(key)
                .arg("0-*")
                .arg("p")
                .arg(one.as_ref())
                .query_async(&mut conn)
                .await?;
        } else {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for r in &records {
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("0-*")
                    .arg("p")
                    .arg(r.as_ref())
                    .ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let key = self.key(stream)?;
        let mut conn = self.conn();
        // Offset `from` is id `0-(from+1)` (see the module docs).
        let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("0-{}", from + 1))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await?;
        // Each entry's fields are [name, value]: the payload is every second item.
        let bytes = entries
            .iter()
            .flat_map(|(_, fields)| fields.iter().skip(1).step_by(2))
            .map(|v| v.len() as u64)
            .sum();
        Ok((entries.len(), bytes))
    }

    async fn close(&self) -> Result<()> {
        if let Some(server) = self.server.lock().await.take() {
            server.stop().await?;
        }
        Ok(())
    }
}
