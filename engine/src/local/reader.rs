//! Reading records back: a bounded cache of open segment files and the forward scan from an
//! index point. Every frame read is checked (header CRC before its length is used, body CRC
//! before a byte of it is returned); anything that fails is `Corruption`, never served.

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::sync::lock;

use super::format::{self, FrameHeader, Kind, FRAME_HEADER_LEN};
use super::fs::{segment_path, FileHandle, FileSystem};
use super::index::Point;
use super::mmap::Mapped;
use super::state::{SegInfo, State};
use super::stream::Stream;

/// Bytes read at once while scanning.
const CHUNK: usize = 256 << 10;

/// Open segment files for reading, at most `cap` at once (least recently used closed first),
/// and maps of finished segments, at most `cap` too.
pub(crate) struct Files {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    cap: usize,
    mmap: bool,
    open: Mutex<Lru<Arc<dyn FileHandle>>>,
    maps: Mutex<Lru<Arc<Mapped>>>,
}

struct Lru<T> {
    tick: u64,
    map: HashMap<u64, (T, u64)>,
}

impl<T: Clone> Lru<T> {
    fn get(&mut self, seq: u64) -> Option<T> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&seq).map(|(v, t)| {
            *t = tick;
            v.clone()
        })
    }

    fn insert(&mut self, seq: u64, v: T, cap: usize) {
        if self.map.len() >= cap {
            if let Some(old) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.map.remove(&old);
            }
        }
        self.map.insert(seq, (v, self.tick));
    }
}

impl<T> Default for Lru<T> {
    fn default() -> Self {
        Lru {
            tick: 0,
            map: HashMap::new(),
        }
    }
}

impl Files {
    /// A cache of the segments in `dir`; with `mmap`, finished segments are read through maps.
    pub fn new(dir: PathBuf, fs: Arc<dyn FileSystem>, cap: usize, mmap: bool) -> Self {
        Files {
            dir,
            fs,
            cap: cap.max(1),
            mmap,
            open: Mutex::default(),
            maps: Mutex::default(),
        }
    }

    /// The open file of segment `seq`.
    pub fn get(&self, seq: u64) -> io::Result<Arc<dyn FileHandle>> {
        let mut lru = lock(&self.open);
        if let Some(f) = lru.get(seq) {
            return Ok(f);
        }
        let f = self.fs.open(&segment_path(&self.dir, seq), false)?;
        lru.insert(seq, f.clone(), self.cap);
        Ok(f)
    }

