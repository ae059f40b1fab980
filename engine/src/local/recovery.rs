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

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::head::StreamHead;
use crate::types::{Incarnation, Record, Retention, StreamId};

use super::checkpoint::{self, CHECKPOINT};
use super::codec::{get_retention, Get};
use super::format::{
    self, FrameHeader, Kind, SegmentHeader, FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::fs::{parse_segment_name, read_all, segment_path, FileSystem};
use super::index::Point;
use super::options::LocalOptions;
use super::state::{SegInfo, Stream, Streams};

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
    moves: HashMap<u64, super::index::Points>,
    orphans: usize,
    report: RecoveryReport,
}

/// Rebuilds the store's state from `dir`.
pub(crate) fn recover(dir: &Path, seg_dir: &Path, opts: &LocalOptions) -> Result<Recovered> {
    let started = Instant::now();
    let fs = opts.fs.as_ref();
    let io = |what: &str, e: io::Error| {
        Error::new(ErrorKind::Unavailable, format!("recovery: {what}")).with_source(e)
    };
    let mut seqs: Vec<u64> = fs
        .list(seg_dir)
        .map_err(|e| io("listing segments", e))?
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
            clean_shutdown: fs.exists(&dir.join(super::fs::CLEAN)),
            ..RecoveryReport::default()
        },
    };

    // The checkpoint, if there is a good one.
    let mut start = (seqs.first().copied().unwrap_or(1), SEGMENT_HEADER_LEN);
    let ck_path = dir.join(CHECKPOINT);
    if fs.exists(&ck_path) {
        let loaded = fs
            .open(&ck_path, false)
            .and_then(|f| read_all(f.as_ref()))
            .map_err(|e| e.to_string())
            .and_then(|b| {
                checkpoint::decode(&b, opts.idempotency_keys).map_err(|e| e.0.to_owned())
            });
        match loaded {
            Ok(c) => {
                start = (c.seg, c.pos);
                rec.next_number = c.next_number.max(1);
                rec.session = c.durability;
                for (id, s) in &c.streams {
                    rec.numbers.insert(s.number, id.clone());
                }
                rec.streams = c.streams;
                rec.report.checkpoint = Some(start);
            }
            Err(e) => {
                eprintln!("streamstore: the checkpoint is unusable ({e}); scanning the whole log");
                rec.report.checkpoint_error = Some(e);
                rec.report.clean_shutdown = false;
                start = (seqs.first().copied().unwrap_or(1), SEGMENT_HEADER_LEN);
                if start.0 > 1 {
                    rec.report.warnings.push(format!(
                        "segments before {} were already collected; state recorded only in the \
                         lost checkpoint (streams created there) is gone",
                        start.0
                    ));
                }
            }
        }
    }

    let mut segments = BTreeMap::new();
    let mut active = None;
    let mut cut = false;
    let last = seqs.last().copied();
    for &seq in &seqs {
        let path = segment_path(seg_dir, seq);
        let is_last = Some(seq) == last;
        let file = fs
            .open(&path, is_last)
            .map_err(|e| io("opening a segment", e))?;
        let scanned = seq >= start.0;
        let data = if scanned {
            read_all(file.as_ref()).map_err(|e| io("reading a segment", e))?
        } else {
            let mut h = vec![0u8; 64];
            let n = file
                .read_at(&mut h, 0)
                .map_err(|e| io("reading a segment", e))?;
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
                        .map_err(|e| io("removing a torn segment", e))?;
                    rec.report.removed_empty_segments.push(seq);
                    fs.sync_dir(seg_dir)
                        .map_err(|e| io("syncing the segment directory", e))?;
                    continue;
                }
                let len = file.size().unwrap_or(0);
                rec.quarantine(seq, 0, len, &data, format!("segment header: {reason}"));
                rec.blind.push((seq, len));
                segments.insert(
                    seq,
                    SegInfo {
                        salt: 0,
                        readable: 0,
                        damaged: true,
                    },
                );
                continue;
            }
        };
        let salt = header.salt();
        let readable = if scanned {
            let from = if seq == start.0 {
                start.1
            } else {
                SEGMENT_HEADER_LEN
            };
            let durable = if seq == start.0 {
                start.1
            } else {
                SEGMENT_HEADER_LEN
            };
            rec.report.segments_scanned += 1;
            if (data.len() as u64) < from {
                rec.report.warnings.push(format!(
                    "segment {seq} has {} bytes, fewer than the checkpoint position {from}",
                    data.len()
                ));
            }
            let end = rec.scan(seq, salt, &data, from, durable, is_last, file.as_ref())?;
            rec.report.bytes_scanned += end.saturating_sub(from);
            if !is_last && rec.cut.is_none() && rec.ended_clean {
                rec.check_end(seq, end, &data)?;
            }
            end
        } else {
            file.size().map_err(|e| io("reading a segment length", e))?
        };
        segments.insert(
            seq,
            SegInfo {
                salt,
                readable,
                damaged: false,
            },
        );
        if let Some(c) = rec.cut.take() {
            rec.apply_cut(seq, &c)?;
            cut = true;
            active = Some((seq, salt, readable));
            break;
        }
        if is_last {
            active = Some((seq, salt, readable));
        } else if scanned && !rec.report.clean_shutdown {
            // What this recovery keeps must be durable before the next session writes after it:
            // a finished segment's roll sync may not have completed when the last session ended
            // (a process crash leaves the bytes in the page cache, readable but not on disk). The
            // last segment is synced with the next session's `Open` frame.
            file.sync_data()
                .map_err(|e| io("syncing a recovered segment", e))?;
        }
    }
    if rec.orphans > 0 {
        rec.report.warnings.push(format!(
            "{} frames name streams whose creation is not in the log; they were ignored",
            rec.orphans
        ));
    }

    // Who may have lost records that readers saw?
    let mut reincarnate = Vec::new();
    // A cut in a finished segment dropped frames of any stream, perhaps seen by readers.
    let unclean_buffered = (!rec.report.clean_shutdown && rec.session != SYNC) || cut;
    for (id, s) in &rec.streams {
        let seen = rec.last_seen.get(&s.number).copied();
        let blind = rec
            .blind
            .iter()
            .any(|(seq, end)| seen.is_none_or(|p| p < (*seq, *end)) && s.head.sealed_ms.is_none());
        if unclean_buffered || blind {
            reincarnate.push(id.clone());
        }
    }
    rec.report.reincarnated.clone_from(&reincarnate);
    rec.report.duration = started.elapsed();
    let max_seq = seqs.last().copied().unwrap_or(0);
    Ok(Recovered {
        streams: rec.streams,
        segments,
        next_number: rec.next_number,
        active,
        max_seq,
        reincarnate,
        report: rec.report,
    })
}

