//! One scenario run on the real engine (a real etcd, the machine's Docker engine, three
//! real `gru join` agents) that the simulator runs too (issue 12; its counterpart is
//! `gru_sim::experiments::revoked_then_lost`): three agents, `web` at MinInstances 2
//! (MaxInstances 3) on two of them, the leases of those two revoked at once, then one of
//! them lost (kill -9 and its container removed).
//!
//! What the real agents do, and what the simulator must do too:
//!
//! * after the revocation both nodes register again within about a second and nobody
//!   starts anything: the third node asks the two before repairing, they answer, and it
//!   withholds the repair;
//! * after the loss the survivors restore MinInstances once the lost node's lease expires
//!   (TTL 3 s): one start, two instances in the end, never more than MaxInstances.
//!
//! The test plays the scene in the simulator for a few seeds and once on the real engine,
//! prints both side by side, and requires the same number of starts in each phase and the
//! same final count. The phases last longer in the simulator (revocation at 10 s, loss at
//! 30 s, end at 60 s) than here (15 s and 20 s): both outlast the grace after a new lease
//! (a TTL and two loops) and the repair of a lost node (a TTL and a loop or two).
//!
//! Settings shared with the simulator: loops of 1 s (autonomic and gossip), a 3 s node
//! lease, a quiet policy (no scaling from metrics), no base services. The test prints its
//! figures on the lines that start with `sim vs real:`.
//!
//! Every agent, container and etcd goes with the test's guards, also when it fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gru_sim::experiments::{ComparisonOutcome, revoked_then_lost};
use support::agents::{ActionRecord, Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::{docker_rm, running_containers};
use support::epoch_ms;
use testkit::{
    Component, ContainerAction, ContainerEvent, ContainerEvents, etcdctl_at, figure, replay,
    require, require_workload_image, wait_until,
};

/// The agents' node lease (`Discovery.TTL`), as in the simulator's scenario.
const TTL_SECS: u32 = 3;
const MIN_INSTANCES: usize = 2;
const MAX_INSTANCES: usize = 3;
/// How often the running `web` containers (and, after the revocation, the node records)
/// are read.
const SAMPLE_PERIOD: Duration = Duration::from_millis(250);
/// How long `web` must stay at MinInstances on two nodes before the revocation.
const STEADY_FOR: Duration = Duration::from_secs(3);
/// How long the revocation is watched: both nodes register again within about a second;
/// the rest shows that nobody starts anything after the grace (a TTL and two loops).
const AFTER_REVOCATION: Duration = Duration::from_secs(15);
/// How long the loss is watched: the lease expires after the TTL, a repair follows within a
/// loop or two; the rest is margin for a loaded machine and shows nothing more happens.
const AFTER_LOSS: Duration = Duration::from_secs(20);

/// What one run of the scenario shows, in the simulator's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    starts_after_revocation: u32,
    starts_after_loss: u32,
    final_instances: u32,
    peak_instances: u32,
    /// Repairs withheld because nodes without records still answered (both phases).
    withheld: u64,
}

/// The figures of the real run that the simulator has no counterpart for.
struct RealDetails {
    /// Revoked nodes and how long after the revocation their records were back.
    registered_again: BTreeMap<String, Option<Duration>>,
    withheld_after_revocation: u64,
    withheld_after_loss: u64,
    /// `web` starts the samples saw (new container ids), per phase, to check the events.
    sampled_starts: (u32, u32),
    /// From the kill to the start that gave the survivors MinInstances again (engine events).
    restored_after: Option<Duration>,
    lost: String,
    revoked: Vec<String>,
}

/// The simulator's seeds for the scenario.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=5;