    /// A map of the first `len` bytes of the finished segment `seq`, or `None` where maps are off
    /// or unavailable (a file system without OS files, or a failed `mmap`: `pread` serves then).
    pub fn mapped(&self, seq: u64, len: u64) -> io::Result<Option<Arc<Mapped>>> {
        if !self.mmap {
            return Ok(None);
        }
        let mut maps = lock(&self.maps);
        // A finished segment's readable length never changes, so a cached map covers `len`.
        if let Some(m) = maps.get(seq).filter(|m| m.bytes().len() as u64 >= len) {
            return Ok(Some(m));
        }
        let file = self.get(seq)?;
        let Some(std) = file.std_file() else {
            return Ok(None);
        };
        match Mapped::new(std, len) {
            Ok(m) => {
                let m = Arc::new(m);
                maps.insert(seq, m.clone(), self.cap);
                Ok(Some(m))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Closes segment `seq` (it is being deleted).
    pub fn forget(&self, seq: u64) {
        let mut lru = lock(&self.open);
        lru.map.remove(&seq);
        drop(lru);
        let mut maps = lock(&self.maps);
        maps.map.remove(&seq);
    }

    /// Number of files open (for tests of the bound).
    pub fn open_count(&self) -> usize {
        lock(&self.open).map.len()
    }

    /// Number of finished segments mapped (for tests of the bound and of the map path).
    pub fn mapped_count(&self) -> usize {
        lock(&self.maps).map.len()
    }
}

/// Where a cursor's bytes come from.
enum Source<'a> {
    /// Positional reads into the cursor's buffer.
    Pread(&'a dyn FileHandle),
    /// A finished segment's map: slices of it, no copy until a record's payload is returned.
    Map(&'a [u8]),
}

/// Walks the frames of one segment forward from a position, reading in chunks.
pub(crate) struct Cursor<'a> {
    source: Source<'a>,
    salt: u32,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

impl<'a> Cursor<'a> {
    /// A cursor over `[pos, end)` of `file`.
    pub fn new(file: &'a dyn FileHandle, salt: u32, pos: u64, end: u64) -> Self {
        Cursor::over(Source::Pread(file), salt, pos, end)
    }

    /// A cursor over `[pos, end)` of a mapped finished segment.
    fn mapped(map: &'a Mapped, salt: u32, pos: u64, end: u64) -> Self {
        Cursor::over(Source::Map(map.bytes()), salt, pos, end)
    }

    fn over(source: Source<'a>, salt: u32, pos: u64, end: u64) -> Self {
        Cursor {
            source,
            salt,
            pos,
            end,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// Makes `[at, at + len)` available in the buffer and returns it.
    fn bytes(&mut self, at: u64, len: usize) -> io::Result<&[u8]> {
        let file = match self.source {
            Source::Map(map) => {
                let start = usize::try_from(at).map_err(io::Error::other)?;
                return start
                    .checked_add(len)
                    .and_then(|end| map.get(start..end))
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "past the mapped length")
                    });
            }
            Source::Pread(file) => file,
        };
        let have = at >= self.buf_at && at + len as u64 <= self.buf_at + self.buf.len() as u64;
        if !have {
            let want = len.max(CHUNK);
            let avail = usize::try_from(self.end.saturating_sub(at)).unwrap_or(usize::MAX);
            let n = want.min(avail).max(len);
            self.buf.resize(n, 0);
            super::fs::read_exact_at(file, &mut self.buf, at)?;
            self.buf_at = at;
        }
        let start = usize::try_from(at - self.buf_at).unwrap_or(usize::MAX);
        self.buf
            .get(start..start + len)
            .ok_or_else(|| io::Error::other("cursor buffer out of range"))
    }

    /// The next frame header and its position, or `None` at the end. A frame that fails its
    /// header check, or claims to run past the end, is an error.
    pub fn next_header(&mut self) -> Result<Option<(FrameHeader, u64)>> {
        if self.pos + FRAME_HEADER_LEN as u64 > self.end {
            return Ok(None);
        }
        let at = self.pos;
        let salt = self.salt;
        let raw = self.bytes(at, FRAME_HEADER_LEN).map_err(io_error)?;
        let h = format::decode_header(raw, salt).map_err(|e| corrupt(at, e.0))?;
        if at + u64::from(h.len) > self.end {
            return Err(corrupt(at, "frame runs past the committed end"));
        }
        self.pos = at + h.padded_len();
        Ok(Some((h, at)))
    }

    /// The checked body of the frame `h` at `at`.
    pub fn body(&mut self, h: &FrameHeader, at: u64) -> Result<Bytes> {
        let salt = self.salt;
        let len = h.body_len();
        let raw = self
            .bytes(at + FRAME_HEADER_LEN as u64, len)
            .map_err(io_error)?;
        if !format::body_ok(h, raw, salt) {
            return Err(corrupt(at, "frame body CRC mismatch"));
        }
        Ok(Bytes::copy_from_slice(raw))
    }
}

/// What to scan: a stream's records from `from` up to `end` (exclusive).
pub(crate) struct Plan {
    /// The stream number.
    pub number: u64,
    /// Points from the last one at or below `from`, through the first one past the need.
    pub points: Vec<Point>,
    /// The segments those points name.
    pub segs: HashMap<u64, SegInfo>,
    /// First offset wanted.
    pub from: u64,
    /// Scan no further than this offset (the committed end, or a lost range).
    pub end: u64,
    /// The newest segment when the plan was made: every older one is finished (never written
    /// again) and may be read through a map.
    pub newest_seg: u64,
    /// For durable reads in a mode that publishes before syncing: the synced log position
    /// `(segment, byte)`; the scan stops (without error) at the first frame that ends past it.
    pub synced_end: Option<(u64, u64)>,
}

/// Visits the stream's records `plan.from..` in order with (offset, timestamp, cumulative bytes
/// before the record, payload) until the visitor breaks or `plan.end` is reached.
pub(crate) fn scan(
    files: &Files,
    plan: &Plan,
    mut visit: impl FnMut(u64, u64, u64, Bytes) -> ControlFlow<()>,
) -> Result<()> {
    let mut o = plan.from;
    for (i, p) in plan.points.iter().enumerate() {
        let stop = plan
            .points
            .get(i + 1)
            .map_or(plan.end, |q| q.offset.min(plan.end));
        if o >= stop {
            continue;
        }
        let seg = plan.segs.get(&p.seg).ok_or_else(|| {
            Error::new(
                ErrorKind::Corruption,
                format!("segment {} is missing", p.seg),
            )
        })?;
        if seg.damaged {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!("segment {} is damaged (see the recovery report)", p.seg),
            ));
        }
        let map = if p.seg < plan.newest_seg {
            files.mapped(p.seg, seg.readable).map_err(io_error)?
        } else {
            None
        };
        let file;
        let mut cur = match &map {
            Some(m) => Cursor::mapped(m, seg.salt, p.pos, seg.readable),
            None => {
                file = files.get(p.seg).map_err(io_error)?;
                Cursor::new(file.as_ref(), seg.salt, p.pos, seg.readable)
            }
        };
        while o < stop {
            let Some((h, at)) = cur.next_header()? else {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    format!(
                        "offset {o} of stream #{} is not in segment {} where the index puts it",
                        plan.number, p.seg
                    ),
                ));
            };
            if h.kind != Kind::Data || h.stream != plan.number {
                continue;
            }
            let frame_end = h.first + u64::from(h.count);
            if frame_end <= o {
                continue;
            }
            if h.first > o {
                return Err(corrupt(at, "the stream's frames skip an offset"));
            }
            if plan
                .synced_end
                .is_some_and(|synced| (p.seg, at + u64::from(h.len)) > synced)
            {
                return Ok(());
            }
            let body = cur.body(&h, at)?;
            let data = format::decode_data_body(&h, &body).map_err(|e| corrupt(at, e.0))?;
            let mut cum = h.aux;
            for (off, payload) in (h.first..).zip(data.records) {
                let len = payload.len() as u64;
                if off >= o && off < stop {
                    if visit(off, h.timestamp, cum, payload).is_break() {
                        return Ok(());
                    }
                    o = off + 1;
                }
                cum += len;
            }
        }
    }
    if o < plan.end {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!("offset {o} of stream #{} is not indexed", plan.number),
        ));
    }
    Ok(())
}

