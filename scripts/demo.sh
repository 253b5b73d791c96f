#!/usr/bin/env bash
# gru's demo on this machine, with real components: starts etcd, builds gru, creates a
# cluster, pushes configs/example, joins three nodes (three agent processes with distinct
# node names) and lists them. Then it waits for Ctrl-C and tears everything down.
#
#   scripts/demo.sh           run and wait for Ctrl-C
#   scripts/demo.sh --once    run, list, tear down (used by the tests)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

once=false
[ "${1:-}" = --once ] && once=true
export GRU_RUN_DIR=${GRU_RUN_DIR:-/tmp/gru-demo}
cluster=demo
agents=()

cleanup() {
  set +e
  for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${agents[@]}"; do wait "$pid" 2>/dev/null; done
  "$GRU_ROOT/scripts/etcd.sh" stop
  say "demo torn down"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$GRU_ROOT/scripts/install-deps.sh"
DOCKER_HOST=$("$GRU_ROOT/scripts/dockerd.sh" start)
export DOCKER_HOST

say "building gru"
cargo build --locked --bin gru -q
gru=$GRU_ROOT/target/debug/gru

say "starting etcd"
ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --port 23890)
export ETCD_ADDR
say "etcd at $ETCD_ADDR"

say "gru create $cluster"
"$gru" create "$cluster" --force
say "gru config validate configs/example && gru config push $cluster configs/example"
"$gru" config validate configs/example
"$gru" config push "$cluster" configs/example

mkdir -p "$GRU_RUN_DIR"
for i in 1 2 3; do
  say "gru join $cluster --name node$i --port $((18180 + i))"
  "$gru" join "$cluster" --name "node$i" --port $((18180 + i)) --bind 127.0.0.1 \
    >"$GRU_RUN_DIR/node$i.log" 2>&1 &
  agents+=($!)
done
for i in 1 2 3; do
  wait_http "http://127.0.0.1:$((18180 + i))/healthz" 30 || die "node$i did not come up; see $GRU_RUN_DIR/node$i.log"
done

say "the cluster's nodes (gru config get $cluster nodes)"
"$gru" config get "$cluster" nodes

if $once; then exit 0; fi
say "three agents running; logs in $GRU_RUN_DIR/node*.log. Ctrl-C to tear down."
wait "${agents[@]}"
