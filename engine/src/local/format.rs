//! The on-disk format of segment files: the segment header and the frames. `docs/format.md`
//! describes the same bytes in prose; keep both in step.
//!
//! All integers are little-endian. Decoders never panic and never trust a length before the
//! header CRC that covers it has been checked.

use bytes::Bytes;

use crate::types::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_BYTES};

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRMSEG\0";
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 56;
/// Frames start at multiples of this within a segment.
pub const FRAME_ALIGN: u64 = 8;
/// The largest frame accepted by the decoder (a batch is at most a few MiB).
pub const MAX_FRAME_LEN: u32 = 64 << 20;

/// A frame's `kind` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A batch of records of one stream.
    Data = 1,
    /// A stream number starts: maps the number to the id and incarnation.
    Create = 2,
    /// The stream is sealed at `timestamp`.
    Seal = 3,
    /// The stream's first offset becomes `first`; `aux` is its cumulative byte count there.
    Trim = 4,
    /// The stream number ends.
    Delete = 5,
    /// The stream's retention policy (body).
    Retention = 6,
    /// The stream's incarnation becomes `aux` (set by recovery after a possible loss).
    Reincarnate = 7,
    /// Everything of this segment before byte `first` was durable when this frame was written.
    Commit = 8,
    /// A session (one open of the store) starts; `aux` is its durability code.
    Open = 9,
    /// Compaction: the stream's records `first..aux` are now in the `FLAG_COPY` data frames
    /// just before this frame (same group); its index points move there.
    Moved = 10,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Data,
            2 => Kind::Create,
            3 => Kind::Seal,
            4 => Kind::Trim,
            5 => Kind::Delete,
            6 => Kind::Retention,
            7 => Kind::Reincarnate,
            8 => Kind::Commit,
            9 => Kind::Open,
            10 => Kind::Moved,
            _ => return None,
        })
    }
}

/// `flags` bit: the data frame's body starts with an idempotency key and batch digest.
pub const FLAG_KEY: u8 = 1;
/// `flags` bit: the data frame is a compaction copy of records the stream already has; it takes
/// effect only with the `Moved` frame that follows it.
pub const FLAG_COPY: u8 = 2;

/// Why bytes are not a valid frame or header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError(pub &'static str);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's sequence number (also its file name).
    pub seq: u64,
    /// A random number chosen when the file was (re)initialized.
    pub generation: u64,
    /// When the segment was created, ms since the epoch.
    pub created_ms: u64,
}

impl SegmentHeader {
    /// The CRC seed of every frame in this segment: stale frames of another segment or of an earlier
    /// use of the same file never validate here.
    pub fn salt(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.seq.to_le_bytes());
        h.update(&self.generation.to_le_bytes());
        h.finalize()
    }

    /// Encodes the 64-byte header:
    ///
    /// ```text
    /// 0   8  magic "STRMSEG\0"
    /// 8   4  version (1)
    /// 12  4  header length (64)
    /// 16  8  sequence number
    /// 24  8  generation (random)
    /// 32  8  created, ms since the epoch
    /// 40 20  zero
    /// 60  4  CRC-32 of bytes 0..60
    /// ```
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        put(&mut b, 0, &SEGMENT_MAGIC);
        put(&mut b, 8, &SEGMENT_VERSION.to_le_bytes());
        put(&mut b, 12, &64u32.to_le_bytes());
        put(&mut b, 16, &self.seq.to_le_bytes());
        put(&mut b, 24, &self.generation.to_le_bytes());
        put(&mut b, 32, &self.created_ms.to_le_bytes());
        let crc = crc32fast::hash(b.get(..60).unwrap_or_default());
        put(&mut b, 60, &crc.to_le_bytes());
        b
    }

    /// Decodes a header; an unknown version or a bad CRC is an error.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        let head = b.get(..64).ok_or(FormatError("segment header truncated"))?;
        if head.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(FormatError("bad segment magic"));
        }
        if u32_at(head, 60)? != crc32fast::hash(head.get(..60).unwrap_or_default()) {
            return Err(FormatError("segment header CRC mismatch"));
        }
        if u32_at(head, 8)? != SEGMENT_VERSION {
            return Err(FormatError("unknown segment format version"));
        }
        if u32_at(head, 12)? != 64 {
            return Err(FormatError("unexpected segment header length"));
        }
        Ok(SegmentHeader {
            seq: u64_at(head, 16)?,
            generation: u64_at(head, 24)?,
            created_ms: u64_at(head, 32)?,
        })
    }
}

