//! The plain request/response endpoints: append, long-poll read, info, seal, delete, health,
//! metrics.

use std::sync::Arc;
use std::time::Instant;
use streamstore::implementor::ErrorShorthand;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use streamstore::{
    AppendOptions, AppendResult, Error, Expect, IdempotencyKey, Incarnation, ReadBatch,
    ReadOptions, Record, StreamId,
};

use crate::config::parse_duration;
use crate::errors::ApiError;
use crate::server::Node;

/// The header that carries an append's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Most records one long-poll read returns.
pub const MAX_READ_LIMIT: usize = 1000;

/// Query of `POST /v1/streams/{id}/records`.
#[derive(Deserialize, Debug, Default)]
pub struct AppendQuery {
    /// `any` (default), `none` (the stream must not exist) or a number (the stream's next offset
    /// must be exactly this).
    pub expect: Option<String>,
}

/// Query of `GET /v1/streams/{id}/records`.
#[derive(Deserialize, Debug, Default)]
pub struct ReadQuery {
    /// First offset to return (default 0).
    pub from: Option<u64>,
    /// Most records to return (default 100, at most [`MAX_READ_LIMIT`]).
    pub limit: Option<usize>,
    /// How long to wait when nothing is there yet: `30s`, `500ms` (default: do not wait).
    pub wait: Option<String>,
}

/// `POST /v1/streams/{id}/records`: one record (the body), or one per line of an
/// `application/x-ndjson` body, appended atomically.
///
/// The hot path of the node: it reads the two headers it needs from the request in place (the
/// `HeaderMap` extractor would clone the map) and serializes its answer from a struct (no
/// intermediate `serde_json::Value`).
pub async fn append(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<AppendQuery>,
    request: Request,
) -> Response {
    match append_request(&node, &id, &q, request).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

async fn append_request(
    node: &Arc<Node>,
    id: &str,
    q: &AppendQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|key| Bytes::copy_from_slice(key.as_bytes()));
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/x-ndjson"));
    // The `Bytes` extractor, run here and first as before: the same `DefaultBodyLimit` and the
    // same rejection answers.
    let body = match Bytes::from_request(request, node).await {
        Ok(body) => body,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let stream = StreamId::new(id)?;
    let mut options = AppendOptions::expect(parse_expect(q.expect.as_deref())?);
    if let Some(key) = key {
        options = options.with_key(IdempotencyKey::new(key)?);
    }
    let records = if ndjson {
        ndjson_records(&body)?
    } else {
        vec![body]
    };
    let count = records.len() as u64;
    let started = Instant::now();
    let result = node.store.append(&stream, records, options).await?;
    node.append_seconds.record(started.elapsed().as_secs_f64());
    node.records_appended.increment(count);
    Ok(Json(AppendAnswer::new(&stream, &result)).into_response())
}

/// `any`, `none` or a next offset.
pub fn parse_expect(s: Option<&str>) -> streamstore::Result<Expect> {
    match s {
        None | Some("any") => Ok(Expect::Any),
        Some("none") => Ok(Expect::NoStream),
        Some(n) => n.parse().map(Expect::Next).map_err(|_| {
            Error::invalid(format!("expect is any, none or a next offset, not {n:?}"))
        }),
    }
}

/// Splits an NDJSON body: every non-empty line is one record, kept byte for byte; each must be
/// one JSON value, so a truncated or mixed-up body is refused instead of stored.
pub fn ndjson_records(body: &Bytes) -> streamstore::Result<Vec<Bytes>> {
    let mut records = Vec::new();
    let mut start = 0;
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if !trimmed.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).map_err(|e| {
                Error::invalid(format!("NDJSON line {} is not one JSON value: {e}", i + 1))
            })?;
            records.push(body.slice(start..start + trimmed.len()));
        }
        start = end + 1;
    }
    if records.is_empty() {
        return Err(Error::invalid("an NDJSON batch needs at least one line"));
    }
    Ok(records)
}

/// The answer to an append (fields in the order clients have always seen them).
#[derive(Serialize)]
struct AppendAnswer<'a> {
    stream: &'a str,
    /// As the engine shows it (`Incarnation`'s `Display`: 16 hex digits), like everywhere else
    /// in the API.
    #[serde(serialize_with = "displayed")]
    incarnation: Incarnation,
    first_offset: u64,
    next_offset: u64,
    count: u64,
    timestamp_ms: u64,
}

