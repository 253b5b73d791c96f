#!/usr/bin/env bash
# gru's demo on this machine, with real components: etcd, the Docker engine, three agents
# (separate processes, distinct node names) managing the sample application of
# configs/example (three services of the test workload), and a load step on `frontend`.
# Every few seconds it prints one line: the load generator's rate, error rate and
# latency over the interval beside each service's instance count. It ends with a one-line
# summary and the instance timeline. Ctrl-C tears everything down (agents, containers,
# etcd) at any point.
#
#   scripts/demo.sh             8 req/s for 20 s, 30 req/s for 100 s, 8 req/s for 60 s; then
#                               the agents keep running until Ctrl-C (try `gru manage`)
#   scripts/demo.sh --once      8 req/s for 10 s, 30 req/s for 60 s; then tear down and exit
#   scripts/demo.sh --capacity  measure one frontend instance's capacity instead: rates
#                               from 8 to 22 req/s, 15 s each, p99 and errors at each
#
# Sizing (measured on this 2-core machine while other builds shared it, load average 7-9):
#   * A frontend instance has one worker; a request holds it 40 ms waiting (WAIT_MS, as on a
#     call to a downstream service) and burns 10 ms of CPU (SERVICE_TIME_MS). Its p99 stays
#     under the frontend's MAX_RESP_TIME (200 ms) up to 14 req/s in one sweep (p99 93 ms;
#     836 ms at 16, without the QUEUE bound) and up to 16 req/s in another (p99 129 ms;
#     682 ms and 3 % errors at 18): an instance serves about 14-16 req/s. A request costs about 11 ms of
#     CPU (docker stats: 9.7 % of a core at 9 req/s).
#   * The step to 30 req/s is twice what one instance serves. MaxInstances (4) serve it at
#     7.5 req/s each, about half their capacity; 3 instances at 10 req/s. The load costs
#     about a third of a core in the containers, which leaves the rest of the 2 cores to
#     etcd, the agents, docker-proxy and the load generator: the instance count is the
#     limit, not the machine.
#   * The frontend's own policy (services/frontend.json) tracks a target: an overloaded
#     frontend asks for 4 instances in one claim; scale-in follows its CPU share with a
#     20 s stabilization. Instances answer for 2 s after SIGTERM (SHUTDOWN_DELAY_MS), so
#     a scale-in costs no request.
#   * An overloaded instance holds at most 10 waiting requests (QUEUE, ~0.6 s of work) and
#     answers 503 beyond: errors are expected between the step and the scale-out, and the
#     backlog does not outlast it. The summary gives the error rate once scaled.
#
# The summary line's keys:
#   requests, errors, error_pct                 every request scheduled (an error is a
#                                               timeout, a failed request, or one not sent)
#   p99_before_first_scale_out_ms               requests sent before frontend's first scale-out
#   p99_after_last_scale_ms                     requests sent after frontend's last change
#                                               while the load ran
#   first_scale_out_s, peak_s                   seconds after the step: first scale-out, and
#                                               when frontend reached its peak count (peak)
#   error_pct_once_scaled                       requests sent from peak_s on
# Instance counts are the discovery records in etcd: instances that serve, as the load
# generator sees them. The figures depend on what else runs: other work that takes the
# CPU slows every instance alike, and no instance count can make up for it.
set -euo pipefail
# Before lib.sh, which would set the shared default: etcd's pid files live under it.
export GRU_RUN_DIR=${GRU_RUN_DIR:-/tmp/gru-demo}
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

mode=full
case ${1:-} in
  "") ;;
  --once) mode=once ;;
  --capacity) mode=capacity ;;
  *) die "usage: $0 [--once | --capacity]" ;;
esac
run=$GRU_RUN_DIR
cluster=demo
services=(frontend backend cache)
# The load: a base rate one instance serves, then the step (see the sizing above).
BASE_RATE=8
STEP_RATE=30
if [ "$mode" = once ]; then
  BASE_SECS=10 STEP_SECS=60 AFTER_SECS=0
else
  BASE_SECS=20 STEP_SECS=100 AFTER_SECS=60
fi
# Seconds per printed line; a request not answered within REQUEST_TIMEOUT_MS is an error.
INTERVAL_SECS=5
REQUEST_TIMEOUT_MS=2000
CAPACITY_RATES="8 10 12 14 16 18 20 22"
CAPACITY_SECS=15

agents=()
bg=()

