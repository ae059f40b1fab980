#!/usr/bin/env bash
# Runs every test of the project, the way CI does and a new user should:
#   1. installs (if missing) and starts the real database servers (scripts/services.sh up),
#   2. runs the whole workspace test suite, including the conformance suite against every
#      implementation whose server is up (it prints `conformance <name>: N passed, ...`),
#      and the matching node's tests (a real Chromium installed by scripts/chromium.sh),
#   3. fuzzes the on-disk decoders for 30 s (scripts/fuzz-smoke.sh),
#   4. only if STREAMSTORE_CONTAINERS names databases (`postgres,dynamodb`, or `all`; .ci/run sets
#      it): runs the conformance suite again for those, against servers that testcontainers starts
#      in Docker (scripts/containers.sh: Debian's docker.io, a dockerd that leaves this machine's
#      network alone, local images). It prints `conformance <name> (testcontainers): ...`.
#      Without the variable nothing needs Docker.
#
# Build output goes to ~/.cache/streamstore/target (outside the clone) so reruns are warm.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/streamstore/target}

started=$(date +%s)

# Step 4 starts first, in the background: installing Docker and building its images is mostly
# downloads and unpacking, which overlap with the servers' start and the workspace's build.
# Only the last cargo command sees the variable (the others test scripts/services.sh servers).
containers=${STREAMSTORE_CONTAINERS:-}
unset STREAMSTORE_CONTAINERS
if [[ -n $containers ]]; then
    ctr_names=${containers//,/ }
    [[ $ctr_names == all ]] && ctr_names=''
    ctr_dir=$(mktemp -d)
    # dockerd is stopped at the end only if this run started it.
    ctr_was_up=0
    scripts/containers.sh status 2>/dev/null && ctr_was_up=1
    # In the foreground: apt-get here and in scripts/services.sh must not race for dpkg's lock.
    scripts/containers.sh install
    # shellcheck disable=SC2086 # the names are words
    (scripts/containers.sh up && scripts/containers.sh build $ctr_names) \
        >"$ctr_dir/env" 2>"$ctr_dir/log" &
    ctr_pid=$!
    ctr_cleanup() {
        kill "$ctr_pid" 2>/dev/null || true
        wait "$ctr_pid" 2>/dev/null || true
        [[ $ctr_was_up == 1 ]] || scripts/containers.sh down || true
        rm -rf "$ctr_dir"
    }
    trap ctr_cleanup EXIT
fi

eval "$(scripts/services.sh up)"
scripts/services.sh check
# Headless Chromium for the node's browser test (Debian's package).
STREAMSTORE_CHROMIUM=$(scripts/chromium.sh)
export STREAMSTORE_CHROMIUM
echo "[test] servers ready after $(( $(date +%s) - started )) s" >&2

cargo test --workspace --all-targets
cargo test --workspace --doc
scripts/fuzz-smoke.sh 30

if [[ -n $containers ]]; then
    ctr_wait=$(date +%s)
    if ! wait "$ctr_pid"; then
        cat "$ctr_dir/log" >&2
        echo "[test] containers: dockerd or an image build failed (logs: ~/.cache/streamstore/docker)" >&2
        exit 1
    fi
    cat "$ctr_dir/log" >&2
    echo "[test] containers: dockerd and images ready ($(( $(date +%s) - ctr_wait )) s waited for them)" >&2
    # DOCKER_HOST and STREAMSTORE_IMAGE_<NAME> for each image.
    eval "$(cat "$ctr_dir/env")"
    # --workspace: the feature set of the run above, so the runner is not rebuilt.
    STREAMSTORE_TEST='' STREAMSTORE_CONTAINERS=$containers cargo test --workspace --test conformance
fi
echo "[test] all tests done after $(( $(date +%s) - started )) s" >&2
