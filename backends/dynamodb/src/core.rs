//! The DynamoDB client and every request the adapter sends.

use std::collections::HashMap;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, DeleteRequest, KeySchemaElement, KeyType, KeysAndAttributes,
    ScalarAttributeType, TableStatus, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use streamstore::{Error, ErrorKind, Result, StreamId};

use crate::config::DynamoDbConfig;
use crate::error::{build_error, map, parse_dynamodb_error, Outcome};
use crate::model::{self, b, head_key, parse_head, s, Head, Item, HEADS, PK, SK};

/// How long table creation may take to reach `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Keys per `BatchGetItem` (DynamoDB's limit).
pub(crate) const BATCH_GET_KEYS: usize = 100;

/// Deletes per `BatchWriteItem` (DynamoDB's limit).
const BATCH_WRITE_ITEMS: usize = 25;

/// Why a `TransactWriteItems` failed.
pub(crate) enum TxError {
    /// DynamoDB cancelled it (nothing applied): the code of each action (`None` if it was fine),
    /// in request order.
    Cancelled(Vec<Option<String>>),
    /// Any other failure, and whether it may have been applied.
    Failed(Error, Outcome),
}

/// The clients and the table.
pub(crate) struct Db {
    /// Reads and unconditional requests: the SDK's standard retries.
    client: Client,
    /// Conditional writes: no SDK retries, so a lost reply is never retried into a false
    /// `ConditionalCheckFailed`; the adapter resolves such outcomes itself.
    once: Client,
    table: String,
}

impl Db {
    pub(crate) fn new(config: &DynamoDbConfig) -> Result<Self> {
        let credentials = match (&config.credentials, &config.endpoint) {
            (Some(c), _) => Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "streamstore-environment",
            ),
            // A local server (moto) does not check signatures.
            (None, Some(_)) => Credentials::new("streamstore", "streamstore", None, None, "dummy"),
            (None, None) => {
                return Err(Error::invalid(
                    "connecting to AWS needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ))
            }
        };
        // rustls on `ring`: no aws-lc C build (see Cargo.toml). Plain HTTP works too.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.request_timeout)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(
            builder
                .clone()
                .retry_config(RetryConfig::standard().with_max_attempts(4))
                .build(),
        );
        let once = Client::from_conf(builder.retry_config(RetryConfig::disabled()).build());
        Ok(Db {
            client,
            once,
            table: config.table().to_owned(),
        })
    }

