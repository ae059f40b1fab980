//! Conveniences built only on the core [`StreamStore`] methods.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{Error, ErrorKind, Result};
use crate::store::StreamStore;
use crate::types::{AppendOptions, AppendResult, Incarnation, ReadOptions, Record, StreamId};

/// Options of [`StreamStoreExt::subscribe`]: 256 records per read, each read waiting up to 5 s,
/// every record (not only durable ones) by default.
///
/// ```
/// use std::time::Duration;
/// use streamkeep::SubscribeOptions;
/// let options = SubscribeOptions::default().batch(64).poll(Duration::from_secs(1));
/// assert_eq!(options.batch, 64);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug)]
pub struct SubscribeOptions {
    /// Records fetched per read (at least 1; default 256).
    pub batch: usize,
    /// How long each underlying read waits before it reads again (default 5 s). A subscription
    /// itself never times out, and learns of new records, a seal or a delete at once whatever
    /// this is; a shorter poll only bounds how stale a missed wake-up can make it.
    pub poll: Duration,
    /// Deliver only durable records ([`ReadOptions::durable`]; default `false`).
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

impl SubscribeOptions {
    /// Records fetched per read (at least 1; default 256).
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// How long each underlying read waits (default 5 s).
    #[must_use]
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Only durable records (default `false`).
    #[must_use]
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }
}

/// Conveniences over every [`StreamStore`]: a bare store (`LocalStore`, `dyn StreamStore`) and
/// an `Arc` of one. Do not implement it; it is implemented for all of them.
///
/// As on [`StreamStore`], rustdoc shows `append_one` desugared by `async_trait`; it reads as
/// `async fn append_one(&self, stream: &StreamId, payload: Bytes, options: AppendOptions) ->
/// Result<AppendResult>`.
#[async_trait]
pub trait StreamStoreExt {
    /// What [`subscribe`](Self::subscribe) returns: a `futures::Stream` of records. On an `Arc`
    /// it owns a clone of the `Arc` (`'static`, can be moved to another task); on a bare store it
    /// borrows the store.
    type Subscription<'a>: futures::Stream<Item = Result<Record>> + Send + Unpin + 'a
    where
        Self: 'a;

    /// Appends one record with `options` (an expectation, an idempotency key; use
    /// `AppendOptions::default()` for none). The same as [`StreamStore::append`] with a batch of
    /// one.
    async fn append_one(
        &self,
        stream: &StreamId,
        payload: Bytes,
        options: AppendOptions,
    ) -> Result<AppendResult>;

    /// Follows `stream` from `from`: every record in order, then new ones as they are appended,
    /// until the stream is sealed and fully delivered (the stream then ends).
    ///
    /// A stream that does not exist yet is waited for when `from` is 0. If the stream is deleted
    /// or re-created (its incarnation changes), the subscription yields a `NotFound` error and
    /// ends, at once (not after a poll): the offsets it would deliver belong to another life of
    /// the stream. A subscription from an offset above 0 of a stream that does not exist ends the
    /// same way. `Trimmed` and other errors are yielded once and end the subscription.
    fn subscribe<'a>(
        &'a self,
        stream: &StreamId,
        from: u64,
        options: SubscribeOptions,
    ) -> Self::Subscription<'a>;
}

#[async_trait]
impl<S: StreamStore + ?Sized> StreamStoreExt for S {
    type Subscription<'a>
        = BoxStream<'a, Result<Record>>
    where
        Self: 'a;

    async fn append_one(
        &self,
        stream: &StreamId,
        payload: Bytes,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        self.append(stream, vec![payload], options).await
    }

    fn subscribe<'a>(
        &'a self,
        stream: &StreamId,
        from: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'a, Result<Record>> {
        follow(self, stream, from, options)
    }
}

#[async_trait]
impl<S: StreamStore + ?Sized> StreamStoreExt for Arc<S> {
    type Subscription<'a>
        = BoxStream<'static, Result<Record>>
    where
        Self: 'a;

    async fn append_one(
        &self,
        stream: &StreamId,
        payload: Bytes,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        self.append(stream, vec![payload], options).await
    }

    fn subscribe(
        &self,
        stream: &StreamId,
        from: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Record>> {
        follow(Arc::clone(self), stream, from, options)
    }
}

/// What a subscription knows between reads.
struct Follow<H> {
    store: H,
    stream: StreamId,
    next: u64,
    incarnation: Option<Incarnation>,
    buffered: std::vec::IntoIter<Record>,
    done: bool,
    options: SubscribeOptions,
}

/// The subscription loop over any handle to a store (`&S` or `Arc<S>`).
fn follow<'a, S, H>(
    store: H,
    stream: &StreamId,
    from: u64,
    options: SubscribeOptions,
) -> BoxStream<'a, Result<Record>>
where
    S: StreamStore + ?Sized,
    H: std::ops::Deref<Target = S> + Send + 'a,
{
    let state = Follow {
        store,
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
            // The incarnation followed makes the read return at once when the stream is
            // deleted or re-created, instead of after `poll`.
            let opts = ReadOptions::limit(st.options.batch.max(1))
                .wait(st.options.poll)
                .set_durable(st.options.durable)
                .incarnation(st.incarnation);
            let batch = match st.store.read(&st.stream, st.next, opts).await {
                Ok(b) => b,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            let changed = match (st.incarnation, batch.incarnation) {
                (None, Some(i)) => {
                    st.incarnation = Some(i);
                    false
                }
                (Some(seen), now) => now != Some(seen),
                // Not created yet: waiting for it is only meaningful from offset 0.
                (None, None) => batch.is_gone(),
            };
            if changed {
                st.done = true;
                let e = Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "stream {:?} was deleted or re-created; offset {} belongs to a life of it that is over",
                        st.stream, st.next
                    ),
                );
                return Some((Err(e), st));
            }
            st.next = batch.next_offset;
            if batch.is_finished() {
                st.done = true;
            }
            st.buffered = batch.records.into_iter();
        }
    }))
}
