//! PostgreSQL errors as `streamstore::Error`s, by SQLSTATE code, never by message text.

use sqlx::error::ErrorKind as SqlxKind;
use streamstore::implementor::ErrorShorthand;
use streamstore::{Error, ErrorKind};
use streamstore_sql::{driver_error, RolledBack};

/// Maps a driver error to the store's error kinds.
///
/// - unique violation (`23505`) → `Conflict` (the caller fills in the actual next offset);
/// - serialization failure (`40001`), deadlock (`40P01`), lock not available (`55P03`) →
///   `Unavailable`, retryable, marked [`RolledBack`] so the transaction is run again internally;
/// - connection exceptions (class `08`), shutdown and startup (`57P01`–`57P03`), insufficient
///   resources (class `53`), a cancelled statement (`57014`), I/O, TLS, protocol, pool timeout →
///   `Unavailable` (retryable; the outcome of a commit is then unknown);
/// - value too long or out of range (`22001`, `22003`, `54000`) → `TooLarge`;
/// - refused credentials (class `28`) or an unknown database (`3D000`), a bad URL or option →
///   `InvalidArgument`; anything else → `Internal`.
pub fn parse_postgres_error(e: sqlx::Error) -> Error {
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    if let Some(code) = code {
        let code = code.as_str();
        return match code {
            "23505" => Error::conflict(0, "a row with this key exists").with_source(e),
            "40001" | "40P01" | "55P03" => Error::new(
                ErrorKind::Unavailable,
                "the database rolled the transaction back (serialization failure, deadlock or lock timeout)",
            )
            .with_source(RolledBack(Box::new(e))),
            "57014" | "57P01" | "57P02" | "57P03" => {
                Error::new(ErrorKind::Unavailable, "the database is shutting down, starting up or cancelled the statement")
                    .with_source(e)
            }
            c if c.starts_with("08") || c.starts_with("53") => {
                Error::new(ErrorKind::Unavailable, "the database connection failed or the server is out of resources")
                    .with_source(e)
            }
            // Wrong password, unknown role or database: a configuration error, not transient.
            c if c.starts_with("28") || c == "3D000" => Error::invalid(
                "the database refused the connection settings (credentials or database name)",
            )
            .with_source(e),
            "22001" | "22003" | "54000" => {
                Error::too_large("a value exceeds a database limit").with_source(e)
            }
            _ => Error::new(ErrorKind::Internal, format!("unexpected database error {code}"))
                .with_source(e),
        };
    }
    match &e {
        sqlx::Error::Database(db) if db.kind() == SqlxKind::UniqueViolation => {
            Error::conflict(0, "a row with this key exists").with_source(e)
        }
        _ => driver_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_retryable() {
        let e = parse_postgres_error(sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(!RolledBack::is_marked(&e));
        assert_eq!(
            parse_postgres_error(sqlx::Error::PoolTimedOut).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            parse_postgres_error(sqlx::Error::RowNotFound).kind(),
            ErrorKind::Internal
        );
    }
}
