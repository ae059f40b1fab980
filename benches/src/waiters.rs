//! `streamstore-waiters`: W waiting readers on one store object of a database adapter, writers on
//! a second one (another process, as far as the database can tell), for issue 19.
//!
//! Per adapter (PostgreSQL, MySQL, and with their features MongoDB, DynamoDB and Cassandra, each
//! when its `STREAMSTORE_*` variable is set; `STREAMSTORE_WAITERS_ONLY=a,b` picks some; the NoSQL
//! adapters with a 100 ms watcher tick) and per W, in
//! this order: appends/s of 32 writers without waiters; then W readers, one per stream, each
//! looping `read(next, limit(256).wait(30 s))`; the watcher's head reads per second while nothing
//! is written; wake latency under 500 appends/s (from the start of the append call to the reader
//! holding the record); appends/s of the 32 writers with the waiters; a seal of every stream (how
//! long until every reader saw its stream finished). Before the paced phase, appends/s on W other
//! streams nobody waits on, the readers parked (what parked waiters cost, without wake-ups); and
//! after the seals the same once the readers are gone. Prints one `result` line per
//! measurement and `ratio <db>_w<W>_appends_with_waiters: <x>` lines (against the first window
//! without readers, and against the mean of it and the one after the readers left).
//!
//! During the paced phase, the server's floor: a probe on a third store object times `info()`
//! of a stream nobody writes to every 15 ms (`probe_info_ms`), and the steps of a wake-up are
//! timed where the store offers them (`Watcher::timings`: `pass_interval`, `change_read`,
//! `pass`; Cassandra's `woken_reread`, `hint_read_narrow`, `hint_read_wide`), each printed as
//! p50 / p90 / p99 / max.
//!
//! ```sh
//! cargo run --release -p streamstore-bench --bin streamstore-waiters -- 1000,10000
//! cargo run --release -p streamstore-bench --bin streamstore-waiters -- nodes 1000,10000 [SHARDS]
//! ```
//!
//! The `nodes` mode (PostgreSQL only, `waiters_nodes.rs`) counts the notifications each of
//! three reader store objects receives while they wait on disjoint thirds of the streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use streamstore::implementor::wait::{Timings, Watcher};
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};

#[path = "waiters_nodes.rs"]
mod nodes;

type Store = Arc<dyn StreamStore>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The re-read batcher's counters of a SQL store object (reads answered, reads with prefetched
/// records, heads statements, records statements); `None` for adapters without one.
type Rereads = Arc<dyn Fn() -> Option<[u64; 4]> + Send + Sync>;

/// No re-read batcher.
#[cfg(any(feature = "mongodb", feature = "dynamodb", feature = "cassandra"))]
fn no_rereads() -> Rereads {
    Arc::new(|| None)
}

const WRITERS: usize = 32;
const PACED_RATE: u64 = 500;
const PACED_FOR: Duration = Duration::from_secs(10);
const MAX_FOR: Duration = Duration::from_secs(5);
const IDLE_FOR: Duration = Duration::from_secs(5);
/// How often the probe times a statement during the paced phase (about 67 statements/s
/// beside the 500 appends/s and their wake-ups).
const PROBE_EVERY: Duration = Duration::from_millis(15);

