//! The items of the table and their encoding.
//!
//! One table, key `pk` (string) + `sk` (binary, compared byte by byte):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | head of a stream | `h` | the id's UTF-8 bytes | `i` incarnation, `v` version, `n` next, `f` first, `c` created, `l` last append, `s` sealed, `b` bytes, `rs`/`ri`/`rb` retention, `x` expiry |
//! | chunk of records | `r<inc:016x>/<id>` | last offset, 8 bytes big-endian | `f` first offset, `t` timestamp, `g` batch id, `d` packed records |
//! | idempotency key | `k<inc:016x>/<id>` | `K` + the key's bytes | `o` first offset, `c` count, `t` timestamp, `g` batch digest |
//!
//! All heads share one partition, so `list` is one ordered `Query`. Records and keys are
//! partitioned by incarnation: a deleted stream's leftovers are never read by its next life.
//! Numbers are DynamoDB `N` (decimal text; every `u64` fits).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use streamstore::implementor::head::{KeyWindow, StreamHead};
use streamstore::{AppendResult, Error, ErrorKind, Incarnation, Result, Retention, StreamId};

/// An item as the SDK carries it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The partition key attribute.
pub(crate) const PK: &str = "pk";
/// The sort key attribute.
pub(crate) const SK: &str = "sk";
/// The partition of every head.
pub(crate) const HEADS: &str = "h";

/// Largest payload of one record: one record must fit one chunk item, and an item is at most
/// 400 KB (409,600 bytes) with its attribute names and key; 384 KiB leaves 16 KiB for the key
/// (at most 530 bytes), the other attributes and the 4-byte length prefix.
pub const MAX_RECORD_BYTES: usize = 384 * 1024;

/// Largest payload of one append. A transaction is at most 4 MB of items; greedy packing fills
/// every pair of consecutive chunks beyond one chunk's capacity, so 3 MiB needs at most 17 chunk
/// items (3.17 MB with their keys and length prefixes) plus the head and a key item.
pub const MAX_BATCH_BYTES: usize = 3 << 20;

/// Most records in one append (DynamoDB bounds only bytes; this is the engine's default).
pub const MAX_BATCH_RECORDS: usize = 1000;

/// A chunk's packed size limit: one maximal record with its length prefix.
const CHUNK_CAPACITY: usize = MAX_RECORD_BYTES + 4;

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corruption,
        format!("malformed DynamoDB item: {what}"),
    )
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn b(bytes: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn get_u64(item: &Item, name: &str) -> Result<u64> {
    opt_u64(item, name)?.ok_or_else(|| corrupt(name))
}

pub(crate) fn opt_u64(item: &Item, name: &str) -> Result<Option<u64>> {
    match item.get(name) {
        None => Ok(None),
        Some(v) => {
            let text = v.as_n().map_err(|_| corrupt(name))?;
            text.parse().map(Some).map_err(|_| corrupt(name))
        }
    }
}

pub(crate) fn get_bytes<'a>(item: &'a Item, name: &str) -> Result<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(blob)) => Ok(blob.as_ref()),
        _ => Err(corrupt(name)),
    }
}

/// `v` as 8 big-endian bytes (sorts like the number). Built from the little-endian form: the
/// workspace denies the endian-specific conversions so that every one is spelled out.
pub(crate) fn be(v: u64) -> [u8; 8] {
    let mut b = v.to_le_bytes();
    b.reverse();
    b
}

/// The inverse of [`be`].
pub(crate) fn from_be(bytes: &[u8]) -> Result<u64> {
    let mut a: [u8; 8] = bytes.try_into().map_err(|_| corrupt("sort key"))?;
    a.reverse();
    Ok(u64::from_le_bytes(a))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A head as stored: the engine's head (its key window stays empty, keys are items) and the
/// version every head write increments, which each conditional write checks.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub head: StreamHead,
    pub version: u64,
}

impl Head {
    /// The first head of a new incarnation.
    pub(crate) fn new(now_ms: u64) -> Self {
        Head {
            head: StreamHead::new(now_ms, Retention::default()),
            version: 0,
        }
    }

    /// The mark a watcher compares: changes with every head write and every new incarnation.
    pub(crate) fn mark(&self) -> u64 {
        self.head.incarnation.0 ^ self.version.rotate_left(32)
    }
}

pub(crate) fn head_key(stream: &StreamId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(HEADS)),
        (SK.to_owned(), b(stream.as_str().as_bytes())),
    ])
}

