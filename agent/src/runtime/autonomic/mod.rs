//! The autonomic loop of one agent: reconcile what runs with what Docker says, keep the
//! node's floor (base services, minimum instances), then monitor → analyze → plan → execute.
//!
//! ```text
//!   every LoopTimeInterval ──► tick: reconcile → keep the floor → a rollout step
//!                                    → snapshots → plan → claim → execute → reconcile
//!   fresh metrics ───────────► the next tick brought forward, if a threshold is newly crossed
//!   target in the ledger ────► fill the standing targets (also a lost fill's retry)
//!   container event ─────────► reconcile (Docker is the truth: adopt, clean up,
//!                                         publish discovery records)
//!   health check changed ────► move the instance's record in or out of discovery;
//!                              replace an instance whose liveness check fails
//!   command (HTTP) ──────────► start/stop loop, reload, start/stop one instance
//!   config change (etcd) ────► reload (keep the last good configuration)
//! ```
//!
//! Everything that decides is in `crate::mape` and `crate::tick` (pure); this module gathers
//! their inputs from the knowledge, the engine and etcd, and carries the decisions out on
//! this node only. One file per part, each opening with its invariants:
//!
//! * here: the [`Autonomic`] type, `run` (what wakes the loop and what each wake-up does)
//!   and `tick` (one iteration, composing the parts below);
//! * `wake`: the wake-ups besides the period: container events, the ledger watch, fresh
//!   metrics that newly cross a threshold (fast detection);
//! * `commands`: operators' commands and the configuration reload;
//! * `reconcile`: Docker is the truth: adopt, clean up, follow, publish discovery records;
//! * `analyze`: what the planner and the claims read: counts, observations, snapshots, room;
//! * `plan`: the planner over the snapshots, and what its decision leads to;
//! * `repairs`: the claims no decision makes: base services, MinInstances and MaxInstances
//!   repairs, target fills and their retry;
//! * `claims`: the daemon's side of the core's ports (`tick::ports`): each claim in the
//!   scaling ledger, and what won claims do on this node;
//! * `withheld`: when a start waits because discovery may undercount the cluster;
//! * `rollout`: rolling updates, one claimed step at a time (`crate::tick::rollout` decides);
//! * `execute`: starting and stopping instances with their sidecars, backoff, action records.
//! * `execute`: starting and stopping instances with their sidecars, backoff, action records;
//! * `health`: what a change of an instance's health does: its record moves, or (liveness
//!   failing) it is replaced.
//!
//! Invariants of the whole loop:
//!
//! * The loop is one task: reconcile, floor, fills, plan and execute never run concurrently,
//!   so a start in flight is never mistaken for a leftover. The watches, the metric
//!   notifications and a fill's retry only wake it.
//! * Nothing blocks the loop forever: every Docker call has a deadline (the engine's
//!   timeout, a stop's plus its grace), every etcd request one (`crate::store`), a liveness
//!   probe 500 ms.
//! * When it stops, its watches, the fill retry and the followers stop; containers keep
//!   running.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::config::ClusterConfig;
use common::keys::ClusterKeys;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::command::AgentCommand;
use super::health::HealthProbes;
use super::liveness::Prober;
use super::monitor;
use super::state::Shared;
use crate::discovery::DiscoveryRegistry;
use crate::docker::{Engine, EngineResources};
use crate::mape::{CompiledAnalytics, Millis, PlannerState};
use crate::membership::NodeRecords;
use crate::store::Store;

use execute::Backoff;

mod analyze;
mod claims;
mod commands;
pub use commands::drained_refusal;
pub use drain::not_drained;
mod drain;
mod execute;
mod health;
mod nodes;
mod plan;
mod pulls;
mod reconcile;
mod repairs;
mod rollout;
mod wake;
mod withheld;

