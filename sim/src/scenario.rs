//! What a run simulates: the cluster, its services and their demand, the policy, the
//! timing, the faults, the mode and the seed. A [`Scenario`] is plain data; the presets
//! below are the ones the bench and the tests use.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use common::config::{PlannerStrategy, PolicyConfig, PolicyRule, RuleMode};
use serde::Serialize;

use crate::baseline::DynamiteSettings;
use crate::trace::Trace;
use crate::view::LOAD;

/// Who scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every agent plans with the real planner on its instance-weighted view; scale steps
    /// are claimed in the ledger (one per service per cooldown window, within bounds);
    /// `MinInstances` is restored after a loss.
    Gru,
    /// Gru as it was (2016): every agent that decides to scale acts at once, on the plain
    /// (unweighted) mean of the node averages it holds and the instance count its view adds
    /// up; one instance per decision, no Period, no cooldowns ([`gru_original_policy`]);
    /// no ledger, no repair.
    GruOriginal,
    /// One Kubernetes HPA controller (see [`crate::baseline::Hpa`]).
    Hpa,
    /// One Dynamite controller (see [`crate::baseline::Dynamite`]).
    Dynamite,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Gru, Mode::GruOriginal, Mode::Hpa, Mode::Dynamite];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Gru => "gru",
            Mode::GruOriginal => "gru-original",
            Mode::Hpa => "hpa",
            Mode::Dynamite => "dynamite",
        }
    }

    /// Whether agents (rather than one controller) scale.
    pub fn has_agents(self) -> bool {
        matches!(self, Mode::Gru | Mode::GruOriginal)
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the agents' views are held (see [`crate::view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ViewKind {
    /// One real `ClusterView` per agent.
    Cluster,
    /// The compact equivalent, for N in the thousands.
    Compact,
}

/// A service's demand.
#[derive(Debug, Clone)]
pub enum Demand {
    /// Requests per second from a trace, split across the running instances (each node's
    /// instances get a share weighted by the node's balance, see
    /// [`Scenario::imbalance`]); a node's load is its share over its instances' capacity,
    /// clamped to 1.
    Trace(Arc<Trace>),
    /// A constant number of requests per second, split the same way.
    Constant(f64),
    /// Every node that runs the service reports this load, whatever its instances: every
    /// agent sees the same overload. No SLO is counted.
    Load(f64),
}

/// One service of the scenario.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// Requests per second one instance serves.
    pub capacity_rps: f64,
    pub min: u32,
    pub max: Option<u32>,
    /// Instances running when the run starts, one per node from node 0.
    pub initial: u32,
    pub demand: Demand,
}

impl ServiceSpec {
    /// Requests per second at `secs`; `None` for a [`Demand::Load`] service.
    pub fn demand_rps(&self, secs: u64) -> Option<f64> {
        match &self.demand {
            Demand::Trace(trace) => Some(trace.demand_at(secs)),
            Demand::Constant(rps) => Some(*rps),
            Demand::Load(_) => None,
        }
    }
}

/// Intervals, in seconds of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub tick_secs: u64,
    /// `Communication.LoopTimeInterval`: one gossip round.
    pub comm_secs: u64,
    /// `Autonomic.LoopTimeInterval`: one MAPE-K loop per agent, each at its own phase.
    pub loop_secs: u64,
    /// From starting a container to its serving.
    pub start_delay_secs: u64,
    /// The node lease's TTL: a silent node's records vanish after it.
    pub lease_ttl_secs: u64,
    /// A report not refreshed for this long drops out of a view.
    pub stale_secs: u64,
    /// The intent's TTL: a claim's instances show in discovery within it.
    pub settle_secs: u64,
    /// Fill attempts an agent makes in one tick while it keeps losing the race: its first
    /// and its retries (see [`fill_rounds`]).
    pub fill_rounds: usize,
}

/// Fill attempts per tick of `tick_secs`: as if every retry waited the agent's longest
/// retry delay (`gru_agent::tick::FILL_RETRY_DELAY_MAX`) and only one of the agents
/// retrying at once won. The agent's retries are spread at random, so more of them win in
/// reality: this is the slow side.
pub fn fill_rounds(tick_secs: u64) -> usize {
    let delay_ms = gru_agent::tick::FILL_RETRY_DELAY_MAX.as_millis().max(1) as u64;
    let per_tick = tick_secs.saturating_mul(1_000) / delay_ms;
    usize::try_from(per_tick)
        .unwrap_or(usize::MAX)
        .clamp(1, gru_agent::tick::MAX_FILL_RETRIES as usize + 1)
}

