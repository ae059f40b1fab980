#!/usr/bin/env bash
# Install (if missing) and run the real database servers the streamstore test suite talks to,
# on 127.0.0.1, without Docker, on Debian 12 as root.
#
#   scripts/services.sh up    [names...]   install + start + wait until each answers a query,
#                                          then print `export VAR=value` lines on stdout
#   scripts/services.sh down  [names...]   stop them (idempotent)
#   scripts/services.sh env   [names...]   print the export lines of the running servers
#   scripts/services.sh check [names...]   run one real query per server and print its version
#
# Names: postgres mysql cassandra dynamodb mongodb (default: all of them).
# Typical use:  eval "$(scripts/services.sh up)"   or   . ~/.cache/streamstore/services.env
#
# Everything downloaded, built or stored (jars, Go build, moto and the Python clients, data dirs,
# pid files, logs) lives under $STREAMSTORE_CACHE_DIR (default ~/.cache/streamstore), never in the
# repo, so a warm machine starts in seconds. Only the apt packages (postgresql, mariadb-server,
# JDK 17, maven) are installed system-wide. Human progress goes to stderr; stdout carries only exports.
# Side effect outside the cache: `chmod o+x` (search, not read) on $HOME if it lacks it, because
# postgres and mariadbd run as their own users and must reach their data dirs under it.
set -euo pipefail

CACHE=${STREAMSTORE_CACHE_DIR:-$HOME/.cache/streamstore}
LOGS=$CACHE/logs
RUN=$CACHE/run          # pid files of the servers we start ourselves
ENV_FILE=$CACHE/services.env
ALL_SERVICES=(postgres mysql cassandra dynamodb mongodb)

# Versions. Bumping one makes the next `up` fetch/build it into a new versioned directory.
CASSANDRA_VERSION=5.0.9           # org.apache.cassandra:cassandra-all on Maven Central
# DynamoDB API: moto's server (PyPI, Apache-2.0) with the packages it needs to serve HTTP, pinned.
MOTO_PIP=("moto[dynamodb]==5.2.5" "flask==3.1.3" "flask-cors==6.0.5" "werkzeug==3.1.9")
FERRETDB_VERSION=v1.24.2          # github.com/FerretDB/FerretDB via the Go module proxy
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

# Ports (fixed: the test suite and other engineers rely on them).
PG_PORT=55432
MYSQL_PORT=53306
CASSANDRA_PORT=59042
CASSANDRA_STORAGE_PORT=57000
DYNAMODB_PORT=58000
MONGODB_PORT=57017

# Cassandra 5.0 calls System.setSecurityManager(), which JDK 24+ removed and JDK 18-23 refuse
# by default; a newer Temurin may be the machine's default `java`, so always use OpenJDK 17.
JDK17=/usr/lib/jvm/java-17-openjdk-amd64
JAVA17=$JDK17/bin/java

# How long to wait for a server to answer after starting it.
declare -A START_TIMEOUT=([postgres]=60 [mysql]=60 [cassandra]=240 [dynamodb]=60 [mongodb]=60)

log() { echo "[services] $*" >&2; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start a command fully detached (own session, no stdin, output to a log) so it survives this
# script and the shell that ran it. fd 9 is our flock: the daemon must not inherit it.
spawn() { # spawn LOGFILE PIDFILE cmd...
    local logfile=$1 pidfile=$2; shift 2
    setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
}

# Keep one previous log so a fresh start's log is easy to read.
rotate_log() { [[ -s $1 ]] && mv -f "$1" "$1.1"; : >"$1"; }

# The pid file of each server (postgres writes its own; spawn writes the others).
pidfile_of() {
    case $1 in
        postgres) echo "$CACHE/postgres/$PG_MAJOR/data/postmaster.pid" ;;
        *) echo "$RUN/$1.pid" ;;
    esac
}

# A word that must appear in the process's command line, so a recycled pid is not taken for ours.
cmd_marker() {
    case $1 in
        postgres) echo postgres ;; mysql) echo mariadbd ;; cassandra) echo CassandraDaemon ;;
        dynamodb) echo streamstore-moto ;; mongodb) echo ferretdb ;;
    esac
}

# Print the pid of our running server $1, or fail.
running_pid() {
    local f pid
    f=$(pidfile_of "$1")
    [[ -r $f ]] || return 1
    pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(cmd_marker "$1")" || return 1
    echo "$pid"
}

