//! Reopening a data directory: load the checkpoint, scan the log after it, cut a torn tail,
//! quarantine damage in the middle, and say exactly what was lost.
//!
//! Rules (the crash analysis in `docs/design.md` explains them):
//! - A frame is trusted only if its header CRC and then its body CRC (both seeded with the
//!   segment's salt) match.
//! - An invalid frame after which no valid frame follows ends the segment's data. In the last
//!   segment that is a torn tail: the bytes are zeroed (durably) so that they can never be read
//!   as frames later, and the write position goes back to the cut.
//! - An invalid frame followed by valid frames is damage in the middle when the log proves the
//!   damaged bytes were durable: the checkpoint or a later `Commit` frame covers them, or the
//!   segment is not the last one and was durable whole (see below). The damaged bytes are copied
//!   to `quarantine/` and skipped; the offsets they held are reported as lost and reading them is
//!   `Corruption`. Otherwise, in the last segment, the invalid frame is a torn tail as above (the
//!   valid frames after it were never acknowledged in `Sync` mode).
//! - A finished (not last) segment is durable whole when the session that wrote the damaged bytes
//!   was a `Sync` session (its roll synced the segment before the next one started), or when a
//!   later frame proves it: an `Open` frame, or a `Commit` frame past its segment's header
//!   (`proves_earlier`). A `Buffered`/`Interval` session syncs a finished segment in the
//!   background (`Writer::roll`), so a crash can leave it with bytes missing while later segments
//!   have data. Such damage, not proven durable, is where the durable log ended: the log is cut
//!   there like a torn tail — every later segment is removed (the newest first, then the
//!   directory synced), the bytes after the cut are zeroed and synced, the cut is reported as
//!   `torn_tail` (with the dropped frames) and the removed segments as `dropped_segments`, and
//!   every stream gets a new incarnation. Damage in such a segment that is proven durable is
//!   quarantined as above, and so are invalid bytes after the last frame of a `Sync` segment.
//! - Missing bytes at the end of a finished segment look like a clean end (zeros, or a shorter
//!   file). A non-`Sync` roll therefore starts the next segment with a `Commit` frame whose `aux`
//!   is the finished segment's end (`first` is the header length: it claims nothing else); if the
//!   finished segment's frames end before that, the missing bytes are cut (or quarantined, if
//!   proven durable) by the same rule. Without that frame (older logs, `Sync` rolls) the end is
//!   trusted.
//! - After an unclean shutdown every finished segment recovery keeps is synced before the next
//!   session writes anything (its roll sync may not have completed: a killed process leaves the
//!   bytes readable in the page cache but not on disk), so that a later session's frames do prove
//!   everything before them durable.
//! - Where the lost offsets cannot be named (the damaged frame's header is unreadable), every
//!   stream that might have lost its newest records gets a new incarnation, and so does every
//!   stream after an unclean shutdown of a session that acknowledged before syncing.

//!
//! The rooms: `mod.rs` runs recovery (checkpoint, segments in order, who gets a new incarnation);
//! `scan.rs` walks one segment's frames and tells a torn tail from damage in the middle;
//! `damage.rs` cuts the log, quarantines damaged bytes and records lost offsets; `replay.rs`
//! applies each valid frame to the streams. The report type is in `../report.rs`.

mod damage;
mod replay;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::types::StreamId;

use super::checkpoint::{self, CHECKPOINT};
use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::fs::{parse_segment_name, read_all, segment_path, FileSystem, CLEAN};
use super::index::Points;
use super::options::LocalOptions;
use super::report::RecoveryReport;
use super::state::SegInfo;
use super::streams::Streams;

/// The state rebuilt by recovery, handed to the writer.
pub(crate) struct Recovered {
    pub streams: Streams,
    pub segments: BTreeMap<u64, SegInfo>,
    pub next_number: u64,
    /// The segment to continue writing: (seq, salt, end of valid data, file length).
    pub active: Option<(u64, u32, u64)>,
    /// The highest segment number in use (damaged or not).
    pub max_seq: u64,
    pub reincarnate: Vec<StreamId>,
    pub report: RecoveryReport,
}

/// Where the log ends because a finished segment of a non-`Sync` session is damaged or short and
/// nothing proves those bytes were durable.
struct Cut {
    pos: u64,
    /// Non-zero bytes from `pos` to be zeroed.
    bytes: u64,
    /// Valid frames after `pos` in the segment.
    frames: usize,
}