/// A frame header: decoded by [`decode_header`], or built by kind (`FrameHeader::trim(..)` and
/// the others) for [`encode_frame`]. The one header type of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header plus body bytes (padding excluded).
    pub len: u32,
    /// What the frame says.
    pub kind: Kind,
    /// Kind-specific flags.
    pub flags: u8,
    /// The stream number (for `Commit`: the segment's sequence number; for `Open`: 0).
    pub stream: u64,
    /// Data: offset of the first record. Trim: the new first offset. Commit: durable-through byte.
    pub first: u64,
    /// Data: cumulative payload bytes of the stream before the first record. Trim: the same at the
    /// new first offset. Create/Reincarnate: the incarnation. Open: durability code. Commit: 0,
    /// or, in the `Commit` a non-`Sync` roll writes first in the new segment (`first` = 64), the
    /// end of the previous segment's frames.
    pub aux: u64,
    /// Data: the batch timestamp. Create: created time. Seal: sealed time. Others: write time.
    pub timestamp: u64,
    /// Data: number of records.
    pub count: u32,
    /// CRC-32 of the body, seeded with the segment salt.
    pub body_crc: u32,
}

impl FrameHeader {
    /// A header of `kind` for stream number `stream` (0 for frames about the log itself) with
    /// the kind's `first`, `aux` and `timestamp` fields; no flags, no records. `len` and
    /// `body_crc` are filled in by the encoder.
    const fn of(kind: Kind, stream: u64, first: u64, aux: u64, timestamp: u64) -> Self {
        FrameHeader {
            len: 0,
            kind,
            flags: 0,
            stream,
            first,
            aux,
            timestamp,
            count: 0,
            body_crc: 0,
        }
    }

    /// A `Data` frame: `count` records from offset `first`, `cum` payload bytes of the stream
    /// before them, all with `timestamp`.
    pub const fn data(stream: u64, first: u64, cum: u64, timestamp: u64, count: u32) -> Self {
        let mut h = Self::of(Kind::Data, stream, first, cum, timestamp);
        h.count = count;
        h
    }

    /// The same header with the `FLAG_*` bits `flags`.
    pub const fn with_flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// A `Create` frame: stream number `stream` starts an incarnation (body: the stream id).
    pub const fn create(stream: u64, incarnation: u64, now: u64) -> Self {
        Self::of(Kind::Create, stream, 0, incarnation, now)
    }

    /// A `Seal` frame at the stream's end `next`.
    pub const fn seal(stream: u64, next: u64, now: u64) -> Self {
        Self::of(Kind::Seal, stream, next, 0, now)
    }

    /// A `Trim` frame: the stream's first offset moves to `first`, with `cum` payload bytes
    /// before it.
    pub const fn trim(stream: u64, first: u64, cum: u64, now: u64) -> Self {
        Self::of(Kind::Trim, stream, first, cum, now)
    }

    /// A `Delete` frame.
    pub const fn delete(stream: u64, now: u64) -> Self {
        Self::of(Kind::Delete, stream, 0, 0, now)
    }

    /// A `Retention` frame at the stream's end `next` (body: the retention).
    pub const fn retention(stream: u64, next: u64, now: u64) -> Self {
        Self::of(Kind::Retention, stream, next, 0, now)
    }

    /// A `Reincarnate` frame: a new incarnation of the stream, at its end `next`.
    pub const fn reincarnate(stream: u64, next: u64, incarnation: u64, now: u64) -> Self {
        Self::of(Kind::Reincarnate, stream, next, incarnation, now)
    }

    /// A `Moved` frame: the compaction copies of offsets `first..next` written just before it
    /// replace the stream's older frames.
    pub const fn moved(stream: u64, first: u64, next: u64, now: u64) -> Self {
        Self::of(Kind::Moved, stream, first, next, now)
    }

    /// The `Open` frame of a session in durability mode `code`.
    pub const fn open(code: u64, now: u64) -> Self {
        Self::of(Kind::Open, 0, 0, code, now)
    }

    /// A `Commit` frame of segment `seq`: every byte before `durable` was durable when it was
    /// written; `aux` is 0, or in a non-`Sync` roll's marker the previous segment's end (see
    /// docs/format.md).
    pub const fn commit(seq: u64, durable: u64, aux: u64, now: u64) -> Self {
        Self::of(Kind::Commit, seq, durable, aux, now)
    }

    /// The frame's length rounded up to [`FRAME_ALIGN`]: where the next frame starts.
    pub fn padded_len(&self) -> u64 {
        align(u64::from(self.len))
    }

    /// Body bytes.
    pub fn body_len(&self) -> usize {
        usize::try_from(self.len)
            .unwrap_or(usize::MAX)
            .saturating_sub(FRAME_HEADER_LEN)
    }
}

