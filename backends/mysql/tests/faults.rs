//! Restarts the MySQL (MariaDB) server while idempotent appends are in flight and retried; no
//! acknowledged record may be lost, duplicated or skipped.
//!
//! Needs `STREAMSTORE_MYSQL_URL` and the server of `scripts/services.sh` (restarted with
//! `services.sh down mysql` / `up mysql`); prints SKIPPED and passes without the URL.

use streamkeep_mysql::{MysqlStore, URL_ENV};

streamstore_adapter_testing::restart_test! {
    store: MysqlStore,
    server: "mysql",
    url_env: URL_ENV,
}
