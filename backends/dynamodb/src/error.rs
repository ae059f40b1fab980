//! DynamoDB errors as `streamstore::Error`s, by error code and SDK error variant, never by
//! message text.

use std::error::Error as StdError;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use streamstore::{Error, ErrorKind};

/// Whether a failed request may still have been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request was refused or never sent: nothing changed.
    NotApplied,
    /// No answer (timeout, lost connection, unreadable reply, a server error): it may have been
    /// applied.
    Unknown,
}

/// Maps an SDK error to the store's error kinds, and says whether the request may have applied.
///
/// - never sent (`ConstructionFailure`) → `Internal`, not applied;
/// - `TimeoutError`, `DispatchFailure`, `ResponseError` → `Unavailable`, outcome unknown;
/// - throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
///   `RequestLimitExceeded`), `TransactionConflictException`, `TransactionInProgressException`
///   → `Unavailable`, not applied;
/// - `InternalServerError`, `ServiceUnavailable` and other 5xx → `Unavailable`, outcome unknown;
/// - refused credentials (`UnrecognizedClientException`, `AccessDeniedException`,
///   `InvalidSignatureException`, `MissingAuthenticationToken`) → `InvalidArgument`;
/// - anything else → `Internal` (the adapter sends nothing DynamoDB should refuse).
pub fn parse_dynamodb_error<E>(e: SdkError<E, HttpResponse>) -> (Error, Outcome)
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match &e {
        SdkError::ConstructionFailure(_) => (
            Error::new(
                ErrorKind::Internal,
                "the DynamoDB request could not be built",
            )
            .with_source(e),
            Outcome::NotApplied,
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            Error::new(
                ErrorKind::Unavailable,
                "DynamoDB did not answer (timeout, connection failure or unreadable reply)",
            )
            .with_source(e),
            Outcome::Unknown,
        ),
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_owned();
            match classify(&code, status) {
                Some((kind, outcome, what)) => (Error::new(kind, what).with_source(e), outcome),
                None => (
                    Error::new(
                        ErrorKind::Internal,
                        format!("unexpected DynamoDB error {code} (HTTP {status})"),
                    )
                    .with_source(e),
                    Outcome::NotApplied,
                ),
            }
        }
        _ => (
            Error::new(ErrorKind::Unavailable, "DynamoDB request failed").with_source(e),
            Outcome::Unknown,
        ),
    }
}

/// The kind, outcome and message of a service error code.
fn classify(code: &str, status: u16) -> Option<(ErrorKind, Outcome, &'static str)> {
    Some(match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TransactionConflictException"
        | "TransactionInProgressException"
        | "LimitExceededException" => (
            ErrorKind::Unavailable,
            Outcome::NotApplied,
            "DynamoDB throttled or refused the request for now",
        ),
        "UnrecognizedClientException"
        | "AccessDeniedException"
        | "InvalidSignatureException"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => (
            ErrorKind::InvalidArgument,
            Outcome::NotApplied,
            "DynamoDB refused the credentials",
        ),
        "ResourceNotFoundException" => (
            ErrorKind::Internal,
            Outcome::NotApplied,
            "the DynamoDB table does not exist (was it deleted while the store was open?)",
        ),
        _ if status >= 500 => (
            ErrorKind::Unavailable,
            Outcome::Unknown,
            "DynamoDB had an internal error; the request may or may not have been applied",
        ),
        _ => return None,
    })
}

/// Shorthand: the error alone.
pub(crate) fn map<E>(e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    parse_dynamodb_error(e).0
}

/// A builder refused a request (a required field missing): a bug of this crate.
pub(crate) fn build_error(e: impl StdError + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Internal, "a DynamoDB request could not be built").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let k = |c, s| classify(c, s).map(|(k, o, _)| (k, o));
        assert_eq!(
            k("ThrottlingException", 400),
            Some((ErrorKind::Unavailable, Outcome::NotApplied))
        );
        assert_eq!(
            k("InternalServerError", 500),
            Some((ErrorKind::Unavailable, Outcome::Unknown))
        );
        assert_eq!(
            k("UnrecognizedClientException", 400),
            Some((ErrorKind::InvalidArgument, Outcome::NotApplied))
        );
        assert_eq!(k("ValidationException", 400), None);
    }
}
