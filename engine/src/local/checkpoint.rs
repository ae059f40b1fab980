//! The checkpoint: every live stream's state and index as of a log position, so that recovery
//! scans only the log after it. Written atomically (temporary file, fsync, rename, directory
//! fsync) after the log up to its position was synced.

use std::io;
use std::path::Path;

use bytes::Bytes;

use crate::head::{KeyWindow, StreamHead};
use crate::types::{AppendResult, IdempotencyKey, Incarnation, StreamId};

use super::codec::{get_retention, put_retention, Get, Put};
use super::format::FormatError;
use super::fs::FileSystem;
use super::index::{Point, Points};
use super::stream::{Lost, Stream};
use super::streams::{SharedStreams, Streams};

/// The checkpoint's file name.
pub(crate) const CHECKPOINT: &str = "CHECKPOINT";
const CHECKPOINT_TMP: &str = "CHECKPOINT.tmp";
/// The checkpoint before the current one, kept as a fallback (see `write`).
pub(crate) const CHECKPOINT_PREV: &str = "CHECKPOINT.prev";
const MAGIC: [u8; 8] = *b"STRMCKPT";
const VERSION: u32 = 1;
/// The smallest encoded stream: number, 1-byte id with its length, 8 `u64` fields, retention with
/// no rule (3 presence bytes), and three empty counts.
const MIN_ENTRY_BYTES: usize = 8 + 2 + 1 + 8 * 8 + 3 + 3 * 4;

/// A checkpoint's contents.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// The log position (segment, byte) recovery scans from.
    pub seg: u64,
    /// See `seg`.
    pub pos: u64,
    /// The next stream number to assign.
    pub next_number: u64,
    /// The durability code of the session that wrote it.
    pub durability: u64,
    /// Live streams.
    pub streams: Streams,
}

/// Bytes before the body: magic, version, zero, `body_len`.
const PREFIX_LEN: usize = 8 + 4 + 4 + 8;

/// Encodes a checkpoint without its final CRC (see [`seal`]), into a buffer of at least
/// `capacity` bytes:
/// `magic "STRMCKPT", version u32, zero u32, body_len u64, body, CRC-32 of everything before u32`.
///
/// At 10,000 streams a checkpoint holds every stream's index points (a sparse stream gets one
/// per frame: its frames lie more than `POINT_MAX_DISTANCE` apart), several MiB whose encoding
/// took the writer thread 8–22 ms while every append waited (issue 15: the `Sync` p99.9). So the
/// writer only takes a shared copy of the streams ([`Streams::share`]) and the flusher thread
/// encodes it, into one buffer sized from the last checkpoint (no regrowth, no copy of the body
/// into a second buffer); the CRC of the whole is added by [`seal`] when the file is written.
pub(crate) fn encode_unsealed(
    seg: u64,
    pos: u64,
    next_number: u64,
    durability: u64,
    streams: &SharedStreams,
    capacity: usize,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(capacity.max(PREFIX_LEN + 64));
    body.extend_from_slice(&MAGIC);
    body.u32(VERSION);
    body.u32(0);
    body.u64(0); // body_len, set below
    body.u64(seg);
    body.u64(pos);
    body.u64(next_number);
    body.u64(durability);
    body.u64(streams.len() as u64);
    // Any order: decoding rebuilds the map and the id order.
    for (id, s) in streams.iter_unordered() {
        let h = &s.head;
        body.u64(s.number);
        body.bytes16(id.as_str().as_bytes());
        body.u64(h.incarnation.0);
        body.u64(h.first_offset);
        body.u64(h.next_offset);
        body.u64(h.created_ms);
        body.u64(h.last_append_ms);
        body.u64(h.sealed_ms.unwrap_or(u64::MAX));
        body.u64(h.bytes);
        body.u64(s.cum_first);
        put_retention(&mut body, &h.retention);
        body.u32(u32::try_from(h.keys.len()).unwrap_or(u32::MAX));
        for (key, (r, digest)) in h.keys.iter() {
            body.bytes16(key.as_bytes());
            body.u64(*digest);
            body.u64(r.first_offset);
            body.u64(r.count);
            body.u64(r.incarnation.0);
            body.u64(r.timestamp_ms);
        }
        body.u32(u32::try_from(s.points.len()).unwrap_or(u32::MAX));
        for p in s.points.iter() {
            body.u64(p.offset);
            body.u64(p.cum);
            body.u64(p.seg);
            body.u64(p.pos);
        }
        body.u32(u32::try_from(s.lost.len()).unwrap_or(u32::MAX));
        for (a, b) in &s.lost {
            body.u64(*a);
            body.u64(*b);
        }
    }
    let body_len = (body.len() - PREFIX_LEN) as u64;
    if let Some(len) = body.get_mut(PREFIX_LEN - 8..PREFIX_LEN) {
        len.copy_from_slice(&body_len.to_le_bytes());
    }
    body
}

/// Appends the CRC of everything before it to a checkpoint from [`encode_unsealed`].
pub(crate) fn seal(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.u32(crc);
}

