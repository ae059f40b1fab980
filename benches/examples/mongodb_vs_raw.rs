//! The MongoDB adapter against raw `mongodb` inserts doing the same writes, side by side in one
//! run against the server of `$STREAMSTORE_MONGODB_URL` (FerretDB 1.24 from
//! `scripts/services.sh`, or MongoDB):
//!
//! - `single`: sequential one-record appends to one stream. Raw inserts the very documents the
//!   adapter's data model writes (one chain entry per append: `_id` = the slot, the stream's
//!   whole state after it, a random claim under the unique `c` index, the records), keeping the
//!   head in memory, so each raw append is exactly one `insert_one`: the least any correct writer
//!   on a server without transactions must do (the unique insert is the linearization point).
//! - `concurrent16`: 16 tasks, each appending one-record batches to its own stream.
//! - `replay`: reading a 10,000-record stream (100 batches of 100 records) from offset 0. The
//!   adapter reads pages of 1000 records (the default `ReadOptions`); raw runs one `find` over
//!   the stream's `_id` range, sorted, with the records (what a reader that already knows the
//!   head and reads everything at once must do). `replay_paged` compares the same adapter run
//!   with raw reading the same 1000-record pages (one range `find` each), which separates the
//!   adapter's own cost from the cost of paging.
//!
//! Both sides write into the adapter's own collections (same indexes), to other stream ids.
//! Prints operations per second and the ratios adapter / raw. The adapter's side and the timing
//! are `streamstore_bench::vs_raw`'s, shared with the other `*_vs_raw` examples.
//!
//! `cargo run --release -p streamstore-bench --example mongodb_vs_raw -- [appends] [records]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::{Client, Collection};
use streamstore::{ReadOptions, StreamId, StreamStore};
use streamstore_bench::vs_raw::{self, Args};
use streamstore_mongodb::{MongoConfig, MongoStore, URL_ENV};

/// The `_id` separator of the adapter's slots (U+001F).
const SEP: char = '\u{1f}';

/// A raw writer of one stream: the state the adapter keeps in its entries, held in memory.
struct RawStream {
    id: String,
    next: u64,
    total: u64,
    incarnation: i64,
    created: i64,
}

impl RawStream {
    fn new(id: String) -> Self {
        RawStream {
            id,
            next: 0,
            total: 0,
            incarnation: rand::random(),
            created: now(),
        }
    }

    fn slot(&self, offset: u64) -> String {
        format!("{}{SEP}{:020}{SEP}{:020}{SEP}{:010}", self.id, 1, offset, 0)
    }

    /// The next entry: the same fields the adapter's `Entry::to_document` writes for a batch.
    fn entry(&mut self, records: &[Bytes]) -> Document {
        let count = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let first = self.next;
        self.next += count;
        self.total += bytes;
        let ts = now();
        let recs: Vec<Bson> = records
            .iter()
            .map(|r| {
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: r.to_vec(),
                })
            })
            .collect();
        let sizes: Vec<Bson> = records
            .iter()
            .map(|r| Bson::Int64(int(r.len() as u64)))
            .collect();
        doc! {
            "_id": self.slot(first),
            "s": self.id.as_str(),
            "g": 1i64,
            "o": int(first),
            "k": 0i64,
            "t": "d",
            "c": format!("r{SEP}{:032x}", rand::random::<u128>()),
            "n": int(count),
            "e": int(self.next),
            "ts": ts,
            "dg": Bson::Null,
            "inc": self.incarnation,
            "cr": self.created,
            "la": ts,
            "sl": Bson::Null,
            "f": 0i64,
            "tot": int(self.total),
            "tb": 0i64,
            "rs": Bson::Null,
            "ri": Bson::Null,
            "rm": Bson::Null,
            "r": recs,
            "z": sizes,
        }
    }
}

/// A count or offset as BSON `Int64` (the bench's numbers are small).
fn int(v: u64) -> i64 {
    i64::try_from(v).expect("fits an Int64")
}

fn now() -> i64 {
    i64::try_from(streamstore::implementor::validate::now_ms()).unwrap_or(i64::MAX)
}

/// The records of the raw stream `id` in pages of `page` records (the adapter's page size), one
/// range `find` per page over the slots that start in it (batches of `page` divides evenly).
async fn raw_replay_paged(log: &Collection<Document>, id: &str, total: u64, page: u64) -> usize {
    let s = RawStream::new(id.to_owned());
    let mut n = 0;
    let mut from = 0;
    while from < total {
        let filter = doc! {
            "_id": { "$gte": s.slot(from), "$lt": s.slot(from + page) },
            "t": "d",
        };
        let docs: Vec<Document> = log
            .find(filter)
            .sort(doc! { "_id": 1 })
            .await
            .expect("raw find")
            .try_collect()
            .await
            .expect("raw cursor");
        n += docs
            .iter()
            .map(|d| d.get_array("r").map_or(0, Vec::len))
            .sum::<usize>();
        from += page;
    }
    n
}

