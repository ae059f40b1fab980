//! The matching node (`streamstore-node`) as a server peer: the local engine in `Sync` mode behind
//! the node's HTTP API, in a process the harness starts for the case, driven over loopback by
//! `reqwest` like an application would. Against Redis (also a server over loopback) this is the
//! fair comparison: both pay a round trip and a request parse per append.
//!
//! - Durability: `--durability sync` (the node's default): the HTTP answer comes after the
//!   engine's group commit, so an acknowledged append is on disk.
//! - An append of one record is `POST /v1/streams/{id}/records` with the payload as the body
//!   (`application/octet-stream`: one record, byte for byte). Batches of several records are
//!   refused: the node appends them atomically only as NDJSON, one JSON value per record, and
//!   the harness's random payloads are not JSON (the server cases append one record per call).
//! - Offsets are the node's (the engine's): dense from 0 per stream.
//! - Clients: one `reqwest` client; its pool keeps one HTTP/1.1 connection per request in
//!   flight, so the 64 closed-loop appenders hold 64 connections, as 64 clients would.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::backend::{stream_name, BenchBackend, Result};
use crate::peers::servers::{free_port, Program, Server};

/// A `streamstore-node` of its own and an HTTP client for it.
pub struct NodeBackend {
    server: Mutex<Option<Server>>,
    port: u16,
    client: reqwest::Client,
    /// `http://127.0.0.1:<port>/v1/streams/<id>` per stream (the id percent-encoded).
    urls: Vec<String>,
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
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        let urls = (0..streams)
            .map(|i| {
                // Stream ids are one path segment: `bench/000001` is `bench%2F000001`.
                let id = stream_name(i).replace('/', "%2F");
                format!("http://127.0.0.1:{port}/v1/streams/{id}")
            })
            .collect();
        Ok(NodeBackend {
            server: Mutex::new(Some(server)),
            port,
            client,
            urls,
        })
    }

    /// The node's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn url(&self, stream: usize) -> Result<&str> {
        self.urls
            .get(stream)
            .map(String::as_str)
            .ok_or_else(|| format!("stream {stream} out of range").into())
    }
}

/// Fails with the node's status and error body unless the answer is a success.
async fn check(answer: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    let status = answer.status();
    if status.is_success() {
        return Ok(answer);
    }
    let body = answer.text().await.unwrap_or_default();
    Err(format!("node {what}: HTTP {status}: {body}").into())
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
        let url = format!("{}/records", self.url(stream)?);
        let [one] = records.as_slice() else {
            return Err(format!(
                "the node peer appends one record per call, not {} records (its batches are \
                 NDJSON of JSON values; see the module docs)",
                records.len()
            )
            .into());
        };
        let request = self
            .client
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(one.clone());
        check(request.send().await?, "append").await?;
        Ok(())
    }

    async fn read(&self, stream: usize, from: u64, max: usize) -> Result<(usize, u64)> {
        // The node answers at most 1,000 records a request.
        let limit = max.clamp(1, 1000);
        let url = format!("{}/records?from={from}&limit={limit}", self.url(stream)?);
        let answer = check(self.client.get(url).send().await?, "read").await?;
        count_records(&answer.text().await?)
    }

    async fn close(&self) -> Result<()> {
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
