//! The agent's shared knowledge: one writer per part (the loop, the monitor tasks, the HTTP
//! API), many cheap readers. A std `Mutex` is right here: every critical section is a few
//! map operations with no `.await` inside, so an async mutex would only add cost.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::auth::{KeyRotation, Keyring, TokenRecord};
use common::config::ClusterConfig;
use serde::Serialize;

use super::peers::Peers;
use crate::gossip::wire::ReplayGuard;
use crate::gossip::{ClusterView, NodeReport, ServiceReport, digest};
use crate::health::InstanceHealth;
use crate::mape::{AnalyticValue, Decision, Millis, ServiceMetrics, WindowSettings};

/// Decisions kept for `why` (every tick's, including "no action").
pub const DECISION_HISTORY_LEN: usize = 256;
/// The newest decisions keep every candidate's weight and explanation (about 1.8 KB each
/// with two services); older ones keep their action, draw and reason. 256 full decisions
/// were a third of the agent's heap, filling over its first 13 minutes (heaptrack, in the
/// chaos soak).
pub const DECISION_WEIGHTS_KEPT: usize = 64;
/// Executed actions kept for `events`.
pub const ACTION_HISTORY_LEN: usize = 256;

/// A node's drain, as its agent keeps it in etcd (`/gru/<cluster>/drains/<node>`, no
/// lease: a restarted agent goes on draining) and shows it (`GET /gru/v1/node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DrainRecord {
    /// When the drain was asked for (the agent's clock).
    pub since: Millis,
    /// No instance is left here: the node may leave (`gru leave`, or SIGTERM).
    pub done: bool,
    /// The node drains itself to be removed (it was idle, `Nodes.IdlePeriod`): once the
    /// drain is done it calls `Nodes.RemoveNodeHook` and leaves. Kept here, not in the
    /// agent's memory, so that an agent restarted mid-drain still does; false for an
    /// operator's drain, and once the hook has failed (the node then stays drained).
    #[serde(default)]
    pub remove: bool,
}

/// One container of this node that gru manages, as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceInfo {
    pub id: String,
    pub service: String,
    pub instance: String,
    pub state: String,
    /// `host:port` published in discovery, when the service exposes a port.
    pub address: Option<String>,
    pub started_at: Millis,
    /// The descriptor version it runs (see `ServiceDescriptor::version`), `None` when its
    /// container carries none (started before gru labelled versions).
    pub version: Option<String>,
    /// The image its container was created with.
    pub image: String,
    /// Whether the instance is (or should be) in discovery: its readiness check passes, or
    /// its service has none. A running instance that is not ready is starting (or failing
    /// its check): it counts, but is not served.
    pub ready: bool,
    /// Its health checks' states, when its service declares any (`crate::health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<InstanceHealth>,
    /// The old instances it replaces, when a rollout step started it: a step that its agent
    /// did not see through (a restart) is finished from these (`tick::rollout::interrupted`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

impl InstanceInfo {
    /// Whether it runs `descriptor` as it is now, whose `version` the caller computed once
    /// (`ServiceDescriptor::version` hashes the descriptor): its version is that one, or (a
    /// container without a version label) its image is the descriptor's.
    pub fn runs(&self, descriptor: &common::config::ServiceDescriptor, version: &str) -> bool {
        match &self.version {
            Some(own) => own == version,
            None => self.image == descriptor.image,
        }
    }
}

/// What the executor did, for the action history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    pub at: Millis,
    pub action: String,
    pub service: String,
    pub instance: Option<String>,
    /// `ok`, `dry-run` or `failed: <why>`.
    pub result: String,
    /// Why it was done, when the action's name does not say it all (a replacement: which
    /// check failed, how often, and its last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A service whose last start on this node failed (a pull refused, an image missing...):
/// no start of it here, and no claim of one, before `until` (`autonomic::execute`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartBackoff {
    pub failed_at: Millis,
    pub until: Millis,
    /// Failed starts in a row.
    pub failures: u32,
    /// The last failure, as the action history says it.
    pub error: String,
}

