#!/usr/bin/env bash
# gru's demo on this machine, with real components: etcd, the Docker engine, three agents
# (separate processes, distinct node names) managing the sample application of
# configs/example (three services of the test workload), and a load ramp on `frontend`.
# It prints the instance count of every service whenever it changes, and why the agents
# decided what they did. Ctrl-C tears everything down (agents, containers, etcd).
#
#   scripts/demo.sh           ramp up, hold, ramp down; then wait for Ctrl-C
#   scripts/demo.sh --once    a shorter ramp, then tear down and exit
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

once=false
[ "${1:-}" = --once ] && once=true
export GRU_RUN_DIR=${GRU_RUN_DIR:-/tmp/gru-demo}
cluster=demo
agents=()
bg=()

cleanup() {
  set +e
  for pid in "${bg[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${agents[@]}"; do wait "$pid" 2>/dev/null; done
  ids=$(docker ps -aq --filter "label=org.gru.cluster=$cluster")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  "$GRU_ROOT/scripts/etcd.sh" stop
  say "demo torn down (agents stopped, containers removed, etcd stopped)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$GRU_ROOT/scripts/install-deps.sh"
DOCKER_HOST=$("$GRU_ROOT/scripts/dockerd.sh" start)
export DOCKER_HOST

say "building gru and the workload images"
cargo build --locked --bin gru -q
"$GRU_ROOT/scripts/build-images.sh" workload loadgen >/dev/null
gru=$GRU_ROOT/target/debug/gru
loadgen=$GRU_ROOT/target/x86_64-unknown-linux-musl/release/gru-loadgen

say "starting etcd"
ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --port 23890)
export ETCD_ADDR

stale=$(docker ps -aq --filter "label=org.gru.cluster=$cluster")
[ -n "$stale" ] && docker rm -f $stale >/dev/null
say "gru create $cluster; gru config push $cluster configs/example"
"$gru" create "$cluster" --force
"$gru" config push "$cluster" configs/example

mkdir -p "$GRU_RUN_DIR"
join() {
  local i=$1
  "$gru" join "$cluster" --name "node$i" --port $((18180 + i)) --bind 127.0.0.1 \
    --publish-ip 127.0.0.1 --start >"$GRU_RUN_DIR/node$i.log" 2>&1 &
  agents+=($!)
  wait_http "http://127.0.0.1:$((18180 + i))/healthz" 30 || die "node$i did not come up; see $GRU_RUN_DIR/node$i.log"
}
# The first agent deploys the services' MinInstances; the others join once they are
# published, so they see the cluster's instances (agents do not coordinate yet).
say "gru join $cluster --name node1 --start"
join 1
for _ in $(seq 1 60); do
  n=$(etcdctl --endpoints="$ETCD_ADDR" get --prefix --keys-only "/gru/$cluster/discovery/" 2>/dev/null | grep -c . || true)
  [ "$n" -ge 3 ] && break
  sleep 0.5
done
for i in 2 3; do say "gru join $cluster --name node$i --start"; join "$i"; done
say "gru manage -c 'list nodes'"
"$gru" manage --cluster "$cluster" -c "list nodes"

# Feed the load generator the frontend's instances from discovery, every second.
targets=$GRU_RUN_DIR/frontend.targets
(
  while true; do
    etcdctl --endpoints="$ETCD_ADDR" get --prefix --print-value-only "/gru/$cluster/discovery/frontend/" 2>/dev/null |
      grep . | sed 's|^|http://|; s|$|/|' >"$targets.tmp" && mv "$targets.tmp" "$targets"
    sleep 1
  done
) &
bg+=($!)

# Print the instance count of each service whenever it changes.
(
  last=""
  while true; do
    now=""
    for s in frontend backend cache; do
      c=$(docker ps -q --filter "label=org.gru.cluster=$cluster" --filter "label=org.gru.service=$s" | wc -l)
      now+="$s=$c "
    done
    if [ "$now" != "$last" ]; then
      printf '%s  instances: %s\n' "$(date +%H:%M:%S)" "$now"
      last=$now
    fi
    sleep 1
  done
) &
bg+=($!)

if $once; then schedule="20:10s,80:50s,0:70s"; else schedule="20:20s,60:40s,120:60s,0:120s"; fi
say "load ramp on frontend: $schedule (requests/s:duration)"
sleep 2
# Every 10th per-second line of the load generator, and its summary.
"$loadgen" --targets-file "$targets" --schedule "$schedule" --timeout-ms 2000 2>"$GRU_RUN_DIR/loadgen.log" |
  awk 'NR % 10 == 0 || !/^t=/' || true

say "gru manage -c 'status; events; why node1 frontend'"
"$gru" manage --cluster "$cluster" -c "status; events; why node1 frontend" | head -60 || true
if $once; then exit 0; fi
say "three agents running; logs in $GRU_RUN_DIR/node*.log. Ctrl-C to tear down."
wait "${agents[@]}"
