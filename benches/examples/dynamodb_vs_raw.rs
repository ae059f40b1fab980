//! The DynamoDB adapter against raw `aws-sdk-dynamodb` calls doing the same writes, side by side
//! in one run against the server of `$STREAMSTORE_DYNAMODB_ENDPOINT` (moto from
//! `scripts/services.sh`, which serves one request at a time: see docs/backends.md):
//!
//! - `single`: sequential one-record appends to one stream. Raw sends the same
//!   `TransactWriteItems` the adapter sends (a `Put` of the head conditioned on its incarnation
//!   and version, and a `Put` of the record chunk), with the head kept in memory: the least any
//!   correct conditional writer must do.
//! - `concurrent16`: 16 tasks, each appending one-record batches to its own stream.
//! - `replay`: reading a 10,000-record stream (100 batches of 100 records) from offset 0. The
//!   adapter reads pages of 1000 records (the default `ReadOptions`); raw runs one strongly
//!   consistent `Query` of the stream's chunk partition, continued across pages; `replay_paged`
//!   compares the same adapter run with raw reading the same 1000-record pages (one bounded
//!   `Query` each), which separates the adapter's own cost from the cost of paging.
//!
//! Both sides use the adapter's table (a new one per run, deleted at the end), other stream ids.
//! Prints operations per second and the ratios adapter / raw. The adapter's side and the timing
//! are `streamstore_bench::vs_raw`'s, shared with the other `*_vs_raw` examples.
//!
//! `cargo run --release -p streamstore-bench --example dynamodb_vs_raw -- [appends] [records]`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use bytes::Bytes;
use streamstore::{ReadOptions, StreamId, StreamStore};
use streamstore_bench::vs_raw::{self, Args};
use streamstore_dynamodb::{DynamoDbConfig, DynamoDbStore, ENDPOINT_ENV};

type Item = HashMap<String, AttributeValue>;

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// `v` as 8 big-endian bytes (the chunks' sort key), spelled out as the adapter does.
fn be(v: u64) -> [u8; 8] {
    let mut a = v.to_le_bytes();
    a.reverse();
    a
}

/// A raw writer of one stream: the head the adapter stores, held in memory.
struct RawStream {
    id: String,
    incarnation: u64,
    version: u64,
    next: u64,
    bytes: u64,
    created: u64,
}

impl RawStream {
    fn new(id: &str) -> Self {
        RawStream {
            id: id.to_owned(),
            incarnation: rand::random(),
            version: 0,
            next: 0,
            bytes: 0,
            created: streamstore::implementor::validate::now_ms(),
        }
    }

    fn records_pk(&self) -> String {
        format!("r{:016x}/{}", self.incarnation, self.id)
    }

    /// The transaction of the next append of `records` (the adapter's items and conditions).
    fn append(&mut self, table: &str, records: &[Bytes]) -> Vec<TransactWriteItem> {
        let now = streamstore::implementor::validate::now_ms();
        let first = self.next;
        let expected = self.version;
        self.version += 1;
        self.next += records.len() as u64;
        self.bytes += records.iter().map(|r| r.len() as u64).sum::<u64>();
        let mut head: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("h".to_owned())),
            ("sk".to_owned(), b(self.id.as_bytes())),
        ]);
        for (k, v) in [
            ("i", self.incarnation),
            ("v", self.version),
            ("n", self.next),
            ("f", 0),
            ("c", self.created),
            ("l", now),
            ("b", self.bytes),
        ] {
            head.insert(k.to_owned(), n(v));
        }
        let mut put = Put::builder().table_name(table).set_item(Some(head));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("i = :i AND v = :v")
                .expression_attribute_values(":i", n(self.incarnation))
                .expression_attribute_values(":v", n(expected))
        };
        let mut data = Vec::new();
        for r in records {
            let len = u32::try_from(r.len()).expect("small record");
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(r);
        }
        let chunk: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(self.records_pk())),
            ("sk".to_owned(), b(be(self.next - 1))),
            ("f".to_owned(), n(first)),
            ("t".to_owned(), n(now)),
            ("g".to_owned(), b(rand::random::<u128>().to_le_bytes())),
            ("d".to_owned(), b(data)),
        ]);
        let chunk = Put::builder().table_name(table).set_item(Some(chunk));
        vec![
            TransactWriteItem::builder()
                .put(put.build().expect("head put"))
                .build(),
            TransactWriteItem::builder()
                .put(chunk.build().expect("chunk put"))
                .build(),
        ]
    }
}

/// The raw side: the client the adapter uses for conditional writes (no SDK retries).
struct Raw {
    client: Client,
    table: String,
}

impl Raw {
    fn new(endpoint: &str, config: &DynamoDbConfig) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .http_client(http)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .build();
        Raw {
            client: Client::from_conf(conf),
            table: config.table().to_owned(),
        }
    }

    /// `n` sequential appends of `records` to a new raw stream `id`, one transaction each.
    async fn appends(&self, id: &str, count: u64, records: &[Bytes]) -> RawStream {
        let mut s = RawStream::new(id);
        for _ in 0..count {
            self.client
                .transact_write_items()
                .set_transact_items(Some(s.append(&self.table, records)))
                .send()
                .await
                .expect("raw transaction");
        }
        s
    }

    /// Every record of `s`: one consistent `Query` of its chunk partition, all pages.
    async fn replay(&self, s: &RawStream) -> usize {
        self.count_chunks(s, "sk >= :a", &[(":a", be(0))]).await
    }
}

