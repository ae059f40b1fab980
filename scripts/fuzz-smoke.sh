#!/usr/bin/env bash
# A short cargo-fuzz run of the on-disk decoders (fuzz/, outside the workspace): CI's smoke test.
# Needs the nightly toolchain (libFuzzer); installs cargo-fuzz from crates.io if it is missing.
# Usage: scripts/fuzz-smoke.sh [seconds]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke: SKIPPED (no nightly Rust toolchain on this machine; libFuzzer needs it)"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
# Builds outside the clone, like every other build of the project.
export CARGO_TARGET_DIR=${STREAMSTORE_FUZZ_TARGET:-$HOME/.cache/streamstore/target-fuzz}
corpus=$HOME/.cache/streamstore/fuzz-corpus/decoders
mkdir -p "$corpus"
cargo +nightly fuzz run decoders "$corpus" -- -max_total_time="$seconds" 2>&1 | tail -n 5
echo "fuzz smoke: decoders ran ${seconds}s without a crash"
