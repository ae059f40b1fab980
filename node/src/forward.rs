//! Forwarding: every request for a stream is served by the stream's owner.
//!
//! [`to_owner`] (called by the node's one per-request layer, `server::serve_request`) computes
//! the owner of the stream named in the path. If it is another live
//! member, the request (body included, already bounded by `--max-body`) is sent there and the
//! answer streamed back as it comes: SSE and long polls work through any node. A forwarded
//! request carries [`FORWARDED_BY`] and is always served where it lands, so two nodes that
//! briefly disagree about the owner cannot bounce a request between them.
//!
//! If the owner cannot be reached (connect refused or timed out) it is suspected at once (until
//! gossip has its own verdict) and the request goes to the next owner; nothing was sent, so this is safe for appends too. A
//! failure after the request was sent is a `503` (`unavailable`): an append may or may not have
//! happened, and the client retries it with the same `Idempotency-Key`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use crate::cluster::Peer;
use crate::observe::FORWARDED;
use crate::server::Node;

/// Marks a request forwarded by a node (its value is that node's id).
pub const FORWARDED_BY: &str = "streamstore-forwarded-by";

/// Headers that describe one hop, not the message: never copied across.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::TE
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// The stream id in `/v1/streams/{id}[/...]`, percent-decoded (as the handlers see it).
pub fn stream_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/streams/")?;
    let segment = rest.split('/').next()?;
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Serves `request` here (`next`) or forwards it to its stream's owner; see the module docs.
pub async fn to_owner(node: &Node, request: Request, next: Next) -> Response {
    if !node.cluster.is_clustered() || request.headers().contains_key(FORWARDED_BY) {
        return next.run(request).await;
    }
    let Some(stream) = stream_of(request.uri().path()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let mut body = Some(body);
    let mut buffered: Option<Bytes> = None;
    for _ in 0..=node.cluster.known_peers() {
        let Some(owner) = node.cluster.owner(&stream) else {
            let body = match buffered.take() {
                Some(bytes) => Body::from(bytes),
                None => body.take().unwrap_or_else(Body::empty),
            };
            return next.run(Request::from_parts(parts, body)).await;
        };
        if buffered.is_none() {
            let raw = body.take().unwrap_or_else(Body::empty);
            match axum::body::to_bytes(raw, node.config.max_body).await {
                Ok(bytes) => buffered = Some(bytes),
                Err(_) => {
                    return failure(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body exceeds {} bytes", node.config.max_body),
                    )
                }
            }
        }
        let bytes = buffered.clone().unwrap_or_default();
        match send(node, &owner, &parts, bytes).await {
            Ok(response) => {
                metrics::counter!(FORWARDED, "outcome" => "ok").increment(1);
                return response;
            }
            Err(e) if e.is_connect() => {
                metrics::counter!(FORWARDED, "outcome" => "owner_down").increment(1);
                node.cluster.suspect(&owner);
            }
            Err(e) => {
                metrics::counter!(FORWARDED, "outcome" => "failed").increment(1);
                return failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("forwarding to the owner {} failed: {e}", owner.addr),
                );
            }
        }
    }
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "no owner of this stream could be reached".into(),
    )
}

async fn send(
    node: &Node,
    owner: &Peer,
    parts: &Parts,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = node
        .client
        .request(parts.method.clone(), format!("http://{}{path}", owner.addr))
        .header(FORWARDED_BY, node.id.as_str())
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let upstream = request.send().await?;
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    // Streamed, not buffered: SSE and long polls pass through as they arrive. The stream also
    // ends when this node shuts down, like the SSE streams it serves itself.
    let shutdown = {
        let mut rx = node.shutdown.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    };
    let body = Body::from_stream(upstream.bytes_stream().take_until(shutdown));
    Ok(response
        .body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
}

fn failure(status: StatusCode, error: &str, message: String) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_first_segment_decoded() {
        assert_eq!(
            stream_of("/v1/streams/job%2F42/events").as_deref(),
            Some("job/42")
        );
        assert_eq!(stream_of("/v1/streams/a").as_deref(), Some("a"));
        assert_eq!(stream_of("/healthz"), None);
    }
}
