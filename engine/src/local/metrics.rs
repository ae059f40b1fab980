//! The local engine's own figures, emitted through the `metrics` facade.
//!
//! The names are defined here once. Without a recorder installed by the application the facade
//! does nothing (a check of the global recorder per call), so the library stays silent and
//! cheap. Emission happens once per group or per `fdatasync`, never once per record: a group of
//! thousands of appends costs a few calls.

use std::time::Duration;

/// Append calls written to the log and acknowledged (counter). Idempotent duplicates, answered
/// without writing, are not counted.
pub const APPENDS: &str = "streamstore_appends_total";
/// Payload bytes of the acknowledged appends (counter).
pub const APPENDED_BYTES: &str = "streamstore_appended_bytes_total";
/// Records per acknowledged group that appended any (histogram); its sum is the records
/// appended.
pub const GROUP_RECORDS: &str = "streamstore_group_records";
/// Seconds each `fdatasync` of the commit path took (histogram), failed ones included.
pub const FSYNC_SECONDS: &str = "streamstore_fsync_seconds";
/// Seconds the last open spent in recovery (gauge).
pub const RECOVERY_SECONDS: &str = "streamstore_recovery_seconds";

/// Describes the engine's metrics (units and help text) to the installed recorder. Call it after
/// installing one; without a recorder it does nothing.
pub fn describe() {
    ::metrics::describe_counter!(APPENDS, "append calls written to the log and acknowledged");
    ::metrics::describe_counter!(
        APPENDED_BYTES,
        ::metrics::Unit::Bytes,
        "payload bytes of the acknowledged appends"
    );
    ::metrics::describe_histogram!(
        GROUP_RECORDS,
        ::metrics::Unit::Count,
        "records per acknowledged group commit"
    );
    ::metrics::describe_histogram!(
        FSYNC_SECONDS,
        ::metrics::Unit::Seconds,
        "duration of each fdatasync of the commit path"
    );
    ::metrics::describe_gauge!(
        RECOVERY_SECONDS,
        ::metrics::Unit::Seconds,
        "time the last open spent in recovery"
    );
}

/// One acknowledged group: `appends` append calls of `records` records and `bytes` payload
/// bytes. Groups that appended nothing (seals, deletes, checkpoints) are not recorded.
pub(crate) fn group(appends: u64, records: u64, bytes: u64) {
    if records == 0 {
        return;
    }
    ::metrics::counter!(APPENDS).increment(appends);
    ::metrics::counter!(APPENDED_BYTES).increment(bytes);
    ::metrics::histogram!(GROUP_RECORDS).record(u64_as_f64(records));
}

/// Runs one `fdatasync` (`sync`) and records how long it took, whatever its result.
pub(crate) fn timed_sync<T>(sync: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let result = sync();
    ::metrics::histogram!(FSYNC_SECONDS).record(start.elapsed().as_secs_f64());
    result
}

/// The recovery time of the open that just finished.
pub(crate) fn recovery(took: Duration) {
    ::metrics::gauge!(RECOVERY_SECONDS).set(took.as_secs_f64());
}

/// A count as a sample value: exact, counts here stay far below 2^53.
fn u64_as_f64(n: u64) -> f64 {
    n as f64
}
