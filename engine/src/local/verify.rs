//! `verify`: re-reads every segment file and checks every checksum, without changing anything.
//!
//! Recovery already refuses damaged frames when a store opens; `verify` is the on-demand audit
//! (the CLI's `streamstore verify`): it reports every frame whose header or body fails its CRC,
//! every undecodable data body, and non-zero bytes where only the zero fill may follow.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, Kind, SegmentHeader, FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::error::{Error, ErrorKind, Result};

/// One damaged place in a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyProblem {
    /// Segment file name.
    pub file: PathBuf,
    /// Byte position of the damage.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files read.
    pub segments: usize,
    /// Frames whose header and body checksums matched.
    pub frames: u64,
    /// Records in valid data frames.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything that did not check out (empty for a healthy store).
    pub problems: Vec<VerifyProblem>,
}

/// Checks every segment under `dir` (a store directory). `progress(done, total)` is called with
/// byte counts as files are read. Blocking: run it on a blocking thread.
pub fn verify_dir(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    let seg_dir = dir.join(super::fs::SEGMENTS);
    let io =
        |what: String, e: std::io::Error| Error::new(ErrorKind::Unavailable, what).with_source(e);
    let mut files: Vec<(u64, PathBuf, u64)> = Vec::new();
    let entries = std::fs::read_dir(&seg_dir)
        .map_err(|e| io(format!("cannot list {}", seg_dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(format!("cannot list {}", seg_dir.display()), e))?;
        let name = entry.file_name();
        let Some(seq) = name.to_str().and_then(super::fs::parse_segment_name) else {
            continue;
        };
        let len = entry
            .metadata()
            .map_err(|e| io(format!("cannot stat {name:?}"), e))?
            .len();
        files.push((seq, entry.path(), len));
    }
    files.sort();
    let total: u64 = files.iter().map(|f| f.2).sum();
    let mut report = VerifyReport::default();
    progress(0, total);
    for (_, path, _) in files {
        let data =
            std::fs::read(&path).map_err(|e| io(format!("cannot read {}", path.display()), e))?;
        verify_segment(&path, &Bytes::from(data), &mut report);
        report.segments += 1;
        progress(report.bytes, total);
    }
    Ok(report)
}

fn verify_segment(path: &Path, data: &Bytes, report: &mut VerifyReport) {
    report.bytes += data.len() as u64;
    let problem = |report: &mut VerifyReport, position: u64, reason: String| {
        report.problems.push(VerifyProblem {
            file: path.to_path_buf(),
            position,
            reason,
        });
    };
    let header = match SegmentHeader::decode(data) {
        Ok(h) => h,
        Err(e) => return problem(report, 0, e.0.to_owned()),
    };
    let salt = header.salt();
    let at = |pos: u64| {
        data.get(usize::try_from(pos).unwrap_or(usize::MAX)..)
            .unwrap_or_default()
    };
    let mut pos = SEGMENT_HEADER_LEN;
    loop {
        let rest = at(pos);
        // The writer zero-fills ahead of its frames: only zeros may follow the last frame.
        if rest.iter().all(|b| *b == 0) {
            return;
        }
        let checked = format::decode_header(rest, salt).and_then(|h| {
            let body = rest
                .get(FRAME_HEADER_LEN..usize::try_from(h.len).unwrap_or(usize::MAX))
                .ok_or(format::FormatError("frame cut short"))?;
            if !format::body_ok(&h, body, salt) {
                return Err(format::FormatError("frame body CRC mismatch"));
            }
            if h.kind == Kind::Data {
                let start = usize::try_from(pos).unwrap_or(usize::MAX) + FRAME_HEADER_LEN;
                let body = data.slice(start..start + body.len());
                format::decode_data_body(&h, &body)?;
                report.records += u64::from(h.count);
            }
            Ok(h)
        });
        match checked {
            Ok(h) => {
                report.frames += 1;
                pos += h.padded_len();
            }
            Err(e) => {
                problem(report, pos, e.0.to_owned());
                // Resynchronise at the next aligned position holding a valid frame header.
                let mut next = pos + FRAME_ALIGN;
                while next < data.len() as u64 && format::decode_header(at(next), salt).is_err() {
                    next += FRAME_ALIGN;
                }
                pos = next;
            }
        }
    }
}
