#!/usr/bin/env bash
# What N real agents cost etcd (issue 14): 5, 20 and 50 agents (separate `gru join`
# processes of the release build, distinct names and ports) against one etcd member, idle,
# with the autonomic loop and gossip at 1 s. Run by `scripts/bench.sh etcd-load`.
#
#   scripts/bench-etcd-load.sh                     5, 20 and 50 agents, a 60 s window each
#   scripts/bench-etcd-load.sh --window 10 --counts "2 5"    a quick run
#   scripts/bench-etcd-load.sh --no-build          use the gru binary already built
#   scripts/bench-etcd-load.sh --keep-logs DIR     copy the agents' and etcd's logs to DIR
#
# Options (the environment variables give the defaults):
#   --counts "A B C"   agent counts, each run on a fresh etcd    (GRU_BENCH_COUNTS, "5 20 50")
#   --window S         measurement window in seconds             (GRU_BENCH_WINDOW, 60)
#   --settle S         steady state: wait after the last agent is up and registered
#                                                                (GRU_BENCH_SETTLE, 20)
#   --ttl S            the agents' lease TTL (Discovery.TTL)     (GRU_BENCH_TTL, 10)
#
# For each count: a throwaway etcd (scripts/etcd.sh, port 19690), `gru create`, `gru config
# push` of a generated configuration (loop 1 s, gossip 1 s, MaxFriends 5, TTL --ttl, one
# service `idle` with MinInstances 0 scaled on cpu_avg: no container is ever started, the
# tick still reads discovery and weighs the service), then the agents, `gru join <cluster>
# --name agent-I --port 19700+I --bind 127.0.0.1 --publish-ip 127.0.0.1 --start`, a tenth of
# a second apart. Once every agent answers /healthz and its node record is in etcd, the
# script waits --settle seconds, then reads etcd's own Prometheus metrics (/metrics on the
# client port) before and after the window:
#   * grpc_server_msg_received_total by grpc_method: every request message etcd received,
#     unary calls (Range, Txn, Put, LeaseGrant, ...) and each message on a stream (each
#     keep-alive on LeaseKeepAlive, each create/cancel on Watch); printed as messages/s in
#     all and per agent;
#   * etcd_network_client_grpc_{received,sent}_bytes_total: bytes/s to and from clients, per
#     agent (what a read costs grows with what it returns: discovery records, the ledger);
#   * etcd's CPU: utime + stime of its process (/proc/<pid>/stat) over the window, in % of
#     one core (and process_cpu_seconds_total from /metrics beside it);
#   * each agent's VmRSS at the end of the window and its CPU over the window (% of a core).
# Nothing else talks to etcd during the window (the script's own checks are before and
# after it; /metrics is HTTP, not gRPC). The load average is printed with each window.
#
# Last line: etcd_msgs_per_agent_s_5=... etcd_msgs_per_agent_s_20=... etcd_msgs_per_agent_s_50=...
# (one key per count). Exit 1 when an agent dies, a node record is missing or etcd's
# metrics cannot be read. Every agent and etcd are stopped on every path, Ctrl-C included.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
counts=${GRU_BENCH_COUNTS:-5 20 50}
window=${GRU_BENCH_WINDOW:-60}
settle=${GRU_BENCH_SETTLE:-20}
ttl=${GRU_BENCH_TTL:-10}
build=true
keep_logs=""
while [ $# -gt 0 ]; do
  case $1 in
    --counts) counts=${2:?--counts needs a list}; shift 2 ;;
    --window) window=${2:?--window needs seconds}; shift 2 ;;
    --settle) settle=${2:?--settle needs seconds}; shift 2 ;;
    --ttl) ttl=${2:?--ttl needs seconds}; shift 2 ;;
    --no-build) build=false; shift ;;
    --keep-logs) keep_logs=${2:?--keep-logs needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done
for n in $counts; do [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 99 ] || die "--counts: '$n' is not a count of 1 to 99"; done
for v in window settle ttl; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v takes whole seconds > 0, not '${!v}'"; done

etcd_port=19690
agent_port0=19700
for tool in etcd etcdctl docker curl cargo awk ss; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST} (the agents connect to it)"
busy=$(ss -Hltn | awk '{ n = split($4, a, ":"); print a[n] }' |
  awk -v lo="$etcd_port" -v hi=$((agent_port0 + 99)) '$1 >= lo && $1 <= hi' | sort -un | tr '\n' ' ')
