//! One chain entry: a document of `<prefix>log`, and the stream state it carries.
//!
//! Every entry holds the complete state of its stream *after* it (incarnation, offsets, byte
//! counts, seal, retention), so the head of a stream is simply its last entry and every write
//! is one insert of the next entry, computed from the one before. Data entries also hold their
//! records. Entries are never changed after the insert, except that the payloads of trimmed or
//! deleted records are removed (`r` unset) and the sweeper hint `ex` of superseded entries is
//! cleared; neither changes what the chain says.

use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use bytes::Bytes;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use streamstore::implementor::head::{KeyWindow, StreamHead};
use streamstore::{AppendResult, Error, ErrorKind, Incarnation, Result, Retention, StreamId};

use crate::slot::Slot;

/// What an entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Appends `count` records at the slot's offset.
    Data,
    /// Changes only the state: a trim or a retention policy.
    Meta,
    /// Seals the stream (the state's `sealed_ms` is set from here on).
    Seal,
    /// Ends the generation: the stream is deleted; its next life starts at the next generation.
    Delete,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Data => "d",
            Kind::Meta => "m",
            Kind::Seal => "z",
            Kind::Delete => "x",
        }
    }

    fn from_code(code: &str) -> Result<Kind> {
        Ok(match code {
            "d" => Kind::Data,
            "m" => Kind::Meta,
            "z" => Kind::Seal,
            "x" => Kind::Delete,
            other => return Err(corrupt(&format!("unknown entry kind {other:?}"))),
        })
    }

    /// The stored code of data entries (for filters).
    pub const DATA: &'static str = "d";
}

/// A chain entry without its records.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it is.
    pub slot: Slot,
    /// What it does.
    pub kind: Kind,
    /// Records in a data entry (0 otherwise).
    pub count: u64,
    /// A data entry's batch timestamp; the time of the operation otherwise.
    pub ts: u64,
    /// The claim (unique index): an idempotency key's claim or a random token.
    pub claim: String,
    /// The batch digest of a keyed data entry.
    pub digest: Option<u64>,
    /// The stream's state after this entry (its `keys` window stays empty).
    pub head: StreamHead,
    /// Payload bytes ever appended in this generation, up to and including this entry.
    pub total_bytes: u64,
    /// Payload bytes below `head.first_offset` (trimmed).
    pub trimmed_bytes: u64,
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corruption,
        format!("malformed stream entry: {what}"),
    )
}

/// A `u64` as BSON `Int64`; values above `i64::MAX` are refused, never wrapped.
pub fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::too_large(format!("{v} does not fit a BSON Int64")))
}

fn bits(v: u64) -> i64 {
    i64::from_le_bytes(v.to_le_bytes())
}

fn unbits(v: i64) -> u64 {
    u64::from_le_bytes(v.to_le_bytes())
}

fn get_u64(d: &Document, field: &str) -> Result<u64> {
    let v = match d.get(field) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => {
            return Err(corrupt(&format!(
                "field {field} is missing or not an integer"
            )))
        }
    };
    u64::try_from(v).map_err(|_| corrupt(&format!("field {field} is negative")))
}

fn get_opt_u64(d: &Document, field: &str) -> Result<Option<u64>> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => get_u64(d, field).map(Some),
    }
}

fn get_bits(d: &Document, field: &str) -> Result<u64> {
    match d.get(field) {
        Some(Bson::Int64(v)) => Ok(unbits(*v)),
        _ => Err(corrupt(&format!(
            "field {field} is missing or not an Int64"
        ))),
    }
}

fn opt_i64(v: Option<u64>) -> Result<Bson> {
    Ok(match v {
        Some(v) => Bson::Int64(to_i64(v)?),
        None => Bson::Null,
    })
}

fn duration_ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in whole milliseconds, saturating at `i64::MAX` ms ("never").
fn duration_bson(d: Option<Duration>) -> Bson {
    match duration_ms(d) {
        Some(ms) => Bson::Int64(i64::try_from(ms).unwrap_or(i64::MAX)),
        None => Bson::Null,
    }
}

