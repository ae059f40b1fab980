//! `streamstore::Error` → HTTP answers. Every error body is
//! `{"error": "<kind>", "message": "...", ...}` plus the kind's numbers.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use streamstore::{Error, ErrorKind};

/// The header that repeats a `409`'s actual next offset.
pub const NEXT_OFFSET_HEADER: &str = "streamstore-next-offset";

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The status code of each error kind (the table in node/README.md).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict { .. } => StatusCode::CONFLICT,
        ErrorKind::Sealed => StatusCode::GONE,
        ErrorKind::Trimmed { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable | ErrorKind::Closed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short machine-readable name of each kind.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "invalid_argument",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict { .. } => "conflict",
        ErrorKind::Sealed => "sealed",
        ErrorKind::Trimmed { .. } => "trimmed",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Corruption => "corruption",
        ErrorKind::Poisoned => "poisoned",
        ErrorKind::Closed => "closed",
        _ => "internal",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        let status = status_of(kind);
        if status.is_server_error() {
            metrics::counter!(crate::observe::STORE_ERRORS, "kind" => kind_name(kind)).increment(1);
        }
        let mut body = json!({ "error": kind_name(kind), "message": self.0.message() });
        let mut next = None;
        match kind {
            ErrorKind::Conflict { actual_next } => {
                body["actual_next"] = json!(actual_next);
                next = Some(actual_next);
            }
            ErrorKind::Trimmed { first_available } => {
                body["first_available"] = json!(first_available);
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(n) = next {
            response
                .headers_mut()
                .insert(NEXT_OFFSET_HEADER, HeaderValue::from(n));
        }
        response
    }
}
