//! Reads across buckets, paged by count and bytes.

use super::*;
use streamstore::implementor::{ErrorShorthand, ReadBatchParts};

impl Core {
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
            let Some((loc, h)) = self.live(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let mut batch = h.engine(loc, None, 0)?.empty_read(from)?;
            if from >= h.next {
                return Ok(batch);
            }
            let mut end = h.next.min(from.saturating_add(max_records));
            let Some(buckets) = self.buckets_from(stream, loc, &h, from).await? else {
                continue;
            };
            // The head's byte count covers every record the read can return: if it fits the
            // budget, the budget cannot cut the page; otherwise the lengths decide first.
            if h.bytes > max_bytes {
                let lens = self
                    .lens(stream, loc.inc, &buckets, from, end, end - from)
                    .await?;
                let mut total = 0u64;
                let mut fit = 0u64;
                for (_, len) in &lens {
                    total = total.saturating_add(*len);
                    if total > max_bytes && fit > 0 {
                        break;
                    }
                    fit += 1;
                }
                end = from + fit.max(1);
            }
            let mut records = Vec::new();
            for (i, &(bucket, base)) in buckets.iter().enumerate() {
                let hi = buckets.get(i + 1).map_or(end, |b| b.1).min(end);
                let lo = base.max(from);
                if lo >= hi {
                    continue;
                }
                let n = i32::try_from(hi - lo).unwrap_or(i32::MAX);
                let qr = self
                    .exec(
                        &self.st.records,
                        (stream.as_str(), loc.inc, bucket, db(lo)?, db(hi)?, n),
                    )
                    .await?;
                for (off, ts, payload) in rows::<(i64, Option<i64>, Option<Vec<u8>>)>(qr)? {
                    records.push(Record {
                        offset: un(off)?,
                        timestamp_ms: un(ts.unwrap_or(0))?,
                        payload: Bytes::from(payload.unwrap_or_default()),
                    });
                }
            }
            // Every record below the head's `next` was written before the head was read, so
            // only a trim or delete in between can leave a hole: read again.
            if u64::try_from(records.len()).ok() == Some(end - from)
                && batch.take_contiguous(records)
            {
                return Ok(batch);
            }
        }
        Err(Error::kept_changing(stream))
    }
}
