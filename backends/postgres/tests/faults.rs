//! Restarts the PostgreSQL server while idempotent appends are in flight and retried; no
//! acknowledged record may be lost, duplicated or skipped.
//!
//! Needs `STREAMSTORE_POSTGRES_URL` and the server of `scripts/services.sh` (restarted with
//! `services.sh down postgres` / `up postgres`); prints SKIPPED and passes without the URL.

use streamkeep_postgres::{PostgresStore, URL_ENV};

streamstore_adapter_testing::restart_test! {
    store: PostgresStore,
    server: "postgres",
    url_env: URL_ENV,
}
