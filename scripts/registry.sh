#!/usr/bin/env bash
# Starts or stops a throwaway image registry on loopback (Debian's docker-registry,
# distribution 2.8), with basic auth from an htpasswd file (bcrypt), storage in a temp dir.
# The engine treats 127.0.0.0/8 registries as insecure, so plain HTTP works for
# `docker push 127.0.0.1:PORT/...` and for gru's pulls.
#
#   scripts/registry.sh start [--port 5000] [--user gru]   prints the address (127.0.0.1:PORT)
#                                                         password: $GRU_REGISTRY_PASSWORD,
#                                                         else a random one written to
#                                                         $GRU_RUN_DIR/registry/password
#   scripts/registry.sh stop                              stops it, removes its data
#
# Log in without touching ~/.docker: DOCKER_CONFIG=$(mktemp -d) docker login 127.0.0.1:PORT
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$GRU_RUN_DIR/registry
cmd=${1:-}; shift || true
port=5000
user=gru
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

case $cmd in
  start)
    command -v docker-registry >/dev/null || die "docker-registry not installed: run scripts/install-deps.sh"
    command -v htpasswd >/dev/null || die "htpasswd not installed: run scripts/install-deps.sh"
    "$0" stop
    mkdir -p "$dir/data"
    chmod 700 "$dir"
    password=${GRU_REGISTRY_PASSWORD:-$(openssl rand -hex 12)}
    (umask 077; printf '%s\n' "$password" >"$dir/password")
    # -i: the password from stdin, never on a command line that ps shows.
    printf '%s\n' "$password" | htpasswd -iBc "$dir/htpasswd" "$user" 2>/dev/null
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 16)
auth:
  htpasswd:
    realm: gru-registry
    path: $dir/htpasswd
YAML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    # /v2/ answers 401 without credentials once it serves.
    for ((i = 0; i < 100; i++)); do
      code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
      [ "$code" = 401 ] && break
      sleep 0.1
    done
    [ "$code" = 401 ] || die "the registry did not start; see $dir/log"
    say "registry on 127.0.0.1:$port, user $user, password in $dir/password"
    echo "127.0.0.1:$port"
    ;;
  stop)
    stop_pidfile "$dir/pid"
    rm -rf "$dir"
    ;;
  *) die "usage: $0 start [--port P] [--user U] | stop" ;;
esac
