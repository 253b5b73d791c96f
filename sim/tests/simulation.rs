//! Whole runs of the simulator, small enough for a debug build: determinism, the
//! invariants under each fault, the herd gru prevents, and convergence of the views.

use std::sync::Arc;

use gru_sim::experiments::{self, ConvergenceSetup, fault_sets};
use gru_sim::scenario::{Fault, Mode, Scenario, ViewKind, sim_policy};
use gru_sim::sim::{RunReport, run};
use gru_sim::trace::{Trace, TraceKind};

/// The first `secs` seconds of a shipped trace's shape.
fn trace(kind: TraceKind, secs: usize) -> Arc<Trace> {
    let mut trace = kind.generate(7);
    trace.demand.truncate(secs);
    Arc::new(trace)
}

/// 30 nodes on the first 30 min of the bursty trace, with `db` beside `web`.
fn small_run(mode: Mode, faults: (&str, Vec<Fault>), seed: u64) -> RunReport {
    let scenario = Scenario::trace_run(mode, trace(TraceKind::Bursty, 1_800), 30, seed)
        .with_db()
        .with_faults(faults.0, faults.1);
    run(&scenario)
}

fn faults(name: &str) -> (&'static str, Vec<Fault>) {
    fault_sets(30, 1_800)
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("a known fault set")
}

#[test]
fn same_seed_gives_the_same_run_and_another_seed_another() {
    for mode in Mode::ALL {
        let a = small_run(mode, faults("all three"), 5);
        let b = small_run(mode, faults("all three"), 5);
        assert_eq!(a, b, "{mode}: same seed, different runs");
        assert!(!a.instance_series.is_empty());
    }
    let a = small_run(Mode::Gru, faults("loss"), 5);
    let c = small_run(Mode::Gru, faults("loss"), 6);
    assert_ne!(
        (a.instance_series, a.requests),
        (c.instance_series, c.requests),
        "the seed drives friends, draws and losses"
    );
}

#[test]
fn gru_keeps_its_invariants_under_each_fault() {
    for name in ["no fault", "crash", "loss", "partition", "all three"] {
        let report = small_run(Mode::Gru, faults(name), 1);
        assert_eq!(
            report.violations.total(),
            0,
            "{name}: {:?}",
            report.violations
        );
        assert!(
            report.scale_out_actions > 0,
            "{name}: the bursts are answered"
        );
        let step = sim_policy().scaleout.step;
        assert!(
            report.max_added_per_window <= step,
            "{name}: Step {step} per CooldownOut window, saw {}",
            report.max_added_per_window
        );
        assert!(report.peak_instances <= 120 + 10, "{name}");
    }
}

#[test]
fn a_crash_below_min_instances_is_repaired_within_ttl_and_two_loops() {
    let report = small_run(Mode::Gru, faults("crash"), 1);
    assert!(
        report.instances_repaired > 0,
        "the crash takes db below its MinInstances of 3: {report:?}"
    );
    // Lease TTL 10 s + 2 loops of 10 s.
    assert!(
        report.longest_below_min_secs <= 30,
        "restored after {} s",
        report.longest_below_min_secs
    );
    assert_eq!(report.violations.below_min, 0);
}

#[test]
fn a_partitioned_minority_cannot_claim_steps() {
    let scenario = Scenario::overload(Mode::Gru, 20, 40, 300, 3).with_faults(
        "partition",
        vec![Fault::Partition {
            from_secs: 30,
            until_secs: 270,
            minority: (10..20).collect(),
        }],
    );
    let report = run(&scenario);
    assert!(
        report.store_unreachable > 0,
        "the minority decided to scale but could not reach the ledger: {report:?}"
    );
    assert_eq!(report.violations.step_out, 0);
    assert!(report.max_added_per_window <= sim_policy().scaleout.step);
}