impl Timing {
    /// Loops and rounds as the agent runs them, from its two intervals: reports go stale
    /// as `gru_agent::gossip::digest::stale_after` says for a small cluster (the
    /// simulation takes the larger bound its node count gives), an intent settles in two loops
    /// (as the agent's executor sets it); a node lease of 10 s, containers that take 5 s
    /// to start.
    pub fn agent(comm_secs: u64, loop_secs: u64) -> Timing {
        let stale =
            gru_agent::gossip::digest::stale_after(Duration::from_secs(comm_secs.max(1)), 0);
        let tick_secs = 1;
        Timing {
            tick_secs,
            comm_secs,
            loop_secs,
            start_delay_secs: 5,
            lease_ttl_secs: 10,
            stale_secs: stale.as_secs(),
            // Simulated instances stop at once: no drain to wait for.
            settle_secs: gru_agent::coordination::settle_secs(
                loop_secs,
                gru_agent::coordination::Direction::Out,
                0,
            ) as u64,
            fill_rounds: fill_rounds(tick_secs),
        }
    }
}

impl Default for Timing {
    /// Gossip every 5 s, a loop every 10 s.
    fn default() -> Self {
        Timing::agent(5, 10)
    }
}

/// Something that goes wrong during a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The nodes stop at `at_secs` with everything they run, and do not come back.
    Crash { at_secs: u64, nodes: Vec<usize> },
    /// From `from_secs` to `until_secs` the `minority` cannot talk to the others nor reach
    /// the store.
    Partition {
        from_secs: u64,
        until_secs: u64,
        minority: Vec<usize>,
    },
    /// At `at_secs` etcd revokes the nodes' leases while they run on (a stale leader
    /// revoking leases on resume, etcd#15247): their node and discovery records vanish,
    /// their instances keep running, and each agent registers again at its next
    /// keep-alive (the next tick) and republishes.
    RevokeLeases { at_secs: u64, nodes: Vec<usize> },
    /// At `at_secs` the nodes' agents stop, their containers keep running; `down_secs`
    /// later they start again and adopt what runs. `graceful` (SIGTERM): the agent revokes
    /// its lease on the way out, so its records vanish at once; otherwise (kill -9) its
    /// lease expires after its TTL unless the new process registers first.
    Restart {
        at_secs: u64,
        nodes: Vec<usize>,
        down_secs: u64,
        graceful: bool,
    },
    /// At `at_secs` the store member the nodes talk to stalls: each of their store calls
    /// (keep-alive, reads, claims) waits, for `stall_secs`, before they fail over to a
    /// healthy member. Gossip goes on.
    StoreStall {
        at_secs: u64,
        nodes: Vec<usize>,
        stall_secs: u64,
    },
    /// From `from_secs` to `until_secs` every message is lost with `probability`.
    Loss {
        from_secs: u64,
        until_secs: u64,
        probability: f64,
    },
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub mode: Mode,
    pub nodes: usize,
    /// Instances one node can run (all services together).
    pub slots_per_node: u32,
    pub services: Vec<ServiceSpec>,
    pub policy: PolicyConfig,
    pub strategy: PlannerStrategy,
    pub timing: Timing,
    pub max_friends: usize,
    /// Most versions an answer to a gossip digest lists (`digest::DETAIL_CAP`).
    pub message_limit: usize,
    pub duration_secs: u64,
    pub faults: Vec<Fault>,
    pub seed: u64,
    /// How unevenly the load balancer spreads requests: each node's instances get between
    /// `1 - imbalance` and `1 + imbalance` times the mean share per instance (drawn once per
    /// node from the seed), so that nodes see different loads.
    pub imbalance: f64,
    pub view: ViewKind,
    /// HPA's target utilisation.
    pub hpa_target: f64,
    pub dynamite: DynamiteSettings,
}

/// The policy the simulated agents run, on the `load` analytic: scale out above 0.75 by 4
/// instances once the breach has lasted 10 s, scale in below 0.35 by 2 once it has lasted
/// 60 s; CooldownOut 20 s, CooldownIn 60 s. In gru mode the cluster therefore adds at most
/// 4 instances per 20 s, and removes at most 2 per minute.
pub fn sim_policy() -> PolicyConfig {
    PolicyConfig {
        scalein: load_rule(0.35, 60, 2),
        scaleout: load_rule(0.75, 10, 4),
        swap: PolicyRule::disabled(0.6),
        cooldown_out_secs: 20,
        cooldown_in_secs: 60,
    }
}

