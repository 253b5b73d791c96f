#!/usr/bin/env bash
# The soak: three agents (separate `gru join` processes, distinct node names) manage two
# services of the test workload (configs/soak) on this machine's Docker engine for N
# minutes, under changing load and with agent restarts, while every 10 s a sample checks
# the cluster's invariants and records each agent's resident memory.
#
#   scripts/soak.sh                   10 minutes
#   scripts/soak.sh --minutes 2       a quick check
#   scripts/soak.sh --no-build        use the binaries and images already built
#   scripts/soak.sh --debug           the agents from the debug build (cargo build -p gru):
#                                     quicker to build, to try the script out; its RSS
#                                     figures are not those of the release binary
#   scripts/soak.sh --keep-logs DIR   copy the agents' logs (JSON), the events and the
#                                     load generators' output to DIR at the end
#   scripts/soak.sh --chaos [--seed N] the chaos soak (below): a seeded random schedule of
#                                     faults instead of the regular restarts; the same
#                                     seed gives the same schedule (default seed 1)
#
# The acceptance runs (the lead's; not CI: a soak is a script, not a test):
#   scripts/soak.sh --minutes 30 --chaos --seed 1     0 violations, lost, duplicates; RSS
#                                                    growth < 2 % over the last 15 minutes
#   scripts/soak.sh --minutes 60                      RSS growth < 2 % over the last 30 min
#
# What happens:
#   * a throwaway etcd (scripts/etcd.sh, port 19590), `gru create soak-<pid>`, `gru config
#     push configs/soak`: web (MinInstances 1, MaxInstances 4) and api (2, 3), both scaling
#     out and in, loop 3 s, TTL 5 s, cooldowns 10 s out / 15 s in;
#   * node2, then (once the minimums are deployed, so that it holds them) node1 and node3,
#     each `gru join <cluster> --name nodeN --port 1958N --bind 127.0.0.1 --publish-ip
#     127.0.0.1 --start`, logs in JSON;
#   * load: two gru-loadgen processes, targets read from discovery every second, each on
#     a repeating cycle of phases (web 150 s: idle 0, ramp 20, 45, high 70, drop 5 req/s;
#     api 110 s: low 5, high 35, idle 0);
#   * restarts: every 120 s (a third of the run when shorter than 6 minutes; none in the
#     last 30 s) one agent is stopped, alternately SIGTERM and kill -9: node2 and node3 in
#     turn (the other one when it is the only one holding containers). It is
#     started again under the same name: at once after SIGTERM (the agent keeps its lease
#     for its successor, which re-attaches to it: its records never vanish), and as soon as
#     its old record is gone after kill -9 (the TTL); then its instance list (GET
#     /gru/v1/services) must hold every container that ran on its node before and still
#     runs (adoption). node1 is never restarted: it is the process whose memory is
#     followed over the whole run;
#   * with --chaos: a 3-member etcd (ports 19590-19595), no regular restarts, and instead
#     a fault every 25 s (40 s in runs of 10 minutes or more) from 30 s on, none in the last
#     30 s, one at a time, drawn from the catalogue in a seeded order (each kind once per
#     round of seven, so a short run sees all of them):
#       agent-kill9 NODE        kill -9 of node2 or node3, started again after the TTL
#       agent-term NODE         SIGTERM, started again at once (keeps its lease)
#       etcd-kill MEMBER SECS   SIGKILL of an etcd member, started again on its data after
#                               SECS (15-30)
#       etcd-pause MEMBER SECS  SIGSTOP of an etcd member for SECS (5-15), then SIGCONT
#       partition NODE SECS     SIGSTOP of node2's or node3's agent for SECS (3-12), then
#                               SIGCONT. The agents are processes sharing this machine's
#                               loopback, so an iptables rule on the agent's port would
#                               cut its API and gossip but not its etcd connections (their
#                               source ports are ephemeral, and every process is root):
#                               SIGSTOP cuts all of the agent at once, keep-alive included,
#                               while its containers keep serving, as a partitioned node's
#                               would for the clients on its side. Counted as a restart
#                               window of the node (from the SIGSTOP to one grace after
#                               the SIGCONT) by the checks;
#       container-kill          `docker kill` of a random running container of the cluster
#       load-burst SERVICE SECS a third load generator on SERVICE at 60-90 req/s for SECS
#                               (20-40), on top of the phases
#     The schedule is printed at the start (as planned) and at the end (as run, with the
#     times each fault began and ended);
#   * every 10 s a sample (scripts/soak-check.py) prints each agent's VmRSS, the running
#     containers per service (docker ps, label org.gru.cluster) and their peak since the
#     last sample, the discovery records (etcdctl get --prefix /gru/<cluster>/discovery/),
#     the load, and checks the invariants:
#       - each service's running containers within [MinInstances, MaxInstances], at every
#         moment: the docker events (start, die) of the cluster's containers, recorded from
#         before the first agent, are replayed into the exact count. Above the maximum is
#         a violation unless an agent is restarting: from its stop request until TTL + 2
#         loops + one sampling period (5 + 6 + 10 s) after it answers again (its records
#         vanish with its lease, so survivors restore the minimum or scale out, and once it
#         has adopted its containers the ceiling repair stops the excess, one instance per
#         ledger claim). Below the minimum (once every minimum was first reached) is a
#         violation when it lasts longer than TTL + 2 loops (11 s), outside restarts;
#       - no two running containers with the same instance label (docker ps, and a start
#         of an instance that runs), never tolerated;
#       - every discovery record names a running container of its service whose published
#         port is the record's, and every running container has a record, except a
#         restarting node's containers (until one period after it is up); a mismatch
#         counts when it is seen in two samples in a row (one period of tolerance);
#       - no agent exits unless the soak stopped it, a restarted agent answers /healthz
#         within 30 s and adopts its containers;
#   * actions: the agents' `instance started` / `instance stopped` log lines (by reason:
#     min-instances, scale-out, scale-in, max-instances, ...), across restarts; the docker
#     events (start, destroy) of the cluster's containers are printed beside them.
#
# Summary: a table of RSS per agent process, the window's growth split into anonymous
# memory (heap, stacks) and file-backed pages (the binary's code, shared by the three
# agents, about 13 of their 18 MB), then the figures, the line
#   rss_growth_pct=<x> violations=<n> actions=<n> restarts=<n> minutes=<m> ...
# and last the acceptance line
#   violations=<n> lost=<n> duplicates=<n> rss_growth_pct=<x>
# lost: containers of the cluster that died (docker events) though no agent stopped them
# (no `instance stopped` line names them) and the chaos did not kill them. A graceful stop
# (SIGTERM, which in the soak only the agents ask the engine for) within 10 s before the
# soak stopped the agent of the container's node is a stop the agent could not log before
# it was killed: listed apart, not lost. duplicates: the violations that are two running
# containers of one instance.
# rss_growth_pct: over the last 30 minutes of runs of 60 minutes or more, the last 15 of
# runs of 30 or more, the last 5 of runs of 10 or more, the second half of shorter runs:
# for each agent process that ran through the whole window and was started at least 60 s
# before it (warm: a fresh process grows while it fills its windows and histories), the
# change from the mean of its first 3 samples in the window to the mean of its last 3; the
# largest of them. Exit 1 if violations > 0, lost > 0, or rss_growth_pct >= 5 (>= 2 in runs
# of 30 minutes or more), or no process qualifies.
# Everything is torn down at the end, on Ctrl-C and on failure: load generators, agents,
# etcd, the cluster's containers (by label) and the temporary directory.
set -euo pipefail
# bash reads a script as it runs it: the whole of it is one block, read before it starts, so
# that editing this file while a soak runs cannot change or break that soak.
{
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
minutes=10
build=true
keep_logs=""
chaos=false
seed=1
profile=release
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
    --no-build) build=false; shift ;;
    --keep-logs) keep_logs=${2:?--keep-logs needs a directory}; shift 2 ;;
    --chaos) chaos=true; shift ;;
    --debug) profile=debug; shift ;;
    --seed) seed=${2:?--seed needs a number}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "--minutes takes a whole number of minutes, not '$minutes'"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed takes a whole number, not '$seed'"

