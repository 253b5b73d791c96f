//! The experiments behind `gru-sim bench`: convergence of the views, overshoot under a
//! shared overload, the four modes on the shipped traces, and gru under faults.

use std::sync::Arc;

use gru_agent::mape::Millis;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::gossip::{GossipScratch, communication_round};
use crate::network::FakeNetwork;
use crate::scenario::{Fault, Mode, Scenario, ViewKind};
use crate::sim::{RunReport, run_all};
use crate::trace::Trace;
use crate::view::{ClusterViews, CompactViews, Payload, ReportBook, Sample, Views};

/// A load change to spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvergenceSetup {
    pub nodes: usize,
    pub max_friends: usize,
    pub view: ViewKind,
    /// Most reports per message.
    pub message_limit: usize,
    pub loss: f64,
    pub seed: u64,
    pub max_rounds: u32,
    /// Within this fraction of the true value counts as holding it.
    pub tolerance: f64,
    /// Share of agents that must hold it.
    pub quorum: f64,
}

impl ConvergenceSetup {
    /// The acceptance setup: MaxFriends 5, 5 %, 99 %, no loss, no cap on messages.
    pub fn acceptance(nodes: usize, view: ViewKind, seed: u64) -> ConvergenceSetup {
        ConvergenceSetup {
            nodes,
            max_friends: 5,
            view,
            message_limit: usize::MAX,
            loss: 0.0,
            seed,
            max_rounds: 40,
            tolerance: 0.05,
            quorum: 0.99,
        }
    }

    /// The goal: log₅N + 3 rounds.
    pub fn goal(&self) -> f64 {
        (self.nodes as f64).ln() / 5_f64.ln() + 3.0
    }
}

/// How a load change spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConvergenceResult {
    pub nodes: usize,
    pub view: ViewKind,
    pub message_limit: Option<usize>,
    pub loss: f64,
    /// Rounds after the change until the quorum held the value; `None` if it never did.
    pub rounds: Option<u32>,
    pub goal: f64,
    /// Per round after the change: the share of agents within the tolerance.
    pub share_by_round: Vec<f64>,
    pub true_before: f64,
    pub true_after: f64,
    pub requests_per_agent_round: f64,
    pub replies_per_agent_round: f64,
    pub max_requests_per_agent: u64,
}

/// The capacity of one instance in the convergence cluster, requests per second.
const CONVERGENCE_CAPACITY: f64 = 10.0;

/// N agents hold each other's reports; then the demand of `web` rises by 80 % and every
/// node that runs it publishes its new load; rounds run until the quorum of agents holds
/// a weighted `web` load within the tolerance of the true cluster value (the value a view
/// holding every node's latest report computes). Nodes run 1 to 3 instances of `web`
/// (half of them 1 or 2 of `db`, whose load does not change) and receive uneven shares of
/// the demand, so loads differ from node to node.
pub fn convergence(setup: &ConvergenceSetup) -> ConvergenceResult {
    let book = ReportBook::new(setup.nodes, vec!["web".to_owned(), "db".to_owned()]);
    match setup.view {
        ViewKind::Cluster => {
            let views = ClusterViews::new(setup.nodes, &book);
            spread(setup, book, views)
        }
        ViewKind::Compact => spread(setup, book, CompactViews::new(setup.nodes, setup.nodes)),
    }
}

struct Cluster {
    web: Vec<u32>,
    db: Vec<Option<Sample>>,
    share: Vec<f64>,
}

impl Cluster {
    fn payload(&self, node: usize, demand: f64) -> Payload {
        let instances = self.web[node];
        let load =
            (demand * self.share[node] / (f64::from(instances) * CONVERGENCE_CAPACITY)).min(1.0);
        Box::new([Some(Sample { instances, load }), self.db[node]])
    }

