#!/usr/bin/env bash
# gru's benchmarks: scripts that print figures (never timed assertions in tests). Each mode
# ends with one `key=value ...` line for tools to read.
#
#   scripts/bench.sh sink [--hours N]   the InfluxDB sink's memory over N hours of an agent's
#                                       uptime in fast time (default 1), against a real
#                                       VictoriaMetrics with a 5-minute outage; prints the
#                                       resident memory every 5 simulated minutes and ends
#                                       with sink_rss_growth_pct=... (from minute 15 on)
#   scripts/bench.sh sim [--quick] [--trace-seeds A..B]
#                                       the many-agent simulator (gru-sim bench): convergence,
#                                       overshoot, four modes on six traces, a Pareto
#                                       comparison over seeds A..B (default 0..9), faults;
#                                       ends with rounds_99_at_10000=... overshoot_gru_max=...
#                                       slo_ratio_vs_hpa_at_equal_cost=... dominates_*=...
#   scripts/bench.sh soak [--minutes N] three real agents for N minutes (default 10) under
#                                       changing load and agent restarts (scripts/soak.sh);
#                                       ends with rss_growth_pct=... violations=... actions=...
#   scripts/bench.sh reaction [--trials N]
#                                       one real agent (loop 1 s, Period 0) against a load
#                                       step reported to its push endpoint: the median time to
#                                       a new instance running and registered, against the
#                                       median create+start of the same image, and the agent's
#                                       RSS and CPU at idle and with 20 containers
#                                       (cli/examples/reaction_bench.rs, docs/benchmarks.md);
#                                       ends with reaction_ms=... start_ms=... ratio=...
#   scripts/bench.sh etcd-load [--counts "5 20 50"] [--window 60] [--settle 20] [--ttl 10]
#                                       5, 20 and 50 real agents (release, loop and gossip
#                                       1 s, idle) against one etcd: etcd's own /metrics
#                                       before and after the window, messages/s per agent by
#                                       gRPC method, etcd's CPU, each agent's RSS
#                                       (scripts/bench-etcd-load.sh); ends with
#                                       etcd_msgs_per_agent_s_5=... _20=... _50=...
#   scripts/bench.sh footprint [--counts "0 20 100"] [--sample 30] [--settle 15] [--memory 8m]
#                                       one real agent (release) managing 0, 20 and 100
#                                       containers of the workload: its RSS and CPU once
#                                       each count is reached and settled
#                                       (scripts/bench-footprint.sh); ends with
#                                       rss_idle_mb=... rss_20_mb=... rss_100_mb=...
#                                       cpu_idle_pct=... cpu_20_pct=... cpu_100_pct=...
#   scripts/bench.sh planner [-- [--iterations N] [--only plan|swap|view]]
#                                       the pure core's time per tick (cargo bench, release):
#                                       mape::plan through tick::plan over 100 services x 10
#                                       analytics, the cluster view's merge of 1,000 reports
#                                       (agent/benches/planner.rs); ends with
#                                       plan_us_per_tick_100x10=... view_merge_us_1000=...
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$GRU_ROOT"

mode=${1:-}
shift || true
case $mode in
  sink)
    command -v victoria-metrics >/dev/null || die "victoria-metrics not installed: run scripts/install-deps.sh"
    say "building the sink benchmark (cargo build --release --example sink_bench)"
    cargo build --release --locked -q -p gru-agent --example sink_bench
    say "one agent, 5 services x 4 instances, a tick per simulated second"
    "$GRU_TARGET_DIR/release/examples/sink_bench" "$@"
    ;;
  sim)
    # The many-agent simulator (sim/): convergence at N = 1,000 and 10,000, overshoot,
    # the four modes on the shipped traces, the Pareto comparison (gru's and HPA's targets,
    # Dynamite, gru-original) on six trace kinds generated from seeds 0..9 (or
    # --trace-seeds A..B, both ends included), faults; ends with rounds_99_at_10000=...,
    # overshoot_gru_max=..., slo_ratio_vs_hpa_at_equal_cost=..., dominates_dynamite=...,
    # dominates_gru_original=... Arguments go to `gru-sim bench`. See docs/simulation.md.
    say "building the simulator (cargo build --release -p gru-sim)"
    cargo build --release --locked -q -p gru-sim
    "$GRU_TARGET_DIR/release/gru-sim" bench "$@"
    ;;
  soak)
    # Real etcd, Docker and three agents; RSS growth over the last 5 minutes and the
    # cluster's invariants. Arguments go to scripts/soak.sh.
    exec "$GRU_ROOT/scripts/soak.sh" "$@"
    ;;
  reaction)
    # Real etcd, Docker and one agent. Arguments go to the example (--trials, --report-ms,
    # --high, --low, --sample-secs, --managed; see its module doc).
    command -v etcd >/dev/null || die "etcd not installed: run scripts/install-deps.sh"
    docker info >/dev/null 2>&1 || die "no Docker engine answers: start one with scripts/dockerd.sh start"
    if ! docker image inspect gru-workload:latest >/dev/null 2>&1; then
      say "building the workload image (scripts/build-images.sh workload)"
      "$GRU_ROOT/scripts/build-images.sh" workload
    fi
    say "building gru and the reaction benchmark (cargo build --release -p gru --bin gru --example reaction_bench)"
    cargo build --release --locked -q -p gru --bin gru --example reaction_bench
    "$GRU_TARGET_DIR/release/examples/reaction_bench" --gru "$GRU_TARGET_DIR/release/gru" "$@"
    ;;
  etcd-load)
    # Real etcd and agents, no container. Arguments go to scripts/bench-etcd-load.sh.
    exec "$GRU_ROOT/scripts/bench-etcd-load.sh" "$@"
    ;;
  footprint)
    # Real etcd, Docker and one agent. Arguments go to scripts/bench-footprint.sh.
    exec "$GRU_ROOT/scripts/bench-footprint.sh" "$@"
    ;;
  planner)
    # No I/O: the pure core in one process. Arguments after -- go to the bench
    # (--iterations N, default 2,000 per case; --only plan, swap or view: one group).
    say "building and running the planner bench (cargo bench -p gru-agent --bench planner)"
    [ "${1:-}" = -- ] && shift
    cargo bench --locked -q -p gru-agent --bench planner -- "$@"
    ;;
  *) die "usage: $0 sink [--hours N] | sim [--seed N] [--quick] [--trace-seeds A..B] | soak [--minutes N] | reaction [--trials N] | etcd-load [--counts \"5 20 50\"] [--window S] | footprint [--counts \"0 20 100\"] [--sample S] | planner [-- [--iterations N] [--only plan|swap|view]]" ;;
esac
