//! The operations queued to the writer thread, and the replies it sends when a group finishes.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::types::{AppendResult, Expect, IdempotencyKey, Retention, StreamId, StreamInfo};

use super::super::backpressure::Admitted;

/// A mutation waiting for the writer.
pub(crate) enum Op {
    Append(AppendOp),
    Seal {
        stream: StreamId,
        tx: oneshot::Sender<Result<StreamInfo>>,
    },
    Trim {
        stream: StreamId,
        before: u64,
        tx: oneshot::Sender<Result<u64>>,
    },
    Delete {
        stream: StreamId,
        tx: oneshot::Sender<Result<bool>>,
    },
    SetRetention {
        stream: StreamId,
        retention: Retention,
        tx: oneshot::Sender<Result<()>>,
    },
    /// Apply time-based retention to every stream.
    Sweep,
    /// Write a checkpoint now (tests and tools).
    Checkpoint {
        tx: oneshot::Sender<Result<()>>,
    },
    /// Flush, checkpoint, mark clean and stop.
    Close {
        tx: oneshot::Sender<Result<()>>,
    },
}

/// An append waiting for the writer.
pub(crate) struct AppendOp {
    pub stream: StreamId,
    pub records: Vec<Bytes>,
    /// Payload bytes of `records`.
    pub bytes: u64,
    pub expect: Expect,
    /// The idempotency key with the digest of the batch.
    pub key: Option<(IdempotencyKey, u64)>,
    pub tx: oneshot::Sender<Result<AppendResult>>,
}

/// An operation with the queue slot it holds (released when the writer is done with it).
pub(crate) struct Queued {
    pub op: Op,
    pub _permit: Option<Admitted>,
}

/// An answer sent once the group is durable (or failed).
pub(super) enum Reply {
    Append(oneshot::Sender<Result<AppendResult>>, AppendResult),
    Info(oneshot::Sender<Result<StreamInfo>>, StreamInfo),
    Offset(oneshot::Sender<Result<u64>>, u64),
    Existed(oneshot::Sender<Result<bool>>, bool),
    Done(oneshot::Sender<Result<()>>),
    /// A rejection (`Conflict`, `Sealed`, `NotFound`, a reused key, ...). It is answered with
    /// its group, not at once: it may have been decided against the group's earlier operations
    /// or a group still being synced, and if that sync fails the state it saw never committed
    /// (the caller then gets `Poisoned`, like the group: the outcome is unknown until reopen).
    Rejected(Rejection, Error),
}

/// Where a rejection is answered.
pub(super) enum Rejection {
    Append(oneshot::Sender<Result<AppendResult>>),
    Info(oneshot::Sender<Result<StreamInfo>>),
    Offset(oneshot::Sender<Result<u64>>),
    Done(oneshot::Sender<Result<()>>),
}

impl Rejection {
    fn send(self, e: Error) {
        match self {
            Rejection::Append(tx) => drop(tx.send(Err(e))),
            Rejection::Info(tx) => drop(tx.send(Err(e))),
            Rejection::Offset(tx) => drop(tx.send(Err(e))),
            Rejection::Done(tx) => drop(tx.send(Err(e))),
        }
    }
}

impl Reply {
    pub(super) fn send(self, err: Option<&Error>) {
        let e = || {
            Error::new(
                ErrorKind::Poisoned,
                err.map_or(String::new(), Error::to_string),
            )
        };
        match (self, err) {
            (Reply::Append(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Info(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Offset(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Existed(tx, v), None) => drop(tx.send(Ok(v))),
            (Reply::Done(tx), None) => drop(tx.send(Ok(()))),
            (Reply::Append(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Info(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Offset(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Existed(tx, _), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Done(tx), Some(_)) => drop(tx.send(Err(e()))),
            (Reply::Rejected(to, rejection), None) => to.send(rejection),
            (Reply::Rejected(to, _), Some(_)) => to.send(e()),
        }
    }
}

/// Fails an operation that was never run.
pub(crate) fn fail_op(op: Op, e: &Error) {
    let err = || Error::new(e.kind(), e.message());
    match op {
        Op::Append(AppendOp { tx, .. }) => drop(tx.send(Err(err()))),
        Op::Seal { tx, .. } => drop(tx.send(Err(err()))),
        Op::Trim { tx, .. } => drop(tx.send(Err(err()))),
        Op::Delete { tx, .. } => drop(tx.send(Err(err()))),
        Op::SetRetention { tx, .. } => drop(tx.send(Err(err()))),
        Op::Checkpoint { tx } | Op::Close { tx } => drop(tx.send(Err(err()))),
        Op::Sweep => {}
    }
}