    /// The table's name.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist (idempotent: several processes may race) and
    /// waits until it is `ACTIVE`.
    pub(crate) async fn ensure_table(&self) -> Result<()> {
        let attr = |name: &str, t| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(build_error)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PK, ScalarAttributeType::S)?)
            .attribute_definitions(attr(SK, ScalarAttributeType::B)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(e) = created {
            let exists = e
                .as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception());
            if !exists {
                return Err(map(e));
            }
        }
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(map)?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the DynamoDB table did not become ACTIVE in time",
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes the table (every stream in it); a missing table is fine.
    pub(crate) async fn delete_table(&self) -> Result<()> {
        match self
            .client
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(map(e)),
        }
    }

    /// A strongly consistent point read.
    pub(crate) async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(map)?;
        Ok(out.item)
    }

    /// The stored head of `stream` (expired or not).
    pub(crate) async fn head(&self, stream: &StreamId) -> Result<Option<Head>> {
        self.get(head_key(stream))
            .await?
            .map(|item| parse_head(&item))
            .transpose()
    }

    /// One `TransactWriteItems`, never retried by the SDK.
    pub(crate) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
        match self
            .once
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    return Err(TxError::Cancelled(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                            .collect(),
                    ));
                }
                let (err, outcome) = parse_dynamodb_error(e);
                Err(TxError::Failed(err, outcome))
            }
        }
    }

    /// A conditional put of `item` (never retried by the SDK). `Ok(false)`: the condition did not
    /// hold.
    pub(crate) async fn put_if(
        &self,
        item: Item,
        condition: &str,
        values: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<bool, (Error, Outcome)> {
        let put = self
            .once
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(parse_dynamodb_error(e)),
        }
    }

    /// Deletes the head of `stream` if its incarnation and version are still `h`'s.
    pub(crate) async fn delete_head_if(
        &self,
        stream: &StreamId,
        h: &Head,
    ) -> Result<bool, (Error, Outcome)> {
        let del = self
            .once
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(head_key(stream)))
            .condition_expression("i = :i AND v = :v")
            .expression_attribute_values(":i", model::n(h.head.incarnation.0))
            .expression_attribute_values(":v", model::n(h.version))
            .send()
            .await;
        match del {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(parse_dynamodb_error(e)),
        }
    }

    /// One strongly consistent page of partition `pk` from sort key `from` (inclusive), at most
    /// `limit` items, continuing after `start`.
    pub(crate) async fn page_from(
        &self,
        pk: &str,
        from: &[u8],
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        self.page(pk, from, None, limit, start).await
    }

    /// One strongly consistent page of partition `pk` with sort keys in `from..=to`, at most
    /// `limit` items, continuing after `start`.
    pub(crate) async fn page_between(
        &self,
        pk: &str,
        (from, to): (&[u8], &[u8]),
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        self.page(pk, from, Some(to), limit, start).await
    }

    /// The one query behind [`page_from`](Self::page_from) and
    /// [`page_between`](Self::page_between): sort keys from `from`, up to `to` when given.
    async fn page(
        &self,
        pk: &str,
        from: &[u8],
        to: Option<&[u8]>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":p", s(pk))
            .expression_attribute_values(":a", b(from));
        let query = match to {
            Some(to) => query
                .key_condition_expression("pk = :p AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":b", b(to)),
            None => query.key_condition_expression("pk = :p AND sk >= :a"),
        };
        let out = query
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(map)?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// One page of heads for `list`: ids from `lower` (exclusive if `after`), with only the
    /// attributes `list` needs.
    pub(crate) async fn heads_page(
        &self,
        lower: Option<(&[u8], bool)>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":p", s(HEADS))
            .projection_expression("sk, x")
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(start);
        q = match lower {
            None => q.key_condition_expression("pk = :p"),
            Some((bound, exclusive)) => q
                .key_condition_expression(if exclusive {
                    "pk = :p AND sk > :s"
                } else {
                    "pk = :p AND sk >= :s"
                })
                .expression_attribute_values(":s", b(bound)),
        };
        let out = q.send().await.map_err(map)?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Heads whose expiry `x` is at or before `now_ms`, one page.
    pub(crate) async fn expired_page(
        &self,
        now_ms: u64,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .filter_expression("x <= :now")
            .expression_attribute_values(":p", s(HEADS))
            .expression_attribute_values(":now", model::n(now_ms))
            .consistent_read(true)
            .limit(256)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(map)?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Deletes `keys` (full primary keys), retrying what DynamoDB leaves unprocessed.
    pub(crate) async fn delete_keys(&self, keys: Vec<Item>) -> Result<()> {
        for group in keys.chunks(BATCH_WRITE_ITEMS) {
            let mut requests = group
                .iter()
                .map(|k| {
                    let del = DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map_err(build_error)?;
                    Ok(WriteRequest::builder().delete_request(del).build())
                })
                .collect::<Result<Vec<_>>>()?;
            for attempt in 0..8u32 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(map)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                }
            }
            if !requests.is_empty() {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "DynamoDB left deletes unprocessed",
                ));
            }
        }
        Ok(())
    }

    /// Deletes every item of partition `pk` (a deleted incarnation's records or keys).
    pub(crate) async fn delete_partition(&self, pk: &str) -> Result<()> {
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(pk))
                .projection_expression("pk, sk")
                .limit(500)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(map)?;
            let keys = out.items.unwrap_or_default();
            if !keys.is_empty() {
                self.delete_keys(keys).await?;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// For each of `streams` that exists and has not expired, a mark that changes with every
    /// head write (append, seal, trim, retention, delete, re-creation): one `BatchGetItem` per
    /// 100 streams.
    pub(crate) async fn marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        let now = streamstore::implementor::validate::now_ms();
        let mut marks = Vec::with_capacity(streams.len());
        for group in streams.chunks(BATCH_GET_KEYS) {
            for item in self.heads(group).await? {
                let h = parse_head(&item)?;
                if !h.head.is_expired(now) {
                    marks.push((model::head_id(&item)?, h.mark()));
                }
            }
        }
        Ok(marks)
    }

    /// The heads of `streams` (at most [`BATCH_GET_KEYS`]) in one strongly consistent
    /// `BatchGetItem` (repeated for keys DynamoDB leaves unprocessed).
    pub(crate) async fn heads(&self, streams: &[StreamId]) -> Result<Vec<Item>> {
        let mut found = Vec::with_capacity(streams.len());
        let keys: Vec<Item> = streams.iter().map(head_key).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(build_error)?,
        );
        let mut attempt = 0u32;
        while let Some(req) = pending.take() {
            if req.keys().is_empty() {
                break;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, req)
                .send()
                .await
                .map_err(map)?;
            if let Some(mut r) = out.responses {
                found.extend(r.remove(&self.table).unwrap_or_default());
            }
            pending = out.unprocessed_keys.and_then(|mut m| m.remove(&self.table));
            if pending.is_some() {
                attempt += 1;
                if attempt > 8 {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "DynamoDB left head reads unprocessed",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
            }
        }
        Ok(found)
    }
}