port_of() {
    case $1 in
        postgres) echo $PG_PORT ;; mysql) echo $MYSQL_PORT ;; cassandra) echo $CASSANDRA_PORT ;;
        dynamodb) echo $DYNAMODB_PORT ;; mongodb) echo $MONGODB_PORT ;;
    esac
}

logfile_of() { echo "$LOGS/$1.log"; }

fail_with_log() { # fail_with_log NAME MESSAGE
    local lf
    lf=$(logfile_of "$1")
    echo "[services] ERROR: $1: $2" >&2
    if [[ -s $lf ]]; then
        echo "[services] ---- last 40 lines of $lf ----" >&2
        tail -n 40 "$lf" >&2
        echo "[services] ----" >&2
    fi
    return 1
}

# Run an installer step with its output in a log; on failure show the log's tail.
logged() { # logged LOGNAME cmd...
    local lf=$LOGS/install-$1.log; shift
    if ! "$@" >>"$lf" 2>&1; then
        echo "[services] ERROR: '$*' failed; last lines of $lf:" >&2
        tail -n 30 "$lf" >&2
        return 1
    fi
}

# The postgres user cannot reach a data dir under /root unless every ancestor is traversable.
# Grant only search (o+x), never listing, on the directories that lack it.
ensure_traversable() {
    local d=$1 perm
    while [[ $d != / && -n $d ]]; do
        perm=$(stat -c %a "$d")
        if (( (8#$perm & 1) == 0 )); then
            log "chmod o+x $d (so the postgres/mysql users can reach $CACHE)"
            chmod o+x "$d"
        fi
        d=$(dirname "$d")
    done
}

PG_MAJOR=15
pg_bin() { echo "/usr/lib/postgresql/$PG_MAJOR/bin"; }
# Run a command as the postgres user, from / (it may not read the caller's working directory).
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# The real interpreter behind `python3` (skips a pyenv shim on every call) and the client
# library dir, keyed by Python version because pip --target installs version-specific wheels.
PYTHON='' PYDIR=''
resolve_python() {
    local out
    out=$(python3 -c 'import sys; print(sys.executable, "%d.%d" % sys.version_info[:2])') || return 1
    PYTHON=${out% *}
    PYDIR=$CACHE/py/${out##* }
}

# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    [[ $# -gt 0 ]] || return 0
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        logged apt apt-get update -q || return 1
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive logged apt apt-get install -y -q --no-install-recommends "$@"
}

# System packages each server needs; installed in one apt call.
apt_needs() {
    local pkgs=()
    for s in "$@"; do
        case $s in
            postgres) [[ -x $(pg_bin)/postgres ]] || pkgs+=("postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR") ;;
            mysql) [[ -x /usr/sbin/mariadbd && -x /usr/bin/mariadb ]] || pkgs+=(mariadb-server mariadb-client) ;;
            cassandra)
                [[ -x $JAVA17 ]] || pkgs+=(openjdk-17-jre-headless)
                command -v mvn >/dev/null || pkgs+=(maven)
                ;;
        esac
    done
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
    printf '%s\n' "${pkgs[@]}" | sort -u | grep -v '^$' || true
}