cleanup() {
  set +e
  for pid in "${bg[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${agents[@]}" "${bg[@]}"; do wait "$pid" 2>/dev/null; done
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
gru=$GRU_TARGET_DIR/debug/gru
loadgen=$GRU_TARGET_DIR/x86_64-unknown-linux-musl/release/gru-loadgen
mkdir -p "$run"
stale=$(docker ps -aq --filter "label=org.gru.cluster=$cluster")
[ -n "$stale" ] && docker rm -f $stale >/dev/null

# env_of NAME: the value of NAME in frontend's Env, so that --capacity measures what the
# demo runs.
env_of() {
  sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" configs/example/services/frontend.json
}

if [ "$mode" = capacity ]; then
  port=18079
  say "one frontend instance (SERVICE_TIME_MS=$(env_of SERVICE_TIME_MS) WAIT_MS=$(env_of WAIT_MS)) on 127.0.0.1:$port"
  docker run -d --rm --label "org.gru.cluster=$cluster" -p "127.0.0.1:$port:8080" --memory 64m \
    -e SERVICE_NAME=frontend -e "SERVICE_TIME_MS=$(env_of SERVICE_TIME_MS)" \
    -e "WAIT_MS=$(env_of WAIT_MS)" -e "QUEUE=$(env_of QUEUE)" gru-workload:latest >/dev/null
  wait_http "http://127.0.0.1:$port/healthz" 20 || die "the instance did not come up"
  for rate in $CAPACITY_RATES; do
    "$loadgen" --target "127.0.0.1:$port" --schedule "$rate:${CAPACITY_SECS}s" \
      --interval-secs "$CAPACITY_SECS" --timeout-ms "$REQUEST_TIMEOUT_MS" 2>/dev/null |
      awk '/^sent=/ { print "rate=" r " " $0 }' r="$rate"
  done
  exit 0
fi

say "starting etcd"
ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --port 23890)
export ETCD_ADDR
say "gru create $cluster; gru config push $cluster configs/example"
"$gru" create "$cluster" --force
"$gru" config push "$cluster" configs/example

join() {
  local i=$1
  "$gru" join "$cluster" --name "node$i" --port $((18180 + i)) --bind 127.0.0.1 \
    --publish-ip 127.0.0.1 --start >"$run/node$i.log" 2>&1 &
  agents+=($!)
}
# The agents coordinate through the scaling ledger in etcd, so they can all join at once:
# one claim starts each missing MinInstance, whichever agent makes it.
for i in 1 2 3; do say "gru join $cluster --name node$i --start"; join "$i"; done
for i in 1 2 3; do
  wait_http "http://127.0.0.1:$((18180 + i))/healthz" 30 || die "node$i did not come up; see $run/node$i.log"
done

# Every second, from one read of discovery: frontend's instances as the load generator's
# targets, the instance count of every service, and a timeline line when a count changes.
targets=$run/frontend.targets counts=$run/counts timeline=$run/timeline
rm -f "$targets" "$counts" "$timeline" "$run/samples" "$run/loadgen.out"
: >"$timeline"
(
  last=""
  while true; do
    etcdctl --endpoints="$ETCD_ADDR" get --prefix "/gru/$cluster/discovery/" 2>/dev/null |
      awk -v targets="$targets.tmp" -v services="${services[*]}" '
        NR % 2 == 1 { split($0, part, "/"); service = part[5]; next }
        { count[service]++; if (service == "frontend") print "http://" $0 "/" > targets }
        END {
          close(targets); n = split(services, list, " ")
          for (i = 1; i <= n; i++) printf "%s%s=%d", (i > 1 ? " " : ""), list[i], count[list[i]]
          print ""
        }' >"$counts.tmp" && touch "$targets.tmp" && mv "$targets.tmp" "$targets" && mv "$counts.tmp" "$counts"
    now=$(cat "$counts" 2>/dev/null || true)
    if [ -n "$now" ] && [ "$now" != "$last" ]; then
      echo "$(date +%s%3N) $now" >>"$timeline"
      last=$now
    fi
    sleep 1
  done
) &
bg+=($!)

say "waiting for every service's MinInstances"
for _ in $(seq 1 60); do
  [ -s "$counts" ] && ! grep -q "=0" "$counts" && break
  sleep 1
done
{ [ -s "$counts" ] && ! grep -q "=0" "$counts"; } || die "MinInstances not deployed within 60 s: $(cat "$counts"); see $run/node*.log"
say "gru manage -c 'list nodes'"
"$gru" manage --cluster "$cluster" -c "list nodes"