pub(crate) fn head_item(stream: &StreamId, h: &Head) -> Item {
    let hd = &h.head;
    let mut item = head_key(stream);
    let mut put = |k: &str, v: u64| {
        item.insert(k.to_owned(), n(v));
    };
    put("i", hd.incarnation.0);
    put("v", h.version);
    put("n", hd.next_offset);
    put("f", hd.first_offset);
    put("c", hd.created_ms);
    put("l", hd.last_append_ms);
    put("b", hd.bytes);
    if let Some(t) = hd.sealed_ms {
        put("s", t);
    }
    if let Some(d) = hd.retention.delete_after_seal {
        put("rs", ms(d));
    }
    if let Some(d) = hd.retention.delete_after_idle {
        put("ri", ms(d));
    }
    if let Some(m) = hd.retention.max_bytes {
        put("rb", m);
    }
    // Derived, so that `list` and the sweeper can filter on one attribute.
    if let Some(x) = hd.expires_ms() {
        put("x", x);
    }
    item
}

pub(crate) fn parse_head(item: &Item) -> Result<Head> {
    let dur = |k: &str| opt_u64(item, k).map(|v| v.map(Duration::from_millis));
    Ok(Head {
        head: StreamHead {
            incarnation: Incarnation(get_u64(item, "i")?),
            first_offset: get_u64(item, "f")?,
            next_offset: get_u64(item, "n")?,
            created_ms: get_u64(item, "c")?,
            last_append_ms: get_u64(item, "l")?,
            sealed_ms: opt_u64(item, "s")?,
            bytes: get_u64(item, "b")?,
            retention: {
                let mut o = Retention::default();
                o.delete_after_seal = dur("rs")?;
                o.delete_after_idle = dur("ri")?;
                o.max_bytes = opt_u64(item, "rb")?;
                o
            },
            keys: KeyWindow::default(),
        },
        version: get_u64(item, "v")?,
    })
}

/// The stream id of a head item.
pub(crate) fn head_id(item: &Item) -> Result<StreamId> {
    StreamId::from_bytes(get_bytes(item, SK)?).map_err(|_| corrupt("stream id"))
}

pub(crate) fn records_pk(inc: Incarnation, stream: &StreamId) -> String {
    format!("r{:016x}/{}", inc.0, stream.as_str())
}

pub(crate) fn keys_pk(inc: Incarnation, stream: &StreamId) -> String {
    format!("k{:016x}/{}", inc.0, stream.as_str())
}

pub(crate) fn item_key(pk: &str, sk: impl Into<Vec<u8>>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), b(sk))])
}

/// The sort key of an idempotency key's item (a prefix byte keeps it non-empty by construction).
pub(crate) fn key_sk(key: &streamstore::IdempotencyKey) -> Vec<u8> {
    let mut sk = Vec::with_capacity(key.as_bytes().len() + 1);
    sk.push(b'K');
    sk.extend_from_slice(key.as_bytes());
    sk
}

/// One chunk of a batch: records `first..=last`, packed as `u32` little-endian length + bytes.
pub(crate) struct Chunk {
    pub first: u64,
    pub last: u64,
    pub data: Vec<u8>,
}

/// Packs `records` (the batch at `first_offset`) greedily into chunks of at most one maximal
/// record's size. Every record fits one chunk (the caller checked `MAX_RECORD_BYTES`).
pub(crate) fn pack(records: &[Bytes], first_offset: u64) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (offset, r) in (first_offset..).zip(records) {
        let need = r.len() + 4;
        let fits = chunks
            .last()
            .is_some_and(|c| c.data.len() + need <= CHUNK_CAPACITY);
        if !fits {
            chunks.push(Chunk {
                first: offset,
                last: offset,
                data: Vec::with_capacity(need),
            });
        }
        if let Some(c) = chunks.last_mut() {
            let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
            c.data.extend_from_slice(&len.to_le_bytes());
            c.data.extend_from_slice(r);
            c.last = offset;
        }
    }
    chunks
}

pub(crate) fn chunk_item(
    inc: Incarnation,
    stream: &StreamId,
    chunk: Chunk,
    timestamp_ms: u64,
    batch_id: u128,
) -> Item {
    let mut item = item_key(&records_pk(inc, stream), be(chunk.last));
    item.insert("f".to_owned(), n(chunk.first));
    item.insert("t".to_owned(), n(timestamp_ms));
    item.insert("g".to_owned(), b(batch_id.to_le_bytes()));
    item.insert("d".to_owned(), b(chunk.data));
    item
}

