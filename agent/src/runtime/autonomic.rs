//! The autonomic loop of one agent: reconcile what runs with what Docker says, keep the
//! node's floor (base services, minimum instances), then monitor → analyze → plan → execute.
//!
//! ```text
//!   every LoopTimeInterval ──► tick ─► reconcile (Docker is the truth: adopt, clean up,
//!   container event ─────────► reconcile          publish discovery records)
//!   command (HTTP) ──────────► start/stop loop, reload, start/stop one instance
//!   config change (etcd) ────► reload (keep the last good configuration)
//! ```
//!
//! Everything that decides is in `crate::mape` (pure); this file gathers its inputs from the
//! knowledge, the engine and etcd, and carries its decisions out on this node only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::config::{ClusterConfig, CpuSet, ServiceDescriptor};
use common::keys::{ClusterKeys, NodeField, leaf_name};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::command::AgentCommand;
use super::config_source;
use super::liveness::Prober;
use super::state::{ActionRecord, InstanceInfo, Shared};
use crate::coordination::{Claim, Direction};
use crate::discovery::DiscoveryRegistry;
use crate::docker::{
    ContainerState, CoreAllocator, Engine, EngineResources, InstancePlan, ManagedContainer,
    new_instance_id, process_env,
};
use crate::mape::{
    Action, CompiledAnalytics, Decision, Millis, PlanInput, PlannerState, ServiceSnapshot, plan,
};
use crate::membership::NodeRecords;
use crate::store::{Store, StoreError, WatchEvent};
use crate::tick::{self, Effect, ServiceObservation, Want};

/// Free slots reported for a service that asks for neither pinned cores nor a memory limit:
/// the node cannot tell how many more fit, so the planner's other guards decide.
const UNBOUNDED_SLOTS: u32 = 64;
/// First pause after a failed start of a service; doubles up to [`START_BACKOFF_MAX`].
const START_BACKOFF_INITIAL: Duration = Duration::from_secs(5);
const START_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Instances started or stopped at once by one action.
const MAX_PARALLEL_CHANGES: usize = 4;
/// The least time between two ticks brought forward by fresh metrics: a burst of samples
/// costs at most one extra tick (and its etcd reads) per this span.
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

/// A start that failed: no new start of that service before `until`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Millis,
    next: Duration,
}

/// The instance id of a sidecar started for `parent`: `<parent>-<service>`, so the link
/// survives an agent restart (it is in the container's labels).
fn attached_instance(parent: &str, service: &str) -> String {
    format!("{parent}-{service}")
}

/// The parent instance of an attached instance id, if it is one.
fn parent_of<'a>(instance: &'a str, service: &str) -> Option<&'a str> {
    instance.strip_suffix(service)?.strip_suffix('-')
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
    rng: StdRng,
    compiled: Option<(i64, CompiledAnalytics)>,
    backoff: BTreeMap<String, Backoff>,
    /// Discovery records this agent wrote: instance → (service, address).
    published: BTreeMap<String, (String, String)>,
    /// Per-container monitor tasks (stats, logs), by container id.
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
    /// Services with a standing target-tracking decision, as the ledger watch tells.
    targets: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Woken by the ledger watch when a target is set, and by a lost fill's retry.
    targets_changed: Arc<Notify>,
    /// Lost fills retried in a row (see [`tick::MAX_FILL_RETRIES`]), and the retry that
    /// waits, if one does.
    fill_retries: u32,
    fill_retry: Option<JoinHandle<()>>,
    /// The services whose newest local values crossed a scale-out or scale-in threshold
    /// at the last check: a service that newly crosses one brings the next tick forward.
    crossing: BTreeSet<String>,
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
}

