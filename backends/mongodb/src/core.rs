//! The adapter's requests: every read and write of `<prefix>log` and `<prefix>hints`.
//!
//! Stream ids, keys and payloads only ever appear as BSON values (`_id` strings, `s`, `c`,
//! binaries), never as field names, operators or collection names; the collection names come
//! only from the validated prefix.

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use streamstore::{Result, StreamId};

use crate::entry::{to_i64, Entry, Kind};
use crate::error::{is_duplicate_key, parse_mongo_error};
use crate::slot::{last_id_at, Slot};

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The document is in.
    Done,
    /// A unique index refused it: the slot (`_id`) or the claim is taken.
    Duplicate,
}

/// The two collections of one prefix.
#[derive(Clone, Debug)]
pub struct MongoCore {
    log: Collection<Document>,
    hints: Collection<Document>,
}

/// Leaves out the records: head reads never transfer payloads.
fn without_records() -> Document {
    doc! { "r": 0 }
}

impl MongoCore {
    /// The collections of `prefix` in `db`, with their indexes created (idempotent: creating an
    /// existing index with the same options is a no-op, so processes may start at once).
    pub async fn open(db: &Database, prefix: &str) -> Result<Self> {
        let core = MongoCore {
            log: db.collection(&format!("{prefix}log")),
            hints: db.collection(&format!("{prefix}hints")),
        };
        let claim = IndexModel::builder()
            .keys(doc! { "c": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("claim".to_owned())
                    .build(),
            )
            .build();
        core.log
            .create_index(claim)
            .await
            .map_err(parse_mongo_error)?;
        // Used by a real MongoDB for `list` and the sweeper; FerretDB keeps them but scans.
        for (field, name) in [("s", "stream"), ("ex", "expiry")] {
            let model = IndexModel::builder()
                .keys(doc! { field: 1 })
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build();
            core.log
                .create_index(model)
                .await
                .map_err(parse_mongo_error)?;
        }
        Ok(core)
    }

    /// Drops both collections.
    pub async fn drop(&self) -> Result<()> {
        self.log.drop().await.map_err(parse_mongo_error)?;
        self.hints.drop().await.map_err(parse_mongo_error)
    }

    /// The entry in `slot` of `stream`, without records (a point read by `_id`).
    pub async fn entry(&self, stream: &StreamId, slot: Slot) -> Result<Option<Entry>> {
        let d = self
            .log
            .find_one(doc! { "_id": slot.id(stream) })
            .projection(without_records())
            .await
            .map_err(parse_mongo_error)?;
        d.as_ref().map(Entry::from_document).transpose()
    }

    /// The entries in the slots `ids`, by `_id`, without records, in ONE query
    /// (`find({_id: {$in: ids}})`): the watcher's batched step along many streams' chains at
    /// once. An index lookup per id on MongoDB; a full scan of `<prefix>log` on FerretDB, which
    /// pushes only `{_id: <value>}` down (see `marks.rs` for why a scan per step still beats a
    /// point read per stream there).
    pub async fn entries_in(&self, ids: Vec<String>) -> Result<HashMap<String, Entry>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let docs: Vec<Document> = self
            .log
            .find(doc! { "_id": { "$in": ids } })
            .projection(without_records())
            .await
            .map_err(parse_mongo_error)?
            .try_collect()
            .await
            .map_err(parse_mongo_error)?;
        docs.iter()
            .map(|d| {
                let e = Entry::from_document(d)?;
                let id = d.get_str("_id").unwrap_or_default().to_owned();
                Ok((id, e))
            })
            .collect()
    }

    /// The document in `slot` of `stream`, records included (a point read by `_id`).
    pub async fn document(&self, stream: &StreamId, slot: Slot) -> Result<Option<Document>> {
        self.log
            .find_one(doc! { "_id": slot.id(stream) })
            .await
            .map_err(parse_mongo_error)
    }

    /// Inserts one entry document; a duplicate `_id` or claim is [`Inserted::Duplicate`].
    pub async fn insert(&self, d: Document) -> Result<Inserted> {
        match self.log.insert_one(d).await {
            Ok(_) => Ok(Inserted::Done),
            Err(e) if is_duplicate_key(&e) => Ok(Inserted::Duplicate),
            Err(e) => Err(parse_mongo_error(e)),
        }
    }

    /// The entry holding `claim`, if any (a full scan on FerretDB: only on conflict paths).
    pub async fn find_claim(&self, claim: &str) -> Result<Option<Entry>> {
        let d = self
            .log
            .find_one(doc! { "c": claim })
            .projection(without_records())
            .await
            .map_err(parse_mongo_error)?;
        d.as_ref().map(Entry::from_document).transpose()
    }

    /// The data document of generation `g` of `stream` that holds `offset`: the last one that
    /// starts at or below it.
    pub async fn data_holding(
        &self,
        stream: &StreamId,
        g: u64,
        offset: u64,
    ) -> Result<Option<Document>> {
        let filter = doc! {
            "_id": { "$gte": Slot::start_of(g).id(stream), "$lte": last_id_at(stream, g, offset) },
            "t": Kind::DATA,
        };
        self.log
            .find_one(filter)
            .sort(doc! { "_id": -1 })
            .await
            .map_err(parse_mongo_error)
    }

