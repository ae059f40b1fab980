//! Constructors of errors, batches and list pages for implementors: the contract's wording and
//! edge cases written once. Traits, so that `Error::sealed(..)` reads as before where the trait
//! is imported, while users of a store never see these in the main API.

use std::ops::Bound;

use crate::error::{Error, ErrorKind};
use crate::types::{Incarnation, ListOptions, ListPage, ReadBatch, Record, StreamId};

/// The errors the contract names, with messages that do not repeat the kind (the kind is
/// printed first by `Display`).
pub trait ErrorShorthand {
    /// `InvalidArgument` with `message`.
    fn invalid(message: impl Into<String>) -> Error;
    /// `NotFound` naming the stream.
    fn not_found(stream: &StreamId) -> Error;
    /// `Conflict { actual_next }` with `message`.
    fn conflict(actual_next: u64, message: impl Into<String>) -> Error;
    /// `Sealed` naming the stream.
    fn sealed(stream: &StreamId) -> Error;
    /// `Trimmed { first_available }` for a read at `from`.
    fn trimmed(from: u64, first_available: u64) -> Error;
    /// `TooLarge` with `message`.
    fn too_large(message: impl Into<String>) -> Error;
    /// `Unsupported`: `what` is not offered by this store.
    fn unsupported(what: &str) -> Error;
    /// `Closed`: the store's `close` was called.
    fn closed() -> Error;
    /// `Unavailable`: a read of `stream` found a hole on every attempt (trims or deletes kept
    /// running between its head read and its record read).
    fn kept_changing(stream: &StreamId) -> Error;
}

impl ErrorShorthand for Error {
    fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    fn not_found(stream: &StreamId) -> Error {
        Error::new(ErrorKind::NotFound, format!("stream {stream:?}"))
    }

    fn conflict(actual_next: u64, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict { actual_next }, message)
    }

    fn sealed(stream: &StreamId) -> Error {
        Error::new(
            ErrorKind::Sealed,
            format!("stream {stream:?} takes no more appends"),
        )
    }

    fn trimmed(from: u64, first_available: u64) -> Error {
        Error::new(
            ErrorKind::Trimmed { first_available },
            format!("offset {from} is below the first available offset {first_available}"),
        )
    }

    fn too_large(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::TooLarge, message)
    }

    fn unsupported(what: &str) -> Error {
        Error::new(ErrorKind::Unsupported, format!("{what} (see Capabilities)"))
    }

    fn closed() -> Error {
        Error::new(ErrorKind::Closed, "close() was called on this store")
    }

    fn kept_changing(stream: &StreamId) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("stream {stream:?} kept changing while it was read"),
        )
    }
}

/// The two batches every read starts from.
pub trait ReadBatchParts: Sized {
    /// The empty result for a stream that does not exist.
    fn missing(from: u64) -> Self;

    /// The empty batch at `from` of an existing stream — the start of every read — or `Trimmed`
    /// if `from` is below `first_available`.
    fn empty_at(
        from: u64,
        first_available: u64,
        end_offset: u64,
        sealed: bool,
        incarnation: Incarnation,
    ) -> crate::Result<Self>;

    /// Takes `records` if they are the dense run from the batch's `next_offset` (not empty, no
    /// hole) and moves `next_offset` past them; otherwise returns `false` and leaves the batch as
    /// it was. A database adapter reads the head, then the records below it: every one of those
    /// was committed before the head was read, so a hole means a trim or a delete ran in between,
    /// and the read starts again (the new head then says `Trimmed` or shows the new incarnation).
    fn take_contiguous(&mut self, records: Vec<Record>) -> bool;
}

impl ReadBatchParts for ReadBatch {
    fn missing(from: u64) -> Self {
        ReadBatch {
            records: Vec::new(),
            next_offset: from,
            end_offset: 0,
            first_available: 0,
            sealed: false,
            incarnation: None,
        }
    }

    fn empty_at(
        from: u64,
        first_available: u64,
        end_offset: u64,
        sealed: bool,
        incarnation: Incarnation,
    ) -> crate::Result<Self> {
        if from < first_available {
            return Err(Error::trimmed(from, first_available));
        }
        Ok(ReadBatch {
            records: Vec::new(),
            next_offset: from,
            end_offset,
            first_available,
            sealed,
            incarnation: Some(incarnation),
        })
    }

    fn take_contiguous(&mut self, records: Vec<Record>) -> bool {
        let from = self.next_offset;
        if records.is_empty() || !records.iter().zip(from..).all(|(r, o)| r.offset == o) {
            return false;
        }
        self.next_offset = from + u64::try_from(records.len()).unwrap_or(u64::MAX);
        self.records = records;
        true
    }
}

/// Building a [`ListPage`] from ids in byte order.
pub trait ListParts {
    /// Builds the page from existing ids in ascending order, starting after `after` (e.g. a
    /// `BTreeMap` range from [`ListParts::lower_bound`]): keeps those with the prefix, at most
    /// [`ListOptions::page_size`], and sets `next_after` if more follow.
    fn page<'a>(&self, ids: impl Iterator<Item = &'a StreamId>) -> ListPage;

    /// Where a scan of ids in byte order starts: just after `after`.
    fn lower_bound(&self) -> Bound<StreamId>;
}

impl ListParts for ListOptions {
    fn page<'a>(&self, ids: impl Iterator<Item = &'a StreamId>) -> ListPage {
        let fetched = ids
            .skip_while(|id| id.as_str() < self.prefix.as_str())
            .take_while(|id| id.as_str().starts_with(&self.prefix))
            .take(self.page_size().saturating_add(1))
            .cloned()
            .collect();
        ListPage::from_fetched(fetched, self.page_size())
    }

    fn lower_bound(&self) -> Bound<StreamId> {
        match &self.after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        }
    }
}

/// A [`ListPage`] from ids a scan fetched.
pub trait ListPageParts {
    /// A page from up to `limit + 1` ids fetched in order (the extra one only tells that more
    /// follow).
    fn from_fetched(streams: Vec<StreamId>, limit: usize) -> Self;
}

impl ListPageParts for ListPage {
    fn from_fetched(mut streams: Vec<StreamId>, limit: usize) -> Self {
        let more = streams.len() > limit;
        streams.truncate(limit);
        let next_after = if more { streams.last().cloned() } else { None };
        ListPage {
            streams,
            next_after,
        }
    }
}
