# Shared helpers for gru's scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
# shellcheck shell=bash

GRU_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where cargo builds (CARGO_TARGET_DIR if set, relative to the checkout, else target/):
# every script runs what it built from here.
case ${CARGO_TARGET_DIR:-} in
  "") GRU_TARGET_DIR=$GRU_ROOT/target ;;
  /*) GRU_TARGET_DIR=$CARGO_TARGET_DIR ;;
  *) GRU_TARGET_DIR=$GRU_ROOT/$CARGO_TARGET_DIR ;;
esac
# Where started components keep their data, logs and pid files.
GRU_RUN_DIR=${GRU_RUN_DIR:-/tmp/gru-run}

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# wait_http URL SECONDS: polls until URL answers 2xx, or fails.
wait_http() {
  local url=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    curl -sf -m 2 "$url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# stop_pidfile FILE: TERM then KILL the process recorded in FILE, and remove FILE.
stop_pidfile() {
  local file=$1 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# exited PID: whether a child has exited (a zombie until it is waited for).
exited() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)
  [ -z "$state" ] || [ "$state" = Z ]
}

# pause S: sleeps in the background and waits for it, so that a signal runs the traps at
# once (bash runs a trap only after its foreground command returns). A trap kills
# "$sleeper" when it is set.
sleeper=""
pause() {
  sleep "$1" &
  sleeper=$!
  wait "$sleeper" || true
  sleeper=""
}

# cpu_ticks PID: utime + stime in clock ticks (fields 14 and 15; the name may hold spaces),
# 0 when the process is gone. clk_tck ticks make a second.
clk_tck=$(getconf CLK_TCK)
cpu_ticks() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  rest=${stat##*) }
  # shellcheck disable=SC2086 # split into fields on purpose
  set -- $rest
  echo $((${12} + ${13}))
}

# rss_kb PID: the process's resident memory (VmRSS) in KiB, 0 when it is gone.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