impl Entry {
    /// The first entry of a new generation: an empty, unsealed stream created at `now_ms`.
    pub fn genesis_state(now_ms: u64) -> StreamHead {
        StreamHead::new(now_ms, Retention::default())
    }

    /// The stream's next offset after this entry.
    pub fn next_offset(&self) -> u64 {
        self.head.next_offset
    }

    /// The slot of the entry that follows this one. Exactly one slot follows each entry, so the
    /// chain cannot fork: every writer inserts at the successor of the last entry it saw.
    pub fn next_slot(&self) -> Slot {
        match self.kind {
            Kind::Data => Slot {
                generation: self.slot.generation,
                offset: self.head.next_offset,
                sub: 0,
            },
            Kind::Meta | Kind::Seal => Slot {
                sub: self.slot.sub.saturating_add(1),
                ..self.slot
            },
            Kind::Delete => Slot::start_of(self.slot.generation + 1),
        }
    }

    /// The live head after this entry: `None` once deleted, or expired at `now_ms`.
    pub fn live_head(&self, now_ms: u64) -> Option<&StreamHead> {
        (self.kind != Kind::Delete && !self.head.is_expired(now_ms)).then_some(&self.head)
    }

    /// The result of the append this data entry recorded.
    pub fn append_result(&self) -> AppendResult {
        AppendResult {
            first_offset: self.slot.offset,
            count: self.count,
            incarnation: self.head.incarnation,
            timestamp_ms: self.ts,
        }
    }

    /// The document for this entry, with `records` for a data entry.
    pub fn to_document(&self, stream: &StreamId, records: &[Bytes]) -> Result<Document> {
        let h = &self.head;
        let mut d = doc! {
            "_id": self.slot.id(stream),
            "s": stream.as_str(),
            "g": to_i64(self.slot.generation)?,
            "o": to_i64(self.slot.offset)?,
            "k": i64::from(self.slot.sub),
            "t": self.kind.code(),
            "c": self.claim.as_str(),
            "n": to_i64(self.count)?,
            "e": to_i64(h.next_offset)?,
            "ts": to_i64(self.ts)?,
            "dg": match self.digest { Some(v) => Bson::Int64(bits(v)), None => Bson::Null },
            "inc": bits(h.incarnation.0),
            "cr": to_i64(h.created_ms)?,
            "la": to_i64(h.last_append_ms)?,
            "sl": opt_i64(h.sealed_ms)?,
            "f": to_i64(h.first_offset)?,
            "tot": to_i64(self.total_bytes)?,
            "tb": to_i64(self.trimmed_bytes)?,
            "rs": duration_bson(h.retention.delete_after_seal),
            "ri": duration_bson(h.retention.delete_after_idle),
            "rm": match h.retention.max_bytes {
                Some(b) => Bson::Int64(i64::try_from(b).unwrap_or(i64::MAX)),
                None => Bson::Null,
            },
        };
        // The sweeper finds streams to delete by this field; only the last entry's counts.
        if self.kind != Kind::Delete {
            if let Some(ex) = h.expires_ms() {
                d.insert("ex", Bson::Int64(i64::try_from(ex).unwrap_or(i64::MAX)));
            }
        }
        if self.kind == Kind::Data {
            let recs: Vec<Bson> = records
                .iter()
                .map(|r| {
                    Bson::Binary(Binary {
                        subtype: BinarySubtype::Generic,
                        bytes: r.to_vec(),
                    })
                })
                .collect();
            d.insert("r", recs);
            // The lengths stay when the payloads are removed: trims count bytes from them.
            let sizes = records
                .iter()
                .map(|r| i64::try_from(r.len()).map(Bson::Int64))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| Error::too_large("a record is too large"))?;
            d.insert("z", sizes);
        }
        Ok(d)
    }

    /// Reads an entry back; anything malformed is `Corruption`, never served.
    pub fn from_document(d: &Document) -> Result<Entry> {
        let id = d
            .get_str("_id")
            .map_err(|_| corrupt("_id is not a string"))?;
        let slot = Slot::parse(id).ok_or_else(|| corrupt("_id is not a slot"))?;
        let kind = Kind::from_code(d.get_str("t").map_err(|_| corrupt("no kind"))?)?;
        let claim = d.get_str("c").map_err(|_| corrupt("no claim"))?.to_owned();
        let digest = match d.get("dg") {
            Some(Bson::Int64(v)) => Some(unbits(*v)),
            _ => None,
        };
        let ms = |f| get_opt_u64(d, f).map(|v| v.map(Duration::from_millis));
        let head = StreamHead {
            incarnation: Incarnation(get_bits(d, "inc")?),
            first_offset: get_u64(d, "f")?,
            next_offset: get_u64(d, "e")?,
            created_ms: get_u64(d, "cr")?,
            last_append_ms: get_u64(d, "la")?,
            sealed_ms: get_opt_u64(d, "sl")?,
            bytes: 0,
            retention: {
                let mut o = Retention::default();
                o.delete_after_seal = ms("rs")?;
                o.delete_after_idle = ms("ri")?;
                o.max_bytes = get_opt_u64(d, "rm")?;
                o
            },
            keys: KeyWindow::default(),
        };
        let total_bytes = get_u64(d, "tot")?;
        let trimmed_bytes = get_u64(d, "tb")?;
        let mut e = Entry {
            slot,
            kind,
            count: get_u64(d, "n")?,
            ts: get_u64(d, "ts")?,
            claim,
            digest,
            head,
            total_bytes,
            trimmed_bytes,
        };
        e.head.bytes = total_bytes.saturating_sub(trimmed_bytes);
        let consistent = e.head.first_offset <= e.head.next_offset
            && trimmed_bytes <= total_bytes
            && (kind != Kind::Data || slot.offset + e.count == e.head.next_offset);
        if !consistent {
            return Err(corrupt("inconsistent offsets or byte counts"));
        }
        Ok(e)
    }
}

