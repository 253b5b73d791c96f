//! Target tracking on the real Docker engine and a real etcd, with three agents (issue 18's
//! acceptance test): a load step on a response-time-only policy grows `web` by one
//! target-tracking claim that agents on several nodes fill; under the steady load that
//! follows the count settles with at most one reversal of direction; once the traffic
//! stops, `web` goes back to MinInstances; and the count never leaves [min, max].
//!
//! **The load.** The test plays the service's metric reporter: it pushes `execution_time`
//! to every agent that runs an instance of `web` (`POST /gru/v1/stats/user/web/execution_time`,
//! the documented user-metric path), twice a second, computed from a fixed model of the
//! service rather than measured. Real HTTP load would need more CPU than a 2-core CI
//! machine spares next to three agents and etcd, and its response times would move with
//! whatever else runs there, so the test would be flaky. The model: an instance serves
//! [`CAPACITY_RPS`] requests per second in [`BASE_MS`]; beyond its capacity, requests
//! queue, so `execution_time = BASE_MS × max(1, D / (CAPACITY_RPS × instances))` for a
//! demand of D requests per second spread over the instances Docker runs. Under overload,
//! `n · v` does not depend on `n`, so the target-tracking formula ceil(n · v / Target) asks
//! for the same count whenever it is computed, and the count the step calls for is known in
//! advance ([`expected_count`]).
//!
//! **The room.** Every agent reads its node's resources from the Docker engine, and the
//! three agents share this machine's engine. Pinning cores (`CpuNumber`) cannot limit a
//! node here: cores are reserved engine-wide (agents sharing an engine see each other's
//! cpusets), so 2 cores would hold 2 instances in the whole cluster. Memory is counted per
//! node instead (an agent sets its own instances' limits against the engine's total), so
//! each instance gets a memory limit of 2/5 of the engine's memory and a node fits
//! floor(5/2) = 2 of them ([`SLOTS_PER_NODE`]). A limit is not an allocation: the workload
//! uses a few MiB. No node can hold the step alone, and three fill MaxInstances exactly.
//!
//! Run with `--nocapture` to see the timeline (the count every second, every agent's
//! actions) and the timings.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::agents::{ActionRecord, Agent};
use support::cluster::{Cluster, registered};
use support::configs::{TestConfig, config_for_agents};
use support::docker::{docker, running_instances};
use support::epoch_ms;
use testkit::{Component, ContainerEvents, figure, require, require_workload_image, wait_until};

const MIN_INSTANCES: u32 = 1;
const MAX_INSTANCES: u32 = 6;
const AGENTS: usize = 3;
/// Instances of `web` one node has room for (see the module doc).
const SLOTS_PER_NODE: u64 = 2;

/// The model service: response time of an instance within its capacity, and its capacity.
const BASE_MS: f64 = 20.0;
const CAPACITY_RPS: f64 = 10.0;
/// `MAX_RESP_TIME` of `web`: `resp_time_ratio` is `execution_time / MAX_RESP_TIME_MS`, so an
/// instance within its capacity reads 0.2.
const MAX_RESP_TIME_MS: f64 = 100.0;
/// Demand before the step (half of one instance's capacity) and after it.
const DEMAND_BEFORE_RPS: f64 = 5.0;
const DEMAND_STEP_RPS: f64 = 45.0;

/// The policy: target 25 % above the unloaded response time, with a dead band around it.
const TARGET: f64 = 0.25;
const SCALEOUT_THRESHOLD: f64 = 0.3;
const SCALEIN_THRESHOLD: f64 = 0.1;
/// One decision may take `web` from 1 to 5 instances.
const MAX_GROWTH_PERCENT: u32 = 400;
const COOLDOWN_OUT_SECS: u64 = 5;
/// The scale-out breach must last one loop (the metric window): fast detection starts the
/// period at the first sample over the threshold, and the count is then computed from a
/// window that holds only samples of the new load. With Period 0 the first decision is
/// computed from a window still half full of samples from before the step (ceil(1 × 0.43 /
/// 0.25) = 2 where the step calls for 4), and the rest needs a second decision a
/// CooldownOut later.
const SCALEOUT_PERIOD_SECS: u64 = 1;
const STABILIZATION_SECS: u64 = 15;
const LOOP_SECS: u64 = 1;
const TTL_SECS: u32 = 3;
const STOP_TIMEOUT_SECS: u64 = 2;