    /// Data documents of generation `g` of `stream` starting in `from..end`, in offset order,
    /// at most `limit` of them, with their records or only their lengths.
    pub async fn data_range(
        &self,
        stream: &StreamId,
        g: u64,
        (from, end): (u64, u64),
        limit: u64,
        with_records: bool,
    ) -> Result<Vec<Document>> {
        let start = Slot {
            generation: g,
            offset: from,
            sub: 0,
        };
        let stop = Slot {
            generation: g,
            offset: end,
            sub: 0,
        };
        let filter = doc! {
            "_id": { "$gte": start.id(stream), "$lt": stop.id(stream) },
            "t": Kind::DATA,
        };
        let mut find = self
            .log
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(to_i64(limit)?);
        if !with_records {
            find = find.projection(without_records());
        }
        find.await
            .map_err(parse_mongo_error)?
            .try_collect()
            .await
            .map_err(parse_mongo_error)
    }

    /// The hinted slot of `stream` (a lower bound of its last entry), if any.
    pub async fn hint(&self, stream: &StreamId) -> Result<Option<Slot>> {
        let d = self
            .hints
            .find_one(doc! { "_id": stream.as_str() })
            .await
            .map_err(parse_mongo_error)?;
        Ok(d.as_ref()
            .and_then(|d| d.get_str("at").ok())
            .and_then(Slot::parse))
    }

    /// Raises the hint of `stream` to `slot` (never lowers it on MongoDB; on FerretDB `$max` is
    /// not atomic and a race may leave a lower value, which is still a real entry: any entry is
    /// a valid place to start walking from).
    pub async fn raise_hint(&self, stream: &StreamId, slot: Slot) -> Result<()> {
        self.hints
            .update_one(
                doc! { "_id": stream.as_str() },
                doc! { "$max": { "at": slot.id(stream) } },
            )
            .upsert(true)
            .await
            .map_err(parse_mongo_error)?;
        Ok(())
    }

    /// Removes the payloads of the data entries of generation `g` that end at or below `below`
    /// (trimmed records). The entries stay: the chain is never cut.
    pub async fn strip_below(&self, stream: &StreamId, g: u64, below: u64) -> Result<()> {
        let filter = doc! {
            "_id": { "$gte": Slot::start_of(g).id(stream), "$lt": Slot { generation: g, offset: below, sub: 0 }.id(stream) },
            "t": Kind::DATA,
            "e": { "$lte": to_i64(below)? },
            "r": { "$exists": true },
        };
        self.log
            .update_many(filter, doc! { "$unset": { "r": 1 } })
            .await
            .map_err(parse_mongo_error)?;
        Ok(())
    }

    /// Removes every payload and sweeper hint of generation `g` (a deleted life of the stream).
    pub async fn strip_generation(&self, stream: &StreamId, g: u64) -> Result<()> {
        let filter = doc! {
            "_id": { "$gte": Slot::start_of(g).id(stream), "$lt": Slot::start_of(g + 1).id(stream) },
        };
        self.log
            .update_many(filter, doc! { "$unset": { "r": 1, "ex": 1 } })
            .await
            .map_err(parse_mongo_error)?;
        Ok(())
    }

    /// Clears the sweeper hint of entries of `stream` other than `keep` whose deadline passed
    /// (superseded entries; only the last entry's deadline counts).
    pub async fn clear_stale_expiry(&self, stream: &StreamId, keep: &str, now: u64) -> Result<()> {
        let filter = doc! {
            "s": stream.as_str(),
            "ex": { "$lte": to_i64(now)? },
            "_id": { "$ne": keep },
        };
        self.log
            .update_many(filter, doc! { "$unset": { "ex": 1 } })
            .await
            .map_err(parse_mongo_error)?;
        Ok(())
    }

    /// Clears the sweeper hint of one superseded entry.
    pub async fn clear_expiry(&self, id: String) -> Result<()> {
        self.log
            .update_one(doc! { "_id": id }, doc! { "$unset": { "ex": 1 } })
            .await
            .map_err(parse_mongo_error)?;
        Ok(())
    }

    /// Streams that have an entry whose retention deadline is at or before `now` (candidates:
    /// the caller checks each stream's last entry).
    pub async fn expiry_candidates(&self, now: u64, limit: u64) -> Result<Vec<StreamId>> {
        let pipeline = vec![
            doc! { "$match": { "ex": { "$lte": to_i64(now)? } } },
            doc! { "$group": { "_id": "$s" } },
            doc! { "$limit": to_i64(limit)? },
        ];
        self.ids(pipeline).await
    }

    /// Distinct stream ids (live or not) that are `>= from` (or `> from` if `exclusive`), in
    /// ascending byte order, at most `limit`.
    pub async fn stream_ids(
        &self,
        from: &str,
        exclusive: bool,
        limit: u64,
    ) -> Result<Vec<StreamId>> {
        let op = if exclusive { "$gt" } else { "$gte" };
        let pipeline = vec![
            doc! { "$match": { "s": { op: from } } },
            doc! { "$group": { "_id": "$s" } },
            doc! { "$sort": { "_id": 1 } },
            doc! { "$limit": to_i64(limit)? },
        ];
        self.ids(pipeline).await
    }

    async fn ids(&self, pipeline: Vec<Document>) -> Result<Vec<StreamId>> {
        let docs: Vec<Document> = self
            .log
            .aggregate(pipeline)
            .await
            .map_err(parse_mongo_error)?
            .try_collect()
            .await
            .map_err(parse_mongo_error)?;
        Ok(docs
            .iter()
            .filter_map(|d| match d.get("_id") {
                Some(Bson::String(s)) => StreamId::new(s).ok(),
                _ => None,
            })
            .collect())
    }
}
