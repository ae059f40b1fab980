//! MongoDB driver errors as `streamstore::Error`s, by server error code and driver error kind.

use mongodb::error::{ErrorKind as MongoKind, WriteFailure};
use streamstore::implementor::ErrorShorthand;
use streamstore::{Error, ErrorKind};

/// The server's duplicate-key error: a unique index (`_id` or the claim) refused an insert.
pub const DUPLICATE_KEY: i32 = 11000;

/// Codes of transient server conditions: the same call may succeed when repeated.
/// Interrupted or shutting down (11600, 11602, 91), not primary or stepping down (10107, 13435,
/// 13436, 189, 11601), host or network trouble (6, 7, 89, 9001), lock and write conflicts
/// (24 LockTimeout, 46 LockBusy, 112 WriteConflict), time limits (50, 262).
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 24, 46, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11601, 11602, 13435, 13436,
];

/// FerretDB reports a busy SQLite database ("database is locked", `SQLITE_BUSY`) as a generic
/// InternalError (code 1) with no code of its own; this is the only case where the message is
/// looked at, and only for that code.
fn is_sqlite_busy(code: i32, message: &str) -> bool {
    code == 1 && (message.contains("SQLITE_BUSY") || message.contains("database is locked"))
}

/// The server error code of `e`, if the server answered with one.
pub fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        MongoKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        MongoKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether `e` is a duplicate key on insert.
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    server_code(e) == Some(DUPLICATE_KEY)
}

/// Maps a driver error to the store's error kinds.
///
/// - network and I/O errors, server selection failures, a cleared pool, the transient codes
///   above, errors labelled `RetryableWriteError` / `TransientTransactionError`, and FerretDB's
///   "database is locked" → `Unavailable` (retryable; the outcome of a write is then unknown);
/// - duplicate key (11000) → `Conflict` (callers resolve it before it gets here);
/// - document or BSON too large (10334, 17419, 17420, 2) → `TooLarge`;
/// - authentication, a bad option or URL → `InvalidArgument`; anything else → `Internal`.
pub fn parse_mongo_error(e: mongodb::error::Error) -> Error {
    let labelled =
        e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError");
    let message = match &*e.kind {
        MongoKind::Write(WriteFailure::WriteError(w)) => w.message.clone(),
        MongoKind::Command(c) => c.message.clone(),
        _ => String::new(),
    };
    if let Some(code) = server_code(&e) {
        return match code {
            DUPLICATE_KEY => Error::conflict(0, "a document with this key exists").with_source(e),
            c if TRANSIENT_CODES.contains(&c) || is_sqlite_busy(c, &message) || labelled => {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("the server reported a transient error (code {c})"),
                )
                .with_source(e)
            }
            10334 | 17419 | 17420 => {
                Error::too_large("a document exceeds the server's size limit").with_source(e)
            }
            c => Error::new(ErrorKind::Internal, format!("unexpected server error {c}"))
                .with_source(e),
        };
    }
    match &*e.kind {
        MongoKind::Io(_)
        | MongoKind::ServerSelection { .. }
        | MongoKind::ConnectionPoolCleared { .. }
        | MongoKind::DnsResolve { .. } => Error::new(
            ErrorKind::Unavailable,
            "the MongoDB server is unreachable or the connection failed",
        )
        .with_source(e),
        _ if labelled => {
            Error::new(ErrorKind::Unavailable, "a transient MongoDB error").with_source(e)
        }
        MongoKind::Authentication { .. } => {
            Error::invalid("the server refused the credentials").with_source(e)
        }
        MongoKind::InvalidArgument { .. } | MongoKind::InvalidTlsConfig { .. } => {
            Error::invalid("invalid MongoDB connection options").with_source(e)
        }
        MongoKind::Shutdown => Error::closed().with_source(e),
        _ => Error::new(ErrorKind::Internal, "unexpected MongoDB driver error").with_source(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_recognized_only_with_its_code() {
        assert!(is_sqlite_busy(1, "database is locked (5) (SQLITE_BUSY)"));
        assert!(!is_sqlite_busy(2, "database is locked"));
        assert!(!is_sqlite_busy(1, "something else"));
    }

    #[test]
    fn io_errors_are_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = parse_mongo_error(mongodb::error::Error::from(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
    }
}
