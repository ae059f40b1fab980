#!/usr/bin/env bash
# Starts a local streamstore-node cluster in the foreground; Ctrl-C stops it.
#
#   scripts/cluster.sh
#
# If the project's PostgreSQL server is running (scripts/services.sh up postgres), three nodes
# share it: 127.0.0.1:7071, :7072 and :7073, each with the other two as --peers. Otherwise one
# node runs on 127.0.0.1:7071 with the local engine in ~/.cache/streamstore/node-data (a cluster
# needs a store every node shares). Extra arguments are passed to every node.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/streamstore/target}
bin=${STREAMSTORE_NODE_BIN:-}    # a prebuilt binary, else a release build
if [[ -z "$bin" ]]; then
  cargo build --release -q -p streamstore-node
  bin=$CARGO_TARGET_DIR/release/streamstore-node
fi

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop EXIT INT TERM

pg_url=$(scripts/services.sh env postgres 2>/dev/null | sed -n 's/^export STREAMSTORE_POSTGRES_URL=//p')
if [[ -n "$pg_url" ]]; then
  addrs=(127.0.0.1:7071 127.0.0.1:7072 127.0.0.1:7073)
  echo "[cluster] 3 nodes on PostgreSQL (tables node_*): ${addrs[*]}" >&2
  for i in 0 1 2; do
    peers=$(printf '%s\n' "${addrs[@]}" | grep -vx "${addrs[$i]}" | paste -sd,)
    "$bin" --listen "${addrs[$i]}" --node-id "node$i" --peers "$peers" \
      --store "$pg_url?table_prefix=node_" "$@" &
    pids+=($!)
    # The first node creates the tables before the others open them.
    [[ $i == 0 ]] && sleep 1
  done
else
  echo "[cluster] PostgreSQL is not running: one node on the local engine at 127.0.0.1:7071" >&2
  "$bin" --listen 127.0.0.1:7071 --node-id node0 \
    --store "$HOME/.cache/streamstore/node-data" "$@" &
  pids+=($!)
fi
echo "[cluster] follow a stream in a browser: http://127.0.0.1:7071/?stream=job%2F42" >&2
wait
