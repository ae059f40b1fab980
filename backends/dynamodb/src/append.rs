//! Appends: one `TransactWriteItems` per batch, and the resolution of unknown outcomes.
//!
//! The transaction (the linearization point) holds a conditional `Put` of the head (condition:
//! the incarnation and version read before; or absence, for a new stream), a `Put` of the
//! idempotency key's item (condition: absent), and `Put`s of the record chunks. Either all of
//! them are applied or none.
//!
//! The common case is one request: the head this process wrote last is cached ([`HeadCache`])
//! and the first attempt decides from it *without* reading the head. The head's condition
//! (incarnation and version; every head write increments the version, and incarnations are
//! random 64-bit numbers) validates it: the transaction applies only if the stored head is
//! exactly the cached one, so the decision is the one a fresh read gives. Anything else is
//! decided from a fresh read: a cancelled transaction, a refusal (`Conflict`, `Sealed`, …), an
//! expired head, and the idempotency key (a reused key fails the key item's condition, and the
//! fresh attempt reads the key's item).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use bytes::Bytes;
use streamstore::implementor::head::{Decision, StreamHead};
use streamstore::implementor::validate::now_ms;
use streamstore::{AppendResult, Error, ErrorKind, Expect, IdempotencyKey, Result, StreamId};

use crate::backend::Core;
use crate::core::TxError;
use crate::error::{build_error, Outcome};
use crate::model::{
    self, be, chunk_item, head_item, item_key, key_item, key_sk, keys_pk, pack, parse_chunk,
    parse_key_item, records_pk, Head, Item,
};

/// Attempts of one append before giving up with `Unavailable` (each lost a race for the head
/// to another writer, or was throttled).
const MAX_ATTEMPTS: u32 = 200;

/// Times an append whose outcome is unknown is checked (and, while the head shows it has not
/// been applied, sent again) before the caller gets `Unavailable`.
const MAX_RESOLVE: u32 = 4;

/// One prepared transaction and what is needed to recognize it afterwards.
struct Plan {
    items: Vec<TransactWriteItem>,
    result: AppendResult,
    /// The head's (incarnation, version) that the head condition requires (`None`: absent).
    expected: Option<(u64, u64)>,
    /// The sort key (last offset) of the batch's last chunk, and the batch's random id.
    last_offset: u64,
    batch_id: u128,
    new_head: Head,
    /// Decided from the cached head (a refusal means only that the cache was stale).
    from_cache: bool,
}

enum Step {
    Done(AppendResult, Option<Head>),
    /// Lost a race or throttled: read again after a jittered pause.
    Retry,
    /// The cached head did not hold (or cannot decide a refusal): read it at once.
    Stale,
}

/// Streams whose head is cached; the cache is emptied when it reaches this size.
const CACHE_CAP: usize = 1 << 16;

/// The head this process last wrote for each stream, by an append (the version it wrote).
/// A stale entry costs one refused transaction, never a wrong answer (see the module docs);
/// other writes of this process drop the entry so that it is rarely stale.
#[derive(Default)]
pub(crate) struct HeadCache {
    map: Mutex<HashMap<StreamId, Head>>,
}

impl HeadCache {
    fn get(&self, stream: &StreamId) -> Option<Head> {
        self.lock().get(stream).cloned()
    }

    fn put(&self, stream: &StreamId, head: Head) {
        let mut map = self.lock();
        if map.len() >= CACHE_CAP && !map.contains_key(stream) {
            map.clear();
        }
        map.insert(stream.clone(), head);
    }