#[test]
fn gru_original_overshoots_where_gru_does_not() {
    let step = sim_policy().scaleout.step;
    for nodes in [10, 40] {
        let gru = run(&Scenario::overload(Mode::Gru, nodes, 8, 240, 1));
        let original = run(&Scenario::overload(Mode::GruOriginal, nodes, 8, 240, 1));
        assert!(
            gru.max_added_per_window <= step,
            "{nodes}: gru added {}",
            gru.max_added_per_window
        );
        assert_eq!(
            gru.peak_instances, 8,
            "{nodes}: gru reaches its max and stays there"
        );
        assert_eq!(gru.violations.total(), 0, "{nodes}: {:?}", gru.violations);
        assert!(
            original.max_added_per_window > step && original.peak_instances > 8,
            "{nodes}: Gru's herd: {original:?}"
        );
        assert!(original.violations.above_max > 0 && original.violations.step_out > 0);
    }
}

#[test]
fn views_converge_within_the_goal_at_a_thousand_agents() {
    let setup = ConvergenceSetup::acceptance(1_000, ViewKind::Compact, 1);
    let result = experiments::convergence(&setup);
    let rounds = result.rounds.expect("99 % of the agents converge");
    assert!(
        f64::from(rounds) <= setup.goal(),
        "{rounds} rounds, goal {:.2}",
        setup.goal()
    );
    assert!(result.max_requests_per_agent <= 5);
    assert!(result.replies_per_agent_round <= result.requests_per_agent_round);
    assert!(
        (result.true_after - result.true_before).abs() > 0.1,
        "{result:?}"
    );
}

#[test]
fn legs_sent_again_make_up_for_lost_messages() {
    let lossy = |attempts| {
        let setup = ConvergenceSetup {
            loss: 0.2,
            attempts,
            ..ConvergenceSetup::acceptance(300, ViewKind::Compact, 1)
        };
        experiments::convergence(&setup)
    };
    let (once, again) = (lossy(1), lossy(gru_agent::gossip::digest::LEG_ATTEMPTS));
    let rounds = |r: &experiments::ConvergenceResult| r.rounds.expect("they converge");
    assert!(
        rounds(&again) < rounds(&once),
        "sent again: {:?}, sent once: {:?}",
        again.share_by_round,
        once.share_by_round
    );
    let setup = ConvergenceSetup::acceptance(300, ViewKind::Compact, 1);
    assert!(f64::from(rounds(&again)) <= setup.goal());
}

#[test]
fn compact_and_cluster_views_converge_alike() {
    let real = experiments::convergence(&ConvergenceSetup::acceptance(150, ViewKind::Cluster, 4));
    let compact =
        experiments::convergence(&ConvergenceSetup::acceptance(150, ViewKind::Compact, 4));
    assert_eq!(real.share_by_round, compact.share_by_round);
    assert_eq!(real.rounds, compact.rounds);
    assert_eq!(
        real.requests_per_agent_round,
        compact.requests_per_agent_round
    );
}

#[test]
fn every_mode_runs_every_shipped_trace_shape() {
    for kind in TraceKind::ALL {
        for mode in Mode::ALL {
            let report = run(&Scenario::trace_run(mode, trace(kind, 600), 10, 1));
            if mode != Mode::GruOriginal {
                assert_eq!(report.violations.above_max, 0, "{kind} {mode}");
            }
            assert!(report.container_secs > 0, "{kind} {mode}");
        }
    }
}

