#!/usr/bin/env bash
# Install (if missing) the server peers of the benchmark harness, on Debian 12 as root:
#
#   scripts/peers.sh install [redis|nats ...]   install what is missing (default: both)
#   scripts/peers.sh env     [redis|nats ...]   print `export STREAMSTORE_*_SERVER=...` lines
#
# - Redis: Debian's `redis-server` package (`apt-get install -y redis-server`). Installing it does
#   not leave a server running that the harness needs: the harness starts its own redis-server
#   per case on a free loopback port with a private data dir and stops it afterwards.
# - NATS: `nats-server` built with `go install github.com/nats-io/nats-server/v2@$NATS_VERSION`
#   into $STREAMSTORE_CACHE_DIR/bin (default ~/.cache/streamstore/bin), as
#   `nats-server-$NATS_VERSION` plus a `nats-server` link the harness finds. Needs Go (>= 1.24).
#
# The harness (`streamstore-bench`) finds the binaries through STREAMSTORE_REDIS_SERVER /
# STREAMSTORE_NATS_SERVER, else ~/.cache/streamstore/bin/nats-server, else PATH; a peer it cannot
# find is reported as skipped, with the reason, not as a failure. Progress goes to stderr; stdout
# carries only the export lines of `env`.
set -euo pipefail

CACHE=${STREAMSTORE_CACHE_DIR:-$HOME/.cache/streamstore}
LOGS=$CACHE/logs
# Pinned; bumping it makes the next `install` build the new version beside the old one.
NATS_VERSION=v2.14.9
NATS_BIN=$CACHE/bin/nats-server-$NATS_VERSION

log() { echo "[peers] $*" >&2; }
die() { echo "[peers] ERROR: $*" >&2; exit 1; }

logged() { # logged LOGNAME cmd...
    local lf=$LOGS/install-$1.log; shift
    if ! "$@" >>"$lf" 2>&1; then
        log "'$*' failed; last lines of $lf:"
        tail -n 30 "$lf" >&2
        return 1
    fi
}

redis_bin() { command -v redis-server || true; }

install_redis() {
    [[ -n $(redis_bin) ]] && return 0
    log "redis: apt-get install redis-server"
    logged redis apt-get update -q
    DEBIAN_FRONTEND=noninteractive logged redis apt-get install -y -q --no-install-recommends redis-server
    # A distribution that starts a system-wide server on 6379 is left alone: the harness never
    # uses it (it runs its own instances on free ports).
    [[ -n $(redis_bin) ]] || die "redis-server still missing after apt-get install"
}

install_nats() {
    if [[ ! -x $NATS_BIN ]]; then
        command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
        command -v go >/dev/null || die "nats: building nats-server needs a Go toolchain on PATH"
        log "nats: go install github.com/nats-io/nats-server/v2@$NATS_VERSION (~2-4 min on 2 cores)"
        local gobin=$CACHE/go/nats-bin
        mkdir -p "$gobin" "$CACHE/bin"
        # Go's module and build caches stay under our cache and are cleaned afterwards (~0.5 GB).
        GOBIN=$gobin GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build \
            GOFLAGS="-trimpath -buildvcs=false" \
            logged nats go install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
        mv -f "$gobin/nats-server" "$NATS_BIN"
        GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build go clean -cache -modcache >/dev/null 2>&1 || true
    fi
    ln -sfn "$(basename "$NATS_BIN")" "$CACHE/bin/nats-server"
}

main() {
    local cmd=${1:-install}; shift || true
    local names=("$@")
    [[ ${#names[@]} -gt 0 ]] || names=(redis nats)
    mkdir -p "$LOGS"
    for n in "${names[@]}"; do
        case $n in redis|nats) ;; *) die "unknown peer '$n' (redis, nats)" ;; esac
    done
    case $cmd in
        install)
            for n in "${names[@]}"; do "install_$n"; done
            log "installed: ${names[*]}"
            ;;
        env)
            for n in "${names[@]}"; do
                case $n in
                    redis) if [[ -n $(redis_bin) ]]; then echo "export STREAMSTORE_REDIS_SERVER=$(redis_bin)"; fi ;;
                    nats) if [[ -x $NATS_BIN ]]; then echo "export STREAMSTORE_NATS_SERVER=$NATS_BIN"; fi ;;
                esac
            done
            ;;
        *) die "usage: scripts/peers.sh install|env [redis|nats ...]" ;;
    esac
}

main "$@"
