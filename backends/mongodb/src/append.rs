//! Appends: deciding the next entry of a stream's chain and inserting it.
//!
//! The insert of the entry at the successor slot of the last entry is the append's
//! linearization point (see `backend.rs` and docs/backends.md). The common case costs one
//! round trip: the last entry this process saw is taken from the cache *without* reading the
//! slot after it, and the unique `_id` of the insert validates it: the insert succeeds only if
//! that slot was still empty, i.e. only if the cached entry really was the stream's last, so
//! the decision made from it is the decision the real head gives. A refusal (`Conflict`,
//! `Sealed`, …) or a new generation is never decided from an unvalidated entry: the writer
//! walks to the real end first.

use bytes::Bytes;
use streamstore::implementor::head::{Decision, StreamHead};
use streamstore::implementor::validate::now_ms;
use streamstore::implementor::ErrorShorthand;
use streamstore::{AppendResult, Error, ErrorKind, Expect, IdempotencyKey, Result, StreamId};

use crate::backend::{must_trim, pause_or_fail, Inner, MAX_LOST_SLOTS};
use crate::core::Inserted;
use crate::entry::{Entry, Kind};
use crate::slot::{key_claim, random_claim, Slot};

impl Inner {
    /// After an entry was inserted: cache it, keep the hint and the sweeper fields current, and
    /// wake this process's waiting readers.
    pub(crate) async fn inserted(&self, stream: &StreamId, entry: &Entry, pred: Option<&Entry>) {
        self.cache.put(stream, entry);
        let crossed = pred.is_none_or(|p| {
            p.slot.generation != entry.slot.generation
                || p.next_offset() / 64 != entry.next_offset() / 64
                || entry.kind != Kind::Data
        });
        if crossed {
            let _ = self.core.raise_hint(stream, entry.slot).await;
        }
        if let Some(p) = pred.filter(|p| p.kind != Kind::Delete && p.head.expires_ms().is_some()) {
            let _ = self.core.clear_expiry(p.slot.id(stream)).await;
        }
        self.watcher.notify(stream);
    }

    /// The result of an append whose claim was found on `found`: the earlier result for the
    /// same records, `InvalidArgument` for a key reused with different records.
    pub(crate) fn resolve(found: &Entry, digest: Option<u64>) -> Result<AppendResult> {
        if found.kind != Kind::Data {
            return Err(Error::new(
                ErrorKind::Internal,
                "a claim was found on an entry that is not a batch",
            ));
        }
        match digest {
            Some(d) if found.digest != Some(d) => Err(Error::invalid(
                "this idempotency key was used for different records on this stream",
            )),
            _ => Ok(found.append_result()),
        }
    }

    /// Applies the `max_bytes` rule to `entry` (the state after a write): raises its first
    /// offset past the oldest records while it holds too much, never past the newest record.
    /// `new_sizes` are the lengths of records the entry itself appends (not yet stored).
    /// `None` if the chain moved on meanwhile.
    pub(crate) async fn apply_max_bytes(
        &self,
        stream: &StreamId,
        entry: &mut Entry,
        new_sizes: &[u64],
    ) -> Result<Option<()>> {
        let h = &entry.head;
        let Some(max) = h.retention.max_bytes.filter(|_| must_trim(h)) else {
            return Ok(Some(()));
        };
        let new_count = u64::try_from(new_sizes.len()).unwrap_or(u64::MAX);
        let stored_end = h.next_offset - new_count;
        let first = h.first_offset;
        let Some(mut sizes) = self
            .sizes(stream, entry.slot.generation, first, stored_end.max(first))
            .await?
        else {
            return Ok(None);
        };
        // Records below the first offset may belong to this entry itself only if the stream
        // was just created; `first <= stored_end` holds otherwise.
        let skip = usize::try_from(first.saturating_sub(stored_end)).unwrap_or(usize::MAX);
        sizes.extend(new_sizes.iter().skip(skip));
        let newest = h.next_offset - 1;
        let mut excess = h.bytes - max;
        let mut off = first;
        let mut dropped = 0u64;
        for len in sizes {
            if excess == 0 || off >= newest {
                break;
            }
            excess = excess.saturating_sub(len);
            dropped += len;
            off += 1;
        }
        entry.head.first_offset = off;
        entry.trimmed_bytes += dropped;
        entry.head.bytes -= dropped;
        Ok(Some(()))
    }

