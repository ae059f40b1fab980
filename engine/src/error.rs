//! The one public error type of every `StreamStore` implementation.

use std::fmt;

/// What went wrong, in terms a caller can act on.
///
/// Every implementation maps its own failures onto these kinds; the conformance suite checks the
/// kinds, never the messages. New kinds may be added, so match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller passed something malformed: a bad stream id, an empty batch, a zero limit, an
    /// idempotency key reused for different records. Nothing was written.
    InvalidArgument,
    /// The stream does not exist (for calls that need an existing stream: `seal`, `trim`, `info`).
    NotFound,
    /// The append's expectation did not hold. `actual_next` is the stream's next offset at the time
    /// of the check (0 for a stream that does not exist). Nothing was written.
    Conflict {
        /// The offset the stream would have assigned next.
        actual_next: u64,
    },
    /// The stream is sealed: no more appends. Nothing was written.
    Sealed,
    /// The requested offset is below the stream's first available offset.
    Trimmed {
        /// The lowest offset that can still be read.
        first_available: u64,
    },
    /// A record, a batch or an id exceeds the implementation's limits (see `Capabilities`).
    /// Nothing was written.
    TooLarge,
    /// The implementation does not support this call (see `Capabilities`).
    Unsupported,
    /// The backing service or device is unreachable, overloaded or timed out. The call may or may not
    /// have taken effect: retry, with an idempotency key for appends.
    Unavailable,
    /// Stored data failed validation. It is never served.
    Corruption,
    /// An earlier write or fsync failed; the store refuses every write until it is reopened.
    Poisoned,
    /// The store was closed by `close()`.
    Closed,
    /// An internal error that fits no other kind (a bug, or an unexpected backend answer).
    Internal,
}

impl ErrorKind {
    /// Whether the same call may succeed if repeated unchanged.
    ///
    /// `Conflict` is not retryable as such: the caller must re-read the stream and choose a new
    /// expectation.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict { .. } => "conflict",
            ErrorKind::Sealed => "sealed",
            ErrorKind::Trimmed { .. } => "trimmed",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corruption => "corruption",
            ErrorKind::Poisoned => "poisoned",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal error",
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every `StreamStore` call: a kind, a message for people, and the underlying cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    source: Option<Source>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; retryability follows [`ErrorKind::is_retryable`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retryable: kind.is_retryable(),
            source: None,
        }
    }

    /// Keeps `source` as the cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides retryability, e.g. a deadlock reported by a database is `Unavailable`-like but
    /// an adapter may also mark other transient conditions retryable.
    #[must_use]
    pub fn set_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether repeating the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        d.field("retryable", &self.retryable);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// `<kind>: <message>` and, if there is one, ` (<source>)`. Messages do not repeat the kind
/// (`sealed: stream "job/1" takes no more appends`).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::implementor::ErrorShorthand;

    #[test]
    fn display_names_kind_message_and_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::new(ErrorKind::Unavailable, "write failed").with_source(io);
        assert_eq!(e.to_string(), "unavailable: write failed (disk on fire)");
        assert!(e.is_retryable());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn only_unavailable_is_retryable_by_default() {
        assert!(!Error::conflict(3, "x").is_retryable());
        assert!(!Error::closed().is_retryable());
        assert!(Error::conflict(3, "x").set_retryable(true).is_retryable());
    }

    #[test]
    fn display_does_not_repeat_the_kind() {
        let id = crate::StreamId::new("job/bad").unwrap();
        assert_eq!(
            Error::sealed(&id).to_string(),
            "sealed: stream \"job/bad\" takes no more appends"
        );
        assert_eq!(
            Error::not_found(&id).to_string(),
            "not found: stream \"job/bad\""
        );
        assert_eq!(
            Error::closed().to_string(),
            "closed: close() was called on this store"
        );
        assert_eq!(
            Error::trimmed(3, 5).to_string(),
            "trimmed: offset 3 is below the first available offset 5"
        );
        assert_eq!(
            Error::unsupported("idempotent append").to_string(),
            "unsupported: idempotent append (see Capabilities)"
        );
    }
}
