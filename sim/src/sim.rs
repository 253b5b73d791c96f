//! The simulation: a cluster of agents (or one baseline controller) stepped tick by tick.
//!
//! Each tick, in this order:
//!
//! 1. faults due now strike (crash, partition start or end, loss on or off);
//! 2. started instances whose delay is over begin serving; expired leases take their keys;
//! 3. every live node that reaches the store keeps its lease alive (or registers again)
//!    and publishes its running instances for discovery; agents that reach the store
//!    learn the active nodes (their friends are drawn among them);
//! 4. on a communication round, every live node publishes its report (its instances and
//!    its load per service), merges it into its own view, gossips with its friends, and
//!    expires stale and departed nodes' reports;
//! 5. every agent whose autonomic loop is due (or whose own load newly crosses a threshold:
//!    the agent's fast detection) refreshes its own report and plans with the real planner
//!    through the agent's tick core (`gru_agent::tick::plan`); in gru mode, what it claims
//!    goes through the tick core too: repairs (MinInstances, MaxInstances) and the
//!    planner's step or target-tracking decision when its loop is due, and its share of a
//!    standing target on every tick (the agent's ledger watch wakes it); all read their ledger first, then
//!    claim in random order, so that racing claims meet the revision check as they would in
//!    etcd; in gru-original mode they act at once; a baseline controller acts on its own
//!    period instead;
//! 6. the invariants are checked and the figures accumulated.
//!
//! No ledger rule lives here: which claim a want leads to, its TTLs and what a won claim
//! does on the node come from `gru_agent::tick` (a test scans this crate for the rules).
//! A step the ledger refuses is not taken, but the planner's state moves on as if it had
//! been (the agent's own cooldown runs), as in the agent. An agent that cannot reach the
//! store takes no step and makes no repair. gru-original has neither repair (Gru had none).

use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gru_agent::coordination::Claim;
use gru_agent::coordination::{Direction, Ledger, LedgerTtls};
use gru_agent::gossip::digest;
use gru_agent::mape::target::growth_limit;
use gru_agent::mape::{
    self, Action, AnalyticValue, LastScale, PlanInput, PlannerState, ServiceSnapshot,
};
use gru_agent::tick::ports::Ports;
use gru_agent::tick::{
    self, Act, ClaimMachine, ClaimOutcome, Effect, FillRetry, ServiceObservation, Wake, Want,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use common::keys::ClusterKeys;

use crate::baseline::{Dynamite, Hpa, METRICS_RESOLUTION_SECS, MetricWindow};
use crate::gossip::{GossipScratch, communication_round};
use crate::invariants::{Limits, ServiceInvariants, Violations};
use crate::network::FakeNetwork;
use crate::runtime::FakeRuntime;
use crate::scenario::{Demand, Fault, Mode, Scenario, ViewKind};
use crate::store::{FakeStore, LeaseId};
use crate::time::VirtualClock;
use crate::view::{
    ClusterViews, CompactViews, LOAD, Payload, ReportBook, Sample, Views, payload_moved,
};
use gru_agent::runtime::peers::Peers;

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub mode: Mode,
    pub nodes: usize,
    pub duration_secs: u64,
    /// Seconds during which some service's demand exceeded its running capacity.
    pub slo_violation_secs: u64,
    /// Instances (running or starting) times seconds.
    pub container_secs: u64,
    pub scale_out_actions: u64,
    pub scale_in_actions: u64,
    pub instances_added: u64,
    pub instances_removed: u64,
    /// Instances started to restore `MinInstances` (gru mode).
    pub instances_repaired: u64,
    /// Instances started or stopped by agents filling another agent's target-tracking
    /// decision (gru mode).
    pub instances_filled: u64,
    /// Instances stopped to get back under `MaxInstances` (gru mode): a repair too.
    pub instances_repaired_above_max: u64,
    pub violations: Violations,
    /// Of `violations.above_max`, the ticks while a partition was in force (the minority's
    /// leases expired, so the majority no longer counted its instances).
    pub above_max_during_partition: u64,
    /// Of `violations.above_max`, the ticks after a partition healed (what the ceiling
    /// repair must end).
    pub above_max_after_heal: u64,
    /// Seconds from the last heal to the end of the last tick above max after it (0 if
    /// the cluster was never above max after a heal).
    pub above_max_secs_after_heal: u64,
    /// The most instances added by scale-out in one `CooldownOut` window (any service).
    pub max_added_per_window: u32,
    pub max_removed_per_window: u32,
    pub peak_instances: u32,
    pub max_instances: Option<u32>,
    pub longest_below_min_secs: u64,
    pub claims_won: u64,
    pub claims_lost: u64,
    /// Steps the ledger refused (cooling down, or at a bound).
    pub claims_refused: u64,
    /// Decisions dropped because the agent could not reach the store.
    pub store_unreachable: u64,
    pub comm_rounds: u64,
    /// Sum over rounds of the agents that took part.
    pub agent_rounds: u64,
    pub requests: u64,
    pub replies: u64,
    pub max_requests_per_agent_round: u64,
    /// Repairs of MinInstances withheld because the agent's own lease was gone or a node
    /// whose records vanished still answered (`tick::withheld`).
    pub repairs_withheld: u64,
    /// Other starts (fills, steps, targets, swaps) withheld for the same reason.
    pub starts_withheld: u64,
    /// Swaps carried out (gru mode): an instance of one service stopped on a full node and
    /// one of another started in its place, both halves claimed first.
    pub swaps: u64,
    /// Instances of each service at every tick, for determinism checks.
    #[serde(skip)]
    pub instance_series: Vec<u32>,
    /// Instances started since the run began (all services), at every tick.
    #[serde(skip)]
    pub start_series: Vec<u64>,
}

impl RunReport {
    /// Requests plus replies per agent per round.
    pub fn messages_per_agent_round(&self) -> f64 {
        if self.agent_rounds == 0 {
            0.0
        } else {
            (self.requests + self.replies) as f64 / self.agent_rounds as f64
        }
    }

    pub fn scaling_actions(&self) -> u64 {
        self.scale_out_actions + self.scale_in_actions
    }
}

