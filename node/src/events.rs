//! `GET /v1/streams/{id}/events`: Server-Sent Events.
//!
//! Every record is one unnamed event (`message` in a browser) whose `data` is the record as JSON
//! (`{"offset","timestamp_ms","payload"}` or `payload_base64`) and whose `id` is a
//! [`ResumeToken`]: the incarnation and the next offset. A client that reconnects with
//! `Last-Event-ID` (browsers do so on their own) continues exactly after the last event it got.
//! Named events:
//! - `reset`: the stream was deleted, or deleted and written again, since the token was made (or
//!   while following). `data` is `{"incarnation": <hex or null>, "from": N}`; the records that
//!   follow belong to that incarnation. Never silently another life's records.
//! - `end`: the stream is sealed and everything was delivered; the server closes the stream. A
//!   browser must `close()` its `EventSource` here, or it reconnects (and gets `end` again).
//! - `error`: the stream cannot be followed from the token (`trimmed`, with `first_available`),
//!   or the store failed; the server closes the stream.
//!
//! Heartbeat comments (`:heartbeat`) are sent every `--heartbeat` while idle.
//!
//! Memory is bounded per connection: the event stream reads the store only when the connection
//! asks for the next event, and hyper asks only when its write buffer has room, so a client that
//! stops reading holds at most one read batch (`--sse-batch`, `--sse-batch-bytes`) plus the
//! socket buffers, however far behind it falls.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use streamstore::{ErrorKind, Incarnation, ReadBatch, ReadOptions, StreamId};

use crate::api::record_json;
use crate::errors::{kind_name, ApiError};
use crate::observe::{RECORDS_DELIVERED, SSE_CONNECTIONS};
use crate::server::Node;
use crate::token::ResumeToken;

/// How long one read of a follower waits before it reads again (the connection itself stays open).
const POLL: Duration = Duration::from_secs(20);

/// Retries of a store read that failed with a retryable error before the stream ends with `error`.
const RETRIES: u32 = 50;

/// Query of `GET /v1/streams/{id}/events`.
#[derive(Deserialize, Debug, Default)]
pub struct EventsQuery {
    /// Start at this offset of whatever incarnation the stream has (default 0). Ignored when a
    /// resume token is given.
    pub from: Option<u64>,
    /// A resume token, for clients that cannot set the `Last-Event-ID` header. The header wins.
    pub last_event_id: Option<String>,
}

/// Follows a stream; see the module docs.
pub async fn follow(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamId::new(id)?;
    let token = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(q.last_event_id.as_deref())
    {
        Some(t) => ResumeToken::parse(t)?,
        None => ResumeToken {
            incarnation: None,
            next: q.from.unwrap_or(0),
        },
    };
    let follower = Follower {
        node: Arc::clone(&node),
        stream,
        expected: token.incarnation,
        next: token.next,
        pending: VecDeque::new(),
        done: false,
        _open: OpenConnection::new(),
    };
    let events = futures::stream::unfold(follower, |mut f| async move {
        loop {
            if let Some((event, is_record)) = f.pending.pop_front() {
                if is_record {
                    metrics::counter!(RECORDS_DELIVERED).increment(1);
                }
                return Some((Ok::<_, Infallible>(event), f));
            }
            if f.done {
                return None;
            }
            f.fill().await;
        }
    });
    let keep_alive = KeepAlive::new()
        .interval(node.config.heartbeat)
        .text("heartbeat");
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    // Proxies (nginx) must pass events through at once instead of buffering them.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Counts open connections in the gauge for as long as it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!(SSE_CONNECTIONS).increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(SSE_CONNECTIONS).decrement(1.0);
    }
}

/// One follower's position. Invariant: `pending` holds at most one read batch of events (plus a
/// `reset` or `end`), and is refilled only once empty.
struct Follower {
    node: Arc<Node>,
    stream: StreamId,
    /// The incarnation the client has been reading (`None`: none yet).
    expected: Option<Incarnation>,
    /// The next offset the client needs.
    next: u64,
    pending: VecDeque<(Event, bool)>,
    done: bool,
    _open: OpenConnection,
}

impl Follower {
    fn token(&self, next: u64) -> String {
        ResumeToken {
            incarnation: self.expected,
            next,
        }
        .to_string()
    }

    /// Reads the next batch (waiting for it) and turns it into events, or ends the stream.
    async fn fill(&mut self) {
        let options = ReadOptions::limit(self.node.config.sse_batch.max(1))
            .bytes(self.node.config.sse_batch_bytes)
            .wait(POLL)
            .set_durable(self.node.durable)
            // A delete or a re-creation ends the wait at once (a `reset` event follows).
            .incarnation(self.expected);
        let mut tries = 0;
        let batch = loop {
            let read = self.node.store.read(&self.stream, self.next, options);
            let result = tokio::select! {
                r = read => r,
                // Graceful shutdown: end the stream cleanly; the client reconnects with its
                // last token, to this node once it is back or to another one.
                () = self.node.shutting_down() => { self.done = true; return; }
            };
            match result {
                Ok(batch) => break batch,
                Err(e) => match e.kind() {
                    ErrorKind::Trimmed { first_available } => {
                        return self.trimmed(first_available).await;
                    }
                    ErrorKind::Closed => {
                        self.done = true;
                        return;
                    }
                    _ if e.is_retryable() && tries < RETRIES => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    kind => {
                        return self
                            .fail(json!({ "error": kind_name(kind), "message": e.message() }));
                    }
                },
            }
        };
        self.take(batch);
    }

    fn take(&mut self, batch: ReadBatch) {
        match (self.expected, batch.incarnation) {
            (Some(seen), Some(now)) if seen != now => {
                return self.reset(Some(now), batch.first_available);
            }
            (Some(_), None) => return self.reset(None, 0),
            (None, Some(now)) => self.expected = Some(now),
            _ => {}
        }
        for r in &batch.records {
            let event = Event::default()
                .id(self.token(r.offset + 1))
                .data(record_json(r).to_string());
            self.pending.push_back((event, true));
        }
        self.next = batch.next_offset;
        if batch.is_finished() {
            let event = Event::default()
                .event("end")
                .id(self.token(self.next))
                .data(json!({ "next_offset": self.next }).to_string());
            self.pending.push_back((event, false));
            self.done = true;
        }
    }

    fn reset(&mut self, incarnation: Option<Incarnation>, from: u64) {
        self.expected = incarnation;
        self.next = from;
        let data = json!({ "incarnation": incarnation.map(|i| i.to_string()), "from": from });
        let event = Event::default()
            .event("reset")
            .id(self.token(from))
            .data(data.to_string());
        self.pending.push_back((event, false));
    }

    /// The token's offset is below the first readable one: either the stream was re-created
    /// (a `reset`) or this incarnation was trimmed past the client (an `error`).
    async fn trimmed(&mut self, first_available: u64) {
        if let Ok(info) = self.node.store.info(&self.stream).await {
            if self.expected.is_some_and(|seen| seen != info.incarnation) {
                return self.reset(Some(info.incarnation), info.first_offset);
            }
        }
        self.fail(json!({ "error": "trimmed", "first_available": first_available }));
    }

    fn fail(&mut self, data: serde_json::Value) {
        let event = Event::default().event("error").data(data.to_string());
        self.pending.push_back((event, false));
        self.done = true;
    }
}
