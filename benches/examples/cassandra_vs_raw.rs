//! The Cassandra adapter against raw `scylla` statements doing the same work, side by side in
//! one run against the server of `$STREAMSTORE_CASSANDRA_NODES`:
//!
//! - `single`: sequential one-record appends to one stream. The adapter reads the `streams`
//!   row and the head, then sends one conditional batch; raw sends the same conditional batch
//!   (head `UPDATE … IF ver = ?` + record `INSERT`) with the head kept in memory, i.e. the
//!   least any correct conditional writer must do.
//! - `concurrent16`: 16 tasks, each appending one-record batches to its own stream.
//! - `replay`: reading a 10,000-record stream from offset 0 in pages of 1000 (raw: one paged
//!   `SELECT` of the partition).
//! - `lwt_vs_plain`: the price of Paxos alone: raw conditional batch vs a raw plain `INSERT` of
//!   the record.
//!
//! Prints operations per second and the ratios (adapter / raw; plain / LWT). The adapter's side
//! and the timing are `streamstore_bench::vs_raw`'s, shared with the other `*_vs_raw` examples.
//!
//! `cargo run --release -p streamstore-bench --example cassandra_vs_raw -- [appends] [records]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use streamstore::{ReadOptions, StreamId, StreamStore};
use streamstore_bench::vs_raw::{self, Args};
use streamstore_cassandra::{CassandraConfig, CassandraStore, NODES_ENV};

/// One stream's raw statements over the adapter's own tables (same schema, other stream ids).
struct Raw {
    session: Arc<Session>,
    head_insert: PreparedStatement,
    head_update: PreparedStatement,
    record: PreparedStatement,
    scan: PreparedStatement,
}

impl Raw {
    async fn new(session: Arc<Session>, table: &str) -> Raw {
        let prep = |cql: String, lwt: bool| {
            let session = Arc::clone(&session);
            async move {
                let mut ps = session.prepare(cql).await.expect("prepare");
                ps.set_consistency(Consistency::LocalQuorum);
                if lwt {
                    ps.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                }
                ps
            }
        };
        Raw {
            head_insert: prep(
                format!(
                    "INSERT INTO {table} (sid, inc, bucket, kind, off, key, ver, next, bytes, \
                     last_ts) VALUES (?, 1, 0, 0, 0, 0x00, 0, 0, 0, 0)"
                ),
                false,
            )
            .await,
            head_update: prep(
                format!(
                    "UPDATE {table} SET ver = ?, next = ?, last_ts = ?, bytes = ? WHERE sid = ? \
                     AND inc = 1 AND bucket = 0 AND kind = 0 AND off = 0 AND key = 0x00 IF ver = ?"
                ),
                true,
            )
            .await,
            record: prep(
                format!(
                    "INSERT INTO {table} (sid, inc, bucket, kind, off, key, ts, len, payload) \
                     VALUES (?, 1, 0, 2, ?, 0x00, ?, ?, ?)"
                ),
                false,
            )
            .await,
            scan: prep(
                format!(
                    "SELECT off, ts, payload FROM {table} WHERE sid = ? AND inc = 1 AND bucket = 0 \
                     AND kind = 2"
                ),
                false,
            )
            .await,
            session,
        }
    }

    /// `n` sequential conditional appends of one record to `sid` (created first).
    async fn lwt_appends(&self, sid: &str, n: i64, payload: &[u8]) {
        self.session
            .execute_unpaged(&self.head_insert, (sid,))
            .await
            .expect("head");
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        batch.append_statement(self.head_update.clone());
        batch.append_statement(self.record.clone());
        let len = i64::try_from(payload.len()).unwrap_or(0);
        for i in 0..n {
            let ts = 1_700_000_000_000i64 + i;
            let values = (
                (i + 1, i + 1, ts, (i + 1) * len, sid, i),
                (sid, i, ts, len, payload),
            );
            self.session.batch(&batch, values).await.expect("lwt batch");
        }
    }

    /// `n` sequential plain inserts of one record.
    async fn plain_appends(&self, sid: &str, n: i64, payload: &[u8]) {
        let len = i64::try_from(payload.len()).unwrap_or(0);
        for i in 0..n {
            self.session
                .execute_unpaged(
                    &self.record,
                    (sid, i, 1_700_000_000_000i64 + i, len, payload),
                )
                .await
                .expect("insert");
        }
    }