/// Runs `scenario` to its end.
pub fn run(scenario: &Scenario) -> RunReport {
    let services = scenario.services.iter().map(|s| s.name.clone()).collect();
    let book = ReportBook::new(scenario.nodes, services);
    match scenario.view {
        ViewKind::Cluster => {
            let views = ClusterViews::new(scenario.nodes, &book);
            Simulation::new(scenario, book, views).run()
        }
        ViewKind::Compact => {
            let views = CompactViews::new(scenario.nodes, scenario.nodes);
            Simulation::new(scenario, book, views).run()
        }
    }
}

/// The active nodes an agent learned from the store.
#[derive(Debug)]
struct PeerList {
    nodes: Rc<[usize]>,
    known: Vec<bool>,
}

#[derive(Debug)]
struct Agent {
    alive: bool,
    planner: PlannerState,
    /// Its last decision to act and the state it was made from, as the agent keeps them
    /// (`Autonomic::take_back_decision`): a withheld step starts no cooldown.
    decided_from: Option<(Action, PlannerState)>,
    /// The phase of its autonomic loop, in seconds.
    offset_secs: u64,
    lease: Option<LeaseId>,
    peers: Rc<PeerList>,
    /// When etcd revoked its lease under it ([`Fault::RevokeLeases`]): it learns so at its
    /// next keep-alive, the next tick.
    revoked_at: Option<u64>,
    /// When it last registered again under a new lease: discovery settles for a TTL and two
    /// loops after (`tick::floor`'s `settling`).
    registered_again_at: Option<u64>,
    /// A stopped agent starts again at this second ([`Fault::Restart`]).
    restart_at: Option<u64>,
    /// Its store member stalls until this second ([`Fault::StoreStall`]).
    store_stalled_until: u64,
    /// Its lost fills retried in a row (`tick::FillRetry`).
    fill_retry: FillRetry,
}

/// A want an agent will try to claim in phase B of a tick, with the ledger it read.
#[derive(Debug)]
struct Pending {
    agent: usize,
    /// What it carries out, by service index, in claim order: one repair, fill or
    /// decision's claim, or a swap's two halves.
    wants: Vec<(usize, Want)>,
    /// The first want's ledger and discovery count, read in phase A.
    ledger: Ledger,
    observed: u32,
    /// A scale-out decision's growth limit, for the invariant checker.
    growth: u32,
}

/// A baseline controller for each service.
#[derive(Debug)]
enum Controllers {
    None,
    /// Per service, the controller and what metrics-server serves it.
    Hpa(Vec<Hpa>, Vec<MetricWindow>),
    Dynamite(Vec<Dynamite>),
}

struct Simulation<'s, V: Views> {
    scenario: &'s Scenario,
    clock: VirtualClock,
    rng: StdRng,
    /// Draws the fill retries' delays (`tick::FillRetry`; a tick holds them all), apart
    /// from `rng` so that they leave its sequence alone.
    fill_delays: StdRng,
    runtime: FakeRuntime,
    store: FakeStore,
    network: FakeNetwork,
    book: ReportBook,
    /// Per node, when it last published a version of its report.
    published: Vec<Option<gru_agent::mape::Millis>>,
    views: V,
    scratch: GossipScratch,
    agents: Vec<Agent>,
    controllers: Controllers,
    invariants: Vec<ServiceInvariants>,
    /// This tick's discovery count per service, as agents that reach the store see it.
    discovered: Vec<u32>,
    /// Per node, the share of a service's traffic one of its instances gets relative to
    /// the others (the load balancer is not perfect): in `[1 - imbalance, 1 + imbalance]`.
    balance: Vec<f64>,
    /// This tick's `Σ balance × running` per service: the demand is split across the
    /// running instances in proportion to their node's balance.
    balanced_running: Vec<f64>,
    active: Rc<PeerList>,
    /// When the last partition healed, if one did.
    healed_at: Option<u64>,
    /// The node records as the agents' watch follows them (one for all: every agent that
    /// reaches the store sees the same records), with the nodes whose records vanished or
    /// came back lately.
    peers: Peers,
    /// Nodes whose records vanished or came back less than a TTL and two loops ago, this
    /// tick: their instances may be missing from discovery.
    in_doubt: Vec<usize>,
    /// Per agent and service: whether its own load was above the scale-out threshold
    /// (`Some(true)`), below the scale-in one (`Some(false)`) or between, at the last check.
    crossing: Vec<Option<bool>>,
    report: RunReport,
}

