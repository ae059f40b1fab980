#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium if it is missing, and prints its path on stdout.
# The node's browser test (node/tests/browser.rs) uses it; scripts/test.sh calls this first and
# exports STREAMSTORE_CHROMIUM. Progress goes to stderr.
set -euo pipefail

find_chromium() {
  command -v chromium || command -v chromium-browser || true
}

bin=$(find_chromium)
if [[ -z "$bin" ]]; then
  echo "[chromium] installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || true
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  bin=$(find_chromium)
fi
if [[ -z "$bin" ]]; then
  echo "[chromium] chromium is not installed and could not be installed" >&2
  exit 1
fi
echo "$bin"
