//! The experiments behind `gru-sim bench`: convergence of the views, overshoot under a
//! shared overload, the four modes on the shipped traces, gru under faults, and the Pareto
//! comparison of gru's and HPA's targets (with Dynamite and gru-original) over every trace
//! kind and many seeds.

use std::sync::Arc;
use std::time::Duration;

use gru_agent::gossip::digest;
use gru_agent::mape::Millis;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::gossip::{GossipScratch, communication_round};
use crate::network::FakeNetwork;
use crate::scenario::{Fault, Mode, Scenario, ViewKind};
use crate::sim::{RunReport, run_all};
use crate::trace::{Trace, TraceKind};
use crate::view::{ClusterViews, CompactViews, Payload, ReportBook, Sample, Views, payload_moved};

/// A load change to spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvergenceSetup {
    pub nodes: usize,
    pub max_friends: usize,
    pub view: ViewKind,
    /// Most versions an answer to a digest lists.
    pub message_limit: usize,
    pub loss: f64,
    /// Times a leg whose request or answer is lost is sent (`digest::LEG_ATTEMPTS`).
    pub attempts: usize,
    pub seed: u64,
    pub max_rounds: u32,
    /// Within this fraction of the true value counts as holding it.
    pub tolerance: f64,
    /// Share of agents that must hold it.
    pub quorum: f64,
}

impl ConvergenceSetup {
    /// The acceptance setup: MaxFriends 5, 5 %, 99 %, no loss, the agent's cap on the
    /// versions of an answer (`digest::DETAIL_CAP`).
    pub fn acceptance(nodes: usize, view: ViewKind, seed: u64) -> ConvergenceSetup {
        ConvergenceSetup {
            nodes,
            max_friends: 5,
            view,
            message_limit: gru_agent::gossip::digest::DETAIL_CAP,
            loss: 0.0,
            attempts: gru_agent::gossip::digest::LEG_ATTEMPTS,
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
    /// Times a lost leg was sent at most.
    pub attempts: usize,
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
    /// Bytes an agent sends per round before the change (heartbeats only), on average
    /// over the agents and the steady rounds measured, and the most one agent sent in one
    /// of those rounds.
    pub steady_bytes_per_agent_round: f64,
    pub steady_max_bytes_per_agent: u64,
    /// Bytes an agent sends per round after the change: the round with the highest
    /// average, that average, and the most one agent sent in one round.
    pub change_bytes_per_agent_round: f64,
    pub change_max_bytes_per_agent: u64,
    /// Per round after the change: bytes an agent sent on average, and of them, by leg
    /// (digests, answers to digests, pushes, wanted reports).
    pub bytes_by_round: Vec<[f64; 5]>,
}

/// Rounds of steady state (heartbeats only) run before the change; the bytes of the
/// second half are measured, once heartbeats spread as they do in a running cluster.
pub const STEADY_ROUNDS: u32 = 12;

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
        book.publish(node, cluster.payload(node, before), Millis::ZERO);
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
        attempts: setup.attempts,
        rounds: None,
        goal: setup.goal(),
        share_by_round: Vec::new(),
        true_before: cluster.truth(before),
        true_after: truth,
        requests_per_agent_round: 0.0,
        replies_per_agent_round: 0.0,
        max_requests_per_agent: 0,
        steady_bytes_per_agent_round: 0.0,
        steady_max_bytes_per_agent: 0,
        change_bytes_per_agent_round: 0.0,
        change_max_bytes_per_agent: 0,
        bytes_by_round: Vec::new(),
    };
    // A node publishes again when its report changes beyond the dead band, or on its
    // heartbeat, as the agent does (`digest::heartbeat`; 1 s rounds); heartbeats start
    // at a random phase, as nodes that joined at different times.
    let interval = Duration::from_secs(1);
    let heartbeat = digest::heartbeat(interval, n).as_secs().max(1);
    let phase: Vec<u64> = (0..n).map(|_| rng.random_range(0..heartbeat)).collect();
    let (mut requests, mut replies, mut agent_rounds) = (0, 0, 0);
    let (mut steady_bytes, mut steady_rounds) = (0_u64, 0_u64);
    for round in 1..=(STEADY_ROUNDS + setup.max_rounds) {
        let changed = round > STEADY_ROUNDS;
        let now = Millis::from_secs(u64::from(round));
        let demand = if changed { after } else { before };
        for (node, phase) in phase.iter().enumerate() {
            let payload = cluster.payload(node, demand);
            let moved = payload_moved(book.latest_payload(node), &payload);
            let beat = (u64::from(round) + phase).is_multiple_of(heartbeat);
            if moved || beat {
                let version = book.publish(node, payload, now);
                views.merge(node, node, version, &book, now);
            }
        }
        let counts = communication_round(
            &mut views,
            &book,
            &alive,
            &peers,
            setup.max_friends,
            setup.message_limit,
            setup.attempts,
            &mut network,
            now,
            Millis::from_secs(u64::from(round) - 1),
            &mut rng,
            &mut scratch,
        );
        let mean = counts.bytes as f64 / counts.agents.max(1) as f64;
        if !changed {
            if round > STEADY_ROUNDS / 2 {
                steady_bytes += counts.bytes;
                steady_rounds += counts.agents;
                result.steady_max_bytes_per_agent = result
                    .steady_max_bytes_per_agent
                    .max(counts.max_bytes_per_agent);
            }
            continue;
        }
        result.change_bytes_per_agent_round = result.change_bytes_per_agent_round.max(mean);
        let per_agent = |bytes: u64| (bytes as f64 / counts.agents.max(1) as f64).round();
        let legs = counts.bytes_by_leg;
        result.bytes_by_round.push([
            mean.round(),
            per_agent(legs[0]),
            per_agent(legs[1]),
            per_agent(legs[2]),
            per_agent(legs[3]),
        ]);
        result.change_max_bytes_per_agent = result
            .change_max_bytes_per_agent
            .max(counts.max_bytes_per_agent);
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
            result.rounds = Some(round - STEADY_ROUNDS);
            break;
        }
    }
    result.steady_bytes_per_agent_round = steady_bytes as f64 / steady_rounds.max(1) as f64;
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

