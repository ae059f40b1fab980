//! JSON-lines output, flushed line by line so a pipe sees each acknowledgement at once.

use std::io::Write;

use base64::Engine;
use serde_json::{json, Value};
use streamstore::{Record, StreamId, StreamInfo};

/// Writes one JSON value as a line and flushes.
pub fn emit(value: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `{"stream","offset","timestamp","payload"}`; a payload that is not UTF-8 is base64 with
/// `"encoding":"base64"`.
pub fn record(stream: &StreamId, r: &Record) -> Value {
    match std::str::from_utf8(&r.payload) {
        Ok(text) => json!({
            "stream": stream.as_str(), "offset": r.offset, "timestamp": r.timestamp_ms, "payload": text,
        }),
        Err(_) => json!({
            "stream": stream.as_str(), "offset": r.offset, "timestamp": r.timestamp_ms,
            "payload": base64::engine::general_purpose::STANDARD.encode(&r.payload),
            "encoding": "base64",
        }),
    }
}

/// Everything `info` reports.
pub fn info(i: &StreamInfo) -> Value {
    let ms = |d: Option<std::time::Duration>| {
        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    json!({
        "stream": i.stream.as_str(),
        "incarnation": i.incarnation.to_string(),
        "first_offset": i.first_offset,
        "next_offset": i.next_offset,
        "sealed": i.sealed,
        "sealed_ms": i.sealed_ms,
        "created_ms": i.created_ms,
        "last_append_ms": i.last_append_ms,
        "bytes": i.bytes,
        "retention": {
            "delete_after_seal_ms": ms(i.retention.delete_after_seal),
            "delete_after_idle_ms": ms(i.retention.delete_after_idle),
            "max_bytes": i.retention.max_bytes,
        },
    })
}
