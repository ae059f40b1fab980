//! The matching node (`streamstore-node`) as a server peer: the local engine in `Sync` mode behind
//! the node's HTTP API, in a process the harness starts for the case, driven over loopback by
//! HTTP/1.1 clients like an application's. Against Redis (also a server over loopback) this is the
//! fair comparison: both pay a round trip and a request parse per append.
//!
//! - Durability: `--durability sync` (the node's default): the HTTP answer comes after the
//!   engine's group commit, so an acknowledged append is on disk.
//! - An append of one record is `POST /v1/streams/{id}/records` with the payload as the body
//!   (`application/octet-stream`: one record, byte for byte). Batches of several records are
//!   refused: the node appends them atomically only as NDJSON, one JSON value per record, and
//!   the harness's random payloads are not JSON (the server cases append one record per call).
//! - Offsets are the node's (the engine's): dense from 0 per stream.
//! - Clients: HTTP/1.1 connections driven directly through `hyper`'s client connection (no
//!   `reqwest`: its per-request URL parsing, pool bookkeeping and extra tasks cost the harness
//!   CPU that, on the 2 cores clients and server share, the node would otherwise get). An append
//!   takes an idle connection from a free list or opens one, so the 64 closed-loop appenders hold
//!   64 keep-alive connections, one request in flight on each, as 64 clients would; Redis's peer
//!   has 64 connections too.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::PoisonError;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use crate::backend::{stream_name, BenchBackend, Result};
use crate::peers::servers::{free_port, Program, Server};

/// The sending half of one HTTP/1.1 connection to the node.
type Connection = SendRequest<Full<Bytes>>;

/// A `streamstore-node` of its own and HTTP/1.1 connections to it.
pub struct NodeBackend {
    server: Mutex<Option<Server>>,
    port: u16,
    /// `127.0.0.1:<port>`, the `Host` of every request.
    host: HeaderValue,
    /// Connections with no request in flight. A `std` mutex: it is held only to push or pop,
    /// never across an `.await`.
    idle: std::sync::Mutex<Vec<Connection>>,
    /// `/v1/streams/<id>` per stream (the id percent-encoded).
    paths: Vec<String>,
    /// `/v1/streams/<id>/records` per stream, parsed once (a `Uri` clone shares its bytes).
    records: Vec<Uri>,
}

/// The request timeout: long enough that a slow commit on a busy disk is measured, not failed.
const TIMEOUT: Duration = Duration::from_secs(60);

impl NodeBackend {
    /// Starts `streamstore-node` with the local engine in `Sync` mode in `dir`.
    pub async fn open(dir: &Path, streams: usize) -> Result<Self> {
        let data = dir.join("node");
        let port = free_port()?;
        let args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--store".into(),
            data.to_string_lossy().into_owned(),
            "--durability".into(),
            "sync".into(),
        ];
        let server = Server::start(Program::Node, &args, port, &dir.join("node.log")).await?;
        // Stream ids are one path segment: `bench/000001` is `bench%2F000001`.
        let paths: Vec<String> = (0..streams)
            .map(|i| format!("/v1/streams/{}", stream_name(i).replace('/', "%2F")))
            .collect();
        let records = paths
            .iter()
            .map(|p| Uri::try_from(format!("{p}/records")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeBackend {
            server: Mutex::new(Some(server)),
            port,
            host: HeaderValue::try_from(format!("127.0.0.1:{port}"))?,
            idle: std::sync::Mutex::new(Vec::new()),
            paths,
            records,
        })
    }