/// The targets the Pareto comparison sweeps, for gru and for HPA alike.
pub const PARETO_TARGETS: [f64; 9] = [0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95];

/// HPA's target the equal-cost comparison is made at.
pub const REFERENCE_HPA_TARGET: f64 = 0.6;

/// Within this fraction of HPA's container-seconds counts as the same cost.
pub const EQUAL_COST_BAND: f64 = 0.05;

/// One mode at one setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    pub mode: Mode,
    /// The target utilisation (gru and HPA); `None` for a mode run at its one setting.
    pub target: Option<f64>,
}

impl Setting {
    /// `gru-0.6`, `hpa-0.4`, `dynamite`.
    pub fn label(&self) -> String {
        match self.target {
            Some(target) => format!("{}-{target}", self.mode),
            None => self.mode.to_string(),
        }
    }
}

/// gru and HPA at every target of [`PARETO_TARGETS`], then Dynamite and gru-original.
pub fn pareto_settings() -> Vec<Setting> {
    [Mode::Gru, Mode::Hpa]
        .into_iter()
        .flat_map(|mode| {
            PARETO_TARGETS.map(|target| Setting {
                mode,
                target: Some(target),
            })
        })
        .chain([Mode::Dynamite, Mode::GruOriginal].map(|mode| Setting { mode, target: None }))
        .collect()
}

/// A setting on one trace kind: means over the seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoCell {
    pub kind: TraceKind,
    pub setting: Setting,
    pub point: Point,
    pub seeds: usize,
    /// Invariant violations summed over the seeds.
    pub violations: u64,
}

/// Where a setting lands: mean container-seconds (cost) and SLO-violation seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub cost: f64,
    pub slo: f64,
}

