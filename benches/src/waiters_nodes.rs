//! `streamstore-waiters nodes W[,W…] [SHARDS]`: PostgreSQL notifications across three "nodes".
//!
//! Three reader store objects (three nodes, as far as PostgreSQL can tell) wait on disjoint
//! thirds of W streams (stream `i` on node `i mod 3`, so the split ignores the shards), one
//! waiting reader per stream; a fourth store object appends 500 times a second for 10 s to
//! uniformly random streams, counting the appends to each node's streams. Prints, per node, the notifications its listener received during the
//! writes against the appends made, and the channels it listens on; and the records the readers
//! received against the appends (every append must reach its reader). `SHARDS` sets the tables'
//! `notify_shards` (default: the adapter's; 1 is a single channel, as before sharding).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamstore::{AppendOptions, ReadOptions, StreamId, StreamStore};
use streamstore_postgres::PostgresStore;

use super::{BoxError, PACED_FOR, PACED_RATE, WRITERS};

const NODES: usize = 3;

/// Loops waiting reads on `id`, counting the records received, until aborted.
async fn count_reads(store: Arc<PostgresStore>, id: StreamId, records: Arc<AtomicU64>) {
    let mut next = 1;
    loop {
        let wait = ReadOptions::limit(256).wait(Duration::from_secs(30));
        let Ok(batch) = store.read(&id, next, wait).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        records.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        next = batch.next_offset;
    }
}

/// Appends from [`WRITERS`] tasks, [`PACED_RATE`] a second in total for [`PACED_FOR`], each to
/// a uniformly random stream; returns the appends made to the streams of each node.
async fn paced_appends(writer: &Arc<dyn StreamStore>, ids: &Arc<Vec<StreamId>>) -> Vec<u64> {
    let end = Instant::now() + PACED_FOR;
    let per_task = Duration::from_secs_f64(WRITERS as f64 / PACED_RATE as f64);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, ids) = (Arc::clone(writer), Arc::clone(ids));
            tokio::spawn(async move {
                let mut made = vec![0u64; NODES];
                let mut next = tokio::time::Instant::now();
                while Instant::now() < end {
                    next += per_task;
                    tokio::time::sleep_until(next).await;
                    let i = rand::random::<usize>() % ids.len();
                    let one = vec![Bytes::from_static(b"x")];
                    if store
                        .append(&ids[i], one, AppendOptions::default())
                        .await
                        .is_ok()
                    {
                        made[i % NODES] += 1;
                    }
                }
                made
            })
        })
        .collect();
    let mut made = vec![0u64; NODES];
    for t in tasks {
        if let Ok(m) = t.await {
            for (total, n) in made.iter_mut().zip(m) {
                *total += n;
            }
        }
    }
    made
}

/// One run with `w` streams; `shards` goes into the URL as `notify_shards`.
pub(crate) async fn run(url: &str, w: usize, shards: Option<u32>) -> Result<(), BoxError> {
    let url = match shards {
        Some(s) if url.contains('?') => format!("{url}&notify_shards={s}"),
        Some(s) => format!("{url}?notify_shards={s}"),
        None => url.to_owned(),
    };
    let prefix = format!("wn{}_{w}_", std::process::id() % 100_000);
    let writer: Arc<dyn StreamStore> = Arc::new(PostgresStore::connect(&url, &prefix).await?);
    let ids: Arc<Vec<StreamId>> = Arc::new(
        (0..w)
            .map(|i| StreamId::new(format!("node/{i}")))
            .collect::<streamstore::Result<_>>()?,
    );
    let seeds: Vec<_> = (0..WRITERS)
        .map(|k| {
            let (store, ids) = (Arc::clone(&writer), Arc::clone(&ids));
            tokio::spawn(async move {
                for id in ids.iter().skip(k).step_by(WRITERS) {
                    let seed = vec![Bytes::from_static(b"seed")];
                    store.append(id, seed, AppendOptions::default()).await?;
                }
                Ok::<_, streamstore::Error>(())
            })
        })
        .collect();
    for s in seeds {
        s.await??;
    }
    let mut nodes = Vec::new();
    let mut readers = Vec::new();
    let records = Arc::new(AtomicU64::new(0));
    for n in 0..NODES {
        let node = Arc::new(PostgresStore::connect(&url, &prefix).await?);
        for id in ids.iter().skip(n).step_by(NODES) {
            let task = count_reads(Arc::clone(&node), id.clone(), Arc::clone(&records));
            readers.push(tokio::spawn(task));
        }
        nodes.push(node);
    }
    // Every reader armed, every first head read done and its shard listened to.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before: Vec<u64> = nodes.iter().map(|n| n.notification_stats().0).collect();
    let records_before = records.load(Ordering::Relaxed);
    let made = paced_appends(&writer, &ids).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let appends: u64 = made.iter().sum();
    let shards = shards.map_or("default".to_owned(), |s| s.to_string());
    for (n, node) in nodes.iter().enumerate() {
        let (received, channels) = node.notification_stats();
        let got = received - before[n];
        println!(
            "result postgres nodes W={w} shards={shards} node {n}: {got} notifications received for {appends} appends ({:.1} %; appends to its own streams: {:.1} %), listening on {channels} channels",
            100.0 * got as f64 / appends.max(1) as f64,
            100.0 * made[n] as f64 / appends.max(1) as f64
        );
    }
    let seen = records.load(Ordering::Relaxed) - records_before;
    println!(
        "result postgres nodes W={w} shards={shards} records received by the readers {seen} of {appends} appended"
    );
    for r in &readers {
        r.abort();
    }
    for node in nodes {
        node.close().await?;
    }
    writer.close().await?;
    PostgresStore::destroy(&url, &prefix).await?;
    Ok(())
}
