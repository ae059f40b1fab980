//! Appends: one conditional batch per append, and the resolution of ambiguous outcomes.

use super::*;

impl Core {
    /// Appends `records`; returns the result and whether this call wrote it (`false`: a
    /// duplicate of an earlier append with the same key).
    pub(crate) async fn append(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<(AppendResult, Written)> {
        // Written into the batch's first record: after an ambiguous failure, finding it there
        // proves that this very batch was applied.
        let batch_id: [u8; 16] = rand::random();
        let mut last_ambiguity: Option<Error> = None;
        for attempt in 0..MAX_ATTEMPTS {
            self.check_open()?;
            if attempt > 0 {
                backoff(attempt).await;
            }
            let now = now_ms();
            let (loc, head) = match self.state(stream, true).await? {
                State::Missing => {
                    // Decided before anything is created: an unmet expectation writes nothing.
                    StreamHead::decide(stream, None, expect, key, now)?;
                    self.create_stream_row(stream).await?;
                    continue;
                }
                State::Deleted(loc, at) => {
                    self.finish_delete(stream, loc, at).await?;
                    continue;
                }
                State::RollPending(loc, h) => {
                    self.finish_roll(stream, loc, &h).await?;
                    continue;
                }
                State::NoHead(loc) => (loc, None),
                State::Live(loc, h) if h.expired(now) => {
                    // Retention fired and the sweeper has not run yet: delete, then this
                    // append (if allowed) starts a new incarnation.
                    self.close_deleted(stream, loc, &h).await?;
                    continue;
                }
                State::Live(loc, h) => {
                    if h.sealed.is_none() && self.needs_roll(loc, &h)? {
                        self.roll(stream, loc, &h).await?;
                        continue;
                    }
                    (loc, Some(h))
                }
            };
            let found = match (&head, key) {
                (Some(_), Some((k, _))) => self.read_key(stream, loc, k).await?,
                _ => None,
            };
            let engine = head
                .as_ref()
                .map(|h| h.engine(loc, key.zip(found.as_ref()).map(|((k, _), r)| (k, r)), 1))
                .transpose()?;
            let (first_offset, timestamp_ms) =
                match StreamHead::decide(stream, engine.as_ref(), expect, key, now)? {
                    Decision::Duplicate(r) => return Ok((r, Written::Duplicate)),
                    Decision::Write {
                        first_offset,
                        timestamp_ms,
                        ..
                    } => (first_offset, timestamp_ms),
                };
            let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
            let result = AppendResult {
                first_offset,
                count,
                incarnation: loc.incarnation()?,
                timestamp_ms,
            };
            // `max_bytes` retention: the caller trims after the append.
            let written = if head.as_ref().is_some_and(|h| {
                h.retention
                    .max_bytes
                    .is_some_and(|max| h.bytes + bytes > max && result.next_offset() - h.first > 1)
            }) {
                Written::MustTrim
            } else {
                Written::Appended
            };
            let (batch, values) = self.append_batch(
                stream,
                loc,
                head.as_ref(),
                &result,
                records,
                bytes,
                key,
                &batch_id,
            )?;
            // The head's version after this batch, for its change hint (`hints.rs`).
            let ver = head.as_ref().map_or(0, |h| h.ver + 1);
            match self.send_batch(&batch, values).await {
                Ok(qr) => {
                    if applied(qr)? {
                        self.hint(stream, Some(marks::mark_at(loc, ver))).await;
                        return Ok((result, written));
                    }
                    // Lost a race (another append, a seal, a roll): decide again on the new head.
                }
                Err(e) if is_ambiguous(&e) => {
                    match self.resolve(stream, loc, first_offset, &batch_id).await {
                        Ok(true) => {
                            self.hint(stream, Some(marks::mark_at(loc, ver))).await;
                            return Ok((result, written));
                        }
                        // Definitely not applied. A Paxos timeout was answered by the server,
                        // so no copy of the request is still on its way: deciding again is
                        // safe. After a client-side timeout or a broken connection a copy
                        // might still arrive; its `IF ver = …` can then no longer hold once
                        // anything else is applied, but to never write twice without a key,
                        // only keyed appends (whose retry finds the key) try again.
                        Ok(false) if is_cas_timeout(&e) || key.is_some() => {
                            last_ambiguity = Some(parse_cassandra_error(e));
                        }
                        Ok(false) | Err(_) => return Err(parse_cassandra_error(e)),
                    }
                }
                Err(e) => return Err(parse_cassandra_error(e)),
            }
        }
        Err(last_ambiguity.unwrap_or_else(|| {
            unavailable(format!(
                "stream {stream:?}: too many concurrent appends, try again"
            ))
        }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_batch<'a>(
        &self,
        stream: &'a StreamId,
        loc: Loc,
        head: Option<&Head>,
        result: &AppendResult,
        records: &'a [Bytes],
        bytes: u64,
        key: Option<(&'a IdempotencyKey, u64)>,
        batch_id: &'a [u8; 16],
    ) -> Result<(Batch, Vec<Values<'a>>)> {
        let mut batch = self.lwt_batch()?;
        let mut values: Vec<Values<'a>> = Vec::with_capacity(records.len() + 2);
        let mut next = head
            .cloned()
            .unwrap_or_else(|| Head::new(result.timestamp_ms));
        next.next = result.next_offset();
        next.bytes += bytes;
        next.last_ts = result.timestamp_ms;
        match head {
            None => {
                batch.append_statement(self.st.head_insert.clone());
                values.push(Box::new(Self::head_insert_values(stream, loc, &next)?));
            }
            Some(h) => {
                next.ver = h.ver + 1;
                batch.append_statement(self.st.head_update.clone());
                values.push(Box::new(Self::head_update_values(
                    stream, loc, h.ver, &next,
                )?));
            }
        }
        if let Some((k, digest)) = key {
            let row = KeyRow {
                first: result.first_offset,
                count: result.count,
                ts: result.timestamp_ms,
                digest,
            };
            batch.append_statement(self.st.key_insert.clone());
            values.push(Box::new((
                stream.as_str(),
                loc.inc,
                loc.bucket,
                k.as_bytes(),
                db(row.first)?,
                db(row.count)?,
                db(row.ts)?,
                row.digest_db(),
            )));
        }
        let ts = db(result.timestamp_ms)?;
        for (i, (r, off)) in records.iter().zip(result.offsets()).enumerate() {
            batch.append_statement(self.st.record_insert.clone());
            let id: Option<&[u8]> = (i == 0).then_some(&batch_id[..]);
            values.push(Box::new((
                stream.as_str(),
                loc.inc,
                loc.bucket,
                db(off)?,
                ts,
                db(u64::try_from(r.len()).unwrap_or(u64::MAX))?,
                &r[..],
                id,
            )));
        }
        Ok((batch, values))
    }

    /// After an ambiguous failure: was the batch `batch_id` applied? A SERIAL read of its first
    /// record's row completes (or fences off) any Paxos round still in flight on the partition,
    /// so the answer is final. Retried briefly; an error means "unknown".
    pub(super) async fn resolve(
        &self,
        stream: &StreamId,
        loc: Loc,
        first: u64,
        batch_id: &[u8; 16],
    ) -> Result<bool> {
        let mut last = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let r = self
                .exec(
                    &self.st.record_batch_serial,
                    (stream.as_str(), loc.inc, loc.bucket, db(first)?),
                )
                .await;
            match r {
                Ok(qr) => {
                    let found: Vec<(Option<Vec<u8>>,)> = rows(qr)?;
                    return Ok(found
                        .first()
                        .and_then(|(b,)| b.as_deref())
                        .is_some_and(|b| b == batch_id));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| unavailable("could not resolve an ambiguous append")))
    }

    /// Creates the `streams` row (a new incarnation at bucket 0) if there is none. The name is
    /// written first, so a listed name may lack a stream (list checks) but never the reverse.
    pub(super) async fn create_stream_row(&self, stream: &StreamId) -> Result<()> {
        self.exec(
            &self.st.name_insert,
            (shard(stream), stream.as_str(), now_micros()),
        )
        .await?;
        let inc = loop {
            let v: i64 = rand::random();
            if v > 0 {
                break v;
            }
        };
        // Not applied: another writer created it first; the caller re-reads either way.
        applied(
            self.exec(&self.st.stream_insert, (stream.as_str(), inc))
                .await?,
        )?;
        Ok(())
    }
}