/// Every setting of [`pareto_settings`] on every kind generated from every seed, `nodes`
/// nodes; each run's simulation seed is its trace's seed. One cell per kind and setting.
///
/// The agents' views are held compactly: `CompactViews` computes bit-identical values to
/// `ClusterView` (the property test in `view.rs`, and
/// `compact_and_cluster_views_give_the_same_trace_run` below), at a fraction of the time,
/// which is what lets the sweep run in minutes.
pub fn pareto(kinds: &[TraceKind], seeds: &[u64], nodes: usize) -> Vec<ParetoCell> {
    let settings = pareto_settings();
    let traces: Vec<(TraceKind, u64, Arc<Trace>)> = kinds
        .iter()
        .flat_map(|&kind| seeds.iter().map(move |&seed| (kind, seed)))
        .map(|(kind, seed)| (kind, seed, Arc::new(kind.generate(seed))))
        .collect();
    let scenarios: Vec<Scenario> = traces
        .iter()
        .flat_map(|(_, seed, trace)| {
            settings.iter().map(move |setting| {
                let mut scenario =
                    Scenario::trace_run(setting.mode, Arc::clone(trace), nodes, *seed);
                scenario.view = ViewKind::Compact;
                match setting.target {
                    Some(target) => scenario.with_target(target),
                    None => scenario,
                }
            })
        })
        .collect();
    let reports = run_all(&scenarios);
    let mut cells = Vec::new();
    for &kind in kinds {
        for (s, &setting) in settings.iter().enumerate() {
            let runs: Vec<&RunReport> = traces
                .iter()
                .enumerate()
                .filter(|(_, (k, _, _))| *k == kind)
                .filter_map(|(t, _)| reports.get(t * settings.len() + s))
                .collect();
            let n = runs.len().max(1) as f64;
            cells.push(ParetoCell {
                kind,
                setting,
                point: Point {
                    cost: runs.iter().map(|r| r.container_secs as f64).sum::<f64>() / n,
                    slo: runs
                        .iter()
                        .map(|r| r.slo_violation_secs as f64)
                        .sum::<f64>()
                        / n,
                },
                seeds: runs.len(),
                violations: runs.iter().map(|r| r.violations.total()).sum(),
            });
        }
    }
    cells
}

/// How gru's SLO-seconds at HPA's cost were found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum EqualCostHow {
    /// Some gru settings cost within the band of HPA's: the best SLO-seconds among them.
    InBand,
    /// None did: linear between the two gru settings whose costs bracket HPA's.
    Interpolated,
    /// Every gru setting costs less than HPA's band: gru's costliest setting (gru is
    /// compared while spending less).
    GruCheaper,
    /// Every gru setting costs more than HPA's band: gru cannot run as cheaply, so there is
    /// no equal-cost figure and the ratio counts as infinite.
    GruCostlier,
}

/// gru against HPA at HPA's cost, on one trace kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EqualCost {
    pub hpa: Point,
    /// gru's SLO-seconds at HPA's cost (`None` when gru cannot be that cheap).
    pub gru_slo: Option<f64>,
    pub how: EqualCostHow,
    /// gru's SLO-seconds over HPA's. Both 0 (both met the SLO throughout) is 1 (equal);
    /// gru above 0 against HPA's 0, or no equal-cost figure, is infinite (gru worse, by
    /// how much cannot be said).
    pub ratio: f64,
}

/// gru's SLO-seconds at `hpa`'s container-seconds, from gru's settings `gru`.
pub fn equal_cost(gru: &[Point], hpa: Point) -> EqualCost {
    let band = EQUAL_COST_BAND * hpa.cost;
    let in_band = gru
        .iter()
        .filter(|p| (p.cost - hpa.cost).abs() <= band)
        .map(|p| p.slo)
        .fold(None, |best: Option<f64>, slo| {
            Some(best.map_or(slo, |b| b.min(slo)))
        });
    let mut sorted: Vec<Point> = gru.to_vec();
    sorted.sort_by(|a, b| a.cost.total_cmp(&b.cost));
    let (gru_slo, how) = if let Some(slo) = in_band {
        (Some(slo), EqualCostHow::InBand)
    } else if let Some(pair) = sorted
        .windows(2)
        .find(|w| w[0].cost <= hpa.cost && hpa.cost <= w[1].cost)
    {
        let (a, b) = (pair[0], pair[1]);
        let share = if b.cost > a.cost {
            (hpa.cost - a.cost) / (b.cost - a.cost)
        } else {
            0.0
        };
        (
            Some(a.slo + (b.slo - a.slo) * share),
            EqualCostHow::Interpolated,
        )
    } else if sorted.last().is_some_and(|p| p.cost < hpa.cost) {
        (sorted.last().map(|p| p.slo), EqualCostHow::GruCheaper)
    } else {
        (None, EqualCostHow::GruCostlier)
    };
    let ratio = match gru_slo {
        None => f64::INFINITY,
        Some(gru) if hpa.slo > 0.0 => gru / hpa.slo,
        Some(gru) if gru > 0.0 => f64::INFINITY,
        Some(_) => 1.0,
    };
    EqualCost {
        hpa,
        gru_slo,
        how,
        ratio,
    }
}

