//! Helpers of the node's tests: real `streamstore-node` processes and a small SSE client.

#![allow(dead_code)] // each test file uses a different part

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running node process, killed (SIGKILL) when dropped.
pub struct NodeProc {
    /// The process.
    pub child: Child,
    /// `host:port`.
    pub addr: String,
}

impl NodeProc {
    /// Starts `streamstore-node` with `args` (plus `--listen` if not given) and waits for its
    /// "listening on" line.
    pub async fn start(args: &[&str]) -> NodeProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamstore-node"));
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn streamstore-node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("node did not start in 30 s")
            .expect("read stdout")
            .expect("node exited before listening");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeProc { child, addr }
    }

    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("node did not exit within 20 s of SIGTERM")
            .expect("wait")
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// A counter or gauge from `/metrics` (0 if absent).
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> f64 {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| {
                let (n, v) = l.rsplit_once(' ')?;
                (n == name).then(|| v.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

/// A free port on 127.0.0.1 (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A plain HTTP client (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Percent-encodes a stream id for a path segment.
pub fn enc(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One parsed SSE item.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    /// An event: its type (`message` if unnamed), id and data.
    Event {
        /// `event:` or `message`.
        event: String,
        /// `id:`.
        id: Option<String>,
        /// `data:` lines joined with `\n`.
        data: String,
    },
    /// A comment line (`:text`).
    Comment(String),
}

impl Sse {
    /// The record's offset and payload, for record events.
    pub fn record(&self) -> Option<(u64, String)> {
        match self {
            Sse::Event { event, data, .. } if event == "message" => {
                let v: serde_json::Value = serde_json::from_str(data).ok()?;
                Some((v["offset"].as_u64()?, v["payload"].as_str()?.to_owned()))
            }
            _ => None,
        }
    }

    /// The event's type, if an event.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Sse::Event { event, .. } => Some(event),
            Sse::Comment(_) => None,
        }
    }

    /// The event's id.
    pub fn id(&self) -> Option<&str> {
        match self {
            Sse::Event { id, .. } => id.as_deref(),
            Sse::Comment(_) => None,
        }
    }

    /// The event's data as JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Sse::Event { data, .. } => serde_json::from_str(data).expect("data is JSON"),
            Sse::Comment(_) => panic!("a comment has no data"),
        }
    }
}

/// Incremental SSE parser.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the items completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Sse> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(Sse::Event {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        id: self.id.take(),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                self.id = None;
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                out.push(Sse::Comment(c.to_owned()));
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => self.event = Some(value),
                "id" => self.id = Some(value),
                "data" => self.data.push(value),
                _ => {}
            }
        }
        out
    }
}

/// A connected SSE follower.
pub struct Follower {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    queue: std::collections::VecDeque<Sse>,
}

/// What [`Follower::next`] got.
#[derive(Debug)]
pub enum Next {
    /// An item.
    Item(Sse),
    /// The server ended the stream cleanly.
    Closed,
    /// The connection broke.
    Broken(String),
    /// Nothing within the timeout.
    TimedOut,
}

impl Follower {
    /// Connects to `/v1/streams/{id}/events` on `base` (`http://host:port`).
    pub async fn connect(
        client: &reqwest::Client,
        base: &str,
        stream: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Result<Follower> {
        let mut request = client.get(format!("{base}/v1/streams/{}/events", enc(stream)));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await?.error_for_status()?;
        Ok(Follower {
            body: response.bytes_stream().boxed(),
            parser: SseParser::default(),
            queue: Default::default(),
        })
    }

    /// The next item within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Next::Item(item);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::TimedOut,
                Ok(None) => return Next::Closed,
                Ok(Some(Err(e))) => return Next::Broken(e.to_string()),
                Ok(Some(Ok(bytes))) => self.queue.extend(self.parser.feed(&bytes)),
            }
        }
    }

    /// The next event (skipping comments); panics on anything else.
    pub async fn event(&mut self) -> Sse {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Next::Item(Sse::Comment(_)) => continue,
                Next::Item(e) => return e,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
}