schedule="$BASE_RATE:${BASE_SECS}s,$STEP_RATE:${STEP_SECS}s"
[ "$AFTER_SECS" -gt 0 ] && schedule+=",$BASE_RATE:${AFTER_SECS}s"
say "load on frontend: $schedule (requests/s:duration); one line per ${INTERVAL_SECS} s"
# ended: requests answered, failed or not sent in the interval; err%: the failed share of them.
printf '%6s %6s %6s %7s %8s %8s   %s\n' t rate ended err% p50_ms p99_ms instances
: >"$run/loadgen.out"
start_ms=$(date +%s%3N)
"$loadgen" --targets-file "$targets" --schedule "$schedule" --timeout-ms "$REQUEST_TIMEOUT_MS" \
  --interval-secs "$INTERVAL_SECS" --samples-file "$run/samples" \
  >"$run/loadgen.out" 2>"$run/loadgen.log" &
load=$!
bg+=($load)
# One line per interval: the load generator's figures beside the instance counts. In the
# background, so that Ctrl-C (or a TERM) interrupts the `wait` below at once.
tail -n +1 -f --pid="$load" "$run/loadgen.out" | while read -r line; do
  case $line in
    t=*)
      echo "$line" | awk -v counts="$(cat "$counts")" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        ended = f["ok"] + f["err"] + f["dropped"]; failed = f["err"] + f["dropped"]
        printf "%6s %6s %6d %7.1f %8.0f %8.0f   %s\n", f["t"], f["rate"] "/s", ended,
          ended ? 100 * failed / ended : 0, f["p50_ms"], f["p99_ms"], counts
      }' ;;
  esac
done &
reader=$!
bg+=($reader)
wait "$reader" || true
sleep 1.5 # one more discovery read: the timeline covers the end of the load

# p99 FROM_MS TO_MS: the nearest-rank p99 of the successful requests sent in [FROM, TO).
p99() {
  awk -v from="$1" -v to="$2" '$1 >= from && $1 < to && $2 ~ /^[0-9.]+$/ { print $2 }' "$run/samples" |
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "NaN"; exit }
      r = int(0.99 * NR); if (r < 0.99 * NR) r++; if (r < 1) r = 1; printf "%.0f\n", v[r] }'
}
# errors FROM_MS: "requests errors error_pct" of the requests sent from FROM on.
errors() {
  awk -v from="$1" '$1 >= from { n++; if ($2 !~ /^[0-9.]+$/) e++ }
    END { printf "%d %d %.2f\n", n, e, n ? 100 * e / n : 0 }' "$run/samples"
}
step_ms=$((start_ms + BASE_SECS * 1000))
end_ms=$((start_ms + (BASE_SECS + STEP_SECS + AFTER_SECS) * 1000))
# frontend's changes while the load ran: first scale-out, peak, last change (epoch ms).
read -r first_out peak peak_ms last_change < <(awk -v start="$start_ms" -v end="$end_ms" '
  { split($2, kv, "="); n = kv[2] + 0 }
  $1 < start { prev = n; peak = n; next }
  $1 < end && n != prev {
    if (n > prev && prev > 0 && !first) first = $1
    if (n > peak) { peak = n; peak_ms = $1 }
    last = $1
  }
  { prev = n }
  END { print (first ? first : 0), peak, (peak_ms ? peak_ms : start), (last ? last : start) }' "$timeline")
before_to=$end_ms
[ "$first_out" -gt 0 ] && before_to=$first_out
read -r requests errs error_pct < <(errors 0)
read -r _ _ error_pct_scaled < <(errors "$peak_ms")
secs_after_step() { awk -v t="$1" -v s="$step_ms" 'BEGIN { if (t > 0) printf "%.1f", (t - s) / 1000; else print "NaN" }'; }

say "instance timeline (seconds after the load started; discovery records)"
awk -v start="$start_ms" '{ t = ($1 - start) / 1000; $1 = ""; printf "%8.1f%s\n", t, $0 }' "$timeline"
say "gru manage -c 'status; events; why node1 frontend'"
"$gru" manage --cluster "$cluster" -c "status; events; why node1 frontend" | head -60 || true
say "summary"
echo "requests=$requests errors=$errs error_pct=$error_pct" \
  "p99_before_first_scale_out_ms=$(p99 0 "$before_to")" \
  "p99_after_last_scale_ms=$(p99 "$last_change" "$end_ms")" \
  "first_scale_out_s=$(secs_after_step "$first_out") peak=$peak peak_s=$(secs_after_step "$peak_ms")" \
  "error_pct_once_scaled=$error_pct_scaled"
if [ "$mode" = once ]; then exit 0; fi
say "three agents running; logs in $run/node*.log. Ctrl-C to tear down."
wait "${agents[@]}"
