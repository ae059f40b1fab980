//! Command-line options of `streamstore-node`.

use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use clap::Parser;
use streamstore::{Error, Result};

/// `streamstore-node --listen ADDR --store URL [--node-id ID --peers host:port,...]`
#[derive(Parser, Clone, Debug)]
#[command(name = "streamstore-node", version, about)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the node prints the one it got).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// The address other nodes reach this one at (its name on the hash ring). Defaults to the
    /// address actually bound.
    #[arg(long)]
    pub advertise: Option<String>,
    /// The store, as `streamstore --store` takes it: a directory (the local engine), `memory:`,
    /// `postgres://…`, `mysql://…`. A cluster needs a store that every node shares.
    #[arg(long, default_value = "./streamstore-node-data")]
    pub store: String,
    /// When the local engine acknowledges: `sync`, `buffered` or `interval:<ms>`.
    #[arg(long, default_value = "sync")]
    pub durability: String,
    /// This node's name in logs, `/healthz` and metrics. Defaults to the advertised address.
    #[arg(long)]
    pub node_id: Option<String>,
    /// Seeds to join the cluster through, `host:port,...` (other members' advertised addresses;
    /// one live member is enough, the rest is learnt by gossip).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Largest request body in bytes (one record, or an NDJSON batch).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Records per read of an SSE connection: with `--sse-batch-bytes`, bounds what one
    /// connection holds in memory beyond the socket's buffers.
    #[arg(long, default_value_t = 64)]
    pub sse_batch: usize,
    /// Payload bytes per read of an SSE connection (the first record is always read whole).
    #[arg(long, default_value_t = 256 << 10)]
    pub sse_batch_bytes: usize,
    /// Interval of the heartbeat comments on idle SSE connections, e.g. `15s`, `500ms`.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Longest `wait` a long-poll read may ask for.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// How often the node gossips (membership and heartbeats, UDP on the listen address). A
    /// member that stops is declared dead after roughly 8-10 of these.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub gossip_interval: Duration,
}

/// Parses `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::invalid(format!("a duration is like 30s, 500ms or 2m, not {s:?}"));
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        for bad in ["", "s", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