/// How often the test pushes and samples: twice per agent window (a loop interval), so the
/// window an agent reads always holds a sample while the load lasts.
const TICK: Duration = Duration::from_millis(500);
/// Base load before the step, then the step's load: growth and at least 30 s of steady load.
const BASELINE: Duration = Duration::from_secs(8);
const LOADED: Duration = Duration::from_secs(40);
/// How long `web` must stay at MinInstances at the end.
const HOLD_AT_MIN: Duration = Duration::from_secs(5);

/// The bound on the way back to MinInstances after the pushes stop: the last sample leaves
/// the agents' windows (a loop's span) and their views (their next report and a gossip
/// round: two loops); the scale-in stabilization then holds the count for its window; a
/// tick takes the decision, the agents with instances stop their shares (woken by the
/// ledger watch, a loser of a racing claim at its next tick: two loops) and each stop
/// drains for at most StopTimeout; 2 s for Docker to report the last exit.
fn return_bound() -> Duration {
    Duration::from_secs(STABILIZATION_SECS + 6 * LOOP_SECS + STOP_TIMEOUT_SECS + 2)
}

/// `execution_time` (ms) of the model service with `demand` requests per second spread over
/// `instances` instances.
fn execution_time_ms(demand: f64, instances: u32) -> f64 {
    let per_instance = demand / (CAPACITY_RPS * f64::from(instances.max(1)));
    BASE_MS * per_instance.max(1.0)
}

/// The count target tracking calls for under `demand`, from one instance: ceil(n · v / T)
/// with `v` the (clamped) response-time ratio, bounded by the growth limit and MaxInstances.
fn expected_count(demand: f64) -> u32 {
    let ratio = (execution_time_ms(demand, 1) / MAX_RESP_TIME_MS).min(1.0);
    let desired = (ratio / TARGET).ceil() as u32;
    let growth = 1 + (MAX_GROWTH_PERCENT / 100).max(1);
    desired.min(growth).min(MAX_INSTANCES)
}

/// How many times a sequence of counts changes direction (up then down, or down then up);
/// repeated counts do not count as a direction.
fn reversals(counts: &[u32]) -> usize {
    let mut directions = counts
        .windows(2)
        .filter_map(|w| (w[0] != w[1]).then_some(w[1] > w[0]));
    let Some(mut last) = directions.next() else {
        return 0;
    };
    let mut changes = 0;
    for up in directions {
        if up != last {
            changes += 1;
            last = up;
        }
    }
    changes
}

/// Running instances of `web` per node, in one `docker ps`.
fn running_by_node(cluster: &str) -> BTreeMap<String, u32> {
    let out = docker(&[
        "ps",
        "--filter",
        &format!("label=org.gru.cluster={cluster}"),
        "--filter",
        "label=org.gru.service=web",
        "--filter",
        "status=running",
        "--format",
        "{{.Label \"org.gru.node\"}}",
    ]);
    let mut nodes = BTreeMap::new();
    for node in out.lines().filter(|l| !l.is_empty()) {
        *nodes.entry(node.to_owned()).or_insert(0) += 1;
    }
    nodes
}

/// What the test saw at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    /// Running instances of `web` per node.
    nodes: BTreeMap<String, u32>,
}

impl Sample {
    fn count(&self) -> u32 {
        self.nodes.values().sum()
    }
}

/// The test's side of the run: samples Docker, pushes the model's response time, collects
/// the agents' action records (polled every second, so the agents' bounded histories
/// cannot lose any).
struct Run<'a> {
    agents: &'a [Agent],
    cluster: String,
    secret: String,
    samples: Vec<Sample>,
    actions: BTreeSet<ActionRecord>,
    pushes: u64,
    push_failures: Vec<String>,
}

