//! What the `*_vs_raw` examples (`examples/{cassandra,mongodb,dynamodb}_vs_raw.rs`) share: their
//! arguments, the adapter's side of each comparison (sequential one-record appends, 16
//! concurrent appenders on streams of their own, a paged replay) and the way both sides are
//! timed and printed. Each example keeps only its raw driver's side.
//!
//! Every function here drives a [`StreamStore`] through its public API, as an application
//! would; the rates are operations per second of wall time.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use streamstore::{AppendOptions, ReadOptions, Result, StreamId, StreamStore};

/// Concurrent appenders of the `concurrent16` comparison, each on a stream of its own.
pub const TASKS: usize = 16;

/// The examples' arguments: `[appends] [records]`.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    /// Sequential appends per side and round (default 300); each concurrent task appends a
    /// quarter of it.
    pub appends: u64,
    /// Records of the replayed stream (default 10,000).
    pub replay_records: u64,
}

impl Args {
    /// From the command line (unparsable values take the default).
    pub fn from_env() -> Args {
        let mut args = std::env::args().skip(1);
        Args {
            appends: args.next().and_then(|a| a.parse().ok()).unwrap_or(300),
            replay_records: args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000),
        }
    }

    /// Appends per concurrent task.
    pub fn per_task(&self) -> u64 {
        self.appends / 4
    }

    /// The first line every example prints.
    pub fn headline(&self, example: &str) {
        println!(
            "{example}: {} sequential appends, {TASKS} x {} concurrent, replay of {}",
            self.appends,
            self.per_task(),
            self.replay_records
        );
    }
}

/// `ops` per second since `started`.
pub fn rate(ops: f64, started: Instant) -> f64 {
    ops / started.elapsed().as_secs_f64()
}

/// One comparison line: `  case:  adapter <a> unit   <raw_name> <raw>   ratio <a/raw>`, with
/// `decimals` digits after the point for the rates.
pub fn line(case: &str, unit: &str, adapter: f64, raw_name: &str, raw: f64, decimals: usize) {
    let label = format!("{case}:");
    println!(
        "  {label:<14} adapter {adapter:8.decimals$} {unit}   {raw_name} {raw:8.decimals$}   ratio {:.2}",
        adapter / raw
    );
}

/// `n` sequential appends of `records` to `id`, one call each; appends per second.
pub async fn sequential(
    store: &dyn StreamStore,
    id: &StreamId,
    n: u64,
    records: &[Bytes],
) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        store
            .append(id, records.to_vec(), AppendOptions::default())
            .await?;
    }
    Ok(rate(n as f64, t))
}

/// The adapter's and the raw side's rates of `rounds` alternated rounds (adapter, raw, adapter,
/// …), each averaged over the rounds, so that a slow phase of the shared machine hits both.
pub async fn alternated(
    rounds: usize,
    mut adapter: impl AsyncFnMut(usize) -> Result<f64>,
    mut raw: impl AsyncFnMut(usize) -> f64,
) -> Result<(f64, f64)> {
    let (mut a, mut r) = (0.0, 0.0);
    for round in 0..rounds {
        a += adapter(round).await? / rounds as f64;
        r += raw(round).await / rounds as f64;
    }
    Ok((a, r))
}

/// Runs `task(w)` for `w` in `0..TASKS` at once, each doing `per` operations; operations per
/// second over all of them. A task that panics fails the run.
pub async fn concurrent<F, Fut>(per: u64, task: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS).map(|w| tokio::spawn(task(w))).collect();
    for task in tasks {
        task.await.expect("concurrent task");
    }
    rate((TASKS as u64 * per) as f64, t)
}

/// The adapter side of `concurrent16`: task `w` appends `per` single records to `conc-{w}`.
pub async fn adapter_concurrent<S: StreamStore + 'static>(
    store: &Arc<S>,
    per: u64,
    record: &Bytes,
) -> f64 {
    concurrent(per, |w| {
        let (store, record) = (Arc::clone(store), record.clone());
        async move {
            let id = StreamId::new(format!("conc-{w}")).expect("id");
            for _ in 0..per {
                store
                    .append(&id, vec![record.clone()], AppendOptions::default())
                    .await
                    .expect("append");
            }
        }
    })
    .await
}

/// Appends `batch` to `id` until it holds at least `records` records.
pub async fn fill(
    store: &dyn StreamStore,
    id: &StreamId,
    records: u64,
    batch: &[Bytes],
) -> Result<()> {
    let mut written = 0;
    while written < records {
        store
            .append(id, batch.to_vec(), AppendOptions::default())
            .await?;
        written += batch.len() as u64;
    }
    Ok(())
}

/// Reads `id` from offset 0 to its end in pages of `page`; (records read, records per second).
pub async fn replay(
    store: &dyn StreamStore,
    id: &StreamId,
    page: ReadOptions,
) -> Result<(u64, f64)> {
    let t = Instant::now();
    let mut from = 0;
    loop {
        let got = store.read(id, from, page).await?;
        if got.records.is_empty() {
            break;
        }
        from = got.next_offset;
    }
    Ok((from, rate(from as f64, t)))
}
