//! The servers the testcontainers path can start: per backend, its official image, how that image
//! is told to listen on a given port of the host's network, and the value of the variable the
//! backend's factory reads.
//!
//! Local images (built by `scripts/containers.sh build`) all follow one protocol instead: the
//! server listens on `$LISTEN:$PORT` (default `0.0.0.0` and the image's usual port) and the
//! account `streamstore`/`streamstore` with a database `streamstore` exists where it applies.

/// One backend's server.
pub struct Server {
    /// The runner's name of the backend (`Known::name`).
    pub name: &'static str,
    /// The official image and its tag, used unless `STREAMSTORE_IMAGE_<NAME>` names another.
    pub official: (&'static str, &'static str),
    /// The port the server listens on inside its own network namespace (mapped ports).
    pub port: u16,
    /// Seconds from the container's start to the first store that opens.
    pub ready_secs: u64,
    /// The value of the backend's variable (its URL, nodes or endpoint) for a server at
    /// `host:port`.
    pub value: fn(&str, u16) -> String,
    /// Variables the test process needs besides the backend's own, set only where unset.
    pub client_env: &'static [(&'static str, &'static str)],
}

/// How an official image is started: the command arguments and environment of its container.
#[derive(Default)]
pub struct Launch {
    /// Arguments passed as the container's command (empty: the image's default).
    pub cmd: Vec<String>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Server {
    /// The launch of the official image: with `host_port`, on the host's network listening on
    /// 127.0.0.1 and that port only (a second port a server needs is `host_port + 1`); without,
    /// on its usual port in its own network namespace (mapped ports).
    pub fn official_launch(&self, host_port: Option<u16>) -> Launch {
        let p = host_port.map(|p| p.to_string()).unwrap_or_default();
        match (self.name, host_port) {
            // The image's entrypoint initializes the cluster from these, then runs the command.
            ("postgres", _) => Launch {
                cmd: if host_port.is_some() {
                    strings(&["postgres", "-c", "listen_addresses=127.0.0.1", "-p", &p])
                } else {
                    strings(&["postgres"])
                }
                .into_iter()
                .chain(strings(&["-c", "max_connections=300"]))
                .collect(),
                env: pairs(&[
                    ("POSTGRES_USER", "streamstore"),
                    ("POSTGRES_PASSWORD", "streamstore"),
                    ("POSTGRES_DB", "streamstore"),
                ]),
            },
            ("mysql", _) => Launch {
                // --mysqlx=OFF: the X protocol's second port (33060) would be taken on the host.
                cmd: if host_port.is_some() {
                    strings(&["mysqld", "--bind-address=127.0.0.1", &format!("--port={p}")])
                } else {
                    strings(&["mysqld"])
                }
                .into_iter()
                .chain(strings(&["--mysqlx=OFF", "--max-connections=300"]))
                .collect(),
                env: pairs(&[
                    ("MYSQL_ROOT_PASSWORD", "streamstore"),
                    ("MYSQL_USER", "streamstore"),
                    ("MYSQL_PASSWORD", "streamstore"),
                    ("MYSQL_DATABASE", "streamstore"),
                ]),
            },
            ("cassandra", Some(port)) => Launch {
                cmd: Vec::new(),
                env: vec![
                    ("CASSANDRA_LISTEN_ADDRESS".into(), "127.0.0.1".into()),
                    ("CASSANDRA_RPC_ADDRESS".into(), "127.0.0.1".into()),
                    ("CASSANDRA_SEEDS".into(), "127.0.0.1".into()),
                    ("MAX_HEAP_SIZE".into(), "1G".into()),
                    ("HEAP_NEWSIZE".into(), "256M".into()),
                    (
                        "JVM_EXTRA_OPTS".into(),
                        format!(
                            "-Dcassandra.native_transport_port={port} \
                             -Dcassandra.storage_port={} \
                             -Dcassandra.skip_wait_for_gossip_to_settle=0",
                            port.saturating_add(1)
                        ),
                    ),
                ],
            },
            ("cassandra", None) => Launch {
                cmd: Vec::new(),
                env: pairs(&[("MAX_HEAP_SIZE", "1G"), ("HEAP_NEWSIZE", "256M")]),
            },
            ("mongodb", Some(_)) => Launch {
                cmd: strings(&["mongod", "--bind_ip", "127.0.0.1", "--port", &p]),
                env: Vec::new(),
            },
            // moto's image runs `moto_server -H 0.0.0.0`; a later -H wins.
            ("dynamodb", Some(_)) => Launch {
                cmd: strings(&["-H", "127.0.0.1", "-p", &p]),
                env: Vec::new(),
            },
            _ => Launch::default(),
        }
    }
}

/// Every backend the testcontainers path knows.
pub const SERVERS: &[Server] = &[
    Server {
        name: "postgres",
        official: ("postgres", "17"),
        port: 5432,
        ready_secs: 60,
        value: |h, p| format!("postgres://streamstore:streamstore@{h}:{p}/streamstore"),
        client_env: &[],
    },
    Server {
        name: "mysql",
        official: ("mysql", "8"),
        port: 3306,
        ready_secs: 120,
        value: |h, p| format!("mysql://streamstore:streamstore@{h}:{p}/streamstore"),
        client_env: &[],
    },
    Server {
        name: "cassandra",
        official: ("cassandra", "5"),
        port: 9042,
        ready_secs: 240,
        value: |h, p| format!("{h}:{p}"),
        client_env: &[],
    },
    Server {
        name: "mongodb",
        official: ("mongo", "7"),
        port: 27017,
        ready_secs: 60,
        value: |h, p| format!("mongodb://{h}:{p}"),
        client_env: &[],
    },
    Server {
        name: "dynamodb",
        official: ("motoserver/moto", "5.1.0"),
        port: 5000,
        ready_secs: 60,
        value: |h, p| format!("http://{h}:{p}"),
        // moto accepts any credentials; the SDK only needs some.
        client_env: &[
            ("AWS_ACCESS_KEY_ID", "streamstore"),
            ("AWS_SECRET_ACCESS_KEY", "streamstore"),
            ("AWS_REGION", "us-east-1"),
        ],
    },
];
