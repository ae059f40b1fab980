//! The adapter's configuration, read from a `cassandra://` URL.

use std::fmt;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use scylla::statement::Consistency;
use streamstore::{Error, Result};

/// The table prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "streamstore_";

/// The keyspace used when the URL names none.
pub const DEFAULT_KEYSPACE: &str = "streamstore";

/// Records per bucket (partition) before the stream rolls to the next one: at 1 KiB per record
/// a bucket stays near 32 MiB, well under Cassandra's 100 MB large-partition warning.
pub const DEFAULT_BUCKET_SIZE: u64 = 32_768;

/// The watcher's full pass unless the URL says `wait_full_ms=` (see
/// [`CassandraConfig::full_pass`]).
pub const DEFAULT_FULL_PASS: Duration = Duration::from_secs(30);

/// Where and how to connect.
///
/// Built from a URL: `cassandra://[user:password@]host:port[,host:port…]/keyspace?table_prefix=app_`
/// with the options `table_prefix` (default `streamstore_`), `replication_factor` (SimpleStrategy,
/// default 1, used only when the keyspace is created), `consistency` (`local_quorum` (default),
/// `quorum`, `all`, `each_quorum`, `local_one`, `one`), `bucket_size` (default 32768 records;
/// it must never change for existing tables), and the waiting-read settings `wait_tick_ms` (the
/// watcher's tick, default 250) and `wait_full_ms` (its full pass, default 30000). `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace (created with SimpleStrategy if missing).
    pub keyspace: String,
    prefix: String,
    /// Replication factor of a keyspace this adapter creates.
    pub replication_factor: u32,
    /// Consistency of reads and of the commit of writes (LWT use LOCAL_SERIAL).
    pub consistency: Consistency,
    /// Records per bucket before a stream rolls to its next partition.
    pub bucket_size: u64,
    user: Option<(String, String)>,
    /// The watcher's tick: how often the heads of waited-on streams are read (± 5 %; appends
    /// through the same store wake their readers at once).
    pub poll_interval: Duration,
    /// How often the watcher reads the heads of every waited-on stream (spread over the ticks
    /// or at once, as the watcher does); the ticks in between read only the change hints. Bounds
    /// how long a change whose hint was lost waits to be noticed by another store object. A pass
    /// costs one statement per 10 waited-on streams: the default, [`DEFAULT_FULL_PASS`] (30 s),
    /// keeps 10,000 waiters near 33 statements/s.
    pub full_pass: Duration,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
}