/// Whether some point of `gru` is at least as good as `baseline` on both axes.
pub fn dominates(gru: &[Point], baseline: Point) -> bool {
    gru.iter()
        .any(|p| p.cost <= baseline.cost && p.slo <= baseline.slo)
}

/// The Pareto comparison of one trace kind, as the summary line states it.
#[derive(Debug, Clone, PartialEq)]
pub struct KindVerdict {
    pub kind: TraceKind,
    pub equal_cost: Option<EqualCost>,
    pub dominates_dynamite: bool,
    pub dominates_gru_original: bool,
}

/// Per kind of `cells`: gru against HPA at [`REFERENCE_HPA_TARGET`], and whether gru
/// dominates Dynamite and gru-original. A kind without an HPA reference has no equal-cost
/// figure; a baseline that was not run counts as not dominated.
pub fn verdicts(cells: &[ParetoCell]) -> Vec<KindVerdict> {
    let mut kinds: Vec<TraceKind> = Vec::new();
    for cell in cells {
        if !kinds.contains(&cell.kind) {
            kinds.push(cell.kind);
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let of_kind = || cells.iter().filter(move |c| c.kind == kind);
            let gru: Vec<Point> = of_kind()
                .filter(|c| c.setting.mode == Mode::Gru)
                .map(|c| c.point)
                .collect();
            let baseline = |mode: Mode, target: Option<f64>| {
                of_kind()
                    .find(|c| c.setting.mode == mode && c.setting.target == target)
                    .map(|c| c.point)
            };
            let dominated = |mode| baseline(mode, None).is_some_and(|b| dominates(&gru, b));
            KindVerdict {
                kind,
                equal_cost: baseline(Mode::Hpa, Some(REFERENCE_HPA_TARGET))
                    .map(|hpa| equal_cost(&gru, hpa)),
                dominates_dynamite: dominated(Mode::Dynamite),
                dominates_gru_original: dominated(Mode::GruOriginal),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cost: f64, slo: f64) -> Point {
        Point { cost, slo }
    }

    #[test]
    fn equal_cost_takes_the_best_in_band_or_interpolates_or_says_why_not() {
        let gru = [p(80.0, 50.0), p(98.0, 30.0), p(104.0, 20.0), p(130.0, 5.0)];
        // (gru, hpa, gru's SLO-s at HPA's cost, how, ratio)
        type Case<'a> = (&'a [Point], Point, Option<f64>, EqualCostHow, f64);
        let cases: [Case; 8] = [
            // 98 and 104 are within 5 % of 100: the better of 30 and 20.
            (&gru, p(100.0, 40.0), Some(20.0), EqualCostHow::InBand, 0.5),
            // 110 ± 5.5 holds none: between 104 (20) and 130 (5), 6/26 of the way.
            (
                &gru,
                p(110.0, 10.0),
                Some(20.0 - 15.0 * 6.0 / 26.0),
                EqualCostHow::Interpolated,
                (20.0 - 15.0 * 6.0 / 26.0) / 10.0,
            ),
            // HPA costs more than any gru setting: gru's costliest.
            (
                &gru,
                p(200.0, 4.0),
                Some(5.0),
                EqualCostHow::GruCheaper,
                1.25,
            ),
            // HPA costs less than any gru setting: no figure, infinite.
            (
                &gru,
                p(50.0, 90.0),
                None,
                EqualCostHow::GruCostlier,
                f64::INFINITY,
            ),
            // 0/0: both met the SLO: equal.
            (
                &[p(100.0, 0.0)],
                p(100.0, 0.0),
                Some(0.0),
                EqualCostHow::InBand,
                1.0,
            ),
            // x/0: gru missed it, HPA did not: infinite.
            (
                &[p(100.0, 3.0)],
                p(100.0, 0.0),
                Some(3.0),
                EqualCostHow::InBand,
                f64::INFINITY,
            ),
            // 0/x: gru met it, HPA did not.
            (
                &[p(100.0, 0.0)],
                p(100.0, 7.0),
                Some(0.0),
                EqualCostHow::InBand,
                0.0,
            ),
            // No gru setting at all.
            (
                &[],
                p(100.0, 7.0),
                None,
                EqualCostHow::GruCostlier,
                f64::INFINITY,
            ),
        ];
        for (gru, hpa, slo, how, ratio) in cases {
            let got = equal_cost(gru, hpa);
            assert_eq!(got.how, how, "{gru:?} against {hpa:?}");
            match (got.gru_slo, slo) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{a} != {b}"),
                (a, b) => assert_eq!(a, b),
            }
            if ratio.is_finite() {
                assert!((got.ratio - ratio).abs() < 1e-9, "{} != {ratio}", got.ratio);
            } else {
                assert_eq!(got.ratio, ratio);
            }
        }
    }

    #[test]
    fn compact_and_cluster_views_give_the_same_trace_run() {
        let mut trace = TraceKind::DoubleSpike.generate(3);
        trace.demand.truncate(900);
        let trace = Arc::new(trace);
        for mode in [Mode::Gru, Mode::GruOriginal] {
            let cluster = Scenario::trace_run(mode, Arc::clone(&trace), 20, 3);
            let compact = Scenario {
                view: ViewKind::Compact,
                ..cluster.clone()
            };
            assert_eq!(
                crate::sim::run(&cluster),
                crate::sim::run(&compact),
                "{mode}"
            );
        }
    }

    #[test]
    fn dominance_needs_one_point_at_least_as_good_on_both_axes() {
        let gru = [p(100.0, 50.0), p(150.0, 10.0)];
        // (baseline, dominated)
        let cases = [
            (p(120.0, 60.0), true),  // 100/50 is better on both
            (p(150.0, 10.0), true),  // equal counts
            (p(120.0, 20.0), false), // one is cheaper, the other better, neither both
            (p(90.0, 100.0), false), // cheaper than every gru setting
            (p(200.0, 5.0), false),  // better SLO than every gru setting
        ];
        for (baseline, dominated) in cases {
            assert_eq!(dominates(&gru, baseline), dominated, "{baseline:?}");
        }
        assert!(!dominates(&[], p(1.0, 1.0)));
    }

    #[test]
    fn verdicts_compare_per_kind_and_take_hpa_at_its_reference_target() {
        let cell = |kind, mode, target, cost, slo| ParetoCell {
            kind,
            setting: Setting { mode, target },
            point: p(cost, slo),
            seeds: 1,
            violations: 0,
        };
        let cells = [
            cell(TraceKind::Step, Mode::Gru, Some(0.5), 100.0, 10.0),
            cell(TraceKind::Step, Mode::Gru, Some(0.7), 80.0, 30.0),
            cell(TraceKind::Step, Mode::Hpa, Some(0.5), 120.0, 5.0),
            cell(TraceKind::Step, Mode::Hpa, Some(0.6), 100.0, 20.0),
            cell(TraceKind::Step, Mode::Dynamite, None, 90.0, 40.0),
            cell(TraceKind::Step, Mode::GruOriginal, None, 70.0, 50.0),
            cell(TraceKind::Ramp, Mode::Gru, Some(0.5), 100.0, 10.0),
            cell(TraceKind::Ramp, Mode::Hpa, Some(0.6), 100.0, 5.0),
            cell(TraceKind::Ramp, Mode::Dynamite, None, 100.0, 10.0),
        ];
        let verdicts = verdicts(&cells);
        assert_eq!(verdicts.len(), 2);
        let step = &verdicts[0];
        assert_eq!(step.kind, TraceKind::Step);
        let equal = step.equal_cost.expect("HPA-0.6 ran on step");
        assert_eq!((equal.gru_slo, equal.ratio), (Some(10.0), 0.5));
        assert!(step.dominates_dynamite, "gru-0.7 is cheaper and better");
        assert!(!step.dominates_gru_original, "gru-original is the cheapest");
        let ramp = &verdicts[1];
        assert_eq!(ramp.equal_cost.map(|e| e.ratio), Some(2.0));
        assert!(ramp.dominates_dynamite, "equal on both axes");
        assert!(!ramp.dominates_gru_original, "not run: not dominated");
    }
}