impl<'s, V: Views> Simulation<'s, V> {
    fn new(scenario: &'s Scenario, book: ReportBook, views: V) -> Simulation<'s, V> {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let n = scenario.nodes;
        let timing = scenario.timing;
        let mut runtime = FakeRuntime::new(
            n,
            scenario.slots_per_node,
            scenario.services.len(),
            timing.start_delay_secs,
        );
        for (service, spec) in scenario.services.iter().enumerate() {
            let mut placed = 0;
            let mut node = 0;
            while placed < spec.initial && node < n * scenario.slots_per_node as usize {
                let at = node % n;
                if runtime.free_slots(at) > 0 {
                    runtime.place_running(at, service, 1);
                    placed += 1;
                }
                node += 1;
            }
        }
        let imbalance = scenario.imbalance.clamp(0.0, 0.9);
        let balance = (0..n)
            .map(|_| 1.0 + imbalance * (2.0 * rng.random::<f64>() - 1.0))
            .collect();
        let keys = ClusterKeys::new("sim").expect("\"sim\" is a valid cluster name");
        let active = Rc::new(PeerList {
            nodes: Rc::from(Vec::new()),
            known: vec![false; n],
        });
        let agents = (0..n)
            .map(|_| Agent {
                alive: true,
                planner: PlannerState::new(),
                decided_from: None,
                offset_secs: rng.random_range(0..timing.loop_secs.max(1)),
                lease: None,
                peers: Rc::clone(&active),
                revoked_at: None,
                registered_again_at: None,
                restart_at: None,
                store_stalled_until: 0,
                fill_retry: FillRetry::default(),
            })
            .collect();
        let controllers = match scenario.mode {
            Mode::Hpa => {
                // metrics-server scrapes at its own phase; the HPA syncs at 0 s, 15 s, ...
                let phase = rng.random_range(1..METRICS_RESOLUTION_SECS);
                Controllers::Hpa(
                    scenario
                        .services
                        .iter()
                        .map(|_| Hpa::new(scenario.hpa_target))
                        .collect(),
                    scenario
                        .services
                        .iter()
                        .map(|_| MetricWindow::new(METRICS_RESOLUTION_SECS, phase))
                        .collect(),
                )
            }
            Mode::Dynamite => Controllers::Dynamite(
                scenario
                    .services
                    .iter()
                    .map(|_| Dynamite::new(scenario.dynamite))
                    .collect(),
            ),
            Mode::Gru | Mode::GruOriginal => Controllers::None,
        };
        let policy = &scenario.window_policy();
        let invariants = scenario
            .services
            .iter()
            .map(|spec| {
                ServiceInvariants::new(Limits {
                    min: spec.min,
                    max: spec.max,
                    step_out: policy.scaleout.step.max(1),
                    step_in: policy.scalein.step.max(1),
                    cooldown_out_secs: policy.cooldown_out_secs,
                    cooldown_in_secs: policy.cooldown_in_secs,
                    tracks_target: policy.scaleout.tracks_target(),
                })
            })
            .collect();
        Simulation {
            scenario,
            clock: VirtualClock::new(timing.tick_secs),
            rng,
            fill_delays: StdRng::seed_from_u64(scenario.seed ^ 0xf111),
            runtime,
            store: FakeStore::new(keys),
            network: FakeNetwork::new(n),
            book,
            published: vec![None; n],
            views,
            scratch: GossipScratch::default(),
            agents,
            controllers,
            invariants,
            discovered: vec![0; scenario.services.len()],
            balance,
            balanced_running: vec![0.0; scenario.services.len()],
            active,
            healed_at: None,
            peers: Peers::default(),
            in_doubt: Vec::new(),
            crossing: vec![None; n * scenario.services.len()],
            report: RunReport {
                scenario: scenario.name.clone(),
                mode: scenario.mode,
                nodes: n,
                duration_secs: scenario.duration_secs,
                slo_violation_secs: 0,
                container_secs: 0,
                scale_out_actions: 0,
                scale_in_actions: 0,
                instances_added: 0,
                instances_removed: 0,
                instances_repaired: 0,
                instances_filled: 0,
                instances_repaired_above_max: 0,
                violations: Violations::default(),
                above_max_during_partition: 0,
                above_max_after_heal: 0,
                above_max_secs_after_heal: 0,
                max_added_per_window: 0,
                max_removed_per_window: 0,
                peak_instances: 0,
                max_instances: scenario.services.iter().filter_map(|s| s.max).max(),
                longest_below_min_secs: 0,
                claims_won: 0,
                claims_lost: 0,
                claims_refused: 0,
                store_unreachable: 0,
                comm_rounds: 0,
                agent_rounds: 0,
                requests: 0,
                replies: 0,
                max_requests_per_agent_round: 0,
                repairs_withheld: 0,
                starts_withheld: 0,
                swaps: 0,
                instance_series: Vec::new(),
                start_series: Vec::new(),
            },
        }
    }

    fn run(mut self) -> RunReport {
        while self.clock.secs() < self.scenario.duration_secs {
            self.step();
        }
        let mut report = self.report;
        for checker in &self.invariants {
            report.violations.add(&checker.violations);
            report.max_added_per_window = report
                .max_added_per_window
                .max(checker.max_added_per_window);
            report.max_removed_per_window = report
                .max_removed_per_window
                .max(checker.max_removed_per_window);
            report.peak_instances = report.peak_instances.max(checker.peak_instances);
            report.longest_below_min_secs = report
                .longest_below_min_secs
                .max(checker.longest_below_min_secs);
        }
        let stats = self.store.stats();
        report.claims_won = stats.claims_won;
        report.claims_lost = stats.claims_lost;
        report
    }

    fn step(&mut self) {
        let secs = self.clock.secs();
        let now = self.clock.now();
        let timing = self.scenario.timing;
        self.strike(secs);
        self.runtime.advance(secs);
        for service in 0..self.scenario.services.len() {
            self.balanced_running[service] = (0..self.scenario.nodes)
                .map(|node| self.balance[node] * f64::from(self.runtime.running(node, service)))
                .sum();
        }
        if self.scenario.mode.has_agents() {
            self.store.advance(now);
            self.keep_membership();
            if self.clock.is_due(timing.comm_secs, 0) {
                self.communicate();
            }
            self.autonomic();
        } else {
            self.measure(secs);
            if self.clock.is_due(self.controller_period(), 0) {
                self.control();
            }
        }
        self.observe(secs);
        self.clock.advance();
    }

    fn strike(&mut self, secs: u64) {
        // Restarted agents come back as new processes: a fresh planner and view, no lease
        // (they register anew), their containers where they were (adopted).
        for node in 0..self.scenario.nodes {
            if self.agents[node].restart_at.is_some_and(|at| at <= secs) {
                let agent = &mut self.agents[node];
                agent.restart_at = None;
                agent.alive = true;
                agent.planner = PlannerState::new();
                agent.decided_from = None;
                agent.fill_retry = FillRetry::default();
                agent.lease = None;
                agent.revoked_at = None;
                agent.registered_again_at = None;
                self.views.forget(node);
                let services = self.scenario.services.len();
                self.crossing[node * services..(node + 1) * services].fill(None);
            }
        }
        let tick = self.clock.tick_secs();
        let now_in = |at: u64| at <= secs && secs < at + tick;
        let timing = self.scenario.timing;
        for fault in &self.scenario.faults {
            match fault {
                Fault::Crash { at_secs, nodes } if now_in(*at_secs) => {
                    for &node in nodes {
                        self.agents[node].alive = false;
                        self.runtime.crash(node);
                        self.views.forget(node);
                    }
                    let repair_until = secs + timing.lease_ttl_secs + 2 * timing.loop_secs;
                    for checker in &mut self.invariants {
                        checker.crashed(repair_until);
                    }
                }
                Fault::Partition {
                    from_secs,
                    minority,
                    ..
                } if now_in(*from_secs) => {
                    let mut side = vec![false; self.scenario.nodes];
                    for &node in minority {
                        side[node] = true;
                    }
                    self.network.partition(side);
                }
                Fault::Partition { until_secs, .. } if now_in(*until_secs) => {
                    self.network.heal();
                    self.healed_at = Some(secs);
                }
                Fault::Loss {
                    from_secs,
                    probability,
                    ..
                } if now_in(*from_secs) => self.network.set_loss(*probability),
                Fault::Loss { until_secs, .. } if now_in(*until_secs) => self.network.set_loss(0.0),
                Fault::Restart {
                    at_secs,
                    nodes,
                    down_secs,
                    graceful,
                } if now_in(*at_secs) => {
                    for &node in nodes {
                        let agent = &mut self.agents[node];
                        agent.alive = false;
                        agent.restart_at = Some(secs + down_secs.max(&1));
                        if *graceful && let Some(lease) = agent.lease.take() {
                            self.store.revoke(lease);
                        }
                    }
                }
                Fault::StoreStall {
                    at_secs,
                    nodes,
                    stall_secs,
                } if now_in(*at_secs) => {
                    for &node in nodes {
                        self.agents[node].store_stalled_until = secs + stall_secs;
                    }
                }
                Fault::RevokeLeases { at_secs, nodes } if now_in(*at_secs) => {
                    for &node in nodes {
                        if let Some(lease) = self.agents[node].lease {
                            self.store.revoke(lease);
                            self.agents[node].revoked_at = Some(secs);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Leases kept alive (or registered again), discovery published, peers learned.
    fn keep_membership(&mut self) {
        let ttl = self.scenario.timing.lease_ttl_secs;
        for node in 0..self.scenario.nodes {
            if !self.agents[node].alive || !self.reaches_store(node) {
                continue;
            }
            let name = self.book.name(node).to_owned();
            let lease = match self.agents[node].lease {
                Some(lease) if self.store.keep_alive(lease) => lease,
                // The keep-alive that tells it the lease is gone comes at the next tick.
                Some(_) if self.agents[node].revoked_at == Some(self.clock.secs()) => continue,
                previous => {
                    let lease = self.store.register_node(&name, ttl);
                    self.agents[node].lease = Some(lease);
                    if previous.is_some() {
                        self.agents[node].registered_again_at = Some(self.clock.secs());
                    }
                    lease
                }
            };
            for (service, spec) in self.scenario.services.iter().enumerate() {
                // The agent publishes an instance as soon as its container runs, before
                // it serves (gru has no readiness check yet): starting instances count.
                let published =
                    self.runtime.running(node, service) + self.runtime.starting(node, service);
                self.store
                    .publish_instances(&name, &spec.name, published, lease);
            }
        }
        for (service, spec) in self.scenario.services.iter().enumerate() {
            self.discovered[service] = self.store.discovered_instances(&spec.name);
        }
        let nodes: Vec<usize> = self
            .store
            .active_nodes()
            .iter()
            .filter_map(|name| name.strip_prefix('n').and_then(|i| i.parse().ok()))
            .collect();
        if nodes[..] != self.active.nodes[..] {
            if self.scenario.mode == Mode::Gru {
                let keys = self.store.keys().clone();
                let records = self.store.node_records();
                self.peers.resync(&keys, records, self.clock.now());
            }
            let mut known = vec![false; self.scenario.nodes];
            for &node in &nodes {
                known[node] = true;
            }
            self.active = Rc::new(PeerList {
                nodes: Rc::from(nodes),
                known,
            });
        }
        if self.scenario.mode == Mode::Gru {
            self.in_doubt = self.doubtful_nodes();
        }
        for node in 0..self.scenario.nodes {
            if self.reaches_store(node) {
                self.agents[node].peers = Rc::clone(&self.active);
            }
        }
    }

    /// Whether `node` can use the store now: not from a partition's minority, nor while
    /// its store member stalls.
    fn reaches_store(&self, node: usize) -> bool {
        self.network.reaches_store(node)
            && self.agents[node].store_stalled_until <= self.clock.secs()
    }

    /// A TTL and two loops: how long a node that registered again may take to publish
    /// its instances again (the agent's settle grace).
    fn settle_grace(&self) -> Duration {
        let timing = self.scenario.timing;
        Duration::from_secs(timing.lease_ttl_secs + 2 * timing.loop_secs)
    }

    /// The nodes whose records vanished or came back within the settle grace
    /// (`Peers::recent_turnover`; the simulated agents' records are those the store holds
    /// now, so none is missing a watch event, the other half of `Peers::in_doubt`).
    fn doubtful_nodes(&mut self) -> Vec<usize> {
        let grace = self.settle_grace();
        self.peers
            .recent_turnover(self.clock.now(), grace)
            .iter()
            .filter_map(|(name, _)| name.strip_prefix('n').and_then(|i| i.parse().ok()))
            .collect()
    }

    /// Whether a node in doubt answers `agent`'s liveness probe: it runs and the network
    /// lets them talk (a proof of the cluster secret is what a live agent gives).
    fn answering_in_doubt(&self, agent: usize) -> bool {
        self.in_doubt.iter().any(|&node| {
            node != agent && self.agents[node].alive && self.network.can_talk(agent, node)
        })
    }

    /// Whether `agent`'s lease still exists in the store.
    fn own_lease_alive(&self, agent: usize) -> bool {
        self.agents[agent]
            .lease
            .is_some_and(|lease| self.store.lease_alive(lease))
    }

    /// Whether `agent` registered again less than the settle grace ago.
    fn settling(&self, agent: usize) -> bool {
        let secs = self.clock.secs();
        let grace = self.settle_grace().as_secs();
        self.agents[agent]
            .registered_again_at
            .is_some_and(|at| secs < at + grace)
    }

    /// The load `node` sees on `service` now: its instances' share of the demand over
    /// their capacity, clamped to 1.
    fn node_load(&self, node: usize, service: usize) -> f64 {
        let spec = &self.scenario.services[service];
        let running = self.runtime.running(node, service);
        match &spec.demand {
            Demand::Load(load) => *load,
            _ => {
                let demand = spec.demand_rps(self.clock.secs()).unwrap_or(0.0);
                let shares = self.balanced_running[service];
                if running == 0 || shares <= 0.0 {
                    return 0.0;
                }
                (demand * self.balance[node] / shares / spec.capacity_rps).clamp(0.0, 1.0)
            }
        }
    }

    /// Publishes `node`'s report (its instances and load per service) and merges it into
    /// its own view, as the agent does before each round and each plan: when it changed
    /// beyond the dead band (`digest::value_moved`, another instance count) or its
    /// heartbeat is due (`digest::heartbeat`).
    fn refresh_own_report(&mut self, node: usize) {
        let now = self.clock.now();
        let payload: Payload = (0..self.scenario.services.len())
            .map(|service| {
                let instances = self.runtime.running(node, service);
                (instances > 0).then(|| Sample {
                    instances,
                    load: self.node_load(node, service),
                })
            })
            .collect();
        let moved = payload_moved(self.book.latest_payload(node), &payload);
        let heartbeat = digest::heartbeat(
            Duration::from_secs(self.scenario.timing.comm_secs.max(1)),
            self.scenario.nodes,
        );
        let due = self.published[node].is_none_or(|at| now.since(at) >= heartbeat);
        // A node whose view forgot its own report (a restart) publishes again.
        if !moved && !due && self.views.held(node, node) > 0 {
            return;
        }
        let version = self.book.publish(node, payload, now);
        self.published[node] = Some(now);
        self.views.merge(node, node, version, &self.book, now);
    }

    /// Fast detection, as the agent does it: whether `agent`'s own fresh load newly crosses
    /// the scale-out or scale-in threshold of a service (it did not at the last check),
    /// which brings its next plan forward to now.
    fn newly_crossing(&mut self, agent: usize) -> bool {
        let policy = &self.scenario.policy;
        // The simulator's only analytic is the load.
        let own_analytics = [LOAD.to_owned()];
        let mut newly = false;
        for service in 0..self.scenario.services.len() {
            if self.runtime.running(agent, service) == 0 {
                continue;
            }
            let load = self.node_load(agent, service);
            let crossing = mape::crossing(policy, &own_analytics, |name| {
                (name == LOAD).then_some(load)
            });
            let (over, under) = (crossing.scale_out, crossing.scale_in);
            let slot = agent * self.scenario.services.len() + service;
            let before = self.crossing[slot];
            newly |= (over && before != Some(true)) || (under && before != Some(false));
            self.crossing[slot] = if over {
                Some(true)
            } else if under {
                Some(false)
            } else {
                None
            };
        }
        newly
    }

    fn communicate(&mut self) {
        let now = self.clock.now();
        let n = self.scenario.nodes;
        for node in 0..n {
            if self.agents[node].alive {
                self.refresh_own_report(node);
            }
        }
        let alive: Vec<bool> = self.agents.iter().map(|a| a.alive).collect();
        let peers: Vec<Rc<[usize]>> = self
            .agents
            .iter()
            .map(|a| Rc::clone(&a.peers.nodes))
            .collect();
        let counts = communication_round(
            &mut self.views,
            &self.book,
            &alive,
            &peers,
            self.scenario.max_friends,
            self.scenario.message_limit,
            gru_agent::gossip::digest::LEG_ATTEMPTS,
            &mut self.network,
            now,
            gru_agent::mape::Millis(
                now.0
                    .saturating_sub(self.scenario.timing.comm_secs.max(1) * 1_000),
            ),
            &mut self.rng,
            &mut self.scratch,
        );
        self.report.comm_rounds += 1;
        self.report.agent_rounds += counts.agents;
        self.report.requests += counts.requests;
        self.report.replies += counts.replies;
        self.report.max_requests_per_agent_round = self
            .report
            .max_requests_per_agent_round
            .max(counts.max_requests_per_agent);
        let stale = Duration::from_secs(self.scenario.timing.stale_secs).max(digest::stale_after(
            Duration::from_secs(self.scenario.timing.comm_secs.max(1)),
            n,
        ));
        for agent in 0..n {
            if !self.agents[agent].alive {
                continue;
            }
            let peers = Rc::clone(&self.agents[agent].peers);
            let gone = |node: usize| node != agent && !peers.known[node];
            self.views.expire(agent, now, stale, &gone);
        }
    }

    /// What the planner of `agent` is told about each service.
    fn snapshots(&self, agent: usize) -> Vec<ServiceSnapshot> {
        let mode = self.scenario.mode;
        let reaches_store = self.reaches_store(agent);
        self.scenario
            .services
            .iter()
            .enumerate()
            .map(|(service, spec)| {
                let estimate = self.views.estimate(agent, service, &self.book);
                let value = match mode {
                    Mode::GruOriginal => self.views.plain(agent, service, &self.book),
                    _ => estimate.weighted,
                };
                let cluster_instances = if mode == Mode::Gru && reaches_store {
                    self.discovered[service]
                } else {
                    estimate.instances
                };
                let analytic = value.map_or_else(
                    || {
                        AnalyticValue::unavailable(format!(
                            "no report of {} in the view",
                            spec.name
                        ))
                    },
                    AnalyticValue::Available,
                );
                ServiceSnapshot {
                    name: spec.name.clone(),
                    running_here: self.runtime.running(agent, service),
                    pending_here: self.runtime.starting(agent, service),
                    cluster_instances,
                    min_instances: spec.min,
                    max_instances: spec.max,
                    base_service: false,
                    free_slots_here: self.runtime.free_slots(agent),
                    cpu_number: 1,
                    own_analytics: vec![LOAD.to_owned()],
                    cpu_avg: None,
                    mem_avg: None,
                    analytics: [(LOAD.to_owned(), analytic)].into_iter().collect(),
                    cluster_last_scale: LastScale::default(),
                    start_held: None,
                    policy: None,
                }
            })
            .collect()
    }

    /// What `agent` observes of `service` for its claims, from the discovery count, what
    /// runs here and its room (`tick::ServiceObservation::new`, as the agent does; the
    /// simulator has no base services).
    fn observation(&self, agent: usize, service: usize) -> ServiceObservation {
        let spec = &self.scenario.services[service];
        ServiceObservation::new(
            spec.min,
            spec.max,
            self.discovered[service],
            self.runtime.running(agent, service),
            false,
            self.runtime.free_slots(agent),
        )
    }

    fn service_index(&self, name: &str) -> Option<usize> {
        self.scenario.services.iter().position(|s| s.name == name)
    }

    fn autonomic(&mut self) {
        let timing = self.scenario.timing;
        let mode = self.scenario.mode;
        let now = self.clock.now();
        let secs = self.clock.secs();
        let mut pending = Vec::new();
        // Phase A: every agent claims what its wake-up claims (`tick::Wake`): one whose
        // loop is due (or brought forward by a crossing) repairs, fills and plans; every
        // other one fills a standing target (its ledger watch wakes it, so it does not wait
        // for its loop). The first want's ledger is read now, as the agent reads it before
        // it claims.
        for agent in 0..self.scenario.nodes {
            if !self.agents[agent].alive {
                continue;
            }
            let crossing = mode == Mode::Gru && self.newly_crossing(agent);
            let due = crossing
                || self
                    .clock
                    .is_due(timing.loop_secs, self.agents[agent].offset_secs);
            let wake = if due { Wake::Loop } else { Wake::Targets };
            let reaches_store = self.reaches_store(agent);
            if mode == Mode::Gru && reaches_store {
                for (service, spec) in self.scenario.services.iter().enumerate() {
                    let observation = self.observation(agent, service);
                    let standing = self.store.read_ledger(&spec.name).target.is_some();
                    // No base services: the floor is MinInstances, unless discovery settles
                    // after a new lease.
                    let floor = tick::floor(spec.min, false, self.settling(agent), true);
                    for want in tick::repairs(&observation, floor, standing) {
                        if wake.claims(want) {
                            pending.push(self.pending(agent, vec![(service, want)], 0));
                        }
                    }
                }
            }
            if !wake.plans() {
                continue;
            }
            // The agent refreshes its own report before it plans.
            self.refresh_own_report(agent);
            let snapshots = self.snapshots(agent);
            let input = PlanInput {
                services: &snapshots,
                policy: &self.scenario.policy,
                strategy: self.scenario.strategy,
                dry_run: false,
                now,
            };
            let planned = tick::plan(&input, &self.agents[agent].planner, &mut self.rng);
            let before = std::mem::replace(&mut self.agents[agent].planner, planned.state);
            self.agents[agent].decided_from = (planned.decision.action != Action::None)
                .then(|| (planned.decision.action.clone(), before));
            let scaling = match &planned.decision.action {
                Action::ScaleOut { service, count } => Some((service, Direction::Out, *count)),
                Action::ScaleIn { service, count } => Some((service, Direction::In, *count)),
                Action::None | Action::Swap { .. } => None,
            };
            match mode {
                Mode::Gru if reaches_store => {
                    let Some(wants) = planned
                        .wants
                        .iter()
                        .map(|(name, want)| Some((self.service_index(name)?, *want)))
                        .collect::<Option<Vec<_>>>()
                    else {
                        continue;
                    };
                    let Some(&(first, _)) = wants.first() else {
                        continue;
                    };
                    let snapshot = &snapshots[first];
                    let rule = &self.scenario.policy.scaleout;
                    let seen = snapshot.cluster_instances + snapshot.pending_here;
                    let growth = growth_limit(seen, rule.step, rule.max_growth_percent);
                    pending.push(self.pending(agent, wants, growth));
                }
                Mode::Gru => {
                    if scaling.is_some() || !planned.wants.is_empty() {
                        self.report.store_unreachable += 1;
                    }
                }
                // The baselines' herd acts on its own count, with no ledger and no swaps.
                _ => {
                    if let Some((name, direction, count)) = scaling
                        && let Some(service) = self.service_index(name)
                    {
                        self.act(agent, service, direction, count, secs);
                    }
                }
            }
        }
        // Phase B: claims in random order, each against the ledger it read.
        pending.shuffle(&mut self.rng);
        let mut lost = Vec::new();
        for claim in pending {
            if let Some(fill) = self.claim(claim, secs) {
                lost.push(fill);
            }
        }
        // A fill that lost its race is retried moments later, as `tick::FillRetry` says (the
        // agent waits `tick::fill_retry_delay`, at most `MAX_FILL_RETRIES` in a row): within
        // this tick, each retry against the ledger and the room as they are now, as if each
        // waited the longest delay.
        for _ in 1..timing.fill_rounds.max(1) {
            if lost.is_empty() {
                break;
            }
            let mut retries: Vec<Pending> = lost
                .drain(..)
                .filter(|&(agent, _)| self.agents[agent].alive && self.reaches_store(agent))
                .map(|(agent, service)| self.pending(agent, vec![(service, Want::Fill)], 0))
                .collect();
            retries.shuffle(&mut self.rng);
            for claim in retries {
                if let Some(fill) = self.claim(claim, secs) {
                    lost.push(fill);
                }
            }
        }
    }

    /// What `agent` wants to carry out (`wants`, by service index, in claim order), with the
    /// first want's ledger and count as it reads them now (the ledger first, as the agent
    /// reads them).
    fn pending(&self, agent: usize, wants: Vec<(usize, Want)>, growth: u32) -> Pending {
        let first = wants.first().map_or(0, |&(service, _)| service);
        Pending {
            agent,
            ledger: self.store.read_ledger(&self.scenario.services[first].name),
            observed: self.observation(agent, first).observed,
            wants,
            growth,
        }
    }

    /// Carries out what `pending` wants through the tick core's ports
    /// (`tick::ports::carry_out`), as the agent does: each want claimed in order, then, once
    /// all were won, the stops and the starts. Returns the agent and service of a fill that
    /// lost its race and may retry.
    fn claim(&mut self, pending: Pending, secs: u64) -> Option<(usize, usize)> {
        let wants = pending
            .wants
            .iter()
            .map(|&(service, want)| (self.scenario.services[service].name.clone(), want))
            .collect();
        let mut ports = SimPorts {
            agent: pending.agent,
            // The first want's ledger and count were read in phase A; a later one's (a
            // swap's second half) is read when its turn comes, as the agent reads it.
            first: Some((pending.ledger, pending.observed)),
            observed: None,
            growth: pending.growth,
            secs,
            lost: None,
            sim: self,
        };
        ready(tick::ports::carry_out(&mut ports, wants));
        ports.lost
    }

    /// This agent's part of a won claim (`tick::Act`), on its node.
    fn apply(&mut self, agent: usize, act: &Act, secs: u64) {
        let Some(service) = self.service_index(&act.service) else {
            return;
        };
        match (act.want, act.effect) {
            (_, Effect::Nothing) => {}
            (Want::Floor { .. }, Effect::Start(count)) => {
                let started = self.runtime.start(agent, service, count, secs);
                self.report.instances_repaired += u64::from(started);
            }
            (Want::Ceiling, Effect::Stop(count)) => {
                let stopped = self.runtime.stop(agent, service, count);
                self.report.instances_repaired_above_max += u64::from(stopped);
            }
            (Want::Step { .. }, Effect::Start(count)) => {
                self.act(agent, service, Direction::Out, count, secs);
            }
            (Want::Step { .. }, Effect::Stop(count)) => {
                self.act(agent, service, Direction::In, count, secs);
            }
            (want, Effect::Start(count)) => {
                let started = self.add(agent, service, count, secs);
                match want {
                    Want::Fill => self.report.instances_filled += u64::from(started),
                    Want::Swap { .. } => self.report.swaps += u64::from(started),
                    _ => {}
                }
            }
            (want, Effect::Stop(count)) => {
                let stopped = self.remove_here(agent, service, count, secs);
                if want == Want::Fill {
                    self.report.instances_filled += u64::from(stopped);
                }
            }
        }
    }

    /// Starts instances for a target-tracking decision or a fill: counted as added, not
    /// as an action (the decision is the action).
    fn add(&mut self, node: usize, service: usize, count: u32, secs: u64) -> u32 {
        let started = self.runtime.start(node, service, count, secs);
        self.report.instances_added += u64::from(started);
        self.invariants[service].scaled_out(secs, started);
        started
    }

    /// Stops instances for a target-tracking decision or a fill.
    fn remove_here(&mut self, node: usize, service: usize, count: u32, secs: u64) -> u32 {
        let stopped = self.runtime.stop(node, service, count);
        self.report.instances_removed += u64::from(stopped);
        self.invariants[service].scaled_in(secs, stopped);
        stopped
    }

    /// Starts or stops instances on `node`, and records the action.
    fn act(&mut self, node: usize, service: usize, direction: Direction, count: u32, secs: u64) {
        match direction {
            Direction::Out => {
                let started = self.runtime.start(node, service, count, secs);
                if started > 0 {
                    self.report.scale_out_actions += 1;
                    self.report.instances_added += u64::from(started);
                    self.invariants[service].scaled_out(secs, started);
                }
            }
            Direction::In => {
                let stopped = self.runtime.stop(node, service, count);
                if stopped > 0 {
                    self.report.scale_in_actions += 1;
                    self.report.instances_removed += u64::from(stopped);
                    self.invariants[service].scaled_in(secs, stopped);
                }
            }
        }
    }

    fn controller_period(&self) -> u64 {
        match self.scenario.mode {
            Mode::Hpa => crate::baseline::HPA_SYNC_SECS,
            _ => self.scenario.timing.loop_secs,
        }
    }

    /// The utilisation a central metrics server reports: the mean load over running
    /// instances.
    fn utilisation(&self, service: usize) -> Option<f64> {
        let (mut sum, mut weight) = (0.0, 0.0);
        for node in 0..self.scenario.nodes {
            let running = self.runtime.running(node, service);
            if running > 0 {
                sum += self.node_load(node, service) * f64::from(running);
                weight += f64::from(running);
            }
        }
        (weight > 0.0).then(|| sum / weight)
    }

    /// What the baselines' metric pipelines record each second: metrics-server's windows
    /// take this second's utilisation of the pods that serve.
    fn measure(&mut self, secs: u64) {
        let utilisation: Vec<Option<f64>> = (0..self.scenario.services.len())
            .map(|service| self.utilisation(service))
            .collect();
        if let Controllers::Hpa(_, windows) = &mut self.controllers {
            for (window, value) in windows.iter_mut().zip(utilisation) {
                window.record(secs, value);
            }
        }
    }

    /// One period of a baseline controller. HPA reads what metrics-server serves and counts
    /// only started pods as ready; Dynamite reads the utilisation of the moment (its
    /// collectors push a value per period).
    fn control(&mut self) {
        let secs = self.clock.secs();
        for service in 0..self.scenario.services.len() {
            let spec = &self.scenario.services[service];
            let (min, max) = (spec.min, spec.max.unwrap_or(u32::MAX));
            let current = self.runtime.total_instances(service);
            let ready = self.runtime.total_running(service);
            let utilisation = self.utilisation(service);
            let desired = match (&mut self.controllers, utilisation) {
                (Controllers::Hpa(hpas, windows), _) => {
                    hpas[service].recommend(secs, current, ready, windows[service].served())
                }
                (Controllers::Dynamite(dynamites), Some(v)) => {
                    current.saturating_add_signed(dynamites[service].decide(secs, v))
                }
                _ => current,
            }
            .clamp(min, max.max(min));
            if desired > current {
                let added = self.place(service, desired - current, secs);
                if let Controllers::Hpa(hpas, _) = &mut self.controllers {
                    hpas[service].scaled_up(secs, added);
                }
                if added > 0 {
                    self.report.scale_out_actions += 1;
                    self.report.instances_added += u64::from(added);
                    self.invariants[service].scaled_out(secs, added);
                }
            } else if desired < current {
                let removed = self.remove(service, current - desired);
                if removed > 0 {
                    self.report.scale_in_actions += 1;
                    self.report.instances_removed += u64::from(removed);
                    self.invariants[service].scaled_in(secs, removed);
                }
            }
        }
    }

    /// Starts `count` instances on the live nodes with the most free slots.
    fn place(&mut self, service: usize, count: u32, secs: u64) -> u32 {
        let mut added = 0;
        while added < count {
            let best = (0..self.scenario.nodes)
                .filter(|&n| self.agents[n].alive && self.runtime.free_slots(n) > 0)
                .max_by_key(|&n| (self.runtime.free_slots(n), std::cmp::Reverse(n)));
            let Some(node) = best else { break };
            added += self.runtime.start(node, service, 1, secs);
        }
        added
    }

    /// Stops `count` running instances on the nodes that run the most.
    fn remove(&mut self, service: usize, count: u32) -> u32 {
        let mut removed = 0;
        while removed < count {
            let busiest = (0..self.scenario.nodes)
                .filter(|&n| self.runtime.running(n, service) > 0)
                .max_by_key(|&n| (self.runtime.running(n, service), std::cmp::Reverse(n)));
            let Some(node) = busiest else { break };
            removed += self.runtime.stop(node, service, 1);
        }
        removed
    }

    fn observe(&mut self, secs: u64) {
        let tick = self.clock.tick_secs();
        let mut violated = false;
        for (service, spec) in self.scenario.services.iter().enumerate() {
            let instances = self.runtime.total_instances(service);
            self.invariants[service].check(secs, instances);
            if spec.max.is_some_and(|max| instances > max) {
                if self.network.is_partitioned() {
                    self.report.above_max_during_partition += 1;
                } else if let Some(healed_at) = self.healed_at {
                    self.report.above_max_after_heal += 1;
                    self.report.above_max_secs_after_heal = secs + tick - healed_at;
                }
            }
            self.report.container_secs += u64::from(instances) * tick;
            self.report.instance_series.push(instances);
            if let Some(demand) = spec.demand_rps(secs) {
                let capacity = f64::from(self.runtime.total_running(service)) * spec.capacity_rps;
                violated |= demand > capacity;
            }
        }
        self.report.start_series.push(self.runtime.starts());
        if violated {
            self.report.slo_violation_secs += tick;
        }
    }
}

/// Runs every scenario on as many threads as the machine has cores (at most 4); the
/// reports come back in the scenarios' order.
pub fn run_all(scenarios: &[Scenario]) -> Vec<RunReport> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(scenario) = scenarios.get(index) else {
                        break;
                    };
                    let report = run(scenario);
                    if let Ok(mut results) = results.lock() {
                        results.push((index, report));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, report)| report).collect()
}

/// Polls a future of the simulator's ports, which are all ready at once.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the simulator's ports never wait"),
    }
}

/// The tick core's ports for one agent's carrying-out in the simulator: the fake store, the
/// fake runtime, and the liveness of the nodes in doubt as the network lets the agent ask.
struct SimPorts<'a, 's, V: Views> {
    sim: &'a mut Simulation<'s, V>,
    agent: usize,
    /// The first claim's ledger and discovery count, read in phase A.
    first: Option<(Ledger, u32)>,
    /// The count the current claim reads with its ledger.
    observed: Option<u32>,
    growth: u32,
    secs: u64,
    /// A fill that lost its race and retries (agent, service).
    lost: Option<(usize, usize)>,
}

impl<V: Views> Ports for SimPorts<'_, '_, V> {
    fn machine(&self, service: &str, want: Want) -> Option<ClaimMachine> {
        self.sim.service_index(service)?;
        let node = self.sim.book.name(self.agent);
        let loop_secs = self.sim.scenario.timing.loop_secs;
        Some(ClaimMachine::new(
            node,
            want,
            &self.sim.scenario.policy,
            loop_secs,
            0,
        ))
    }

    fn lease_alive(&mut self) -> impl Future<Output = bool> + Send {
        std::future::ready(self.sim.own_lease_alive(self.agent))
    }

    fn answering_in_doubt(&mut self, _: &str, _: Want) -> impl Future<Output = bool> + Send {
        std::future::ready(self.sim.answering_in_doubt(self.agent))
    }

    fn read_ledger(
        &mut self,
        service: &str,
    ) -> impl Future<Output = Result<Ledger, String>> + Send {
        let ledger = match self.first.take() {
            Some((ledger, observed)) => {
                self.observed = Some(observed);
                ledger
            }
            None => {
                self.observed = None;
                self.sim.store.read_ledger(service)
            }
        };
        std::future::ready(Ok(ledger))
    }

    fn read_observation(
        &mut self,
        service: &str,
    ) -> impl Future<Output = Result<ServiceObservation, String>> + Send {
        let observation = self.sim.service_index(service).map(|index| {
            let spec = &self.sim.scenario.services[index];
            // Room and instances may have changed since the read (an earlier claim this
            // tick); the count stays the one read.
            ServiceObservation::new(
                spec.min,
                spec.max,
                self.observed.take().unwrap_or(self.sim.discovered[index]),
                self.sim.runtime.running(self.agent, index),
                false,
                self.sim.runtime.free_slots(self.agent),
            )
        });
        std::future::ready(observation.ok_or_else(|| format!("no service {service}")))
    }

    fn write_claim(
        &mut self,
        service: &str,
        _: Want,
        revision: i64,
        claim: &Claim,
        ttls: LedgerTtls,
    ) -> impl Future<Output = Result<bool, String>> + Send {
        std::future::ready(Ok(self
            .sim
            .store
            .claim_step(service, revision, claim, ttls)))
    }

    fn claimed(&mut self, service: &str, want: Want, outcome: &ClaimOutcome) {
        let Some(index) = self.sim.service_index(service) else {
            return;
        };
        let sim = &mut *self.sim;
        let retry = &mut sim.agents[self.agent].fill_retry;
        if retry.on_claimed(want, outcome) && retry.on_lost(&mut sim.fill_delays).is_some() {
            self.lost = Some((self.agent, index));
        }
        match outcome {
            ClaimOutcome::Won { .. } => {
                if let Want::Target { direction, .. } = want {
                    let out = direction == Direction::Out;
                    sim.invariants[index].decided(self.secs, out, self.growth);
                    match direction {
                        Direction::Out => sim.report.scale_out_actions += 1,
                        Direction::In => sim.report.scale_in_actions += 1,
                    }
                }
            }
            ClaimOutcome::Refused(_) => {
                if want.is_decision() {
                    sim.report.claims_refused += 1;
                }
            }
            ClaimOutcome::Withheld => {
                match want {
                    Want::Floor { .. } => sim.report.repairs_withheld += 1,
                    _ => sim.report.starts_withheld += 1,
                }
                if want.is_decision() {
                    let agent = &mut sim.agents[self.agent];
                    if let Some((action, before)) = agent.decided_from.take() {
                        agent.planner.take_back(&action, &before);
                    }
                }
            }
            ClaimOutcome::NoTarget | ClaimOutcome::Lost | ClaimOutcome::StoreError { .. } => {}
        }
    }

    fn act(&mut self, act: &Act) -> impl Future<Output = ()> + Send {
        self.sim.apply(self.agent, act, self.secs);
        std::future::ready(())
    }
}
