//! H. Waiting reads at scale: a thousand readers, each on its own stream, none of them missing
//! its wake-up while the writes that wake them come from another store object.

use std::sync::Arc;
use std::time::Duration;

use streamstore::{ReadOptions, StreamId, StreamStore};
use tokio::task::JoinHandle;

use crate::case::{case_list, Case, Failure, Outcome};
use crate::ensure_eq;
use crate::support::{put, texts, Ctx};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("waits";
        thousand_waiters_miss_no_wakeup[ThousandWaiters],
    )
}

/// Waiting readers, one per stream.
const THOUSAND: usize = 1000;
/// Concurrent writers.
const WRITERS: usize = 16;
/// Each wait's timeout: a reader that missed its wake-up sleeps this long, far past [`PROMPT`].
const LONG: Duration = Duration::from_secs(30);
/// Every reader must have seen everything this soon after the last write. Generous for polling
/// adapters on a loaded machine (their tick is well under a second), far below [`LONG`].
const PROMPT: Duration = Duration::from_secs(5);

/// Aborts the tasks still running when dropped: the readers of a failed or timed-out case must
/// not go on reading (or polling through their store's watcher) during the next cases.
struct Tasks<T>(Vec<JoinHandle<T>>);

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// [`THOUSAND`] readers wait on streams that do not exist yet, on a store of the case's own;
/// [`WRITERS`] writers on a second store object over the same data (another process, as far as
/// the implementation can tell; the same object where the factory cannot open a second one)
/// create every stream with one append, all starting together so that arms, first reads,
/// commits and re-arms interleave. Every reader must see its record, and all within [`PROMPT`]
/// of the last append: a missed wake-up would leave its reader asleep for [`LONG`]. One write
/// per stream keeps the case short on slow test servers (moto copies its table per
/// transaction); the SQL adapters' own tests add a seal storm. Both stores are closed at the end
/// and no reader outlives the case.
async fn thousand_waiters_miss_no_wakeup(ctx: &Ctx) -> Outcome {
    let (readers, writers, distinct) = ctx.open_own_pair().await?;
    let outcome = wake_every_reader(ctx, &readers, &writers).await;
    let closed = readers.close().await;
    if distinct {
        writers.close().await?;
    }
    outcome?;
    Ok(closed?)
}

async fn wake_every_reader(
    ctx: &Ctx,
    readers: &Arc<dyn StreamStore>,
    writers: &Arc<dyn StreamStore>,
) -> Outcome {
    let ids: Vec<StreamId> = (0..THOUSAND).map(|i| ctx.id(&format!("w{i}"))).collect();
    let mut reading = Tasks(
        ids.iter()
            .map(|id| tokio::spawn(read_to_the_end(Arc::clone(readers), id.clone())))
            .collect(),
    );
    let mut writing = Tasks(
        (0..WRITERS)
            .map(|w| {
                let (store, ids) = (Arc::clone(writers), ids.clone());
                tokio::spawn(async move {
                    let mine: Vec<&StreamId> = ids.iter().skip(w).step_by(WRITERS).collect();
                    for id in &mine {
                        put(&store, id, &["r0"]).await?;
                    }
                    Ok::<_, Failure>(())
                })
            })
            .collect(),
    );
    for w in writing.0.iter_mut() {
        w.await.map_err(join)??;
    }
    let deadline = tokio::time::Instant::now() + PROMPT;
    for (i, r) in reading.0.iter_mut().enumerate() {
        let Ok(joined) = tokio::time::timeout_at(deadline, r).await else {
            return Err(Failure(format!(
                "reader {i} was still waiting {PROMPT:?} after the last append: a missed wake-up"
            )));
        };
        ensure_eq!(joined.map_err(join)??, vec!["r0"]);
    }
    Ok(())
}

/// Reads `id` from its start with waiting reads until a record came; returns what it read.
async fn read_to_the_end(
    store: Arc<dyn StreamStore>,
    id: StreamId,
) -> Result<Vec<String>, Failure> {
    // A reader wakes for its stream's first head read (then reads nothing and waits again) and
    // for the append: three reads at most; a read that waits out LONG is caught by the
    // caller's deadline long before the loop ends.
    for _ in 0..8 {
        let batch = store
            .read(&id, 0, ReadOptions::limit(100).wait(LONG))
            .await?;
        if !batch.records.is_empty() {
            return Ok(texts(&batch.records));
        }
    }
    Err(Failure(format!("{id:?} saw no record in 8 waiting reads")))
}

fn join(e: tokio::task::JoinError) -> Failure {
    Failure(format!("a task panicked: {e}"))
}
