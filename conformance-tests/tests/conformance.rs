//! The conformance runner: runs the suite against every implementation selected by the
//! environment and prints `conformance <name>: <N> passed, <N> failed, <N> skipped` for each.
//!
//! - `STREAMSTORE_TEST=memory,local,postgres,...` picks implementations explicitly; an unknown name,
//!   or a database whose URL variable is unset, fails the run.
//! - Without it: `memory`, `local`, and every database whose URL variable is set.
//! - `STREAMSTORE_TEST_FILTER=substring` runs only matching cases.
//! - `STREAMSTORE_CONTAINERS=postgres,dynamodb` (or `all`) runs those databases against servers
//!   that testcontainers starts in Docker (see `containers/mod.rs`), and then, unless
//!   `STREAMSTORE_TEST` names some, nothing else: it prints `conformance <name> (testcontainers): ...`.

mod containers;

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use streamkeep_conformance::{run_suite, Factory, Summary};
use streamstore::{MemoryStore, Result, StreamStore};

/// Memory stores: nothing persists, so every namespace is simply a new store.
struct MemoryFactory;

#[async_trait]
impl Factory for MemoryFactory {
    async fn open(&self, _ns: &str) -> Result<Arc<dyn StreamStore>> {
        Ok(Arc::new(MemoryStore::new()))
    }
    async fn destroy(&self, _ns: &str) -> Result<()> {
        Ok(())
    }
}

/// Local stores: one data directory per namespace under a per-run temporary directory.
struct LocalFactory {
    root: std::path::PathBuf,
}

#[async_trait]
impl Factory for LocalFactory {
    async fn open(&self, ns: &str) -> Result<Arc<dyn StreamStore>> {
        let dir = self.root.join(ns);
        let store =
            streamstore::LocalStore::open(dir, streamstore::LocalOptions::default()).await?;
        Ok(Arc::new(store))
    }
    async fn destroy(&self, ns: &str) -> Result<()> {
        let _ = std::fs::remove_dir_all(self.root.join(ns));
        Ok(())
    }
}

fn local_factory() -> Arc<dyn Factory> {
    let root = std::env::temp_dir().join(format!(
        "streamstore-conformance-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    Arc::new(LocalFactory { root })
}

/// An implementation the runner knows: its name, the URL variable it needs (if any), and how to
/// build its factory.
struct Known {
    name: &'static str,
    env: Option<&'static str>,
    factory: fn() -> Arc<dyn Factory>,
}

fn known() -> Vec<Known> {
    vec![
        Known {
            name: "memory",
            env: None,
            factory: || Arc::new(MemoryFactory),
        },
        Known {
            name: "local",
            env: None,
            factory: local_factory,
        },
        Known {
            name: "postgres",
            env: Some(streamstore_postgres::URL_ENV),
            factory: || Arc::new(streamstore_postgres::PostgresFactory),
        },
        Known {
            name: "mysql",
            env: Some(streamstore_mysql::URL_ENV),
            factory: || Arc::new(streamstore_mysql::MysqlFactory),
        },
        Known {
            name: "dynamodb",
            env: Some(streamstore_dynamodb::ENDPOINT_ENV),
            factory: || Arc::new(streamstore_dynamodb::DynamoDbFactory),
        },
        Known {
            name: "mongodb",
            env: Some(streamstore_mongodb::URL_ENV),
            factory: || Arc::new(streamstore_mongodb::MongoFactory),
        },
        Known {
            name: "cassandra",
            env: Some(streamstore_cassandra::NODES_ENV),
            factory: || Arc::new(streamstore_cassandra::CassandraFactory),
        },
    ]
}

/// Prints a summary's failed and skipped cases; true if the run failed (a failed case, or no case
/// passed).
fn report(summary: &Summary) -> bool {
    for (case, why) in &summary.failed {
        println!("  failed: {case}: {why}");
    }
    for (case, cap) in &summary.skipped {
        println!(
            "  skipped: {case} (capability `{}` not declared)",
            cap.name()
        );
    }
    !summary.failed.is_empty() || summary.passed.is_empty()
}

fn main() -> ExitCode {
    let known = known();
    let names: Vec<&str> = known.iter().map(|k| k.name).collect();
    let in_containers = containers::selected(&names);
    let selected: Vec<String> = match std::env::var("STREAMSTORE_TEST") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        // The containers path alone: no scripts/services.sh server is needed or used.
        _ if !in_containers.is_empty() => Vec::new(),
        _ => known
            .iter()
            .filter(|k| {
                k.env
                    .is_none_or(|v| std::env::var(v).is_ok_and(|u| !u.is_empty()))
            })
            .map(|k| k.name.to_owned())
            .collect(),
    };
    let filter = std::env::var("STREAMSTORE_TEST_FILTER").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut lines = Vec::new();
    let mut failed = false;
    for name in &selected {
        let Some(k) = known.iter().find(|k| k.name == name) else {
            let names: Vec<_> = known.iter().map(|k| k.name).collect();
            lines.push(format!(
                "conformance {name}: unknown implementation (known: {names:?})"
            ));
            failed = true;
            continue;
        };
        if let Some(var) = k.env {
            if std::env::var(var).map_or(true, |u| u.is_empty()) {
                lines.push(format!(
                    "conformance {name}: {var} is not set; start the servers first"
                ));
                failed = true;
                continue;
            }
        }
        println!("conformance {name}: running");
        let summary = runtime.block_on(run_suite(name, (k.factory)(), &filter));
        failed |= report(&summary);
        lines.push(summary.line());
    }
    for name in &in_containers {
        let Some(k) = known.iter().find(|k| k.name == name) else {
            lines.push(format!(
                "conformance {name} (testcontainers): unknown implementation (known: {names:?})"
            ));
            failed = true;
            continue;
        };
        println!("conformance {name} (testcontainers): starting its server");
        match runtime.block_on(containers::run(name, k.env, (k.factory)(), &filter)) {
            Ok(summary) => {
                failed |= report(&summary);
                lines.push(summary.line());
            }
            Err(why) => {
                lines.push(format!("conformance {name} (testcontainers): {why}"));
                failed = true;
            }
        }
    }
    println!();
    for line in &lines {
        println!("{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