/// Rounds `n` up to the frame alignment.
pub fn align(n: u64) -> u64 {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// Appends one frame to `buf` (which must start frame-aligned relative to the segment) and pads it
/// with zeros to the next multiple of 8. Layout of the 56-byte header, then the body:
///
/// ```text
/// 0   4  len: header + body bytes (u32)
/// 4   1  kind
/// 5   1  flags
/// 6   2  zero
/// 8   8  stream number
/// 16  8  first
/// 24  8  aux
/// 32  8  timestamp, ms since the epoch
/// 40  4  count
/// 44  4  body CRC-32, seeded with the segment salt
/// 48  4  header CRC-32 of bytes 0..48, seeded with the segment salt
/// 52  4  zero
/// ```
pub fn encode_frame(buf: &mut Vec<u8>, salt: u32, h: &FrameHeader, body: &[u8]) {
    encode_frame_with(buf, salt, h, |b| b.extend_from_slice(body));
}

/// [`encode_frame`] with the body written by `body` straight into `buf` (no intermediate buffer):
/// the header is reserved, the body appended, then the header filled in over it. Same bytes.
/// The header's `len` and `body_crc` are computed here (the values in `f` are not used).
pub fn encode_frame_with(
    buf: &mut Vec<u8>,
    salt: u32,
    f: &FrameHeader,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.resize(start + FRAME_HEADER_LEN, 0);
    body(buf);
    let body_bytes = buf.get(start + FRAME_HEADER_LEN..).unwrap_or_default();
    let len = u32::try_from(FRAME_HEADER_LEN + body_bytes.len()).unwrap_or(u32::MAX);
    let mut bc = crc32fast::Hasher::new_with_initial(salt);
    bc.update(body_bytes);
    let body_crc = bc.finalize();
    let mut h = [0u8; FRAME_HEADER_LEN];
    put(&mut h, 0, &len.to_le_bytes());
    put(&mut h, 4, &[f.kind as u8, f.flags]);
    put(&mut h, 8, &f.stream.to_le_bytes());
    put(&mut h, 16, &f.first.to_le_bytes());
    put(&mut h, 24, &f.aux.to_le_bytes());
    put(&mut h, 32, &f.timestamp.to_le_bytes());
    put(&mut h, 40, &f.count.to_le_bytes());
    put(&mut h, 44, &body_crc.to_le_bytes());
    let mut hc = crc32fast::Hasher::new_with_initial(salt);
    hc.update(h.get(..48).unwrap_or_default());
    put(&mut h, 48, &hc.finalize().to_le_bytes());
    put(buf, start, &h);
    let padded = align(buf.len() as u64);
    buf.resize(usize::try_from(padded).unwrap_or(buf.len()), 0);
}

/// Bytes of a data body (see [`encode_data_body`]) for these records and key, without encoding it.
pub fn data_body_len(key: Option<&IdempotencyKey>, records: &[Bytes]) -> usize {
    key.map_or(0, |k| 1 + k.as_bytes().len() + 8)
        + records.iter().map(|r| 4 + r.len()).sum::<usize>()
}

/// Decodes and checks a frame header (its CRC and its fields' ranges).
pub fn decode_header(b: &[u8], salt: u32) -> Result<FrameHeader, FormatError> {
    let h = b
        .get(..FRAME_HEADER_LEN)
        .ok_or(FormatError("frame header truncated"))?;
    let mut hc = crc32fast::Hasher::new_with_initial(salt);
    hc.update(h.get(..48).unwrap_or_default());
    if hc.finalize() != u32_at(h, 48)? {
        return Err(FormatError("frame header CRC mismatch"));
    }
    let len = u32_at(h, 0)?;
    if (len as usize) < FRAME_HEADER_LEN || len > MAX_FRAME_LEN {
        return Err(FormatError("frame length out of range"));
    }
    let kind_byte = *h.get(4).ok_or(FormatError("frame header truncated"))?;
    let kind = Kind::from_u8(kind_byte).ok_or(FormatError("unknown frame kind"))?;
    Ok(FrameHeader {
        len,
        kind,
        flags: *h.get(5).ok_or(FormatError("frame header truncated"))?,
        stream: u64_at(h, 8)?,
        first: u64_at(h, 16)?,
        aux: u64_at(h, 24)?,
        timestamp: u64_at(h, 32)?,
        count: u32_at(h, 40)?,
        body_crc: u32_at(h, 44)?,
    })
}

/// Whether `body` matches the header's body CRC.
pub fn body_ok(h: &FrameHeader, body: &[u8], salt: u32) -> bool {
    if body.len() != h.body_len() {
        return false;
    }
    let mut bc = crc32fast::Hasher::new_with_initial(salt);
    bc.update(body);
    bc.finalize() == h.body_crc
}

/// The body of a data frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataBody {
    /// The idempotency key and batch digest, if the append had a key.
    pub key: Option<(IdempotencyKey, u64)>,
    /// The payloads.
    pub records: Vec<Bytes>,
}