/// `Durability::Sync.code()`: a session that synced every group, and every finished segment at its
/// roll, before acknowledging.
const SYNC: u64 = 0;

/// A checked frame at `pos`: the header and its body.
fn frame_at(data: &[u8], pos: u64, salt: u32) -> Option<(FrameHeader, &[u8])> {
    let at = usize::try_from(pos).ok()?;
    let h = format::decode_header(data.get(at..)?, salt).ok()?;
    let body = data.get(at + FRAME_HEADER_LEN..at + usize::try_from(h.len).ok()?)?;
    format::body_ok(&h, body, salt).then_some((h, body))
}

/// The next position after `from` where a valid frame starts.
fn resync(data: &[u8], from: u64, salt: u32) -> Option<u64> {
    let mut p = format::align(from);
    while p + FRAME_HEADER_LEN as u64 <= data.len() as u64 {
        let at = usize::try_from(p).ok()?;
        // Zeros are never a frame start (a frame's length is at least 56): skip them cheaply.
        if data.get(at..at + 4).is_some_and(|b| b != [0, 0, 0, 0])
            && frame_at(data, p, salt).is_some()
        {
            return Some(p);
        }
        p += FRAME_ALIGN;
    }
    None
}

/// One past the last non-zero byte at or after `from`.
fn nonzero_end(data: &[u8], from: u64) -> u64 {
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    match data
        .get(start..)
        .and_then(|d| d.iter().rposition(|b| *b != 0))
    {
        Some(i) => from + i as u64 + 1,
        None => from,
    }
}