    /// The value a view holding every node's report at `demand` computes.
    fn truth(&self, demand: f64) -> f64 {
        let (mut sum, mut weight) = (0.0, 0.0);
        for node in 0..self.web.len() {
            if let Some(Some(sample)) = self.payload(node, demand).first() {
                let w = f64::from(sample.instances.max(1));
                sum += sample.load * w;
                weight += w;
            }
        }
        sum / weight
    }
}

fn spread<V: Views>(
    setup: &ConvergenceSetup,
    mut book: ReportBook,
    mut views: V,
) -> ConvergenceResult {
    let n = setup.nodes;
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let web: Vec<u32> = (0..n).map(|_| rng.random_range(1..=3)).collect();
    let db = (0..n)
        .map(|_| {
            rng.random_bool(0.5).then(|| Sample {
                instances: rng.random_range(1..=2),
                load: rng.random_range(0.2..0.5),
            })
        })
        .collect();
    let skew: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..1.5)).collect();
    let total_skew: f64 = skew.iter().sum();
    let cluster = Cluster {
        web: web.clone(),
        db,
        share: skew.iter().map(|s| s / total_skew).collect(),
    };
    let total_web: u32 = web.iter().sum();
    let before = 0.4 * CONVERGENCE_CAPACITY * f64::from(total_web);
    let after = before * 1.8;

    // Steady state: every agent holds every node's report at the old demand.
    for node in 0..n {
        book.publish(node, cluster.payload(node, before));
    }
    let everything = vec![1_u32; n];
    for agent in 0..n {
        views.absorb(agent, &everything, &book, Millis::ZERO);
    }

    let alive = vec![true; n];
    let all: std::rc::Rc<[usize]> = (0..n).collect();
    let peers = vec![all; n];
    let mut network = FakeNetwork::new(n);
    network.set_loss(setup.loss);
    let mut scratch = GossipScratch::default();
    let truth = cluster.truth(after);
    let mut result = ConvergenceResult {
        nodes: n,
        view: setup.view,
        message_limit: (setup.message_limit < usize::MAX).then_some(setup.message_limit),
        loss: setup.loss,
        rounds: None,
        goal: setup.goal(),
        share_by_round: Vec::new(),
        true_before: cluster.truth(before),
        true_after: truth,
        requests_per_agent_round: 0.0,
        replies_per_agent_round: 0.0,
        max_requests_per_agent: 0,
    };
    let (mut requests, mut replies, mut agent_rounds) = (0, 0, 0);
    for round in 1..=setup.max_rounds {
        let now = Millis::from_secs(u64::from(round) * 5);
        for node in 0..n {
            let version = book.publish(node, cluster.payload(node, after));
            views.merge(node, node, version, &book, now);
        }
        let counts = communication_round(
            &mut views,
            &book,
            &alive,
            &peers,
            setup.max_friends,
            setup.message_limit,
            &mut network,
            now,
            &mut rng,
            &mut scratch,
        );
        requests += counts.requests;
        replies += counts.replies;
        agent_rounds += counts.agents;
        result.max_requests_per_agent = result
            .max_requests_per_agent
            .max(counts.max_requests_per_agent);
        let holding = (0..n)
            .filter(|&agent| {
                views
                    .estimate(agent, 0, &book)
                    .weighted
                    .is_some_and(|v| (v - truth).abs() <= setup.tolerance * truth)
            })
            .count();
        let share = holding as f64 / n as f64;
        result.share_by_round.push(share);
        if share >= setup.quorum {
            result.rounds = Some(round);
            break;
        }
    }
    result.requests_per_agent_round = requests as f64 / agent_rounds.max(1) as f64;
    result.replies_per_agent_round = replies as f64 / agent_rounds.max(1) as f64;
    result
}

/// Agents all seeing the same overload, in gru and gru-original mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OvershootRow {
    pub nodes: usize,
    pub gru: RunReport,
    pub original: RunReport,
}