install_system_packages() {
    local pkgs
    mapfile -t pkgs < <(apt_needs "$@")
    [[ ${#pkgs[@]} -gt 0 ]] || return 0
    apt_install "${pkgs[@]}" || return 1
    # The Debian packages' postinst may start a system-wide cluster on 5432 / mariadb on 3306
    # (on machines where policy-rc.d allows it). We never use those; stop them to save memory.
    # Our servers use other ports, sockets, pid files and data dirs, so this is only tidiness.
    if printf '%s\n' "${pkgs[@]}" | grep -q '^postgresql'; then
        pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main stop >/dev/null 2>&1 || true
    fi
    if printf '%s\n' "${pkgs[@]}" | grep -q '^mariadb-server'; then
        invoke-rc.d mariadb stop >/dev/null 2>&1 || true
    fi
}

CASS_LIB=$CACHE/cassandra/lib-$CASSANDRA_VERSION
install_cassandra() {
    [[ -f $CASS_LIB/.complete ]] && return 0
    log "cassandra: resolving org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION and its dependencies from Maven Central"
    mkdir -p "$CACHE/cassandra" || return 1
    # A throwaway pom whose only purpose is to let maven-dependency-plugin copy the runtime
    # classpath of cassandra-all into one directory (there is no tarball on Maven Central).
    cat >"$CACHE/cassandra/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamstore</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$CASS_LIB"
    logged cassandra mvn -B -q -f "$CACHE/cassandra/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
        "$DEP_PLUGIN:copy-dependencies" -DoutputDirectory="$CASS_LIB" -DincludeScope=runtime || return 1
    ls "$CASS_LIB"/jamm-*.jar >/dev/null 2>&1 || { log "cassandra: jamm jar missing from $CASS_LIB"; return 1; }
    touch "$CASS_LIB/.complete" || return 1
}

# moto's own `moto_server` runs werkzeug with one thread per connection, but moto's DynamoDB
# backend takes no lock: TransactWriteItems checks its conditions and applies its writes item by
# item, and rolls back by putting back a deep copy of the whole table, so two concurrent requests
# can both pass a condition, or a rollback can erase another request's write. This launcher (named
# streamstore-moto so `running_pid` recognizes it) serves moto's same WSGI app behind one lock:
# requests run one at a time, as DynamoDB's per-item serializability needs, while connections stay
# keep-alive (HTTP/1.1, one thread each).
install_dynamodb() { # needs resolve_python
    local d=$CACHE/moto/py-${PYDIR##*/} key
    key=$(printf '%s\n' "${MOTO_PIP[@]}")
    if [[ ! -f $d/.complete || $(cat "$d/.complete") != "$key" ]]; then
        log "dynamodb: installing ${MOTO_PIP[*]} into $d"
        rm -rf "$d"
        logged dynamodb "$PYTHON" -m pip install --quiet --disable-pip-version-check \
            --no-cache-dir --no-warn-conflicts --target "$d" "${MOTO_PIP[@]}" || return 1
        echo "$key" >"$d/.complete"
    fi
    mkdir -p "$CACHE/moto" || return 1
    cat >"$CACHE/moto/streamstore-moto.py.tmp" <<'EOF'
"""moto's DynamoDB API on 127.0.0.1:PORT, one request at a time (see scripts/services.sh)."""
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

LOCK = threading.Lock()
APP = DomainDispatcherApplication(create_backend_app)


def serialized(environ, start_response):
    # The body is produced inside the lock too (a WSGI app may compute it lazily).
    with LOCK:
        body = APP(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            close = getattr(body, "close", None)
            if close:
                close()


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
run_simple("127.0.0.1", int(sys.argv[1]), serialized, threaded=True,
           request_handler=MotoRequestHandler)
EOF
    mv -f "$CACHE/moto/streamstore-moto.py.tmp" "$CACHE/moto/streamstore-moto.py"
}

FERRETDB_BIN=$CACHE/bin/ferretdb-$FERRETDB_VERSION
install_mongodb() {
    [[ -x $FERRETDB_BIN ]] && return 0
    command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null || { log "mongodb: FerretDB needs a Go toolchain (go >= 1.21) on PATH"; return 1; }
    log "mongodb: building FerretDB $FERRETDB_VERSION (SQLite backend, pure Go; ~4 min on 2 cores)"
    # Keep Go's module and build caches under our cache too.
    export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS="-trimpath -buildvcs=false"
    # Not `go install ...@version`: (1) the module proxy here refuses FerretDB's @v/list, which
    # `go install` needs for its deprecation check; (2) a binary built straight from the module
    # panics at start-up because build/version/version.txt (normally generated by their Taskfile)
    # is absent. So download the exact version, copy its source, write version.txt, build it.
    local dir src=$CACHE/src/ferretdb-$FERRETDB_VERSION
    dir=$(cd /tmp && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>>"$LOGS/install-mongodb.log" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n $dir && -d $dir ]] || { log "mongodb: go mod download of FerretDB $FERRETDB_VERSION failed"; tail -n 20 "$LOGS/install-mongodb.log" >&2; return 1; }
    rm -rf "$src"
    mkdir -p "$CACHE/src" "$CACHE/bin" || return 1
    cp -r "$dir" "$src" && chmod -R u+w "$src" || return 1
    echo "$FERRETDB_VERSION" >"$src/build/version/version.txt" || return 1
    echo "streamstore-services" >"$src/build/version/package.txt" || return 1
    (cd "$src" && logged mongodb go build -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb) || return 1
    mv -f "$FERRETDB_BIN.tmp" "$FERRETDB_BIN" || return 1
    # The binary is all a warm start needs; Go's module and build caches for it take ~1 GB.
    go clean -cache -modcache >/dev/null 2>&1 || true
}

# Real clients used to prove the servers answer: the DataStax Python driver for Cassandra,
# boto3 for DynamoDB (moto), pymongo for FerretDB (psql and mariadb come with the apt packages).
install_python_clients() {
    local d=$PYDIR
    [[ -f $d/.complete ]] && return 0
    log "installing Python clients (cassandra-driver, boto3, pymongo) into $d"
    rm -rf "$d"
    # CASS_DRIVER_NO_CYTHON: never compile the driver with Cython if no wheel matches.
    CASS_DRIVER_NO_CYTHON=1 logged python "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --no-cache-dir --no-warn-conflicts --target "$d" cassandra-driver pymongo boto3 || return 1
    touch "$d/.complete"
}

# Run an install step; report its duration when it had work to do (took a second or more).
timed() {
    local t=$SECONDS
    "$@" || return 1
    ((SECONDS - t < 1)) || log "$1: done in $((SECONDS - t)) s"
}

# Software installs that are independent of each other run in parallel (the FerretDB build is
# CPU-bound, the Maven/pip downloads are network-bound).
install_all() {
    local -a pids=() what=()
    local s rc=0 i
    install_system_packages "$@" || return 1
    resolve_python || return 1
    for s in "$@"; do
        case $s in
            cassandra) timed install_cassandra & pids+=($!) what+=(cassandra) ;;
            dynamodb) timed install_dynamodb & pids+=($!) what+=(dynamodb) ;;
            mongodb) timed install_mongodb & pids+=($!) what+=(mongodb) ;;
        esac
    done
    if printf '%s\n' "$@" | grep -qE '^(cassandra|dynamodb|mongodb)$'; then
        timed install_python_clients & pids+=($!) what+=(python-clients)
    fi
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { log "install of ${what[$i]} failed"; rc=1; }
    done
    return $rc
}

# ---------------------------------------------------------------------------------------------
# Queries through real clients (readiness and `check`)
# ---------------------------------------------------------------------------------------------

# pyq KIND: one query via the Python client, printing the server-reported version on stdout.
pyq() {
    PYTHONPATH=$PYDIR "$PYTHON" - "$1" <<'PY'
import sys, warnings
warnings.filterwarnings("ignore")
kind = sys.argv[1]
if kind == "cassandra":
    import logging
    logging.disable(logging.CRITICAL)  # driver chatter about protocol negotiation
    from cassandra.cluster import Cluster
    cluster = Cluster(["127.0.0.1"], port=59042, connect_timeout=5)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        print("Apache Cassandra %s" % row.release_version)
    finally:
        cluster.shutdown()
elif kind == "mongodb":
    from pymongo import MongoClient
    c = MongoClient("mongodb://127.0.0.1:57017", serverSelectionTimeoutMS=3000)
    info = c.admin.command("buildInfo")
    fv = info.get("ferretdbVersion")
    if fv:
        print("FerretDB %s (MongoDB wire %s)" % (fv, info["version"]))
    else:
        print("MongoDB %s" % info["version"])
elif kind == "dynamodb":
    import boto3
    c = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:58000", region_name="us-east-1",
                     aws_access_key_id="streamstore", aws_secret_access_key="streamstore")
    r = c.list_tables()
    print("%d tables, server %s" % (len(r["TableNames"]),
                                    r["ResponseMetadata"]["HTTPHeaders"].get("server", "?")))
# Skip interpreter shutdown: joining the drivers' monitor threads costs ~1 s per call.
sys.stdout.flush()
import os
os._exit(0)
PY
}

