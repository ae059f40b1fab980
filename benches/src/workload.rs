//! The workloads, written once against [`BenchBackend`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::backend::{BenchBackend, Result, StoreBackend};
use crate::stats::{rate, Latency};

/// What one measurement of one case produced.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Calls (appends, reads, syncs) measured.
    pub ops: u64,
    /// Records moved.
    pub records: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Wall time of the measured window.
    pub elapsed: Duration,
    /// Latency of each call.
    pub latency: Latency,
}

impl Sample {
    /// Records per second.
    pub fn records_per_sec(&self) -> f64 {
        rate(self.records, self.elapsed)
    }

    /// Payload bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        rate(self.bytes, self.elapsed)
    }
}

/// How appenders pick streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Appender `i` writes streams `i, i + A, i + 2A, …` in turn: every stream equally often.
    RoundRobin,
    /// A power law: stream `⌊n·u⁴⌋` for uniform `u`, so about half of the appends go to the
    /// lowest 6 % of the streams and stream 0 alone gets about 1/n^(1/4) of them.
    Skewed,
}

/// An append workload.
#[derive(Clone, Debug)]
pub struct AppendSpec {
    /// Number of streams written.
    pub streams: usize,
    /// Concurrent appenders (tasks), each waiting for its append's acknowledgement.
    pub appenders: usize,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// Records per append call.
    pub batch: usize,
    /// How appenders pick streams.
    pub spread: Spread,
    /// Not measured, to fill caches and reach a steady state.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// A pool of random payloads (so no peer gains from compressing repeated bytes).
pub fn payloads(record_bytes: usize, count: usize, seed: u64) -> Vec<Bytes> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut v = vec![0u8; record_bytes];
            rng.fill(&mut v[..]);
            Bytes::from(v)
        })
        .collect()
}

fn pick(
    spread: Spread,
    streams: usize,
    appender: usize,
    appenders: usize,
    k: usize,
    u: f64,
) -> usize {
    match spread {
        Spread::RoundRobin => (appender + k * appenders) % streams,
        Spread::Skewed => {
            let x = u.powi(4) * crate::stats::f(streams as u64);
            // NOTE: x is in [0, streams): the float to int conversion is the point.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "x is in [0, streams)"
            )]
            let i = x as usize;
            i.min(streams - 1)
        }
    }
}

/// Runs `spec` against `backend`: `appenders` tasks append in a loop; returns the measured window.
pub async fn run_appends(backend: Arc<dyn BenchBackend>, spec: &AppendSpec) -> Result<Sample> {
    let pool = Arc::new(payloads(spec.record_bytes, 64, 7));
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::with_capacity(spec.appenders);
    for a in 0..spec.appenders {
        let backend = Arc::clone(&backend);
        let pool = Arc::clone(&pool);
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(a as u64);
            let mut s = Sample::default();
            let mut last = measure_from;
            for k in 0.. {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let stream = pick(spec.spread, spec.streams, a, spec.appenders, k, rng.gen());
                let batch: Vec<Bytes> = (0..spec.batch)
                    .map(|i| pool[(k + i + a) % pool.len()].clone())
                    .collect();
                backend.append(stream, batch).await?;
                let t1 = Instant::now();
                if t0 >= measure_from {
                    s.latency.record(t1 - t0);
                    s.ops += 1;
                    s.records += spec.batch as u64;
                    s.bytes += (spec.batch * spec.record_bytes) as u64;
                    last = t1;
                }
            }
            s.elapsed = last.saturating_duration_since(measure_from);
            Ok::<_, crate::backend::BoxError>(s)
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        let s = t.await??;
        total.ops += s.ops;
        total.records += s.records;
        total.bytes += s.bytes;
        total.elapsed = total.elapsed.max(s.elapsed);
        total.latency.merge(&s.latency);
    }
    Ok(total)
}

