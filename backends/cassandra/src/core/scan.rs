//! Info, list, the retention sweeper's scan and the watcher's marks.

use super::*;
use streamstore::implementor::{ErrorShorthand, ListPageParts};

impl Core {
    pub(crate) async fn info(&self, stream: &StreamId) -> Result<StreamInfo> {
        match self.live(stream).await? {
            Some((loc, h)) => h.info(stream, loc),
            None => Err(Error::not_found(stream)),
        }
    }

    pub(super) async fn names_page(
        &self,
        after: Option<&str>,
        prefix: &str,
        fetch: i32,
    ) -> Result<(Vec<String>, bool)> {
        let mut all = Vec::new();
        let mut more = false;
        for s in 0..NAME_SHARDS {
            let qr = match after {
                Some(a) if a >= prefix => self.exec(&self.st.names_after, (s, a, fetch)).await?,
                _ => self.exec(&self.st.names_from, (s, prefix, fetch)).await?,
            };
            let got: Vec<(String,)> = rows(qr)?;
            more |= i32::try_from(got.len()).unwrap_or(i32::MAX) >= fetch;
            all.extend(got.into_iter().map(|(s,)| s));
        }
        all.sort_unstable();
        all.dedup();
        let keep = usize::try_from(fetch).unwrap_or(usize::MAX);
        if all.len() > keep {
            all.truncate(keep);
            more = true;
        }
        Ok((all, more))
    }

    pub(crate) async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let limit = options.page_size();
        let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
        let mut after = options.after.as_ref().map(|a| a.as_str().to_owned());
        let mut found = Vec::new();
        loop {
            let (names, more) = self
                .names_page(after.as_deref(), &options.prefix, fetch)
                .await?;
            let in_prefix: Vec<String> = names
                .into_iter()
                .take_while(|n| n.starts_with(&options.prefix))
                .collect();
            let ended = in_prefix.len() < usize::try_from(fetch).unwrap_or(usize::MAX) && !more
                || in_prefix.is_empty();
            let last = in_prefix.last().cloned();
            let live: Vec<Option<StreamId>> = stream::iter(in_prefix)
                .map(|name| async move {
                    let id = StreamId::new(&name)?;
                    Ok::<_, Error>(self.live(&id).await?.map(|_| id))
                })
                .buffered(LIST_CONCURRENCY)
                .try_collect()
                .await?;
            for id in live.into_iter().flatten() {
                if found.len() <= limit {
                    found.push(id);
                }
            }
            if found.len() > limit || ended {
                break;
            }
            after = last;
        }
        Ok(ListPage::from_fetched(found, limit))
    }

    /// Deletes every stream whose time-based retention expired; returns how many.
    pub(crate) async fn sweep_once(&self) -> Result<usize> {
        let now = now_ms();
        let mut deleted = 0;
        for s in 0..NAME_SHARDS {
            // Paged (5000 rows a page): a shard may hold many names.
            let mut names = self
                .session
                .execute_iter(self.st.names_timed.clone(), (s,))
                .await
                .map_err(|e| unavailable("the names scan failed").with_source(e))?
                .rows_stream::<(String, Option<bool>)>()
                .map_err(|e| decode_error(&e))?;
            while let Some((name, timed)) = names
                .try_next()
                .await
                .map_err(|e| unavailable("the names scan failed").with_source(e))?
            {
                if timed != Some(true) {
                    continue;
                }
                let Ok(id) = StreamId::new(&name) else {
                    continue;
                };
                if let State::Live(loc, h) = self.state(&id, true).await? {
                    // Waiting readers notice through the watcher (the stream's mark is gone).
                    if h.expired(now) && self.close_deleted(&id, loc, &h).await? {
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }
}