pg_query_as_app() { # SQL -> one value, through TCP with the application's credentials
    PGPASSWORD=streamstore PGCONNECT_TIMEOUT=3 "$(pg_bin)/psql" -X -q -At \
        -h 127.0.0.1 -p $PG_PORT -U streamstore -d streamstore -c "$1"
}
pg_super() { # psql as the postgres superuser over our private unix socket (peer auth)
    as_postgres "$(pg_bin)/psql" -X -q -At -v ON_ERROR_STOP=1 \
        -h "$CACHE/postgres/run" -p $PG_PORT -d postgres "$@"
}
my_query_as_app() {
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P $MYSQL_PORT -u streamstore -pstreamstore \
        --connect-timeout=3 -N -B streamstore -e "$1"
}
my_root() { mariadb --no-defaults -u root --socket="$CACHE/mysql/run/mysqld.sock" --connect-timeout=3 "$@"; }

ddb_list_tables_curl() {
    # moto accepts any SigV4-shaped Authorization header (signatures are not checked).
    curl -sf -m 3 -X POST "http://127.0.0.1:$DYNAMODB_PORT/" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=streamstore/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00' \
        -d '{}' | grep -q TableNames
}

# Cheap "does it answer a query" probe used while waiting and for the idempotent fast path.
answers() {
    case $1 in
        postgres) [[ $(pg_query_as_app 'SELECT 1' 2>/dev/null) == 1 ]] ;;
        mysql) [[ $(my_query_as_app 'SELECT 1' 2>/dev/null) == 1 ]] ;;
        cassandra) port_open $CASSANDRA_PORT && pyq cassandra >/dev/null 2>&1 ;;
        dynamodb) ddb_list_tables_curl ;;
        mongodb) port_open $MONGODB_PORT && pyq mongodb >/dev/null 2>&1 ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Start / provision / stop, per server