/// A per-node status line for operators.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// Revision of the configuration in use (etcd's), 0 before any.
    pub revision: i64,
    /// Why the newest configuration in etcd was refused, if it was.
    pub rejected: Option<String>,
}

#[derive(Debug)]
pub struct Knowledge {
    pub config: Option<Arc<ClusterConfig>>,
    pub config_status: ConfigStatus,
    /// Whether the autonomic loop acts (`start agent`) or only watches.
    pub active: bool,
    pub base_services: Vec<String>,
    pub metrics: ServiceMetrics,
    /// Metrics pushed over HTTP for a service as a whole (no instance), by service then name.
    pub pushed: BTreeMap<String, BTreeMap<String, crate::mape::MetricWindow>>,
    pub instances: BTreeMap<String, InstanceInfo>,
    /// Health check states by container id, kept by the probes (`runtime::health`) and
    /// copied into `instances` (`InstanceInfo::ready`, `health`) as they change.
    pub health: BTreeMap<String, InstanceHealth>,
    /// Analytic values over the cluster view (what the planner used), by service.
    pub analytics: BTreeMap<String, BTreeMap<String, AnalyticValue>>,
    /// Analytic values over this node's own metrics (what it reports to friends).
    pub local_analytics: BTreeMap<String, BTreeMap<String, AnalyticValue>>,
    pub decisions: VecDeque<Decision>,
    pub actions: VecDeque<ActionRecord>,
    /// Services backed off after a failed start here, by name; cleared by a start that
    /// succeeds (`/gru/v1/node` shows them).
    pub start_backoffs: BTreeMap<String, StartBackoff>,
    /// What the node has (from the engine at join) and each container's latest use, by
    /// container id (the stats poller keeps only running containers').
    pub capacity: super::usage::NodeCapacity,
    /// This node's drain, when it is drained (`drain node`): it accepts no new instance
    /// and moves its own away.
    pub drain: Option<DrainRecord>,
    pub usage: BTreeMap<String, super::usage::InstanceUsage>,
    /// Every pinned container's cpuset on the engine (any node, any cluster), read by the
    /// reconcile while a service pins cores; `None` otherwise or when the engine did not
    /// answer. Agents sharing an engine share its cores: the planner's room for a pinned
    /// service and the free cores shown count these when known.
    pub engine_cpusets: Option<Vec<common::config::CpuSet>>,
    /// The last 15 minutes of the loop's samples and acting decisions (web console charts).
    pub history: super::history::History,
    /// Other agents of the cluster, from their etcd records (kept current by a watch).
    pub peers: Peers,
    /// What friends told this agent about the cluster.
    pub view: ClusterView,
    /// Version of this node's own report (incremented each time it is rebuilt).
    pub report_version: u64,
    /// When this node last published a version of its report, and how long the report may
    /// go unchanged before it is published again (set by the gossip rounds from the
    /// cluster's size: `gossip::digest::heartbeat`; zero until then: every refresh
    /// publishes).
    pub report_published: Option<Millis>,
    pub report_heartbeat: Duration,
    /// Gossip messages seen recently (replay protection).
    pub gossip_replay: ReplayGuard,
    pub gossip: GossipStats,
    /// When this agent's latest gossip round began; what it heard since the round before
    /// (`gossip_hot_since`) is its hot list, in its digests and its answers.
    pub gossip_round_at: Option<Millis>,
    pub gossip_hot_since: Millis,
    /// Nodes this agent asked a friend for this round (in a push or an answer): it does
    /// not ask the others for them again.
    pub gossip_asked: HashSet<String>,
}

/// Another agent, as its node records describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Peer {
    pub address: String,
    pub port: u16,
    /// What its agent serves: `https` when it was joined with TLS.
    #[serde(skip_serializing_if = "common::config::Scheme::is_http")]
    pub scheme: common::config::Scheme,
    pub active: bool,
    pub base_services: Vec<String>,
}