/// The records of a data document (`None` once its payloads were removed by a trim or delete).
pub fn records_of(d: &Document) -> Result<Option<Vec<Bytes>>> {
    let Some(r) = d.get("r") else {
        return Ok(None);
    };
    let Bson::Array(items) = r else {
        return Err(corrupt("records are not an array"));
    };
    items
        .iter()
        .map(|b| match b {
            Bson::Binary(b) => Ok(Bytes::from(b.bytes.clone())),
            _ => Err(corrupt("a record is not binary")),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The record lengths of a data document (kept after its payloads were removed).
pub fn sizes_of(d: &Document) -> Result<Vec<u64>> {
    let Some(Bson::Array(items)) = d.get("z") else {
        return Err(corrupt("record lengths are missing"));
    };
    items
        .iter()
        .map(|b| match b {
            Bson::Int64(v) => u64::try_from(*v).map_err(|_| corrupt("a negative length")),
            _ => Err(corrupt("a record length is not an Int64")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_roundtrip() {
        let s = StreamId::new("x").unwrap();
        let mut head = Entry::genesis_state(1000);
        head.next_offset = 5;
        head.first_offset = 2;
        head.sealed_ms = Some(1200);
        head.retention.delete_after_idle = Some(Duration::from_millis(7));
        head.incarnation = Incarnation(u64::MAX - 1);
        let e = Entry {
            slot: Slot {
                generation: 3,
                offset: 3,
                sub: 1,
            },
            kind: Kind::Data,
            count: 2,
            ts: 1100,
            claim: "c".into(),
            digest: Some(u64::MAX),
            head,
            total_bytes: 10,
            trimmed_bytes: 4,
        };
        let recs = [Bytes::from_static(b"ab"), Bytes::new()];
        let d = e.to_document(&s, &recs).unwrap();
        let back = Entry::from_document(&d).unwrap();
        assert_eq!(back.slot, e.slot);
        assert_eq!(back.digest, e.digest);
        assert_eq!(back.head.info(&s), {
            let mut h = e.head.clone();
            h.bytes = 6;
            h.info(&s)
        });
        assert_eq!(records_of(&d).unwrap().unwrap(), recs.to_vec());
        assert_eq!(sizes_of(&d).unwrap(), vec![2, 0]);
        assert_eq!(
            back.next_slot(),
            Slot {
                generation: 3,
                offset: 5,
                sub: 0
            }
        );
    }
}