/// The least time between two ticks brought forward by fresh metrics: a burst of samples
/// costs at most one extra tick per this span (and its etcd reads, if the discovery mirror
/// is not ready then).
const EARLY_TICK_MIN_GAP: Duration = Duration::from_millis(250);

/// The wall clock as the pure core sees it.
pub fn now() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// The agent's loop and everything it needs to act.
#[derive(Debug)]
pub struct Autonomic {
    shared: Arc<Shared>,
    store: Store,
    keys: ClusterKeys,
    engine: Engine,
    discovery: DiscoveryRegistry,
    resources: EngineResources,
    bind_ip: IpAddr,
    lease: tokio::sync::watch::Receiver<i64>,
    planner: PlannerState,
    /// The last decision to act and the planner's state it was made from, until the next
    /// decision: a step it leads to that is withheld is taken back (`take_back_decision`).
    decided_from: Option<(crate::mape::Action, PlannerState)>,
    rng: StdRng,
    compiled: Option<(i64, CompiledAnalytics)>,
    backoff: BTreeMap<String, Backoff>,
    /// Images being pulled beside the loop (`pulls.rs`).
    pulls: pulls::Pulls,
    /// Records this agent wrote: instance → its service, address and readiness.
    published: BTreeMap<String, crate::tick::local::Record>,
    /// The instances' health checks, probed by tasks of their own (`super::health`).
    probes: HealthProbes,
    /// Woken by the probes when an instance's health changes state: its record moves at
    /// once (in or out of discovery), or it is replaced.
    health_changed: Arc<Notify>,
    /// Containers failing their liveness check for which a replacement was started: not
    /// started again if the stop must be tried again.
    replaced: BTreeSet<String>,
    /// Per-container log followers, by container id (stats: one task, `monitor::poll_stats`).
    followers: BTreeMap<String, Vec<JoinHandle<()>>>,
    /// Woken by container events so that deaths are noticed before the next tick.
    changed: Arc<Notify>,
    last_rejection: Option<String>,
    /// When the loop last found the node registered under a new lease (see
    /// [`Autonomic::discovery_settling`]).
    lease_changed_at: Option<Millis>,
    node_records: Arc<std::sync::Mutex<NodeRecords>>,
    /// Asks nodes that etcd says are gone whether they still run.
    prober: Prober,
    /// Whether to ask them at all (false only under the test switch
    /// `daemon::NO_WITHHOLD_VAR`).
    ask_nodes_in_doubt: bool,
    /// See `daemon::JoinSettings::registry_auth_file`.
    registry_auth_file: Option<std::path::PathBuf>,
    /// Services with a standing target-tracking decision, as the ledger watch tells.
    targets: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// The count each standing scale-out target asks for (saturation under target
    /// tracking: `tick::saturation::unfilled_targets`).
    target_desired: Arc<std::sync::Mutex<BTreeMap<String, u32>>>,
    /// Woken by the ledger watch when a target is set, and by a lost fill's retry.
    targets_changed: Arc<Notify>,
    /// Lost fills retried in a row (`crate::tick::FillRetry`), and the retry that waits, if
    /// one does.
    fill_retries: crate::tick::FillRetry,
    fill_retry: Option<JoinHandle<()>>,
    /// The services whose newest local values crossed a scale-out or scale-in threshold
    /// at the last check: a service that newly crosses one brings the next tick forward.
    crossing: BTreeSet<String>,
    /// The discovery records under the current `AppRoot`, kept by a watch: the tick's
    /// counts in steady state (see `analyze`). Started by `run`, replaced when a reload
    /// changes the root, stopped when the loop ends.
    discovery_records: Option<crate::store::Mirror>,
    /// The rollout step this node has under way, per service (`rollout`).
    steps: BTreeMap<String, crate::tick::rollout::Step>,
    /// No rollout step of a service before then (its `Update.Delay` after the last one).
    step_after: BTreeMap<String, Millis>,
    /// While this node drains: per service, the count its move asked the others to reach
    /// (its replacement is counted once discovery holds that many; `drain`).
    drain_moves: BTreeMap<String, u32>,
    /// The scale-outs the last decision wanted that only this node's room held back
    /// (`plan`), and how long they have been (`nodes`: saturation).
    held_by_room: Vec<(String, u32)>,
    saturation: crate::tick::saturation::Saturation,
    /// The add-node hook's run, while it runs.
    add_node_call: Option<JoinHandle<crate::runtime::hooks::HookRun>>,
    /// Since when this node has had no instance but its base services (`nodes`: idle), and
    /// the remove-node hook's run (whether a drain is an idle removal is in its record).
    idle_since: Option<Millis>,
    /// Why this node counts as idle (only base services, or by headroom), for the record.
    idle_reason: String,
    /// The client that asks the other agents their demand (`Nodes.IdleHeadroom`).
    peer_client: Option<crate::http::PeerClient>,
    remove_node_call: Option<JoinHandle<crate::runtime::hooks::HookRun>>,
    /// The starting records (`/gru/<cluster>/starting/`), kept by a watch: added to the
    /// discovery records in the counts.
    starting_records: Option<crate::store::Mirror>,
}