/// Gossip counters of this agent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GossipStats {
    pub rounds: u64,
    pub sent: u64,
    pub failed: u64,
    /// Legs sent again after a failed attempt (`digest::LEG_ATTEMPTS`).
    pub retried: u64,
    pub received: u64,
    /// Bytes of the gossip bodies this agent sent (requests and answers) and received.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Refused messages by reason (`unauthenticated`, `bad_signature`, `stale`, ...): the
    /// requests this agent received and the answers to its own requests.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Exchanges this agent's side of TLS failed, by reason (`unknown_ca`,
    /// `certificate_not_for_node`, `plain_http_peer`, ...): the friend's certificate was
    /// refused here, or the friend refused this agent's. Absent without failures.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tls_failed: BTreeMap<&'static str, u64>,
}

impl Knowledge {
    pub fn new(window: WindowSettings) -> Knowledge {
        Knowledge {
            config: None,
            config_status: ConfigStatus::default(),
            active: false,
            base_services: Vec::new(),
            metrics: ServiceMetrics::new(window),
            pushed: BTreeMap::new(),
            instances: BTreeMap::new(),
            health: BTreeMap::new(),
            analytics: BTreeMap::new(),
            local_analytics: BTreeMap::new(),
            decisions: VecDeque::new(),
            actions: VecDeque::new(),
            start_backoffs: BTreeMap::new(),
            capacity: Default::default(),
            drain: None,
            usage: BTreeMap::new(),
            engine_cpusets: None,
            history: super::history::History::new(),
            peers: Peers::default(),
            view: ClusterView::new(),
            report_version: 0,
            report_published: None,
            report_heartbeat: Duration::ZERO,
            gossip_replay: ReplayGuard::default(),
            gossip: GossipStats::default(),
            gossip_round_at: None,
            gossip_hot_since: Millis::ZERO,
            gossip_asked: HashSet::new(),
        }
    }

    /// The node's demand for idleness by headroom (see [`super::usage::node_demand`]);
    /// none before a configuration.
    pub fn node_demand(&self) -> Option<crate::tick::headroom::NodeDemand> {
        let config = self.config.as_deref()?;
        Some(super::usage::node_demand(
            self.capacity,
            self.instances.values(),
            &self.usage,
            config,
            &self.base_services,
        ))
    }

    /// The node's use now (see [`super::usage::node_usage`]).
    pub fn node_usage(&self) -> super::usage::NodeUsage {
        let mut usage = super::usage::node_usage(
            self.capacity,
            self.instances.values(),
            &self.usage,
            self.config.as_deref(),
        );
        if let Some(held) = &self.engine_cpusets {
            usage.free_cores = super::usage::free_cores_on_engine(self.capacity.cpus, held);
        }
        usage
    }

    pub fn record_decision(&mut self, decision: Decision) {
        self.history.decided(&decision);
        if self.decisions.len() == DECISION_HISTORY_LEN {
            self.decisions.pop_front();
        }
        self.decisions.push_back(decision);
        if let Some(older) = self
            .decisions
            .len()
            .checked_sub(DECISION_WEIGHTS_KEPT + 1)
            .and_then(|index| self.decisions.get_mut(index))
        {
            older.weights = Vec::new();
        }
    }

    pub fn record_action(&mut self, record: ActionRecord) {
        if self.actions.len() == ACTION_HISTORY_LEN {
            self.actions.pop_front();
        }
        self.actions.push_back(record);
    }

