#!/usr/bin/env bash
# What one agent costs its node (issue 14): one `gru join` (release build) managing 0, 20
# and 100 containers of the test workload, its resident memory and CPU once each count is
# reached and settled. Run by `scripts/bench.sh footprint`.
#
#   scripts/bench-footprint.sh                       0, 20 and 100 containers, 30 s samples
#   scripts/bench-footprint.sh --counts "0 5" --sample 5 --settle 3     a quick run
#   scripts/bench-footprint.sh --no-build            use the binary and image already built
#   scripts/bench-footprint.sh --keep-logs DIR       copy the agent's and etcd's logs to DIR
#
# Options (the environment variables give the defaults):
#   --counts "A B C"  managed containers, in increasing order  (GRU_BENCH_COUNTS, "0 20 100")
#   --sample S        CPU is measured over S seconds            (GRU_BENCH_SAMPLE, 30)
#   --settle S        wait after the count is reached           (GRU_BENCH_SETTLE, 15)
#   --memory M        each container's memory limit             (GRU_BENCH_MEMORY, 8m; the
#                     workload idles at about 1 MiB, and the engine refuses less than 6m)
#
# A throwaway etcd (scripts/etcd.sh, port 19790), `gru create`, then for each count a `gru
# config push` of one service `bulk` on gru-workload:latest pinned at that count
# (MinInstances = MaxInstances; 0 is MinInstances 0, MaxInstances 1, so nothing runs), with
# the memory limit, no published port, the policy scaling on cpu_avg and mem_avg (the
# bounds keep the count), loop 1 s, gossip 1 s, log reading on (the agent follows every
# container's logs and stats, as it does for real services). One agent, `gru join <cluster>
# --name footprint --port 19791 --bind 127.0.0.1 --start`, runs through all counts: the
# agent starts the containers itself (MinInstances). Once the engine runs exactly that many
# containers of the cluster and discovery lists them all, the script waits --settle
# seconds, then samples for --sample seconds:
#   * the agent's CPU: utime + stime (/proc/<pid>/stat) over the sample, % of one core;
#   * its VmRSS (/proc/<pid>/status) at the end of the sample, and the peak seen (every s);
#   * for context, the Docker engine's CPU over the same sample (dockerd serves the
#     agent's stats and log streams) and the load average.
# It checks that every container is still running at the end (none OOM-killed).
#
# Last line: rss_idle_mb=... rss_20_mb=... rss_100_mb=... cpu_idle_pct=... cpu_20_pct=...
# cpu_100_pct=... (keys named after --counts; 0 is "idle"). The agent, every container of
# the cluster (by its label org.gru.cluster) and etcd are removed on every path, Ctrl-C
# included.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
counts=${GRU_BENCH_COUNTS:-0 20 100}
sample=${GRU_BENCH_SAMPLE:-30}
settle=${GRU_BENCH_SETTLE:-15}
memory=${GRU_BENCH_MEMORY:-8m}
build=true
keep_logs=""
while [ $# -gt 0 ]; do
  case $1 in
    --counts) counts=${2:?--counts needs a list}; shift 2 ;;
    --sample) sample=${2:?--sample needs seconds}; shift 2 ;;
    --settle) settle=${2:?--settle needs seconds}; shift 2 ;;
    --memory) memory=${2:?--memory needs a size}; shift 2 ;;
    --no-build) build=false; shift ;;
    --keep-logs) keep_logs=${2:?--keep-logs needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done
previous=-1
for n in $counts; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -le 500 ] || die "--counts: '$n' is not a count of 0 to 500"
  [ "$n" -gt "$previous" ] || die "--counts must increase: the agent goes from one count to the next"
  previous=$n
done
max_count=$previous
for v in sample settle; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v takes whole seconds > 0, not '${!v}'"; done
[[ $memory =~ ^[1-9][0-9]*[mMgG]$ ]] || die "--memory takes a size such as 8m, not '$memory'"

etcd_port=19790
agent_port=19792
cluster=footprint-$$
for tool in etcd etcdctl docker curl cargo awk ss; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}"
busy=$(ss -Hltn | awk '{ n = split($4, a, ":"); print a[n] }' |
  awk -v lo="$etcd_port" -v hi="$agent_port" '$1 >= lo && $1 <= hi' | sort -un | tr '\n' ' ')