    async fn replay(&self, sid: &str) -> usize {
        let mut ps = self.scan.clone();
        ps.set_page_size(1000);
        let mut rows = self
            .session
            .execute_iter(ps, (sid,))
            .await
            .expect("scan")
            .rows_stream::<(i64, Option<i64>, Option<Vec<u8>>)>()
            .expect("types");
        let mut n = 0;
        while let Some(_row) = rows.try_next().await.expect("row") {
            n += 1;
        }
        n
    }
}

#[tokio::main]
async fn main() -> streamstore::Result<()> {
    let Ok(nodes) = std::env::var(NODES_ENV) else {
        eprintln!("{NODES_ENV} is not set: scripts/services.sh up cassandra");
        return Ok(());
    };
    let args = Args::from_env();
    let appends = i64::try_from(args.appends).unwrap_or(i64::MAX);
    let prefix = format!("bench_{:08x}_", rand::random::<u32>());
    let config = CassandraConfig::new(&nodes, "streamstore_bench")?.with_prefix(&prefix)?;
    let store = Arc::new(CassandraStore::open(config.clone()).await?);
    let session = Arc::new(
        scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&config.nodes)
            .build()
            .await
            .expect("raw session"),
    );
    let raw = Arc::new(Raw::new(session, &format!("streamstore_bench.{prefix}log")).await);
    let payload = vec![7u8; 100];
    let one = vec![Bytes::from(payload.clone())];
    let n = args.appends;

    // Warm-up: connections, prepared statements, the JIT.
    raw.lwt_appends("warm-raw", 50, &payload).await;
    vs_raw::sequential(&*store, &StreamId::new("warm-adapter")?, 50, &one).await?;

    args.headline("cassandra_vs_raw");
    let (adapter_single, raw_single) = vs_raw::alternated(
        2,
        async |round| {
            let id = StreamId::new(format!("single-{round}"))?;
            vs_raw::sequential(&*store, &id, n, &one).await
        },
        async |round| {
            let t = Instant::now();
            raw.lwt_appends(&format!("raw-single-{round}"), appends, &payload)
                .await;
            vs_raw::rate(n as f64, t)
        },
    )
    .await?;
    vs_raw::line(
        "single",
        "appends/s",
        adapter_single,
        "raw LWT",
        raw_single,
        1,
    );

    let per = args.per_task();
    let adapter_conc = vs_raw::adapter_concurrent(&store, per, &one[0]).await;
    let raw_conc = vs_raw::concurrent(per, |w| {
        let (raw, payload) = (Arc::clone(&raw), payload.clone());
        let per = i64::try_from(per).unwrap_or(i64::MAX);
        async move {
            raw.lwt_appends(&format!("raw-conc-{w}"), per, &payload)
                .await;
        }
    })
    .await;
    vs_raw::line(
        "concurrent16",
        "appends/s",
        adapter_conc,
        "raw LWT",
        raw_conc,
        1,
    );

    // Replay: both read the same records (the raw stream written with the same batches).
    let id = StreamId::new("replay")?;
    vs_raw::fill(
        &*store,
        &id,
        args.replay_records,
        &vec![one[0].clone(); 100],
    )
    .await?;
    raw.plain_appends(
        "raw-replay",
        i64::try_from(args.replay_records).unwrap_or(0),
        &payload,
    )
    .await;
    let (mut adapter_replay, mut raw_replay) = (0.0, 0.0);
    for _ in 0..3 {
        let (_, r) = vs_raw::replay(&*store, &id, ReadOptions::limit(1000)).await?;
        adapter_replay += r / 3.0;
        let t = Instant::now();
        let got = raw.replay("raw-replay").await;
        raw_replay += vs_raw::rate(got as f64, t) / 3.0;
    }
    vs_raw::line("replay", "records/s", adapter_replay, "raw", raw_replay, 0);

    let t = Instant::now();
    raw.lwt_appends("lwt-cost", appends, &payload).await;
    let lwt = vs_raw::rate(n as f64, t);
    let t = Instant::now();
    raw.plain_appends("plain-cost", appends, &payload).await;
    let plain = vs_raw::rate(n as f64, t);
    println!(
        "  lwt_vs_plain:  raw LWT {lwt:8.1} writes/s   raw plain {plain:8.1}   plain/LWT {:.2}",
        plain / lwt
    );

    store.close().await?;
    drop(store);
    CassandraStore::destroy(config).await
}
