//! `--store URL`: which implementation, where.

use std::sync::Arc;
use streamstore::implementor::ErrorShorthand;

use serde_json::json;
use streamstore::{Durability, Error, LocalOptions, LocalStore, MemoryStore, Result, StreamStore};

use crate::output::emit;
use crate::stats_json;

/// An opened store, plus what the CLI can do with its concrete type.
pub struct Opened {
    /// The store, as every command uses it.
    pub store: Arc<dyn StreamStore>,
    kind: Kind,
}

/// The local engine keeps its concrete type (verify, stats); every other store is a name.
enum Kind {
    Local(Arc<LocalStore>),
    Other(&'static str),
}

/// Parses `--durability`: `sync`, `buffered` or `interval:<ms>`.
pub fn parse_durability(s: &str) -> Result<Durability> {
    match s {
        "sync" => Ok(Durability::Sync),
        "buffered" => Ok(Durability::Buffered),
        other => other
            .strip_prefix("interval:")
            .and_then(|ms| ms.parse().ok())
            .map(|ms| Durability::Interval(std::time::Duration::from_millis(ms)))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--durability takes sync, buffered or interval:<ms>, not {other:?}"
                ))
            }),
    }
}

/// The schemes `open_store` knows, for the error that names them.
const SCHEMES: &str = "a directory path, file://, memory:, postgres://, mysql://, mongodb://, \
                       cassandra://, dynamodb://";

/// Opens the store named by `url`.
pub async fn open_store(url: &str, durability: Durability) -> Result<Opened> {
    if url == "memory:" || url == "memory://" {
        return Ok(Opened::other("memory", MemoryStore::new()));
    }
    if let Some(path) = local_path(url) {
        let options = LocalOptions::default().durability(durability);
        let store = Arc::new(LocalStore::open(path, options).await?);
        let report = store.recovery_report();
        if report.has_damage() {
            eprintln!("streamstore: recovery found damage: {report:?}");
        }
        return Ok(Opened {
            store: Arc::clone(&store) as Arc<dyn StreamStore>,
            kind: Kind::Local(store),
        });
    }
    // The error names the scheme only: a URL may carry a password.
    let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
    Ok(match scheme {
        "postgres" | "postgresql" => Opened::other(
            "postgres",
            streamstore_postgres::PostgresStore::connect_url(url).await?,
        ),
        "mysql" | "mariadb" => Opened::other(
            "mysql",
            streamstore_mysql::MysqlStore::connect_url(url).await?,
        ),
        "mongodb" | "mongodb+srv" => Opened::other(
            "mongodb",
            streamstore_mongodb::MongoStore::connect_url(url).await?,
        ),
        "dynamodb" => Opened::other(
            // `dynamodb://host:port/table?region=..` (a local server) or `dynamodb://aws/table`;
            // credentials from the standard AWS environment, never from the URL.
            "dynamodb",
            streamstore_dynamodb::DynamoDbStore::connect_url(url).await?,
        ),
        "cassandra" => Opened::other(
            "cassandra",
            streamstore_cassandra::CassandraStore::connect_url(url).await?,
        ),
        _ => {
            return Err(Error::invalid(format!(
                "unknown store URL scheme {scheme:?}: use {SCHEMES}"
            )))
        }
    })
}

/// A plain path (no scheme) or a `file://` URL names a local engine directory.
fn local_path(url: &str) -> Option<&str> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(path);
    }
    (!url.contains("://") && !url.starts_with("memory:")).then_some(url)
}

impl Opened {
    fn other(name: &'static str, store: impl StreamStore) -> Opened {
        Opened {
            store: Arc::new(store),
            kind: Kind::Other(name),
        }
    }

    /// `verify`: checks every checksum (local engine only).
    pub async fn verify(&self) -> Result<()> {
        match &self.kind {
            Kind::Local(local) => verify_local(local).await,
            Kind::Other(_) => Err(Error::unsupported(
                "verify (checksums exist only in the local engine's files)",
            )),
        }
    }

    /// `stats`: implementation-specific numbers plus the capabilities.
    pub async fn stats(&self) -> Result<()> {
        let caps = self.store.capabilities();
        if let Kind::Local(local) = &self.kind {
            let report = local.recovery_report();
            let stats = local.stats();
            let pinned: Vec<_> = local
                .pinned_segments()
                .into_iter()
                .map(|p| json!({"segment": p.segment, "streams": p.streams.iter().map(|s| s.as_str()).collect::<Vec<_>>()}))
                .collect();
            return emit(&json!({
                "store": "local",
                "dir": local.dir().display().to_string(),
                "segments": local.segment_count(),
                "open_files": local.open_files(),
                "pinned_segments": pinned,
                "recovery": stats_json::recovery(&report),
                "events": stats_json::events(&stats),
                "queue": stats_json::queue(&stats.queue),
                "capabilities": stats_json::capabilities(&caps),
            }))
            .map_err(|e| Error::new(streamstore::ErrorKind::Unavailable, "stdout").with_source(e));
        }
        let kind = match &self.kind {
            Kind::Local(_) => "local",
            Kind::Other(name) => name,
        };
        emit(&json!({ "store": kind, "capabilities": stats_json::capabilities(&caps) }))
            .map_err(|e| Error::new(streamstore::ErrorKind::Unavailable, "stdout").with_source(e))
    }
}

/// Checks every checksum of the local engine's segment files, with a progress bar on stderr.
async fn verify_local(local: &Arc<LocalStore>) -> Result<()> {
    let dir = local.dir().to_path_buf();
    let report = tokio::task::spawn_blocking(move || {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("verify {bar:40} {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let result = streamstore::local::verify_dir(&dir, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        result
    })
    .await
    .map_err(|e| {
        Error::new(streamstore::ErrorKind::Internal, "verify panicked").with_source(e)
    })??;
    for p in &report.problems {
        emit(&json!({"problem": p.reason, "file": p.file.display().to_string(), "position": p.position}))
            .map_err(stdout_err)?;
    }
    emit(&json!({
        "segments": report.segments, "frames": report.frames, "records": report.records,
        "bytes": report.bytes, "problems": report.problems.len(),
    }))
    .map_err(stdout_err)?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            streamstore::ErrorKind::Corruption,
            format!(
                "{} damaged place(s) found; they are never served",
                report.problems.len()
            ),
        ))
    }
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::new(
        streamstore::ErrorKind::Unavailable,
        "cannot write to stdout",
    )
    .with_source(e)
}
