#!/usr/bin/env bash
# Runs every test of gru against the real components: installs what is missing (etcd,
# protoc, VictoriaMetrics, ...), makes sure a Docker engine is reachable, then runs the
# whole workspace's tests. Integration tests start and stop their own etcd members on free
# loopback ports. Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p common`).
# The figures the tests measured (testkit::figure) are collected in one file, GRU_FIGURES
# (default: test-figures.txt in the target directory), emptied here first and printed at
# the end, also when a test failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

"$GRU_ROOT/scripts/install-deps.sh"
DOCKER_HOST=$("$GRU_ROOT/scripts/dockerd.sh" start)
export DOCKER_HOST

GRU_FIGURES=${GRU_FIGURES:-$GRU_TARGET_DIR/test-figures.txt}
export GRU_FIGURES
mkdir -p "$(dirname "$GRU_FIGURES")"
: >"$GRU_FIGURES"
print_figures() {
  local status=$?
  say "figures the tests measured ($GRU_FIGURES), by test"
  # Grouped by test (a stable sort keeps each test's figures in the order it wrote them).
  sort -s -t: -k1,1 "$GRU_FIGURES" || true
  exit "$status"
}
trap print_figures EXIT

say "checking the soak's checker (scripts/soak-check.py selftest)"
python3 "$GRU_ROOT/scripts/soak-check.py" selftest

say "building and running every test (cargo test --workspace)"
cargo test --workspace --locked "$@"
