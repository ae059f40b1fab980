#!/usr/bin/env bash
# Tail wake p50/p99 under scheduling variants (docs/benchmarks.md, "Tail wake p99").
# Usage: benches/scripts/tail-wake-variants.sh [runs per variant, default 3]
# Needs a release build of streamstore-bench in $CARGO_TARGET_DIR (default target/).
# The chrt variant needs root (SCHED_FIFO priority 1: runs ahead of every normal-priority thread).
set -euo pipefail
runs=${1:-3}
bin=${CARGO_TARGET_DIR:-target}/release/streamstore-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
one() { # label, command prefix... (1,000 appends, one reader waiting)
  local label=$1; shift
  "$@" "$bin" --filter tail --reps 1 --millis 500 --work-dir "$work/w" --out "$work/o" 2>/dev/null \
    | awk -v l="$label" -F'|' '/local-buffered.*tail:/ {gsub(/ /,"",$7); gsub(/ /,"",$8); gsub(/ /,"",$9);
        printf "%-22s p50 %-9s p99 %-9s p99.9 %s\n", l, $7, $8, $9}'
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Interleaved, so a change in the machine's load hits every variant alike.
for i in $(seq "$runs"); do
  one default env
  one "pinned to cpu 0" taskset -c 0
  one "1 tokio worker" env TOKIO_WORKER_THREADS=1
  one "SCHED_FIFO 1 (chrt)" chrt -f 1
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
