//! Server peers (Redis, NATS) as child processes of the harness: found on this machine, started
//! on a free loopback port with a private data dir inside the case's directory, stopped when the
//! case closes them (or when dropped: `kill_on_drop`).
//!
//! `scripts/peers.sh install` installs both (Debian's `redis-server`; `nats-server` built with
//! `go install` at a pinned version into `~/.cache/streamstore/bin`). A server that cannot be
//! found makes its cases skipped, with [`find`]'s reason, not failed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::backend::Result;

/// A server program the harness can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `redis-server`.
    Redis,
    /// `nats-server` (with JetStream).
    Nats,
    /// `streamstore-node`, this workspace's matching node.
    Node,
}

impl Program {
    /// The environment variable that names the binary.
    pub fn env(self) -> &'static str {
        match self {
            Program::Redis => "STREAMSTORE_REDIS_SERVER",
            Program::Nats => "STREAMSTORE_NATS_SERVER",
            // The name `examples/node_sse.rs` reads too.
            Program::Node => "STREAMSTORE_NODE_BIN",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Program::Redis => "redis-server",
            Program::Nats => "nats-server",
            Program::Node => "streamstore-node",
        }
    }
}

/// The binary of `program`: its environment variable ([`Program::env`]), else (the node) the
/// directory of the running harness binary (`target/release/` when both were built there), else
/// `~/.cache/streamstore/bin/<name>` (where `scripts/peers.sh` puts `nats-server`), else `PATH`.
/// `Err` holds why it is skipped.
pub fn find(program: Program) -> Result<PathBuf, String> {
    let name = program.file_name();
    if let Some(p) = std::env::var_os(program.env()).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} = {} is not a file", program.env(), p.display()))
        };
    }
    // The node is built by this workspace, next to the harness (`examples/` sit one level down).
    let beside_harness = std::env::current_exe()
        .ok()
        .filter(|_| program == Program::Node)
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .map(|dir| {
            let up = dir.parent().map(Path::to_path_buf);
            std::iter::once(dir).chain(up)
        })
        .into_iter()
        .flatten();
    let cache_bin =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/streamstore/bin"));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    beside_harness
        .chain(cache_bin)
        .chain(path_dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let install = match program {
                Program::Redis => "scripts/peers.sh install redis",
                Program::Nats => "scripts/peers.sh install nats",
                Program::Node => "cargo build --release -p streamstore-node",
            };
            format!("{name} not installed ({install}; or set {})", program.env())
        })
}

/// A loopback port nobody listens on right now (the OS picks it; the server binds it a moment
/// later, so another process could take it in between: then the start fails and says so).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
}

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    log: PathBuf,
    name: &'static str,
}

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Runs `program` with `args`, output to `log`, and waits until `127.0.0.1:port` accepts
    /// connections. The process is killed if this fails or the `Server` is dropped.
    pub async fn start(program: Program, args: &[String], port: u16, log: &Path) -> Result<Server> {
        let bin = find(program)?;
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut server = Server {
            child,
            port,
            log: log.to_path_buf(),
            name: program.file_name(),
        };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(server.failure(&format!("exited with {status} before listening")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(server.failure(&format!("not listening after {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An error naming the server, with the end of its log.
    fn failure(&self, what: &str) -> crate::backend::BoxError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{} on port {} {what}: {}",
            self.name,
            self.port,
            tail.join(" | ")
        )
        .into()
    }

    /// Kills the server and waits for it to exit. Its data dir is thrown away with the case's
    /// directory, so nothing needs a clean shutdown.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
