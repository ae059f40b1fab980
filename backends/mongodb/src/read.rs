//! Reads: a stream's records from its data entries, by `_id` (see `core.rs`: a point read of
//! the entry holding the first offset, then at most one range query per read).

use streamstore::implementor::{ErrorShorthand, ReadBatchParts};
use streamstore::{Error, ReadBatch, ReadOptions, Record, Result, StreamId};

use crate::backend::{pause_or_fail, Inner, MAX_READ_ATTEMPTS};
use crate::entry::{records_of, sizes_of, Entry, Kind};
use crate::slot::Slot;

impl Inner {
    /// Record lengths of generation `g` of `stream` in `from..end`, oldest first, from the
    /// entries' `z` fields (never stripped). `None` if a record is missing (the chain moved on:
    /// the caller walks again).
    pub(crate) async fn sizes(
        &self,
        stream: &StreamId,
        g: u64,
        from: u64,
        end: u64,
    ) -> Result<Option<Vec<u64>>> {
        let mut out = Vec::new();
        if from >= end {
            return Ok(Some(out));
        }
        let Some(first) = self.core.data_holding(stream, g, from).await? else {
            return Ok(None);
        };
        let mut docs = vec![first];
        let first_entry = Entry::from_document(&docs[0])?;
        if first_entry.next_offset() < end {
            let more = self
                .core
                .data_range(
                    stream,
                    g,
                    (first_entry.next_offset(), end),
                    end - from,
                    false,
                )
                .await?;
            docs.extend(more);
        }
        let mut next = from;
        for d in &docs {
            let e = Entry::from_document(d)?;
            if e.slot.offset > next || e.next_offset() <= next {
                return Ok(None);
            }
            for (i, len) in sizes_of(d)?.into_iter().enumerate() {
                let off = e.slot.offset + u64::try_from(i).unwrap_or(u64::MAX);
                if off >= next && off < end {
                    out.push(len);
                    next = off + 1;
                }
            }
        }
        Ok((next == end).then_some(out))
    }

    /// Records of the generation of `head` from `from` up to `end` (exclusive) within the byte
    /// budget, read by `_id`: a point read of the entry at `from`, then (if more are needed) one
    /// range query. `None` if the payloads are gone (trimmed or deleted meanwhile).
    async fn records(
        &self,
        stream: &StreamId,
        g: u64,
        (from, end): (u64, u64),
        max_bytes: u64,
    ) -> Result<Option<Vec<Record>>> {
        let mut out: Vec<Record> = Vec::new();
        let mut used = 0u64;
        let mut next = from;
        let at = Slot {
            generation: g,
            offset: from,
            sub: 0,
        };
        let first = match self.core.document(stream, at).await? {
            Some(d) if d.get_str("t") == Ok(Kind::DATA) => Some(d),
            _ => self.core.data_holding(stream, g, from).await?,
        };
        let Some(first) = first else {
            return Ok(None);
        };
        let mut pending = vec![first];
        let mut full = false;
        loop {
            for d in &pending {
                let e = Entry::from_document(d)?;
                if e.slot.offset > next || e.next_offset() <= next {
                    return Ok(None);
                }
                let Some(recs) = records_of(d)? else {
                    return Ok(None);
                };
                for (i, payload) in recs.into_iter().enumerate() {
                    let off = e.slot.offset + u64::try_from(i).unwrap_or(u64::MAX);
                    if off < next {
                        continue;
                    }
                    let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
                    if off >= end || (!out.is_empty() && used + len > max_bytes) {
                        full = true;
                        break;
                    }
                    used += len;
                    out.push(Record {
                        offset: off,
                        timestamp_ms: e.ts,
                        payload,
                    });
                    next = off + 1;
                }
                if full {
                    break;
                }
            }
            if full || next >= end {
                return Ok(Some(out));
            }
            pending = self
                .core
                .data_range(stream, g, (next, end), end - next, true)
                .await?;
            if pending.is_empty() {
                return Ok(None);
            }
        }
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
        let mut tries = 0;
        let mut attempts = 0;
        while attempts < MAX_READ_ATTEMPTS {
            self.check_open()?;
            let Some(last) = self.live(stream).await? else {
                return Ok(ReadBatch::missing(from));
            };
            let h = &last.head;
            let mut batch = h.empty_read(from)?;
            if from >= h.next_offset {
                return Ok(batch);
            }
            let end = h.next_offset.min(from.saturating_add(max_records));
            match self
                .records(stream, last.slot.generation, (from, end), max_bytes)
                .await
            {
                Ok(Some(records)) if !records.is_empty() => {
                    batch.next_offset = from + u64::try_from(records.len()).unwrap_or(u64::MAX);
                    batch.records = records;
                    return Ok(batch);
                }
                // A trim or delete ran between the head and the records: read again (the new
                // head then reports `Trimmed` or the new incarnation).
                Ok(_) => attempts += 1,
                Err(e) => pause_or_fail(&mut tries, e).await?,
            }
        }
        Err(Error::kept_changing(stream))
    }
}