impl Raw {
    /// The records of `s` in pages of `page` records (the adapter's page size): one bounded
    /// `Query` per page over the chunks that end in it.
    async fn replay_paged(&self, s: &RawStream, page: u64) -> usize {
        let (mut count, mut from) = (0, 0);
        while from < s.next {
            let bounds = [(":a", be(from)), (":b", be(from + page - 1))];
            count += self.count_chunks(s, "sk BETWEEN :a AND :b", &bounds).await;
            from += page;
        }
        count
    }

    /// The records in the chunks of `s` whose sort key meets `condition` (over the named
    /// `bounds`): one consistent `Query`, all its pages.
    async fn count_chunks(
        &self,
        s: &RawStream,
        condition: &str,
        bounds: &[(&str, [u8; 8])],
    ) -> usize {
        let (mut count, mut start) = (0, None);
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(format!("pk = :p AND {condition}"))
                .expression_attribute_values(":p", AttributeValue::S(s.records_pk()));
            for (name, key) in bounds {
                query = query.expression_attribute_values(*name, b(*key));
            }
            let out = query
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("raw query");
            for item in out.items() {
                let Some(AttributeValue::B(d)) = item.get("d") else {
                    panic!("a chunk without records");
                };
                count += unpacked(d.as_ref());
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return count;
            }
        }
    }
}

/// Records in a packed chunk (`u32` little-endian length + bytes, repeated), parsed as the
/// adapter parses them.
fn unpacked(data: &[u8]) -> usize {
    let (mut pos, mut count) = (0, 0);
    while pos + 4 <= data.len() {
        let len: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
        pos += 4 + usize::try_from(u32::from_le_bytes(len)).expect("fits");
        count += 1;
    }
    count
}

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else {
        eprintln!("{ENDPOINT_ENV} is not set: scripts/services.sh up dynamodb");
        return Ok(());
    };
    let args = Args::from_env();
    let appends = args.appends;
    let table = format!("streamstore_bench_{:08x}", rand::random::<u32>());
    let config = DynamoDbConfig::new(Some(&endpoint), &table)?;
    let store = Arc::new(DynamoDbStore::open(config.clone()).await?);
    let raw = Arc::new(Raw::new(&endpoint, &config));
    let payload = Bytes::from(vec![7u8; 100]);
    let one = vec![payload.clone()];

    // Warm-up: connections, the server's code paths.
    raw.appends("warm-raw", 50, &one).await;
    vs_raw::sequential(&*store, &StreamId::new("warm-adapter")?, 50, &one).await?;

    args.headline("dynamodb_vs_raw");
    // Alternated (`vs_raw::alternated`), so that moto's growing table, whose transactions copy
    // it, weighs on both sides too.
    let (adapter_single, raw_single) = vs_raw::alternated(
        2,
        async |round| {
            let id = StreamId::new(format!("single-{round}"))?;
            vs_raw::sequential(&*store, &id, appends, &one).await
        },
        async |round| {
            let t = Instant::now();
            raw.appends(&format!("raw-single-{round}"), appends, &one)
                .await;
            vs_raw::rate(appends as f64, t)
        },
    )
    .await?;
    vs_raw::line(
        "single",
        "appends/s",
        adapter_single,
        "raw transact",
        raw_single,
        1,
    );

    let per = args.per_task();
    let adapter_conc = vs_raw::adapter_concurrent(&store, per, &payload).await;
    let raw_conc = vs_raw::concurrent(per, |w| {
        let (raw, one) = (Arc::clone(&raw), one.clone());
        async move {
            raw.appends(&format!("raw-conc-{w}"), per, &one).await;
        }
    })
    .await;
    vs_raw::line(
        "concurrent16",
        "appends/s",
        adapter_conc,
        "raw transact",
        raw_conc,
        1,
    );

    // Replay: both sides hold the same items (one chunk per 100-record batch).
    let id = StreamId::new("replay")?;
    let batch = vec![payload.clone(); 100];
    vs_raw::fill(&*store, &id, args.replay_records, &batch).await?;
    let raw_stream = raw
        .appends("raw-replay", args.replay_records.div_ceil(100), &batch)
        .await;
    let (mut adapter_replay, mut raw_replay, mut raw_paged) = (0.0, 0.0, 0.0);
    for _ in 0..3 {
        let (from, r) = vs_raw::replay(&*store, &id, ReadOptions::default()).await?;
        adapter_replay += r / 3.0;
        let t = Instant::now();
        let got = raw.replay(&raw_stream).await;
        raw_replay += vs_raw::rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
        let t = Instant::now();
        let got = raw.replay_paged(&raw_stream, 1000).await;
        raw_paged += vs_raw::rate(got as f64, t) / 3.0;
        assert_eq!(
            got as u64, from,
            "both sides read the same number of records"
        );
    }
    vs_raw::line(
        "replay",
        "records/s",
        adapter_replay,
        "raw query",
        raw_replay,
        0,
    );
    vs_raw::line(
        "replay_paged",
        "records/s",
        adapter_replay,
        "raw 1000-record pages",
        raw_paged,
        0,
    );

    store.close().await?;
    drop(store);
    DynamoDbStore::destroy(&config).await
}