# ---------------------------------------------------------------------------------------------

start_postgres() {
    local data=$CACHE/postgres/$PG_MAJOR/data run=$CACHE/postgres/run lf
    lf=$(logfile_of postgres)
    ensure_traversable "$CACHE" || return 1
    mkdir -p "$CACHE/postgres/$PG_MAJOR" "$run" || return 1
    chown postgres:postgres "$CACHE/postgres" "$CACHE/postgres/$PG_MAJOR" "$run" || return 1
    if [[ ! -f $data/PG_VERSION ]]; then
        log "postgres: initdb $data"
        rm -rf "$data"
        # root cannot run postgres: the cluster belongs to the postgres user.
        # Local socket: peer (used only by this script as the superuser); TCP: passwords.
        logged postgres as_postgres "$(pg_bin)/initdb" -D "$data" -U postgres \
            -E UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 || return 1
        cat >>"$data/postgresql.conf" <<EOF || return 1

# --- streamstore test server (scripts/services.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$run'   # private socket dir: never collides with a system cluster
max_connections = 300              # parallel cargo tests each open a pool
EOF
    fi
    rotate_log "$lf"
    chown postgres:postgres "$lf" || return 1
    # setsid: the postmaster gets its own session, so it outlives this script and its caller's
    # process group. -W: do not wait here; cmd_up waits for a real query.
    (cd / && setsid runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$data" -l "$lf" -W start >/dev/null 9>&-)
}
provision_postgres() {
    pg_super -c 'SELECT 1' >/dev/null 2>&1 || return 1
    pg_super >/dev/null <<'SQL'
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'streamstore') THEN
    CREATE ROLE streamstore LOGIN PASSWORD 'streamstore' CREATEDB;
  END IF;
END$$;
SQL
    if [[ -z $(pg_super -c "SELECT 1 FROM pg_database WHERE datname = 'streamstore'") ]]; then
        pg_super -c 'CREATE DATABASE streamstore OWNER streamstore' >/dev/null
    fi
}
stop_postgres() {
    as_postgres "$(pg_bin)/pg_ctl" -D "$CACHE/postgres/$PG_MAJOR/data" -m fast -w -t 60 stop >/dev/null
}

start_mysql() {
    local data=$CACHE/mysql/data run=$CACHE/mysql/run lf
    lf=$(logfile_of mysql)
    ensure_traversable "$CACHE" || return 1
    mkdir -p "$CACHE/mysql" "$run" || return 1
    chown mysql:mysql "$CACHE/mysql" "$run" || return 1
    if [[ ! -d $data/mysql ]]; then
        log "mysql: mariadb-install-db $data"
        rm -rf "$data"
        # --no-defaults: ignore /etc/mysql/* (system server's port/socket/datadir).
        # root@localhost authenticates by unix_socket, i.e. only root on this machine.
        logged mysql mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
            --auth-root-authentication-method=socket --skip-test-db || return 1
    fi
    rotate_log "$lf"
    chown mysql:mysql "$lf" || return 1
    # Started as root, mariadbd switches to the mysql user (--user), since it refuses to run as root.
    # utf8mb4: MariaDB 10.11's compiled-in default is latin1; MySQL 8 defaults to utf8mb4.
    # skip-name-resolve: '127.0.0.1' is never turned into 'localhost' when matching accounts.
    spawn "$lf" "$RUN/mysql.pid" /usr/sbin/mariadbd --no-defaults --user=mysql \
        --datadir="$data" --bind-address=127.0.0.1 --port=$MYSQL_PORT \
        --socket="$run/mysqld.sock" --pid-file="$run/mariadbd.pid" --log-error="$lf" \
        --skip-name-resolve --max-connections=300 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
}
provision_mysql() {
    my_root -e 'SELECT 1' >/dev/null 2>&1 || return 1
    # streamstore may create/drop streamstore_* databases, for per-test isolation.
    my_root <<'SQL'
CREATE DATABASE IF NOT EXISTS streamstore;
CREATE USER IF NOT EXISTS 'streamstore'@'%' IDENTIFIED BY 'streamstore';
CREATE USER IF NOT EXISTS 'streamstore'@'localhost' IDENTIFIED BY 'streamstore';
GRANT ALL PRIVILEGES ON `streamstore`.* TO 'streamstore'@'%', 'streamstore'@'localhost';
GRANT ALL PRIVILEGES ON `streamstore\_%`.* TO 'streamstore'@'%', 'streamstore'@'localhost';
FLUSH PRIVILEGES;
SQL
}
stop_mysql() { stop_pid mysql; }