    /// Metric means of `service` on this node at `now`: its warmed-up instances' means,
    /// and values pushed over HTTP for metrics no instance reports.
    pub fn local_metrics(&mut self, service: &str, now: Millis) -> BTreeMap<String, f64> {
        let mut metrics: BTreeMap<String, f64> = self
            .metrics
            .means(service, now)
            .into_iter()
            .map(|(name, mean)| (name, mean.mean))
            .collect();
        if let Some(pushed) = self.pushed.get_mut(service) {
            for (name, window) in pushed.iter_mut() {
                if let Some(mean) = window.mean(now) {
                    metrics.entry(name.clone()).or_insert(mean);
                }
            }
        }
        metrics
    }

    /// Rebuilds this node's report from what it observes now. When it says something the
    /// last published one does not (`gossip::digest::report_changed`: a value beyond the
    /// dead band, another instance count) or the heartbeat is due, it becomes a new
    /// version, merged into the view (which gossip spreads); otherwise the view keeps the
    /// last one. Returns the report the view holds for this node.
    pub fn refresh_own_report(&mut self, node: &str, now: Millis) -> NodeReport {
        let services: Vec<String> = self
            .config
            .as_ref()
            .map(|c| c.services.keys().cloned().collect())
            .unwrap_or_default();
        let mut report = NodeReport {
            node: node.to_owned(),
            version: 0,
            services: BTreeMap::new(),
        };
        for service in services {
            let instances = self.running(&service).count() as u32;
            let metrics = self.local_metrics(&service, now);
            let analytics = self
                .local_analytics
                .get(&service)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|(name, v)| v.value().map(|v| (name.clone(), v)))
                        .collect()
                })
                .unwrap_or_default();
            if instances > 0 || !metrics.is_empty() {
                report.services.insert(
                    service,
                    ServiceReport {
                        instances,
                        metrics,
                        analytics,
                    },
                );
            }
        }
        if let (Some(last), Some(published)) = (self.view.report(node), self.report_published)
            && !digest::report_changed(last, &report)
            && now.since(published) < self.report_heartbeat
        {
            return last.clone();
        }
        self.report_version = digest::next_version(self.report_version, now.0);
        report.version = self.report_version;
        self.report_published = Some(now);
        self.view.merge(report.clone(), now);
        report
    }

    /// Instances of `service` on this node that are running.
    pub fn running(&self, service: &str) -> impl Iterator<Item = &InstanceInfo> {
        self.instances
            .values()
            .filter(move |i| i.service == service && i.state == "running")
    }
}

/// Identity and knowledge of this agent, shared by its tasks.
#[derive(Debug)]
pub struct Shared {
    pub cluster: String,
    pub node: String,
    /// Address other agents and operators use for this node.
    pub address: String,
    /// The cluster key and the rotation under way (`common::auth::Keyring`), kept current
    /// by the daemon's etcd watch. Never logged.
    keyring: Mutex<Keyring>,
    /// The operator tokens' records by name, kept current by the daemon's etcd watch.
    tokens: Mutex<BTreeMap<String, TokenRecord>>,
    /// Refuse the deprecated bearer secret (`gru join --signed-only`).
    signed_only: std::sync::atomic::AtomicBool,
    knowledge: Mutex<Knowledge>,
    /// Counters for `/metrics` and the InfluxDB sink; never blocks its callers.
    pub telemetry: crate::telemetry::Telemetry,
    /// Woken when a metric sample arrives (stats, a `gru:` log line, a push), so that the
    /// loop can act on a threshold crossed now instead of at its next tick.
    pub fresh_metrics: tokio::sync::Notify,
    /// Cancelled when a drained node is told to leave (`leave node`): the daemon then
    /// shuts down as on SIGTERM (its lease revoked).
    pub leave: tokio_util::sync::CancellationToken,
    /// Cancelled by `restart agent`: the daemon stops, keeping its lease for its successor
    /// (see `crate::kept_lease`) and the process executes itself again.
    pub restart: tokio_util::sync::CancellationToken,
    /// When this agent process started (shown in the node view).
    pub agent_started_at: Millis,
    /// The agent's TLS (`gru join --tls-cert`), set once at start; unset = plain HTTP.
    tls: std::sync::OnceLock<Arc<crate::tls::AgentTls>>,
    /// TLS handshakes this agent's server refused, by reason.
    pub tls_refusals: crate::tls::TlsRefusals,
}

