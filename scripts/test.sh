#!/usr/bin/env bash
# Runs every test of the project, the way CI does and a new user should:
#   1. installs (if missing) and starts the real database servers (scripts/services.sh up),
#   2. runs the whole workspace test suite, including the conformance suite against every
#      implementation whose server is up (it prints `conformance <name>: N passed, ...`),
#      and the matching node's tests (a real Chromium installed by scripts/chromium.sh),
#   3. fuzzes the on-disk decoders for 30 s (scripts/fuzz-smoke.sh).
#
# Build output goes to ~/.cache/streamstore/target (outside the clone) so reruns are warm.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/streamstore/target}

started=$(date +%s)
eval "$(scripts/services.sh up)"
scripts/services.sh check
# Headless Chromium for the node's browser test (Debian's package).
STREAMSTORE_CHROMIUM=$(scripts/chromium.sh)
export STREAMSTORE_CHROMIUM
echo "[test] servers ready after $(( $(date +%s) - started )) s" >&2

cargo test --workspace --all-targets
cargo test --workspace --doc
scripts/fuzz-smoke.sh 30
echo "[test] all tests done after $(( $(date +%s) - started )) s" >&2