impl Run<'_> {
    /// Samples (and, with a demand, pushes) every [`TICK`] for `duration`, or until `done`
    /// says the last sample ends the phase; returns when the phase ended.
    fn drive(
        &mut self,
        demand: Option<f64>,
        duration: Duration,
        mut done: impl FnMut(&[Sample]) -> bool,
    ) -> Instant {
        let started = Instant::now();
        let mut tick = 0u32;
        loop {
            let sample = Sample {
                at_ms: epoch_ms(),
                nodes: running_by_node(&self.cluster),
            };
            if let Some(demand) = demand {
                self.push(demand, &sample);
            }
            // Actions every other tick: once a second is enough for their histories.
            if tick & 1 == 0 {
                self.poll_actions();
            }
            self.samples.push(sample);
            if done(&self.samples) || started.elapsed() >= duration {
                self.poll_actions();
                return Instant::now();
            }
            tick += 1;
            let next = started + TICK * tick;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }

    /// Pushes the model's response time to every agent that runs an instance of `web`.
    fn push(&mut self, demand: f64, sample: &Sample) {
        let value = format!("{:.1}", execution_time_ms(demand, sample.count()));
        for agent in self.agents {
            if sample.nodes.get(&agent.node).copied().unwrap_or(0) == 0 {
                continue;
            }
            let answer = agent.push_stat(&self.secret, "web", "execution_time", &value);
            self.pushes += 1;
            if !answer.as_ref().is_some_and(|(s, _)| (200..300).contains(s)) {
                self.push_failures
                    .push(format!("{}: {answer:?}", agent.node));
            }
        }
    }

    fn poll_actions(&mut self) {
        for agent in self.agents {
            let records = agent.actions(256).into_iter();
            self.actions
                .extend(records.filter(|record| record.service == "web"));
        }
    }

    /// The count every second from `origin_ms` (the last sample of each second), and every
    /// action, in seconds from `origin_ms`.
    fn print_timeline(&self, origin_ms: u64) {
        let secs = |at: u64| (at as f64 - origin_ms as f64) / 1000.0;
        println!("timeline (s from the load step; count = running instances of web per node):");
        let mut per_second: BTreeMap<i64, &Sample> = BTreeMap::new();
        for sample in &self.samples {
            per_second.insert(secs(sample.at_ms).floor() as i64, sample);
        }
        for (second, sample) in per_second {
            println!("  {second:>4} s  {}  {:?}", sample.count(), sample.nodes);
        }
        println!("actions (all agents; refusals of decisions included):");
        let mut actions: Vec<&ActionRecord> = self.actions.iter().collect();
        actions.sort();
        for a in actions {
            println!(
                "  {:>7.2} s  {}  {:<13} {:<14} {}",
                secs(a.at_ms),
                a.node,
                a.action,
                a.instance.as_deref().unwrap_or("-"),
                a.result
            );
        }
    }
}

impl Run<'_> {
    /// Every agent's planner decisions to scale out while the load lasted, with the reason
    /// (the count the target formula computed, from which value): why a claim asked for
    /// what it did.
    fn print_scale_out_decisions(&self, origin_ms: u64, until_ms: u64) {
        println!("scale-out decisions while loaded (all agents):");
        let mut lines = Vec::new();
        for agent in self.agents {
            for decision in agent.decisions(256) {
                let at = decision["at"].as_u64().unwrap_or(0);
                if decision["action"]["kind"] == "scale-out" && at >= origin_ms && at < until_ms {
                    lines.push((at, agent.node.clone(), decision["reason"].to_string()));
                }
            }
        }
        lines.sort();
        for (at, node, reason) in lines {
            let secs = (at as f64 - origin_ms as f64) / 1000.0;
            println!("  {secs:>7.2} s  {node}  {reason}");
        }
    }
}

