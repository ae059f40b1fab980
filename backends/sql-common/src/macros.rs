//! Macros for what the adapters share but cannot write as generic code over `sqlx` without
//! unwieldy bounds (executors of a transaction's connection, per-database argument types).

/// Implements [`SqlDialect`](crate::SqlDialect) for an adapter's core over sqlx, writing the
/// methods whose statements run the same way in every database once; the adapter passes the
/// methods whose statements differ.
///
/// The core must have the fields `pool` and `wait_pool` (`sqlx::Pool`s of `database`; the
/// second, small, serves the watcher and waiting reads' re-reads) and `sql` (the formatted
/// statements), with at least the statements `lock_head`, `head`, `delete_head`,
/// `delete_records`, `delete_keys`, `find_key`, `insert_key`, `bytes_cut` and `expired`, taking
/// the parameters in the order the shared methods bind them (see below), and an inherent
/// `async fn after_delete(&self, tx: &mut Tx, stream: &StreamId) -> Result<()>` that
/// `delete_stream` runs last in its transaction (MySQL records the deletion for other store
/// objects' watchers; PostgreSQL does nothing: `NOTIFY` tells them). `Tx` is
/// `sqlx::Transaction<'static, database>`, `Conn` is `sqlx::pool::PoolConnection<database>`.
///
/// ```text
/// streamkeep_sql::sqlx_dialect! {
///     impl SqlDialect for PgCore {
///         database: Postgres,
///         map_error: parse_postgres_error;
///
///         async fn insert_head(&self, tx: &mut Tx, stream: &StreamId, head: &HeadRow) -> Result<bool> {
///             …
///         }
///         // … the other methods
///     }
/// }
/// ```
#[macro_export]
macro_rules! sqlx_dialect {
    (
        impl SqlDialect for $core:ty {
            database: $db:ty,
            map_error: $map:path;
            $($methods:tt)*
        }
    ) => {
        #[$crate::__private::async_trait]
        impl $crate::SqlDialect for $core {
            type Tx = $crate::__private::sqlx::Transaction<'static, $db>;

            type Conn = $crate::__private::sqlx::pool::PoolConnection<$db>;

            async fn begin(&self) -> $crate::__private::streamstore::Result<Self::Tx> {
                self.pool.begin().await.map_err($map)
            }

            async fn commit(&self, tx: Self::Tx) -> $crate::__private::streamstore::Result<()> {
                tx.commit().await.map_err($map)
            }

            // `lock_head`: `stream_id`.
            async fn lock_head(
                &self,
                tx: &mut Self::Tx,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<Option<$crate::HeadRow>> {
                // MySQL runs it at READ COMMITTED (set per connection): a locking read of a
                // missing row takes no gap lock, so concurrent first appends to different new
                // streams do not deadlock.
                let row = $crate::__private::sqlx::query(&self.sql.lock_head)
                    .bind($crate::sid(stream))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($map)?;
                row.as_ref().map(|r| $crate::head_of(r, $map)).transpose()
            }

            // `delete_head`, `delete_records`, `delete_keys`: `stream_id`.
            async fn delete_stream(
                &self,
                tx: &mut Self::Tx,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<()> {
                // Head first: the same lock order as appends (head, then records), so no deadlock.
                for sql in [
                    &self.sql.delete_head,
                    &self.sql.delete_records,
                    &self.sql.delete_keys,
                ] {
                    $crate::__private::sqlx::query(sql)
                        .bind($crate::sid(stream))
                        .execute(&mut **tx)
                        .await
                        .map_err($map)?;
                }
                self.after_delete(tx, stream).await
            }

            // `find_key`: `stream_id, idem_key`.
            async fn find_key(
                &self,
                tx: &mut Self::Tx,
                stream: &$crate::__private::streamstore::StreamId,
                key: &$crate::__private::streamstore::IdempotencyKey,
            ) -> $crate::__private::streamstore::Result<Option<$crate::KeyRow>> {
                let row = $crate::__private::sqlx::query(&self.sql.find_key)
                    .bind($crate::sid(stream))
                    .bind(key.as_bytes())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($map)?;
                row.map(|r| $crate::key_of(&r, $map)).transpose()
            }

            // `insert_key`: `stream_id, idem_key, incarnation, first_offset, count, ts_ms, digest`.
            async fn insert_key(
                &self,
                tx: &mut Self::Tx,
                stream: &$crate::__private::streamstore::StreamId,
                key: &$crate::__private::streamstore::IdempotencyKey,
                row: &$crate::KeyRow,
            ) -> $crate::__private::streamstore::Result<()> {
                $crate::__private::sqlx::query(&self.sql.insert_key)
                    .bind($crate::sid(stream))
                    .bind(key.as_bytes())
                    .bind($crate::to_db_incarnation(row.result.incarnation))
                    .bind($crate::to_db(row.result.first_offset)?)
                    .bind($crate::to_db(row.result.count)?)
                    .bind($crate::to_db(row.result.timestamp_ms)?)
                    .bind(row.digest_db())
                    .execute(&mut **tx)
                    .await
                    .map_err($map)?;
                Ok(())
            }

            // `bytes_cut`: `stream_id, from, excess`.
            async fn bytes_cut(
                &self,
                tx: &mut Self::Tx,
                stream: &$crate::__private::streamstore::StreamId,
                from: u64,
                excess: u64,
            ) -> $crate::__private::streamstore::Result<Option<u64>> {
                let off: Option<i64> = $crate::__private::sqlx::query_scalar(&self.sql.bytes_cut)
                    .bind($crate::sid(stream))
                    .bind($crate::to_db(from)?)
                    .bind($crate::to_db(excess)?)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($map)?;
                off.map($crate::from_db).transpose()
            }

            async fn connection(&self) -> $crate::__private::streamstore::Result<Self::Conn> {
                self.pool.acquire().await.map_err($map)
            }

            async fn wait_connection(&self) -> $crate::__private::streamstore::Result<Self::Conn> {
                self.wait_pool.acquire().await.map_err($map)
            }

            // `head`: `stream_id`.
            async fn head(
                &self,
                conn: &mut Self::Conn,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<Option<$crate::HeadRow>> {
                let row = $crate::__private::sqlx::query(&self.sql.head)
                    .bind($crate::sid(stream))
                    .fetch_optional(&mut **conn)
                    .await
                    .map_err($map)?;
                row.as_ref().map(|r| $crate::head_of(r, $map)).transpose()
            }

            // `expired`: `now_ms, limit`.
            async fn expired(
                &self,
                now_ms: u64,
                limit: u64,
            ) -> $crate::__private::streamstore::Result<Vec<$crate::__private::streamstore::StreamId>> {
                let ids: Vec<Vec<u8>> = $crate::__private::sqlx::query_scalar(&self.sql.expired)
                    .bind($crate::to_db(now_ms)?)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map)?;
                ids.iter().map(|id| $crate::id_of(id)).collect()
            }

            async fn close(&self) {
                self.pool.close().await;
                self.wait_pool.close().await;
            }

            $($methods)*
        }
    };
}

/// Implements `StreamStore` for an adapter's store type by forwarding every method to its
/// [`SqlStore`](crate::SqlStore) field.
///
/// ```text
/// streamkeep_sql::forward_stream_store!(PostgresStore, inner);
/// ```
#[macro_export]
macro_rules! forward_stream_store {
    ($store:ty, $field:ident) => {
        #[$crate::__private::async_trait]
        impl $crate::__private::streamstore::StreamStore for $store {
            fn capabilities(&self) -> $crate::__private::streamstore::Capabilities {
                $crate::__private::streamstore::StreamStore::capabilities(&self.$field)
            }

            async fn append(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
                records: Vec<$crate::__private::bytes::Bytes>,
                options: $crate::__private::streamstore::AppendOptions,
            ) -> $crate::__private::streamstore::Result<$crate::__private::streamstore::AppendResult>
            {
                $crate::__private::streamstore::StreamStore::append(&self.$field, stream, records, options).await
            }

            async fn read(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
                from: u64,
                options: $crate::__private::streamstore::ReadOptions,
            ) -> $crate::__private::streamstore::Result<$crate::__private::streamstore::ReadBatch> {
                $crate::__private::streamstore::StreamStore::read(&self.$field, stream, from, options).await
            }

            async fn seal(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<$crate::__private::streamstore::StreamInfo>
            {
                $crate::__private::streamstore::StreamStore::seal(&self.$field, stream).await
            }

            async fn trim(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
                before: u64,
            ) -> $crate::__private::streamstore::Result<u64> {
                $crate::__private::streamstore::StreamStore::trim(&self.$field, stream, before).await
            }

            async fn delete(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<bool> {
                $crate::__private::streamstore::StreamStore::delete(&self.$field, stream).await
            }

            async fn info(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
            ) -> $crate::__private::streamstore::Result<$crate::__private::streamstore::StreamInfo>
            {
                $crate::__private::streamstore::StreamStore::info(&self.$field, stream).await
            }

            async fn list(
                &self,
                options: $crate::__private::streamstore::ListOptions,
            ) -> $crate::__private::streamstore::Result<$crate::__private::streamstore::ListPage> {
                $crate::__private::streamstore::StreamStore::list(&self.$field, options).await
            }

            async fn set_retention(
                &self,
                stream: &$crate::__private::streamstore::StreamId,
                retention: $crate::__private::streamstore::Retention,
            ) -> $crate::__private::streamstore::Result<()> {
                $crate::__private::streamstore::StreamStore::set_retention(&self.$field, stream, retention).await
            }

            async fn close(&self) -> $crate::__private::streamstore::Result<()> {
                $crate::__private::streamstore::StreamStore::close(&self.$field).await
            }
        }
    };
}

/// Writes the methods of an adapter's configuration that only pass through to its
/// [`DbTarget`](crate::DbTarget) field `target`: `with_prefix`, `prefix` and the crate-private
/// `driver_url`.
///
/// ```text
/// streamkeep_sql::config_target_methods!(PostgresConfig);
/// ```
#[macro_export]
macro_rules! config_target_methods {
    ($config:ty) => {
        impl $config {
            /// Uses the tables `<prefix>streams`, `<prefix>records`, … (`[a-z][a-z0-9_]{0,30}`).
            pub fn with_prefix(
                mut self,
                prefix: &str,
            ) -> $crate::__private::streamstore::Result<Self> {
                self.target.set_prefix(prefix)?;
                Ok(self)
            }

            /// The table prefix.
            pub fn prefix(&self) -> &$crate::TablePrefix {
                self.target.prefix()
            }

            pub(crate) fn driver_url(&self) -> &str {
                self.target.driver_url()
            }
        }
    };
}