struct Rec<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    seg_dir: &'a Path,
    /// Every segment, in order.
    seqs: Vec<u64>,
    /// A cut found by the scan of the current segment.
    cut: Option<Cut>,
    /// The scan of the current segment reached the end of its data without damage.
    ended_clean: bool,
    /// The highest segment holding a `Commit` frame past its header (computed when first needed):
    /// every segment before it was durable whole.
    proof: Option<Option<u64>>,
    opts: &'a LocalOptions,
    streams: Streams,
    numbers: HashMap<u64, StreamId>,
    next_number: u64,
    /// Log position of each stream's last frame seen by the scan.
    last_seen: HashMap<u64, (u64, u64)>,
    /// Ends of damaged regions whose lost offsets could not be named.
    blind: Vec<(u64, u64)>,
    /// Durability code of the last session seen.
    session: u64,
    /// Points of compaction copies waiting for their `Moved` frame, by stream number.
    moves: HashMap<u64, Points>,
    orphans: usize,
    report: RecoveryReport,
}

/// Rebuilds the store's state from `dir`: the checkpoint, then every segment in order
/// ([`Rec::segment`]), then who gets a new incarnation ([`Rec::finish`]).
pub(crate) fn recover(dir: &Path, seg_dir: &Path, opts: &LocalOptions) -> Result<Recovered> {
    let started = Instant::now();
    let fs = opts.fs.as_ref();
    let mut seqs: Vec<u64> = fs
        .list(seg_dir)
        .map_err(|e| io_error("listing segments", e))?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    seqs.sort_unstable();

    let mut rec = Rec {
        fs,
        dir,
        seg_dir,
        seqs: seqs.clone(),
        cut: None,
        ended_clean: false,
        proof: None,
        opts,
        streams: Streams::default(),
        numbers: HashMap::new(),
        next_number: 1,
        last_seen: HashMap::new(),
        blind: Vec::new(),
        session: 0,
        moves: HashMap::new(),
        orphans: 0,
        report: RecoveryReport {
            clean_shutdown: fs.exists(&dir.join(CLEAN)),
            ..RecoveryReport::default()
        },
    };
    let start = rec.load_checkpoint();

    let mut segments = BTreeMap::new();
    let mut active = None;
    let mut cut = false;
    let last = seqs.last().copied();
    for &seq in &seqs {
        let is_last = Some(seq) == last;
        match rec.segment(seq, start, is_last)? {
            Found::Removed => {}
            Found::Damaged => {
                let info = SegInfo {
                    salt: 0,
                    readable: 0,
                    damaged: true,
                };
                segments.insert(seq, info);
            }
            Found::Read {
                salt,
                readable,
                cut: ends,
            } => {
                let info = SegInfo {
                    salt,
                    readable,
                    damaged: false,
                };
                segments.insert(seq, info);
                if is_last || ends {
                    active = Some((seq, salt, readable));
                }
                if ends {
                    cut = true;
                    break;
                }
            }
        }
    }
    let max_seq = seqs.last().copied().unwrap_or(0);
    Ok(rec.finish(segments, active, max_seq, cut, started))
}

/// An I/O failure of recovery: the store cannot be opened.
fn io_error(what: &str, e: io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("recovery: {what}")).with_source(e)
}

/// What recovery made of one segment.
enum Found {
    /// Created but never written (its header was not durable): removed.
    Removed,
    /// Its header is unreadable: quarantined whole.
    Damaged,
    /// Its valid frames end at `readable`; with `cut`, the log ends there (later segments were
    /// removed).
    Read { salt: u32, readable: u64, cut: bool },
}