/// What the loop needs that the daemon set up.
#[derive(Debug)]
pub struct AutonomicParts {
    pub shared: Arc<Shared>,
    pub store: Store,
    pub keys: ClusterKeys,
    pub engine: Engine,
    pub resources: EngineResources,
    pub bind_ip: IpAddr,
    pub lease: tokio::sync::watch::Receiver<i64>,
    pub app_root: String,
    pub seed: u64,
    /// The node's records as the membership re-registers them after a lost lease.
    pub node_records: Arc<std::sync::Mutex<NodeRecords>>,
    /// See `daemon::JoinSettings::ask_nodes_in_doubt`.
    pub ask_nodes_in_doubt: bool,
    /// See `daemon::JoinSettings::registry_auth_file`.
    pub registry_auth_file: Option<std::path::PathBuf>,
}

impl Autonomic {
    pub fn new(parts: AutonomicParts) -> Autonomic {
        let discovery = DiscoveryRegistry::new(
            parts.store.clone(),
            parts.keys.clone(),
            &parts.app_root,
            parts.lease.clone(),
        );
        let prober = Prober::following(parts.shared.clone());
        let health_changed = Arc::new(Notify::new());
        Autonomic {
            shared: parts.shared,
            store: parts.store,
            keys: parts.keys,
            engine: parts.engine,
            discovery,
            resources: parts.resources,
            bind_ip: parts.bind_ip,
            lease: parts.lease,
            planner: PlannerState::new(),
            decided_from: None,
            rng: StdRng::seed_from_u64(parts.seed),
            compiled: None,
            backoff: BTreeMap::new(),
            pulls: pulls::Pulls::default(),
            published: BTreeMap::new(),
            probes: HealthProbes::new(health_changed.clone()),
            health_changed,
            replaced: BTreeSet::new(),
            followers: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            last_rejection: None,
            lease_changed_at: None,
            node_records: parts.node_records,
            prober,
            ask_nodes_in_doubt: parts.ask_nodes_in_doubt,
            registry_auth_file: parts.registry_auth_file,
            targets: Arc::default(),
            target_desired: Arc::default(),
            targets_changed: Arc::new(Notify::new()),
            fill_retries: crate::tick::FillRetry::default(),
            fill_retry: None,
            crossing: BTreeSet::new(),
            discovery_records: None,
            steps: BTreeMap::new(),
            step_after: BTreeMap::new(),
            drain_moves: BTreeMap::new(),
            held_by_room: Vec::new(),
            saturation: Default::default(),
            add_node_call: None,
            idle_since: None,
            idle_reason: String::new(),
            peer_client: None,
            remove_node_call: None,
            starting_records: None,
        }
    }

    fn config(&self) -> Option<Arc<ClusterConfig>> {
        self.shared.knowledge().config.clone()
    }

