//! The recovery report: what reopening a data directory found (torn tail, quarantined damage,
//! lost offsets, new incarnations). `LocalStore::recovery_report` returns the last one.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::StreamId;

/// What reopening found. `LocalStore::recovery_report` returns the last one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous session closed cleanly (its checkpoint covers everything).
    pub clean_shutdown: bool,
    /// The log position the scan started from, if a checkpoint was used.
    pub checkpoint: Option<(u64, u64)>,
    /// Why the checkpoint could not be used, if it could not.
    pub checkpoint_error: Option<String>,
    /// Segments scanned.
    pub segments_scanned: usize,
    /// Bytes of log scanned.
    pub bytes_scanned: u64,
    /// The torn tail cut from the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Damaged regions skipped (and copied to `quarantine/`).
    pub quarantined: Vec<Quarantine>,
    /// Offsets lost to damage, per stream. Reading them fails with `Corruption`.
    pub lost: Vec<LostRange>,
    /// Streams given a new incarnation because records readers may have seen could be gone.
    pub reincarnated: Vec<StreamId>,
    /// Other findings (e.g. frames of streams whose creation is no longer in the log).
    pub warnings: Vec<String>,
    /// Last segments removed because their header was never completely written (a crash while
    /// creating the segment; nothing in them was acknowledged). Normal after a crash, but listed
    /// because a segment cut to nothing by damage looks the same.
    pub removed_empty_segments: Vec<u64>,
    /// Segments removed because they came after a cut in a finished segment written by a
    /// `Buffered`/`Interval` session (see [`TornTail`]): their frames were never proven durable.
    pub dropped_segments: Vec<u64>,
    /// Time the recovery took.
    pub duration: Duration,
}

impl RecoveryReport {
    /// Whether recovery found anything damaged, lost or changed (a torn tail alone is normal after
    /// a crash and does not count).
    pub fn has_damage(&self) -> bool {
        !self.quarantined.is_empty()
            || !self.lost.is_empty()
            || !self.reincarnated.is_empty()
            || self.checkpoint_error.is_some()
            || !self.warnings.is_empty()
    }
}

/// The bytes cut from the end of the log. Usually in the last segment; after a crash of a
/// `Buffered`/`Interval` session it can be in a finished segment whose roll sync had not completed,
/// and then every later segment is dropped too ([`RecoveryReport::dropped_segments`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment sequence number.
    pub segment: u64,
    /// Where the cut starts.
    pub position: u64,
    /// How many bytes after it (in that segment) were not zero.
    pub bytes: u64,
    /// Valid frames found after the cut (never acknowledged in `Sync` mode), dropped; those of
    /// dropped later segments included.
    pub dropped_frames: usize,
}

/// A damaged region of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    /// Segment sequence number.
    pub segment: u64,
    /// First damaged byte.
    pub start: u64,
    /// One past the last damaged byte.
    pub end: u64,
    /// What was wrong.
    pub reason: String,
    /// Where a copy of the bytes was saved.
    pub saved_to: Option<PathBuf>,
}

/// Offsets of a stream lost to damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRange {
    /// The stream.
    pub stream: StreamId,
    /// First lost offset.
    pub start: u64,
    /// One past the last lost offset.
    pub end: u64,
}
