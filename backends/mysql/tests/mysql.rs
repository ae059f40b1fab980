//! MySQL-specific tests against the server at `STREAMSTORE_MYSQL_URL` (each prints
//! SKIPPED and passes without it).

use std::time::Duration;

use streamkeep_mysql::{MysqlStore, URL_ENV};

streamstore_adapter_testing::sql_adapter_tests! {
    store: MysqlStore,
    server: "mysql",
    url_env: URL_ENV,
    wake_test: polling_wakes_a_reader_of_another_store,
    wake_url_options: "",
    // No push channel: the watcher polls every 100 ms (± 20 %).
    wakes_within: Duration::from_millis(600),
}
