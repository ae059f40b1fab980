//! The node: its shared state, its router, and its life from bind to graceful shutdown.

use std::sync::Arc;
use std::time::Duration;
use streamstore::implementor::ErrorShorthand;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
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
    /// [`observe::APPEND_SECONDS`], registered once (the macro would look it up per append).
    pub append_seconds: metrics::Histogram,
    /// [`observe::RECORDS_APPENDED`], registered once.
    pub records_appended: metrics::Counter,
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

/// `GET`/`DELETE` a stream.
pub const STREAM: &str = "/v1/streams/{id}";
/// Append to (`POST`) or read (`GET`) a stream.
pub const RECORDS: &str = "/v1/streams/{id}/records";
/// Follow a stream (Server-Sent Events).
pub const EVENTS: &str = "/v1/streams/{id}/events";
/// Seal a stream.
pub const SEAL: &str = "/v1/streams/{id}/seal";
/// The page for a browser.
pub const INDEX: &str = "/";
/// Health and the node's view of the cluster.
pub const HEALTHZ: &str = "/healthz";
/// Prometheus text.
pub const METRICS: &str = "/metrics";
/// Every route pattern of the node: the `route` label values of
/// [`observe::REQUESTS`].
pub const ROUTES: [&str; 7] = [STREAM, RECORDS, EVENTS, SEAL, INDEX, HEALTHZ, METRICS];

/// The router of a node.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(STREAM, get(api::info).delete(api::delete))
        .route(RECORDS, post(api::append).get(api::read))
        .route(EVENTS, get(events::follow))
        .route(SEAL, post(api::seal))
        .route(INDEX, get(page::index))
        .route(HEALTHZ, get(api::healthz))
        .route(METRICS, get(api::metrics))
        // One layer, not one per concern: each `from_fn` layer costs a boxed future and a boxed
        // clone of the inner service per request.
        .route_layer(from_fn_with_state(Arc::clone(&node), serve_request))
        .layer(DefaultBodyLimit::max(node.config.max_body))
        .with_state(node)
}

/// The per-request layer: a request for a stream goes to its owner ([`forward::to_owner`]: here,
/// or forwarded), and every request is counted by route, method and status
/// ([`observe::count_request`]; a forwarded one with the owner's status).
async fn serve_request(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let route = observe::route_label(&request);
    let method = observe::method_label(request.method());
    let response = forward::to_owner(&node, request, next).await;
    observe::count_request(route, method, response.status());
    response
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
        append_seconds: metrics::histogram!(observe::APPEND_SECONDS),
        records_appended: metrics::counter!(observe::RECORDS_APPENDED),
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
    // No Nagle delay on answers: each is one small write the client waits for.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
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
