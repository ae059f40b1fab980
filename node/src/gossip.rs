//! Gossip membership with `chitchat`: joins the cluster through the seeds (`--peers`) and keeps
//! [`Cluster`]'s live set equal to chitchat's failure detector's view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use streamstore::{Error, ErrorKind, Result};

use crate::cluster::Cluster;

/// Every node of one cluster uses the same id; gossip from other clusters is ignored.
pub const CLUSTER_ID: &str = "streamstore-node";

/// Starts gossip on UDP at `listen` (the HTTP listener's address), announcing `advertise`, with
/// `seeds`, and a task that copies the live members into `cluster` every `interval`.
pub async fn start(
    cluster: Arc<Cluster>,
    node_id: &str,
    listen: SocketAddr,
    advertise: SocketAddr,
    seeds: &[String],
    interval: Duration,
) -> Result<ChitchatHandle> {
    // A restarted node is a new generation, so peers do not mistake it for its old self.
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(node_id, generation, advertise),
        cluster_id: CLUSTER_ID.to_owned(),
        gossip_interval: interval,
        listen_addr: listen,
        seed_nodes: seeds.to_vec(),
        failure_detector_config: FailureDetectorConfig {
            // The phi-accrual threshold chitchat and Cassandra use; with heartbeats every
            // `interval`, a silent member is declared dead after roughly 8-10 intervals.
            phi_threshold: 8.0,
            sampling_window_size: 1000,
            max_interval: Duration::from_secs(10),
            initial_interval: interval,
            dead_node_grace_period: Duration::from_secs(3600),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let handle = spawn_chitchat(config, Vec::new(), &UdpTransport)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot gossip on udp {listen}"),
            )
            .with_source(Box::<dyn std::error::Error + Send + Sync>::from(
                e.to_string(),
            ))
        })?;
    let chitchat = handle.chitchat();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let alive: Vec<String> = chitchat
                .lock()
                .await
                .live_nodes()
                .map(|id| id.gossip_advertise_addr.to_string())
                .collect();
            cluster.set_alive(&alive);
        }
    });
    Ok(handle)
}