cassandra_write_conf() {
    local conf=$CACHE/cassandra/conf
    mkdir -p "$conf" "$CACHE/cassandra/data" "$CACHE/cassandra/triggers" || return 1
    cat >"$conf/cassandra.yaml" <<EOF
# Minimal single-node Cassandra for tests (written by scripts/services.sh on every start).
cluster_name: streamstore
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch   # DC "datacenter1", rack "rack1"
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$CASSANDRA_STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
auto_bootstrap: false
commitlog_sync: batch           # fsync before acknowledging: the adapter declares durable_reads
auto_snapshot: false            # DROP/TRUNCATE would snapshot otherwise: slow, fills the disk
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
concurrent_compactors: 1
materialized_views_enabled: true
sasi_indexes_enabled: true
paxos_variant: v2               # 2 round trips per LWT instead of v1's 4 (the streamstore adapter's appends)
EOF
    cat >"$conf/logback.xml" <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
    # JPMS flags from Cassandra 5.0's conf/jvm17-server.options: its code reaches into JDK
    # internals (off-heap memory, JMX, netty, jamm object sizing) that Java 17 closes by default.
    cat >"$conf/jvm17.args" <<'EOF'
-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-exports java.base/java.lang.ref=ALL-UNNAMED
--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens java.base/sun.nio.ch=ALL-UNNAMED
--add-opens java.base/java.io=ALL-UNNAMED
--add-opens java.base/java.lang.reflect=ALL-UNNAMED
--add-opens java.base/java.lang=ALL-UNNAMED
--add-opens java.base/java.util=ALL-UNNAMED
--add-opens java.base/java.nio=ALL-UNNAMED
--add-opens java.base/java.util.concurrent=ALL-UNNAMED
--add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
EOF
}
start_cassandra() {
    local c=$CACHE/cassandra lf jamm
    lf=$(logfile_of cassandra)
    cassandra_write_conf || return 1
    jamm=$(ls "$CASS_LIB"/jamm-*.jar | head -n1)
    rotate_log "$lf"
    # -javaagent jamm: Cassandra measures object sizes with it (CASSANDRA-16304).
    # -Dcassandra.storagedir: parent of data/commitlog/hints/saved_caches (the yaml omits them).
    # skip_wait_for_gossip_to_settle=0: single node, nothing to wait for (saves >= 5 s).
    # superuser_setup_delay_ms=0, load_ring_state=false: faster single-node boot.
    # unsafesystem: no fsync of system tables (test server; user tables keep commitlog semantics).
    # The daemon itself has no root check (only bin/cassandra has one).
    spawn "$lf" "$RUN/cassandra.pid" "$JAVA17" \
        -Xms512m -Xmx1g -Xss256k -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.net.preferIPv4Stack=true -ea -da:net.openhft... \
        -javaagent:"$jamm" @"$c/conf/jvm17.args" \
        -Dcassandra-foreground=yes \
        -Dcassandra.config="file://$c/conf/cassandra.yaml" \
        -Dcassandra.storagedir="$c/data" -Dcassandra.logdir="$LOGS" \
        -Dcassandra.triggers_dir="$c/triggers" \
        -Dlogback.configurationFile="$c/conf/logback.xml" \
        -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.load_ring_state=false \
        -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.unsafesystem=true \
        -cp "$CASS_LIB/*" org.apache.cassandra.service.CassandraDaemon
}

