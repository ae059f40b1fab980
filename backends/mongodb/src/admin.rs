//! State writes other than appends (seal, trim, retention, delete), `list`, and the
//! retention sweeper. Each write is the insert of one state-only entry (see `backend.rs`).

use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::{ErrorShorthand, ListPageParts};

use streamstore::implementor::validate::now_ms;
use streamstore::{
    Error, ErrorKind, ListOptions, ListPage, Result, Retention, StreamId, StreamInfo,
};

use crate::backend::{pause_or_fail, Inner, MAX_LOST_SLOTS, SWEEP_BATCH};
use crate::core::Inserted;
use crate::entry::{Entry, Kind};

impl Inner {
    /// The background sweeper: one sweep every `every` while the store is open.
    pub(crate) async fn sweep_loop(self: Arc<Self>, every: Duration) {
        let open = || self.check_open().is_ok();
        streamstore::implementor::wait::sweep_periodically(every, open, || self.sweep_once()).await;
    }

    /// Deletes streams whose retention deadline passed; returns how many.
    pub(crate) async fn sweep_once(&self) -> Result<usize> {
        let now = now_ms();
        let candidates = self.core.expiry_candidates(now, SWEEP_BATCH).await?;
        let mut deleted = 0;
        for stream in candidates {
            // A few rounds: each lost slot means another writer moved the stream on.
            for _ in 0..4 {
                let Some(last) = self.last_entry(&stream).await? else {
                    break;
                };
                let now = now_ms();
                if last.kind == Kind::Delete || last.live_head(now).is_some() {
                    self.core
                        .clear_stale_expiry(&stream, &last.slot.id(&stream), now)
                        .await?;
                    break;
                }
                let marker = Self::delete_entry(&last, now);
                if self
                    .insert_entry(&stream, &marker, &[], Some(&last))
                    .await?
                    == Inserted::Done
                {
                    deleted += 1;
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs a state-only write: `step` looks at the live last entry and returns the entry to
    /// insert (or `None`: nothing to change) and the answer. Lost slots and transient errors
    /// walk again and call `step` again.
    async fn write_state<T, F, Fut>(&self, stream: &StreamId, mut step: F) -> Result<T>
    where
        F: FnMut(Entry) -> Fut,
        Fut: std::future::Future<Output = Result<Option<(Option<Entry>, T)>>>,
    {
        let mut transient = 0u32;
        let mut lost = 0u32;
        loop {
            let Some(last) = self.live(stream).await? else {
                return Err(Error::not_found(stream));
            };
            let pred = last.clone();
            let (entry, answer) = match step(last).await {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    pause_or_fail(&mut transient, e).await?;
                    continue;
                }
            };
            let Some(entry) = entry else {
                return Ok(answer);
            };
            match self.insert_entry(stream, &entry, &[], Some(&pred)).await {
                Ok(Inserted::Done) => return Ok(answer),
                Ok(Inserted::Duplicate) => {
                    lost += 1;
                    if lost >= MAX_LOST_SLOTS {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "too many concurrent writers on this stream; try again",
                        ));
                    }
                }
                // The next walk shows whether the entry landed; every state write is
                // idempotent against its own result (sealing a sealed stream, trimming below
                // the first offset, setting the same retention).
                Err(e) => pause_or_fail(&mut transient, e).await?,
            }
        }
    }

    /// Seals `stream` (idempotent: a sealed stream answers its info).
    pub(crate) async fn seal(&self, stream: &StreamId) -> Result<StreamInfo> {
        let inner = self;
        inner
            .write_state(stream, |last| async move {
                if last.head.sealed_ms.is_some() {
                    return Ok(Some((None, last.head.info(stream))));
                }
                let now = now_ms();
                let mut e = Inner::meta_entry(&last, Kind::Seal, now);
                e.head.sealed_ms = Some(now);
                let info = e.head.info(stream);
                Ok(Some((Some(e), info)))
            })
            .await
    }

    /// Raises the first offset of `stream` to `before` (bounded by the rules of `trim_target`).
    pub(crate) async fn trim(&self, stream: &StreamId, before: u64) -> Result<u64> {
        let inner = self;
        inner
            .write_state(stream, |last| async move {
                let target = last.head.trim_target(before);
                let first = last.head.first_offset;
                if target <= first {
                    return Ok(Some((None, first)));
                }
                let g = last.slot.generation;
                let Some(sizes) = inner.sizes(stream, g, first, target).await? else {
                    return Ok(None);
                };
                let dropped: u64 = sizes.iter().sum();
                let mut e = Inner::meta_entry(&last, Kind::Meta, now_ms());
                e.head.first_offset = target;
                e.trimmed_bytes += dropped;
                e.head.bytes -= dropped;
                Ok(Some((Some(e), target)))
            })
            .await
    }

    /// Ends the generation of `stream` with a delete entry; `true` if it existed.
    pub(crate) async fn delete(&self, stream: &StreamId) -> Result<bool> {
        let inner = self;
        let mut transient = 0u32;
        let mut mine: Option<String> = None;
        loop {
            inner.check_open()?;
            let last = inner.last_entry(stream).await?;
            let Some(last) = last else {
                return Ok(false);
            };
            if last.kind == Kind::Delete {
                // Our own marker, if an attempt whose outcome was unknown landed.
                return Ok(mine.as_deref() == Some(last.claim.as_str()));
            }
            let now = now_ms();
            let existed = last.live_head(now).is_some();
            let marker = Inner::delete_entry(&last, now);
            mine = Some(marker.claim.clone());
            match inner.insert_entry(stream, &marker, &[], Some(&last)).await {
                // An expired stream was already gone as far as callers could see.
                Ok(Inserted::Done) => return Ok(existed),
                Ok(Inserted::Duplicate) => mine = None,
                Err(e) => pause_or_fail(&mut transient, e).await?,
            }
        }
    }

    /// Lists live streams in byte order of their ids.
    pub(crate) async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let inner = self;
        let limit = options.page_size();
        let prefix = options.prefix.as_str();
        let (mut from, mut exclusive) = match &options.after {
            Some(a) if a.as_str() >= prefix => (a.as_str().to_owned(), true),
            _ => (prefix.to_owned(), false),
        };
        let chunk = u64::try_from(limit)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(1024);
        let mut found = Vec::new();
        'pages: loop {
            let ids = inner.core.stream_ids(&from, exclusive, chunk).await?;
            let complete = u64::try_from(ids.len()).unwrap_or(u64::MAX) < chunk;
            for id in ids {
                if !id.as_str().starts_with(prefix) {
                    break 'pages;
                }
                if inner.live(&id).await?.is_some() {
                    found.push(id.clone());
                    if found.len() > limit {
                        break 'pages;
                    }
                }
                from = id.as_str().to_owned();
                exclusive = true;
            }
            if complete {
                break;
            }
        }
        Ok(ListPage::from_fetched(found, limit))
    }

    /// Replaces the retention policy of `stream` (applying `max_bytes` at once).
    pub(crate) async fn set_retention(
        &self,
        stream: &StreamId,
        retention: Retention,
    ) -> Result<()> {
        let inner = self;
        inner
            .write_state(stream, |last| async move {
                if last.head.retention == retention {
                    return Ok(Some((None, ())));
                }
                let mut e = Inner::meta_entry(&last, Kind::Meta, now_ms());
                e.head.retention = retention;
                if inner.apply_max_bytes(stream, &mut e, &[]).await?.is_none() {
                    return Ok(None);
                }
                Ok(Some((Some(e), ())))
            })
            .await
    }
}