#[test]
fn a_load_step_is_one_target_claim_filled_across_nodes_that_settles_and_returns_to_min() {
    let test =
        "a_load_step_is_one_target_claim_filled_across_nodes_that_settles_and_returns_to_min";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    // Dropped last: removes every container of the cluster, also when an assert fails.
    let memory_total: u64 = docker(&["info", "--format", "{{.MemTotal}}"])
        .trim()
        .parse()
        .expect("the engine's memory");
    // 2/5 of the engine's memory per instance: 2 instances fit a node, 3 do not.
    let memory_per_instance = memory_total * 2 / 5;
    assert_eq!(memory_total / memory_per_instance, SLOTS_PER_NODE);

    let config = TestConfig::new(
        &config_for_agents(TTL_SECS),
        &format!(
            r#"{{"Scaleout": {{"Enable": true, "Mode": "target", "Target": {TARGET},
                               "Threshold": {SCALEOUT_THRESHOLD}, "Analytics": ["resp_time_ratio"],
                               "MaxGrowthPercent": {MAX_GROWTH_PERCENT},
                               "Period": {SCALEOUT_PERIOD_SECS}}},
                "Scalein":  {{"Enable": true, "Mode": "target", "Target": {TARGET},
                               "Threshold": {SCALEIN_THRESHOLD}, "Analytics": ["resp_time_ratio"],
                               "Stabilization": {STABILIZATION_SECS}}},
                "Swap":     {{"Enable": false, "Threshold": 0.6}},
                "CooldownOut": {COOLDOWN_OUT_SECS}}}"#
        ),
    );
    // An idle service reports no response time: with Missing 0 it reads as idle and
    // scales in, instead of leaving the analytic unavailable.
    std::fs::write(
        config.dir.path().join("analytics/resp_time_ratio.json"),
        r#"{"Name": "resp_time_ratio", "Expr": "execution_time / MAX_RESP_TIME",
            "Metrics": ["execution_time"], "Constraints": ["MAX_RESP_TIME"], "Missing": 0}"#,
    )
    .unwrap();
    let (low, high) = testkit::free_port_range(12);
    config.file(
        "services/web.json",
        &format!(
            r#"{{"Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio"],
                "Constraints": {{"MAX_RESP_TIME": {MAX_RESP_TIME_MS}}},
                "MinInstances": {MIN_INSTANCES}, "MaxInstances": {MAX_INSTANCES},
                "Configuration": {{
                    "Memory": "{memory_per_instance}", "StopTimeout": {STOP_TIMEOUT_SECS},
                    "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "{BASE_MS}"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
        ),
    );
    let bed = Cluster::start("target", config);
    let cluster = &bed.name;
    // Every start and death of web's containers, from before the first agent: (b) below.
    let events = ContainerEvents::start(&bed.name);
    let agents: Vec<Agent> = bed.spawn_nodes(AGENTS);
    let floor = wait_until(Duration::from_secs(20), || {
        running_by_node(&bed.name).values().sum::<u32>() == MIN_INSTANCES
    });
    assert!(
        floor.is_some(),
        "MinInstances not reached: {:?}",
        running_by_node(&bed.name)
    );

    let mut run = Run {
        agents: &agents,
        cluster: cluster.clone(),
        secret: bed.secret.clone(),
        samples: Vec::new(),
        actions: BTreeSet::new(),
        pushes: 0,
        push_failures: Vec::new(),
    };
    // Base load: one instance serves it within its capacity.
    run.drive(Some(DEMAND_BEFORE_RPS), BASELINE, |_| false);
    let before_step = run.samples.len();
    let step_ms = epoch_ms();
    let step_at = Instant::now();
    run.drive(Some(DEMAND_STEP_RPS), LOADED, |_| false);
    let loaded_end = run.samples.len();
    let stop_ms = epoch_ms();
    let stop_at = Instant::now();
    // The traffic stops: no more pushes. Sample until web has been back at MinInstances for
    // HOLD_AT_MIN (or well past the bound, so that a late return is still measured).
    let hold_samples = (HOLD_AT_MIN.as_millis() / TICK.as_millis()) as usize;
    let mut back_at_min: Option<Instant> = None;
    run.drive(None, return_bound() * 2 + HOLD_AT_MIN, |samples| {
        let last = samples.last().unwrap();
        if last.count() != MIN_INSTANCES {
            back_at_min = None;
        } else if back_at_min.is_none() {
            back_at_min = Some(Instant::now());
        }
        samples.len() >= hold_samples
            && samples[samples.len() - hold_samples..]
                .iter()
                .all(|s| s.count() == MIN_INSTANCES)
    });
    // Discovery settles a moment after the last stop.
    let records_match = wait_until(Duration::from_secs(5), || {
        let records: BTreeSet<String> = registered(&bed.etcd, &bed.name, "web")
            .into_iter()
            .map(|(instance, _)| instance)
            .collect();
        records == running_instances(&bed.containers, "web")
    });
    let records: BTreeSet<String> = registered(&bed.etcd, &bed.name, "web")
        .into_iter()
        .map(|(instance, _)| instance)
        .collect();
    let running = running_instances(&bed.containers, "web");

    // The figures first, so that a failed assert below still shows them.
    run.print_timeline(step_ms);
    run.print_scale_out_decisions(step_ms, stop_ms);
    let in_phase = |a: &ActionRecord, from: u64, to: u64| a.at_ms >= from && a.at_ms < to;
    let claims: Vec<&ActionRecord> = run
        .actions
        .iter()
        .filter(|a| a.action == "scale-out" && a.result.starts_with("claimed:"))
        .collect();
    let step_claims: Vec<&&ActionRecord> = claims
        .iter()
        .filter(|a| in_phase(a, step_ms, stop_ms))
        .collect();
    let loaded: Vec<&Sample> = run.samples[before_step..loaded_end].iter().collect();
    let loaded_counts: Vec<u32> = loaded.iter().map(|s| s.count()).collect();
    let peak = loaded_counts.iter().copied().max().unwrap_or(0);
    let expected = expected_count(DEMAND_STEP_RPS);
    let since_step = |at_ms: u64| (at_ms as f64 - step_ms as f64) / 1000.0;
    let all_running = loaded
        .iter()
        .find(|s| s.count() == peak)
        .map(|s| since_step(s.at_ms));
    let last_change = loaded
        .windows(2)
        .rev()
        .find(|w| w[0].count() != w[1].count())
        .map(|w| since_step(w[1].at_ms));
    let nodes_at_peak: BTreeSet<&String> = loaded
        .iter()
        .filter(|s| s.count() == peak)
        .flat_map(|s| {
            s.nodes
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(node, _)| node)
        })
        .collect();
    let claimer = step_claims.first().map(|a| a.node.clone());
    let fills_elsewhere: Vec<&ActionRecord> = run
        .actions
        .iter()
        .filter(|a| {
            a.action == "fill"
                && a.result == "ok"
                && a.instance.is_some()
                && in_phase(a, step_ms, stop_ms)
                && Some(&a.node) != claimer.as_ref()
        })
        .collect();
    let back = back_at_min.map(|at| at.saturating_duration_since(stop_at));
    figure(
        test,
        "the load step",
        format!(
            "{AGENTS} agents, {DEMAND_BEFORE_RPS} -> {DEMAND_STEP_RPS} req/s \
             (capacity {CAPACITY_RPS}/instance, target {TARGET}, expected count {expected})"
        ),
    );
    figure(
        test,
        "decision after the step",
        format!(
            "{} s ({} claim(s): {:?})",
            step_claims
                .first()
                .map_or("-".to_owned(), |a| format!("{:.2}", since_step(a.at_ms))),
            step_claims.len(),
            step_claims
                .iter()
                .map(|a| (&a.node, &a.result))
                .collect::<Vec<_>>(),
        ),
    );
    figure(test, "peak", format!("{peak} on nodes {nodes_at_peak:?}"));
    figure(
        test,
        "all running after the step",
        format!(
            "{} s",
            all_running.map_or("-".to_owned(), |s| format!("{s:.2}"))
        ),
    );
    figure(
        test,
        "last change while loaded, after the step",
        format!(
            "{} s",
            last_change.map_or("-".to_owned(), |s| format!("{s:.2}"))
        ),
    );
    figure(
        test,
        "reversals while loaded",
        format!(
            "{} in {:?}",
            reversals(&loaded_counts),
            dedup(&loaded_counts)
        ),
    );
    figure(
        test,
        "back to min after the traffic stopped",
        format!(
            "{} s (bound {} s)",
            back.map_or("-".to_owned(), |b| format!("{:.2}", b.as_secs_f64())),
            return_bound().as_secs(),
        ),
    );
    figure(
        test,
        "pushes",
        format!("{}, {} failed", run.pushes, run.push_failures.len()),
    );
    figure(
        test,
        "loaded phase",
        format!("{:.1} s", stop_at.duration_since(step_at).as_secs_f64()),
    );

    // Every criterion is judged and reported before the test fails, so that one run says
    // which of them hold.
    let mut failed: Vec<String> = Vec::new();
    let mut check = |name: &str, problem: Option<String>| {
        match &problem {
            None => println!("criterion {name}: ok"),
            Some(why) => println!("criterion {name}: FAILED: {why}"),
        }
        failed.extend(problem.map(|why| format!("{name}: {why}")));
    };
    check(
        "pushes accepted",
        (!run.push_failures.is_empty()).then(|| format!("{:?}", run.push_failures)),
    );
    check(
        "no scaling under the base load",
        run.samples[..before_step]
            .iter()
            .any(|s| s.count() != MIN_INSTANCES)
            .then(|| "web scaled before the load step".to_owned()),
    );
    // (a) One target-tracking decision for the whole step, larger than a node's room,
    // filled on several nodes.
    let claimed: Option<u32> = step_claims.first().and_then(|claim| {
        claim
            .result
            .strip_prefix("claimed: ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    check(
        "(a) one decision",
        (step_claims.len() != 1 || claims.len() != 1).then(|| {
            format!(
                "{} scale-out claims during the step ({} in all): {:?}",
                step_claims.len(),
                claims.len(),
                claims
                    .iter()
                    .map(|a| (&a.node, &a.result))
                    .collect::<Vec<_>>()
            )
        }),
    );
    check(
        "(a) filled across nodes",
        match claimed {
            None => Some("no claim".to_owned()),
            Some(n) if n <= SLOTS_PER_NODE as u32 => Some(format!(
                "the first decision ({n}) fits one node: nothing for the others to fill"
            )),
            Some(_) if nodes_at_peak.len() < 2 => {
                Some(format!("carried out on {nodes_at_peak:?} only"))
            }
            Some(_) if fills_elsewhere.is_empty() => {
                Some(format!("no agent but the claimer ({claimer:?}) filled it"))
            }
            Some(n) if step_claims.len() == 1 && peak != n => Some(format!(
                "the decision claimed {n} instances, the cluster ran at most {peak}"
            )),
            Some(_) => None,
        },
    );
    // (b) Never outside [min, max], from the floor to the end: every start and death the
    // engine reported, not the samples (an excursion between two samples counts too).
    let floor_ns = events
        .service_timeline("web")
        .first_reaching(0, MIN_INSTANCES as usize)
        .map_or(0, |c| c.at_ns);
    check(
        "(b) within [min, max]",
        events
            .check_within(
                "web",
                MIN_INSTANCES as usize..=MAX_INSTANCES as usize,
                floor_ns,
                |e| e.service == "web",
            )
            .err(),
    );
    // (c) The count settles: at most one reversal of direction while the load lasts.
    check(
        "(c) at most one reversal",
        (reversals(&loaded_counts) > 1).then(|| {
            format!(
                "{} reversals: {:?}",
                reversals(&loaded_counts),
                dedup(&loaded_counts)
            )
        }),
    );
    // (d) Back to MinInstances, within the bound.
    check(
        "(d) back to min within the bound",
        match back {
            None => Some(format!(
                "not back to {MIN_INSTANCES} within {:?}",
                return_bound() * 2
            )),
            Some(back) if back > return_bound() => {
                Some(format!("after {back:?}, bound {:?}", return_bound()))
            }
            Some(_) => None,
        },
    );
    // (e) Discovery lists exactly the running containers.
    check(
        "(e) discovery = running",
        records_match
            .is_none()
            .then(|| format!("records {records:?} != running {running:?}")),
    );
    if back.is_none() {
        for agent in &agents {
            println!("--- log of {}\n{}", agent.node, agent.log_text());
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    drop(agents);
}

/// The counts without repeats, as the timeline's summary shows them.
fn dedup(counts: &[u32]) -> Vec<u32> {
    let mut out = counts.to_vec();
    out.dedup();
    out
}

#[test]
fn reversals_count_changes_of_direction_only() {
    assert_eq!(reversals(&[]), 0);
    assert_eq!(reversals(&[1, 1, 1]), 0);
    assert_eq!(reversals(&[1, 2, 2, 4, 5, 5]), 0);
    assert_eq!(reversals(&[1, 5, 4, 4]), 1);
    assert_eq!(reversals(&[1, 5, 4, 5]), 2);
    assert_eq!(reversals(&[5, 4, 5, 4, 5]), 3);
}

#[test]
fn the_model_calls_for_more_than_one_node_holds() {
    // ceil(1 × 0.9 / 0.25) = 4 from one instance, within the growth limit and MaxInstances.
    assert_eq!(expected_count(DEMAND_STEP_RPS), 4);
    assert!(u64::from(expected_count(DEMAND_STEP_RPS)) > SLOTS_PER_NODE);
    // At that count the model's ratio is inside the dead band: neither rule weighs.
    let settled = execution_time_ms(DEMAND_STEP_RPS, 4) / MAX_RESP_TIME_MS;
    assert!(SCALEIN_THRESHOLD < settled && settled < SCALEOUT_THRESHOLD);
    // The base load: one instance within its capacity.
    assert_eq!(expected_count(DEMAND_BEFORE_RPS), 1);
}