/// Fills `streams` streams with `records_per_stream` records of `record_bytes` each (batches of
/// `batch`), using `appenders` concurrent writers. Not measured.
pub async fn fill(
    backend: Arc<dyn BenchBackend>,
    streams: usize,
    records_per_stream: usize,
    record_bytes: usize,
    batch: usize,
    appenders: usize,
) -> Result<()> {
    let pool = Arc::new(payloads(record_bytes, 64, 11));
    let mut tasks = Vec::new();
    for a in 0..appenders.min(streams) {
        let backend = Arc::clone(&backend);
        let pool = Arc::clone(&pool);
        tasks.push(tokio::spawn(async move {
            for stream in (a..streams).step_by(appenders) {
                let mut left = records_per_stream;
                let mut k = 0usize;
                while left > 0 {
                    let n = left.min(batch);
                    let recs: Vec<Bytes> =
                        (0..n).map(|i| pool[(k + i) % pool.len()].clone()).collect();
                    backend.append(stream, recs).await?;
                    left -= n;
                    k += n;
                }
            }
            Ok::<_, crate::backend::BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Reads `streams` streams from offset 0 to their end (`records_per_stream` each) with `readers`
/// concurrent readers, `max` records per call. Latency is per read call.
pub async fn run_replay(
    backend: Arc<dyn BenchBackend>,
    streams: usize,
    records_per_stream: u64,
    readers: usize,
    max: usize,
) -> Result<Sample> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..readers.min(streams) {
        let backend = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            for stream in (r..streams).step_by(readers) {
                let mut from = 0u64;
                while from < records_per_stream {
                    let t0 = Instant::now();
                    let (n, bytes) = backend.read(stream, from, max).await?;
                    s.latency.record(t0.elapsed());
                    if n == 0 {
                        return Err(format!("stream {stream} ended at {from}").into());
                    }
                    s.ops += 1;
                    s.records += n as u64;
                    s.bytes += bytes;
                    from += n as u64;
                }
            }
            Ok::<_, crate::backend::BoxError>(s)
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        let s = t.await??;
        total.ops += s.ops;
        total.records += s.records;
        total.bytes += s.bytes;
        total.latency.merge(&s.latency);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Tail latency: a reader waits at the end of a stream; the writer appends one record, notes the
/// instant the append is acknowledged, and the reader notes the instant its waiting read returns
/// with the record. The latency is (reader return − writer acknowledgement), clamped at 0 (the
/// reader may be woken before the writer's own task resumes). One append at a time, `n` times.
pub async fn run_tail(store: &StoreBackend, n: usize, record_bytes: usize) -> Result<Sample> {
    let store_arc = Arc::clone(store.store());
    let id = store.id(0)?.clone();
    let (tx, mut rx) = mpsc::channel::<Instant>(1);
    let reader_store = Arc::clone(&store_arc);
    let reader_id = id.clone();
    let reader = tokio::spawn(async move {
        let mut from = 0u64;
        for _ in 0..n {
            let opts = streamstore::ReadOptions::limit(1).wait(Duration::from_secs(10));
            loop {
                let b = reader_store.read(&reader_id, from, opts).await?;
                if let Some(last) = b.records.last() {
                    from = last.offset + 1;
                    break;
                }
            }
            let seen = Instant::now();
            if tx.send(seen).await.is_err() {
                break;
            }
        }
        Ok::<_, crate::backend::BoxError>(())
    });
    let payload = payloads(record_bytes, 1, 3).pop().unwrap_or_default();
    let mut s = Sample::default();
    let start = Instant::now();
    for _ in 0..n {
        // Give the reader time to start waiting: a read that finds the record already there
        // measures nothing about wake-up.
        tokio::time::sleep(Duration::from_micros(200)).await;
        store_arc
            .append(
                &id,
                vec![payload.clone()],
                streamstore::AppendOptions::default(),
            )
            .await?;
        let acked = Instant::now();
        let seen = rx.recv().await.ok_or("tail reader stopped")?;
        s.latency.record(seen.saturating_duration_since(acked));
        s.ops += 1;
        s.records += 1;
        s.bytes += record_bytes as u64;
    }
    s.elapsed = start.elapsed();
    reader.await??;
    Ok(s)
}
