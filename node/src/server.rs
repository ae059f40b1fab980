//! The node: its shared state, its router, and its life from bind to graceful shutdown.

use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use streamstore::{Error, ErrorKind, Result, StreamStore};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::{api, events, forward, gossip, observe, page};

/// What every handler shares.
pub struct Node {
    /// The store this node serves its streams from.
    pub store: Arc<dyn StreamStore>,
    /// Members and ownership.
    pub cluster: Arc<Cluster>,
    /// The HTTP client that forwards requests.
    pub client: reqwest::Client,
    /// The options the node was started with.
    pub config: Config,
    /// This node's name.
    pub id: String,
    /// Whether reads ask for durable records only: always where the store can tell, so a client is
    /// never handed a record that a crash could take back (and then give another offset).
    pub durable: bool,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Turns `true` when the node starts shutting down: SSE streams and long polls end.
    pub shutdown: watch::Receiver<bool>,
}

impl Node {
    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which also only happens at shutdown.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// The router of a node.
pub fn router(node: Arc<Node>) -> Router {
    let streams = Router::new()
        .route("/v1/streams/{id}", get(api::info).delete(api::delete))
        .route("/v1/streams/{id}/records", post(api::append).get(api::read))
        .route("/v1/streams/{id}/events", get(events::follow))
        .route("/v1/streams/{id}/seal", post(api::seal))
        .route_layer(from_fn_with_state(Arc::clone(&node), forward::to_owner));
    Router::new()
        .merge(streams)
        .route("/", get(page::index))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route_layer(from_fn(observe::count_requests))
        .layer(DefaultBodyLimit::max(node.config.max_body))
        .with_state(node)
}

/// Opens the store, serves until SIGTERM or Ctrl-C, ends every SSE stream, closes the store.
pub async fn run(config: Config) -> Result<()> {
    let durability = streamstore_cli::store_url::parse_durability(&config.durability)?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| io_error(format!("cannot listen on {}", config.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| io_error("local address".into(), e))?;
    let advertise = match &config.advertise {
        Some(a) => resolve(a).await?,
        None => bound,
    };
    let me = advertise.to_string();
    let id = config.node_id.clone().unwrap_or_else(|| me.clone());
    // Before the store opens: the engine sets its recovery gauge during the open, and a figure
    // emitted with no recorder installed is dropped.
    let metrics = observe::install();
    let store = streamstore_cli::store_url::open_store(&config.store, durability)
        .await?
        .store;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, "HTTP client").with_source(e))?;
    let cluster = Arc::new(Cluster::new(me, &config.peers));
    let (stop, shutdown) = watch::channel(false);
    let node = Arc::new(Node {
        durable: store.capabilities().durable_reads,
        store: Arc::clone(&store),
        cluster: Arc::clone(&cluster),
        client,
        metrics,
        id: id.clone(),
        config,
        shutdown,
    });
    // Gossip runs on every node, so a lone node can be the seed others join through; without
    // seeds, a node that cannot gossip still serves on its own.
    let gossip = match gossip::start(
        Arc::clone(&cluster),
        &id,
        bound,
        advertise,
        &node.config.peers,
        node.config.gossip_interval,
    )
    .await
    {
        Ok(handle) => Some(handle),
        Err(e) if node.config.peers.is_empty() => {
            eprintln!("streamstore-node {id}: no gossip, serving alone: {e}");
            None
        }
        Err(e) => return Err(e),
    };
    // Tests and scripts read this line to learn the port.
    println!("streamstore-node {id} listening on http://{bound}");
    let app = router(node);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            eprintln!("streamstore-node {id}: shutting down");
            let _ = stop.send(true);
        })
        .await;
    if let Some(gossip) = gossip {
        // Leave quietly: the peers' failure detectors take this node out of their live sets.
        let _ = gossip.shutdown().await;
    }
    let closed = store.close().await;
    served.map_err(|e| io_error("serve".into(), e))?;
    closed
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Resolves `--advertise` (`ip:port` or `host:port`) to the address peers reach.
async fn resolve(addr: &str) -> Result<std::net::SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| io_error(format!("cannot resolve --advertise {addr}"), e))?
        .next()
        .ok_or_else(|| Error::invalid(format!("--advertise {addr} resolves to no address")))
}

fn io_error(what: String, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, what).with_source(e)
}
