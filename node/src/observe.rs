//! The node's metrics, recorded through the `metrics` facade and served as Prometheus text.
//!
//! The local engine emits its own figures (appends, bytes, fsync latency, group size, recovery
//! time: `streamstore::local::metrics`) through the same facade, so the recorder installed here
//! serves them next to the node's own.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use streamstore::local::metrics as engine;

/// Requests served, labelled by route and status code.
pub const REQUESTS: &str = "streamstore_node_requests_total";
/// Seconds from receiving an append to its acknowledgement by the store.
pub const APPEND_SECONDS: &str = "streamstore_node_append_seconds";
/// Records acknowledged by appends served here.
pub const RECORDS_APPENDED: &str = "streamstore_node_records_appended_total";
/// Open Server-Sent Events connections served by this node (not counting forwarded ones).
pub const SSE_CONNECTIONS: &str = "streamstore_node_sse_connections";
/// Record events handed to SSE connections.
pub const RECORDS_DELIVERED: &str = "streamstore_node_records_delivered_total";
/// Store errors answered with a 5xx status, labelled by kind.
pub const STORE_ERRORS: &str = "streamstore_node_store_errors_total";
/// Requests forwarded to the owner of their stream, labelled by outcome.
pub const FORWARDED: &str = "streamstore_node_forwarded_total";
/// Members of the cluster this node currently sees as live (itself included).
pub const LIVE_MEMBERS: &str = "streamstore_node_live_members";

/// Installs the process-wide Prometheus recorder and keeps its histograms trimmed.
///
/// Only the first call in a process installs; later ones (tests starting several nodes in one
/// process) get a recorder that is not global, so their metrics are not rendered.
pub fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .and_then(|b| {
            // Records, not seconds: powers of 4 up to the largest groups seen in benchmarks.
            b.set_buckets_for_metric(
                Matcher::Full(engine::GROUP_RECORDS.to_owned()),
                &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0],
            )
        })
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let handle = match builder.install_recorder() {
        Ok(handle) => handle,
        Err(_) => PrometheusBuilder::new().build_recorder().handle(),
    };
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    handle
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "HTTP requests served, by route and status");
    metrics::describe_histogram!(
        APPEND_SECONDS,
        metrics::Unit::Seconds,
        "time from receiving an append to its acknowledgement"
    );
    metrics::describe_counter!(RECORDS_APPENDED, "records acknowledged by appends");
    metrics::describe_gauge!(SSE_CONNECTIONS, "open Server-Sent Events connections");
    metrics::describe_counter!(RECORDS_DELIVERED, "record events handed to SSE connections");
    metrics::describe_counter!(STORE_ERRORS, "store errors answered with a 5xx status");
    metrics::describe_counter!(FORWARDED, "requests forwarded to their stream's owner");
    metrics::describe_gauge!(LIVE_MEMBERS, "members seen live, this node included");
    engine::describe();
}

/// The route label of a request: its route pattern (never the raw path: stream ids would make
/// unbounded label values), borrowed from [`crate::server::ROUTES`] so that counting a request
/// allocates no label string.
pub fn route_label(request: &Request) -> SharedString {
    match request.extensions().get::<MatchedPath>() {
        Some(matched) => {
            let pattern = matched.as_str();
            crate::server::ROUTES
                .iter()
                .copied()
                .find(|route| *route == pattern)
                .map_or_else(
                    || SharedString::from(pattern.to_owned()),
                    SharedString::from,
                )
        }
        None => SharedString::from("unmatched"),
    }
}

/// The method label: static for the methods the node serves.
pub fn method_label(method: &Method) -> SharedString {
    match method.as_str() {
        "GET" => SharedString::from("GET"),
        "POST" => SharedString::from("POST"),
        "DELETE" => SharedString::from("DELETE"),
        "HEAD" => SharedString::from("HEAD"),
        other => SharedString::from(other.to_owned()),
    }
}

/// The status label: static for the statuses the node answers with (see `errors::status_of`).
fn status_label(status: StatusCode) -> SharedString {
    let code = match status.as_u16() {
        200 => "200",
        400 => "400",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        416 => "416",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::from(code)
}

/// Counts one request served, by route, method and status.
pub fn count_request(route: SharedString, method: SharedString, status: StatusCode) {
    metrics::counter!(REQUESTS, "route" => route, "method" => method, "status" => status_label(status))
        .increment(1);
}