total=$((minutes * 60))
period=10
warmup=60
if [ "$minutes" -ge 60 ]; then window=1800
elif [ "$minutes" -ge 30 ]; then window=900
elif [ "$minutes" -ge 10 ]; then window=300
else window=$((total / 2)); fi
if [ "$total" -ge 360 ]; then restart_every=120; else restart_every=$((total / 3)); fi
etcd_port=19590
agent_port0=19580
cluster=soak-$$
check=$GRU_ROOT/scripts/soak-check.py
restart_signals=(TERM KILL)

for tool in etcd etcdctl docker python3 curl cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}"
if curl -sf -m 2 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; then
  die "something already answers on port $etcd_port (another soak?)"
fi

tmp=$(mktemp -d /tmp/gru-soak.XXXXXX)
mkdir -p "$tmp/logs"
export GRU_RUN_DIR=$tmp/run
declare -A agent_pid=()
bg=()
torn_down=false

cleanup() {
  set +e
  $torn_down && return 0
  torn_down=true
  local pid i alive ids
  for pid in "${bg[@]}"; do kill "$pid" 2>/dev/null; done
  # A fault of the chaos may have left an agent or an etcd member stopped (SIGSTOP).
  for pid in "${agent_pid[@]}"; do kill -CONT "$pid" 2>/dev/null; done
  for f in "$GRU_RUN_DIR"/etcd/m*.pid; do [ -e "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null; done
  [ -n "${chaos_burst_pid:-}" ] && kill "$chaos_burst_pid" 2>/dev/null
  # Agents drain for up to 5 s on SIGTERM; one that does not exit within 15 s is killed.
  for pid in "${agent_pid[@]}"; do kill "$pid" 2>/dev/null; done
  for ((i = 0; i < 150; i++)); do
    alive=false
    for pid in "${agent_pid[@]}"; do exited "$pid" || alive=true; done
    $alive || break
    sleep 0.1
  done
  for pid in "${agent_pid[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for pid in "${agent_pid[@]}" "${bg[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -n "$keep_logs" ]; then
    mkdir -p "$keep_logs" && cp -r "$tmp/logs/." "$tmp/events" "$tmp/state.json" "$keep_logs/" 2>/dev/null
  fi
  ids=$(docker ps -aq --filter "label=org.gru.cluster=$cluster")
  # shellcheck disable=SC2086 # one argument per id
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  "$GRU_ROOT/scripts/etcd.sh" stop
  rm -rf "$tmp"
  say "soak torn down (load generators, agents, containers, etcd, $tmp)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $build; then
  if [ "$profile" = release ]; then
    say "building gru (cargo build --release -p gru) and the workload images"
    cargo build --release --locked -q -p gru
  else
    say "building gru (cargo build -p gru, debug) and the workload images"
    cargo build --locked -q -p gru
  fi
  "$GRU_ROOT/scripts/build-images.sh" workload loadgen >/dev/null
fi
gru=$GRU_TARGET_DIR/$profile/gru
loadgen=$GRU_TARGET_DIR/x86_64-unknown-linux-musl/release/gru-loadgen
[ -x "$gru" ] || die "$gru is missing (run without --no-build)"
[ -x "$loadgen" ] || die "$loadgen is missing (run without --no-build)"
docker image inspect gru-workload:latest >/dev/null 2>&1 || die "image gru-workload:latest is missing (run without --no-build)"

etcd_members=1
$chaos && etcd_members=3
say "starting etcd ($etcd_members member(s)) on port $etcd_port"
ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --members "$etcd_members" --port "$etcd_port")
export ETCD_ADDR
etcd_cli() { timeout 10 etcdctl --endpoints="$ETCD_ADDR" "$@"; }
"$gru" create "$cluster" >/dev/null
"$gru" config push "$cluster" configs/soak >/dev/null
"$gru" config get "$cluster" services >"$tmp/services.json"
"$gru" config get "$cluster" config >"$tmp/config.json"
say "cluster $cluster: configs/soak pushed"

now() { date +%s.%3N; }
secs() { date +%s; }
event() { echo "$(now) $*" >>"$tmp/events"; }
: >"$tmp/events"

# start_agent NODE: `gru join` in the background, appending to the node's log.
start_agent() {
  local node=$1 port=$((agent_port0 + ${1#node}))
  "$gru" --log-format json join "$cluster" --name "$node" --port "$port" --bind 127.0.0.1 \
    --publish-ip 127.0.0.1 --start --state-dir "$tmp/state" >>"$tmp/logs/$node.log" 2>&1 &
  agent_pid[$node]=$!
  event start "$node" "$!"
}
node_free() { [ -z "$(etcd_cli get --keys-only "/gru/$cluster/nodes/$1/config" 2>/dev/null)" ]; }
healthy() { curl -sf -m 1 "http://127.0.0.1:$((agent_port0 + ${1#node}))/healthz" >/dev/null 2>&1; }
node_containers() {
  timeout 10 docker ps -q --no-trunc --filter "label=org.gru.cluster=$cluster" \
    --filter "label=org.gru.node=$1" --filter status=running
}
discovery_count() { etcd_cli get --prefix --keys-only "/gru/$cluster/discovery/" 2>/dev/null | grep -c . || true; }

# Every start and death of the cluster's containers from before the first agent on: the
# checker replays them into the exact running count of each service at every moment.
timeout $((total + 600)) docker events --filter "label=org.gru.cluster=$cluster" --filter type=container \
  --filter event=start --filter event=die --filter event=destroy --filter event=oom --filter event=kill \
  --format '{{.TimeNano}} {{.Action}} {{index .Actor.Attributes "org.gru.service"}} {{index .Actor.Attributes "org.gru.instance"}} {{index .Actor.Attributes "org.gru.node"}} exit={{index .Actor.Attributes "exitCode"}} signal={{index .Actor.Attributes "signal"}}' \
  >"$tmp/logs/docker-events" 2>/dev/null &
bg+=($!)
sleep 0.5

# node2 joins first and deploys the minimums, so that a restarted agent has containers
# to adopt from the first restart on.
say "gru join $cluster --name node2 --start"
start_agent node2
wait_http "http://127.0.0.1:$((agent_port0 + 2))/healthz" 30 || die "node2 did not come up; see its log"
event up node2 "${agent_pid[node2]}"
min_total=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s=s.values() if isinstance(s,dict) else s; print(sum(x.get("MinInstances",0) for x in s))' "$tmp/services.json")
for _ in $(seq 1 120); do
  [ "$(discovery_count)" -ge "$min_total" ] && break
  sleep 0.5
done
for node in node1 node3; do
  say "gru join $cluster --name $node --start"
  start_agent "$node"
  wait_http "http://127.0.0.1:$((agent_port0 + ${node#node}))/healthz" 30 || die "$node did not come up"
  event up "$node" "${agent_pid[$node]}"
done

# Load: targets from discovery every second; phases repeated over the whole run.
web_cycle="0:20s,20:20s,45:20s,70:40s,5:50s"   # 150 s
api_cycle="5:30s,35:40s,0:40s"                 # 110 s
repeat() { local out="" i; for ((i = 0; i < $2; i++)); do out+="${out:+,}$1"; done; echo "$out"; }
web_schedule=$(repeat "$web_cycle" $((total / 150 + 2)))
api_schedule=$(repeat "$api_cycle" $((total / 110 + 2)))
(
  while true; do
    for s in web api; do
      etcd_cli get --prefix --print-value-only "/gru/$cluster/discovery/$s/" 2>/dev/null |
        grep . | sed 's|^|http://|; s|$|/|' >"$tmp/$s.targets.tmp" && mv "$tmp/$s.targets.tmp" "$tmp/$s.targets"
    done
    sleep 1
  done
) &
bg+=($!)
sleep 1.5
t0=$(secs)
for s in web api; do
  sched_var=${s}_schedule
  "$loadgen" --targets-file "$tmp/$s.targets" --schedule "${!sched_var}" --timeout-ms 2000 \
    >"$tmp/logs/loadgen-$s.out" 2>"$tmp/logs/loadgen-$s.log" &
  bg+=($!)
done
python3 "$check" init --state "$tmp/state.json" --services "$tmp/services.json" \
  --config "$tmp/config.json" --period "$period" --t0 "$t0" --warmup "$warmup" --window "$window" \
  --schedule "web=$web_schedule@$t0" --schedule "api=$api_schedule@$t0"

if ! $chaos; then
  say "soak: $minutes min, a sample every $period s, a restart every $restart_every s; RSS window: last $window s"
fi

sample() {
  local node pid kb ps_ok=1 disc_ok=1 rss=()
  for node in node1 node2 node3; do
    pid=${agent_pid[$node]:-0}
    # VmRSS, and its anonymous (heap) and file-backed (the binary's pages) parts
    kb=$(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
      END { if (r != "") print r ":" a ":" f }' "/proc/$pid/status" 2>/dev/null || true)
    rss+=("$node=$pid:${kb:-down}")
  done
  timeout 10 docker ps --no-trunc --filter "label=org.gru.cluster=$cluster" --filter status=running \
    --format '{{.ID}}	{{.Label "org.gru.service"}}	{{.Label "org.gru.instance"}}	{{.Label "org.gru.node"}}	{{.Ports}}' \
    >"$tmp/ps" 2>/dev/null || ps_ok=0
  etcd_cli get --prefix "/gru/$cluster/discovery/" >"$tmp/discovery" 2>/dev/null || disc_ok=0
  python3 "$check" sample --state "$tmp/state.json" --now "$(now)" --ps "$tmp/ps" --ps-ok "$ps_ok" \
    --discovery "$tmp/discovery" --discovery-ok "$disc_ok" --root "/gru/$cluster/discovery" \
    --events "$tmp/events" --docker-events "$tmp/logs/docker-events" --logs "$tmp/logs" --rss "${rss[@]}"
}

# A restart is a small state machine stepped once a second:
#   stopping ─(process gone)─► naming ─(old lease gone)─► starting ─(/healthz)─► adopting ─► idle
restart_node=""
last_restarted=""
phase=idle
phase_since=0
step_restart() {
  local node=$restart_node pid=${agent_pid[$restart_node]:-0} rc view k m
  case $phase in
    stopping)
      if exited "$pid"; then
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        event exit "$node" "$pid" "$rc"
        phase=naming; phase_since=$(secs)
      elif [ $(($(secs) - phase_since)) -ge 20 ]; then
        kill -9 "$pid" 2>/dev/null || true
      fi
      ;;
    naming)
      # A node name is unique among live nodes: after kill -9 the old lease must expire.
      # After SIGTERM the agent kept it for this one, which re-attaches to it.
      if [ "$restart_signal" = TERM ] || node_free "$node" || [ $(($(secs) - phase_since)) -ge 30 ]; then
        start_agent "$node"
        phase=starting; phase_since=$(secs)
      fi
      ;;
    starting)
      if healthy "$node"; then
        event up "$node" "${agent_pid[$node]}"
        phase=adopting; phase_since=$(secs)
      elif [ $(($(secs) - phase_since)) -ge 30 ]; then
        event start-failed "$node"
        phase=idle
      fi
      ;;
    adopting)
      view=$tmp/$node.view
      curl -sf -m 2 "http://127.0.0.1:$((agent_port0 + ${node#node}))/gru/v1/services" >"$view" 2>/dev/null || echo '{}' >"$view"
      node_containers "$node" >"$tmp/$node.running" || true
      read -r k m < <(python3 "$check" adopted --before "$tmp/$node.before" --agent "$view" --running "$tmp/$node.running")
      if [ "$k" = "$m" ] || [ $(($(secs) - phase_since)) -ge 15 ]; then
        event adopted "$node" "$k" "$m"
        phase=idle
      fi
      ;;
  esac
}
restart_signal=""
begin_restart() {
  local i=$1 sig=${restart_signals[$1 % ${#restart_signals[@]}]} node n2 n3
  # node2 and node3 in turn; the other one when the one whose turn it is holds no
  # container (nothing to adopt) and the other does.
  n2=$(node_containers node2 | grep -c . || true)
  n3=$(node_containers node3 | grep -c . || true)
  if [ "$last_restarted" = node2 ]; then node=node3; else node=node2; fi
  if [ "$node" = node2 ] && [ "$n2" -eq 0 ] && [ "$n3" -gt 0 ]; then node=node3
  elif [ "$node" = node3 ] && [ "$n3" -eq 0 ] && [ "$n2" -gt 0 ]; then node=node2
  fi
  last_restarted=$node
  stop_agent "$node" "$sig" "restart $((i + 1))"
}
# stop_agent NODE SIG WHAT: stops the agent for a restart (the state machine above).
stop_agent() {
  local node=$1 sig=$2
  node_containers "$node" >"$tmp/$node.before" || true
  restart_node=$node
  restart_signal=$sig
  event stop-requested "$node" "$sig"
  printf '%s  %s: %s (pid %s) gets SIG%s; it holds %d container(s)\n' "$(date +%H:%M:%S)" \
    "$3" "$node" "${agent_pid[$node]}" "$sig" "$(grep -c . "$tmp/$node.before" || true)"
  kill -s "$sig" "${agent_pid[$node]}"
  phase=stopping; phase_since=$(secs)
}

# The chaos schedule, planned from the seed: "<t> <kind> <target> <secs>" per line.
chaos_kinds=(agent-kill9 agent-term etcd-kill etcd-pause partition container-kill load-burst)
plan_chaos() {
  local every=25 t i j k round=() pick
  [ "$minutes" -ge 10 ] && every=40
  RANDOM=$seed
  i=0
  for ((t = 30; t <= total - 30; t += every)); do
    if [ $((i % ${#chaos_kinds[@]})) -eq 0 ]; then
      # A new round: the catalogue in a seeded order (Fisher-Yates).
      round=("${chaos_kinds[@]}")
      for ((j = ${#round[@]} - 1; j > 0; j--)); do
        k=$((RANDOM % (j + 1))); pick=${round[j]}; round[j]=${round[k]}; round[k]=$pick
      done
    fi
    pick=${round[i % ${#round[@]}]}
    case $pick in
      agent-kill9 | agent-term) echo "$t $pick node$((2 + RANDOM % 2)) 0" ;;
      etcd-kill) echo "$t $pick m$((RANDOM % 3)) $((15 + RANDOM % 16))" ;;
      etcd-pause) echo "$t $pick m$((RANDOM % 3)) $((5 + RANDOM % 11))" ;;
      partition) echo "$t $pick node$((2 + RANDOM % 2)) $((3 + RANDOM % 10))" ;;
      container-kill) echo "$t $pick any 0" ;;
      load-burst) if [ $((RANDOM % 2)) -eq 0 ]; then echo "$t $pick web $((20 + RANDOM % 21))"
                  else echo "$t $pick api $((20 + RANDOM % 21))"; fi ;;
    esac
    i=$((i + 1))
  done
}
chaos_plan=()
chaos_next=0
chaos_kind=""      # the fault under way ("" when none)
chaos_target=""
chaos_until=0
chaos_burst_pid=""
chaos_log() { printf '%6ds  %s\n' "$(($(secs) - ${t0%.*}))" "$*" | tee -a "$tmp/chaos-run"; }
# chaos_step T: ends the fault under way when its time is up, starts the next planned one
# when it is due and nothing else is under way (an agent restart included).
chaos_step() {
  local t=$1 line when kind target dur pid ids id instance service
  if [ -n "$chaos_kind" ] && [ "$t" -ge "$chaos_until" ]; then
    case $chaos_kind in
      etcd-kill) "$GRU_ROOT/scripts/etcd.sh" revive "${chaos_target#m}" || true ;;
      etcd-pause) kill -CONT "$("$GRU_ROOT/scripts/etcd.sh" pid "${chaos_target#m}")" 2>/dev/null || true ;;
      partition)
        kill -CONT "${agent_pid[$chaos_target]}" 2>/dev/null || true
        event up "$chaos_target" "${agent_pid[$chaos_target]}"
        ;;
      load-burst) kill "$chaos_burst_pid" 2>/dev/null || true; wait "$chaos_burst_pid" 2>/dev/null || true ;;
    esac
    chaos_log "end   $chaos_kind $chaos_target"
    chaos_kind=""
  fi
  [ -z "$chaos_kind" ] && [ "$phase" = idle ] || return 0
  [ "$chaos_next" -lt "${#chaos_plan[@]}" ] || return 0
  line=${chaos_plan[$chaos_next]}
  read -r when kind target dur <<<"$line"
  [ "$t" -ge "$when" ] || return 0
  chaos_next=$((chaos_next + 1))
  case $kind in
    agent-kill9) stop_agent "$target" KILL "chaos"; chaos_log "begin $kind $target" ;;
    agent-term) stop_agent "$target" TERM "chaos"; chaos_log "begin $kind $target" ;;
    etcd-kill | etcd-pause)
      if [ "$kind" = etcd-kill ]; then
        "$GRU_ROOT/scripts/etcd.sh" kill "${target#m}" || true
      else
        kill -STOP "$("$GRU_ROOT/scripts/etcd.sh" pid "${target#m}")" || true
      fi
      chaos_kind=$kind; chaos_target=$target; chaos_until=$((t + dur))
      chaos_log "begin $kind $target for ${dur}s"
      ;;
    partition)
      event stop-requested "$target" STOP
      kill -STOP "${agent_pid[$target]}"
      chaos_kind=$kind; chaos_target=$target; chaos_until=$((t + dur))
      chaos_log "begin $kind $target (SIGSTOP of its agent) for ${dur}s"
      ;;
    container-kill)
      mapfile -t ids < <(timeout 10 docker ps -q --no-trunc --filter "label=org.gru.cluster=$cluster" --filter status=running)
      if [ "${#ids[@]}" -gt 0 ]; then
        id=${ids[$((RANDOM % ${#ids[@]}))]}
        read -r instance service < <(docker inspect -f '{{index .Config.Labels "org.gru.instance"}} {{index .Config.Labels "org.gru.service"}}' "$id" 2>/dev/null) || true
        event chaos-kill "$instance" "$service"
        docker kill "$id" >/dev/null 2>&1 || true
        chaos_log "begin $kind: $service instance $instance (container ${id:0:12})"
      else
        chaos_log "begin $kind: no running container"
      fi
      ;;
    load-burst)
      "$loadgen" --targets-file "$tmp/$target.targets" --schedule "$((60 + RANDOM % 31)):${dur}s" --timeout-ms 2000 \
        >>"$tmp/logs/loadgen-burst.out" 2>>"$tmp/logs/loadgen-burst.log" &
      chaos_burst_pid=$!
      chaos_kind=$kind; chaos_target=$target; chaos_until=$((t + dur))
      chaos_log "begin $kind $target for ${dur}s"
      ;;
  esac
}

if $chaos; then
  mapfile -t chaos_plan < <(plan_chaos)
  # The choices made while it runs (which container, how much load) follow the seed too.
  RANDOM=$((seed + 1))
  : >"$tmp/chaos-run"
  say "soak: $minutes min, chaos (seed $seed): ${#chaos_plan[@]} faults, a sample every $period s; RSS window: last $window s"
  printf 'chaos schedule (seed %s), planned (s from the start, kind, target, seconds):\n' "$seed"
  printf '  %s\n' "${chaos_plan[@]}"
fi

next_sample=0
next_restart=$restart_every
while true; do
  t=$(($(secs) - ${t0%.*}))
  [ "$phase" != idle ] && step_restart
  # An agent that exits on its own is recorded (a violation) and started again.
  for node in node1 node2 node3; do
    if [ "$node" != "$restart_node" ] || [ "$phase" = idle ]; then
      pid=${agent_pid[$node]}
      if exited "$pid"; then
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        event exit "$node" "$pid" "$rc"
        printf '%s  %s (pid %s) exited on its own with %s; starting it again\n' "$(date +%H:%M:%S)" "$node" "$pid" "$rc"
        node_containers "$node" >"$tmp/$node.before" || true
        restart_node=$node; restart_signal=""; phase=naming; phase_since=$(secs)
      fi
    fi
  done
  if [ "$t" -ge "$next_sample" ]; then
    sample
    next_sample=$((next_sample + period))
    [ "$next_sample" -gt "$total" ] && [ "$t" -ge "$total" ] && break
  fi
  if $chaos; then
    chaos_step "$t"
  elif [ "$t" -ge "$next_restart" ] && [ "$next_restart" -le $((total - 30)) ] && [ "$phase" = idle ]; then
    begin_restart $((next_restart / restart_every - 1))
    next_restart=$((next_restart + restart_every))
  fi
  sleep 1
done

# A fault still under way at the end is ended (a stopped agent or etcd member resumed).
if $chaos && [ -n "$chaos_kind" ]; then chaos_until=0; chaos_next=${#chaos_plan[@]}; chaos_step "$total"; fi
rc=0
summary=$(python3 "$check" summary --state "$tmp/state.json" --events "$tmp/events" --logs "$tmp/logs" \
  --docker-events "$tmp/logs/docker-events" --minutes "$minutes") || rc=$?
chaos_ran=""
$chaos && chaos_ran=$(cat "$tmp/chaos-run")
cleanup
trap - EXIT
if $chaos; then
  printf 'chaos schedule (seed %s), as run (s from the start):\n%s\n' "$seed" "$chaos_ran"
fi
printf '%s\n' "$summary"
exit "$rc"
}
