//! `GET /`: a page that follows a stream live with the browser's `EventSource` (no framework).
//!
//! The page reads the stream id from its own query (`/?stream=job%2F42`) in JavaScript and
//! inserts payloads with `textContent`, so nothing a client sends is ever interpreted as HTML.

use axum::response::Html;

/// The page.
pub async fn index() -> Html<&'static str> {
    Html(include_str!("page.html"))
}