    /// Forgets the head of `stream` (it was changed or may have been).
    pub(crate) fn forget(&self, stream: &StreamId) {
        self.lock().remove(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Head>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem> {
    let mut p = Put::builder().table_name(table).set_item(Some(item));
    if let Some(c) = condition {
        p = p.condition_expression(c);
    }
    for (k, v) in values {
        p = p.expression_attribute_values(k, v);
    }
    Ok(TransactWriteItem::builder()
        .put(p.build().map_err(build_error)?)
        .build())
}

impl Core {
    /// Appends `records` (already checked against the limits); returns the result and whether
    /// this call wrote it (not a duplicate).
    pub(crate) async fn append(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
    ) -> Result<(AppendResult, bool)> {
        let mut tries = 0u32;
        let mut cached = self.heads.get(stream);
        loop {
            self.check_open()?;
            tries += 1;
            match self
                .append_once(stream, records, bytes, expect, key, cached.take())
                .await?
            {
                Step::Done(result, written) => {
                    if let Some(h) = written {
                        if crate::backend::must_trim(&h) {
                            self.enforce_max_bytes(stream).await?;
                        }
                        return Ok((result, true));
                    }
                    return Ok((result, false));
                }
                Step::Stale => {
                    self.heads.forget(stream);
                    continue;
                }
                Step::Retry if tries < MAX_ATTEMPTS => self.heads.forget(stream),
                Step::Retry => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "the append lost the race for the stream's head too often",
                    ))
                }
            }
            // Jittered, so that writers that collided spread out.
            let ms = rand::random::<u64>() % (1u64 << tries.min(5));
            tokio::time::sleep(Duration::from_millis(ms + 1)).await;
        }
    }

    /// One attempt: decides from `cached` (unvalidated; `None`: from a fresh read of the head)
    /// and sends the transaction.
    async fn append_once(
        &self,
        stream: &StreamId,
        records: &[Bytes],
        bytes: u64,
        expect: Expect,
        key: Option<(&IdempotencyKey, u64)>,
        cached: Option<Head>,
    ) -> Result<Step> {
        let now = now_ms();
        let from_cache = cached.is_some();
        let stored = match cached {
            Some(h) => Some(h),
            None => self.db.head(stream).await?,
        };
        // An expired head is gone as far as callers can see: this append (if allowed) replaces
        // it with a new incarnation, under a condition on the expired head's version.
        let live = stored.as_ref().filter(|h| !h.head.is_expired(now));
        if from_cache && live.is_none() {
            return Ok(Step::Stale);
        }
        let mut engine = live.map(|h| h.head.clone());
        // From the cache the key is not read: the key item's condition refuses a reused key.
        if let (Some(h), Some((k, _)), false) = (engine.as_mut(), key, from_cache) {
            let found = self
                .db
                .get(item_key(&keys_pk(h.incarnation, stream), key_sk(k)))
                .await?;
            if let Some(item) = found {
                let (result, digest) = parse_key_item(&item, h.incarnation)?;
                h.keys.insert(k.clone(), result, digest, 1);
            }
        }
        let (first_offset, timestamp_ms, create) =
            match StreamHead::decide(stream, engine.as_ref(), expect, key, now) {
                Ok(Decision::Duplicate(result)) => return Ok(Step::Done(result, None)),
                Ok(Decision::Write {
                    first_offset,
                    timestamp_ms,
                    create,
                }) => (first_offset, timestamp_ms, create),
                // A refusal is decided from the stored head only.
                Err(_) if from_cache => return Ok(Step::Stale),
                Err(refusal) => return Err(refusal),
            };
        let mut new_head = match live {
            Some(h) if !create => h.clone(),
            _ => Head::new(now),
        };
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        new_head.version = stored.as_ref().map_or(1, |h| h.version + 1);
        new_head.head.next_offset = first_offset + count;
        new_head.head.bytes += bytes;
        new_head.head.last_append_ms = timestamp_ms;
        let inc = new_head.head.incarnation;
        let result = AppendResult {
            first_offset,
            count,
            incarnation: inc,
            timestamp_ms,
        };
        let expected = stored.as_ref().map(|h| (h.head.incarnation.0, h.version));
        let table = self.db.table();
        let mut items = Vec::with_capacity(records.len().min(20) + 2);
        items.push(match expected {
            None => put(
                table,
                head_item(stream, &new_head),
                Some("attribute_not_exists(pk)"),
                vec![],
            )?,
            Some((i, v)) => put(
                table,
                head_item(stream, &new_head),
                Some("i = :i AND v = :v"),
                vec![(":i", model::n(i)), (":v", model::n(v))],
            )?,
        });
        if let Some((k, digest)) = key {
            items.push(put(
                table,
                key_item(stream, k, &result, digest),
                Some("attribute_not_exists(pk)"),
                vec![],
            )?);
        }
        let batch_id: u128 = rand::random();
        let last_offset = first_offset + count - 1;
        for chunk in pack(records, first_offset) {
            // No condition: the head's condition fences the offsets (they are never reused
            // within an incarnation, and each incarnation has its own partition).
            items.push(put(
                table,
                chunk_item(inc, stream, chunk, timestamp_ms, batch_id),
                None,
                vec![],
            )?);
        }
        let plan = Plan {
            items,
            result,
            expected,
            last_offset,
            batch_id,
            new_head,
            from_cache,
        };
        self.execute(stream, plan).await
    }