impl Rec<'_> {
    /// Loads the checkpoint, if there is a good one; returns the log position to scan from.
    fn load_checkpoint(&mut self) -> (u64, u64) {
        let (fs, opts) = (self.fs, self.opts);
        let first = (self.seqs.first().copied().unwrap_or(1), SEGMENT_HEADER_LEN);
        let ck_path = self.dir.join(CHECKPOINT);
        if !fs.exists(&ck_path) {
            return first;
        }
        let loaded = fs
            .open(&ck_path, false)
            .and_then(|f| read_all(f.as_ref()))
            .map_err(|e| e.to_string())
            .and_then(|b| {
                checkpoint::decode(&b, opts.idempotency_keys).map_err(|e| e.0.to_owned())
            });
        match loaded {
            Ok(c) => {
                let start = (c.seg, c.pos);
                self.next_number = c.next_number.max(1);
                self.session = c.durability;
                for (id, s) in &c.streams {
                    self.numbers.insert(s.number, id.clone());
                }
                self.streams = c.streams;
                self.report.checkpoint = Some(start);
                start
            }
            Err(e) => {
                eprintln!("streamstore: the checkpoint is unusable ({e}); scanning the whole log");
                self.report.checkpoint_error = Some(e);
                self.report.clean_shutdown = false;
                if first.0 > 1 {
                    self.report.warnings.push(format!(
                        "segments before {} were already collected; state recorded only in the \
                         lost checkpoint (streams created there) is gone",
                        first.0
                    ));
                }
                first
            }
        }
    }

    /// Recovers segment `seq`: scans it from `start` if it is at or after the checkpoint's
    /// segment (only its header and length otherwise), and applies a cut the scan found.
    fn segment(&mut self, seq: u64, start: (u64, u64), is_last: bool) -> Result<Found> {
        let fs = self.fs;
        let path = segment_path(self.seg_dir, seq);
        let file = fs
            .open(&path, is_last)
            .map_err(|e| io_error("opening a segment", e))?;
        let scanned = seq >= start.0;
        let data = if scanned {
            read_all(file.as_ref()).map_err(|e| io_error("reading a segment", e))?
        } else {
            let mut h = vec![0u8; 64];
            let n = file
                .read_at(&mut h, 0)
                .map_err(|e| io_error("reading a segment", e))?;
            h.truncate(n);
            h
        };
        let header = match SegmentHeader::decode(&data) {
            Ok(h) if h.seq == seq => h,
            bad => {
                let reason = match bad {
                    Ok(_) => "segment header names another sequence number".to_owned(),
                    Err(e) => e.0.to_owned(),
                };
                let rest_zero = data.get(64..).unwrap_or_default().iter().all(|b| *b == 0);
                if is_last && scanned && rest_zero {
                    // Created but never written: the crash came before its header was durable.
                    eprintln!(
                        "streamstore: removing segment {seq}, whose header was never completely written"
                    );
                    fs.remove(&path)
                        .map_err(|e| io_error("removing a torn segment", e))?;
                    self.report.removed_empty_segments.push(seq);
                    fs.sync_dir(self.seg_dir)
                        .map_err(|e| io_error("syncing the segment directory", e))?;
                    return Ok(Found::Removed);
                }
                let len = file.size().unwrap_or(0);
                self.quarantine(seq, 0, len, &data, format!("segment header: {reason}"));
                self.blind.push((seq, len));
                return Ok(Found::Damaged);
            }
        };
        let salt = header.salt();
        let readable = if scanned {
            // The checkpoint's position is durable (it was synced before the checkpoint).
            let from = if seq == start.0 {
                start.1
            } else {
                SEGMENT_HEADER_LEN
            };
            self.report.segments_scanned += 1;
            if (data.len() as u64) < from {
                self.report.warnings.push(format!(
                    "segment {seq} has {} bytes, fewer than the checkpoint position {from}",
                    data.len()
                ));
            }
            let end = self.scan(seq, salt, &data, from, from, is_last, file.as_ref())?;
            self.report.bytes_scanned += end.saturating_sub(from);
            if !is_last && self.cut.is_none() && self.ended_clean {
                self.check_end(seq, end, &data)?;
            }
            end
        } else {
            file.size()
                .map_err(|e| io_error("reading a segment length", e))?
        };
        if let Some(c) = self.cut.take() {
            self.apply_cut(seq, &c)?;
            return Ok(Found::Read {
                salt,
                readable,
                cut: true,
            });
        }
        if !is_last && scanned && !self.report.clean_shutdown {
            // What this recovery keeps must be durable before the next session writes after it:
            // a finished segment's roll sync may not have completed when the last session ended
            // (a process crash leaves the bytes in the page cache, readable but not on disk). The
            // last segment is synced with the next session's `Open` frame.
            file.sync_data()
                .map_err(|e| io_error("syncing a recovered segment", e))?;
        }
        Ok(Found::Read {
            salt,
            readable,
            cut: false,
        })
    }

    /// The recovered state, after the scan: who may have lost records that readers saw gets a
    /// new incarnation.
    fn finish(
        mut self,
        segments: BTreeMap<u64, SegInfo>,
        active: Option<(u64, u32, u64)>,
        max_seq: u64,
        cut: bool,
        started: Instant,
    ) -> Recovered {
        if self.orphans > 0 {
            self.report.warnings.push(format!(
                "{} frames name streams whose creation is not in the log; they were ignored",
                self.orphans
            ));
        }
        let mut reincarnate = Vec::new();
        // A cut in a finished segment dropped frames of any stream, perhaps seen by readers.
        let unclean_buffered = (!self.report.clean_shutdown && self.session != SYNC) || cut;
        for (id, s) in &self.streams {
            let seen = self.last_seen.get(&s.number).copied();
            let blind = self.blind.iter().any(|(seq, end)| {
                seen.is_none_or(|p| p < (*seq, *end)) && s.head.sealed_ms.is_none()
            });
            if unclean_buffered || blind {
                reincarnate.push(id.clone());
            }
        }
        self.report.reincarnated.clone_from(&reincarnate);
        self.report.duration = started.elapsed();
        Recovered {
            streams: self.streams,
            segments,
            next_number: self.next_number,
            active,
            max_seq,
            reincarnate,
            report: self.report,
        }
    }
}

/// `Durability::Sync.code()`: a session that synced every group, and every finished segment at its
/// roll, before acknowledging.
const SYNC: u64 = 0;
