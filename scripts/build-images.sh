#!/usr/bin/env bash
# Builds the images gru's tests and demo run, from static (musl) release binaries, with no
# registry: gru-workload:latest (the managed application) and gru-loadgen:latest (load).
# Each image is FROM scratch and its build context is a temporary directory holding only
# its binary, so docker is not sent the target directory. Idempotent: an unchanged binary
# gives the same image id; a replaced image is removed when nothing uses it.
#
#   scripts/build-images.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

target=x86_64-unknown-linux-musl
images=(workload loadgen)

rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || die "the Rust target $target is not installed: run scripts/install-deps.sh (or rustup target add $target)"
command -v musl-gcc >/dev/null \
  || die "musl-gcc is missing (package musl-tools): run scripts/install-deps.sh"
command -v docker >/dev/null \
  || die "the docker CLI is missing: run scripts/install-deps.sh"
docker info >/dev/null 2>&1 \
  || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}: start one with scripts/dockerd.sh start"

say "building static binaries (cargo build --release --target $target -p gru-workload)"
started=$SECONDS
cargo build --release --locked --target "$target" -p gru-workload
say "binaries built in $((SECONDS - started)) s"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

for name in "${images[@]}"; do
  image=gru-$name:latest
  binary=target/$target/release/gru-$name
  [ -x "$binary" ] || die "$binary was not built"
  rm -rf "${context:?}"/*
  cp "$binary" "$context/gru-$name"
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
  docker image inspect --format "{{index .RepoTags 0}} {{.Id}} {{.Size}}" "gru-$name:latest" |
    awk '{ printf "%-22s %s %.1f MB (%d bytes)\n", $1, substr($2, 8, 12), $3 / 1e6, $3 }'
done