/// Encodes a data body: `[key_len u8, key, digest u64]` if keyed, then per record `len u32, bytes`.
pub fn encode_data_body(buf: &mut Vec<u8>, key: Option<(&IdempotencyKey, u64)>, records: &[Bytes]) {
    if let Some((k, digest)) = key {
        let kb = k.as_bytes();
        buf.push(u8::try_from(kb.len()).unwrap_or(u8::MAX));
        buf.extend_from_slice(kb);
        buf.extend_from_slice(&digest.to_le_bytes());
    }
    for r in records {
        buf.extend_from_slice(&u32::try_from(r.len()).unwrap_or(u32::MAX).to_le_bytes());
        buf.extend_from_slice(r);
    }
}

/// Decodes a data body (already CRC-checked); record payloads are slices of `body`.
pub fn decode_data_body(h: &FrameHeader, body: &Bytes) -> Result<DataBody, FormatError> {
    let mut at = 0usize;
    let key = if h.flags & FLAG_KEY != 0 {
        let klen = usize::from(*body.first().ok_or(FormatError("key truncated"))?);
        if klen == 0 || klen > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(FormatError("key length out of range"));
        }
        let kb = body.get(1..1 + klen).ok_or(FormatError("key truncated"))?;
        let digest = u64_at(body, 1 + klen)?;
        at = 1 + klen + 8;
        let key = IdempotencyKey::new(Bytes::copy_from_slice(kb))
            .map_err(|_| FormatError("invalid key"))?;
        Some((key, digest))
    } else {
        None
    };
    let count = usize::try_from(h.count).map_err(|_| FormatError("count out of range"))?;
    if count == 0 || count > body.len() / 4 + 1 {
        return Err(FormatError("record count out of range"));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::try_from(u32_at(body, at)?).map_err(|_| FormatError("bad length"))?;
        let start = at + 4;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .ok_or(FormatError("record truncated"))?;
        records.push(body.slice(start..end));
        at = end;
    }
    if at != body.len() {
        return Err(FormatError("trailing bytes in data frame"));
    }
    Ok(DataBody { key, records })
}

/// Little-endian u32 at `at`.
pub fn u32_at(b: &[u8], at: usize) -> Result<u32, FormatError> {
    let s = b.get(at..at + 4).ok_or(FormatError("truncated integer"))?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

/// Little-endian u64 at `at`.
pub fn u64_at(b: &[u8], at: usize) -> Result<u64, FormatError> {
    let s = b.get(at..at + 8).ok_or(FormatError("truncated integer"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_salt() {
        let mut buf = Vec::new();
        let recs = vec![Bytes::from_static(b"ab"), Bytes::new()];
        let key = IdempotencyKey::new(&b"k1"[..]).unwrap();
        let mut body = Vec::new();
        encode_data_body(&mut body, Some((&key, 7)), &recs);
        let h = FrameHeader::data(3, 10, 5, 99, 2).with_flags(FLAG_KEY);
        encode_frame(&mut buf, 42, &h, &body);
        assert_eq!(buf.len() % 8, 0);
        let h = decode_header(&buf, 42).unwrap();
        assert_eq!(
            (h.kind, h.stream, h.first, h.aux, h.count),
            (Kind::Data, 3, 10, 5, 2)
        );
        let b = Bytes::copy_from_slice(&buf[FRAME_HEADER_LEN..h.len as usize]);
        assert!(body_ok(&h, &b, 42));
        assert!(!body_ok(&h, &b, 43));
        let d = decode_data_body(&h, &b).unwrap();
        assert_eq!(d.records, recs);
        assert_eq!(d.key, Some((key, 7)));
        // Another segment's salt never validates.
        assert!(decode_header(&buf, 41).is_err());
    }

    #[test]
    fn decoders_survive_garbage() {
        for n in 0..200usize {
            let junk: Vec<u8> = (0..n)
                .map(|i| u8::try_from(i * 37 % 251).unwrap())
                .collect();
            let _ = decode_header(&junk, 0);
            let _ = SegmentHeader::decode(&junk);
        }
        let mut h = SegmentHeader {
            seq: 1,
            generation: 2,
            created_ms: 3,
        }
        .encode();
        assert!(SegmentHeader::decode(&h).is_ok());
        h[8] = 2; // version 2, CRC fixed below: still refused
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&h),
            Err(FormatError("unknown segment format version"))
        );
    }
}
