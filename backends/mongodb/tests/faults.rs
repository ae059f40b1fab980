//! Kills and restarts the FerretDB server while 4 writers append with idempotency keys and retry;
//! no acknowledged record may be lost, duplicated or skipped (the workload shared with the SQL
//! adapters' fault tests).
//!
//! Needs `STREAMSTORE_MONGODB_URL` and the server of `scripts/services.sh` (restarted with
//! `services.sh down mongodb` / `up mongodb`); prints SKIPPED and passes without the URL.

use streamkeep_mongodb::{MongoStore, URL_ENV};

streamstore_adapter_testing::restart_test! {
    store: MongoStore,
    server: "mongodb",
    url_env: URL_ENV,
}