/// Whether `s` is a valid table prefix or keyspace name: `[a-z][a-z0-9_]{0,23}` (Cassandra
/// names are at most 48 characters; the prefix leaves room for the table names).
fn valid_name(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

fn consistency(s: &str) -> Result<Consistency> {
    Ok(match s {
        "local_quorum" => Consistency::LocalQuorum,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        "one" => Consistency::One,
        _ => {
            return Err(Error::invalid(
                "consistency must be one of local_quorum, quorum, all, each_quorum, local_one, one",
            ))
        }
    })
}

impl CassandraConfig {
    /// A configuration for `nodes` (`host:port`, comma-separated) and `keyspace`, with defaults.
    pub fn new(nodes: &str, keyspace: &str) -> Result<Self> {
        let nodes: Vec<String> = nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if nodes.is_empty() {
            return Err(Error::invalid("a Cassandra URL needs at least one host"));
        }
        if !valid_name(keyspace, 48) {
            return Err(Error::invalid(
                "a keyspace name matches [a-z][a-z0-9_]{0,47}",
            ));
        }
        Ok(CassandraConfig {
            nodes,
            keyspace: keyspace.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            replication_factor: 1,
            consistency: Consistency::LocalQuorum,
            bucket_size: DEFAULT_BUCKET_SIZE,
            user: None,
            poll_interval: Duration::from_millis(250),
            full_pass: DEFAULT_FULL_PASS,
            sweep_interval: Duration::from_secs(1),
        })
    }

    /// Parses a `cassandra://` URL. Invalid input is `InvalidArgument`, and the message never
    /// quotes the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("cassandra://")
            .ok_or_else(|| Error::invalid("a Cassandra URL starts with cassandra://"))?;
        // `url` parses one host only: the authority holds the whole list, so the URL is parsed
        // with the first host and the list is taken from the authority.
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(cut);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let first = hosts.split(',').next().unwrap_or("");
        let single = match userinfo {
            Some(u) => format!("cassandra://{u}@{first}{tail}"),
            None => format!("cassandra://{first}{tail}"),
        };
        let parsed = url::Url::parse(&single)
            .map_err(|_| Error::invalid("the Cassandra URL does not parse"))?;
        let keyspace = parsed.path().trim_start_matches('/');
        let keyspace = if keyspace.is_empty() {
            DEFAULT_KEYSPACE
        } else {
            keyspace
        };
        let mut config = CassandraConfig::new(hosts, keyspace)?;
        if !parsed.username().is_empty() {
            let user = percent(parsed.username())?;
            let password = percent(parsed.password().unwrap_or(""))?;
            config.user = Some((user, password));
        }
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "table_prefix" => config = config.with_prefix(&v)?,
                "replication_factor" => {
                    config.replication_factor =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            Error::invalid("replication_factor is a positive integer")
                        })?;
                }
                "consistency" => config.consistency = consistency(&v)?,
                "bucket_size" => {
                    config.bucket_size = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| Error::invalid("bucket_size is a positive integer"))?;
                }
                "wait_tick_ms" => config.poll_interval = millis(&v, "wait_tick_ms")?,
                "wait_full_ms" => config.full_pass = millis(&v, "wait_full_ms")?,
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown Cassandra URL option {k:?} (known: table_prefix, \
                         replication_factor, consistency, bucket_size, wait_tick_ms, \
                         wait_full_ms)"
                    )))
                }
            }
        }
        Ok(config)
    }

    /// Sets the table prefix: `[a-z][a-z0-9_]{0,23}`.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        if !valid_name(prefix, 24) {
            return Err(Error::invalid(
                "a table prefix matches [a-z][a-z0-9_]{0,23}",
            ));
        }
        prefix.clone_into(&mut self.prefix);
        Ok(self)
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn credentials(&self) -> Option<&(String, String)> {
        self.user.as_ref()
    }
}

/// A positive number of milliseconds (URL option `name`).
fn millis(v: &str, name: &str) -> Result<Duration> {
    v.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .map(|n| Duration::from_millis(u64::from(n)))
        .ok_or_else(|| Error::invalid(format!("{name} is a positive integer (milliseconds)")))
}

fn percent(s: &str) -> Result<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::invalid("bad credentials in the Cassandra URL"))
}

impl fmt::Debug for CassandraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("replication_factor", &self.replication_factor)
            .field("consistency", &self.consistency)
            .field("bucket_size", &self.bucket_size)
            .field("poll_interval", &self.poll_interval)
            .field("full_pass", &self.full_pass)
            .field("sweep_interval", &self.sweep_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_options_and_hides_the_password() {
        let c = CassandraConfig::from_url(
            "cassandra://u:hunter2@h1:9042,h2:9043/ks?table_prefix=a_&bucket_size=64&consistency=quorum",
        )
        .unwrap();
        assert_eq!(c.nodes, vec!["h1:9042", "h2:9043"]);
        assert_eq!(c.keyspace, "ks");
        assert_eq!(c.prefix(), "a_");
        assert_eq!(c.bucket_size, 64);
        assert_eq!(c.consistency, Consistency::Quorum);
        let w = CassandraConfig::from_url("cassandra://h:1/ks?wait_tick_ms=100&wait_full_ms=60000")
            .unwrap();
        assert_eq!(w.poll_interval, Duration::from_millis(100));
        assert_eq!(w.full_pass, Duration::from_secs(60));
        assert!(CassandraConfig::from_url("cassandra://h:1/ks?wait_full_ms=0").is_err());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let d = CassandraConfig::from_url("cassandra://h:1").unwrap();
        assert_eq!(
            (d.keyspace.as_str(), d.prefix()),
            (DEFAULT_KEYSPACE, DEFAULT_PREFIX)
        );
        assert!(CassandraConfig::from_url("cassandra://h:1/ks?table_prefix=Bad").is_err());
        assert!(CassandraConfig::from_url("cassandra://h:1/ks?nope=1").is_err());
        assert!(CassandraConfig::from_url("postgres://h:1/ks").is_err());
        assert!(CassandraConfig::from_url("cassandra://h:1/ks;drop").is_err());
    }
}