start_dynamodb() {
    local lf
    lf=$(logfile_of dynamodb)
    rotate_log "$lf"
    # In memory only: tests create their own tables; nothing outlives a restart (moto has no
    # persistence). Any access key and region is accepted.
    spawn "$lf" "$RUN/dynamodb.pid" env PYTHONPATH="$CACHE/moto/py-${PYDIR##*/}" \
        "$PYTHON" "$CACHE/moto/streamstore-moto.py" $DYNAMODB_PORT
}

start_mongodb() {
    local d=$CACHE/ferretdb lf
    lf=$(logfile_of mongodb)
    mkdir -p "$d/data" "$d/state" || return 1
    rotate_log "$lf"
    # --debug-addr=-: no HTTP debug/metrics listener (it would take port 8088).
    # --telemetry=disable: no beacon calls.
    spawn "$lf" "$RUN/mongodb.pid" "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$d/data/" \
        --listen-addr=127.0.0.1:$MONGODB_PORT --state-dir="$d/state" --debug-addr=- \
        --telemetry=disable --log-level=warn
}

# SIGTERM, wait up to 60 s (Cassandra drains on TERM), then SIGKILL.
stop_pid() {
    local pid i
    pid=$(running_pid "$1") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$1: still alive after 60 s, SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------------------------------------
# Environment lines
# ---------------------------------------------------------------------------------------------

env_lines() {
    case $1 in
        postgres) echo "export STREAMSTORE_POSTGRES_URL=postgres://streamstore:streamstore@127.0.0.1:$PG_PORT/streamstore" ;;
        mysql) echo "export STREAMSTORE_MYSQL_URL=mysql://streamstore:streamstore@127.0.0.1:$MYSQL_PORT/streamstore" ;;
        cassandra) echo "export STREAMSTORE_CASSANDRA_NODES=127.0.0.1:$CASSANDRA_PORT" ;;
        dynamodb)
            echo "export STREAMSTORE_DYNAMODB_ENDPOINT=http://127.0.0.1:$DYNAMODB_PORT"
            echo "export AWS_ACCESS_KEY_ID=streamstore"
            echo "export AWS_SECRET_ACCESS_KEY=streamstore"
            echo "export AWS_REGION=us-east-1"
            echo "export AWS_DEFAULT_REGION=us-east-1" # older SDKs/boto3 read only this one
            ;;
        mongodb) echo "export STREAMSTORE_MONGODB_URL=mongodb://127.0.0.1:$MONGODB_PORT" ;;
    esac
}

