//! Buckets: the crash-safe roll from one partition to the next, and walking the chain.

use super::*;

impl Core {
    pub(super) fn needs_roll(&self, loc: Loc, h: &Head) -> Result<bool> {
        Ok(db(h.next / self.config.bucket_size)? > loc.bucket)
    }

    /// Rolls the stream from bucket `loc.bucket` to `next / bucket_size`: (1) close the old
    /// head (the linearization point: no append can land in the old bucket after it), (2)
    /// write the new head with the recent keys, (3) move the `streams` hint. A crash after (1)
    /// or (2) leaves a state every writer repairs with [`Core::finish_roll`].
    pub(super) async fn roll(&self, stream: &StreamId, loc: Loc, h: &Head) -> Result<()> {
        let mut closed = h.clone();
        closed.ver += 1;
        closed.closed = ROLLED;
        closed.moved_to = Some(db(h.next / self.config.bucket_size)?);
        if !self.update_head(stream, loc, h, &closed).await? {
            return Ok(());
        }
        if self.roll_crash.load(Ordering::Acquire) == RollCrash::AfterClose.code() {
            return Err(unavailable("injected crash after closing the old bucket"));
        }
        self.finish_roll(stream, loc, &closed).await
    }

    /// Steps (2) and (3) of a roll whose old head `closed` (at `loc`) is already closed.
    /// Idempotent: the new head is inserted only if absent, the hint only moves forward.
    pub(crate) async fn finish_roll(
        &self,
        stream: &StreamId,
        loc: Loc,
        closed: &Head,
    ) -> Result<()> {
        let Some(nb) = closed.moved_to else {
            return Ok(());
        };
        let new_loc = Loc {
            inc: loc.inc,
            bucket: nb,
        };
        let qr = self
            .exec(&self.st.keys_all, (stream.as_str(), loc.inc, loc.bucket))
            .await?;
        type KeyColumns = (
            Option<Vec<u8>>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let mut keys: Vec<(Vec<u8>, KeyRow)> = Vec::new();
        for (k, a, b, c, d) in rows::<KeyColumns>(qr)? {
            if let Some(k) = k {
                keys.push((k, KeyRow::from_columns((a, b, c, d))?));
            }
        }
        // The most recent keys move on: the window keeps at least `keys_per_stream`.
        keys.sort_by_key(|k| std::cmp::Reverse(k.1.first));
        keys.truncate(self.key_window());
        let head = Head {
            ver: 0,
            base: closed.next,
            closed: OPEN,
            moved_to: None,
            prev: Some(loc.bucket),
            ..closed.clone()
        };
        let mut batch = self.lwt_batch()?;
        let mut values: Vec<Values<'_>> = Vec::with_capacity(keys.len() + 1);
        batch.append_statement(self.st.head_insert.clone());
        values.push(Box::new(Self::head_insert_values(stream, new_loc, &head)?));
        for (k, row) in &keys {
            batch.append_statement(self.st.key_insert.clone());
            values.push(Box::new((
                stream.as_str(),
                new_loc.inc,
                new_loc.bucket,
                k.as_slice(),
                db(row.first)?,
                db(row.count)?,
                db(row.ts)?,
                row.digest_db(),
            )));
        }
        // Not applied: another writer wrote the new head first, with the same content.
        self.session
            .batch(&batch, values)
            .await
            .map_err(parse_cassandra_error)?;
        // Hinted either way: a second hint of the same mark wakes nobody.
        self.hint(stream, Some(marks::mark_at(new_loc, head.ver)))
            .await;
        if self.roll_crash.load(Ordering::Acquire) == RollCrash::AfterHead.code() {
            return Err(unavailable(
                "injected crash after writing the new bucket's head",
            ));
        }
        self.move_hint(stream, new_loc).await
    }

    pub(super) async fn move_hint(&self, stream: &StreamId, loc: Loc) -> Result<()> {
        self.exec(
            &self.st.stream_move,
            (loc.bucket, stream.as_str(), loc.inc, loc.bucket),
        )
        .await?;
        Ok(())
    }

    /// The buckets holding offsets `from..h.next` of the stream whose current head is `h` at
    /// `loc`, oldest first, as `(bucket, base)`; `None` if a trim removed one meanwhile.
    pub(super) async fn buckets_from(
        &self,
        stream: &StreamId,
        loc: Loc,
        h: &Head,
        from: u64,
    ) -> Result<Option<Vec<(i64, u64)>>> {
        let mut out = vec![(loc.bucket, h.base)];
        let (mut base, mut prev) = (h.base, h.prev);
        while base > from {
            let Some(pb) = prev else {
                return Ok(None);
            };
            let Some(ph) = self
                .head(
                    stream,
                    Loc {
                        inc: loc.inc,
                        bucket: pb,
                    },
                )
                .await?
            else {
                return Ok(None);
            };
            out.push((pb, ph.base));
            (base, prev) = (ph.base, ph.prev);
        }
        out.reverse();
        Ok(Some(out))
    }

    /// `(offset, len)` of the records in `from..end` (at most `limit`), across buckets.
    pub(super) async fn lens(
        &self,
        stream: &StreamId,
        inc: i64,
        buckets: &[(i64, u64)],
        from: u64,
        end: u64,
        limit: u64,
    ) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for (i, &(bucket, base)) in buckets.iter().enumerate() {
            let hi = buckets.get(i + 1).map_or(end, |b| b.1).min(end);
            let lo = base.max(from);
            let want = limit.saturating_sub(u64::try_from(out.len()).unwrap_or(u64::MAX));
            if lo >= hi || want == 0 {
                continue;
            }
            let n = i32::try_from(want).unwrap_or(i32::MAX);
            let qr = self
                .exec(
                    &self.st.lens,
                    (stream.as_str(), inc, bucket, db(lo)?, db(hi)?, n),
                )
                .await?;
            for (off, len) in rows::<(i64, Option<i64>)>(qr)? {
                out.push((un(off)?, un(len.unwrap_or(0))?));
            }
        }
        Ok(out)
    }
}
