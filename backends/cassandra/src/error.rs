//! Driver errors as `streamstore::Error`s, by error variant, never by message text.

use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};
use streamstore::{Error, ErrorKind};

/// Whether the statement may have been applied although the call failed: a write timeout (the
/// coordinator did not hear back in time, for a conditional write `WriteType::Cas`), the
/// client's request timeout, or a connection that broke after the request was sent. The
/// adapter resolves these for appends by a SERIAL read of the batch's first record.
pub fn is_ambiguous(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(a) => matches!(
            a,
            RequestAttemptError::BrokenConnectionError(_)
                | RequestAttemptError::UnableToAllocStreamId
                | RequestAttemptError::DbError(
                    DbError::WriteTimeout { .. }
                        | DbError::WriteFailure { .. }
                        | DbError::ReadTimeout { .. }
                        | DbError::ReadFailure { .. }
                        | DbError::ServerError,
                    _
                )
        ),
        _ => false,
    }
}

/// Whether `e` is a timeout of a conditional write (Paxos contention or a slow replica).
pub fn is_cas_timeout(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            },
            _
        ))
    )
}

/// Maps a driver error to the store's error kinds.
///
/// - timeouts, unavailable replicas, overload, bootstrapping, broken or missing connections,
///   an empty load-balancing plan → `Unavailable` (retryable; the outcome may be unknown);
/// - a statement the server rejects as invalid (`Invalid`, `SyntaxError`), a type mismatch →
///   `Internal` (a bug in the adapter, never the caller's data: ids and payloads are bound);
/// - refused credentials or permissions → `InvalidArgument` (a configuration error);
/// - anything else → `Internal`.
pub fn parse_cassandra_error(e: ExecutionError) -> Error {
    let (kind, what) = match &e {
        ExecutionError::RequestTimeout(_) => (ErrorKind::Unavailable, "the request timed out"),
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => {
            (ErrorKind::Unavailable, "no connection to a Cassandra node")
        }
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => {
                (ErrorKind::Unavailable, "the connection to Cassandra broke")
            }
            RequestAttemptError::DbError(db, _) => match db {
                DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::TruncateError
                | DbError::RateLimitReached { .. } => (
                    ErrorKind::Unavailable,
                    "Cassandra is unavailable, overloaded or timed out",
                ),
                DbError::AuthenticationError | DbError::Unauthorized => (
                    ErrorKind::InvalidArgument,
                    "Cassandra refused the credentials or permissions",
                ),
                _ => (ErrorKind::Internal, "Cassandra rejected a statement"),
            },
            _ => (ErrorKind::Internal, "unexpected Cassandra driver error"),
        },
        ExecutionError::PrepareError(_) => (
            ErrorKind::Unavailable,
            "preparing a statement failed on every connection",
        ),
        _ => (ErrorKind::Internal, "unexpected Cassandra driver error"),
    };
    Error::new(kind, what).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_are_ambiguous_and_retryable() {
        let t = ExecutionError::RequestTimeout(Duration::from_secs(1));
        assert!(is_ambiguous(&t));
        assert_eq!(parse_cassandra_error(t).kind(), ErrorKind::Unavailable);
        let cas = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: scylla::statement::Consistency::Serial,
                received: 0,
                required: 1,
                write_type: WriteType::Cas,
            },
            "timeout".into(),
        ));
        assert!(is_ambiguous(&cas) && is_cas_timeout(&cas));
        let bad = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "bad".into(),
        ));
        assert!(!is_ambiguous(&bad));
        assert_eq!(parse_cassandra_error(bad).kind(), ErrorKind::Internal);
    }
}