impl Autonomic {
    pub fn new(parts: AutonomicParts) -> Autonomic {
        let discovery = DiscoveryRegistry::new(
            parts.store.clone(),
            parts.keys.clone(),
            &parts.app_root,
            parts.lease.clone(),
        );
        let prober = Prober::new(parts.shared.secret());
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
            rng: StdRng::seed_from_u64(parts.seed),
            compiled: None,
            backoff: BTreeMap::new(),
            published: BTreeMap::new(),
            followers: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            last_rejection: None,
            lease_changed_at: None,
            node_records: parts.node_records,
            prober,
            targets: Arc::default(),
            targets_changed: Arc::new(Notify::new()),
            fill_retries: 0,
            fill_retry: None,
            crossing: BTreeSet::new(),
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
        let events = self.watch_events(cancel.child_token());
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
                () = self.changed.notified() => self.reconcile().await,
                () = reload.notified() => self.reload().await,
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => break,
                },
            }
        }
        events.abort();
        ledgers.abort();
        if let Some(retry) = self.fill_retry.take() {
            retry.abort();
        }
        for (_, tasks) in std::mem::take(&mut self.followers) {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }

    /// Follows the engine's container events for this cluster; any event of this node wakes
    /// the loop. If the stream cannot be opened the periodic reconcile still notices
    /// changes, one loop interval later.
    fn watch_events(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let engine = self.engine.clone();
        let cluster = self.shared.cluster.clone();
        let node = self.shared.node.clone();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            while !cancel.is_cancelled() {
                match engine.events(&cluster).await {
                    Ok(mut events) => loop {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            event = events.recv() => match event {
                                Some(event) if event.node == node => changed.notify_one(),
                                Some(_) => {}
                                None => break,
                            },
                        }
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot follow container events; retrying")
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        })
    }

    /// Follows the cluster's scaling ledgers: a target-tracking decision (a `target` record)
    /// put by any agent wakes the loop to fill its share; one that expires is forgotten.
    /// After the watch broke, every service is checked once (the ledger read says).
    fn watch_ledgers(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let mut changes = self.store.watch_prefix(&self.keys.scaling_root(), cancel);
        let keys = self.keys.clone();
        let targets = self.targets.clone();
        let changed = self.targets_changed.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(event) = changes.recv().await {
                let mut set = targets.lock().unwrap_or_else(|p| p.into_inner());
                let mut woken = false;
                match event {
                    WatchEvent::Changed(keys_changed) => {
                        for (key, value) in keys_changed {
                            let Some((service, "target")) = keys.parse_scaling_key(&key) else {
                                continue;
                            };
                            if value.is_some() {
                                set.insert(service.to_owned());
                                woken = true;
                            } else {
                                set.remove(service);
                            }
                        }
                    }
                    WatchEvent::Resynced => {
                        if let Some(config) = shared.knowledge().config.clone() {
                            set.extend(config.services.keys().cloned());
                            woken = true;
                        }
                    }
                }
                drop(set);
                if woken {
                    changed.notify_one();
                }
            }
        })
    }

    /// Whether a service's freshest local values newly cross its scale-out or scale-in
    /// threshold (they did not at the last check). Cheap: this node's metric means and the
    /// analytics over them, no I/O.
    fn newly_crossing(&mut self) -> bool {
        let Some(config) = self.config() else {
            return false;
        };
        let Some((_, compiled)) = self.compiled.as_ref() else {
            return false;
        };
        let now = now();
        let mut crossing = BTreeSet::new();
        let mut knowledge = self.shared.knowledge();
        for descriptor in config.services.values() {
            let local = knowledge.local_metrics(&descriptor.name, now);
            if local.is_empty() {
                continue;
            }
            let analytics = compiled.evaluate(descriptor, &local);
            let policy = descriptor
                .policy
                .as_ref()
                .map_or_else(|| config.policy.clone(), |own| own.apply(&config.policy));
            let value = |name: &str| match name {
                "cpu_avg" | "mem_avg" => local.get(name).copied(),
                _ => analytics.get(name).and_then(|v| v.value()),
            };
            let values = |rule: &common::config::PolicyRule| -> Vec<f64> {
                let analytics = if rule.analytics.is_empty() {
                    &descriptor.analytics
                } else {
                    &rule.analytics
                };
                rule.metrics
                    .iter()
                    .chain(analytics)
                    .filter_map(|name| value(name))
                    .collect()
            };
            let (out, r#in) = (&policy.scaleout, &policy.scalein);
            let over = out.enable && values(out).iter().any(|v| *v > out.threshold);
            let under = r#in.enable && values(r#in).iter().any(|v| *v < r#in.threshold);
            if over {
                crossing.insert(format!("{}/out", descriptor.name));
            }
            if under {
                crossing.insert(format!("{}/in", descriptor.name));
            }
        }
        drop(knowledge);
        let newly = crossing.iter().any(|c| !self.crossing.contains(c));
        self.crossing = crossing;
        newly
    }

    /// Reads the configuration from etcd. An invalid set keeps the last good configuration
    /// and is reported once.
    pub async fn reload(&mut self) {
        let snapshot = match config_source::read(&self.store, &self.keys, &self.shared.node).await {
            Ok(snapshot) => snapshot,
            Err(err) => {
                self.shared.telemetry.metrics.etcd_error();
                tracing::warn!(error = %err, "cannot read the configuration; keeping the current one");
                return;
            }
        };
        let mut knowledge = self.shared.knowledge();
        if let Some(constraints) = &snapshot.constraints {
            knowledge.base_services = constraints.base_services.clone();
            self.node_records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .constraints = constraints.clone();
        }
        match snapshot.config {
            Ok(config) => {
                let changed = knowledge.config.as_deref() != Some(&config);
                if changed {
                    self.compiled = Some((snapshot.revision, CompiledAnalytics::compile(&config)));
                    tracing::info!(
                        revision = snapshot.revision,
                        services = config.services.len(),
                        "configuration loaded"
                    );
                    knowledge.config = Some(Arc::new(config));
                }
                knowledge.config_status.revision = snapshot.revision;
                knowledge.config_status.rejected = None;
                self.last_rejection = None;
            }
            Err(reason) => {
                if self.last_rejection.as_deref() != Some(&reason) {
                    tracing::error!(%reason, "invalid configuration in etcd; keeping the last good one");
                    self.last_rejection = Some(reason.clone());
                }
                knowledge.config_status.rejected = Some(reason);
            }
        }
    }

    async fn command(&mut self, command: AgentCommand) {
        tracing::info!(?command, "command received");
        match command {
            AgentCommand::Start => self.set_active(true).await,
            AgentCommand::Stop => self.set_active(false).await,
            AgentCommand::Update => self.reload().await,
            AgentCommand::StartService { service } => {
                if let Some(descriptor) = self
                    .config()
                    .and_then(|c| c.services.get(&service).cloned())
                {
                    self.start_instances(&descriptor, 1, "start-service").await;
                    self.reconcile().await;
                }
            }
            AgentCommand::SetBaseServices { services } => self.set_base_services(services).await,
            AgentCommand::StopService { service } => {
                self.stop_instances(&service, 1, "stop-service").await;
                self.reconcile().await;
            }
        }
    }

    /// Starts or stops the loop's actions and publishes the node's `active` record.
    pub async fn set_active(&mut self, active: bool) {
        self.shared.knowledge().active = active;
        self.node_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active = active;
        let key = self.keys.node(&self.shared.node, NodeField::Active);
        let lease = *self.lease.borrow();
        if let Err(err) = self.store.put(&key, &active.to_string(), Some(lease)).await {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot publish the node's active flag");
        }
        tracing::info!(
            active,
            "autonomic loop {}",
            if active { "started" } else { "stopped" }
        );
    }

    /// Records this node's base services and publishes them as its constraints record
    /// (under the node's lease, like the rest of its records).
    pub async fn set_base_services(&mut self, services: Vec<String>) {
        let constraints = common::config::NodeConstraints {
            base_services: services.clone(),
        };
        self.shared.knowledge().base_services = services;
        self.node_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .constraints = constraints.clone();
        let key = self.keys.node(&self.shared.node, NodeField::Constraints);
        let lease = *self.lease.borrow();
        let value = serde_json::to_string(&constraints).unwrap_or_else(|_| "{}".to_owned());
        if let Err(err) = self.store.put(&key, &value, Some(lease)).await {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot publish the node's constraints");
        }
        let active = self.shared.knowledge().active;
        if let Some(config) = self.config() {
            self.keep_floor(&config, active).await;
            self.reconcile().await;
        }
    }

    /// One iteration: reconcile, keep the floor, then plan and act.
    async fn tick(&mut self) {
        self.reconcile().await;
        self.shared
            .telemetry
            .observe(&mut self.shared.knowledge(), now());
        let Some(config) = self.config() else {
            return;
        };
        let active = self.shared.knowledge().active;
        self.keep_floor(&config, active).await;
        if !active {
            return;
        }
        let cluster_counts = self.cluster_counts().await;
        let now = now();
        let snapshots = self.snapshots(&config, &cluster_counts, now).await;
        let input = PlanInput {
            services: &snapshots,
            policy: &config.policy,
            strategy: config.agent.autonomic.planner_strategy,
            dry_run: config.agent.autonomic.dry_run,
            now,
        };
        let (decision, next) = plan(&input, &self.planner, &mut self.rng);
        self.planner = next;
        tracing::info!(action = %decision.action, reason = %decision.reason, "decision");
        self.shared.knowledge().record_decision(decision.clone());
        self.shared.telemetry.decided(&decision);
        if decision.is_executable() {
            self.execute(&config, &decision, &snapshots).await;
            self.reconcile().await;
        }
    }

    /// Makes the knowledge match Docker: adopts this node's containers, removes dead ones
    /// and orphaned sidecars, follows the running ones, and publishes discovery records
    /// for exactly the running instances.
    pub async fn reconcile(&mut self) {
        let containers = match self
            .engine
            .list_managed(&self.shared.cluster, Some(&self.shared.node))
            .await
        {
            Ok(containers) => containers,
            Err(err) => {
                self.shared.telemetry.metrics.docker_error();
                tracing::warn!(error = %err, "cannot list containers; keeping the last view");
                return;
            }
        };
        let config = self.config();
        let running_instances: BTreeSet<&str> = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.instance.as_str())
            .collect();
        let mut keep = Vec::new();
        let mut remove = Vec::new();
        for container in &containers {
            let orphan = parent_of(&container.instance, &container.service)
                .is_some_and(|parent| !running_instances.contains(parent));
            match container.state {
                ContainerState::Running if !orphan => keep.push(container.clone()),
                ContainerState::Running
                | ContainerState::Exited
                | ContainerState::Dead
                | ContainerState::Created => remove.push(container.clone()),
                _ => {}
            }
        }
        for container in &remove {
            tracing::info!(id = %container.id, service = %container.service, state = ?container.state, "removing container that is not running");
            let grace = stop_grace(config.as_deref(), &container.service);
            if container.state == ContainerState::Running {
                let _ = self.engine.stop_instance(&container.id, grace).await;
            }
            if let Err(err) = self.engine.remove_instance(&container.id).await {
                self.shared.telemetry.metrics.docker_error();
                tracing::warn!(id = %container.id, error = %err, "cannot remove container");
            }
        }

        let now = now();
        let mut infos = BTreeMap::new();
        for container in &keep {
            let address = self.instance_address(config.as_deref(), container);
            let started_at = Millis(
                container
                    .created_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(now.0),
            );
            infos.insert(
                container.id.clone(),
                InstanceInfo {
                    id: container.id.clone(),
                    service: container.service.clone(),
                    instance: container.instance.clone(),
                    state: "running".into(),
                    address: Some(address),
                    started_at,
                },
            );
        }
        {
            let mut knowledge = self.shared.knowledge();
            let live: BTreeSet<(String, String)> = infos
                .values()
                .map(|i| (i.service.clone(), i.instance.clone()))
                .collect();
            knowledge.metrics.retain_instances(|service, instance| {
                live.contains(&(service.to_owned(), instance.to_owned()))
            });
            for info in infos.values() {
                knowledge
                    .metrics
                    .instance_started(&info.service, &info.instance, info.started_at);
            }
            knowledge.instances = infos.clone();
        }
        self.follow(&infos, config.as_deref());
        self.publish(&infos).await;
    }

    /// `address:port` of an instance for discovery: the host port of the service's
    /// `DiscoveryPort`, else its first published port, else the node's address alone.
    fn instance_address(
        &self,
        config: Option<&ClusterConfig>,
        container: &ManagedContainer,
    ) -> String {
        let discovery_port = config
            .and_then(|c| c.services.get(&container.service))
            .and_then(|s| s.discovery_port);
        let port = discovery_port
            .and_then(|p| container.host_port(p))
            .or_else(|| container.host_ports.values().next().copied());
        match port {
            Some(port) => format!("{}:{port}", self.shared.address),
            None => self.shared.address.clone(),
        }
    }

    /// Starts stats (and, with `EnableLogReading`, log) followers for new running containers
    /// and stops those of containers that are gone.
    fn follow(&mut self, infos: &BTreeMap<String, InstanceInfo>, config: Option<&ClusterConfig>) {
        self.followers.retain(|id, tasks| {
            let alive = infos.contains_key(id) && tasks.iter().any(|t| !t.is_finished());
            if !alive {
                tasks.iter().for_each(JoinHandle::abort);
            }
            alive
        });
        let read_logs = config.is_some_and(|c| c.agent.autonomic.enable_log_reading);
        for (id, info) in infos {
            if self.followers.contains_key(id) {
                continue;
            }
            let mut tasks = vec![super::monitor::follow_stats(
                self.engine.clone(),
                self.shared.clone(),
                info.clone(),
            )];
            if read_logs {
                tasks.push(super::monitor::follow_logs(
                    self.engine.clone(),
                    self.shared.clone(),
                    info.clone(),
                ));
            }
            self.followers.insert(id.clone(), tasks);
        }
    }

    /// Makes this agent's discovery records exactly its running instances.
    async fn publish(&mut self, infos: &BTreeMap<String, InstanceInfo>) {
        let wanted: BTreeMap<String, (String, String)> = infos
            .values()
            .map(|i| {
                (
                    i.instance.clone(),
                    (i.service.clone(), i.address.clone().unwrap_or_default()),
                )
            })
            .collect();
        let stale: Vec<(String, String)> = self
            .published
            .iter()
            .filter(|(instance, record)| wanted.get(*instance) != Some(record))
            .map(|(instance, (service, _))| (instance.clone(), service.clone()))
            .collect();
        for (instance, service) in stale {
            match self.discovery.deregister(&service, &instance).await {
                Ok(()) => {
                    self.published.remove(&instance);
                }
                Err(err) => {
                    self.shared.telemetry.metrics.etcd_error();
                    tracing::warn!(%service, %instance, error = %err, "cannot remove discovery record")
                }
            }
        }
        let lease_changed = self.lease.has_changed().unwrap_or(false);
        if lease_changed {
            // Records written under a lost lease are gone; write them all again.
            self.lease.borrow_and_update();
            self.published.clear();
            self.lease_changed_at = Some(now());
        }
        for (instance, (service, address)) in wanted {
            if self.published.get(&instance) == Some(&(service.clone(), address.clone())) {
                continue;
            }
            match self.discovery.register(&service, &instance, &address).await {
                Ok(()) => {
                    self.published.insert(instance, (service, address));
                }
                Err(err) => {
                    self.shared.telemetry.metrics.etcd_error();
                    tracing::warn!(%service, %instance, error = %err, "cannot publish discovery record")
                }
            }
        }
    }

    /// Running instances of each service in the whole cluster, from the discovery records
    /// (every agent publishes its running instances there).
    async fn cluster_counts(&self) -> BTreeMap<String, u32> {
        self.read_cluster_counts().await.unwrap_or_else(|err| {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot read the cluster's instances; using this node's");
            BTreeMap::new()
        })
    }

    /// Like [`Self::cluster_counts`], but an unreadable count is an error: a claim in the
    /// ledger must not be based on this node's instances alone.
    async fn read_cluster_counts(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        let app_root = self
            .config()
            .map(|c| c.agent.discovery.app_root.clone())
            .unwrap_or_default();
        let root = format!("{}/", self.keys.discovery_root(&app_root));
        let mut counts = BTreeMap::new();
        for entry in self.store.get_prefix(&root).await? {
            let record = entry
                .key
                .strip_prefix(&root)
                .and_then(|r| r.split_once('/'));
            if let Some((service, _)) = record.filter(|(_, i)| leaf_name("", i).is_some()) {
                *counts.entry(service.to_owned()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// The service's running instances in the cluster, read for a claim: after the ledger
    /// (see `crate::coordination`), and never less than this node runs.
    async fn observed_for_claim(&self, service: &str) -> Result<u32, StoreError> {
        let here = self.shared.knowledge().running(service).count() as u32;
        let counts = self.read_cluster_counts().await?;
        Ok(counts.get(service).copied().unwrap_or(0).max(here))
    }

    /// Base services of this node get an instance here whether or not the loop is active
    /// (they are the operator's explicit placement). With the loop active, the repairs and
    /// fills `crate::tick::repairs` calls for are claimed in the cluster's ledger: a start
    /// for a service below its minimum (where there is room), a stop for one above its
    /// maximum (after a healed partition), and this node's share of a standing
    /// target-tracking decision.
    async fn keep_floor(&mut self, config: &ClusterConfig, active: bool) {
        let (base, orphaned) = {
            let knowledge = self.shared.knowledge();
            (
                knowledge.base_services.clone(),
                knowledge.peers.orphaned_base_services.clone(),
            )
        };
        let counts = self.cluster_counts().await;
        let settling = self.discovery_settling(config);
        let targets = self.standing_targets();
        // Asked once, only if a repair needs it.
        let mut answering: Option<Vec<String>> = None;
        for descriptor in config.services.values() {
            let here = self.shared.knowledge().running(&descriptor.name).count() as u32;
            if base.contains(&descriptor.name) && here == 0 {
                self.start_instances(descriptor, 1, "base-service").await;
                continue;
            }
            if !active {
                continue;
            }
            // A lost node's base service must keep one instance somewhere: re-home it.
            let min = if orphaned.contains(&descriptor.name) {
                descriptor.min_instances.max(1)
            } else {
                descriptor.min_instances
            };
            let observed = counts.get(&descriptor.name).copied().unwrap_or(0);
            let observation = self.observation(config, descriptor, observed);
            let floor = if settling { 0 } else { min };
            let standing = targets.contains(&descriptor.name);
            for want in tick::repairs(&observation, floor, standing) {
                if let Want::Floor { .. } = want {
                    let doubtful = !self.own_lease_alive().await
                        || self
                            .withheld(config, &mut answering, "min-instances", &descriptor.name)
                            .await;
                    if doubtful {
                        continue;
                    }
                }
                self.claim_and_act(config, descriptor, want).await;
            }
        }
    }

    /// The services the ledger watch says have a standing target-tracking decision.
    fn standing_targets(&self) -> BTreeSet<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fills the standing targets now (woken by the ledger watch), without waiting for the
    /// next tick: a target-tracking decision larger than its node's room completes within
    /// moments on the nodes that have room.
    async fn fill_targets(&mut self) {
        let Some(config) = self.config() else { return };
        if !self.shared.knowledge().active {
            return;
        }
        self.reconcile().await;
        for service in self.standing_targets() {
            if let Some(descriptor) = config.services.get(&service) {
                self.claim_and_act(&config, descriptor, Want::Fill).await;
            }
        }
    }

    /// Tries the standing targets' fills again shortly (another agent's claim came first),
    /// at most [`tick::MAX_FILL_RETRIES`] times in a row and one retry at a time.
    fn retry_fill(&mut self) {
        if self.fill_retry.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        if self.fill_retries >= tick::MAX_FILL_RETRIES {
            tracing::debug!(
                retries = self.fill_retries,
                "lost every fill retry; the next loop tries again"
            );
            return;
        }
        self.fill_retries += 1;
        let delay = tick::fill_retry_delay(&mut self.rng);
        let wake = self.targets_changed.clone();
        self.fill_retry = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        }));
    }

    /// What this agent observes of a service for its claims, `observed` being the
    /// discovery count it read (corrected up to what runs here).
    fn observation(
        &self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        observed: u32,
    ) -> ServiceObservation {
        let knowledge = self.shared.knowledge();
        let running_here = knowledge
            .running(&descriptor.name)
            .filter(|i| parent_of(&i.instance, &i.service).is_none())
            .count() as u32;
        let base = knowledge.base_services.contains(&descriptor.name);
        drop(knowledge);
        ServiceObservation {
            min: descriptor.min_instances,
            max: descriptor.max_instances,
            observed: observed.max(running_here),
            running_here,
            removable_here: running_here.saturating_sub(u32::from(base)),
            room_here: self.free_slots(config, descriptor),
        }
    }

    /// Whether the discovery records may undercount the cluster's instances, so that a
    /// repair of MinInstances would start instances that still run: this node registered
    /// again less than a TTL and two loops ago, or is registering again now. Leases are
    /// lost together (etcd revokes every lease whose TTL ran out while it was stopped, or a
    /// stale leader revokes them): the other nodes are registering again too.
    fn discovery_settling(&self, config: &ClusterConfig) -> bool {
        let grace = self.settle_grace(config);
        self.lease.has_changed().unwrap_or(false)
            || self
                .lease_changed_at
                .is_some_and(|at| now().since(at) < grace)
    }

    /// How long a node that registered again may take to publish its instances again: a
    /// TTL and two loops.
    fn settle_grace(&self, config: &ClusterConfig) -> Duration {
        Duration::from_secs(config.agent.discovery.ttl_secs) + 2 * self.loop_interval()
    }

    /// The other nodes whose instances the discovery records may be missing although they
    /// run: nodes whose records vanished, or came back, less than a TTL and two loops ago
    /// (or that a read now misses before the watch says so) and that still answer as
    /// themselves (see `super::peers`). Lost nodes do not answer, so their instances are
    /// repaired without delay; a node that answers but stays unregistered is repaired
    /// after the grace. Empty when etcd cannot be read (no claim can be made then anyway).
    async fn answering_in_doubt(&self, config: &ClusterConfig) -> Vec<String> {
        let Ok(records) = self.store.get_prefix(&self.keys.nodes_prefix()).await else {
            return Vec::new();
        };
        let present: BTreeSet<String> = records
            .iter()
            .filter_map(|e| match self.keys.parse_node_key(&e.key) {
                Some((node, NodeField::Config)) => Some(node.to_owned()),
                _ => None,
            })
            .collect();
        let grace = self.settle_grace(config);
        let doubt =
            self.shared
                .knowledge()
                .peers
                .in_doubt(&present, &self.shared.node, now(), grace);
        if doubt.is_empty() {
            return Vec::new();
        }
        let candidates = doubt.into_iter().map(|(n, t)| (n, t.address, t.port));
        self.prober
            .answering(&self.shared.cluster, candidates)
            .await
    }

    /// Whether `action` (a start of `service` that the discovery count calls for) waits
    /// because nodes that etcd says are gone still answer (see
    /// [`Self::answering_in_doubt`]; asked once per `answering`). Recorded when it waits.
    async fn withheld(
        &self,
        config: &ClusterConfig,
        answering: &mut Option<Vec<String>>,
        action: &str,
        service: &str,
    ) -> bool {
        if answering.is_none() {
            *answering = Some(self.answering_in_doubt(config).await);
        }
        let nodes = answering.as_deref().unwrap_or_default();
        if nodes.is_empty() {
            return false;
        }
        let why = format!(
            "withheld: {} lost their etcd records but still answer (etcd lost their leases, they \
             register again); their instances are not counted until they publish them",
            nodes.join(", ")
        );
        tracing::info!(%service, action, nodes = ?nodes, "{why}");
        self.record(action, service, None, why);
        true
    }

    /// Whether this node's lease still exists: when it does not, neither do the records of
    /// this node, nor probably those of the others (see [`Self::discovery_settling`]), and
    /// the membership is about to register again.
    async fn own_lease_alive(&self) -> bool {
        let lease = *self.lease.borrow();
        match self.store.lease_alive(lease).await {
            Ok(alive) => alive,
            Err(err) => {
                tracing::warn!(lease, error = %err, "cannot read this node's lease");
                false
            }
        }
    }

    /// The planner's input per service. Values are the cluster's: this node's own metrics
    /// (and the analytics over them) go into its report, the report into the cluster view,
    /// and the analytics the planner weighs are evaluated over the view's metrics, weighted
    /// by each node's instance count.
    async fn snapshots(
        &mut self,
        config: &ClusterConfig,
        cluster_counts: &BTreeMap<String, u32>,
        now: Millis,
    ) -> Vec<ServiceSnapshot> {
        let free: BTreeMap<String, u32> = config
            .services
            .values()
            .map(|d| (d.name.clone(), self.free_slots(config, d)))
            .collect();
        let mut knowledge = self.shared.knowledge();
        let compiled = self.compiled.as_ref().map(|(_, c)| c);
        let mut local_analytics = BTreeMap::new();
        for descriptor in config.services.values() {
            let local = knowledge.local_metrics(&descriptor.name, now);
            if let Some(compiled) = compiled {
                local_analytics.insert(
                    descriptor.name.clone(),
                    compiled.evaluate(descriptor, &local),
                );
            }
        }
        knowledge.local_analytics = local_analytics;
        knowledge.refresh_own_report(&self.shared.node, now);

        let mut snapshots = Vec::new();
        let mut analytics_by_service = BTreeMap::new();
        for descriptor in config.services.values() {
            let mut snapshot = ServiceSnapshot::with_policy(descriptor, &config.policy);
            let running = knowledge.running(&descriptor.name).count() as u32;
            let metrics = knowledge.view.service(&descriptor.name).metrics;
            snapshot.running_here = running;
            snapshot.cluster_instances = cluster_counts
                .get(&descriptor.name)
                .copied()
                .unwrap_or(0)
                .max(running);
            snapshot.base_service = knowledge.base_services.contains(&descriptor.name);
            snapshot.free_slots_here = free.get(&descriptor.name).copied().unwrap_or(0);
            snapshot.cpu_avg = metrics.get("cpu_avg").copied();
            snapshot.mem_avg = metrics.get("mem_avg").copied();
            if let Some(compiled) = compiled {
                snapshot.analytics = compiled.evaluate(descriptor, &metrics);
            }
            analytics_by_service.insert(descriptor.name.clone(), snapshot.analytics.clone());
            snapshots.push(snapshot);
        }
        knowledge.analytics = analytics_by_service;
        snapshots
    }

    /// How many more instances of `descriptor` fit on this node: pinned cores and memory
    /// limits against what this cluster's containers on this engine already hold.
    fn free_slots(&self, config: &ClusterConfig, descriptor: &ServiceDescriptor) -> u32 {
        let knowledge = self.shared.knowledge();
        let mut slots = UNBOUNDED_SLOTS;
        let cpu_number = descriptor.configuration.cpu_number;
        if let Some(cpu_number) = std::num::NonZeroU32::new(cpu_number) {
            let in_use: Vec<CpuSet> = knowledge
                .instances
                .values()
                .filter_map(|i| config.services.get(&i.service))
                .filter_map(|s| s.configuration.cpuset_cpus.clone())
                .collect();
            let pinned: u32 = knowledge
                .instances
                .values()
                .filter_map(|i| config.services.get(&i.service))
                .filter(|s| s.configuration.cpuset_cpus.is_none())
                .map(|s| s.configuration.cpu_number)
                .sum();
            let free_cores = CoreAllocator::new(self.resources.cpus, in_use.iter())
                .free()
                .len() as u32;
            slots = slots.min(free_cores.saturating_sub(pinned) / cpu_number);
        }
        if let Some(memory) = descriptor
            .configuration
            .memory
            .map(|m| m.bytes())
            .filter(|m| *m > 0)
        {
            let used: u64 = knowledge
                .instances
                .values()
                .filter_map(|i| config.services.get(&i.service))
                .filter_map(|s| s.configuration.memory.map(|m| m.bytes()))
                .sum();
            let free = self.resources.memory_bytes.saturating_sub(used);
            slots = slots.min(u32::try_from(free / memory).unwrap_or(u32::MAX));
        }
        slots
    }

    async fn execute(
        &mut self,
        config: &ClusterConfig,
        decision: &Decision,
        snapshots: &[ServiceSnapshot],
    ) {
        match &decision.action {
            Action::None => {}
            Action::ScaleOut { service, .. } | Action::ScaleIn { service, .. } => {
                let descriptor = config.services.get(service);
                let snapshot = snapshots.iter().find(|s| &s.name == service);
                if let (Some(descriptor), Some(snapshot)) = (descriptor, snapshot)
                    && let Some(want) = tick::want_of(&decision.action, snapshot, &config.policy)
                {
                    self.claim_and_act(config, descriptor, want).await;
                }
            }
            Action::Swap { stop, start } => {
                let (Some(start_descriptor), Some(stop_descriptor)) =
                    (config.services.get(start), config.services.get(stop))
                else {
                    return;
                };
                let out = Want::Swap {
                    direction: Direction::Out,
                };
                let r#in = Want::Swap {
                    direction: Direction::In,
                };
                if self
                    .claim_want(config, start_descriptor, out, "swap")
                    .await
                    .is_none()
                    || self
                        .claim_want(config, stop_descriptor, r#in, "swap")
                        .await
                        .is_none()
                {
                    return;
                }
                self.stop_instances(stop, 1, "swap").await;
                self.reconcile().await;
                self.start_instances(start_descriptor, 1, "swap").await;
            }
        }
    }

    /// Claims `want` for a service and, if the claim is won, does this node's part of it.
    async fn claim_and_act(
        &mut self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        want: Want,
    ) {
        let why = want.label();
        let Some(claim) = self.claim_want(config, descriptor, want, why).await else {
            return;
        };
        if let Some(target) = &claim.target {
            self.record(
                why,
                &descriptor.name,
                None,
                format!(
                    "claimed: {} instances in the cluster, {} of them here; agents with room \
                     fill the rest",
                    target.desired, claim.count
                ),
            );
        }
        match tick::effect(&claim) {
            Effect::Start(count) => self.start_instances(descriptor, count, why).await,
            Effect::Stop(count) => self.stop_instances(&descriptor.name, count, why).await,
            Effect::Nothing => {}
        }
    }

    /// Claims `want` for a service in the cluster's ledger (see `crate::tick`): reads the
    /// ledger, then the count, lets the tick core decide, and writes the claim in one
    /// compare-revision transaction. The claim when it was won; `None` when the cluster
    /// refuses (cooling down, at a bound, another agent was first, nothing left to repair,
    /// or etcd cannot be reached: exclusive steps need etcd). A decision's refusals are
    /// recorded as actions; a repair with nothing to do is not.
    async fn claim_want(
        &mut self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        want: Want,
        why: &str,
    ) -> Option<Claim> {
        let service = descriptor.name.as_str();
        let decision = want.is_decision();
        let refused = |this: &Self, reason: String| {
            if decision {
                tracing::info!(%service, why, %reason, "step refused");
                this.record(why, service, None, format!("refused: {reason}"));
            }
        };
        let ledger = match self.store.read_ledger(&self.keys, service).await {
            Ok(ledger) => ledger,
            Err(err) => {
                refused(self, format!("cannot read the scaling ledger: {err}"));
                return None;
            }
        };
        if want == Want::Fill && ledger.target.is_none() {
            // The watch's news is stale: the target expired or was never there.
            self.fill_retries = 0;
            self.targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(service);
            return None;
        }
        let observed = match self.observed_for_claim(service).await {
            Ok(observed) => observed,
            Err(err) => {
                refused(self, format!("cannot read the cluster's instances: {err}"));
                return None;
            }
        };
        let observation = self.observation(config, descriptor, observed);
        let policy = descriptor
            .policy
            .as_ref()
            .map_or_else(|| config.policy.clone(), |own| own.apply(&config.policy));
        let claim = match tick::decide(&self.shared.node, want, &observation, &ledger, &policy) {
            Ok(claim) => claim,
            Err(refusal) => {
                if want == Want::Fill {
                    self.fill_retries = 0;
                }
                refused(self, refusal.to_string());
                return None;
            }
        };
        // A count short of nodes that still run could let a start pass MaxInstances (the
        // floor's repair asked already).
        if claim.intent.direction == Direction::Out
            && !matches!(want, Want::Floor { .. })
            && self.withheld(config, &mut None, why, service).await
        {
            return None;
        }
        if !decision {
            tracing::info!(%service, ?ledger, observed, "claiming {}", want.describe());
        }
        let ttls = tick::ttls(
            want,
            claim.intent.direction,
            &policy,
            self.loop_interval().as_secs(),
            descriptor.configuration.stop_timeout_secs,
        );
        match self
            .store
            .claim_step(&self.keys, service, ledger.revision, &claim, ttls)
            .await
        {
            Ok(true) => {
                if want == Want::Fill {
                    self.fill_retries = 0;
                }
                Some(claim)
            }
            Ok(false) => {
                refused(self, "another agent claimed this step first".into());
                if want == Want::Fill {
                    self.retry_fill();
                }
                None
            }
            Err(err) => {
                refused(self, format!("cannot claim the step in etcd: {err}"));
                None
            }
        }
    }

    fn record(&self, action: &str, service: &str, instance: Option<&str>, result: String) {
        self.shared.telemetry.acted(action, service, &result, now());
        self.shared.knowledge().record_action(ActionRecord {
            at: now(),
            action: action.to_owned(),
            service: service.to_owned(),
            instance: instance.map(str::to_owned),
            result,
        });
    }

    /// Starts `count` instances of a service (and their attached sidecars), at most
    /// [`MAX_PARALLEL_CHANGES`] at once. A failure backs the service off.
    pub async fn start_instances(&mut self, descriptor: &ServiceDescriptor, count: u32, why: &str) {
        let now = now();
        if let Some(backoff) = self.backoff.get(&descriptor.name).filter(|b| b.until > now) {
            self.record(
                why,
                &descriptor.name,
                None,
                format!(
                    "skipped: backing off after a failed start for {} s",
                    backoff.until.since(now).as_secs()
                ),
            );
            return;
        }
        let config = self.config();
        let mut set = tokio::task::JoinSet::new();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL_CHANGES));
        for _ in 0..count {
            let instance = new_instance_id();
            let mut services = vec![(descriptor.clone(), instance.clone())];
            for attached in &descriptor.attached {
                if let Some(sidecar) = config.as_ref().and_then(|c| c.services.get(attached)) {
                    services.push((sidecar.clone(), attached_instance(&instance, attached)));
                }
            }
            let engine = self.engine.clone();
            let cluster = self.shared.cluster.clone();
            let node = self.shared.node.clone();
            let bind_ip = self.bind_ip;
            let semaphore = semaphore.clone();
            set.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let mut results = Vec::new();
                for (service, instance) in services {
                    let plan = InstancePlan {
                        service: &service,
                        cluster: &cluster,
                        node: &node,
                        instance: &instance,
                        bind_ip,
                    };
                    let result = engine.start_instance(&plan, &process_env).await;
                    let failed = result.is_err();
                    results.push((
                        service.name.clone(),
                        instance,
                        result.map(|_| ()).map_err(|e| e.to_string()),
                    ));
                    if failed {
                        break;
                    }
                }
                results
            });
        }
        let mut failed = false;
        while let Some(joined) = set.join_next().await {
            for (service, instance, result) in joined.unwrap_or_default() {
                match result {
                    Ok(()) => {
                        tracing::info!(%service, %instance, why, "instance started");
                        self.record(why, &service, Some(&instance), "ok".into());
                    }
                    Err(err) => {
                        failed = true;
                        self.shared.telemetry.metrics.docker_error();
                        tracing::warn!(%service, error = %err, why, "start failed");
                        self.record(why, &service, Some(&instance), format!("failed: {err}"));
                    }
                }
            }
        }
        if failed {
            let next = self
                .backoff
                .get(&descriptor.name)
                .map_or(START_BACKOFF_INITIAL, |b| {
                    (b.next * 2).min(START_BACKOFF_MAX)
                });
            self.backoff.insert(
                descriptor.name.clone(),
                Backoff {
                    until: now.plus(next),
                    next,
                },
            );
        } else {
            self.backoff.remove(&descriptor.name);
        }
    }

    /// Stops `count` running instances of `service` on this node, youngest first, with
    /// their sidecars: the discovery record goes first, so no client is sent to an
    /// instance that is stopping.
    pub async fn stop_instances(&mut self, service: &str, count: u32, why: &str) {
        let config = self.config();
        let mut victims: Vec<InstanceInfo> = self
            .shared
            .knowledge()
            .running(service)
            .filter(|i| parent_of(&i.instance, &i.service).is_none())
            .cloned()
            .collect();
        victims.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        victims.truncate(count as usize);
        for victim in victims {
            let sidecars: Vec<InstanceInfo> = self
                .shared
                .knowledge()
                .instances
                .values()
                .filter(|i| parent_of(&i.instance, &i.service) == Some(victim.instance.as_str()))
                .cloned()
                .collect();
            for target in std::iter::once(&victim).chain(sidecars.iter()) {
                if self.published.remove(&target.instance).is_some() {
                    let _ = self
                        .discovery
                        .deregister(&target.service, &target.instance)
                        .await;
                }
                let grace = stop_grace(config.as_deref(), &target.service);
                let result = match self.engine.stop_instance(&target.id, grace).await {
                    Ok(()) => self.engine.remove_instance(&target.id).await,
                    Err(err) => Err(err),
                };
                match result {
                    Ok(()) => {
                        tracing::info!(service = %target.service, instance = %target.instance, why, "instance stopped");
                        self.record(why, &target.service, Some(&target.instance), "ok".into());
                    }
                    Err(err) => {
                        self.shared.telemetry.metrics.docker_error();
                        tracing::warn!(service = %target.service, error = %err, why, "stop failed");
                        self.record(
                            why,
                            &target.service,
                            Some(&target.instance),
                            format!("failed: {err}"),
                        );
                    }
                }
            }
        }
    }
}

fn stop_grace(config: Option<&ClusterConfig>, service: &str) -> Duration {
    Duration::from_secs(
        config
            .and_then(|c| c.services.get(service))
            .map_or(common::config::service::DEFAULT_STOP_TIMEOUT_SECS, |s| {
                s.configuration.stop_timeout_secs
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_instances_name_their_parent() {
        let id = attached_instance("0123456789abcdef0123456789abcdef", "log-shipper");
        assert_eq!(
            parent_of(&id, "log-shipper"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            parent_of("0123456789abcdef0123456789abcdef", "log-shipper"),
            None
        );
        assert_eq!(parent_of("abc-other", "log-shipper"), None);
    }
}
