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
//! Prints operations per second and the ratios adapter / raw.
//!
//! `cargo run --release -p streamstore-bench --example mongodb_vs_raw -- [appends] [records]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::{Client, Collection};
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};
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

fn rate(ops: f64, started: Instant) -> f64 {
    ops / started.elapsed().as_secs_f64()
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
    let mut args = std::env::args().skip(1);
    let appends: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let replay_records: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
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
    let warm = StreamId::new("warm-adapter")?;
    for _ in 0..50 {
        store
            .append(&warm, one.clone(), AppendOptions::default())
            .await?;
    }

    println!(
        "mongodb_vs_raw: {appends} sequential appends, 16 x {} concurrent, replay of {replay_records}",
        appends / 4
    );
    // Alternated, so that a slow phase of the shared machine hits both.
    let (mut adapter_single, mut raw_single) = (0.0, 0.0);
    for round in 0..2 {
        let id = StreamId::new(format!("single-{round}"))?;
        let t = Instant::now();
        for _ in 0..appends {
            store
                .append(&id, one.clone(), AppendOptions::default())
                .await?;
        }
        adapter_single += rate(appends as f64, t) / 2.0;
        let t = Instant::now();
        raw_appends(&log, &format!("raw-single-{round}"), appends, &one).await;
        raw_single += rate(appends as f64, t) / 2.0;
    }
    println!(
        "  single:        adapter {adapter_single:8.1} appends/s   raw insert {raw_single:8.1}   ratio {:.2}",
        adapter_single / raw_single
    );

    let per = appends / 4;
    let t = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (store, one) = (Arc::clone(&store), one.clone());
            tokio::spawn(async move {
                let id = StreamId::new(format!("conc-{w}")).expect("id");
                for _ in 0..per {
                    store
                        .append(&id, one.clone(), AppendOptions::default())
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let adapter_conc = rate((16 * per) as f64, t);
    let t = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (log, one) = (log.clone(), one.clone());
            tokio::spawn(
                async move { raw_appends(&log, &format!("raw-conc-{w}"), per, &one).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let raw_conc = rate((16 * per) as f64, t);
    println!(
        "  concurrent16:  adapter {adapter_conc:8.1} appends/s   raw insert {raw_conc:8.1}   ratio {:.2}",
        adapter_conc / raw_conc
    );

    // Replay: both sides hold the same documents (100-record batches).
    let id = StreamId::new("replay")?;
    let batch = vec![payload.clone(); 100];
    let batches = replay_records.div_ceil(100);
    for _ in 0..batches {
        store
            .append(&id, batch.clone(), AppendOptions::default())
            .await?;
    }
    raw_appends(&log, "raw-replay", batches, &batch).await;
    let (mut adapter_replay, mut raw_replay_rate, mut raw_paged_rate) = (0.0, 0.0, 0.0);
    for _ in 0..3 {
        let t = Instant::now();
        let mut from = 0;
        loop {
            let page = store.read(&id, from, ReadOptions::default()).await?;
            if page.records.is_empty() {
                break;
            }
            from = page.next_offset;
        }
        adapter_replay += rate(from as f64, t) / 3.0;
        let t = Instant::now();
        let got = raw_replay(&log, "raw-replay").await;
        raw_replay_rate += rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
        let t = Instant::now();
        let got = raw_replay_paged(&log, "raw-replay", from, 1000).await;
        raw_paged_rate += rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
    }
    println!(
        "  replay:        adapter {adapter_replay:8.0} records/s   raw find {raw_replay_rate:8.0}   ratio {:.2}",
        adapter_replay / raw_replay_rate
    );
    println!(
        "  replay_paged:  adapter {adapter_replay:8.0} records/s   raw 1000-record pages {raw_paged_rate:8.0}   ratio {:.2}",
        adapter_replay / raw_paged_rate
    );

    store.close().await?;
    drop(store);
    MongoStore::destroy(&url, &prefix).await
}
