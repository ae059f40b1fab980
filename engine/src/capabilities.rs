//! What an implementation supports and its limits.
//!
//! The contract's own rules (gapless offsets from 0, one winner per conditional append, atomic
//! batches, offsets never reused) are not capabilities: every implementation keeps them.

use std::time::Duration;

use crate::types::MAX_STREAM_ID_BYTES;

/// How a waiting read learns that new records arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMechanism {
    /// In-process notification: a waiting reader wakes as soon as the append is visible.
    Notify,
    /// A server push hint (e.g. PostgreSQL `LISTEN/NOTIFY`) with polling as the fallback.
    Push {
        /// The fallback polling interval.
        poll: Duration,
    },
    /// Polling with backoff, at most this interval apart.
    Poll {
        /// The longest pause between two polls.
        max_interval: Duration,
    },
}

/// Which idempotent retries the store recognizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotencyWindow {
    /// At least this many of a stream's most recent keyed appends are remembered.
    pub keys_per_stream: usize,
    /// Keys older than this may be forgotten (`None`: only the count bounds the window).
    pub max_age: Option<Duration>,
}

/// What an implementation supports and its limits; returned by `StreamStore::capabilities`.
///
/// Fill with `..Capabilities::default()`; the defaults describe a store that supports everything
/// with the memory store's limits. A call that needs a capability the store lacks returns
/// `ErrorKind::Unsupported`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Longest stream id accepted, in bytes (at most [`MAX_STREAM_ID_BYTES`]).
    pub max_stream_id_bytes: usize,
    /// Largest payload of one record, in bytes.
    pub max_record_bytes: usize,
    /// Most records in one atomic append.
    pub max_batch_records: usize,
    /// Largest total payload of one atomic append, in bytes.
    pub max_batch_bytes: usize,
    /// Idempotent appends, and how long keys are remembered; `None` if unsupported.
    pub idempotency: Option<IdempotencyWindow>,
    /// How waiting reads are woken.
    pub wait: WaitMechanism,
    /// `trim` is supported.
    pub trim: bool,
    /// `delete` is supported.
    pub delete: bool,
    /// `set_retention` is supported and the store enforces the policies.
    pub retention: bool,
    /// `list` is supported.
    pub list: bool,
    /// Data survives `close` and a reopen of the same location.
    pub persistent: bool,
    /// Reads can ask for durable records only ([`crate::ReadOptions::durable`]); without it
    /// such a read is `Unsupported`.
    pub durable_reads: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_stream_id_bytes: MAX_STREAM_ID_BYTES,
            max_record_bytes: 1 << 20,
            max_batch_records: 1000,
            max_batch_bytes: 4 << 20,
            idempotency: Some(IdempotencyWindow {
                keys_per_stream: 1024,
                max_age: None,
            }),
            wait: WaitMechanism::Notify,
            trim: true,
            delete: true,
            retention: true,
            list: true,
            persistent: false,
            durable_reads: false,
        }
    }
}