    async fn execute(&self, stream: &StreamId, plan: Plan) -> Result<Step> {
        match self.db.transact(plan.items.clone()).await {
            Ok(()) => {
                self.heads.put(stream, plan.new_head.clone());
                Ok(Step::Done(plan.result, Some(plan.new_head)))
            }
            Err(TxError::Cancelled(codes)) => match retry_or_fail(&codes)? {
                Step::Retry if plan.from_cache => Ok(Step::Stale),
                step => Ok(step),
            },
            Err(TxError::Failed(e, Outcome::NotApplied)) if e.kind() == ErrorKind::Unavailable => {
                Ok(Step::Retry)
            }
            Err(TxError::Failed(e, Outcome::NotApplied)) => Err(e),
            Err(TxError::Failed(e, Outcome::Unknown)) => self.resolve(stream, plan, e).await,
        }
    }

    /// The transaction may or may not have been applied. The head is read first: if it still
    /// has the incarnation and version the condition requires, the transaction has not been
    /// applied (it would have changed them), and sending the identical transaction again is
    /// safe: both carry the same condition, so at most one of them can ever apply. If the head
    /// moved within the same incarnation, whatever moved it is committed, so the batch's last
    /// chunk decides: present with this batch's id → applied; absent → never applied (its
    /// condition can no longer hold, versions only grow). Any other head (deleted, a new
    /// incarnation) → not applied.
    async fn resolve(&self, stream: &StreamId, plan: Plan, first: Error) -> Result<Step> {
        for _ in 0..MAX_RESOLVE {
            let head = match self.db.head(stream).await {
                Ok(h) => h,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let state = head.as_ref().map(|h| (h.head.incarnation.0, h.version));
            if state == plan.expected {
                match self.db.transact(plan.items.clone()).await {
                    Ok(()) => return Ok(Step::Done(plan.result, Some(plan.new_head))),
                    // Refused: the first attempt (or another writer) moved the head; look again.
                    Err(TxError::Cancelled(_)) | Err(TxError::Failed(_, _)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            if head.as_ref().map(|h| h.head.incarnation) != Some(plan.result.incarnation) {
                return Ok(Step::Retry);
            }
            let chunk = self
                .db
                .get(item_key(
                    &records_pk(plan.result.incarnation, stream),
                    be(plan.last_offset),
                ))
                .await;
            match chunk {
                Ok(Some(item)) if parse_chunk(&item)?.batch_id == plan.batch_id => {
                    return Ok(Step::Done(plan.result, Some(plan.new_head)))
                }
                Ok(_) => return Ok(Step::Retry),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            "the append's outcome is unknown (DynamoDB did not answer); retry with an idempotency key",
        )
        .with_source(first))
    }
}

/// A cancelled transaction applied nothing: a failed condition (another writer, a seal, a
/// concurrent use of the same idempotency key) or a conflict with another transaction is
/// decided again from a fresh read; throttling is retried; anything else is a bug.
fn retry_or_fail(codes: &[Option<String>]) -> Result<Step> {
    let retryable = |c: &str| {
        matches!(
            c,
            "ConditionalCheckFailed"
                | "TransactionConflict"
                | "ThrottlingError"
                | "ProvisionedThroughputExceeded"
        )
    };
    match codes.iter().flatten().find(|c| !retryable(c)) {
        None => Ok(Step::Retry),
        Some(code) => Err(Error::new(
            ErrorKind::Internal,
            format!("DynamoDB cancelled the append's transaction: {code}"),
        )),
    }
}
