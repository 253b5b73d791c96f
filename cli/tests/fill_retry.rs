//! A lost fill is retried before the loser's next loop, on the real Docker engine and a
//! real etcd with three agents (`gru join` processes) whose autonomic loop is
//! [`LOOP_SECS`] long.
//!
//! **The scene.** `web` may run one instance per node (the room is a memory limit of 3/5
//! of the engine's memory; cores cannot limit a node on a shared engine, see
//! `target_tracking.rs`), MinInstances 1, MaxInstances 3. The test pushes a response time
//! to the node that runs the first instance (the *decider*; pushed values are local to the
//! agent that receives them, and only it detects the crossing at once): the push crosses
//! the scale-out threshold, fast detection brings the decider's tick forward, and its
//! target-tracking rule claims 3 instances in one decision. The decider has no room left,
//! so its own share is 0: the two other agents (the *fillers*) are woken by the ledger
//! watch at the same moment and both claim their share from the same ledger revision. One
//! wins; the other's compare-revision transaction fails, and since commit 5458845 it tries
//! again after 10-100 ms (`tick::fill_retry_delay`). Before it, the loser waited for its
//! next loop: a won fill writes the intent and last-claim keys, not the target key, so
//! the watch does not wake it again. (A decider with room would start one instance
//! itself and leave a single filler with room: there would be no race.)
//!
//! **Why it discriminates.** The step is timed so that no agent's loop tick falls within
//! [`QUIET_NEEDED`] after it (the test reads every agent's last decision, one per tick): a
//! loser without the retry gets its instance at its next tick, at least that long after
//! the claim, beyond [`ALL_RUNNING_BOUND`] (with `tick::MAX_FILL_RETRIES` set to 0 the test
//! fails: the loser's instance came 29.9 s after the claim). The race itself is read from
//! the fillers' logs: each fill's transaction is logged at info beforehand ("claiming its
//! share of a target-tracking decision", with the ledger revision it claims from), while a
//! lost one is neither recorded as an action nor logged as refused. Two attempts from the
//! same revision, and a second attempt of the loser moments later, are the evidence. When
//! the fillers happen not to race (the second reads the ledger after the first's claim),
//! the scene shows nothing about the retry and is played again on a fresh cluster, at most
//! [`MAX_SCENES`] times.
//!
//! **The metric.** No value is pushed before the step, so the decider's metric window (a
//! loop long) holds only the step's samples when the decision is computed: the first
//! count is the whole step, with a scale-out `Period` of 0.
//!
//! Run with `--nocapture` to see the timeline: the claim, every fill attempt, and when each
//! instance started on which node.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::agents::{ActionRecord, Agent};
use support::cluster::Cluster;
use support::configs::TestConfig;
use support::docker::{docker, inspect_existing, running_ids_of};
use support::{epoch_ms, rfc3339_ms, strip_ansi};
use testkit::{Component, ContainerEvents, figure, require, require_workload_image, wait_until};

const AGENTS: usize = 3;
const MIN_INSTANCES: u32 = 1;
const MAX_INSTANCES: u32 = 3;
/// The autonomic loop: without the retry a lost fill waits up to this long.
const LOOP_SECS: u64 = 30;
const TTL_SECS: u32 = 3;

/// `MAX_RESP_TIME` of `web` and the response time the test pushes: a ratio of 0.9.
const MAX_RESP_TIME_MS: f64 = 100.0;
const LOADED_MS: f64 = 90.0;
/// ceil(1 × 0.9 / 0.25) = 4 from one instance, clamped to MaxInstances 3.
const TARGET: f64 = 0.25;
const SCALEOUT_THRESHOLD: f64 = 0.5;
const SCALEIN_THRESHOLD: f64 = 0.1;
/// One decision may take `web` from 1 to 3 instances.
const MAX_GROWTH_PERCENT: u32 = 200;
/// Longer than the test: the step is one decision, nothing decides after it.
const COOLDOWN_OUT_SECS: u64 = 120;

