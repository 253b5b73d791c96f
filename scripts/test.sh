#!/usr/bin/env bash
# Runs every test of gru against the real components: installs what is missing (etcd,
# protoc, VictoriaMetrics, ...), makes sure a Docker engine is reachable, then runs the
# whole workspace's tests. Integration tests start and stop their own etcd members on free
# loopback ports. Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p common`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

"$GRU_ROOT/scripts/install-deps.sh"
DOCKER_HOST=$("$GRU_ROOT/scripts/dockerd.sh" start)
export DOCKER_HOST

say "building and running every test (cargo test --workspace)"
cargo test --workspace --locked "$@"