    /// The entry that ends `last`'s generation (an explicit delete, or an expired stream
    /// being removed).
    pub(crate) fn delete_entry(last: &Entry, now: u64) -> Entry {
        let mut head = last.head.clone();
        head.keys = Default::default();
        Entry {
            slot: last.next_slot(),
            kind: Kind::Delete,
            count: 0,
            ts: now,
            claim: random_claim(),
            digest: None,
            head,
            total_bytes: last.total_bytes,
            trimmed_bytes: last.trimmed_bytes,
        }
    }

    /// A state-only entry after `last` (seal, trim, retention), to be adjusted by the caller.
    pub(crate) fn meta_entry(last: &Entry, kind: Kind, now: u64) -> Entry {
        Entry {
            slot: last.next_slot(),
            kind,
            count: 0,
            ts: now,
            claim: random_claim(),
            digest: None,
            head: last.head.clone(),
            total_bytes: last.total_bytes,
            trimmed_bytes: last.trimmed_bytes,
        }
    }

    /// Inserts `entry`; on success removes the payloads it trimmed (advisory: readers check
    /// the first offset, not the payloads) and runs [`Inner::inserted`].
    pub(crate) async fn insert_entry(
        &self,
        stream: &StreamId,
        entry: &Entry,
        records: &[Bytes],
        pred: Option<&Entry>,
    ) -> Result<Inserted> {
        let outcome = self
            .core
            .insert(entry.to_document(stream, records)?)
            .await?;
        if outcome == Inserted::Done {
            let raised = pred.is_some_and(|p| p.head.first_offset < entry.head.first_offset);
            if raised {
                let g = entry.slot.generation;
                let _ = self
                    .core
                    .strip_below(stream, g, entry.head.first_offset)
                    .await;
            }
            if entry.kind == Kind::Delete {
                let _ = self
                    .core
                    .strip_generation(stream, entry.slot.generation)
                    .await;
            }
            self.inserted(stream, entry, pred).await;
        }
        Ok(outcome)
    }