/// Claim → all 3 running. With the retry: the watch wakes both fillers within
/// milliseconds, the winner starts its instance at once, the loser 10-100 ms later, and
/// Docker starts the workload in well under a second here (claim → all running took
/// 0.3-0.6 s); 10 s leaves room for a slow, busy engine. Without the retry the loser's instance comes at its next loop tick, which the
/// test keeps at least [`QUIET_NEEDED`] (15 s) away.
const ALL_RUNNING_BOUND: Duration = Duration::from_secs(10);
/// No agent's loop tick may fall within this span after the step: the bound and 5 s more,
/// for the decision itself (at most 250 ms after the first push) and docker's slowness.
const QUIET_NEEDED: Duration = Duration::from_secs(15);
/// How long the count is watched after all instances run (it must stay at MaxInstances).
const HOLD: Duration = Duration::from_secs(3);
/// The loser's retry must follow its lost attempt within this: the retry waits at most
/// 100 ms, then reads the ledger and the count again (two etcd reads) before it claims.
const RETRY_WITHIN: Duration = Duration::from_secs(1);
const PUSH_EVERY: Duration = Duration::from_millis(500);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Scenes played at most until the fillers race: both read the ledger within a few
/// milliseconds of the watch's news (seen 2-5 ms apart), so they nearly always do, but a
/// filler slowed down by the machine may read it after the other's claim and never lose.
const MAX_SCENES: u32 = 3;

/// What an agent logs (at info) right before each fill's claim transaction.
const FILL_ATTEMPT: &str = "claiming its share of a target-tracking decision";

/// One fill attempt in an agent's log: when, and from which ledger revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FillAttempt {
    at_ms: u64,
    revision: i64,
}

/// The fill attempts (claim transactions) an agent logged for `web` at or after `since_ms`.
fn fill_attempts(log: &str, since_ms: u64) -> Vec<FillAttempt> {
    strip_ansi(log)
        .lines()
        .filter(|line| line.contains(FILL_ATTEMPT) && line.contains("service=web"))
        .filter_map(|line| {
            let at_ms = rfc3339_ms(line.split_whitespace().next()?)?;
            let (_, after) = line.split_once("revision: ")?;
            let revision = after
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some(FillAttempt { at_ms, revision })
        })
        .filter(|a| a.at_ms >= since_ms)
        .collect()
}

/// A running instance of `web`: its node and when Docker started it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Started {
    at_ms: u64,
    node: String,
    instance: String,
}

/// Node, instance and start time of running containers, in one `docker inspect` (one
/// removed since it was listed is left out; any other failure fails the test).
fn started(ids: &[String]) -> Vec<Started> {
    let mut out: Vec<Started> = inspect_existing(
        "{{index .Config.Labels \"org.gru.node\"}} {{index .Config.Labels \"org.gru.instance\"}} {{.State.StartedAt}}",
        ids,
    )
    .iter()
    .filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (node, instance, at) = (fields.next()?, fields.next()?, fields.next()?);
        Some(Started {
            at_ms: rfc3339_ms(at)?,
            node: node.to_owned(),
            instance: instance.to_owned(),
        })
    })
    .collect();
    out.sort();
    out
}

/// The time of an agent's newest decision (one per loop tick), if it decided yet.
fn last_decision_ms(agent: &Agent) -> Option<u64> {
    agent.decisions(1).first()?["at"].as_u64()
}

/// The action records of an agent for `web`.
fn actions(agent: &Agent) -> Vec<ActionRecord> {
    let mut records = agent.actions(256);
    records.retain(|r| r.service == "web");
    records
}

/// The scale-out decisions' reasons of an agent since `since_ms` (why the claim asked for
/// what it did).
fn scale_out_reasons(agent: &Agent, since_ms: u64) -> Vec<(u64, String)> {
    agent
        .decisions(256)
        .iter()
        .filter(|d| d["action"]["kind"] == "scale-out")
        .map(|d| (d["at"].as_u64().unwrap_or(0), d["reason"].to_string()))
        .filter(|(at, _)| *at >= since_ms)
        .collect()
}

/// Waits, if it must, until no agent's next loop tick falls within [`QUIET_NEEDED`]: each
/// agent's next tick comes a loop after its newest decision or later (the loop waits a
/// whole interval after a tick ends, and a tick decides before it ends). Returns the
/// earliest next tick, in ms since the epoch.
fn wait_for_quiet(agents: &[Agent]) -> u64 {
    let loop_ms = LOOP_SECS * 1000;
    for _ in 0..4 {
        let mut last = Vec::new();
        let decided = wait_until(Duration::from_secs(LOOP_SECS + 5), || {
            last = agents.iter().filter_map(last_decision_ms).collect();
            last.len() == agents.len()
        });
        assert!(decided.is_some(), "not every agent decided: {last:?}");
        let earliest_next = last.iter().min().unwrap() + loop_ms;
        let now = epoch_ms();
        if earliest_next >= now + QUIET_NEEDED.as_millis() as u64 {
            return earliest_next;
        }
        // Too close to a tick: wait until every agent has ticked again.
        let after_next_round = last.iter().max().unwrap() + loop_ms + 1000;
        std::thread::sleep(Duration::from_millis(after_next_round.saturating_sub(now)));
    }
    panic!("found no quiet span of {QUIET_NEEDED:?} between the agents' loop ticks");
}

