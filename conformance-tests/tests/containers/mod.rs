//! The testcontainers path: each selected backend's server is started in a container, the suite
//! runs against it, and the container is removed.
//!
//! - `STREAMSTORE_CONTAINERS=postgres,dynamodb` (or `all`) selects the backends; unset, the path
//!   is off, so a machine without Docker runs the suite against `scripts/services.sh` servers.
//! - `STREAMSTORE_IMAGE_<NAME>=repo:tag` replaces the official image by a local one built by
//!   `scripts/containers.sh build` (it prints these variables); no pull happens for an image the
//!   daemon has.
//! - `STREAMSTORE_CONTAINERS_NETWORK=host|mapped`: host networking (the server listens on
//!   127.0.0.1 and a free port picked here, passed by environment) or a port mapping from the
//!   container's own network. Default: host for local images, mapped for official ones.
//! - Docker is found as testcontainers does (`DOCKER_HOST`, then the default socket).

mod servers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamkeep_conformance::{run_suite, Factory, Summary};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use servers::{Launch, Server, SERVERS};

/// The variable that turns the path on and lists the backends.
pub const SELECT_ENV: &str = "STREAMSTORE_CONTAINERS";
const NETWORK_ENV: &str = "STREAMSTORE_CONTAINERS_NETWORK";

/// The backends selected by `STREAMSTORE_CONTAINERS` (`all`: every one `known` names that has a
/// server here), in the order given.
pub fn selected(known: &[&str]) -> Vec<String> {
    let list = std::env::var(SELECT_ENV).unwrap_or_default();
    if list.trim() == "all" {
        return known
            .iter()
            .filter(|k| SERVERS.iter().any(|s| s.name == **k))
            .map(|k| (*k).to_owned())
            .collect();
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The image to run: the local override if set, else the official one.
fn image_of(server: &Server) -> (String, String, bool) {
    let var = format!("STREAMSTORE_IMAGE_{}", server.name.to_uppercase());
    match std::env::var(&var) {
        Ok(image) if !image.trim().is_empty() => {
            let image = image.trim();
            // The tag follows the last ':' unless that ':' belongs to a registry's port.
            match image.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned(), true),
                _ => (image.to_owned(), "latest".to_owned(), true),
            }
        }
        _ => (
            server.official.0.to_owned(),
            server.official.1.to_owned(),
            false,
        ),
    }
}

fn host_network(local: bool) -> std::result::Result<bool, String> {
    match std::env::var(NETWORK_ENV).as_deref() {
        Ok("host") => Ok(true),
        Ok("mapped") => Ok(false),
        Ok("") | Err(_) => Ok(local),
        Ok(other) => Err(format!("{NETWORK_ENV}={other:?}: use `host` or `mapped`")),
    }
}

/// A port of 127.0.0.1 free right now, and the one after it (Cassandra's storage port).
///
/// The kernel picks the first; it is released before the server binds it, so another process
/// could take it in between: the server then fails to start and the run reports that.
async fn free_port() -> std::result::Result<u16, String> {
    for _ in 0..32 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("no free port: {e}"))?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        if port < u16::MAX
            && tokio::net::TcpListener::bind(("127.0.0.1", port + 1))
                .await
                .is_ok()
        {
            return Ok(port);
        }
    }
    Err("no two adjacent free ports on 127.0.0.1".into())
}

/// Sets the process's variables for the backend's factory; restores the previous ones on drop.
///
/// The factories read their server's address from the environment when they open a store. The
/// variables change only between suite runs, from the main thread, while no case runs.
struct EnvGuard(Vec<(String, Option<String>)>);