/// What [`revoked_then_lost`] ends with: what a real run of the same scene can be compared
/// with (`cli/tests/sim_vs_real.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ComparisonOutcome {
    /// Instances started from the revocation until the node was lost.
    pub starts_after_revocation: u32,
    /// Instances started from the loss to the end.
    pub starts_after_loss: u32,
    pub final_instances: u32,
    pub peak_instances: u32,
    /// Repairs and other starts withheld because a node in doubt still answered or the
    /// agent's own lease was gone.
    pub withheld: u64,
}

/// When [`revoked_then_lost`] revokes the leases, loses the node, and ends.
pub const REVOKE_AT_SECS: u64 = 10;
pub const LOSE_AT_SECS: u64 = 30;
pub const COMPARISON_SECS: u64 = 60;

/// Three nodes running agents with 1 s loops and gossip and a 3 s node lease; `web`
/// between 2 and 3 instances, on n0 and n1 at the start, no scaling from metrics (both
/// rules off), for [`COMPARISON_SECS`], with `faults`: the scene of [`revoked_then_lost`]
/// and of the simulator's restart and store-stall tests.
pub fn three_node_scene(seed: u64, faults: Vec<Fault>) -> Scenario {
    use common::config::{PolicyConfig, PolicyRule};

    use crate::scenario::{Demand, ServiceSpec, Timing};
    // The overload preset's cluster, with a constant demand and no scaling instead.
    let mut scenario = Scenario::overload(Mode::Gru, 3, 3, COMPARISON_SECS, seed);
    scenario.name = "three nodes, web between 2 and 3".to_owned();
    scenario.services = vec![ServiceSpec {
        name: "web".to_owned(),
        capacity_rps: crate::scenario::CAPACITY_RPS,
        min: 2,
        max: Some(3),
        initial: 2,
        demand: Demand::Constant(5.0),
    }];
    scenario.policy = PolicyConfig {
        scaleout: PolicyRule::disabled(0.75),
        scalein: PolicyRule::disabled(0.35),
        swap: PolicyRule::disabled(0.6),
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
    };
    scenario.timing = Timing {
        lease_ttl_secs: 3,
        ..Timing::agent(1, 1)
    };
    scenario.faults = faults;
    scenario
}

