//! Seal, trim, retention and delete: conditional changes of the head, then cleanup.

use super::*;
use streamstore::implementor::ErrorShorthand;

impl Core {
    pub(crate) async fn seal(&self, stream: &StreamId) -> Result<(StreamInfo, bool)> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            if h.sealed.is_some() {
                return Ok((h.info(stream, loc)?, false));
            }
            let mut next = h.clone();
            next.ver += 1;
            next.sealed = Some(now_ms());
            if self.update_head(stream, loc, &h, &next).await? {
                return Ok((next.info(stream, loc)?, true));
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    pub(crate) async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            let target = before.min(h.next).max(h.first);
            if target <= h.first {
                return Ok(h.first);
            }
            if self.trim_to(stream, loc, &h, target).await? {
                return Ok(target);
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Raises the head's first offset to `target` (conditional on `h.ver`), then removes the
    /// records below it: whole older buckets' records, a range in the bucket holding `target`.
    /// A crash after the head update leaves unreadable records behind, removed by the next trim.
    pub(super) async fn trim_to(
        &self,
        stream: &StreamId,
        loc: Loc,
        h: &Head,
        target: u64,
    ) -> Result<bool> {
        let Some(buckets) = self.buckets_from(stream, loc, h, h.first).await? else {
            return Ok(false);
        };
        let lens = self
            .lens(stream, loc.inc, &buckets, h.first, target, target - h.first)
            .await?;
        let removed: u64 = lens.iter().map(|(_, l)| l).sum();
        let mut next = h.clone();
        next.ver += 1;
        next.first = target;
        next.bytes = h.bytes.saturating_sub(removed);
        if !self.update_head(stream, loc, h, &next).await? {
            return Ok(false);
        }
        for (i, &(bucket, _)) in buckets.iter().enumerate() {
            let end = buckets.get(i + 1).map_or(u64::MAX, |b| b.1);
            if end <= target {
                self.exec(&self.st.body_delete, (stream.as_str(), loc.inc, bucket))
                    .await?;
            } else {
                self.exec(
                    &self.st.records_delete_below,
                    (stream.as_str(), loc.inc, bucket, db(target)?),
                )
                .await?;
                break;
            }
        }
        Ok(true)
    }

    /// Trims the oldest records while the stream holds more than `retention.max_bytes`, never
    /// the newest record.
    pub(crate) async fn enforce_max_bytes(&self, stream: &StreamId) -> Result<()> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Ok(());
            };
            let Some(max) = h.retention.max_bytes.filter(|_| h.must_trim()) else {
                return Ok(());
            };
            let newest = h.next - 1;
            let Some(buckets) = self.buckets_from(stream, loc, &h, h.first).await? else {
                continue;
            };
            let lens = self
                .lens(stream, loc.inc, &buckets, h.first, newest, newest - h.first)
                .await?;
            let need = h.bytes - max;
            let mut acc = 0u64;
            let mut cut = newest;
            for (off, len) in lens {
                acc += len;
                if acc >= need {
                    cut = off + 1;
                    break;
                }
            }
            if self.trim_to(stream, loc, &h, cut.min(newest)).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    pub(crate) async fn set_retention(
        &self,
        stream: &StreamId,
        retention: Retention,
    ) -> Result<()> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((loc, h)) = self.live_for_write(stream).await? else {
                return Err(Error::not_found(stream));
            };
            // Marked before the head changes: a mark on a stream without a time rule costs
            // the sweeper one head read, a missing mark would leave the stream to reads.
            let timed =
                retention.delete_after_seal.is_some() || retention.delete_after_idle.is_some();
            if timed {
                self.exec(&self.st.name_timed, (true, shard(stream), stream.as_str()))
                    .await?;
            }
            let mut next = h.clone();
            next.ver += 1;
            next.retention = retention;
            if self.update_head(stream, loc, &h, &next).await? {
                return self.enforce_max_bytes(stream).await;
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Deletes the stream; returns whether a live (unexpired) stream was deleted.
    pub(crate) async fn delete(&self, stream: &StreamId) -> Result<bool> {
        for attempt in 0..MAX_ATTEMPTS {
            self.check_open()?;
            match self.state(stream, true).await? {
                State::Missing | State::NoHead(_) => return Ok(false),
                State::Deleted(loc, at) => {
                    self.finish_delete(stream, loc, at).await?;
                    return Ok(false);
                }
                State::RollPending(loc, h) => self.finish_roll(stream, loc, &h).await?,
                State::Live(loc, h) => {
                    let expired = h.expired(now_ms());
                    if self.close_deleted(stream, loc, &h).await? {
                        return Ok(!expired);
                    }
                }
            }
            backoff(attempt).await;
        }
        Err(unavailable(format!("stream {stream:?} kept changing")))
    }

    /// Closes the head as deleted (the delete's linearization point), then finishes.
    pub(super) async fn close_deleted(
        &self,
        stream: &StreamId,
        loc: Loc,
        h: &Head,
    ) -> Result<bool> {
        let mut closed = h.clone();
        closed.ver += 1;
        closed.closed = DELETED;
        closed.closed_at = Some(now_micros());
        if !self.update_head(stream, loc, h, &closed).await? {
            return Ok(false);
        }
        self.finish_delete(stream, loc, closed.closed_at.unwrap_or(0))
            .await?;
        Ok(true)
    }

    /// The steps after closing the head at `closed_at` (µs): the name goes, with the delete's
    /// timestamp, so that it never removes the name of a later incarnation (written after the
    /// `streams` row went, hence later, with the writers' clocks in sync), whoever repairs
    /// it; then the `streams` row (conditional on the incarnation), then the records and keys
    /// of every bucket. A crash in between leaves a closed head that the next writer finds;
    /// leftover records are unreachable.
    pub(super) async fn finish_delete(
        &self,
        stream: &StreamId,
        loc: Loc,
        closed_at: i64,
    ) -> Result<()> {
        self.exec(
            &self.st.name_delete,
            (closed_at, shard(stream), stream.as_str()),
        )
        .await?;
        self.exec(&self.st.stream_delete, (stream.as_str(), loc.inc))
            .await?;
        let mut bucket = Some(loc.bucket);
        while let Some(b) = bucket {
            let l = Loc {
                inc: loc.inc,
                bucket: b,
            };
            let h = self.head(stream, l).await?;
            self.exec(&self.st.body_delete, (stream.as_str(), loc.inc, b))
                .await?;
            bucket = h.and_then(|h| h.prev);
        }
        Ok(())
    }
}
