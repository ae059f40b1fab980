//! MySQL / MariaDB errors as `streamstore::Error`s, by server error number (never SQLSTATE
//! `23000`, which is a whole class, and never by message text).

use sqlx::mysql::MySqlDatabaseError;
use streamstore::implementor::ErrorShorthand;
use streamstore::{Error, ErrorKind};
use streamstore_sql::{driver_error, RolledBack};

/// Duplicate entry for a unique key.
pub(crate) const ER_DUP_ENTRY: u16 = 1062;

/// Maps a driver error to the store's error kinds.
///
/// - duplicate key (`1062`, `1586`) → `Conflict` (the caller fills in the actual next offset);
/// - deadlock (`1213`), lock wait timeout (`1205`) → `Unavailable`, retryable, marked
///   [`RolledBack`] so the transaction is run again internally (the adapter drops the
///   transaction after either, so all of it is rolled back even where the server rolled back
///   only the statement);
/// - too many connections (`1040`), shutdown (`1053`), network errors (`1152`, `1154`–`1161`), killed or
///   interrupted (`1317`, `1927`, `3024`, `4031`), server gone / lost (`2006`, `2013`), I/O, TLS,
///   protocol and pool timeouts → `Unavailable`;
/// - packet or value too large (`1153`, `1406`, `1264`) → `TooLarge`;
/// - access denied or unknown database (`1044`, `1045`, `1049`, `1698`), a bad URL or option →
///   `InvalidArgument`; anything else → `Internal`.
pub fn parse_mysql_error(e: sqlx::Error) -> Error {
    let number = match &e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    };
    if let Some(number) = number {
        return match number {
            ER_DUP_ENTRY | 1586 => Error::conflict(0, "a row with this key exists").with_source(e),
            1205 | 1213 => Error::new(
                ErrorKind::Unavailable,
                "the database rolled the transaction back (deadlock or lock wait timeout)",
            )
            .with_source(RolledBack(Box::new(e))),
            1040 | 1053 | 1152 | 1154..=1161 | 1317 | 1927 | 2006 | 2013 | 3024 | 4031 => {
                Error::new(
                    ErrorKind::Unavailable,
                    "the database connection failed, was killed or the server is shutting down",
                )
                .with_source(e)
            }
            // Access denied, unknown database: a configuration error, not transient.
            1044 | 1045 | 1049 | 1698 => Error::invalid(
                "the database refused the connection settings (credentials or database name)",
            )
            .with_source(e),
            1153 | 1264 | 1406 => {
                Error::too_large("a value exceeds a database limit").with_source(e)
            }
            n => Error::new(
                ErrorKind::Internal,
                format!("unexpected database error {n}"),
            )
            .with_source(e),
        };
    }
    driver_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_retryable() {
        let e = parse_mysql_error(sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(!RolledBack::is_marked(&e));
        assert_eq!(
            parse_mysql_error(sqlx::Error::RowNotFound).kind(),
            ErrorKind::Internal
        );
    }
}
