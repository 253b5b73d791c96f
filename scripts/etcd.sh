#!/usr/bin/env bash
# Starts or stops a throwaway etcd on loopback, away from the default ports.
#
#   scripts/etcd.sh start [--members 1|3] [--port 23790]   prints the client endpoints
#   scripts/etcd.sh stop                                   stops every member, removes data
#   scripts/etcd.sh kill N                                 SIGKILL member N (0-based)
#   scripts/etcd.sh revive N                               start member N again on its data
#                                                          (it rejoins its cluster)
#   scripts/etcd.sh pid N                                  member N's pid (to SIGSTOP it)
#
# Member i listens for clients on PORT+2i and for peers on PORT+2i+1. Data, logs and pid
# files live in $GRU_RUN_DIR/etcd (default /tmp/gru-run/etcd).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$GRU_RUN_DIR/etcd
cmd=${1:-}; shift || true
members=1
port=23790
while [ $# -gt 0 ]; do
  case $1 in
    --members) members=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) case $cmd in kill | revive | pid) break ;; esac; die "unknown option $1" ;;
  esac
done

endpoints() {
  local i out=()
  for ((i = 0; i < members; i++)); do out+=("http://127.0.0.1:$((port + 2 * i))"); done
  (IFS=,; echo "${out[*]}")
}

case $cmd in
  start)
    command -v etcd >/dev/null || die "etcd not installed: run scripts/install-deps.sh"
    "$0" stop
    mkdir -p "$dir"
    cluster=""
    for ((i = 0; i < members; i++)); do
      cluster+="${cluster:+,}m$i=http://127.0.0.1:$((port + 2 * i + 1))"
    done
    for ((i = 0; i < members; i++)); do
      c="http://127.0.0.1:$((port + 2 * i))"; p="http://127.0.0.1:$((port + 2 * i + 1))"
      etcd --name "m$i" --data-dir "$dir/m$i.data" \
        --listen-client-urls "$c" --advertise-client-urls "$c" \
        --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
        --initial-cluster "$cluster" --initial-cluster-token "gru-$$" \
        --initial-cluster-state new >"$dir/m$i.log" 2>&1 &
      echo $! >"$dir/m$i.pid"
    done
    for ((i = 0; i < members; i++)); do
      wait_http "http://127.0.0.1:$((port + 2 * i))/health" 30 ||
        die "etcd member m$i did not become healthy; see $dir/m$i.log"
    done
    echo "$members $port" >"$dir/topology"
    endpoints
    ;;
  stop)
    for f in "$dir"/m*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
    rm -rf "$dir"
    ;;
  kill)
    n=${1:?member number}
    f=$dir/m$n.pid
    [ -f "$f" ] || die "no member $n running"
    kill -9 "$(cat "$f")"; rm -f "$f"
    ;;
  revive)
    n=${1:?member number}
    [ -f "$dir/topology" ] || die "no etcd started here"
    read -r members port <"$dir/topology"
    [ -f "$dir/m$n.pid" ] && exited "$(cat "$dir/m$n.pid")" && rm -f "$dir/m$n.pid"
    [ -f "$dir/m$n.pid" ] && die "member $n is running"
    c="http://127.0.0.1:$((port + 2 * n))"; p="http://127.0.0.1:$((port + 2 * n + 1))"
    # On its data directory the member knows its cluster: the --initial-* flags are ignored.
    etcd --name "m$n" --data-dir "$dir/m$n.data" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster-state existing >>"$dir/m$n.log" 2>&1 &
    echo $! >"$dir/m$n.pid"
    ;;
  pid)
    n=${1:?member number}
    [ -f "$dir/m$n.pid" ] || die "no member $n running"
    cat "$dir/m$n.pid"
    ;;
  *) die "usage: $0 start [--members N] [--port P] | stop | kill N | revive N | pid N" ;;
esac