impl EnvGuard {
    fn set(vars: &[(String, String)]) -> Self {
        let saved = vars
            .iter()
            .map(|(k, v)| {
                let old = std::env::var(k).ok();
                std::env::set_var(k, v);
                (k.clone(), old)
            })
            .collect();
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (k, old) in self.0.drain(..) {
            match old {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

/// A started container and where its server answers.
struct Started {
    container: ContainerAsync<GenericImage>,
    host: String,
    port: u16,
    what: String,
}

async fn start(server: &Server) -> std::result::Result<Started, String> {
    let (repo, tag, local) = image_of(server);
    let host_net = host_network(local)?;
    let host_port = if host_net {
        Some(free_port().await?)
    } else {
        None
    };
    let launch = if local {
        // The local images' protocol: LISTEN and PORT (see scripts/containers.sh).
        Launch {
            cmd: Vec::new(),
            env: match host_port {
                Some(p) => vec![
                    ("LISTEN".into(), "127.0.0.1".into()),
                    ("PORT".into(), p.to_string()),
                ],
                None => Vec::new(),
            },
        }
    } else {
        server.official_launch(host_port)
    };
    // Readiness is a store that opens (below), the same test for every server; the image's
    // own log lines differ per product and version.
    let mut image = GenericImage::new(repo.as_str(), tag.as_str()).with_wait_for(WaitFor::Nothing);
    if !host_net {
        image = image.with_exposed_port(ContainerPort::Tcp(server.port));
    }
    let mut request = image
        .with_label("streamstore.conformance", server.name)
        .with_startup_timeout(Duration::from_secs(server.ready_secs));
    if host_net {
        request = request.with_network("host");
    }
    if !launch.cmd.is_empty() {
        request = request.with_cmd(launch.cmd);
    }
    for (k, v) in launch.env {
        request = request.with_env_var(k, v);
    }
    let container = request
        .start()
        .await
        .map_err(|e| format!("cannot start {repo}:{tag}: {e}"))?;
    let (host, port) = match host_port {
        Some(p) => ("127.0.0.1".to_owned(), p),
        None => {
            let host = container.get_host().await.map_err(|e| e.to_string())?;
            let port = container
                .get_host_port_ipv4(server.port)
                .await
                .map_err(|e| e.to_string())?;
            (host.to_string(), port)
        }
    };
    let what = format!(
        "{repo}:{tag}, {} networking, {host}:{port}",
        if host_net { "host" } else { "mapped-port" }
    );
    Ok(Started {
        container,
        host,
        port,
        what,
    })
}

/// The last lines of the container's output, for a server that did not come up.
async fn tail_of(container: &ContainerAsync<GenericImage>) -> String {
    let mut out = container.stdout_to_vec().await.unwrap_or_default();
    out.extend(container.stderr_to_vec().await.unwrap_or_default());
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until a store of the backend opens against the new server (a real round trip).
async fn wait_ready(
    started: &Started,
    factory: &dyn Factory,
    budget: Duration,
) -> std::result::Result<(), String> {
    const NS: &str = "tcready";
    let deadline = Instant::now() + budget;
    loop {
        let attempt = match tokio::time::timeout(Duration::from_secs(15), factory.open(NS)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("opening a store timed out after 15 s".to_owned()),
        };
        match attempt {
            Ok(store) => {
                let _ = store.close().await;
                let _ = factory.destroy(NS).await;
                return Ok(());
            }
            Err(e) => {
                let running = started.container.is_running().await.unwrap_or(false);
                if !running || Instant::now() >= deadline {
                    let why = if running {
                        "did not answer in time"
                    } else {
                        "exited"
                    };
                    return Err(format!(
                        "server {why} (last error: {e}); its output:\n{}",
                        tail_of(&started.container).await
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Runs the suite against backend `name` in a container. `var` is the variable its factory
/// reads. The summary is named `<name> (testcontainers)`.
pub async fn run(
    name: &str,
    var: Option<&str>,
    factory: Arc<dyn Factory>,
    filter: &str,
) -> std::result::Result<Summary, String> {
    let server = SERVERS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no container recipe for `{name}`"))?;
    let var = var.ok_or_else(|| format!("`{name}` reads no server variable"))?;
    let t0 = Instant::now();
    let started = start(server).await?;
    let mut vars = vec![(var.to_owned(), (server.value)(&started.host, started.port))];
    for (k, v) in server.client_env {
        if std::env::var(k).is_err() {
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    let guard = EnvGuard::set(&vars);
    let ready = wait_ready(
        &started,
        factory.as_ref(),
        Duration::from_secs(server.ready_secs),
    )
    .await;
    println!(
        "conformance {name} (testcontainers): {} {} in {} ms",
        started.what,
        if ready.is_ok() { "ready" } else { "NOT ready" },
        t0.elapsed().as_millis()
    );
    let outcome = match ready {
        Ok(()) => {
            let mut summary = run_suite(name, factory, filter).await;
            summary.name = format!("{name} (testcontainers)");
            Ok(summary)
        }
        Err(e) => Err(e),
    };
    drop(guard);
    if let Err(e) = started.container.rm().await {
        eprintln!("  warning: removing the {name} container failed: {e}");
    }
    outcome
}