impl Rec<'_> {
    /// Scans one segment from `from`; returns the end of its valid data.
    #[expect(
        clippy::too_many_arguments,
        reason = "the scan's inputs are all distinct"
    )]
    fn scan(
        &mut self,
        seq: u64,
        salt: u32,
        data: &[u8],
        from: u64,
        durable: u64,
        is_last: bool,
        file: &dyn super::fs::FileHandle,
    ) -> Result<u64> {
        let mut pos = from;
        let mut durable = durable;
        let mut barrier = None;
        self.ended_clean = false;
        // One past the last non-zero byte: computed once, the data does not change.
        let data_end = nonzero_end(data, from);
        loop {
            if pos >= data_end {
                // Only zeros (or nothing) follow: the normal end of the written part. A file that
                // ends exactly here was cut (the writer always zero-fills ahead of its frames).
                if data.len() as u64 <= pos && pos < self.opts.segment_bytes {
                    self.report.warnings.push(format!(
                        "segment {seq} ends exactly after its last frame at byte {pos}: it may \
                         have been truncated"
                    ));
                }
                self.ended_clean = true;
                return Ok(pos);
            }
            if let Some((h, body)) = frame_at(data, pos, salt) {
                if h.kind == Kind::Commit {
                    durable = durable.max(h.first);
                }
                self.apply(&h, body, seq, pos, barrier);
                pos += h.padded_len();
                continue;
            }
            let next = resync(data, pos + FRAME_ALIGN, salt);
            let mut proven = durable > pos
                || next.is_some_and(|q| self.commit_after(data, q, salt, pos, !is_last));
            if !proven && !is_last {
                // A finished segment is durable whole if its session synced it at the roll
                // (`Sync`), or if a later segment holds a `Commit` frame (written after a sync,
                // which waits for every pending roll sync). Otherwise its roll sync may not have
                // completed: the damage is where the durable log ended.
                proven = self.session == SYNC || self.proven_by_later(seq)?;
                if !proven {
                    let end = data_end.max(pos);
                    self.cut = Some(Cut {
                        pos,
                        bytes: end - pos,
                        frames: next.map_or(0, |q| count_frames(data, q, salt)),
                    });
                    return Ok(pos);
                }
            }
            if next.is_none() || !proven {
                let end = data_end.max(pos);
                if end > pos {
                    let dropped = next.map_or(0, |q| count_frames(data, q, salt));
                    if is_last {
                        // Erase the torn bytes durably before anything new is written after them.
                        let zeros = vec![0u8; usize::try_from(end - pos).unwrap_or(0)];
                        file.write_all_at(&zeros, pos)
                            .and_then(|()| file.sync_data())
                            .map_err(|e| {
                                Error::new(
                                    ErrorKind::Unavailable,
                                    "recovery: cutting the torn tail",
                                )
                                .with_source(e)
                            })?;
                        eprintln!(
                            "streamstore: cut a torn tail of {} bytes at byte {pos} of segment {seq}",
                            end - pos
                        );
                        self.report.torn_tail = Some(TornTail {
                            segment: seq,
                            position: pos,
                            bytes: end - pos,
                            dropped_frames: dropped,
                        });
                    } else {
                        self.quarantine(
                            seq,
                            pos,
                            end,
                            data,
                            "invalid bytes after the last frame of a finished segment".into(),
                        );
                        self.blind.push((seq, end));
                    }
                }
                return Ok(pos);
            }
            let q = next.unwrap_or(pos);
            // Name the lost offsets if the damaged frame's header is still readable.
            let header = usize::try_from(pos)
                .ok()
                .and_then(|at| data.get(at..))
                .and_then(|b| format::decode_header(b, salt).ok());
            match header {
                Some(h) if pos + h.padded_len() == q => {
                    if h.kind == Kind::Data {
                        if let Some(id) = self.numbers.get(&h.stream).cloned() {
                            self.lose(&id, h.first, h.first + u64::from(h.count));
                            self.last_seen.insert(h.stream, (seq, pos));
                        }
                    } else {
                        self.blind.push((seq, q));
                    }
                }
                _ => self.blind.push((seq, q)),
            }
            self.quarantine(
                seq,
                pos,
                q,
                data,
                "frame checksum mismatch in the middle of the log".into(),
            );
            barrier = Some(q);
            pos = q;
        }
    }

    /// Whether a `Commit` frame at or after `q` proves that byte `pos` was durable (with `open`,
    /// an `Open` frame too: see [`proves_earlier`]). Frames after further damage count too.
    fn commit_after(&self, data: &[u8], q: u64, salt: u32, pos: u64, open: bool) -> bool {
        let mut q = Some(q);
        while let Some(at) = q {
            q = match frame_at(data, at, salt) {
                Some((h, _)) if h.kind == Kind::Commit && h.first > pos => return true,
                Some((h, _)) if open && h.kind == Kind::Open => return true,
                Some((h, _)) => Some(at + h.padded_len()),
                None => resync(data, at + FRAME_ALIGN, salt),
            };
        }
        false
    }

    /// Whether a later segment than `seq` holds a frame that proves every earlier segment durable
    /// whole ([`proves_earlier`]).
    fn proven_by_later(&mut self, seq: u64) -> Result<bool> {
        if self.proof.is_none() {
            let mut found = None;
            for &m in self.seqs.iter().rev() {
                if m <= seq {
                    break;
                }
                let data = self.read_segment(m)?;
                let Ok(h) = SegmentHeader::decode(&data) else {
                    continue;
                };
                let salt = h.salt();
                let mut q = Some(SEGMENT_HEADER_LEN);
                while let Some(at) = q {
                    q = match frame_at(&data, at, salt) {
                        Some((f, _)) if proves_earlier(&f) => {
                            found = Some(m);
                            break;
                        }
                        Some((f, _)) => Some(at + f.padded_len()),
                        None => resync(&data, at + FRAME_ALIGN, salt),
                    };
                }
                if found.is_some() {
                    break;
                }
            }
            self.proof = Some(found);
        }
        Ok(self.proof.flatten().is_some_and(|m| m > seq))
    }

    fn read_segment(&self, seq: u64) -> Result<Vec<u8>> {
        self.fs
            .open(&segment_path(self.seg_dir, seq), false)
            .and_then(|f| read_all(f.as_ref()))
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "recovery: reading a segment").with_source(e)
            })
    }

    /// After a finished segment's data ended cleanly at `end`: if the next segment starts with
    /// the `Commit` frame of a non-`Sync` roll, its `aux` says where the finished segment's
    /// frames ended. Bytes missing before that are a cut (or quarantined, if proven durable).
    fn check_end(&mut self, seq: u64, end: u64, data: &[u8]) -> Result<()> {
        let Some(&next) = self.seqs.iter().find(|m| **m > seq) else {
            return Ok(());
        };
        if next != seq + 1 {
            return Ok(());
        }
        let head = {
            let f = self
                .fs
                .open(&segment_path(self.seg_dir, next), false)
                .map_err(|e| {
                    Error::new(ErrorKind::Unavailable, "recovery: opening a segment").with_source(e)
                })?;
            let mut h =
                vec![0u8; usize::try_from(SEGMENT_HEADER_LEN).unwrap_or(64) + 2 * FRAME_HEADER_LEN];
            let n = f.read_at(&mut h, 0).map_err(|e| {
                Error::new(ErrorKind::Unavailable, "recovery: reading a segment").with_source(e)
            })?;
            h.truncate(n);
            h
        };
        let Ok(h) = SegmentHeader::decode(&head) else {
            return Ok(());
        };
        if h.seq != next {
            return Ok(());
        }
        let expected = match frame_at(&head, SEGMENT_HEADER_LEN, h.salt()) {
            Some((f, _))
                if f.kind == Kind::Commit && f.first == SEGMENT_HEADER_LEN && f.aux != 0 =>
            {
                f.aux
            }
            _ => return Ok(()),
        };
        if end >= expected {
            if end > expected {
                self.report.warnings.push(format!(
                    "segment {seq} has frames up to byte {end}, past the end {expected} that \
                     segment {next} records for it"
                ));
            }
            return Ok(());
        }
        if self.session == SYNC || self.proven_by_later(seq)? {
            self.quarantine(
                seq,
                end,
                expected,
                data,
                format!("bytes {end}..{expected} of a finished segment are missing"),
            );
            self.blind.push((seq, expected));
        } else {
            self.cut = Some(Cut {
                pos: end,
                bytes: 0,
                frames: 0,
            });
        }
        Ok(())
    }

    /// Ends the log at `c.pos` of segment `seq`: removes every later segment (the newest first,
    /// so that a crash in between leaves the same cut to find again), then zeros the bytes after
    /// the cut, both durably.
    fn apply_cut(&mut self, seq: u64, c: &Cut) -> Result<()> {
        let io = |what: &str, e: io::Error| {
            Error::new(ErrorKind::Unavailable, format!("recovery: {what}")).with_source(e)
        };
        let later: Vec<u64> = self.seqs.iter().copied().filter(|m| *m > seq).collect();
        let mut frames = c.frames;
        for &m in later.iter().rev() {
            if let Ok(data) = self.read_segment(m) {
                if let Ok(h) = SegmentHeader::decode(&data) {
                    frames += count_all_frames(&data, h.salt());
                }
            }
            self.fs
                .remove(&segment_path(self.seg_dir, m))
                .map_err(|e| io("removing a segment after the cut", e))?;
            self.report.dropped_segments.insert(0, m);
        }
        if !later.is_empty() {
            self.fs
                .sync_dir(self.seg_dir)
                .map_err(|e| io("syncing the segment directory", e))?;
        }
        if c.bytes > 0 {
            let file = self
                .fs
                .open(&segment_path(self.seg_dir, seq), true)
                .map_err(|e| io("opening a segment to cut it", e))?;
            let zeros = vec![0u8; usize::try_from(c.bytes).unwrap_or(0)];
            file.write_all_at(&zeros, c.pos)
                .and_then(|()| file.sync_data())
                .map_err(|e| io("cutting a finished segment", e))?;
        }
        eprintln!(
            "streamstore: the log ends at byte {} of segment {seq}, whose roll sync by a \
             non-Sync session was not proven complete; dropped {frames} frames after it and \
             segments {later:?}",
            c.pos
        );
        self.report.torn_tail = Some(TornTail {
            segment: seq,
            position: c.pos,
            bytes: c.bytes,
            dropped_frames: frames,
        });
        Ok(())
    }

    /// Records offsets `[a, b)` of `id` as lost and moves its end past them.
    fn lose(&mut self, id: &StreamId, a: u64, b: u64) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        // Everything from the stream's current end up to `b` is missing.
        let _ = a;
        let a = s.head.next_offset;
        if b <= a {
            return;
        }
        s.lost.push((a, b));
        s.head.next_offset = b;
        s.clear_tail();
        self.report.lost.push(LostRange {
            stream: id.clone(),
            start: a,
            end: b,
        });
        eprintln!("streamstore: offsets {a}..{b} of stream {id:?} were lost to damage");
    }

    fn quarantine(&mut self, seq: u64, start: u64, end: u64, data: &[u8], reason: String) {
        let qdir = self.dir.join("quarantine");
        let path = qdir.join(format!("{seq:020}-{start}.bin"));
        let bytes = data
            .get(
                usize::try_from(start).unwrap_or(usize::MAX)
                    ..usize::try_from(end).unwrap_or(usize::MAX),
            )
            .unwrap_or_default();
        let saved = std::fs::create_dir_all(&qdir)
            .and_then(|()| {
                let f = self.fs.open(&path, true)?;
                f.write_all_at(bytes, 0)?;
                f.sync_data()
            })
            .is_ok();
        eprintln!("streamstore: quarantined bytes {start}..{end} of segment {seq}: {reason}");
        self.report.quarantined.push(Quarantine {
            segment: seq,
            start,
            end,
            reason,
            saved_to: saved.then_some(path),
        });
    }

    /// Replays one valid frame.
    fn apply(&mut self, h: &FrameHeader, body: &[u8], seq: u64, pos: u64, barrier: Option<u64>) {
        let cap = self.opts.idempotency_keys;
        match h.kind {
            Kind::Commit => return,
            Kind::Open => {
                self.session = h.aux;
                return;
            }
            Kind::Create => {
                let Ok(id) = Get::new(body)
                    .bytes16()
                    .map_err(|_| ())
                    .and_then(|b| StreamId::from_bytes(b).map_err(|_| ()))
                else {
                    self.report.warnings.push(format!(
                        "unreadable stream id at byte {pos} of segment {seq}"
                    ));
                    return;
                };
                if let Some(old) = self.streams.remove(&id) {
                    self.numbers.remove(&old.number);
                }
                let mut head = StreamHead::new(h.timestamp, Retention::default());
                head.incarnation = Incarnation(h.aux);
                self.streams.insert(id.clone(), Stream::new(h.stream, head));
                self.numbers.insert(h.stream, id);
                self.next_number = self.next_number.max(h.stream + 1);
            }
            _ => {}
        }
        let Some(id) = self.numbers.get(&h.stream).cloned() else {
            if h.kind != Kind::Delete {
                self.orphans += 1;
            }
            return;
        };
        self.last_seen.insert(h.stream, (seq, pos));
        if h.kind == Kind::Data && h.flags & format::FLAG_COPY != 0 {
            // A compaction copy: its points take over only when its `Moved` frame follows.
            let contiguous = true;
            self.moves.entry(h.stream).or_default().note_frame(
                Point {
                    offset: h.first,
                    cum: h.aux,
                    seg: seq,
                    pos,
                },
                contiguous,
                None,
            );
            return;
        }
        // Copies are followed by their `Moved` frame in the same group; any other frame of the
        // stream in between means the move never completed: forget its copies.
        let moved = self.moves.remove(&h.stream);
        if h.kind == Kind::Moved {
            if let (Some(points), Some(s)) = (moved, self.streams.get_mut(&id)) {
                let starts = points.get(0).map(|p| p.offset) == Some(h.first);
                if starts && h.first <= s.head.first_offset && h.aux == s.head.next_offset {
                    s.points = points;
                    s.points.trim(s.head.first_offset);
                }
            }
            return;
        }
        // Every stream frame says how far the stream reached; offsets missing before it were lost.
        let reached = match h.kind {
            Kind::Data | Kind::Seal | Kind::Retention | Kind::Reincarnate | Kind::Trim => h.first,
            _ => 0,
        };
        if self
            .streams
            .get(&id)
            .is_some_and(|s| reached > s.head.next_offset)
        {
            let next = self.streams.get(&id).map_or(0, |s| s.head.next_offset);
            self.lose(&id, next, reached);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        match h.kind {
            Kind::Data => {
                if h.first < s.head.next_offset {
                    self.report.warnings.push(format!(
                        "a frame at byte {pos} of segment {seq} repeats offsets of {id:?}; ignored"
                    ));
                    return;
                }
                let contiguous = s.lost.last().is_none_or(|(_, b)| *b != h.first);
                let Ok(data) = format::decode_data_body(h, &Bytes::copy_from_slice(body)) else {
                    self.report.warnings.push(format!(
                        "undecodable data frame at byte {pos} of segment {seq}"
                    ));
                    return;
                };
                let bytes: u64 = data.records.iter().map(|r| r.len() as u64).sum();
                // The frame knows the cumulative count before it; it differs only after a loss.
                s.head.bytes = h.aux.saturating_sub(s.cum_first);
                s.head
                    .apply_append(u64::from(h.count), bytes, h.timestamp, data.key, cap);
                s.points.note_frame(
                    Point {
                        offset: h.first,
                        cum: h.aux,
                        seg: seq,
                        pos,
                    },
                    contiguous,
                    barrier,
                );
                let recs: Vec<Record> = data
                    .records
                    .into_iter()
                    .zip(h.first..)
                    .map(|(payload, offset)| Record {
                        offset,
                        timestamp_ms: h.timestamp,
                        payload,
                    })
                    .collect();
                s.push_tail(
                    &recs,
                    self.opts.tail_cache_records,
                    self.opts.tail_cache_bytes,
                );
            }
            Kind::Seal => {
                if s.head.sealed_ms.is_none() {
                    s.head.sealed_ms = Some(h.timestamp);
                }
            }
            Kind::Trim => {
                if h.first > s.head.first_offset {
                    let cum_next = s.cum_next();
                    s.head.first_offset = h.first.min(s.head.next_offset);
                    s.cum_first = h.aux;
                    s.head.bytes = cum_next.saturating_sub(h.aux);
                    s.points.trim(s.head.first_offset);
                    s.trim_tail();
                    s.trim_lost();
                }
            }
            Kind::Delete => {
                let number = s.number;
                self.streams.remove(&id);
                self.numbers.remove(&number);
            }
            Kind::Retention => match get_retention(&mut Get::new(body)) {
                Ok(r) => s.head.retention = r,
                Err(_) => self.report.warnings.push(format!(
                    "undecodable retention at byte {pos} of segment {seq}"
                )),
            },
            Kind::Reincarnate => {
                s.head.incarnation = Incarnation(h.aux);
                s.clear_tail();
            }
            Kind::Create | Kind::Commit | Kind::Open | Kind::Moved => {}
        }
    }
}

