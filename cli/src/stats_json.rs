//! `streamstore stats` as JSON values: the capabilities, the local engine's recovery report and
//! its session counters, field by field (not `Debug` strings).

use serde_json::{json, Value};
use streamstore::local::{LocalStats, QueueStats, RecoveryReport};
use streamstore::{Capabilities, WaitMechanism};

/// Milliseconds of a duration, as a JSON number.
fn millis(d: std::time::Duration) -> Value {
    json!(d.as_secs_f64() * 1000.0)
}

/// The capabilities of a store.
pub fn capabilities(c: &Capabilities) -> Value {
    let wait = match c.wait {
        WaitMechanism::Notify => json!({"mechanism": "notify"}),
        WaitMechanism::Push { poll } => json!({"mechanism": "push", "poll_ms": millis(poll)}),
        WaitMechanism::Poll { max_interval } => {
            json!({"mechanism": "poll", "max_interval_ms": millis(max_interval)})
        }
    };
    let idempotency = c.idempotency.map(|w| {
        json!({
            "keys_per_stream": w.keys_per_stream,
            "max_age_ms": w.max_age.map(millis),
        })
    });
    json!({
        "max_stream_id_bytes": c.max_stream_id_bytes,
        "max_record_bytes": c.max_record_bytes,
        "max_batch_records": c.max_batch_records,
        "max_batch_bytes": c.max_batch_bytes,
        "idempotency": idempotency,
        "wait": wait,
        "trim": c.trim,
        "delete": c.delete,
        "retention": c.retention,
        "list": c.list,
        "persistent": c.persistent,
        "durable_reads": c.durable_reads,
    })
}

/// What the last open of a local store found.
pub fn recovery(r: &RecoveryReport) -> Value {
    let torn_tail = r.torn_tail.as_ref().map(|t| {
        json!({
            "segment": t.segment,
            "position": t.position,
            "bytes": t.bytes,
            "dropped_frames": t.dropped_frames,
        })
    });
    let quarantined: Vec<Value> = r
        .quarantined
        .iter()
        .map(|q| {
            json!({
                "segment": q.segment,
                "start": q.start,
                "end": q.end,
                "reason": q.reason,
                "saved_to": q.saved_to.as_ref().map(|p| p.display().to_string()),
            })
        })
        .collect();
    let lost: Vec<Value> = r
        .lost
        .iter()
        .map(|l| json!({"stream": l.stream.as_str(), "start": l.start, "end": l.end}))
        .collect();
    let reincarnated: Vec<&str> = r.reincarnated.iter().map(|s| s.as_str()).collect();
    json!({
        "clean_shutdown": r.clean_shutdown,
        "checkpoint": r.checkpoint.map(|(segment, position)| {
            json!({"segment": segment, "position": position})
        }),
        "checkpoint_error": r.checkpoint_error,
        "segments_scanned": r.segments_scanned,
        "bytes_scanned": r.bytes_scanned,
        "torn_tail": torn_tail,
        "quarantined": quarantined,
        "lost": lost,
        "reincarnated": reincarnated,
        "warnings": r.warnings,
        "removed_empty_segments": r.removed_empty_segments,
        "dropped_segments": r.dropped_segments,
        "duration_ms": millis(r.duration),
        "has_damage": r.has_damage(),
    })
}

/// This session's failures and skipped work in a local store.
pub fn events(s: &LocalStats) -> Value {
    json!({
        "poisoned": s.poisoned,
        "log_failures": s.log_failures,
        "erase_failures": s.erase_failures,
        "retention_skipped": s.retention_skipped,
        "compactions_skipped": s.compactions_skipped,
    })
}

/// The writer's queue: depth now (in total and of the streams with the most bytes queued) and
/// the operations refused by `Overload::Reject` so far, by the bound that refused them.
pub fn queue(q: &QueueStats) -> Value {
    let top: Vec<Value> = q
        .top_streams
        .iter()
        .map(|s| json!({"stream": s.stream.as_str(), "ops": s.ops, "bytes": s.bytes}))
        .collect();
    json!({
        "ops": q.ops,
        "bytes": q.bytes,
        "rejected": {
            "stream": q.rejected_stream,
            "total_ops": q.rejected_total_ops,
            "total_bytes": q.rejected_total_bytes,
        },
        "top_streams": top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_json_fields_not_a_debug_string() {
        let v = capabilities(&Capabilities::default());
        assert_eq!(v["max_batch_records"], 1000);
        assert_eq!(v["wait"]["mechanism"], "notify");
        assert_eq!(v["idempotency"]["keys_per_stream"], 1024);
        assert!(v["idempotency"]["max_age_ms"].is_null());
    }

    #[test]
    fn an_idle_queue_has_every_field() {
        let v = queue(&QueueStats::default());
        assert_eq!(v["ops"], 0);
        assert_eq!(v["bytes"], 0);
        assert_eq!(v["rejected"]["stream"], 0);
        assert_eq!(v["rejected"]["total_bytes"], 0);
        assert_eq!(v["top_streams"], serde_json::json!([]));
    }

    #[test]
    fn an_empty_recovery_report_has_every_field() {
        let v = recovery(&RecoveryReport::default());
        assert_eq!(v["clean_shutdown"], false);
        assert!(v["torn_tail"].is_null());
        assert_eq!(v["lost"], json!([]));
        assert_eq!(v["has_damage"], false);
    }
}
