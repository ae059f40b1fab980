//! Conveniences built only on the core [`StreamStore`] methods.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{Error, ErrorKind, Result};
use crate::store::StreamStore;
use crate::types::{AppendOptions, AppendResult, Incarnation, ReadOptions, Record, StreamId};

/// Options of [`StreamStoreExt::subscribe`].
#[derive(Clone, Copy, Debug)]
pub struct SubscribeOptions {
    /// Records fetched per read.
    pub batch: usize,
    /// How long each underlying read waits before it polls again (a subscription itself never
    /// times out).
    pub poll: Duration,
    /// Deliver only durable records ([`ReadOptions::durable`]).
    pub durable: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            batch: 256,
            poll: Duration::from_secs(5),
            durable: false,
        }
    }
}

/// Conveniences over any [`StreamStore`]. Implemented for every store; do not implement it.
#[async_trait]
pub trait StreamStoreExt {
    /// Appends one record with default options.
    async fn append_one(&self, stream: &StreamId, payload: Bytes) -> Result<AppendResult>;

    /// Follows `stream` from `from`: every record in order, then new ones as they are appended,
    /// until the stream is sealed and fully delivered (the stream then ends).
    ///
    /// A stream that does not exist yet is waited for. If the stream is deleted or re-created
    /// (its incarnation changes) the subscription yields a `NotFound` error and ends, because the
    /// offsets it would deliver belong to another life of the stream. `Trimmed` and other errors
    /// are yielded once and end the subscription.
    fn subscribe(
        &self,
        stream: &StreamId,
        from: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Record>>;
}

struct Follow<S: ?Sized> {
    store: Arc<S>,
    stream: StreamId,
    next: u64,
    incarnation: Option<Incarnation>,
    buffered: std::vec::IntoIter<Record>,
    done: bool,
    options: SubscribeOptions,
}

#[async_trait]
impl<S: StreamStore + ?Sized> StreamStoreExt for Arc<S> {
    async fn append_one(&self, stream: &StreamId, payload: Bytes) -> Result<AppendResult> {
        self.append(stream, vec![payload], AppendOptions::default())
            .await
    }

    fn subscribe(
        &self,
        stream: &StreamId,
        from: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Record>> {
        let state = Follow {
            store: Arc::clone(self),
            stream: stream.clone(),
            next: from,
            incarnation: None,
            buffered: Vec::new().into_iter(),
            done: false,
            options,
        };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(r) = st.buffered.next() {
                    return Some((Ok(r), st));
                }
                if st.done {
                    return None;
                }
                let mut opts = ReadOptions::limit(st.options.batch.max(1)).wait(st.options.poll);
                opts.durable = st.options.durable;
                let batch = match st.store.read(&st.stream, st.next, opts).await {
                    Ok(b) => b,
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                };
                match (st.incarnation, batch.incarnation) {
                    (None, Some(i)) => st.incarnation = Some(i),
                    (Some(seen), now) if now != Some(seen) => {
                        st.done = true;
                        let e = Error::new(
                            ErrorKind::NotFound,
                            format!("stream {:?} was deleted or re-created", st.stream),
                        );
                        return Some((Err(e), st));
                    }
                    _ => {}
                }
                st.next = batch.next_offset;
                if batch.is_finished() {
                    st.done = true;
                }
                st.buffered = batch.records.into_iter();
            }
        }))
    }
}
