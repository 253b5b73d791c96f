#!/usr/bin/env bash
# Starts or stops a throwaway VictoriaMetrics (accepts InfluxDB v2 line-protocol writes at
# /api/v2/write) on loopback.
#
#   scripts/victoria-metrics.sh start [--port 28428]   prints the base URL
#   scripts/victoria-metrics.sh stop
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$GRU_RUN_DIR/victoria-metrics
cmd=${1:-}; shift || true
port=28428
[ "${1:-}" = --port ] && port=$2

case $cmd in
  start)
    command -v victoria-metrics >/dev/null || die "victoria-metrics not installed: run scripts/install-deps.sh"
    "$0" stop
    mkdir -p "$dir"
    victoria-metrics -storageDataPath="$dir/data" -httpListenAddr="127.0.0.1:$port" \
      -retentionPeriod=100y -search.latencyOffset=0s >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    wait_http "http://127.0.0.1:$port/health" 20 || die "victoria-metrics did not start; see $dir/log"
    echo "http://127.0.0.1:$port"
    ;;
  stop)
    stop_pidfile "$dir/pid"
    rm -rf "$dir"
    ;;
  *) die "usage: $0 start [--port P] | stop" ;;
esac