    /// Appends `records` (checked against the limits by the caller): one insert when the
    /// cached last entry is still the last, otherwise walks, decides again and retries.
    pub(crate) async fn append(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<AppendResult> {
        let token = random_claim();
        let digest = key.map(|(_, d)| d);
        let new_sizes: Vec<u64> = records
            .iter()
            .map(|r| u64::try_from(r.len()).unwrap_or(u64::MAX))
            .collect();
        // Set once an insert's outcome was unknown: from then on a refusal may be because our
        // own earlier attempt landed, so the claim is looked up before any error is returned.
        let mut ambiguous = false;
        let mut transient = 0u32;
        let mut lost = 0u32;
        let mut last: Option<Entry> = None;
        let mut first_try = true;
        loop {
            self.check_open()?;
            // First attempt: the cached entry, unvalidated (the insert validates it). Later
            // attempts, or nothing cached: walk to the real last entry.
            let cached = if std::mem::take(&mut first_try) {
                self.cache.get(stream)
            } else {
                None
            };
            let walked = cached.is_none();
            last = match cached {
                Some(e) => Some(e),
                None => match self.walk_from(stream, last.take()).await {
                    Ok(l) => l,
                    Err(e) => {
                        pause_or_fail(&mut transient, e).await?;
                        continue;
                    }
                },
            };
            let now = now_ms();
            let live = last.as_ref().and_then(|e| e.live_head(now));
            let generation = match &last {
                None => 1,
                Some(e) if live.is_some() => e.slot.generation,
                Some(e) => e.slot.generation + 1,
            };
            let claim = match key {
                Some((k, _)) => key_claim(stream, generation, k),
                None => token.clone(),
            };
            // The key is looked up only where it can change the answer: when the decision
            // without it is a refusal (the batch is already in, or it was never written); when
            // the decision is a write, the claim index refuses a reused key at the insert.
            let decision = match StreamHead::decide(stream, live, expect, None, now) {
                Ok(d) => d,
                // Refusals are decided from the real last entry only.
                Err(_) if !walked => continue,
                Err(refusal) => {
                    if (key.is_some() && live.is_some()) || ambiguous {
                        match self.core.find_claim(&claim).await {
                            Ok(Some(found)) => return Self::resolve(&found, digest),
                            Ok(None) => {}
                            Err(e) => {
                                pause_or_fail(&mut transient, e).await?;
                                continue;
                            }
                        }
                    }
                    return Err(refusal);
                }
            };
            // A new generation (the stream is missing, deleted or expired) is decided from
            // the real last entry only, too.
            if !walked && live.is_none() {
                continue;
            }
            let Decision::Write {
                first_offset,
                timestamp_ms,
                create,
            } = decision
            else {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "a decision without a key was a duplicate",
                ));
            };
            let mut pred = last.clone();
            if let Some(old) = last
                .as_ref()
                .filter(|e| live.is_none() && e.kind != Kind::Delete)
            {
                // Retention fired and no sweeper has removed the stream yet: end its
                // generation first (an insert like any other, so a concurrent append to the
                // old generation and this removal cannot both succeed).
                let marker = Self::delete_entry(old, now);
                match self.insert_entry(stream, &marker, &[], Some(old)).await {
                    Ok(Inserted::Done) => pred = Some(marker),
                    Ok(Inserted::Duplicate) => continue,
                    Err(e) => {
                        pause_or_fail(&mut transient, e).await?;
                        continue;
                    }
                }
            }
            let mut entry = Self::data_entry(
                pred.as_ref().filter(|_| !create),
                generation,
                (first_offset, timestamp_ms),
                (&new_sizes, bytes),
                (claim.clone(), digest),
            );
            match self.apply_max_bytes(stream, &mut entry, &new_sizes).await {
                Ok(Some(())) => {}
                Ok(None) => continue,
                Err(e) => {
                    pause_or_fail(&mut transient, e).await?;
                    continue;
                }
            }
            match self
                .insert_entry(stream, &entry, records, pred.as_ref())
                .await
            {
                Ok(Inserted::Done) => return Ok(entry.append_result()),
                Ok(Inserted::Duplicate) => {
                    // Either the slot is taken (another writer won it, or the cached entry was
                    // stale: walk on and decide again) or the claim is (the key was used, or our
                    // own earlier attempt landed). An unkeyed append's claim is a token of this
                    // call, so without an earlier unknown outcome only the slot can be taken:
                    // the claim lookup (a full scan on FerretDB) is skipped.
                    if key.is_some() || ambiguous {
                        match self.core.find_claim(&claim).await {
                            Ok(Some(found)) => return Self::resolve(&found, digest),
                            Ok(None) => {}
                            Err(e) => {
                                ambiguous = true;
                                pause_or_fail(&mut transient, e).await?;
                            }
                        }
                    }
                    lost += 1;
                    if lost >= MAX_LOST_SLOTS {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "too many concurrent writers on this stream; try again",
                        ));
                    }
                    last = pred;
                }
                Err(e) => {
                    ambiguous |= e.is_retryable();
                    pause_or_fail(&mut transient, e).await?;
                    last = pred;
                }
            }
        }
    }

    /// The data entry of a batch of `sizes.len()` records (`bytes` in all) at `first_offset`,
    /// following `pred`, or starting generation `generation` if `pred` is `None`.
    fn data_entry(
        pred: Option<&Entry>,
        generation: u64,
        (first_offset, timestamp_ms): (u64, u64),
        (sizes, bytes): (&[u64], u64),
        (claim, digest): (String, Option<u64>),
    ) -> Entry {
        let count = u64::try_from(sizes.len()).unwrap_or(u64::MAX);
        let (slot, mut head, total, trimmed) = match pred {
            Some(p) => (
                p.next_slot(),
                p.head.clone(),
                p.total_bytes,
                p.trimmed_bytes,
            ),
            None => (
                Slot::start_of(generation),
                Entry::genesis_state(timestamp_ms),
                0,
                0,
            ),
        };
        head.next_offset = first_offset + count;
        head.last_append_ms = timestamp_ms;
        head.bytes = total + bytes - trimmed;
        Entry {
            slot,
            kind: Kind::Data,
            count,
            ts: timestamp_ms,
            claim,
            digest,
            head,
            total_bytes: total + bytes,
            trimmed_bytes: trimmed,
        }
    }
}