#[test]
fn after_a_partition_at_max_heals_gru_is_back_within_max_in_four_loops() {
    let max = experiments::OVERLOAD_MAX;
    for seed in 0..8 {
        let scenario = experiments::partition_near_max(Mode::Gru, seed);
        let timing = scenario.timing;
        let [Fault::Partition { until_secs, .. }] = scenario.faults[..] else {
            panic!("one partition: {:?}", scenario.faults);
        };
        let heal = until_secs as usize;
        // The excess is what the cut-off minority kept running (up to a dozen here). When
        // the partition heals, the minority re-registers that tick, so discovery counts it
        // again; from then every agent running an instance claims one stop per loop, one
        // claim per ledger revision (one per tick), without waiting for the settle TTL
        // (the settling intent only lowers the count the next claim starts from) or a
        // cooldown. Those agents are few (a scale-out starts its Step on the claiming
        // node), so a loop may see only two or three stops: bound 4 loops = 2 settle TTLs
        // = 40 s (seeds 0..60 need at most 35 s).
        let bound = 4 * timing.loop_secs;
        assert_eq!(bound, 2 * timing.settle_secs);
        let gru = run(&scenario);
        assert!(
            gru.above_max_during_partition > 0 && gru.instances_repaired_above_max > 0,
            "{seed}: the minority's leases expired, the majority scaled to max: {gru:?}"
        );
        assert!(
            gru.above_max_secs_after_heal <= bound && gru.above_max_after_heal <= bound,
            "{seed}: still above max {} s after the heal (bound {bound} s)",
            gru.above_max_secs_after_heal
        );
        assert_eq!(
            gru.violations.above_max,
            gru.above_max_during_partition + gru.above_max_after_heal,
            "{seed}: above max only because of the partition"
        );
        let after_heal = &gru.instance_series[heal..];
        assert!(
            after_heal.iter().all(|&n| n >= max),
            "{seed}: the repair stops the excess and no more: {after_heal:?}"
        );
        assert!(
            after_heal[bound as usize..].iter().all(|&n| n <= max),
            "{seed}: within max from {bound} s after the heal: {after_heal:?}"
        );
        assert_eq!(
            gru.violations.below_min, 0,
            "{seed}: never below MinInstances"
        );
        assert_eq!(
            (gru.violations.step_in, gru.scale_in_actions),
            (0, 0),
            "{seed}: the stops are repairs, not steps"
        );
        assert_eq!(gru, run(&scenario), "{seed}: same seed, same run");

        let original = run(&experiments::partition_near_max(Mode::GruOriginal, seed));
        assert_eq!(
            original.instances_repaired_above_max, 0,
            "Gru had no such repair"
        );
    }
}

/// Target tracking on the `load` analytic at `target`, scale-in stabilized 30 s.
fn target_policy(target: f64) -> common::config::PolicyConfig {
    use common::config::{PolicyRule, RuleMode};
    let mut policy = sim_policy();
    for rule in [&mut policy.scaleout, &mut policy.scalein] {
        *rule = PolicyRule {
            mode: RuleMode::Target,
            target: Some(target),
            period_secs: 0,
            step: 1,
            ..rule.clone()
        };
    }
    policy.scalein.stabilization_secs = 30;
    policy.cooldown_out_secs = 10;
    policy.cooldown_in_secs = 0;
    policy
}

#[test]
fn target_tracking_keeps_its_invariants_under_each_fault_and_fills_across_nodes() {
    for name in ["no fault", "crash", "partition", "all three"] {
        let mut scenario = Scenario::trace_run(Mode::Gru, trace(TraceKind::Bursty, 1_800), 30, 1)
            .with_faults(faults(name).0, faults(name).1);
        scenario.policy = target_policy(0.6);
        let report = run(&scenario);
        // Bounds and one decision per window (each within its growth limit); after a heal
        // the ceiling repair may take a few loops, as in step mode.
        assert_eq!(
            report.violations.step_out + report.violations.step_in,
            0,
            "{name}: {:?}",
            report.violations
        );
        assert_eq!(
            report.violations.above_max,
            report.above_max_during_partition + report.above_max_after_heal,
            "{name}: above max outside a partition"
        );
        // Decisions larger than the deciding node's room were filled by other agents.
        assert!(
            report.instances_filled > 0,
            "{name}: no fills in {report:?}"
        );
    }
}