#[test]
fn lease_revocation_then_a_lost_node_gives_the_same_outcome_in_the_simulator_and_on_the_real_engine()
 {
    let test = "lease_revocation_then_a_lost_node_gives_the_same_outcome_in_the_simulator_and_on_the_real_engine";
    if !require(test, Component::Etcd)
        || !require(test, Component::Etcdctl)
        || !require_workload_image(test)
    {
        return;
    }
    let simulated: Vec<(u64, Outcome)> = SEEDS
        .map(|seed| (seed, Outcome::from(revoked_then_lost(seed))))
        .collect();
    let (real, details) = run_on_the_real_engine();
    print_real(test, &real, &details);
    print_side_by_side(test, &real, &simulated);

    assert_eq!(
        real.starts_after_revocation, 0,
        "web started after the leases of {:?} were revoked",
        details.revoked
    );
    assert_eq!(
        real.starts_after_loss, 1,
        "web did not start exactly once after {} was lost",
        details.lost
    );
    assert_eq!(real.final_instances, MIN_INSTANCES as u32);
    assert!(real.peak_instances <= MAX_INSTANCES as u32, "{real:?}");
    for (seed, sim) in &simulated {
        assert_eq!(
            (
                sim.starts_after_revocation,
                sim.starts_after_loss,
                sim.final_instances
            ),
            (
                real.starts_after_revocation,
                real.starts_after_loss,
                real.final_instances
            ),
            "seed {seed}: the simulator's (starts after the revocation, starts after the loss, final instances) differ from the real run's: sim {sim:?}, real {real:?}"
        );
        assert!(
            sim.peak_instances <= MAX_INSTANCES as u32,
            "seed {seed}: {sim:?}"
        );
    }
}

impl From<ComparisonOutcome> for Outcome {
    fn from(sim: ComparisonOutcome) -> Self {
        Outcome {
            starts_after_revocation: sim.starts_after_revocation,
            starts_after_loss: sim.starts_after_loss,
            final_instances: sim.final_instances,
            peak_instances: sim.peak_instances,
            withheld: sim.withheld,
        }
    }
}

/// One figure of an [`Outcome`], to print.
type Figure = fn(&Outcome) -> u64;

/// One row per figure: the real run's, then each seed's in the simulator.
fn print_side_by_side(test: &str, real: &Outcome, simulated: &[(u64, Outcome)]) {
    let rows: [(&str, Figure); 5] = [
        ("starts after revocation", |o| {
            o.starts_after_revocation.into()
        }),
        ("starts after loss", |o| o.starts_after_loss.into()),
        ("final instances", |o| o.final_instances.into()),
        ("peak instances", |o| o.peak_instances.into()),
        ("withheld repairs", |o| o.withheld),
    ];
    for (name, of) in rows {
        let sims: Vec<String> = simulated
            .iter()
            .map(|(seed, o)| format!("seed {seed} {}", of(o)))
            .collect();
        figure(
            test,
            &format!("sim vs real: {name}"),
            format!("real {} | sim {}", of(real), sims.join(", ")),
        );
    }
}

fn print_real(test: &str, real: &Outcome, details: &RealDetails) {
    let registered: Vec<String> = details
        .registered_again
        .iter()
        .map(|(node, at)| format!("{node} {}", at.map_or("never".into(), secs)))
        .collect();
    figure(
        test,
        "the real run",
        format!(
            "leases of {:?} revoked: {} start(s) in {} s, records back after [{}], {} repair(s) withheld; {} lost: {} start(s) in {} s (MinInstances back {} after the loss), {} repair(s) withheld; final {}, peak {} (MaxInstances {MAX_INSTANCES}); starts the samples saw: {:?}",
            details.revoked,
            real.starts_after_revocation,
            AFTER_REVOCATION.as_secs(),
            registered.join(", "),
            details.withheld_after_revocation,
            details.lost,
            real.starts_after_loss,
            AFTER_LOSS.as_secs(),
            details.restored_after.map_or("never".into(), secs),
            details.withheld_after_loss,
            real.final_instances,
            real.peak_instances,
            details.sampled_starts,
        ),
    );
}