/// Instances started from `from_secs` (included) to `until_secs` (excluded) of a run.
pub fn starts_between(report: &RunReport, from_secs: u64, until_secs: u64) -> u64 {
    let at = |secs: u64| {
        let index = usize::try_from(secs).unwrap_or(usize::MAX);
        match index.checked_sub(1) {
            None => 0,
            Some(i) => report
                .start_series
                .get(i)
                .or(report.start_series.last())
                .copied()
                .unwrap_or(0),
        }
    };
    at(until_secs).saturating_sub(at(from_secs))
}

/// The scene the simulator and the real agents both play (issue 12's comparison, see
/// `cli/tests/sim_vs_real.rs`): [`three_node_scene`], where at [`REVOKE_AT_SECS`] etcd
/// revokes the leases of n0 and n1 under them (they run on and register again), and at
/// [`LOSE_AT_SECS`] n0 is lost with its instance.
pub fn revoked_then_lost(seed: u64) -> ComparisonOutcome {
    let scenario = three_node_scene(
        seed,
        vec![
            Fault::RevokeLeases {
                at_secs: REVOKE_AT_SECS,
                nodes: vec![0, 1],
            },
            Fault::Crash {
                at_secs: LOSE_AT_SECS,
                nodes: vec![0],
            },
        ],
    );
    let report = crate::sim::run(&scenario);
    let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    ComparisonOutcome {
        starts_after_revocation: narrow(starts_between(&report, REVOKE_AT_SECS, LOSE_AT_SECS)),
        starts_after_loss: narrow(starts_between(&report, LOSE_AT_SECS, COMPARISON_SECS)),
        final_instances: report.instance_series.last().copied().unwrap_or(0),
        peak_instances: report.peak_instances,
        withheld: report.repairs_withheld + report.starts_withheld,
    }
}