/// The overload's bound: 2 instances at the start, at most 12.
pub const OVERLOAD_MAX: u32 = 12;
/// Long enough for gru to reach the bound (three 20 s windows, and a Period) and hold there.
pub const OVERLOAD_SECS: u64 = 240;

pub fn overshoot(sizes: &[usize], seed: u64) -> Vec<OvershootRow> {
    let scenarios: Vec<Scenario> = sizes
        .iter()
        .flat_map(|&n| {
            [Mode::Gru, Mode::GruOriginal]
                .map(|mode| Scenario::overload(mode, n, OVERLOAD_MAX, OVERLOAD_SECS, seed))
        })
        .collect();
    let mut reports = run_all(&scenarios).into_iter();
    sizes
        .iter()
        .filter_map(|&nodes| {
            Some(OvershootRow {
                nodes,
                gru: reports.next()?,
                original: reports.next()?,
            })
        })
        .collect()
}

/// Every mode on every trace, `nodes` nodes.
pub fn trace_table(traces: &[Arc<Trace>], nodes: usize, seed: u64) -> Vec<RunReport> {
    let scenarios: Vec<Scenario> = traces
        .iter()
        .flat_map(|trace| {
            Mode::ALL.map(|mode| Scenario::trace_run(mode, Arc::clone(trace), nodes, seed))
        })
        .collect();
    run_all(&scenarios)
}

/// The fault sets the bench and the tests inject into a run of `duration_secs` over
/// `nodes` nodes: a crash of a tenth of the nodes (every other one of the first fifth,
/// which run the initial instances), 20 % message loss throughout, a partition cutting
/// off three tenths of the nodes for a sixth of the run, and all three together.
pub fn fault_sets(nodes: usize, duration_secs: u64) -> Vec<(&'static str, Vec<Fault>)> {
    let crash = Fault::Crash {
        at_secs: duration_secs / 3,
        nodes: (0..nodes).step_by(2).take(nodes.div_ceil(10)).collect(),
    };
    let loss = Fault::Loss {
        from_secs: 0,
        until_secs: duration_secs,
        probability: 0.2,
    };
    let partition = Fault::Partition {
        from_secs: duration_secs / 2,
        until_secs: duration_secs / 2 + duration_secs / 6,
        minority: (1..nodes).step_by(3).take(nodes * 3 / 10).collect(),
    };
    vec![
        ("no fault", Vec::new()),
        ("crash", vec![crash.clone()]),
        ("loss", vec![loss.clone()]),
        ("partition", vec![partition.clone()]),
        ("all three", vec![crash, loss, partition]),
    ]
}

/// gru and gru-original on `trace` under each fault set.
pub fn fault_table(trace: &Arc<Trace>, nodes: usize, seed: u64) -> Vec<RunReport> {
    let scenarios: Vec<Scenario> = fault_sets(nodes, trace.duration_secs())
        .into_iter()
        .flat_map(|(name, faults)| {
            [Mode::Gru, Mode::GruOriginal].map(|mode| {
                Scenario::trace_run(mode, Arc::clone(trace), nodes, seed)
                    .with_db()
                    .with_faults(name, faults.clone())
            })
        })
        .chain([Mode::Gru, Mode::GruOriginal].map(|mode| partition_near_max(mode, seed)))
        .collect();
    run_all(&scenarios)
}

/// A partition while the cluster is near `MaxInstances`: 20 agents see an overload of
/// `web` (at most 8 instances); from 60 s to 240 s a quarter of the nodes, among them the
/// two that run the initial instances, are cut off from the others and from the store.
/// Their leases expire, so the majority no longer counts their instances.
pub fn partition_near_max(mode: Mode, seed: u64) -> Scenario {
    Scenario::overload(mode, 20, OVERLOAD_MAX, 300, seed).with_faults(
        "partition near max (overload, N = 20)",
        vec![Fault::Partition {
            from_secs: 60,
            until_secs: 240,
            minority: vec![0, 1, 5, 9, 13],
        }],
    )
}