[ -z "$busy" ] || die "ports $etcd_port-$agent_port must be free; in use: $busy(another footprint run?)"
# Room: each container costs its limit at most plus about 10 MiB of containerd-shim outside
# it; ask for twice that, and 1 GiB besides.
limit_mb=$(awk -v m="$memory" 'BEGIN { n = m + 0; u = tolower(substr(m, length(m))); print (u == "g" ? n * 1024 : n) }')
available_mb=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
needed_mb=$((max_count * (limit_mb + 10) * 2 + 1024))
[ "$available_mb" -ge "$needed_mb" ] ||
  die "$max_count containers of $memory need about $needed_mb MiB free; $available_mb MiB available"

tmp=$(mktemp -d /tmp/gru-footprint.XXXXXX)
mkdir -p "$tmp/config/services"
export GRU_RUN_DIR=$tmp/run
agent=""
torn_down=false

containers() { timeout 20 docker ps -aq --filter "label=org.gru.cluster=$cluster" "$@"; }

cleanup() {
  set +e
  $torn_down && return 0
  torn_down=true
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  local i ids
  if [ -n "$agent" ]; then
    kill "$agent" 2>/dev/null
    for ((i = 0; i < 150; i++)); do exited "$agent" && break; sleep 0.1; done
    kill -9 "$agent" 2>/dev/null
    wait "$agent" 2>/dev/null
  fi
  if [ -n "$keep_logs" ]; then
    mkdir -p "$keep_logs" && cp "$tmp/agent.log" "$keep_logs/" 2>/dev/null
    cp "$GRU_RUN_DIR"/etcd/*.log "$keep_logs/" 2>/dev/null
  fi
  ids=$(containers)
  # shellcheck disable=SC2086 # one argument per id
  [ -n "$ids" ] && timeout 300 docker rm -f $ids >/dev/null
  "$GRU_ROOT/scripts/etcd.sh" stop
  rm -rf "$tmp"
  say "footprint torn down (agent, $(echo "$ids" | grep -c . || true) containers, etcd, $tmp)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $build; then
  say "building gru (cargo build --release -p gru)"
  cargo build --release --locked -q -p gru
  if ! docker image inspect gru-workload:latest >/dev/null 2>&1; then
    say "building the workload image (scripts/build-images.sh workload)"
    "$GRU_ROOT/scripts/build-images.sh" workload >/dev/null
  fi
fi
gru=$GRU_TARGET_DIR/release/gru
[ -x "$gru" ] || die "$gru is missing (run without --no-build)"
docker image inspect gru-workload:latest >/dev/null 2>&1 || die "image gru-workload:latest is missing (run without --no-build)"

cat >"$tmp/config/config.json" <<'EOF'
{
  "Docker": { "DaemonUrl": "unix:///var/run/docker.sock", "DaemonTimeout": 10 },
  "Autonomic": { "LoopTimeInterval": 1, "PlannerStrategy": "probcumulative", "EnableLogReading": true },
  "Communication": { "LoopTimeInterval": 1, "MaxFriends": 5 },
  "Storage": { "StorageService": "internal" },
  "Metric": { "MetricService": "" },
  "Discovery": { "AppRoot": "", "TTL": 10 }
}
EOF
cat >"$tmp/config/policy.json" <<'EOF'
{
  "Scaleout": { "Enable": true, "Threshold": 0.75, "Metrics": ["cpu_avg", "mem_avg"], "Period": 5, "Step": 1 },
  "Scalein": { "Enable": true, "Threshold": 0.35, "Metrics": ["cpu_avg", "mem_avg"], "Period": 10, "Step": 1 },
  "Swap": { "Enable": false, "Threshold": 0.6 },
  "CooldownOut": 15,
  "CooldownIn": 30
}
EOF
# push_count N: service bulk pinned at N (0: nothing runs).
push_count() {
  local min=$1 max=$1
  [ "$1" -eq 0 ] && max=1
  cat >"$tmp/config/services/bulk.json" <<EOF
{
  "Name": "bulk",
  "Image": "gru-workload:latest",
  "MinInstances": $min,
  "MaxInstances": $max,
  "Configuration": { "Memory": "$memory", "StopTimeout": 1, "Env": { "SERVICE_NAME": "bulk", "SERVICE_TIME_MS": "5" } }
}
EOF
  "$gru" config push "$cluster" "$tmp/config" >/dev/null
}

discovered() {
  timeout 10 etcdctl --endpoints="$ETCD_ADDR" get --prefix --keys-only "/gru/$cluster/discovery/bulk/" 2>/dev/null |
    grep -c . || true
}
running() { containers --filter status=running | grep -c . || true; }

say "etcd on port $etcd_port, cluster $cluster"
ETCD_ADDR=$("$GRU_ROOT/scripts/etcd.sh" start --port "$etcd_port")
export ETCD_ADDR
"$gru" create "$cluster" >/dev/null
first=${counts%% *}
push_count "$first"
"$gru" join "$cluster" --name footprint --port "$agent_port" --bind 127.0.0.1 \
  --publish-ip 127.0.0.1 --start >"$tmp/agent.log" 2>&1 &
agent=$!
wait_http "http://127.0.0.1:$agent_port/healthz" 60 || die "the agent did not answer /healthz; its log: $(tail -5 "$tmp/agent.log")"
dockerd_pid=$(pgrep -xo dockerd || true)

results=()
cpus=()
rows=()
for n in $counts; do
  [ "$n" = "$first" ] || push_count "$n"
  began=$(date +%s.%N)
  say "$n containers of bulk ($memory each): waiting until they run and are registered"
  for ((i = 0; ; i++)); do
    exited "$agent" && die "the agent exited; its log: $(tail -5 "$tmp/agent.log")"
    [ "$(running)" -eq "$n" ] && [ "$(discovered)" -eq "$n" ] && break
    [ "$i" -ge 300 ] && die "after 10 minutes: $(running) running, $(discovered) registered, $n wanted"
    pause 2
  done
  reached=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  say "$n running and registered after ${reached} s; settling $settle s, then a $sample s sample"
  pause "$settle"
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  a0=$(cpu_ticks "$agent"); d0=$([ -n "$dockerd_pid" ] && cpu_ticks "$dockerd_pid" || echo 0); t0=$(date +%s.%N)
  peak=0
  for ((s = 0; s < sample; s++)); do
    pause 1
    kb=$(rss_kb "$agent")
    [ "$kb" -gt "$peak" ] && peak=$kb
  done
  a1=$(cpu_ticks "$agent"); d1=$([ -n "$dockerd_pid" ] && cpu_ticks "$dockerd_pid" || echo 0); t1=$(date +%s.%N)
  kb=$(rss_kb "$agent")
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  exited "$agent" && die "the agent exited during the sample"
  up=$(running)
  down=$(containers --filter status=exited | grep -c . || true)
  [ "$up" -eq "$n" ] && [ "$down" -eq 0 ] || die "$n containers wanted, $up running and $down exited at the end of the sample"
  read -r rss_mb peak_mb cpu dockerd_cpu < <(awk -v k="$kb" -v p="$peak" -v a=$((a1 - a0)) -v d=$((d1 - d0)) \
    -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" \
    'BEGIN { dt = t1 - t0; printf "%.1f %.1f %.2f %.2f\n", k / 1024, p / 1024, a / hz / dt * 100, d / hz / dt * 100 }')
  printf '%3d containers: agent VmRSS %s MiB (peak %s), CPU %s %% of a core over %s s; dockerd CPU %s %%; load average %s -> %s\n' \
    "$n" "$rss_mb" "$peak_mb" "$cpu" "$sample" "$dockerd_cpu" "$load_before" "$load_after"
  key=$n; [ "$n" -eq 0 ] && key=idle
  results+=("rss_${key}_mb=$rss_mb")
  cpus+=("cpu_${key}_pct=$cpu")
  rows+=("$(printf '%10s %14s %9s %12s %14s %10s   %s' "$n" "$rss_mb" "$peak_mb" "$cpu" "$dockerd_cpu" "$reached" "$load_before -> $load_after")")
done

printf '\n%10s %14s %9s %12s %14s %10s   %s\n' containers "agent RSS MiB" "peak MiB" "agent CPU %" "dockerd CPU %" "reached s" "load average"
printf '%s\n' "${rows[@]}"
echo "sample ${sample} s after ${settle} s settled; loop 1 s, gossip 1 s, log reading on, $memory per container; release build; $(uptime | sed 's/^ *//')"
cleanup
trap - EXIT
echo "${results[*]} ${cpus[*]}"