impl Shared {
    pub fn new(
        cluster: &str,
        node: &str,
        address: &str,
        secret: &str,
        window: WindowSettings,
    ) -> Shared {
        Shared {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            address: address.to_owned(),
            keyring: Mutex::new(Keyring::new(secret)),
            tokens: Mutex::new(BTreeMap::new()),
            signed_only: std::sync::atomic::AtomicBool::new(false),
            knowledge: Mutex::new(Knowledge::new(window)),
            telemetry: crate::telemetry::Telemetry::new(),
            fresh_metrics: tokio::sync::Notify::new(),
            leave: tokio_util::sync::CancellationToken::new(),
            restart: tokio_util::sync::CancellationToken::new(),
            agent_started_at: crate::runtime::autonomic::now(),
            tls: std::sync::OnceLock::new(),
            tls_refusals: crate::tls::TlsRefusals::default(),
        }
    }

    /// Turns TLS on for this agent (once, at start; a second call is ignored).
    pub fn set_tls(&self, tls: Arc<crate::tls::AgentTls>) {
        let _ = self.tls.set(tls);
    }

    /// The agent's TLS, when it was joined with it.
    pub fn tls(&self) -> Option<&Arc<crate::tls::AgentTls>> {
        self.tls.get()
    }

    /// The scheme this agent serves and publishes.
    pub fn scheme(&self) -> common::config::Scheme {
        match self.tls() {
            Some(_) => common::config::Scheme::Https,
            None => common::config::Scheme::Http,
        }
    }

    /// A client for other agents: over TLS with this agent's node certificate when TLS is
    /// on (plain-http peers refused), plain HTTP otherwise.
    pub fn peer_client(&self, connect_timeout: std::time::Duration) -> crate::tls::PeerClient {
        crate::tls::PeerClient::new(
            self.tls().map(|tls| Arc::clone(&tls.client)),
            connect_timeout,
        )
    }