#[test]
fn target_tracking_reacts_to_a_step_faster_than_a_fixed_step() {
    let step = trace(TraceKind::Step, 3_600);
    let fixed = run(&Scenario::trace_run(Mode::Gru, step.clone(), 50, 1));
    let mut tracking = Scenario::trace_run(Mode::Gru, step, 50, 1);
    tracking.policy = target_policy(0.6);
    let tracking = run(&tracking);
    assert_eq!(tracking.violations.total(), 0, "{:?}", tracking.violations);
    assert!(
        tracking.slo_violation_secs < fixed.slo_violation_secs,
        "target tracking {} SLO-s, fixed step {}",
        tracking.slo_violation_secs,
        fixed.slo_violation_secs
    );
}

/// The rules of the agent's core that `code` applies itself instead of through
/// `gru_agent::tick`: the ledger's claims, the core's own steps called one by one (what to
/// claim, when to withhold, what a won claim does), a machine driven by hand instead of
/// through `tick::ports`, and the planner called by its path (`mape::plan`), by its
/// imported name (`plan(`) or imported at all.
fn rules_outside_the_core(code: &str) -> Vec<&'static str> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found: Vec<&'static str> = [
        "evaluate(",
        "evaluate_target(",
        "floor_claim(",
        "ceiling_claim(",
        "fill_claim(",
        "tick::decide(",
        "tick::withheld(",
        "tick::effect(",
        "want_of(",
        "ClaimIo::",
        "ExecutionIo::",
    ]
    .into_iter()
    .filter(|rule| code.contains(rule))
    .collect();
    let by_path = code
        .match_indices("mape::plan")
        .any(|(at, rule)| !code[at + rule.len()..].chars().next().is_some_and(ident));
    if by_path {
        found.push("mape::plan");
    }
    // `tick::plan(` is the core's; a method (`.plan(`) or another name (`replan(`) is not
    // the planner.
    let by_name = code.match_indices("plan(").any(|(at, _)| {
        let before = &code[..at];
        !before.ends_with("tick::")
            && !before
                .chars()
                .next_back()
                .is_some_and(|c| ident(c) || c == '.')
    });
    if by_name {
        found.push("plan(");
    }
    let imported = code.match_indices("mape::{").any(|(at, open)| {
        let group = &code[at + open.len()..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        group.split(|c: char| !ident(c)).any(|word| word == "plan")
    });
    if imported {
        found.push("use mape::{plan}");
    }
    found
}

#[test]
fn the_scan_for_rules_outside_the_core_finds_the_planner_but_not_the_cores_plan() {
    let cases: [(&str, &[&str]); 9] = [
        ("let planned = tick::plan(&input, &state, &mut rng);", &[]),
        ("self.plan(&x); replan(y); // the planner's decision", &[]),
        (
            "use gru_agent::mape::{Action, PlanInput, PlannerState};",
            &[],
        ),
        (
            "let (d, s) = gru_agent::mape::plan(&input, &state, rng);",
            &["mape::plan", "plan("],
        ),
        ("use gru_agent::mape::plan;", &["mape::plan"]),
        (
            "use gru_agent::mape::{Action, plan};\nlet d = plan(&i, &s, r);",
            &["plan(", "use mape::{plan}"],
        ),
        ("coordination::floor_claim(n, 1, 2, &l)", &["floor_claim("]),
        (
            "if tick::withheld(w, d, true, false) { continue }",
            &["tick::withheld("],
        ),
        (
            "match machine.next() { ClaimIo::Done => break, _ => {} }",
            &["ClaimIo::"],
        ),
    ];
    for (code, expected) in cases {
        assert_eq!(rules_outside_the_core(code), expected, "{code}");
    }
}

