//! PostgreSQL-specific tests against the server at `STREAMSTORE_POSTGRES_URL` (each prints
//! SKIPPED and passes without it).

use std::time::Duration;

use streamkeep_postgres::{PostgresStore, URL_ENV};

streamstore_adapter_testing::sql_adapter_tests! {
    store: PostgresStore,
    server: "postgres",
    url_env: URL_ENV,
    wake_test: notify_wakes_a_reader_of_another_store_within_milliseconds,
    // The watcher polls every 2 s while LISTEN is up: only NOTIFY wakes the reader this fast.
    wakes_within: Duration::from_millis(250),
}
