//! Reads: the live head, then the chunks of the page it covers.

use streamstore::implementor::{ErrorShorthand, ReadBatchParts};
use streamstore::{Error, ReadBatch, ReadOptions, Record, Result, StreamId};

use crate::backend::Core;
use crate::model::{be, parse_chunk, records_pk, Head, Item};

/// Reads repeated when a trim or delete changed the stream between its head and its records.
const MAX_READ_ATTEMPTS: u32 = 8;

/// A read's page being filled from chunks.
struct Page {
    from: u64,
    end: u64,
    max_bytes: u64,
    out: Vec<Record>,
    bytes: u64,
}

impl Page {
    /// Takes the records of `items` in `from..end` within the byte budget (always at least
    /// one); `true` once the page is full.
    fn take(&mut self, items: &[Item]) -> Result<bool> {
        for item in items {
            let chunk = parse_chunk(item)?;
            for (offset, payload) in chunk.records {
                if offset < self.from {
                    continue;
                }
                let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
                if offset >= self.end || (!self.out.is_empty() && self.bytes + len > self.max_bytes)
                {
                    return Ok(true);
                }
                self.bytes += len;
                self.out.push(Record {
                    offset,
                    timestamp_ms: chunk.timestamp_ms,
                    payload,
                });
            }
        }
        Ok(false)
    }
}

impl Core {
    /// Records `from..end` of `h`'s incarnation, in order, as stored (a trim or delete running
    /// meanwhile may leave a hole; the caller checks). A chunk's sort key is its last offset, so
    /// the chunks ending in `from..end` are exactly the ones needed whole or in part, read by
    /// one bounded `Query` (no chunk past the page is transferred); only when the page ends
    /// inside a batch does the chunk holding its end take one more, one-item `Query`.
    async fn records(
        &self,
        stream: &StreamId,
        h: &Head,
        from: u64,
        end: u64,
        max_bytes: u64,
    ) -> Result<Vec<Record>> {
        let pk = records_pk(h.head.incarnation, stream);
        // Each chunk holds at least one record: never more chunks than records are needed.
        let limit = i32::try_from((end - from).clamp(1, 100)).unwrap_or(100);
        let mut page = Page {
            from,
            end,
            max_bytes,
            out: Vec::new(),
            bytes: 0,
        };
        let mut start = None;
        loop {
            let bounds = (&be(from)[..], &be(end - 1)[..]);
            let (items, next) = self.db.page_between(&pk, bounds, limit, start).await?;
            if page.take(&items)? {
                return Ok(page.out);
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        let reached = page.out.last().map_or(from, |r| r.offset + 1);
        if reached < end {
            // The chunk holding `reached..end` ends at or after `end`: the first one that does.
            let (items, _) = self.db.page_from(&pk, &be(end), 1, None).await?;
            page.take(&items)?;
        }
        Ok(page.out)
    }

    /// One read without waiting: the live head, then the records it covers.
    pub(crate) async fn read_now(
        &self,
        stream: &StreamId,
        from: u64,
        options: &ReadOptions,
    ) -> Result<ReadBatch> {
        let max_records = u64::try_from(options.max_records).unwrap_or(u64::MAX);
        let max_bytes = u64::try_from(options.max_bytes).unwrap_or(u64::MAX);
        for _ in 0..MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Some(h) = self.live_head(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let mut batch = h.head.empty_read(from)?;
            if from >= h.head.next_offset {
                return Ok(batch);
            }
            // Clipped to the head: records appended after it was read wait for the next read.
            let end = h.head.next_offset.min(from.saturating_add(max_records));
            let records = self.records(stream, &h, from, end, max_bytes).await?;
            if batch.take_contiguous(records) {
                return Ok(batch);
            }
        }
        Err(Error::kept_changing(stream))
    }
}