/// The simulator drives the agent's tick core: it must not apply the ledger's rules or run
/// the planner itself (a copy could drift from what the agent does).
#[test]
fn the_simulator_claims_only_through_the_tick_core() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("sim/src") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("a source file");
        // Tests of the fake store may build claims directly; the simulation may not.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        // Comments may name the rules.
        let code: String = code
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for rule in rules_outside_the_core(&code) {
            offences.push(format!("{}: {rule}", path.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "core rules applied outside gru_agent::tick: {offences:?}"
    );
}

/// The longest run of consecutive seconds in which the count of `web` grows, in the minute
/// after the step (at 600 s), and the count at the end of that minute.
fn longest_growth(report: &RunReport) -> (usize, u32) {
    let series = &report.instance_series[599..660];
    let (mut longest, mut run) = (0, 0);
    for pair in series.windows(2) {
        run = if pair[1] > pair[0] { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    (longest, series[series.len() - 1])
}

/// A target-tracking decision larger than the deciding node's room is filled by the other
/// agents one claim after another; a lost fill is retried moments later (the agent's
/// `tick::fill_retry_delay`), so the whole decision starts within two loops, where trying
/// once a tick started one node's room per tick.
#[test]
fn a_target_beyond_one_nodes_room_is_filled_within_two_loops() {
    let step = trace(TraceKind::Step, 1_200);
    let mut scenario = Scenario::trace_run(Mode::Gru, step, 50, 1).with_target(0.5);
    scenario.view = ViewKind::Compact;
    let retried = run(&scenario);
    scenario.timing.fill_rounds = 1;
    let once = run(&scenario);
    let (retried_secs, retried_count) = longest_growth(&retried);
    let (once_secs, _) = longest_growth(&once);
    assert!(
        retried_count >= 100,
        "a minute after the step web has {retried_count} instances only"
    );
    let two_loops = 2 * scenario.timing.loop_secs as usize;
    assert!(
        retried_secs <= two_loops,
        "a decision took {retried_secs} s to fill with retries (one try a tick: {once_secs} s)"
    );
    assert!(
        once_secs > two_loops,
        "one try a tick filled as fast ({once_secs} s): the test does not see retries"
    );
    assert_eq!(retried.violations.total(), 0, "{:?}", retried.violations);
}

/// Issue 12's comparison scene in the simulator: a lease revoked under the two nodes that
/// run `web` makes nobody start a second copy (the survivors' repairs are withheld while
/// the nodes in doubt answer, the revoked nodes' own while their lease is gone and their
/// discovery settles); the loss of one of them afterwards is repaired with one start.
#[test]
fn a_lease_revoked_under_running_nodes_starts_nothing_and_a_lost_node_one_instance() {
    for seed in 1..=5 {
        let outcome = experiments::revoked_then_lost(seed);
        assert_eq!(
            outcome.starts_after_revocation, 0,
            "seed {seed}: {outcome:?}"
        );
        assert!(
            outcome.withheld > 0,
            "seed {seed}: nothing was withheld: {outcome:?}"
        );
        assert_eq!(outcome.starts_after_loss, 1, "seed {seed}: {outcome:?}");
        assert_eq!(outcome.final_instances, 2, "seed {seed}: {outcome:?}");
        assert!(outcome.peak_instances <= 3, "seed {seed}: {outcome:?}");
    }
}

/// An agent killed with kill -9 and back within its lease's TTL adopts its instance:
/// nothing is started anywhere. One stopped with SIGTERM revokes its lease on the way out:
/// its records vanish, it does not answer while it is down, so the others restore
/// MinInstances (one start), and the instance it adopts on its return stays (within max):
/// the churn of a graceful restart that `docs/reliability.md` lists.
#[test]
fn a_kill_9_restart_within_the_ttl_starts_nothing_and_a_sigterm_restart_one_instance() {
    use gru_sim::experiments::{COMPARISON_SECS, starts_between, three_node_scene};
    for seed in 1..=5 {
        let restart = |graceful| {
            run(&three_node_scene(
                seed,
                vec![Fault::Restart {
                    at_secs: 10,
                    nodes: vec![0],
                    down_secs: 2,
                    graceful,
                }],
            ))
        };
        let killed = restart(false);
        assert_eq!(
            starts_between(&killed, 0, COMPARISON_SECS),
            0,
            "seed {seed}"
        );
        assert_eq!(killed.instance_series.last(), Some(&2), "seed {seed}");
        let stopped = restart(true);
        assert_eq!(
            starts_between(&stopped, 0, COMPARISON_SECS),
            1,
            "seed {seed}"
        );
        assert_eq!(stopped.instance_series.last(), Some(&3), "seed {seed}");
        assert_eq!(
            stopped.violations.total(),
            0,
            "seed {seed}: {:?}",
            stopped.violations
        );
    }
}

/// A store member that stalls for longer than the lease's TTL under a node running `web`:
/// the node's lease expires and its records vanish, but it still answers the others'
/// probes, so their repairs are withheld; when it fails over within the grace (a TTL and
/// two loops after its records vanished) it registers again, its discovery settles, and
/// nothing is started. A longer stall outlasts the grace: the node answers but stays
/// unregistered, and its instance is repaired elsewhere (one start, within max), as the
/// agent's rule says.
#[test]
fn a_stalled_store_member_starts_nothing_within_the_grace_and_one_instance_after() {
    use gru_sim::experiments::{COMPARISON_SECS, starts_between, three_node_scene};
    for seed in 1..=5 {
        let stall = |stall_secs| {
            run(&three_node_scene(
                seed,
                vec![Fault::StoreStall {
                    at_secs: 10,
                    nodes: vec![0],
                    stall_secs,
                }],
            ))
        };
        let short = stall(6);
        assert_eq!(starts_between(&short, 0, COMPARISON_SECS), 0, "seed {seed}");
        assert!(
            short.repairs_withheld > 0,
            "seed {seed}: no repair was withheld"
        );
        assert_eq!(short.instance_series.last(), Some(&2), "seed {seed}");
        let long = stall(12);
        assert_eq!(starts_between(&long, 0, COMPARISON_SECS), 1, "seed {seed}");
        assert!(
            long.repairs_withheld > 0,
            "seed {seed}: no repair was withheld"
        );
        assert_eq!(
            long.violations.total(),
            0,
            "seed {seed}: {:?}",
            long.violations
        );
    }
}

/// Swaps go through the tick core as the agent carries them out (`tick::Execution`): on
/// full nodes that run only an idle `batch`, a busy `web` (35 req/s on 2 instances of 10)
/// that cannot fit anywhere takes a `batch` slot (both halves claimed, the stop before the
/// start), one per node that lacks it. With swaps disabled the same cluster stays as it
/// is: nothing else can make room.
#[test]
fn a_swap_replaces_an_idle_instance_with_a_busy_one_on_a_full_node() {
    use common::config::PolicyRule;
    use gru_sim::scenario::{Demand, ServiceSpec};

    let swap_rule = PolicyRule {
        enable: true,
        analytics: vec![gru_sim::view::LOAD.to_owned()],
        ..PolicyRule::disabled(0.6)
    };
    let mut scenario = Scenario::overload(Mode::Gru, 4, 20, 300, 3);
    scenario.slots_per_node = 2;
    let service = |name: &str, initial, rps| ServiceSpec {
        name: name.to_owned(),
        capacity_rps: 10.0,
        min: 1,
        max: Some(8),
        initial,
        demand: Demand::Constant(rps),
    };
    // web on nodes 0 and 1 (one slot each); batch fills the rest, two on nodes 2 and 3.
    scenario.services = vec![service("web", 2, 35.0), service("batch", 6, 1.0)];
    scenario.policy.scalein.enable = false;
    scenario.policy.swap = swap_rule;
    let swapped = run(&scenario);
    scenario.policy.swap.enable = false;
    let unswapped = run(&scenario);
    assert!(swapped.swaps >= 1, "no swap: {swapped:#?}");
    assert_eq!(unswapped.swaps, 0, "a swap while swaps are disabled");
    // Nothing passes a bound and batch never drops below its min (the fake runtime itself
    // never holds more than its slots, so a peak check here could not fail).
    assert_eq!(swapped.violations.total(), 0, "{:?}", swapped.violations);
    assert!(
        swapped.slo_violation_secs < unswapped.slo_violation_secs,
        "swaps did not bring web capacity: {} SLO-s against {} without",
        swapped.slo_violation_secs,
        unswapped.slo_violation_secs
    );
}