    fn loop_interval(&self) -> Duration {
        let secs = self
            .config()
            .map(|c| c.agent.autonomic.loop_time_interval_secs)
            .unwrap_or(common::config::DEFAULT_AUTONOMIC_LOOP_SECS);
        Duration::from_secs(secs.max(1))
    }

    /// Runs until `cancel` fires. Containers keep running when it stops.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<AgentCommand>,
        reload: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        self.reload().await;
        self.follow_discovery();
        let events = self.watch_events(cancel.child_token());
        let stats = monitor::poll_stats(self.engine.clone(), self.shared.clone());
        let ledgers = self.watch_ledgers(cancel.child_token());
        self.reconcile().await;
        let shared = self.shared.clone();
        let mut next_tick = tokio::time::Instant::now();
        let mut last_tick = next_tick;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(next_tick) => {
                    let started = tokio::time::Instant::now();
                    self.tick().await;
                    self.shared.telemetry.metrics.loop_finished(started.elapsed());
                    last_tick = tokio::time::Instant::now();
                    next_tick = last_tick + self.loop_interval();
                }
                () = shared.fresh_metrics.notified() => {
                    // Fast detection: a threshold crossed now is acted on now, not a loop
                    // later (at most one early tick per EARLY_TICK_MIN_GAP).
                    if self.newly_crossing() {
                        next_tick = next_tick.min(last_tick + EARLY_TICK_MIN_GAP);
                    }
                }
                () = self.targets_changed.notified() => self.fill_targets().await,
                // A pull beside the loop ended: its room (or backoff) counts now.
                () = self.pulls.ended.notified() => {
                    next_tick = next_tick.min(last_tick + EARLY_TICK_MIN_GAP);
                }
                () = self.changed.notified() => self.reconcile().await,
                () = self.health_changed.notified() => self.on_health_change().await,
                () = reload.notified() => self.reload().await,
                command = commands.recv() => match command {
                    Some(command) => {
                        // A loop just started plans at once, as Gru's `start agent` did,
                        // not a whole LoopTimeInterval later.
                        let starts = command == AgentCommand::Start && !self.shared.knowledge().active;
                        self.command(command).await;
                        if starts {
                            next_tick = tokio::time::Instant::now();
                        }
                    }
                    None => break,
                },
            }
        }
        events.abort();
        stats.abort();
        ledgers.abort();
        self.forget_drain().await;
        if let Some(retry) = self.fill_retry.take() {
            retry.abort();
        }
        for (_, tasks) in std::mem::take(&mut self.followers) {
            tasks.iter().for_each(JoinHandle::abort);
        }
        self.probes.stop_all();
        // Their watches stop with them.
        self.discovery_records = None;
        self.starting_records = None;
    }

    /// One iteration: reconcile, keep the floor, then plan and act.
    async fn tick(&mut self) {
        // A reload may have changed the AppRoot: follow the records under the new one.
        self.follow_discovery();
        self.collect_pulls().await;
        self.reconcile().await;
        self.shared
            .telemetry
            .observe(&mut self.shared.knowledge(), now());
        let Some(config) = self.config() else {
            return;
        };
        self.prefetch(&config).await;
        let active = self.shared.knowledge().active;
        self.keep_floor(&config, active).await;
        // A rollout is the operator's, like the floor: it goes on while the planner rests.
        self.roll(&config).await;
        // So is a drain: its instances move whether or not the planner acts.
        self.drain(&config).await;
        self.watch_idle(&config, active).await;
        if !active {
            return;
        }
        let cluster_counts = self.cluster_counts().await;
        let now = now();
        let snapshots = self.snapshots(&config, &cluster_counts, now).await;
        let wants = self.plan(&config, &snapshots, now);
        self.watch_saturation(&config, &cluster_counts).await;
        if !wants.is_empty() {
            self.execute(&config, wants).await;
            self.reconcile().await;
        }
    }
}
