//! For implementors of [`StreamStore`](crate::StreamStore): the pieces every store shares.
//!
//! An application that *uses* a store needs nothing from here. An adapter that *implements*
//! [`StreamStore`](crate::StreamStore) (the database adapters of this project use exactly this
//! module) finds the shared rules written once:
//!
//! - [`head`]: the per-stream state machine (expectations, idempotency keys, seal, trim).
//! - [`validate`]: the checks made before anything is written ([`validate::check_append`],
//!   [`validate::check_read`]) and the clock ([`validate::now_ms`]).
//! - [`wait`]: the waiting-read loop ([`wait::wait_for_records`]), in-process notifiers, and the
//!   [`wait::Watcher`] database adapters poll their streams' heads with.
//! - [`ErrorShorthand`], [`ReadBatchParts`], [`ListParts`], [`ListPageParts`]: constructors of errors, batches and
//!   list pages that keep the contract's wording and edge cases in one place.
//! - [`OpenFlag`], [`Tasks`], [`prepare_append`]: the preamble every adapter's calls share.
//! - [`fs`] and [`local_format`]: the local engine's file-system seam (fault injection in tests)
//!   and its on-disk format (for tools and fuzzing).
//!
//! Nothing here is needed to use a store, and these items may change in minor versions more
//! freely than the main API.

pub mod head;
mod parts;
mod shared;
pub mod validate;
pub mod wait;

pub use parts::{ErrorShorthand, ListPageParts, ListParts, ReadBatchParts};
pub use shared::{prepare_append, OpenFlag, Tasks};

/// The local engine's file-system seam: every file operation of [`LocalStore`](crate::LocalStore)
/// goes through a [`FileSystem`](fs::FileSystem) ([`LocalOptions::fs`](crate::LocalOptions::fs)),
/// so tests can inject faults.
pub mod fs {
    pub use crate::local::fs::{FileHandle, FileSystem, StdFs};
}

/// The local engine's on-disk format (`docs/format.md`): frame and segment codecs, for tools,
/// tests and fuzzing.
pub mod local_format {
    pub use crate::local::format::*;
}
