#!/usr/bin/env bash
# Makes sure a Docker engine is reachable. Where one is already running, does nothing.
# Otherwise starts a private dockerd (data in $GRU_RUN_DIR/dockerd) and prints the
# DOCKER_HOST to export.
#
#   scripts/dockerd.sh start
#   scripts/dockerd.sh stop     stops only a dockerd this script started
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$GRU_RUN_DIR/dockerd
case ${1:-} in
  start)
    if docker info >/dev/null 2>&1; then
      echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"
      exit 0
    fi
    command -v dockerd >/dev/null || die "no Docker engine running and dockerd not installed: run scripts/install-deps.sh"
    mkdir -p "$dir"
    dockerd --data-root "$dir/root" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
      -H "unix://$dir/docker.sock" >"$dir/log" 2>&1 &
    for ((i = 0; i < 100; i++)); do
      DOCKER_HOST="unix://$dir/docker.sock" docker info >/dev/null 2>&1 && break
      sleep 0.1
    done
    DOCKER_HOST="unix://$dir/docker.sock" docker info >/dev/null 2>&1 || die "dockerd did not start; see $dir/log"
    echo "unix://$dir/docker.sock"
    ;;
  stop)
    stop_pidfile "$dir/dockerd.pid"
    ;;
  *) die "usage: $0 start | stop" ;;
esac