fn corrupt(at: u64, what: &str) -> Error {
    Error::new(ErrorKind::Corruption, format!("{what} at byte {at}"))
}

/// Maps an I/O error of a read to an engine error.
pub(crate) fn io_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return Error::new(
            ErrorKind::Corruption,
            "a segment file is shorter than its index says",
        )
        .with_source(e);
    }
    Error::new(ErrorKind::Unavailable, "reading a segment failed").with_source(e)
}

/// A read plan for stream `s` covering offsets `from..until` (bounded by what is committed).
pub(crate) fn plan_for(st: &State, s: &Stream, from: u64, until: u64) -> Plan {
    let end = until
        .min(s.head.next_offset)
        .min(s.lost_after(from).unwrap_or(u64::MAX));
    let start = s.points.find(from).unwrap_or(0);
    let mut points = Vec::new();
    for p in s.points.window(start, usize::MAX) {
        let past = p.offset >= end;
        points.push(p);
        if past {
            break;
        }
    }
    let segs = points
        .iter()
        .filter_map(|p| st.segments.get(&p.seg).map(|i| (p.seg, *i)))
        .collect();
    Plan {
        number: s.number,
        points,
        segs,
        from,
        end,
        synced_end: None,
        newest_seg: st.segments.keys().next_back().copied().unwrap_or(0),
    }
}
