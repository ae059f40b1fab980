//! Time-based retention: when a stream is due for deletion. Byte-based retention (`max_bytes`) is
//! a trim the writer logs as a `Trim` frame right after the append or policy change that
//! triggers it (see `writer.rs`).

use std::time::Duration;

use crate::head::StreamHead;

/// Whether `h` is due for deletion at `now` (ms): sealed longer than `delete_after_seal`, or idle
/// longer than `delete_after_idle`. The same rule as the memory store's.
pub(crate) fn is_expired(h: &StreamHead, now: u64) -> bool {
    let after = |start: u64, d: Duration| {
        start.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)) <= now
    };
    let sealed =
        matches!((h.sealed_ms, h.retention.delete_after_seal), (Some(t), Some(d)) if after(t, d));
    let idle = h
        .retention
        .delete_after_idle
        .is_some_and(|d| after(h.last_append_ms, d));
    sealed || idle
}