impl<'a> AppendAnswer<'a> {
    fn new(stream: &'a StreamId, r: &AppendResult) -> Self {
        AppendAnswer {
            stream: stream.as_str(),
            incarnation: r.incarnation,
            first_offset: r.first_offset,
            next_offset: r.next_offset(),
            count: r.count,
            timestamp_ms: r.timestamp_ms,
        }
    }
}

fn displayed<S: serde::Serializer>(value: &Incarnation, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `GET /v1/streams/{id}/records?from=N&limit=L&wait=30s`: returns at once if records exist at
/// `from`, else waits up to `wait` (at most `--max-wait`) for one, the seal, or a delete.
pub async fn read(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<Value>, ApiError> {
    let stream = StreamId::new(id)?;
    let from = q.from.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_READ_LIMIT {
        return Err(Error::invalid(format!("limit is 1..={MAX_READ_LIMIT}, not {limit}")).into());
    }
    let mut options = ReadOptions::limit(limit);
    options.durable = node.durable;
    let batch = match q.wait.as_deref().map(parse_duration).transpose()? {
        Some(wait) if !wait.is_zero() => {
            let waiting =
                node.store
                    .read(&stream, from, options.wait(wait.min(node.config.max_wait)));
            tokio::select! {
                batch = waiting => batch?,
                // A node that is shutting down answers what it has now instead of holding the
                // request until the wait ends.
                () = node.shutting_down() => node.store.read(&stream, from, options).await?,
            }
        }
        _ => node.store.read(&stream, from, options).await?,
    };
    Ok(Json(batch_json(&stream, &batch)))
}

/// One record as JSON: `payload` if it is UTF-8 text, else `payload_base64`.
pub fn record_json(r: &Record) -> Value {
    match std::str::from_utf8(&r.payload) {
        Ok(text) => json!({ "offset": r.offset, "timestamp_ms": r.timestamp_ms, "payload": text }),
        Err(_) => json!({
            "offset": r.offset,
            "timestamp_ms": r.timestamp_ms,
            "payload_base64": base64::engine::general_purpose::STANDARD.encode(&r.payload),
        }),
    }
}

fn batch_json(stream: &StreamId, b: &ReadBatch) -> Value {
    json!({
        "stream": stream.as_str(),
        "incarnation": b.incarnation.map(|i| i.to_string()),
        "records": b.records.iter().map(record_json).collect::<Vec<_>>(),
        "next_offset": b.next_offset,
        "end_offset": b.end_offset,
        "first_available": b.first_available,
        "sealed": b.sealed,
        "finished": b.is_finished(),
    })
}

/// `GET /v1/streams/{id}`: the stream's info.
pub async fn info(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stream = StreamId::new(id)?;
    let info = node.store.info(&stream).await?;
    Ok(Json(streamstore_cli::output::info(&info)))
}

/// `POST /v1/streams/{id}/seal`: no more appends; followers get their `end` event.
pub async fn seal(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stream = StreamId::new(id)?;
    let info = node.store.seal(&stream).await?;
    Ok(Json(streamstore_cli::output::info(&info)))
}

/// `DELETE /v1/streams/{id}`: removes the stream; followers get a `reset` event.
pub async fn delete(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stream = StreamId::new(id)?;
    let existed = node.store.delete(&stream).await?;
    Ok(Json(
        json!({ "stream": stream.as_str(), "existed": existed }),
    ))
}

/// `GET /healthz`: 200 with the node's view of the cluster; 503 once shutdown has begun, so peers
/// stop routing to it.
pub async fn healthz(State(node): State<Arc<Node>>) -> Response {
    let status = if *node.shutdown.borrow() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "node": node.id,
        "addr": node.cluster.me(),
        "live": node.cluster.live(),
        "shutting_down": status != StatusCode::OK,
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_become_records_byte_for_byte() {
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n  \"x\"\n[1,2]");
        let records = ndjson_records(&body).unwrap();
        assert_eq!(
            records,
            vec![&b"{\"a\":1}"[..], &b"  \"x\""[..], &b"[1,2]"[..]]
        );
        assert!(ndjson_records(&Bytes::from_static(b"{\"a\":1}\n{oops\n")).is_err());
        assert!(ndjson_records(&Bytes::from_static(b"\n\n")).is_err());
    }

    #[test]
    fn expectations_parse() {
        assert_eq!(parse_expect(None).unwrap(), Expect::Any);
        assert_eq!(parse_expect(Some("none")).unwrap(), Expect::NoStream);
        assert_eq!(parse_expect(Some("7")).unwrap(), Expect::Next(7));
        assert!(parse_expect(Some("-1")).is_err());
    }
}
