#!/usr/bin/env bash
# Builds the images gru's tests, demo and local compose cluster run, with no registry:
#   from static (musl) release binaries of this workspace
#     gru-workload:latest          the managed application
#     gru-loadgen:latest           load
#     gru:latest                   the agent (and every other gru command)
#   from Debian's binaries (dynamically linked: the libraries `ldd` lists are copied along)
#     gru-etcd:latest              etcd and etcdctl (package etcd-server, etcd-client)
#     gru-victoria-metrics:latest  VictoriaMetrics, the local stand-in for InfluxDB 2
# Each image is FROM scratch and its build context is a temporary directory holding only
# its files, so docker is not sent the target directory. Idempotent: unchanged binaries
# give the same image id; a replaced image is removed when nothing uses it.
#
#   scripts/build-images.sh            all of them
#   scripts/build-images.sh workload   only the named ones (workload loadgen gru etcd victoria-metrics)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

target=x86_64-unknown-linux-musl
all=(workload loadgen gru etcd victoria-metrics)
images=("${@:-${all[@]}}")
for name in "${images[@]}"; do
  [[ " ${all[*]} " == *" $name "* ]] || die "unknown image $name (known: ${all[*]})"
done
wants() { [[ " ${images[*]} " == *" $1 "* ]]; }

rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || die "the Rust target $target is not installed: run scripts/install-deps.sh (or rustup target add $target)"
command -v musl-gcc >/dev/null \
  || die "musl-gcc is missing (package musl-tools): run scripts/install-deps.sh"
command -v docker >/dev/null \
  || die "the docker CLI is missing: run scripts/install-deps.sh"
docker info >/dev/null 2>&1 \
  || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}: start one with scripts/dockerd.sh start"

packages=()
{ wants workload || wants loadgen; } && packages+=(-p gru-workload)
wants gru && packages+=(-p gru)
if [ ${#packages[@]} -gt 0 ]; then
  say "building static binaries (cargo build --release --target $target ${packages[*]})"
  started=$SECONDS
  cargo build --release --locked --target "$target" "${packages[@]}"
  say "binaries built in $((SECONDS - started)) s"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

# image_name NAME: the tag of an image.
image_name() { if [ "$1" = gru ]; then echo gru:latest; else echo "gru-$1:latest"; fi; }

# rootfs BINARY...: copies Debian binaries to $context/rootfs/usr/local/bin and every shared
# library they load (ldd: libc, the dynamic loader, ...) to the same path as on this host.
rootfs() {
  local bin lib
  mkdir -p "$context/rootfs/usr/local/bin"
  for bin in "$@"; do
    bin=$(command -v "$bin") || die "$1 is not installed: run scripts/install-deps.sh"
    cp -L "$bin" "$context/rootfs/usr/local/bin/"
    for lib in $(ldd "$bin" | awk '/=>/ { print $3 } !/=>/ && $1 ~ /^\// { print $1 }'); do
      mkdir -p "$context/rootfs$(dirname "$lib")"
      cp -L "$lib" "$context/rootfs$lib"
    done
  done
  # Written by the servers at run time.
  mkdir -p "$context/rootfs/data" "$context/rootfs/tmp"
  chmod 1777 "$context/rootfs/tmp"
}

for name in "${images[@]}"; do
  image=$(image_name "$name")
  rm -rf "${context:?}"/*
  case $name in
    workload | loadgen | gru)
      binary=$GRU_TARGET_DIR/$target/release/gru-$name
      [ "$name" = gru ] && binary=$GRU_TARGET_DIR/$target/release/gru
      [ -x "$binary" ] || die "$binary was not built"
      cp "$binary" "$context/$(basename "$binary")"
      ;;
    etcd) rootfs etcd etcdctl ;;
    victoria-metrics) rootfs victoria-metrics ;;
  esac
  cp "docker/$name.Dockerfile" "$context/Dockerfile"
  previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  say "docker build -t $image"
  # The legacy builder warns that it is deprecated on every build: show its output only
  # when the build fails.
  if ! log=$(docker build --tag "$image" "$context" 2>&1); then
    printf '%s\n' "$log" >&2
    die "docker build of $image failed"
  fi
  current=$(docker image inspect --format '{{.Id}}' "$image")
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    # The old image is now untagged; a container still using it keeps it alive.
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
done

say "images"
for name in "${images[@]}"; do
  docker image inspect --format "{{index .RepoTags 0}} {{.Id}} {{.Size}}" "$(image_name "$name")" |
    awk '{ printf "%-28s %s %.1f MB (%d bytes)\n", $1, substr($2, 8, 12), $3 / 1e6, $3 }'
done