/// An enabled rule on the `load` analytic; every other field keeps its default, so that
/// rules built here mean what they meant when new fields are added to `PolicyRule`.
fn load_rule(threshold: f64, period_secs: u64, step: u32) -> PolicyRule {
    PolicyRule {
        enable: true,
        threshold,
        analytics: vec![LOAD.to_owned()],
        period_secs,
        step,
        ..PolicyRule::disabled(threshold)
    }
}

/// Gru as it was published (github.com/elleFlorio/gru, `autonomic/planner`): the scale-out
/// policy's only action is one `START`, the scale-in policy's one `STOP`; a policy weighs
/// as soon as the value crosses its threshold (there is no Period) and nothing waits
/// between actions (there are no cooldowns). The thresholds are the ones the comparison
/// gives every mode.
pub fn gru_original_policy() -> PolicyConfig {
    PolicyConfig {
        scalein: load_rule(0.35, 0, 1),
        scaleout: load_rule(0.75, 0, 1),
        swap: PolicyRule::disabled(0.6),
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
    }
}

/// The policy each mode's agents run in the presets: [`gru_original_policy`] for
/// gru-original, [`sim_policy`] otherwise (the baselines have no agents; their windows are
/// measured against it).
pub fn policy_for(mode: Mode) -> PolicyConfig {
    match mode {
        Mode::GruOriginal => gru_original_policy(),
        Mode::Gru | Mode::Hpa | Mode::Dynamite => sim_policy(),
    }
}

/// The loops gru's agents run in the Pareto sweep: gossip every second, a MAPE-K loop every
/// 2 s (the integration tests run 1 s and 1 s; Gru's README suggested 55 s and 60 s). The
/// other agent mode, gru-original, keeps [`Timing::default`] (5 s and 10 s). Faster loops
/// cost gru messages (10 per agent per round, one round a second), not containers.
pub fn gru_pareto_timing() -> Timing {
    Timing::agent(1, 2)
}

/// How far above the target the scale-out rule starts to weigh (as HPA's tolerance, it keeps
/// noise around the target from moving the count), at most: see [`scale_out_threshold`].
pub const TARGET_OUT_MARGIN: f64 = 0.05;

/// The scale-out threshold for `target`: [`TARGET_OUT_MARGIN`] above it, but at most half
/// the way from the target to 1. The `load` metric is a utilisation clamped to 1 on each
/// node, so the weighted mean reaches 1 only when every node saturates: near the top
/// (0.99 at a target of 0.95, where T + 0.05 would be 1) a threshold the mean cannot
/// reach while the cluster is short left the count stuck below the demand.
pub fn scale_out_threshold(target: f64) -> f64 {
    target + TARGET_OUT_MARGIN.min((1.0 - target) / 2.0)
}
/// How far below the target the scale-in rule starts to weigh.
pub const TARGET_IN_MARGIN: f64 = 0.2;

/// gru's setting for target utilisation `target` in the Pareto sweep: both rules in target
/// mode aiming for `target` (desired = ceil(n · v / target), growth at most max(Step, 200 %
/// of n) per decision), scale-out weighing above [`scale_out_threshold`] (`target + 0.05`,
/// at most half the headroom: 0.975 at 0.95), scale-in below
/// `target - 0.2` and stabilized over 30 s (the highest desired count of the last 30 s, as
/// HPA does over 300 s), no Period (a fresh breach is acted on at once), CooldownOut 5 s
/// (one decision per 5 s, the time the instances of the last one take to start), no
/// CooldownIn (the stabilization window paces scale-in). The agents run it with the loops
/// of [`gru_pareto_timing`].
pub fn gru_target_policy(target: f64) -> PolicyConfig {
    let rule = |threshold: f64| PolicyRule {
        mode: RuleMode::Target,
        target: Some(target),
        ..load_rule(threshold.clamp(0.01, 0.99), 0, 1)
    };
    let mut policy = PolicyConfig {
        scalein: rule(target - TARGET_IN_MARGIN),
        scaleout: rule(scale_out_threshold(target)),
        swap: PolicyRule::disabled(0.6),
        cooldown_out_secs: 5,
        cooldown_in_secs: 0,
    };
    policy.scaleout.max_growth_percent = 200;
    policy.scalein.stabilization_secs = 30;
    policy
}

/// HPA's target in the comparisons: between the policy's two thresholds.
pub const HPA_TARGET: f64 = 0.6;

/// Dynamite's rule in the comparisons: the policy's thresholds, sustained 30 s, one
/// instance at a time, 30 s apart.
pub const DYNAMITE: DynamiteSettings = DynamiteSettings {
    up_threshold: 0.75,
    down_threshold: 0.35,
    period_secs: 30,
    cooldown_secs: 30,
};