    /// Locks the knowledge. A panic while holding the lock leaves data that is still
    /// consistent map by map, so a poisoned lock is taken over rather than propagated.
    pub fn knowledge(&self) -> MutexGuard<'_, Knowledge> {
        self.knowledge
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn keyring(&self) -> MutexGuard<'_, Keyring> {
        self.keyring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, BTreeMap<String, TokenRecord>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster key to sign with at `now` (gossip, liveness proofs, hooks, relayed
    /// commands): the previous key until a rotation's switch, then the new one. Never log it.
    pub fn signing_key(&self, now: Millis) -> String {
        self.keyring().signing_key(now.0).to_owned()
    }

    /// The cluster keys a signature may be made with at `now` (two during a rotation's
    /// overlap, see `common::auth::Keyring::accepted_keys`).
    pub fn accepted_keys(&self, now: Millis) -> Vec<String> {
        let keyring = self.keyring();
        keyring
            .accepted_keys(now.0)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// A new current cluster key (`/gru/<cluster>/secret` changed).
    pub fn set_cluster_key(&self, key: &str) {
        if !key.is_empty() {
            self.keyring().current = key.to_owned();
        }
    }

    /// The rotation under way (`/gru/<cluster>/key-rotation`), or none.
    pub fn set_key_rotation(&self, rotation: Option<KeyRotation>) {
        self.keyring().rotation = rotation;
    }

    /// A token's record changed (`None`: revoked).
    pub fn set_token(&self, name: &str, record: Option<TokenRecord>) {
        let mut tokens = self.tokens();
        match record {
            Some(record) => tokens.insert(name.to_owned(), record),
            None => tokens.remove(name),
        };
    }

    /// Every token's record, as read again after the watch was down.
    pub fn replace_tokens(&self, records: BTreeMap<String, TokenRecord>) {
        *self.tokens() = records;
    }

    /// Whether only signed state-changing requests are accepted (no bearer secret).
    pub fn signed_only(&self) -> bool {
        self.signed_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_signed_only(&self, signed_only: bool) {
        self.signed_only
            .store(signed_only, std::sync::atomic::Ordering::Relaxed);
    }

    /// The record of the token named `name`, if it exists (expired or not).
    pub fn token(&self, name: &str) -> Option<TokenRecord> {
        self.tokens().get(name).cloned()
    }

    /// Constant-time comparison of a presented secret with the cluster keys accepted at
    /// `now` (the deprecated `Authorization: Bearer <secret>`).
    pub fn secret_matches(&self, presented: &str, now: Millis) -> bool {
        self.accepted_keys(now)
            .iter()
            .any(|key| same_bytes(key.as_bytes(), presented.as_bytes()))
    }
}

/// Constant-time equality of two non-empty byte strings.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shared() -> Shared {
        Shared::new(
            "c",
            "n1",
            "127.0.0.1",
            "s3cret",
            WindowSettings::for_loop_interval(Duration::from_secs(5)),
        )
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let s = shared();
        assert!(s.secret_matches("s3cret", Millis(0)));
        for wrong in ["", "s3cre", "s3cret ", "S3CRET", "s3creu"] {
            assert!(!s.secret_matches(wrong, Millis(0)), "{wrong:?} matched");
        }
        // During a rotation's overlap the previous key matches too, then only the new.
        s.set_cluster_key("n3w");
        s.set_key_rotation(Some(KeyRotation::starting(
            "s3cret",
            0,
            Duration::from_secs(60),
        )));
        assert!(s.secret_matches("s3cret", Millis(59_999)));
        assert!(s.secret_matches("n3w", Millis(59_999)));
        assert!(!s.secret_matches("s3cret", Millis(60_000)));
        assert_eq!(s.signing_key(Millis(0)), "s3cret");
        assert_eq!(s.signing_key(Millis(60_000)), "n3w");
    }

    #[test]
    fn histories_are_bounded() {
        let s = shared();
        let mut k = s.knowledge();
        for i in 0..(ACTION_HISTORY_LEN + 10) {
            k.record_action(ActionRecord {
                at: Millis(i as u64),
                action: "scale-out".into(),
                service: "web".into(),
                instance: None,
                result: "ok".into(),
                reason: None,
            });
        }
        assert_eq!(k.actions.len(), ACTION_HISTORY_LEN);
        assert_eq!(k.actions.front().map(|a| a.at), Some(Millis(10)));
    }

    #[test]
    fn old_decisions_keep_their_reason_and_only_the_newest_their_weights() {
        use crate::mape::{Action, CandidateWeight};
        let s = shared();
        let mut k = s.knowledge();
        for i in 0..(DECISION_HISTORY_LEN + 10) {
            k.record_decision(Decision {
                action: Action::None,
                weights: vec![CandidateWeight {
                    action: Action::None,
                    weight: 1.0,
                    explanation: Default::default(),
                    blocked_by: Default::default(),
                    clamped: None,
                }],
                draw: None,
                reason: format!("tick {i}"),
                dry_run: false,
                at: Millis(i as u64),
            });
        }
        assert_eq!(k.decisions.len(), DECISION_HISTORY_LEN);
        assert_eq!(k.decisions.front().map(|d| d.at), Some(Millis(10)));
        assert!(
            k.decisions
                .iter()
                .all(|d| d.reason == format!("tick {}", d.at.0))
        );
        let weighed = k.decisions.iter().filter(|d| !d.weights.is_empty()).count();
        assert_eq!(weighed, DECISION_WEIGHTS_KEPT);
        assert!(
            k.decisions
                .iter()
                .rev()
                .take(DECISION_WEIGHTS_KEPT)
                .all(|d| d.weights.len() == 1)
        );
    }
}