/// A chunk read back: its records with their offsets, and the batch that wrote it.
pub(crate) struct StoredChunk {
    pub timestamp_ms: u64,
    pub batch_id: u128,
    pub records: Vec<(u64, Bytes)>,
}

pub(crate) fn parse_chunk(item: &Item) -> Result<StoredChunk> {
    let last = from_be(get_bytes(item, SK)?)?;
    let first = get_u64(item, "f")?;
    let g: [u8; 16] = get_bytes(item, "g")?
        .try_into()
        .map_err(|_| corrupt("batch id"))?;
    let data = Bytes::copy_from_slice(get_bytes(item, "d")?);
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut offset = first;
    while pos < data.len() {
        let len_bytes: [u8; 4] = data
            .get(pos..pos + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupt("record length"))?;
        let len = usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| corrupt("length"))?;
        let start = pos + 4;
        if start + len > data.len() {
            return Err(corrupt("record length"));
        }
        records.push((offset, data.slice(start..start + len)));
        pos = start + len;
        offset += 1;
    }
    if records.is_empty() || offset - 1 != last {
        return Err(corrupt("chunk offsets"));
    }
    Ok(StoredChunk {
        timestamp_ms: get_u64(item, "t")?,
        batch_id: u128::from_le_bytes(g),
        records,
    })
}

pub(crate) fn key_item(
    stream: &StreamId,
    key: &streamstore::IdempotencyKey,
    result: &AppendResult,
    digest: u64,
) -> Item {
    let mut item = item_key(&keys_pk(result.incarnation, stream), key_sk(key));
    item.insert("o".to_owned(), n(result.first_offset));
    item.insert("c".to_owned(), n(result.count));
    item.insert("t".to_owned(), n(result.timestamp_ms));
    item.insert("g".to_owned(), n(digest));
    item
}

pub(crate) fn parse_key_item(item: &Item, inc: Incarnation) -> Result<(AppendResult, u64)> {
    Ok((
        AppendResult {
            first_offset: get_u64(item, "o")?,
            count: get_u64(item, "c")?,
            incarnation: inc,
            timestamp_ms: get_u64(item, "t")?,
        },
        get_u64(item, "g")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_keys_sort_like_numbers() {
        let mut v = vec![be(256), be(1), be(u64::MAX), be(0)];
        v.sort();
        assert_eq!(v, vec![be(0), be(1), be(256), be(u64::MAX)]);
        assert_eq!(from_be(&be(123_456_789)).unwrap(), 123_456_789);
    }

    #[test]
    fn packing_roundtrips_and_respects_capacity() {
        let id = StreamId::new("s").unwrap();
        let big = Bytes::from(vec![7u8; MAX_RECORD_BYTES]);
        let records = vec![
            Bytes::from_static(b"a"),
            big.clone(),
            Bytes::new(),
            Bytes::from_static(b"bc"),
            big,
        ];
        let chunks = pack(&records, 10);
        assert!(chunks.iter().all(|c| c.data.len() <= CHUNK_CAPACITY));
        // [a] [big] [empty, bc] [big]: a maximal record fills a chunk alone.
        assert_eq!(chunks.len(), 4);
        let mut back = Vec::new();
        for c in chunks {
            let item = chunk_item(Incarnation(5), &id, c, 99, 42);
            let stored = parse_chunk(&item).unwrap();
            assert_eq!(stored.batch_id, 42);
            back.extend(stored.records);
        }
        let offsets: Vec<u64> = back.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![10, 11, 12, 13, 14]);
        assert!(back.iter().zip(&records).all(|((_, a), b)| a == b));
    }

    #[test]
    fn head_roundtrips() {
        let id = StreamId::new("a/b").unwrap();
        let mut h = Head::new(1000);
        h.version = 7;
        h.head.sealed_ms = Some(2000);
        h.head.retention.delete_after_seal = Some(Duration::from_millis(5));
        h.head.next_offset = 9;
        let item = head_item(&id, &h);
        assert_eq!(get_u64(&item, "x").unwrap(), 2005);
        let back = parse_head(&item).unwrap();
        assert_eq!(back.head.info(&id), h.head.info(&id));
        assert_eq!(back.version, 7);
        assert_eq!(head_id(&item).unwrap(), id);
    }
}