/// The load balancer's unevenness in the presets: ±25 % per node.
pub const IMBALANCE: f64 = 0.25;

/// Requests per second one instance serves in the presets.
pub const CAPACITY_RPS: f64 = 10.0;

impl Scenario {
    /// A cluster of `nodes` nodes with 4 slots each running one service, `web`, whose
    /// demand follows `trace`: 25 instances at the start, between 2 and 120.
    pub fn trace_run(mode: Mode, trace: Arc<Trace>, nodes: usize, seed: u64) -> Scenario {
        let duration_secs = trace.duration_secs();
        Scenario {
            name: format!("{} trace", trace.name),
            mode,
            nodes,
            slots_per_node: 4,
            services: vec![ServiceSpec {
                name: "web".to_owned(),
                capacity_rps: CAPACITY_RPS,
                min: 2,
                max: Some(120),
                initial: 25,
                demand: Demand::Trace(trace),
            }],
            policy: policy_for(mode),
            strategy: PlannerStrategy::ProbCumulative,
            timing: Timing::default(),
            max_friends: 5,
            message_limit: gru_agent::gossip::digest::DETAIL_CAP,
            duration_secs,
            faults: Vec::new(),
            seed,
            imbalance: IMBALANCE,
            view: ViewKind::Cluster,
            hpa_target: HPA_TARGET,
            dynamite: DYNAMITE,
        }
    }

    /// `nodes` agents that all see `web` at load 0.9 (scale-out weight 0.6): two instances
    /// at the start, nodes with 4 slots, at most `max` instances.
    pub fn overload(mode: Mode, nodes: usize, max: u32, duration_secs: u64, seed: u64) -> Scenario {
        Scenario {
            name: format!("overload of {nodes}"),
            mode,
            nodes,
            slots_per_node: 4,
            services: vec![ServiceSpec {
                name: "web".to_owned(),
                capacity_rps: CAPACITY_RPS,
                min: 2,
                max: Some(max),
                initial: 2,
                demand: Demand::Load(0.9),
            }],
            policy: policy_for(mode),
            strategy: PlannerStrategy::ProbCumulative,
            timing: Timing::default(),
            max_friends: 5,
            message_limit: gru_agent::gossip::digest::DETAIL_CAP,
            duration_secs,
            faults: Vec::new(),
            seed,
            imbalance: IMBALANCE,
            view: if nodes <= 1_000 {
                ViewKind::Cluster
            } else {
                ViewKind::Compact
            },
            hpa_target: HPA_TARGET,
            dynamite: DYNAMITE,
        }
    }

    /// Adds `db`: a constant 20 req/s, 3 instances at the start (on nodes 0 to 2), between
    /// 3 and 10: a small service that a crash can take below its `MinInstances`.
    pub fn with_db(mut self) -> Scenario {
        self.services.push(ServiceSpec {
            name: "db".to_owned(),
            capacity_rps: CAPACITY_RPS,
            min: 3,
            max: Some(10),
            initial: 3,
            demand: Demand::Constant(20.0),
        });
        self
    }

    /// The run at target utilisation `target`: gru's agents run
    /// [`gru_target_policy`]`(target)`, HPA aims for `target`; other modes are unchanged.
    pub fn with_target(mut self, target: f64) -> Scenario {
        match self.mode {
            Mode::Gru => {
                self.policy = gru_target_policy(target);
                self.timing = gru_pareto_timing();
            }
            Mode::Hpa => self.hpa_target = target,
            Mode::GruOriginal | Mode::Dynamite => {}
        }
        self
    }

    /// The policy whose Steps and cooldown windows the invariants measure: the scenario's
    /// own, except for gru-original, which has no cooldown; its herds are measured in the
    /// windows of [`sim_policy`], as gru's are.
    pub fn window_policy(&self) -> PolicyConfig {
        match self.mode {
            Mode::GruOriginal => sim_policy(),
            Mode::Gru | Mode::Hpa | Mode::Dynamite => self.policy.clone(),
        }
    }

    pub fn with_faults(mut self, name: &str, faults: Vec<Fault>) -> Scenario {
        self.name = format!("{} with {name}", self.name);
        self.faults = faults;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_out_threshold_keeps_its_margin_until_half_the_headroom_is_smaller() {
        for (target, threshold) in [(0.4, 0.45), (0.6, 0.65), (0.9, 0.95), (0.95, 0.975)] {
            assert!(
                (scale_out_threshold(target) - threshold).abs() < 1e-9,
                "{target}: {}",
                scale_out_threshold(target)
            );
            let policy = gru_target_policy(target);
            assert!((policy.scaleout.threshold - threshold).abs() < 1e-9);
        }
    }
}