[ -z "$busy" ] || die "ports $etcd_port-$((agent_port0 + 99)) must be free; in use: $busy(another etcd-load run?)"

tmp=$(mktemp -d /tmp/gru-etcd-load.XXXXXX)
mkdir -p "$tmp/logs" "$tmp/config/services" "$tmp/config/analytics"
export GRU_RUN_DIR=$tmp/run
agents=()
torn_down=false

# stop_agents: SIGTERM to all (each revokes its lease and drains for up to 5 s), SIGKILL
# to those still there after 15 s.
stop_agents() {
  local pid i alive
  [ ${#agents[@]} -eq 0 ] && return 0
  for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 150; i++)); do
    alive=false
    for pid in "${agents[@]}"; do exited "$pid" || { alive=true; break; }; done
    $alive || break
    sleep 0.1
  done
  for pid in "${agents[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${agents[@]}"; do wait "$pid" 2>/dev/null || true; done
  agents=()
}

cleanup() {
  set +e
  $torn_down && return 0
  torn_down=true
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  stop_agents
  if [ -n "$keep_logs" ]; then
    mkdir -p "$keep_logs" && cp -r "$tmp/logs/." "$keep_logs/"
    cp "$GRU_RUN_DIR"/etcd/*.log "$keep_logs/" 2>/dev/null
  fi
  "$GRU_ROOT/scripts/etcd.sh" stop
  rm -rf "$tmp"
  say "etcd-load torn down (agents, etcd, $tmp)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $build; then
  say "building gru (cargo build --release -p gru)"
  cargo build --release --locked -q -p gru
fi
gru=$GRU_TARGET_DIR/release/gru
[ -x "$gru" ] || die "$gru is missing (run without --no-build)"

# The configuration: nothing to run, everything to look at.
cat >"$tmp/config/config.json" <<EOF
{
  "Docker": { "DaemonUrl": "unix:///var/run/docker.sock", "DaemonTimeout": 10 },
  "Autonomic": { "LoopTimeInterval": 1, "PlannerStrategy": "probcumulative", "EnableLogReading": false },
  "Communication": { "LoopTimeInterval": 1, "MaxFriends": 5 },
  "Storage": { "StorageService": "internal" },
  "Metric": { "MetricService": "" },
  "Discovery": { "AppRoot": "", "TTL": $ttl }
}
EOF
cat >"$tmp/config/policy.json" <<'EOF'
{
  "Scaleout": { "Enable": true, "Threshold": 0.75, "Metrics": ["cpu_avg"], "Period": 5, "Step": 1 },
  "Scalein": { "Enable": true, "Threshold": 0.35, "Metrics": ["cpu_avg"], "Period": 10, "Step": 1 },
  "Swap": { "Enable": false, "Threshold": 0.6 },
  "CooldownOut": 15,
  "CooldownIn": 30
}
EOF
cat >"$tmp/config/services/idle.json" <<'EOF'
{
  "Name": "idle",
  "Image": "gru-workload:latest",
  "DiscoveryPort": "8080",
  "MinInstances": 0,
  "MaxInstances": 2,
  "Configuration": { "Memory": "16m", "StopTimeout": 1, "Env": { "SERVICE_NAME": "idle" } }
}
EOF

now() { date +%s.%N; }

# scrape FILE: `method count` per gRPC method, and `cpu_seconds S`, from etcd's /metrics.
scrape() {
  curl -sf -m 5 "http://127.0.0.1:$etcd_port/metrics" | awk '
    /^grpc_server_msg_received_total\{/ {
      match($0, /grpc_method="[^"]*"/); m = substr($0, RSTART + 13, RLENGTH - 14)
      sum[m] += $NF
    }
    /^process_cpu_seconds_total / { print "cpu_seconds", $2 }
    /^etcd_network_client_grpc_received_bytes_total / { print "bytes_in", $2 }
    /^etcd_network_client_grpc_sent_bytes_total / { print "bytes_out", $2 }
    END { for (m in sum) print m, sum[m] }' >"$1"
  grep -q '^Range ' "$1" || die "etcd's /metrics has no grpc_server_msg_received_total for Range"
}

# registered: how many agents have a node record in etcd.
registered() {
  timeout 10 etcdctl --endpoints="$ETCD_ADDR" get --prefix --keys-only "/gru/$cluster/nodes/" 2>/dev/null |
    grep -c '/config$' || true
}

results=()
summary=()
for n in $counts; do
  cluster=etcd-load-$n
  say "$n agents: fresh etcd on port $etcd_port, cluster $cluster"
  ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --port "$etcd_port")
  export ETCD_ADDR
  etcd_pid=$(cat "$GRU_RUN_DIR/etcd/m0.pid")
  "$gru" create "$cluster" >/dev/null
  "$gru" config push "$cluster" "$tmp/config" >/dev/null
  for ((i = 0; i < n; i++)); do
    "$gru" join "$cluster" --name "agent-$i" --port $((agent_port0 + i)) --bind 127.0.0.1 \
      --publish-ip 127.0.0.1 --start >"$tmp/logs/$n-agent-$i.log" 2>&1 &
    agents+=($!)
    sleep 0.1
  done
  for ((i = 0; i < n; i++)); do
    wait_http "http://127.0.0.1:$((agent_port0 + i))/healthz" 60 ||
      die "agent-$i of $n did not answer /healthz within 60 s; its log: $(tail -5 "$tmp/logs/$n-agent-$i.log")"
  done
  for ((i = 0; i < 100; i++)); do [ "$(registered)" -ge "$n" ] && break; sleep 0.2; done
  [ "$(registered)" -eq "$n" ] || die "$(registered) node records for $n agents"
  say "$n agents up and registered; steady state in $settle s, then a $window s window"
  pause "$settle"

  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  declare -A agent_ticks=()
  for pid in "${agents[@]}"; do agent_ticks[$pid]=$(cpu_ticks "$pid"); done
  scrape "$tmp/before"
  etcd_ticks0=$(cpu_ticks "$etcd_pid"); t0=$(now)
  pause "$window"
  scrape "$tmp/after"
  etcd_ticks1=$(cpu_ticks "$etcd_pid"); t1=$(now)
  rss=()
  agent_cpu=()
  for ((i = 0; i < n; i++)); do
    pid=${agents[$i]}
    exited "$pid" && die "agent-$i of $n exited during the window; its log: $(tail -5 "$tmp/logs/$n-agent-$i.log")"
    rss+=("$(rss_kb "$pid")")
    agent_cpu+=("$(cpu_ticks "$pid") ${agent_ticks[$pid]}")
  done
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  [ "$(registered)" -eq "$n" ] || die "after the window, $(registered) node records for $n agents"
  unset agent_ticks

  # Per method: messages/s in all and per agent, over the measured wall time.
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  printf '\n%d agents, window %.1f s (load average %s before, %s after)\n' "$n" "$elapsed" "$load_before" "$load_after"
  printf '  %-24s %12s %14s\n' "gRPC method" "msgs/s" "msgs/s/agent"
  awk -v n="$n" -v dt="$elapsed" '
    FNR == NR { before[$1] = $2; next }
    $1 == "bytes_in" || $1 == "bytes_out" { bytes[$1] = $2 - before[$1]; next }
    $1 != "cpu_seconds" { d = $2 - before[$1]; if (d > 0) { printf "%s %.2f %.3f\n", $1, d / dt, d / dt / n; total += d } }
    END {
      printf "all %.2f %.3f\n", total / dt, total / dt / n
      printf "bytes %.0f %.0f %.0f %.0f\n", bytes["bytes_in"] / dt / n, bytes["bytes_out"] / dt / n, bytes["bytes_in"] / dt, bytes["bytes_out"] / dt
    }' "$tmp/before" "$tmp/after" >"$tmp/rates"
  grep -v '^all \|^bytes ' "$tmp/rates" | sort -k3 -gr | while read -r method rate each; do
    printf '  %-24s %12s %14s\n' "$method" "$rate" "$each"
  done
  read -r _ rate_all per_agent < <(grep '^all ' "$tmp/rates")
  printf '  %-24s %12s %14s\n' "all" "$rate_all" "$per_agent"
  read -r _ in_each out_each in_all out_all < <(grep '^bytes ' "$tmp/rates")
  printf '  gRPC bytes: %s B/s received and %s B/s sent per agent (%s and %s in all)\n' "$in_each" "$out_each" "$in_all" "$out_all"
  etcd_cpu=$(awk -v d=$((etcd_ticks1 - etcd_ticks0)) -v hz="$clk_tck" -v dt="$elapsed" 'BEGIN { printf "%.2f", d / hz / dt * 100 }')
  etcd_cpu_metric=$(awk -v dt="$elapsed" 'FNR == NR && $1 == "cpu_seconds" { a = $2; next } $1 == "cpu_seconds" { printf "%.2f", ($2 - a) / dt * 100 }' "$tmp/before" "$tmp/after")
  printf '  etcd CPU: %s %% of a core (/proc; process_cpu_seconds_total: %s %%), VmRSS %.1f MiB\n' \
    "$etcd_cpu" "$etcd_cpu_metric" "$(awk -v k="$(rss_kb "$etcd_pid")" 'BEGIN { print k / 1024 }')"
  # Each agent's VmRSS (MiB) and CPU (% of a core), ten to a line.
  printf '  agents (VmRSS MiB / CPU %% of a core over the window):\n'
  line=""
  for ((i = 0; i < n; i++)); do
    read -r t1c t0c <<<"${agent_cpu[$i]}"
    line+=$(awk -v i="$i" -v k="${rss[$i]}" -v d=$((t1c - t0c)) -v hz="$clk_tck" -v dt="$elapsed" \
      'BEGIN { printf "  %3d: %4.1f/%4.2f", i, k / 1024, d / hz / dt * 100 }')
    if (((i + 1) % 8 == 0)) || ((i + 1 == n)); then printf '  %s\n' "$line"; line=""; fi
  done
  agent_stats=$(for ((i = 0; i < n; i++)); do
    read -r t1c t0c <<<"${agent_cpu[$i]}"
    echo "${rss[$i]} $((t1c - t0c))"
  done | awk -v hz="$clk_tck" -v dt="$elapsed" '
    { r = $1 / 1024; if (NR == 1 || r < lo) lo = r; if (r > hi) hi = r; s += r; c += $2 / hz / dt * 100 }
    END { printf "%.1f %.1f %.1f %.2f", lo, s / NR, hi, c / NR }')
  read -r rss_min rss_mean rss_max cpu_mean <<<"$agent_stats"
  printf '  agents: VmRSS min %s / mean %s / max %s MiB; CPU mean %s %% of a core\n' "$rss_min" "$rss_mean" "$rss_max" "$cpu_mean"

  results+=("etcd_msgs_per_agent_s_$n=$per_agent")
  summary+=("$(printf '%6d %18s %11s %28s %12s   %s' "$n" "$per_agent" "$etcd_cpu" "$rss_min / $rss_mean / $rss_max" "$cpu_mean" "$load_before -> $load_after")")

  say "$n agents: stopping them and etcd"
  stop_agents
  "$GRU_ROOT/scripts/etcd.sh" stop
done

printf '\n%6s %18s %11s %28s %12s   %s\n' agents "etcd msgs/s/agent" "etcd CPU %" "agent RSS MiB min/mean/max" "agent CPU %" "load average"
printf '%s\n' "${summary[@]}"
echo "window ${window} s after ${settle} s of steady state; loop 1 s, gossip 1 s, TTL ${ttl} s; release build; $(uptime | sed 's/^ *//')"
cleanup
trap - EXIT
echo "${results[*]}"