/// What one scene showed.
#[derive(Debug)]
enum Scene {
    /// The fillers raced, the loser retried at once, and every criterion held.
    Retried,
    /// Every criterion held, but the second filler read the ledger after the first one's
    /// claim: nobody lost, so the scene says nothing about the retry.
    NoRace,
    /// What went wrong.
    Failed(Vec<String>),
}

#[test]
fn a_lost_fill_is_retried_before_the_losers_next_loop() {
    let test = "a_lost_fill_is_retried_before_the_losers_next_loop";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    for scene in 1..=MAX_SCENES {
        match play_scene(test, scene) {
            Scene::Retried => return,
            Scene::NoRace => println!("scene {scene}: no race, nothing shown; once more"),
            Scene::Failed(failures) => panic!("scene {scene}:\n{}", failures.join("\n")),
        }
    }
    panic!("the fillers never raced in {MAX_SCENES} scenes: the retry was not exercised");
}

/// One scene on a fresh etcd, cluster and agents (all gone when it returns or panics).
fn play_scene(test: &str, scene: u32) -> Scene {
    // Dropped last: removes every container of the cluster, also when an assert fails.
    let memory_total: u64 = docker(&["info", "--format", "{{.MemTotal}}"])
        .trim()
        .parse()
        .expect("the engine's memory");
    // 3/5 of the engine's memory per instance: one instance fits a node, two do not.
    let memory_per_instance = memory_total * 3 / 5;
    assert_eq!(memory_total / memory_per_instance, 1);

    let config = TestConfig::new(
        &format!(
            r#"{{"Autonomic": {{"LoopTimeInterval": {LOOP_SECS}, "PlannerStrategy": "greedy"}},
                "Communication": {{"LoopTimeInterval": 1, "MaxFriends": 2}},
                "Discovery": {{"TTL": {TTL_SECS}}}}}"#
        ),
        &format!(
            r#"{{"Scaleout": {{"Enable": true, "Mode": "target", "Target": {TARGET},
                               "Threshold": {SCALEOUT_THRESHOLD}, "Analytics": ["resp_time_ratio"],
                               "MaxGrowthPercent": {MAX_GROWTH_PERCENT}}},
                "Scalein":  {{"Enable": false, "Mode": "target", "Target": {TARGET},
                               "Threshold": {SCALEIN_THRESHOLD}, "Analytics": ["resp_time_ratio"]}},
                "Swap":     {{"Enable": false, "Threshold": 0.6}},
                "CooldownOut": {COOLDOWN_OUT_SECS}}}"#
        ),
    );
    let (low, high) = testkit::free_port_range(6);
    config.file(
        "services/web.json",
        &format!(
            r#"{{"Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio"],
                "Constraints": {{"MAX_RESP_TIME": {MAX_RESP_TIME_MS}}},
                "MinInstances": {MIN_INSTANCES}, "MaxInstances": {MAX_INSTANCES},
                "Configuration": {{
                    "Memory": "{memory_per_instance}", "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "20"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
        ),
    );
    let bed = Cluster::start(&format!("fillretry{scene}"), config);
    // Every start and death of web's containers, from before the first agent: the ceiling
    // is checked on them, not on the samples.
    let events = ContainerEvents::start(&bed.name);
    let agents: Vec<Agent> = bed.spawn_nodes(AGENTS);

    // MinInstances comes from the first agent's first tick (at its start).
    let floor = wait_until(Duration::from_secs(20), || {
        running_ids_of(&bed.name, "web").len() == 1
    });
    assert!(
        floor.is_some(),
        "MinInstances not reached: {:?}",
        started(&running_ids_of(&bed.name, "web"))
    );
    let first = started(&running_ids_of(&bed.name, "web"));
    let decider_node = first[0].node.clone();
    let decider = agents.iter().find(|a| a.node == decider_node).unwrap();
    let fillers: Vec<&Agent> = agents.iter().filter(|a| a.node != decider_node).collect();
    let next_tick_ms = wait_for_quiet(&agents);

    // The step: the decider's response time goes to 0.9 of its maximum, pushed every
    // PUSH_EVERY (its window must keep a sample); Docker is sampled in between.
    let step_ms = epoch_ms();
    let step_at = Instant::now();
    // Watched a loop past the bound, so that a fill that waited for a loop is still timed.
    let deadline = ALL_RUNNING_BOUND + Duration::from_secs(LOOP_SECS);
    let mut counts: Vec<(u64, usize)> = Vec::new();
    let mut push_failures = Vec::new();
    let mut next_push = step_at;
    let mut all_running_seen: Option<Instant> = None;
    while step_at.elapsed() < deadline {
        if Instant::now() >= next_push {
            let answer = decider.push_stat(
                &bed.secret,
                "web",
                "execution_time",
                &format!("{LOADED_MS:.1}"),
            );
            if !answer.as_ref().is_some_and(|(s, _)| (200..300).contains(s)) {
                push_failures.push(format!("{answer:?}"));
            }
            next_push += PUSH_EVERY;
        }
        let count = running_ids_of(&bed.name, "web").len();
        counts.push((epoch_ms(), count));
        if count >= MAX_INSTANCES as usize && all_running_seen.is_none() {
            all_running_seen = Some(Instant::now());
        }
        if all_running_seen.is_some_and(|at| at.elapsed() >= HOLD) {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }

    // What happened, from Docker, the agents' records and their logs.
    let instances = started(&running_ids_of(&bed.name, "web"));
    let all_actions: BTreeSet<ActionRecord> = agents.iter().flat_map(actions).collect();
    let claims: Vec<&ActionRecord> = all_actions
        .iter()
        .filter(|a| a.action == "scale-out" && a.result.starts_with("claimed:"))
        .collect();
    let claim_ms = claims.first().map(|a| a.at_ms);
    let origin = claim_ms.unwrap_or(step_ms);
    let secs = |at: u64| (at as f64 - origin as f64) / 1000.0;
    let attempts: BTreeMap<&str, Vec<FillAttempt>> = fillers
        .iter()
        .map(|a| (a.node.as_str(), fill_attempts(&a.log_text(), step_ms)))
        .collect();

    println!(
        "fill retry, {AGENTS} agents, loop {LOOP_SECS} s; times in s from the claim \
         (the step was pushed at {:.2} s; no loop tick before {:.2} s)",
        secs(step_ms),
        secs(next_tick_ms)
    );
    for (at, reason) in scale_out_reasons(decider, step_ms) {
        println!("  {:>7.3} s  {decider_node}  decision: {reason}", secs(at));
    }
    for claim in &claims {
        println!(
            "  {:>7.3} s  {}  {}: {}",
            secs(claim.at_ms),
            claim.node,
            claim.action,
            claim.result
        );
    }
    let mut timeline: Vec<(u64, String)> = Vec::new();
    for (node, tries) in &attempts {
        for attempt in tries {
            timeline.push((
                attempt.at_ms,
                format!(
                    "{node}  fill attempt from ledger revision {}",
                    attempt.revision
                ),
            ));
        }
    }
    for instance in &instances {
        timeline.push((
            instance.at_ms,
            format!(
                "{}  instance {} started (Docker)",
                instance.node, instance.instance
            ),
        ));
    }
    timeline.sort();
    for (at, what) in &timeline {
        println!("  {:>7.3} s  {what}", secs(*at));
    }
    let new_instances: Vec<&Started> = instances.iter().filter(|s| s.at_ms >= step_ms).collect();
    let all_running_ms = (instances.len() == MAX_INSTANCES as usize)
        .then(|| instances.iter().map(|s| s.at_ms).max())
        .flatten();
    let ceiling = events.check_within("web", 0..=MAX_INSTANCES as usize, 0, |e| e.service == "web");
    let peak = events.service_timeline("web").peak().0;
    figure(
        test,
        &format!("scene {scene}: claim -> all {MAX_INSTANCES} running"),
        format!(
            "{} ms (bound {} ms); nodes {:?}; peak {peak}; {} samples, {} push failures",
            match (claim_ms, all_running_ms) {
                (Some(c), Some(a)) => format!("{}", a as i64 - c as i64),
                _ => "-".to_owned(),
            },
            ALL_RUNNING_BOUND.as_millis(),
            instances.iter().map(|s| &s.node).collect::<Vec<_>>(),
            counts.len(),
            push_failures.len(),
        ),
    );

    // The race: both fillers claimed from the same revision; the loser tried again.
    let firsts: Vec<(&str, FillAttempt)> = attempts
        .iter()
        .filter_map(|(node, tries)| tries.first().map(|a| (*node, *a)))
        .collect();
    let same_revision = firsts.len() == 2 && firsts[0].1.revision == firsts[1].1.revision;
    let loser = attempts.iter().find(|(_, tries)| tries.len() >= 2);
    let retry_after = loser.map(|(_, tries)| tries[1].at_ms.saturating_sub(tries[0].at_ms));
    figure(
        test,
        &format!("scene {scene}: race"),
        format!(
            "first attempts {firsts:?}; same revision: {same_revision}; loser {:?}, \
             retried {} ms after its lost attempt",
            loser.map(|(node, _)| node),
            retry_after.map_or("-".to_owned(), |ms| ms.to_string())
        ),
    );

    let mut failed: Vec<String> = Vec::new();
    if !push_failures.is_empty() {
        failed.push(format!("pushes refused: {push_failures:?}"));
    }
    match claims.as_slice() {
        [claim] if claim.node == decider_node && claim.result.starts_with("claimed: 3 ") => {}
        _ => failed.push(format!(
            "expected one claim of {MAX_INSTANCES} by the decider {decider_node}: {claims:?}"
        )),
    }
    match (claim_ms, all_running_ms) {
        (Some(c), Some(a)) if a.saturating_sub(c) <= ALL_RUNNING_BOUND.as_millis() as u64 => {}
        (Some(c), Some(a)) => failed.push(format!(
            "all {MAX_INSTANCES} running {} ms after the claim, bound {} ms (a loop tick would \
             come {} ms after it)",
            a.saturating_sub(c),
            ALL_RUNNING_BOUND.as_millis(),
            next_tick_ms.saturating_sub(c)
        )),
        _ => failed.push(format!(
            "not {MAX_INSTANCES} instances within {deadline:?}: {instances:?}"
        )),
    }
    let nodes: BTreeSet<&String> = instances.iter().map(|s| &s.node).collect();
    if nodes.len() != instances.len() {
        failed.push(format!("two instances on one node: {instances:?}"));
    }
    if new_instances.iter().any(|s| s.node == decider_node) {
        failed.push(format!(
            "an instance started on the decider {decider_node}, which had no room: \
             {new_instances:?}"
        ));
    }
    if let Err(why) = ceiling {
        failed.push(why);
    }
    if same_revision {
        match retry_after {
            Some(ms) if ms <= RETRY_WITHIN.as_millis() as u64 => {}
            _ => failed.push(format!(
                "the loser did not try again within {RETRY_WITHIN:?} of its lost attempt: \
                 {attempts:?}"
            )),
        }
    }
    if !failed.is_empty() {
        for agent in &agents {
            println!(
                "--- log of {}\n{}",
                agent.node,
                strip_ansi(&agent.log_text())
            );
        }
        return Scene::Failed(failed);
    }
    if same_revision {
        Scene::Retried
    } else {
        Scene::NoRace
    }
}

#[test]
fn rfc3339_times_read_as_epoch_milliseconds() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
    assert_eq!(rfc3339_ms("2000-03-01T00:00:00Z"), Some(951_868_800_000));
    assert_eq!(
        rfc3339_ms("2026-12-04T02:22:33.123456789Z"),
        Some(1_796_350_953_123)
    );
    assert_eq!(rfc3339_ms("2026-12-04 02:22:33"), None);
}

#[test]
fn fill_attempts_are_read_from_a_coloured_log() {
    let log = "\u{1b}[2m2026-12-04T02:22:33.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
               gru_agent::runtime::autonomic: claiming its share of a target-tracking decision \
               \u{1b}[3mservice\u{1b}[0m\u{1b}[2m=\u{1b}[0mweb \u{1b}[3mledger\u{1b}[0m\u{1b}[2m=\
               \u{1b}[0mLedger { out_cooling: true, in_cooling: false, intent: None, target: None, \
               revision: 57 } \u{1b}[3mobserved\u{1b}[0m\u{1b}[2m=\u{1b}[0m1\n\
               2026-12-04T02:22:33.200000Z  INFO gru_agent: decision action=none\n";
    assert_eq!(
        fill_attempts(log, 0),
        vec![FillAttempt {
            at_ms: 1_796_350_953_123,
            revision: 57
        }]
    );
    assert!(fill_attempts(log, 1_796_350_953_124).is_empty());
}