/// The scenario on a fresh etcd with three agents n1, n2, n3.
fn run_on_the_real_engine() -> (Outcome, RealDetails) {
    let config = TestConfig::new(&config_for_agents(TTL_SECS), QUIET_POLICY);
    config.service(
        "web",
        &format!(r#""MinInstances": {MIN_INSTANCES}, "MaxInstances": {MAX_INSTANCES},"#),
        testkit::free_port_range(12),
    );
    let bed = Cluster::start("sim-vs-real", config);
    // Every start and death of the cluster's containers, from before the first agent: the
    // starts per phase and the peak are counted on them, not on the samples.
    let events = ContainerEvents::start(&bed.name);
    // Declared after the bed: the agents are killed before its containers are removed.
    let mut agents: Vec<Agent> = bed.spawn_nodes(3);

    // Phase 0: web at MinInstances on two distinct nodes, and staying so.
    let steady = wait_until(Duration::from_secs(40), || {
        let web = web_nodes(&bed);
        let since = Instant::now();
        let mut stayed = web.len() == MIN_INSTANCES && distinct(&web) == MIN_INSTANCES;
        while stayed && since.elapsed() < STEADY_FOR {
            std::thread::sleep(SAMPLE_PERIOD);
            stayed = web_nodes(&bed) == web;
        }
        stayed
    });
    assert!(
        steady.is_some(),
        "web never ran steadily at MinInstances on two nodes: {:?}\n{}",
        web_nodes(&bed),
        logs_tail(&agents, 40)
    );
    let before = web_nodes(&bed);
    assert!(
        starts_between(&events.events(), 0, epoch_ms()) >= MIN_INSTANCES as u32,
        "the docker events watch did not see web's first starts:\n{}",
        events.service_timeline("web").render(events.started_ns)
    );
    let revoked: Vec<String> = distinct_nodes(&before).into_iter().collect();
    let lost = revoked[0].clone();

    // Phase 1: the leases of both nodes running web revoked at once.
    let leases: BTreeMap<String, u64> = revoked
        .iter()
        .map(|node| (node.clone(), node_lease(&bed, node).expect("a node record")))
        .collect();
    let revoke: Vec<std::process::Child> = revoked
        .iter()
        .map(|node| {
            let lease = leases[node];
            Command::new("etcdctl")
                .args(["--endpoints", &bed.endpoints(), "lease", "revoke"])
                .arg(format!("{lease:x}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let revoked_at = Instant::now();
    let revoked_ms = epoch_ms();
    for mut child in revoke {
        assert!(child.wait().unwrap().success(), "etcdctl lease revoke");
    }
    let mut registered_again: BTreeMap<String, Option<Duration>> =
        revoked.iter().map(|n| (n.clone(), None)).collect();
    let mut seen: BTreeSet<String> = before.keys().cloned().collect();
    let mut sampled_after_revocation = 0;
    while revoked_at.elapsed() < AFTER_REVOCATION {
        let web = web_nodes(&bed);
        sampled_after_revocation += count_new(&mut seen, &web);
        if registered_again.values().any(Option::is_none) {
            for (node, back) in registered_again.iter_mut() {
                if back.is_none() && node_lease(&bed, node).is_some_and(|l| l != leases[node]) {
                    *back = Some(revoked_at.elapsed());
                }
            }
        }
        std::thread::sleep(SAMPLE_PERIOD);
    }
    let lost_ms = epoch_ms();

    // Phase 2: the first of them lost, its agent (kill -9) and its containers at once.
    let index = agents.iter().position(|a| a.node == lost).unwrap();
    let mut records = actions(&agents);
    let mut victim = agents.remove(index);
    let killed_ns = testkit::epoch_ns();
    victim.kill9();
    let lost_at = Instant::now();
    let victims: Vec<String> = running_containers(&bed.containers)
        .into_iter()
        .filter(|(_, node, _)| *node == lost)
        .map(|(id, _, _)| id)
        .collect();
    docker_rm(&victims.iter().map(String::as_str).collect::<Vec<_>>());
    let mut sampled_after_loss = 0;
    let mut web = web_nodes(&bed);
    while lost_at.elapsed() < AFTER_LOSS {
        web = web_nodes(&bed);
        sampled_after_loss += count_new(&mut seen, &web);
        std::thread::sleep(SAMPLE_PERIOD);
    }
    let recorded = events.events();
    let starts_after_revocation = starts_between(&recorded, revoked_ms, lost_ms);
    let starts_after_loss = starts_between(&recorded, lost_ms, epoch_ms());
    let web_timeline = replay(&recorded, |e| e.service == "web");
    let peak = web_timeline.peak().0;
    // From the kill to the start that gave the survivors MinInstances again.
    let restored_after = replay(&recorded, |e| e.service == "web" && e.node != lost)
        .first_reaching(killed_ns, MIN_INSTANCES)
        .map(|c| Duration::from_nanos(c.at_ns - killed_ns));
    records.extend(actions(&agents));
    let withheld = |from: u64, to: u64| {
        records
            .iter()
            .filter(|r| r.result.starts_with("withheld:") && (from..to).contains(&r.at_ms))
            .count() as u64
    };
    let withheld_after_revocation = withheld(revoked_ms, lost_ms);
    let withheld_after_loss = withheld(lost_ms, u64::MAX);
    let outcome = Outcome {
        starts_after_revocation,
        starts_after_loss,
        final_instances: web.len() as u32,
        peak_instances: peak as u32,
        withheld: withheld_after_revocation + withheld_after_loss,
    };
    if outcome.starts_after_revocation != 0
        || outcome.starts_after_loss != 1
        || outcome.final_instances != MIN_INSTANCES as u32
    {
        eprintln!(
            "unexpected outcome {outcome:?}; web's containers:\n{}\nagents:\n{}",
            web_timeline.render(events.started_ns),
            logs_tail(&agents, 60)
        );
    }
    drop(agents);
    let details = RealDetails {
        registered_again,
        withheld_after_revocation,
        withheld_after_loss,
        sampled_starts: (sampled_after_revocation, sampled_after_loss),
        restored_after,
        lost,
        revoked,
    };
    (outcome, details)
}

/// `web`'s running containers: id → node.
fn web_nodes(bed: &Cluster) -> BTreeMap<String, String> {
    running_containers(&bed.containers)
        .into_iter()
        .map(|(id, node, _)| (id, node))
        .collect()
}

fn distinct_nodes(web: &BTreeMap<String, String>) -> BTreeSet<String> {
    web.values().cloned().collect()
}

fn distinct(web: &BTreeMap<String, String>) -> usize {
    distinct_nodes(web).len()
}

/// How many of `web`'s containers were not seen before (and remembers them).
fn count_new(seen: &mut BTreeSet<String>, web: &BTreeMap<String, String>) -> u32 {
    web.keys().filter(|id| seen.insert((*id).clone())).count() as u32
}

/// The lease of `node`'s `config` record, if the record exists.
fn node_lease(bed: &Cluster, node: &str) -> Option<u64> {
    let key = format!("/gru/{}/nodes/{node}/config", bed.name);
    let out = etcdctl_at(&bed.endpoints(), &["get", &key, "-w", "json"]).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&out).ok()?;
    doc["kvs"][0]["lease"].as_u64()
}

/// Every agent's newest action records.
fn actions(agents: &[Agent]) -> Vec<ActionRecord> {
    agents.iter().flat_map(|a| a.actions(1000)).collect()
}

/// Starts of `web`'s containers in `events` at `from_ms` or later and before `to_ms` (ms
/// since the epoch).
fn starts_between(events: &[ContainerEvent], from_ms: u64, to_ms: u64) -> u32 {
    events
        .iter()
        .filter(|e| e.service == "web" && e.action == ContainerAction::Start)
        .filter(|e| (from_ms..to_ms).contains(&(e.at_ns / 1_000_000)))
        .count() as u32
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