/// Decodes a checkpoint; any damage, or an unknown version, is an error (never a panic).
pub(crate) fn decode(b: &[u8], key_capacity: usize) -> Result<Checkpoint, FormatError> {
    let crc_at = b
        .len()
        .checked_sub(4)
        .ok_or(FormatError("checkpoint truncated"))?;
    let mut g = Get::new(b);
    if g.bytes(8)? != MAGIC {
        return Err(FormatError("bad checkpoint magic"));
    }
    let mut tail = Get::new(b.get(crc_at..).unwrap_or_default());
    if tail.u32()? != crc32fast::hash(b.get(..crc_at).unwrap_or_default()) {
        return Err(FormatError("checkpoint CRC mismatch"));
    }
    if g.u32()? != VERSION {
        return Err(FormatError("unknown checkpoint version"));
    }
    let _zero = g.u32()?;
    let body_len = usize::try_from(g.u64()?).map_err(|_| FormatError("bad length"))?;
    if body_len.checked_add(24) != Some(crc_at) {
        return Err(FormatError("checkpoint length mismatch"));
    }
    let mut g = Get::new(b.get(24..crc_at).unwrap_or_default());
    let mut c = Checkpoint {
        seg: g.u64()?,
        pos: g.u64()?,
        next_number: g.u64()?,
        durability: g.u64()?,
        streams: Streams::default(),
    };
    let n = g.u64()?;
    // Collected first and turned into the map in one go: `BTreeMap::from_iter` on sorted entries
    // (a checkpoint lists streams in id order) builds full nodes, where inserting one by one in
    // ascending order leaves the leaves about half full. Each entry takes at least
    // `MIN_ENTRY_BYTES` of the body, which bounds the preallocation whatever `n` claims.
    let cap = usize::try_from(n)
        .unwrap_or(0)
        .min(g.remaining() / MIN_ENTRY_BYTES);
    let mut entries = Vec::with_capacity(cap);
    for _ in 0..n {
        let number = g.u64()?;
        let id = StreamId::from_bytes(g.bytes16()?).map_err(|_| FormatError("bad stream id"))?;
        let incarnation = Incarnation(g.u64()?);
        let first_offset = g.u64()?;
        let next_offset = g.u64()?;
        let created_ms = g.u64()?;
        let last_append_ms = g.u64()?;
        let sealed = g.u64()?;
        let bytes = g.u64()?;
        let cum_first = g.u64()?;
        let retention = get_retention(&mut g)?;
        let mut keys = KeyWindow::default();
        for _ in 0..g.count(42)? {
            let key = IdempotencyKey::new(Bytes::copy_from_slice(g.bytes16()?))
                .map_err(|_| FormatError("bad key"))?;
            let digest = g.u64()?;
            let r = AppendResult {
                first_offset: g.u64()?,
                count: g.u64()?,
                incarnation: Incarnation(g.u64()?),
                timestamp_ms: g.u64()?,
            };
            keys.insert(key, r, digest, key_capacity.max(1));
        }
        let mut points = Points::default();
        for _ in 0..g.count(32)? {
            points.push_raw(Point {
                offset: g.u64()?,
                cum: g.u64()?,
                seg: g.u64()?,
                pos: g.u64()?,
            });
        }
        let mut lost = Lost::default();
        for _ in 0..g.count(16)? {
            lost.push((g.u64()?, g.u64()?));
        }
        if first_offset > next_offset {
            return Err(FormatError("first offset above next offset"));
        }
        let head = StreamHead {
            incarnation,
            first_offset,
            next_offset,
            created_ms,
            last_append_ms,
            sealed_ms: (sealed != u64::MAX).then_some(sealed),
            bytes,
            retention,
            keys,
        };
        let mut s = Stream::new(number, head);
        // Not shared yet: changed in place.
        let m = std::sync::Arc::make_mut(&mut s);
        m.cum_first = cum_first;
        m.points = points;
        m.lost = lost;
        entries.push((id, s));
    }
    c.streams = entries.into_iter().collect();
    if !g.is_done() {
        return Err(FormatError("trailing bytes in checkpoint"));
    }
    Ok(c)
}

/// Writes `bytes` as the checkpoint of `dir` atomically.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP);
    if fs.exists(&tmp) {
        fs.remove(&tmp)?;
    }
    // Exclusive: what is written and renamed over `CHECKPOINT` is a file this call created.
    let f = fs.create_new(&tmp)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    // The rename replaces the old checkpoint in one step; the directory sync makes it durable.
    // The old checkpoint becomes `CHECKPOINT.prev` (recovery's fallback if `CHECKPOINT` is ever
    // unreadable). A crash between the two renames leaves no `CHECKPOINT` but a good
    // `CHECKPOINT.prev`, which recovery then uses.
    let current = dir.join(CHECKPOINT);
    if fs.exists(&current) {
        fs.rename(&current, &dir.join(CHECKPOINT_PREV))?;
    }
    fs.rename(&tmp, &current)?;
    fs.sync_dir(dir)
}
