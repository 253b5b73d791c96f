#!/usr/bin/env bash
# Installs the real components gru's demo and tests use, from Debian's packages:
# etcd (server and etcdctl), protoc and its well-known types (etcd-client's build), VictoriaMetrics (a time-series
# server that accepts InfluxDB v2 writes), musl-tools (static binaries for FROM-scratch
# images), Chromium (the web console's test drives it headless), Prometheus (the
# service discovery test), docker-registry and htpasswd (apache2-utils: the image pull tests'
# registry with basic auth), and a Docker engine only where none is running. Idempotent and quiet when
# everything is already there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v protoc >/dev/null || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto), imported by etcd's protos:
# only a Recommends of protobuf-compiler, so --no-install-recommends leaves them out.
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v curl >/dev/null || need+=(curl)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
command -v prometheus >/dev/null || need+=(prometheus)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then
  need+=(docker.io)
fi

if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  [ "$(id -u)" = 0 ] || die "run as root (or install ${need[*]} yourself)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || say "musl target unavailable (images will not build)"
fi
say "dependencies present: $(etcd --version | head -1), $(protoc --version), victoria-metrics, musl-gcc"