/// `n` sequential one-insert appends of `records` to a new raw stream `id`.
async fn raw_appends(log: &Collection<Document>, id: &str, n: u64, records: &[Bytes]) {
    let mut s = RawStream::new(id.to_owned());
    for _ in 0..n {
        log.insert_one(s.entry(records)).await.expect("raw insert");
    }
}

/// Every record of the raw stream `id`: one sorted range `find` over its slots.
async fn raw_replay(log: &Collection<Document>, id: &str) -> usize {
    let s = RawStream::new(id.to_owned());
    let filter = doc! {
        "_id": { "$gte": s.slot(0), "$lt": s.slot(u64::MAX / 2) },
        "t": "d",
    };
    let mut cursor = log
        .find(filter)
        .sort(doc! { "_id": 1 })
        .await
        .expect("raw find");
    let mut n = 0;
    while let Some(d) = cursor.try_next().await.expect("raw cursor") {
        n += d.get_array("r").map_or(0, Vec::len);
    }
    n
}

/// The driver URL the adapter would use: `retryWrites=false` unless the URL sets it.
fn raw_url(url: &str) -> String {
    if url.contains("retryWrites=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&retryWrites=false")
    } else {
        format!("{url}?retryWrites=false")
    }
}

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let Ok(url) = std::env::var(URL_ENV) else {
        eprintln!("{URL_ENV} is not set: scripts/services.sh up mongodb");
        return Ok(());
    };
    let args = Args::from_env();
    let appends = args.appends;
    let prefix = format!("bench{:08x}_", rand::random::<u32>());
    let config = MongoConfig::from_url(&url)?.with_prefix(&prefix)?;
    let store = Arc::new(MongoStore::open(config.clone()).await?);
    let client = Client::with_uri_str(raw_url(&url))
        .await
        .expect("raw client");
    let log: Collection<Document> = client
        .database(config.database())
        .collection(&format!("{prefix}log"));
    let payload = Bytes::from(vec![7u8; 100]);
    let one = vec![payload.clone()];

    // Warm-up: connections, the server's statement caches.
    raw_appends(&log, "warm-raw", 50, &one).await;
    vs_raw::sequential(&*store, &StreamId::new("warm-adapter")?, 50, &one).await?;

    args.headline("mongodb_vs_raw");
    let (adapter_single, raw_single) = vs_raw::alternated(
        2,
        async |round| {
            let id = StreamId::new(format!("single-{round}"))?;
            vs_raw::sequential(&*store, &id, appends, &one).await
        },
        async |round| {
            let t = Instant::now();
            raw_appends(&log, &format!("raw-single-{round}"), appends, &one).await;
            vs_raw::rate(appends as f64, t)
        },
    )
    .await?;
    vs_raw::line(
        "single",
        "appends/s",
        adapter_single,
        "raw insert",
        raw_single,
        1,
    );

    let per = args.per_task();
    let adapter_conc = vs_raw::adapter_concurrent(&store, per, &payload).await;
    let raw_conc = vs_raw::concurrent(per, |w| {
        let (log, one) = (log.clone(), one.clone());
        async move { raw_appends(&log, &format!("raw-conc-{w}"), per, &one).await }
    })
    .await;
    vs_raw::line(
        "concurrent16",
        "appends/s",
        adapter_conc,
        "raw insert",
        raw_conc,
        1,
    );

    // Replay: both sides hold the same documents (100-record batches).
    let id = StreamId::new("replay")?;
    let batch = vec![payload.clone(); 100];
    vs_raw::fill(&*store, &id, args.replay_records, &batch).await?;
    raw_appends(
        &log,
        "raw-replay",
        args.replay_records.div_ceil(100),
        &batch,
    )
    .await;
    let (mut adapter_replay, mut raw_replay_rate, mut raw_paged_rate) = (0.0, 0.0, 0.0);
    for _ in 0..3 {
        let (from, r) = vs_raw::replay(&*store, &id, ReadOptions::default()).await?;
        adapter_replay += r / 3.0;
        let t = Instant::now();
        let got = raw_replay(&log, "raw-replay").await;
        raw_replay_rate += vs_raw::rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
        let t = Instant::now();
        let got = raw_replay_paged(&log, "raw-replay", from, 1000).await;
        raw_paged_rate += vs_raw::rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
    }
    vs_raw::line(
        "replay",
        "records/s",
        adapter_replay,
        "raw find",
        raw_replay_rate,
        0,
    );
    vs_raw::line(
        "replay_paged",
        "records/s",
        adapter_replay,
        "raw 1000-record pages",
        raw_paged_rate,
        0,
    );

    store.close().await?;
    drop(store);
    MongoStore::destroy(&url, &prefix).await
}