/// Whether frame `f` proves every byte of the log before it durable (for segments finished by a
/// non-`Sync` session, whose roll sync ran in the background):
/// - a `Commit` frame past the segment header (not the `Commit` a roll writes first, which names
///   the end of the finished segment and claims only the header): it is written only after a
///   sync, and a sync first waits for every pending roll sync;
/// - an `Open` frame: a session starts only after recovery synced every segment it kept (or
///   after a clean close, which synced everything). If that session's own sync of the frame did
///   not complete, it acknowledged nothing, and treating the damage as durable only quarantines
///   it instead of cutting the log there.
fn proves_earlier(f: &FrameHeader) -> bool {
    (f.kind == Kind::Commit && f.first > SEGMENT_HEADER_LEN) || f.kind == Kind::Open
}

/// Valid frames of a whole segment, past any damage (for the report of a cut).
fn count_all_frames(data: &[u8], salt: u32) -> usize {
    let mut n = 0;
    let mut q = Some(SEGMENT_HEADER_LEN);
    while let Some(at) = q {
        q = match frame_at(data, at, salt) {
            Some((h, _)) => {
                n += 1;
                Some(at + h.padded_len())
            }
            None => resync(data, at + FRAME_ALIGN, salt),
        };
    }
    n
}

/// Valid frames from `q` on (for the report of a torn tail).
fn count_frames(data: &[u8], mut q: u64, salt: u32) -> usize {
    let mut n = 0;
    while let Some((h, _)) = frame_at(data, q, salt) {
        n += 1;
        q += h.padded_len();
    }
    n
}