# services.env lists the servers that are running now, so sourcing it never points tests at a
# stopped server (tests skip a backend whose variable is unset).
write_env_file() {
    local s tmp=$ENV_FILE.tmp
    {
        echo "# Written by scripts/services.sh; servers running at $(date -u +%FT%TZ)"
        for s in "${ALL_SERVICES[@]}"; do
            running_pid "$s" >/dev/null && env_lines "$s"
        done
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------

validate_names() {
    local s ok
    for s in "$@"; do
        ok=0
        for a in "${ALL_SERVICES[@]}"; do [[ $s == "$a" ]] && ok=1; done
        [[ $ok == 1 ]] || die "unknown server '$s' (known: ${ALL_SERVICES[*]})"
    done
}

cmd_up() {
    local s pid deadline grace rc=0 failed=()
    local -A t0=() quick=()
    [[ $EUID -eq 0 ]] || die "run as root (apt installs; postgres/mariadbd are started as their own users)"
    # Refuse to "find" a foreign server on one of our ports and report it as ours.
    for s in "$@"; do
        if ! running_pid "$s" >/dev/null && port_open "$(port_of "$s")"; then
            die "$s: port $(port_of "$s") on 127.0.0.1 is in use by a process this script did not start (see: ss -ltnp 'sport = :$(port_of "$s")')"
        fi
    done
    install_all "$@" || die "installation failed (logs: $LOGS/install-*.log)"

    # Already-running servers: probe them all at once (keeps a no-op `up` around a second).
    for s in "$@"; do
        if pid=$(running_pid "$s"); then
            log "$s: already running (pid $pid)"
            answers "$s" >/dev/null 2>&1 &
            quick[$s]=$!
        fi
    done

    # Start the others, all before waiting on any: their boots overlap (Cassandra dominates).
    for s in "$@"; do
        [[ -z ${quick[$s]:-} ]] || continue
        log "$s: starting"
        t0[$s]=$SECONDS
        if ! "start_$s"; then
            fail_with_log "$s" "failed to launch" || true
            failed+=("$s")
            rc=1
        fi
    done

    for s in "$@"; do
        [[ " ${failed[*]} " != *" $s "* ]] || continue
        if [[ -n ${quick[$s]:-} ]] && wait "${quick[$s]}"; then
            log "$s: answers on 127.0.0.1:$(port_of "$s")"
            continue
        fi
        deadline=$((SECONDS + START_TIMEOUT[$s]))
        # postmaster.pid appears only once the postmaster runs; the others' pid files at once.
        grace=3
        [[ $s != postgres ]] || grace=10
        while true; do
            if [[ $s == postgres || $s == mysql ]]; then
                # Create the role/user and database (idempotent) before the app-level probe.
                "provision_$s" 2>/dev/null && answers "$s" && break
            else
                answers "$s" && break
            fi
            if ! running_pid "$s" >/dev/null && ((SECONDS > ${t0[$s]:-0} + grace)); then
                fail_with_log "$s" "the server process is not running (it exited or never started)" || true
                rc=1
                continue 2
            fi
            if ((SECONDS >= deadline)); then
                fail_with_log "$s" "did not answer a query within ${START_TIMEOUT[$s]} s" || true
                rc=1
                continue 2
            fi
            sleep 1
        done
        if [[ -n ${t0[$s]:-} ]]; then
            log "$s: answers on 127.0.0.1:$(port_of "$s") (ready in $((SECONDS - t0[$s])) s)"
        else
            log "$s: answers on 127.0.0.1:$(port_of "$s")"
        fi
    done

    write_env_file
    for s in "$@"; do running_pid "$s" >/dev/null && env_lines "$s"; done
    log "environment also written to $ENV_FILE"
    return $rc
}

cmd_down() {
    local s
    for s in "$@"; do
        if running_pid "$s" >/dev/null; then
            log "$s: stopping"
            if [[ $s == postgres ]]; then
                stop_postgres || log "postgres: pg_ctl stop failed (see $(logfile_of postgres))"
            else
                stop_pid "$s"
            fi
        else
            log "$s: not running"
        fi
        [[ $s == postgres ]] || rm -f "$RUN/$s.pid"
    done
    write_env_file
}

cmd_env() {
    local s
    for s in "$@"; do
        if running_pid "$s" >/dev/null; then env_lines "$s"; else log "$s: not running (no exports)"; fi
    done
}

cmd_check() {
    local s out rc=0 ver
    resolve_python || die "python3 is needed for check (run: scripts/services.sh up)"
    for s in "$@"; do
        if ! running_pid "$s" >/dev/null; then
            echo "$s: NOT RUNNING"; rc=1; continue
        fi
        case $s in
            postgres) out=$(pg_query_as_app 'SELECT version()' 2>&1) && out="${out%% on *} answers (SELECT version())" ;;
            mysql) out=$(my_query_as_app 'SELECT version()' 2>&1) && out="MariaDB $out answers (SELECT version())" ;;
            cassandra) out=$(pyq cassandra 2>&1) && out="$out answers (SELECT release_version FROM system.local)" ;;
            dynamodb)
                # The API has no version call; ask the installed moto package.
                ver=$(PYTHONPATH="$CACHE/moto/py-${PYDIR##*/}" "$PYTHON" -c 'import moto; print(moto.__version__)' 2>/dev/null)
                out=$(pyq dynamodb 2>&1) && out="moto ${ver:-?} answers (ListTables via boto3: $out)" ;;
            mongodb) out=$(pyq mongodb 2>&1) && out="$out answers (buildInfo via pymongo; SQLite backend)" ;;
        esac || { echo "$s: FAILED: $(tail -n 3 <<<"$out" | tr '\n' ' ')"; rc=1; continue; }
        echo "$s: $out"
    done
    return $rc
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
    shift
    local names=("$@")
    [[ ${#names[@]} -gt 0 ]] || names=("${ALL_SERVICES[@]}")
    validate_names "${names[@]}"
    mkdir -p "$LOGS" "$RUN"
    if [[ $cmd == up || $cmd == down ]]; then
        # One `up`/`down` at a time (a second concurrent `up` would start duplicates).
        exec 9>"$CACHE/.lock"
        flock -w 600 9 || die "another scripts/services.sh up/down is still running"
    fi
    case $cmd in
        up) cmd_up "${names[@]}" ;;
        down) cmd_down "${names[@]}" ;;
        env) cmd_env "${names[@]}" ;;
        check) cmd_check "${names[@]}" ;;
        *) die "unknown command '$cmd' (use: up, down, env, check)" ;;
    esac
}

main "$@"