/// What the readers share.
struct Readers {
    /// Latencies from the start of the append call to the reader holding the record, in
    /// microseconds, recorded while `recording`.
    latencies: Mutex<Histogram<u64>>,
    /// While `recording`: when each (stream index, offset) reached its reader.
    received: Mutex<HashMap<(usize, u64), Instant>>,
    /// While `recording`: when the append of each (stream index, offset) returned.
    acked: Mutex<HashMap<(usize, u64), Instant>>,
    recording: AtomicBool,
    finished: AtomicU64,
    /// The benchmark's clock origin: payloads carry nanoseconds since it.
    origin: Instant,
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The watcher tick of the polling adapters (MySQL's and PostgreSQL's are their defaults, set
/// from the URL): issue 19's goal is wake p99 <= tick + 20 ms with a 100 ms tick.
#[cfg(any(feature = "mongodb", feature = "dynamodb", feature = "cassandra"))]
const NOSQL_TICK: Duration = Duration::from_millis(100);

/// A store's own step timings beyond its watcher's (`CassandraStore::timings`), by name.
type StoreTimings = Vec<(&'static str, Arc<Timings>)>;

/// A store object as the harness opens it: the store, its watcher, its re-read counters (the
/// SQL adapters') and its own step timings (Cassandra's).
struct Opened {
    store: Store,
    watcher: Arc<Watcher>,
    rereads: Rereads,
    timings: StoreTimings,
}

/// The SQL adapters' re-read counters, as [`Rereads`] reads them.
macro_rules! sql_rereads {
    ($s:expr) => {{
        let c = Arc::clone(&$s);
        let rereads: Rereads = Arc::new(move || {
            let r = c.reread_stats();
            Some([
                r.reads,
                r.records_prefetched,
                r.head_statements,
                r.records_statements,
            ])
        });
        rereads
    }};
}

async fn open(db: &str, url: &str, prefix: &str) -> Result<Opened, BoxError> {
    let none = StoreTimings::new;
    let (store, watcher, rereads, timings): (Store, _, _, _) = match db {
        "postgres" => {
            let s = Arc::new(streamstore_postgres::PostgresStore::connect(url, prefix).await?);
            let (w, r) = (s.watcher(), sql_rereads!(s));
            (s, w, r, none())
        }
        "mysql" => {
            let s = Arc::new(streamstore_mysql::MysqlStore::connect(url, prefix).await?);
            let (w, r) = (s.watcher(), sql_rereads!(s));
            (s, w, r, none())
        }
        #[cfg(feature = "mongodb")]
        "mongodb" => {
            let mut c = streamstore_mongodb::MongoConfig::from_url(url)?.with_prefix(prefix)?;
            c.poll_interval = NOSQL_TICK;
            let s = streamstore_mongodb::MongoStore::open(c).await?;
            let w = s.watcher();
            (Arc::new(s), w, no_rereads(), none())
        }
        #[cfg(feature = "dynamodb")]
        "dynamodb" => {
            let mut c = streamstore_dynamodb::DynamoDbConfig::new(Some(url), prefix)?;
            c.poll_interval = NOSQL_TICK;
            let s = streamstore_dynamodb::DynamoDbStore::open(c).await?;
            let w = s.watcher();
            (Arc::new(s), w, no_rereads(), none())
        }
        #[cfg(feature = "cassandra")]
        "cassandra" => {
            let mut c = streamstore_cassandra::CassandraConfig::new(url, "streamstore_bench")?
                .with_prefix(prefix)?;
            c.poll_interval = NOSQL_TICK;
            let s = streamstore_cassandra::CassandraStore::open(c).await?;
            let (w, t) = (s.watcher(), s.timings());
            (Arc::new(s), w, no_rereads(), t)
        }
        other => return Err(format!("unknown adapter {other}").into()),
    };
    Ok(Opened {
        store,
        watcher,
        rereads,
        timings,
    })
}

async fn destroy(db: &str, url: &str, prefix: &str) -> Result<(), BoxError> {
    match db {
        "postgres" => streamstore_postgres::PostgresStore::destroy(url, prefix).await?,
        "mysql" => streamstore_mysql::MysqlStore::destroy(url, prefix).await?,
        #[cfg(feature = "mongodb")]
        "mongodb" => streamstore_mongodb::MongoStore::destroy(url, prefix).await?,
        #[cfg(feature = "dynamodb")]
        "dynamodb" => {
            let c = streamstore_dynamodb::DynamoDbConfig::new(Some(url), prefix)?;
            streamstore_dynamodb::DynamoDbStore::destroy(&c).await?;
        }
        #[cfg(feature = "cassandra")]
        "cassandra" => {
            let c = streamstore_cassandra::CassandraConfig::new(url, "streamstore_bench")?
                .with_prefix(prefix)?;
            streamstore_cassandra::CassandraStore::destroy(c).await?;
        }
        other => return Err(format!("unknown adapter {other}").into()),
    }
    Ok(())
}

/// Appends from [`WRITERS`] tasks to random streams of `ids` for `length`, at `rate` appends/s
/// in total if given, else as fast as they go; returns appends/s.
async fn write(
    store: &Store,
    ids: &Arc<Vec<StreamId>>,
    rate: Option<u64>,
    length: Duration,
    shared: Option<Arc<Readers>>,
    origin: Instant,
) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + length;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, ids, count) = (Arc::clone(store), Arc::clone(ids), Arc::clone(&count));
            let shared = shared.clone();
            tokio::spawn(async move {
                let per_task = rate.map(|r| Duration::from_secs_f64(WRITERS as f64 / r as f64));
                let mut next = tokio::time::Instant::now();
                // A 64-bit LCG (Knuth's MMIX constants: full period) and its high bits, so
                // every stream is picked about as often. The LCG reduced modulo W used before
                // (multiplier 1103515245, divisible by 5) settled within a few steps on the
                // same 16 streams at W = 10,000 and 8 at W = 1,000, for every writer.
                let mut state = u64::try_from(w)
                    .unwrap_or(0)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let len = u64::try_from(ids.len()).unwrap_or(u64::MAX);
                while Instant::now() < end {
                    if let Some(p) = per_task {
                        next += p;
                        tokio::time::sleep_until(next).await;
                    }
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let i = usize::try_from((state >> 33) % len).unwrap_or(0);
                    let payload = Bytes::from(nanos_since(origin).to_le_bytes().to_vec());
                    if let Ok(r) = store
                        .append(&ids[i], vec![payload], AppendOptions::default())
                        .await
                    {
                        let at = Instant::now();
                        if let Some(shared) = &shared {
                            let mut acked = shared.acked.lock().unwrap_or_else(|e| e.into_inner());
                            acked.insert((i, r.first_offset), at);
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / length.as_secs_f64()
}

/// The watcher's and the re-read batcher's counters at the start of a phase.
struct Counted {
    watch: streamstore::implementor::wait::WatchStats,
    rereads: Option<[u64; 4]>,
}

impl Counted {
    fn now(watcher: &Watcher, rereads: &Rereads) -> Self {
        Counted {
            watch: watcher.stats(),
            rereads: rereads(),
        }
    }

    /// Prints what the reader store object did since `self`, per second of `length`: the
    /// watcher's change reads, streams read, wakes and full passes; the batched reads and their
    /// statements.
    fn print(
        &self,
        db: &str,
        w: usize,
        phase: &str,
        watcher: &Watcher,
        rereads: &Rereads,
        length: Duration,
    ) {
        let (a, b, s) = (self.watch, watcher.stats(), length.as_secs_f64());
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / s;
        let mut line = format!(
            "counters {db} W={w} {phase}: watcher reads/s {:.1} (change reads {:.1}), streams read/s {:.0}, wakes/s {:.0}, full passes {}, reads spared by memos/s {:.0}",
            per(a.reads, b.reads),
            per(a.change_reads, b.change_reads),
            per(a.streams_read, b.streams_read),
            per(a.wakes, b.wakes),
            b.full_passes.saturating_sub(a.full_passes),
            per(a.spared_reads, b.spared_reads),
        );
        if let (Some(x), Some(y)) = (self.rereads, rereads()) {
            line += &format!(
                "; batched reads/s {:.0} (with records {:.0}), heads statements/s {:.1}, records statements/s {:.1}",
                per(x[0], y[0]),
                per(x[1], y[1]),
                per(x[2], y[2]),
                per(x[3], y[3]),
            );
        }
        println!("{line}");
    }
}

async fn reader(store: Store, index: usize, id: StreamId, shared: Arc<Readers>) {
    let mut next = 0;
    loop {
        let Ok(batch) = store
            .read(
                &id,
                next,
                ReadOptions::limit(256).wait(Duration::from_secs(30)),
            )
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (now, at) = (nanos_since(shared.origin), Instant::now());
        if shared.recording.load(Ordering::Relaxed) {
            let mut received = shared.received.lock().unwrap_or_else(|e| e.into_inner());
            for r in &batch.records {
                received.insert((index, r.offset), at);
            }
            drop(received);
            let mut h = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
            for r in &batch.records {
                let sent = r
                    .payload
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(now, u64::from_le_bytes);
                let _ = h.record(now.saturating_sub(sent) / 1000);
            }
        }
        next = batch.next_offset;
        if batch.is_finished() {
            shared.finished.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// The server's floor while the paced phase runs: `info()` of `id` (a stream nobody writes to
/// then; one statement on Cassandra once the head's location is known) on a store object of
/// its own, every [`PROBE_EVERY`] until `stop`, timed from the call to the answer (on the
/// same runtime as the readers, so the time includes waiting for a worker, as their re-reads
/// do). Returns the latencies and the number of errors.
async fn probe(store: Store, id: StreamId, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        let started = Instant::now();
        match store.info(&id).await {
            Ok(_) => samples.push(started.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (samples, errors)
}

/// Prints p50 / p90 / p99 / max of `samples`, as `result <db> W=<w> <name>_ms …`.
fn print_ms(db: &str, w: usize, name: &str, h: &Histogram<u64>, note: &str) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "result {db} W={w} {name}_ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} (n={}{note})",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0,
        h.len()
    );
}

/// `samples` as a histogram of microseconds.
fn histogram(samples: &[Duration]) -> Result<Histogram<u64>, BoxError> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for d in samples {
        h.record(
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, 60_000_000),
        )?;
    }
    Ok(h)
}

async fn run(db: &str, url: &str, w: usize) -> Result<(), BoxError> {
    let prefix = format!("wb{}_{w}_", std::process::id() % 100_000);
    let writer = open(db, url, &prefix).await?.store;
    let Opened {
        store: readers_store,
        watcher,
        rereads,
        timings: store_timings,
    } = open(db, url, &prefix).await?;
    // A third store object for the probe: its statements queue behind nobody's.
    let prober = open(db, url, &prefix).await?.store;
    // The watcher's step timings and the readers' store's own, enabled for the paced phase.
    let timings: Vec<(&'static str, Arc<Timings>)> =
        watcher.timings().into_iter().chain(store_timings).collect();
    let origin = Instant::now();
    let ids: Arc<Vec<StreamId>> = Arc::new(
        (0..w)
            .map(|i| StreamId::new(format!("wait/{i}")))
            .collect::<streamstore::Result<_>>()?,
    );
    // As many streams nobody waits on: appends to them measure what parked waiters cost the
    // writers, apart from the re-reads that wake-ups cause.
    let quiet: Arc<Vec<StreamId>> = Arc::new(
        (0..w)
            .map(|i| StreamId::new(format!("quiet/{i}")))
            .collect::<streamstore::Result<_>>()?,
    );
    // Every stream exists (one record) before the readers come.
    let both: Arc<Vec<StreamId>> = Arc::new(ids.iter().chain(quiet.iter()).cloned().collect());
    let chunks: Vec<_> = (0..WRITERS)
        .map(|k| {
            let (store, ids) = (Arc::clone(&writer), Arc::clone(&both));
            tokio::spawn(async move {
                for id in ids.iter().skip(k).step_by(WRITERS) {
                    store
                        .append(
                            id,
                            vec![Bytes::from_static(b"seed")],
                            AppendOptions::default(),
                        )
                        .await?;
                }
                Ok::<_, streamstore::Error>(())
            })
        })
        .collect();
    for c in chunks {
        c.await??;
    }
    let without = write(&writer, &ids, None, MAX_FOR, None, origin).await;
    println!("result {db} W={w} appends_per_s_without_waiters {without:.0}");

    let shared = Arc::new(Readers {
        latencies: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        received: Mutex::new(HashMap::new()),
        acked: Mutex::new(HashMap::new()),
        recording: AtomicBool::new(false),
        finished: AtomicU64::new(0),
        origin,
    });
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            tokio::spawn(reader(
                Arc::clone(&readers_store),
                i,
                id.clone(),
                Arc::clone(&shared),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let before = watcher.stats();
    tokio::time::sleep(IDLE_FOR).await;
    let after = watcher.stats();
    println!(
        "result {db} W={w} idle_head_reads_per_s {:.1} (streams per read {:.0}; plus the retention sweeper's 1 statement/s per store)",
        (after.reads - before.reads) as f64 / IDLE_FOR.as_secs_f64(),
        (after.streams_read - before.streams_read) as f64 / (after.reads - before.reads).max(1) as f64,
    );

    // The same writers on W streams nobody waits on, the W readers parked: the waiters' own
    // cost (the watcher's reads), without any wake-up's re-read. Here, before any reader was
    // woken and well before their first 30 s waits end (a timed-out wait reads again: 10,000
    // of them at once would be a re-read storm of their own).
    let counted = Counted::now(&watcher, &rereads);
    let parked = write(&writer, &quiet, None, MAX_FOR, None, origin).await;
    println!("result {db} W={w} appends_per_s_beside_parked_waiters {parked:.0}");
    counted.print(db, w, "parked", &watcher, &rereads, MAX_FOR);

    shared.recording.store(true, Ordering::SeqCst);
    for (_, t) in &timings {
        let _ = t.take();
        t.enable(true);
    }
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probing = tokio::spawn(probe(
        Arc::clone(&prober),
        quiet[0].clone(),
        Arc::clone(&probe_stop),
    ));
    let paced = write(
        &writer,
        &ids,
        Some(PACED_RATE),
        PACED_FOR,
        Some(Arc::clone(&shared)),
        origin,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared.recording.store(false, Ordering::SeqCst);
    probe_stop.store(true, Ordering::Relaxed);
    for (_, t) in &timings {
        t.enable(false);
    }
    let (probed, probe_errors) = probing.await?;
    // The floor: what one cheap statement of a store object nobody else uses took meanwhile.
    print_ms(
        db,
        w,
        "probe_info",
        &histogram(&probed)?,
        &format!(
            ", every {} ms, errors {probe_errors}",
            PROBE_EVERY.as_millis()
        ),
    );
    for (name, t) in &timings {
        let samples = t.take();
        if !samples.is_empty() {
            print_ms(db, w, name, &histogram(&samples)?, "");
        }
    }
    {
        let h = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "result {db} W={w} wake_from_append_start_ms p50 {:.1} p99 {:.1} max {:.1} (n={}, {paced:.0} appends/s)",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            h.len()
        );
        // From the append's return (its commit acknowledged) to the reader: the wake-up alone.
        let mut from_ack = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let received = shared.received.lock().unwrap_or_else(|e| e.into_inner());
        let acked = shared.acked.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing = 0;
        for (key, ack) in acked.iter() {
            match received.get(key) {
                Some(got) => {
                    let us = got.saturating_duration_since(*ack).as_micros();
                    from_ack.record(u64::try_from(us).unwrap_or(u64::MAX).max(1))?;
                }
                None => missing += 1,
            }
        }
        println!(
            "result {db} W={w} wake_after_commit_ms p50 {:.1} p99 {:.1} max {:.1} (n={}, not received: {missing})",
            from_ack.value_at_quantile(0.5) as f64 / 1000.0,
            from_ack.value_at_quantile(0.99) as f64 / 1000.0,
            from_ack.max() as f64 / 1000.0,
            from_ack.len()
        );
    }

    let counted = Counted::now(&watcher, &rereads);
    let with = write(&writer, &ids, None, MAX_FOR, None, origin).await;
    println!("result {db} W={w} appends_per_s_with_waiters {with:.0}");
    counted.print(db, w, "with", &watcher, &rereads, MAX_FOR);
    println!(
        "ratio {db}_w{w}_appends_with_waiters: {:.3}",
        with / without.max(1.0)
    );

    let sealing = Instant::now();
    let seals: Vec<_> = (0..WRITERS)
        .map(|k| {
            let (store, ids) = (Arc::clone(&writer), Arc::clone(&ids));
            tokio::spawn(async move {
                for id in ids.iter().skip(k).step_by(WRITERS) {
                    let _ = store.seal(id).await;
                }
            })
        })
        .collect();
    for s in seals {
        let _ = s.await;
    }
    let sealed = sealing.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.finished.load(Ordering::SeqCst) < w as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_seen = sealing.elapsed();
    println!(
        "result {db} W={w} seal_all: the seals took {:.2} s; the last reader saw its end {:.3} s after the last seal returned ({} of {w} readers did)",
        sealed.as_secs_f64(),
        all_seen.saturating_sub(sealed).as_secs_f64(),
        shared.finished.load(Ordering::SeqCst)
    );
    for t in tasks {
        t.abort();
    }
    readers_store.close().await?;
    // The quiet streams again, with no reader left (the tables have grown by the phases
    // between: if anything, this phase is the slower one).
    let after = write(&writer, &quiet, None, MAX_FOR, None, origin).await;
    println!("result {db} W={w} appends_per_s_after_readers_left {after:.0}");
    // The two windows without a reader bracket the one with waiters in time; two windows of
    // the same load 20 s apart differed by 10-30 % on this machine, so the ratio against their
    // mean is the steadier one.
    println!(
        "ratio {db}_w{w}_appends_with_waiters_vs_mean_without: {:.3}",
        with / ((without + after) / 2.0).max(1.0)
    );
    println!(
        "ratio {db}_w{w}_appends_beside_parked_waiters: {:.3}",
        parked / after.max(1.0)
    );
    writer.close().await?;
    prober.close().await?;
    destroy(db, url, &prefix).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let nodes_mode = args.first().is_some_and(|a| a == "nodes");
    if nodes_mode {
        args.remove(0);
    }
    let ws: Vec<usize> = args
        .first()
        .cloned()
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if nodes_mode {
        let shards = args.get(1).map(|s| s.parse::<u32>()).transpose()?;
        let url = std::env::var("STREAMSTORE_POSTGRES_URL")
            .map_err(|_| "nodes: STREAMSTORE_POSTGRES_URL is not set")?;
        for &w in &ws {
            nodes::run(&url, w, shards).await?;
        }
        return Ok(());
    }
    // STREAMSTORE_WAITERS_ONLY=mongodb,dynamodb picks adapters (default: every one whose
    // variable is set).
    let only = std::env::var("STREAMSTORE_WAITERS_ONLY").unwrap_or_default();
    for (db, env) in [
        ("postgres", "STREAMSTORE_POSTGRES_URL"),
        ("mysql", "STREAMSTORE_MYSQL_URL"),
        #[cfg(feature = "mongodb")]
        ("mongodb", "STREAMSTORE_MONGODB_URL"),
        #[cfg(feature = "dynamodb")]
        ("dynamodb", "STREAMSTORE_DYNAMODB_ENDPOINT"),
        #[cfg(feature = "cassandra")]
        ("cassandra", "STREAMSTORE_CASSANDRA_NODES"),
    ] {
        if !only.is_empty() && !only.split(',').any(|o| o == db) {
            continue;
        }
        let Ok(url) = std::env::var(env) else {
            println!("skipped {db}: {env} is not set");
            continue;
        };
        for &w in &ws {
            run(db, &url, w).await?;
        }
    }
    Ok(())
}