    /// The node's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn path(&self, stream: usize) -> Result<&str> {
        self.paths
            .get(stream)
            .map(String::as_str)
            .ok_or_else(|| format!("stream {stream} out of range").into())
    }

    /// Opens a connection; its I/O runs in a task of its own (as in hyper's own pools), which
    /// ends when the connection is dropped or the node closes it.
    async fn connect(&self) -> Result<Connection> {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // An error here is a connection the node closed; its next request finds it closed
            // and a fresh connection is opened instead.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self) -> Result<Connection> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some(mut conn) => {
                    if conn.ready().await.is_ok() {
                        return Ok(conn);
                    }
                    // Closed by the node: dropped, try the next.
                }
                None => return self.connect().await,
            }
        }
    }

    /// One request and its whole answer (status and body).
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let mut conn = self.checkout().await?;
        let answered = tokio::time::timeout(TIMEOUT, async {
            let response = conn.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await
        .map_err(|_| format!("node: no answer within {TIMEOUT:?}"))??;
        // Only after a complete exchange is the connection reused (an abandoned one is closed
        // by hyper and dropped here with the error).
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        Ok(answered)
    }
}

/// Fails with the node's status and error body unless the answer is a success.
fn check(status: StatusCode, body: &Bytes, what: &str) -> Result<()> {
    if status.is_success() {
        return Ok(());
    }
    Err(format!(
        "node {what}: HTTP {status}: {}",
        String::from_utf8_lossy(body)
    )
    .into())
}

/// The records and payload bytes of a read's JSON answer (`{"records":[{"offset", …,
/// "payload" | "payload_base64"}, …], …}`).
fn count_records(body: &str) -> Result<(usize, u64)> {
    let answer: serde_json::Value = serde_json::from_str(body)?;
    let records = answer
        .get("records")
        .and_then(serde_json::Value::as_array)
        .ok_or("node read: no records array in the answer")?;
    let mut bytes = 0u64;
    for r in records {
        bytes += match (r.get("payload"), r.get("payload_base64")) {
            (Some(serde_json::Value::String(text)), _) => text.len() as u64,
            // Base64 without line breaks: 3 bytes per 4 characters, less the padding.
            (_, Some(serde_json::Value::String(b64))) => {
                let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
                (b64.len() / 4 * 3).saturating_sub(pad) as u64
            }
            _ => return Err("node read: a record without a payload".into()),
        };
    }
    Ok((records.len(), bytes))
}

#[async_trait]
impl BenchBackend for NodeBackend {
    async fn append(&self, stream: usize, records: Vec<Bytes>) -> Result<()> {
        let uri = self
            .records
            .get(stream)
            .ok_or_else(|| format!("stream {stream} out of range"))?
            .clone();
        let [one] = records.as_slice() else {
            return Err(format!(
                "the node peer appends one record per call, not {} records (its batches are \
                 NDJSON of JSON values; see the module docs)",
                records.len()
            )
            .into());
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(HOST, self.host.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .body(Full::new(one.clone()))?;
        let (status, body) = self.exchange(request).await?;
        check(status, &body, "append")
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        // The node answers at most 1,000 records a request.
        let limit = max.clamp(1, 1000);
        let uri = format!("{}/records?from={from}&limit={limit}", self.path(stream)?);
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(HOST, self.host.clone())
            .body(Full::new(Bytes::new()))?;
        let (status, body) = self.exchange(request).await?;
        check(status, &body, "read")?;
        count_records(std::str::from_utf8(&body)?)
    }

    async fn close(&self) -> Result<()> {
        // Idle connections first, so the node sees them close before it is stopped.
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if let Some(server) = self.server.lock().await.take() {
            server.stop().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_payload_bytes_are_counted_from_the_answer() {
        let body = r#"{"stream":"a","records":[{"offset":0,"timestamp_ms":1,"payload":"ab\"c"},{"offset":1,"timestamp_ms":2,"payload_base64":"AAEC"}],"next_offset":2}"#;
        // `ab"c` is 4 bytes; `AAEC` decodes to 3.
        assert_eq!(count_records(body).unwrap(), (2, 7));
        assert_eq!(count_records(r#"{"records":[]}"#).unwrap(), (0, 0));
        assert!(count_records(r#"{"error":"x"}"#).is_err());
    }
}
