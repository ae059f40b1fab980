//! NATS JetStream: one file-storage JetStream stream `BENCH` with subjects `bench.>`, each
//! benchmark stream a subject of it (`bench.000042`), as NATS applications (and NATS's own KV
//! store) map many logical streams; driven through `async-nats` against a `nats-server` the
//! harness starts for the case.
//!
//! - Durability: `jetstream { sync_interval: always }`, NATS's setting for "an explicit sync on
//!   every write" (the default syncs every 2 minutes). [`NatsBackend::open`] checks the running
//!   server's `/varz` says `"sync_always": true` before measuring anything.
//! - An append is a JetStream publish that waits for the stream's ack (stored, then acked).
//! - Offsets: JetStream numbers messages per stream, not per subject; [`BenchBackend::read`]
//!   counts a subject's messages from its first through a consumer filtered on the subject (not
//!   used by the measured cases, which only append).
//! - Batches of several records are refused: a JetStream publish is one message, and the atomic
//!   batch publish is not driven here (the peer cases append one record per call).
//! - Clients: [`CONNECTIONS`] connections, each publish on the next one in turn (64 appenders look
//!   like 64 clients).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

use crate::backend::{BenchBackend, Result};
use crate::peers::servers::{free_port, Program, Server};

/// Connections to the server (one per appender of the 64-appender cases).
pub const CONNECTIONS: usize = 64;

/// The JetStream stream every benchmark stream is a subject of.
const STREAM: &str = "BENCH";

/// A `nats-server` of its own with JetStream on, and connections to it.
pub struct NatsBackend {
    server: Mutex<Option<Server>>,
    port: u16,
    contexts: Vec<jetstream::Context>,
    next: AtomicUsize,
    subjects: Vec<String>,
}

/// The server's configuration: loopback only, JetStream on file storage in `store`, a sync on
/// every write, monitoring on `monitor` (for the `/varz` check).
fn config(port: u16, monitor: u16, store: &Path) -> String {
    // `{:?}` quotes the path as a JSON-style string, which the NATS config parser reads.
    format!(
        "listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
         jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n"
    )
}

/// `GET /varz` of the monitoring port, as text.
async fn varz(monitor: u16) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", monitor)).await?;
    s.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

impl NatsBackend {
    /// Starts `nats-server` with its JetStream store in `dir`, checks that it syncs every write,
    /// creates the stream and connects.
    pub async fn open(dir: &Path, streams: usize) -> Result<Self> {
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let (port, monitor) = (free_port()?, free_port()?);
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, config(port, monitor, &store))?;
        let args = vec!["-c".to_string(), conf.to_string_lossy().into_owned()];
        let server = Server::start(Program::Nats, &args, port, &dir.join("nats.log")).await?;
        let v = varz(monitor).await?;
        if !v.replace([' ', '\n'], "").contains("\"sync_always\":true") {
            server.stop().await?;
            return Err("nats-server's /varz does not report sync_always: true".into());
        }
        let mut contexts = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let client = async_nats::connect(format!("nats://127.0.0.1:{port}")).await?;
            contexts.push(jetstream::new(client));
        }
        contexts[0]
            .create_stream(stream::Config {
                name: STREAM.to_string(),
                subjects: vec!["bench.>".to_string()],
                storage: stream::StorageType::File,
                ..stream::Config::default()
            })
            .await?;
        Ok(NatsBackend {
            server: Mutex::new(Some(server)),
            port,
            contexts,
            next: AtomicUsize::new(0),
            subjects: (0..streams).map(|i| format!("bench.{i:06}")).collect(),
        })
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn context(&self) -> &jetstream::Context {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.contexts.len();
        &self.contexts[i]
    }

    fn subject(&self, stream: usize) -> Result<&str> {
        self.subjects
            .get(stream)
            .map(String::as_str)
            .ok_or_else(|| format!("stream {stream} out of range").into())
    }
}

#[async_trait]
impl BenchBackend for NatsBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let subject = self.subject(stream)?.to_string();
        let [one] = <[Bytes; 1]>::try_from(records).map_err(|r| {
            format!(
                "NATS peer: {} records in one append; only single-record appends are driven",
                r.len()
            )
        })?;
        // The first await sends; the second waits for the stream's ack (stored).
        self.context().publish(subject, one).await?.await?;
        Ok(())
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        let subject = self.subject(stream)?.to_string();
        let subject_of = subject.clone();
        let js = self.context();
        let s = js.get_stream(STREAM).await?;
        let consumer = s
            .create_consumer(consumer::pull::Config {
                filter_subject: subject,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..consumer::pull::Config::default()
            })
            .await?;
        let pending = consumer.cached_info().num_pending;
        let want = pending.min(from.saturating_add(max as u64));
        let (mut seen, mut count, mut bytes) = (0u64, 0usize, 0u64);
        while seen < want {
            let batch = usize::try_from(want - seen)?;
            let mut msgs = consumer.fetch().max_messages(batch).messages().await?;
            let before = seen;
            while let Some(m) = msgs.next().await {
                let m = m?;
                if seen >= from {
                    count += 1;
                    bytes += m.payload.len() as u64;
                }
                seen += 1;
            }
            if seen == before {
                return Err(format!(
                    "NATS peer: {subject_of} delivered nothing at {seen} of {want}"
                )
                .into());
            }
        }
        s.delete_consumer(&consumer.cached_info().name).await?;
        Ok((count, bytes))
    }

    async fn close(&self) -> Result<()> {
        if let Some(server) = self.server.lock().await.take() {
            server.stop().await?;
        }
        Ok(())
    }
}
