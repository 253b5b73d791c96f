//! What the read routes answer: owned, serializable views of the knowledge, built under its
//! lock by plain functions and serialized after the lock is released.
//!
//! Every view is keyed by service name (a JSON object, so `jq .services.web` works) and
//! copes with a missing configuration by being empty, never by failing. Services appear in
//! the metric views when they are configured or when something is known about them (metrics
//! of an instance adopted before the configuration arrived, pushes made while none was
//! loaded), so nothing the agent holds is hidden.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::mape::{Action, AnalyticValue, CandidateWeight, Decision, Millis};
use crate::runtime::{ActionRecord, InstanceInfo, Knowledge, Shared};

/// Entries of a history returned when the request does not say.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// Most entries of a history one request may ask for (the histories' own length).
pub const MAX_HISTORY_LIMIT: usize = 256;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub cluster: String,
    pub node: String,
    pub version: &'static str,
    /// Present when the request carried a well-formed `?challenge=`: proof that the
    /// answer comes from an agent holding the cluster secret (see
    /// [`crate::runtime::liveness::proof`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// `?challenge=` of `/healthz`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthQuery {
    pub challenge: Option<String>,
}

impl Health {
    pub fn of(shared: &Shared, challenge: Option<&str>) -> Health {
        let proof = challenge
            .filter(|c| crate::runtime::liveness::challenge_is_valid(c))
            .map(|c| {
                crate::runtime::liveness::proof(
                    &shared.signing_key(crate::runtime::autonomic::now()),
                    c,
                    &shared.cluster,
                    &shared.node,
                )
            });
        Health {
            status: "ok",
            cluster: shared.cluster.clone(),
            node: shared.node.clone(),
            version: env!("CARGO_PKG_VERSION"),
            proof,
        }
    }
}

/// `GET /gru/v1/node`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub cluster: String,
    pub node: String,
    pub address: String,
    /// When this agent process started: it changes with each restart (`restart agent`
    /// waits for that).
    pub agent_started_at: Millis,
    pub active: bool,
    pub base_services: Vec<String>,
    pub config: ConfigView,
    pub instances: InstanceCounts,
    /// Services whose last start here failed (a refused pull, a missing image), by name:
    /// when, why, how many times in a row, and until when this node backs off.
    pub start_failures: BTreeMap<String, StartFailureView>,
    /// CPU and memory in use (its containers' latest readings) and free cores.
    pub usage: crate::runtime::usage::NodeUsage,
    /// Present while the node is drained: since when, and whether no instance is left.
    pub drain: Option<crate::runtime::DrainRecord>,
    /// What its instances use or reserve, and what a drain would move (the other agents
    /// read it for `Nodes.IdleHeadroom`); none before a configuration.
    pub demand: Option<crate::tick::headroom::NodeDemand>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartFailureView {
    pub failed_at: Millis,
    pub failures: u32,
    pub error: String,
    /// No start (nor claim of one) of the service here before this.
    pub backing_off_until: Millis,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    /// Whether a configuration is in use.
    pub loaded: bool,
    /// etcd revision of the configuration in use, 0 before any.
    pub revision: i64,
    /// Why the newest configuration in etcd was refused, if it was.
    pub rejected: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceCounts {
    pub total: usize,
    pub running: usize,
    pub by_service: BTreeMap<String, ServiceCounts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceCounts {
    pub total: usize,
    pub running: usize,
    /// Running instances that are ready (in discovery); the others are starting or fail
    /// their readiness check.
    pub ready: usize,
}

pub fn node(shared: &Shared, knowledge: &Knowledge) -> NodeView {
    let mut counts = InstanceCounts::default();
    for instance in knowledge.instances.values() {
        let running = usize::from(is_running(instance));
        let service = counts
            .by_service
            .entry(instance.service.clone())
            .or_default();
        service.total += 1;
        service.running += running;
        service.ready += usize::from(is_running(instance) && instance.ready);
        counts.total += 1;
        counts.running += running;
    }
    NodeView {
        cluster: shared.cluster.clone(),
        node: shared.node.clone(),
        address: shared.address.clone(),
        agent_started_at: shared.agent_started_at,
        active: knowledge.active,
        base_services: knowledge.base_services.clone(),
        config: ConfigView {
            loaded: knowledge.config.is_some(),
            revision: knowledge.config_status.revision,
            rejected: knowledge.config_status.rejected.clone(),
        },
        instances: counts,
        start_failures: knowledge
            .start_backoffs
            .iter()
            .map(|(service, b)| {
                let view = StartFailureView {
                    failed_at: b.failed_at,
                    failures: b.failures,
                    error: b.error.clone(),
                    backing_off_until: b.until,
                };
                (service.clone(), view)
            })
            .collect(),
        usage: knowledge.node_usage(),
        drain: knowledge.drain.clone(),
        demand: knowledge.node_demand(),
    }
}

/// The state `Knowledge::running` counts.
fn is_running(instance: &InstanceInfo) -> bool {
    instance.state == "running"
}

/// `GET /gru/v1/services`.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesView {
    /// Each configured service with its instances on this node.
    pub services: BTreeMap<String, ServiceView>,
    /// Instances on this node of services the configuration does not name (left over from
    /// an older configuration, or adopted before one was loaded).
    pub unconfigured_instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub min_instances: u32,
    /// `null`: no bound.
    pub max_instances: Option<u32>,
    /// Whether the node keeps at least one instance of it whatever the load.
    pub base_service: bool,
    pub running: usize,
    /// The descriptor's version (`ServiceDescriptor::version`): an instance whose
    /// `version` differs is replaced by a rollout.
    pub version: String,
    /// Running instances that are ready (in discovery).
    pub ready: usize,
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub service: String,
    pub instance: String,
    pub state: String,
    pub address: Option<String>,
    pub started_at: Millis,
    /// The descriptor version its container was made from; `null` for a container
    /// started before gru labelled versions.
    pub version: Option<String>,
    /// Whether it is in discovery (its readiness check passes, or it has none).
    pub ready: bool,
    /// `ready`, `starting` (readiness not passed yet), `not-ready` (readiness failing) or
    /// `unhealthy` (liveness failing: it is being replaced).
    pub condition: &'static str,
    /// Its checks' states, when its service declares checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::InstanceHealth>,
}

impl From<&InstanceInfo> for InstanceView {
    fn from(info: &InstanceInfo) -> InstanceView {
        let condition = match &info.health {
            Some(health) if health.dead() => "unhealthy",
            Some(health) if !info.ready => health.condition(true),
            _ if info.ready => "ready",
            _ => "starting",
        };
        InstanceView {
            id: info.id.clone(),
            service: info.service.clone(),
            instance: info.instance.clone(),
            state: info.state.clone(),
            address: info.address.clone(),
            started_at: info.started_at,
            version: info.version.clone(),
            ready: info.ready,
            condition,
            health: info.health.clone(),
        }
    }
}

pub fn services(knowledge: &Knowledge) -> ServicesView {
    let mut view = ServicesView {
        services: BTreeMap::new(),
        unconfigured_instances: Vec::new(),
    };
    if let Some(config) = &knowledge.config {
        for (name, descriptor) in &config.services {
            view.services.insert(
                name.clone(),
                ServiceView {
                    min_instances: descriptor.min_instances,
                    max_instances: descriptor.max_instances,
                    base_service: knowledge.base_services.contains(name),
                    running: 0,
                    version: descriptor.version(),
                    ready: 0,
                    instances: Vec::new(),
                },
            );
        }
    }
    for info in knowledge.instances.values() {
        match view.services.get_mut(&info.service) {
            Some(service) => {
                service.running += usize::from(is_running(info));
                service.ready += usize::from(is_running(info) && info.ready);
                service.instances.push(info.into());
            }
            None => view.unconfigured_instances.push(info.into()),
        }
    }
    view
}

/// `GET /gru/v1/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// The time the means were read at.
    pub at: Millis,
    pub services: BTreeMap<String, ServiceStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceStats {
    /// Means over this node's warmed-up instances (CPU, memory, log metrics).
    pub metrics: BTreeMap<String, InstanceMetricView>,
    /// Means of the metrics pushed over HTTP for the service as a whole.
    pub pushed: BTreeMap<String, PushedMetricView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InstanceMetricView {
    pub mean: f64,
    /// Warmed-up instances that contributed.
    pub instances: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PushedMetricView {
    pub mean: f64,
    /// Samples in the window.
    pub samples: usize,
}

/// The services the metric views cover: configured ones, then any the knowledge holds
/// something about.
fn known_services(knowledge: &Knowledge) -> BTreeSet<String> {
    let configured = knowledge
        .config
        .iter()
        .flat_map(|config| config.services.keys().cloned());
    configured
        .chain(knowledge.metrics.services().map(str::to_owned))
        .chain(knowledge.pushed.keys().cloned())
        .chain(knowledge.analytics.keys().cloned())
        .chain(knowledge.instances.values().map(|i| i.service.clone()))
        .collect()
}

fn service_stats(knowledge: &mut Knowledge, service: &str, now: Millis) -> ServiceStats {
    let metrics = knowledge
        .metrics
        .means(service, now)
        .into_iter()
        .map(|(name, mean)| {
            let view = InstanceMetricView {
                mean: mean.mean,
                instances: mean.instances,
            };
            (name, view)
        })
        .collect();
    let mut pushed = BTreeMap::new();
    if let Some(windows) = knowledge.pushed.get_mut(service) {
        for (name, window) in windows.iter_mut() {
            if let Some(mean) = window.mean(now) {
                let samples = window.len();
                pushed.insert(name.clone(), PushedMetricView { mean, samples });
            }
        }
    }
    ServiceStats { metrics, pushed }
}

pub fn stats(knowledge: &mut Knowledge, now: Millis) -> StatsView {
    let services = known_services(knowledge)
        .into_iter()
        .map(|service| {
            let stats = service_stats(knowledge, &service, now);
            (service, stats)
        })
        .collect();
    StatsView { at: now, services }
}

/// `GET /gru/v1/stats/services/{name}`: one service's means.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatsView {
    pub at: Millis,
    pub service: String,
    #[serde(flatten)]
    pub stats: ServiceStats,
}

/// One service's means, or `None` for a service this agent knows nothing of.
pub fn service_stats_of(
    knowledge: &mut Knowledge,
    service: &str,
    now: Millis,
) -> Option<ServiceStatsView> {
    if !known_services(knowledge).contains(service) {
        return None;
    }
    Some(ServiceStatsView {
        at: now,
        service: service.to_owned(),
        stats: service_stats(knowledge, service, now),
    })
}

/// `GET /gru/v1/stats/instances` (Gru's route): each instance on this node with the means
/// of its own samples, keyed by container id.
#[derive(Debug, Clone, Serialize)]
pub struct InstancesStatsView {
    pub at: Millis,
    pub instances: BTreeMap<String, InstanceStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceStats {
    pub service: String,
    pub instance: String,
    /// Warmed-up metrics only: a new instance shows none until it has a few samples.
    pub metrics: BTreeMap<String, f64>,
}

pub fn instance_stats(knowledge: &mut Knowledge, now: Millis) -> InstancesStatsView {
    let instances: Vec<InstanceInfo> = knowledge.instances.values().cloned().collect();
    let instances = instances
        .into_iter()
        .map(|info| {
            let metrics = knowledge
                .metrics
                .instance_means(&info.service, &info.instance, now);
            let stats = InstanceStats {
                service: info.service,
                instance: info.instance,
                metrics,
            };
            (info.id, stats)
        })
        .collect();
    InstancesStatsView { at: now, instances }
}

/// `GET /gru/v1/stats/instances/{id}`: one instance, under its container id.
#[derive(Debug, Clone, Serialize)]
pub struct OneInstanceStatsView {
    pub at: Millis,
    pub id: String,
    pub stats: InstanceStats,
}

/// The instance `id` names: a container id, a prefix of one of at least
/// [`MIN_ID_PREFIX`] characters (as `docker ps` shows them), or gru's instance id.
pub fn instance_stats_of(
    knowledge: &mut Knowledge,
    id: &str,
    now: Millis,
) -> Option<(String, InstanceStats)> {
    let all = instance_stats(knowledge, now).instances;
    let mut found = all.into_iter().filter(|(container, stats)| {
        container == id
            || stats.instance == id
            || (id.len() >= MIN_ID_PREFIX && container.starts_with(id))
    });
    let first = found.next()?;
    // An ambiguous prefix names nothing.
    found.next().is_none().then_some(first)
}

/// The shortest container id prefix `stats/instances/{id}` accepts.
pub const MIN_ID_PREFIX: usize = 12;

/// `GET /gru/v1/stats/system` (Gru's route): the node as a whole, each base metric's mean
/// over every warmed-up instance on it, whatever its service.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatsView {
    pub at: Millis,
    /// Instances running on this node.
    pub instances: usize,
    pub metrics: BTreeMap<String, f64>,
}

pub fn system_stats(knowledge: &mut Knowledge, now: Millis) -> SystemStatsView {
    let instances = instance_stats(knowledge, now).instances;
    let metrics = common::config::BASE_METRICS
        .iter()
        .filter_map(|metric| {
            let values: Vec<f64> = instances
                .values()
                .filter_map(|stats| stats.metrics.get(*metric).copied())
                .collect();
            (!values.is_empty()).then(|| {
                (
                    (*metric).to_owned(),
                    values.iter().sum::<f64>() / values.len() as f64,
                )
            })
        })
        .collect();
    SystemStatsView {
        at: now,
        instances: instances.len(),
        metrics,
    }
}

/// `GET /gru/v1/analytics/system` (Gru's route): Gru's system analytics, the node's base
/// metrics as values in [0, 1].
#[derive(Debug, Clone, Serialize)]
pub struct SystemAnalyticsView {
    pub at: Millis,
    pub analytics: BTreeMap<String, f64>,
}

pub fn system_analytics(knowledge: &mut Knowledge, now: Millis) -> SystemAnalyticsView {
    let analytics = system_stats(knowledge, now)
        .metrics
        .into_iter()
        .map(|(name, value)| (name, value.clamp(0.0, 1.0)))
        .collect();
    SystemAnalyticsView { at: now, analytics }
}

/// `GET /gru/v1/analytics/services/{name}`: one service's analytics.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceAnalyticsView {
    pub service: String,
    pub analytics: BTreeMap<String, AnalyticView>,
}

pub fn service_analytics_of(knowledge: &Knowledge, service: &str) -> Option<ServiceAnalyticsView> {
    let values = knowledge.analytics.get(service);
    if values.is_none() && !known_services(knowledge).contains(service) {
        return None;
    }
    Some(ServiceAnalyticsView {
        service: service.to_owned(),
        analytics: analytic_views(values),
    })
}

/// An analytic's value as the API shows it: a number, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnalyticView {
    Value(f64),
    Unavailable { unavailable: String },
}

impl From<&AnalyticValue> for AnalyticView {
    fn from(value: &AnalyticValue) -> AnalyticView {
        match (value.value(), value) {
            (Some(number), _) => AnalyticView::Value(number),
            (None, AnalyticValue::Unavailable { reason }) => AnalyticView::Unavailable {
                unavailable: reason.clone(),
            },
            (None, AnalyticValue::Available(number)) => AnalyticView::Unavailable {
                unavailable: format!("{number} is not a finite number"),
            },
        }
    }
}

fn analytic_views(
    values: Option<&BTreeMap<String, AnalyticValue>>,
) -> BTreeMap<String, AnalyticView> {
    values
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), value.into()))
        .collect()
}

/// `GET /gru/v1/analytics`.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyticsView {
    /// service → analytic → value, as the loop last computed them.
    pub services: BTreeMap<String, BTreeMap<String, AnalyticView>>,
}

pub fn analytics(knowledge: &Knowledge) -> AnalyticsView {
    let services = knowledge
        .analytics
        .iter()
        .map(|(service, values)| (service.clone(), analytic_views(Some(values))))
        .collect();
    AnalyticsView { services }
}

/// `GET /gru/v1/policies`: the candidates of the newest decision.
#[derive(Debug, Clone, Serialize)]
pub struct PoliciesView {
    /// When the newest decision was taken; `null` before the first.
    pub decided_at: Option<Millis>,
    /// What it chose; `null` before the first.
    pub chosen: Option<Action>,
    pub weights: Vec<CandidateWeight>,
}

pub fn policies(knowledge: &Knowledge) -> PoliciesView {
    match knowledge.decisions.back() {
        Some(decision) => PoliciesView {
            decided_at: Some(decision.at),
            chosen: Some(decision.action.clone()),
            weights: decision.weights.clone(),
        },
        None => PoliciesView {
            decided_at: None,
            chosen: None,
            weights: Vec::new(),
        },
    }
}

/// `?limit=N` of the history routes.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct HistoryQuery {
    pub limit: Option<u64>,
}

impl HistoryQuery {
    /// The entries to return: [`DEFAULT_HISTORY_LIMIT`] unless given, at most
    /// [`MAX_HISTORY_LIMIT`].
    pub fn limit(self) -> usize {
        self.limit.map_or(DEFAULT_HISTORY_LIMIT, |limit| {
            usize::try_from(limit).map_or(MAX_HISTORY_LIMIT, |limit| limit.min(MAX_HISTORY_LIMIT))
        })
    }
}

/// `GET /gru/v1/decisions`.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionsView {
    /// Decisions in the history, of which the newest `limit` are returned.
    pub total: usize,
    /// Newest first.
    pub decisions: Vec<Decision>,
}

pub fn decisions(knowledge: &Knowledge, query: HistoryQuery) -> DecisionsView {
    DecisionsView {
        total: knowledge.decisions.len(),
        decisions: knowledge
            .decisions
            .iter()
            .rev()
            .take(query.limit())
            .cloned()
            .collect(),
    }
}

/// `GET /gru/v1/actions`.
#[derive(Debug, Clone, Serialize)]
pub struct ActionsView {
    pub total: usize,
    /// Newest first.
    pub actions: Vec<ActionRecord>,
}

pub fn actions(knowledge: &Knowledge, query: HistoryQuery) -> ActionsView {
    ActionsView {
        total: knowledge.actions.len(),
        actions: knowledge
            .actions
            .iter()
            .rev()
            .take(query.limit())
            .cloned()
            .collect(),
    }
}

/// `GET /gru/v1/shared`: what this node would tell its friends.
#[derive(Debug, Clone, Serialize)]
pub struct SharedView {
    pub cluster: String,
    pub node: String,
    /// When the summary was taken.
    pub at: Millis,
    pub services: BTreeMap<String, SharedService>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SharedService {
    /// Running instances on this node (the weight of this node's means).
    pub instances: usize,
    /// Of those, the ready ones (in discovery).
    pub ready: usize,
    /// Metric means as the analytics read them: instances' means, and pushed metrics for
    /// names no instance reports.
    pub metrics: BTreeMap<String, f64>,
    pub analytics: BTreeMap<String, AnalyticView>,
}

pub fn shared_summary(shared: &Shared, knowledge: &mut Knowledge, now: Millis) -> SharedView {
    let mut services = BTreeMap::new();
    for service in known_services(knowledge) {
        let stats = service_stats(knowledge, &service, now);
        let mut metrics: BTreeMap<String, f64> = stats
            .metrics
            .into_iter()
            .map(|(name, metric)| (name, metric.mean))
            .collect();
        for (name, pushed) in stats.pushed {
            metrics.entry(name).or_insert(pushed.mean);
        }
        let summary = SharedService {
            instances: knowledge.running(&service).count(),
            ready: knowledge.running(&service).filter(|i| i.ready).count(),
            metrics,
            analytics: analytic_views(knowledge.analytics.get(&service)),
        };
        services.insert(service, summary);
    }
    SharedView {
        cluster: shared.cluster.clone(),
        node: shared.node.clone(),
        at: now,
        services,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::mape::WindowSettings;

    fn settings() -> WindowSettings {
        WindowSettings {
            span: Duration::from_secs(10),
            max_samples: 100,
            warmup: Duration::ZERO,
            warmup_samples: 1,
            max_metrics_per_instance: 8,
        }
    }

    fn shared() -> Shared {
        Shared::new("c1", "n1", "10.0.0.1", "s3cret", settings())
    }

    fn instance(service: &str, instance: &str, state: &str) -> InstanceInfo {
        InstanceInfo {
            id: format!("id-{instance}"),
            service: service.to_owned(),
            instance: instance.to_owned(),
            state: state.to_owned(),
            address: Some("10.0.0.1:18080".to_owned()),
            started_at: Millis(5),
            version: None,
            image: String::new(),
            ready: true,
            health: None,
            replaces: Vec::new(),
        }
    }

    fn config(services: &[(&str, u32, Option<u32>)]) -> Arc<common::config::ClusterConfig> {
        let mut config = common::config::ClusterConfig {
            agent: Default::default(),
            policy: Default::default(),
            services: Default::default(),
            analytics: Default::default(),
        };
        for &(name, min, max) in services {
            config.services.insert(
                name.to_owned(),
                common::config::ServiceDescriptor {
                    name: name.to_owned(),
                    min_instances: min,
                    max_instances: max,
                    ..Default::default()
                },
            );
        }
        Arc::new(config)
    }

    fn to_json(view: impl Serialize) -> serde_json::Value {
        serde_json::to_value(view).expect("views serialize")
    }

    #[test]
    fn an_empty_knowledge_gives_empty_views() {
        let shared = shared();
        let mut knowledge = shared.knowledge();
        let now = Millis(1);
        assert_eq!(
            to_json(services(&knowledge)),
            json!({"services": {}, "unconfigured_instances": []})
        );
        assert_eq!(
            to_json(stats(&mut knowledge, now)),
            json!({"at": 1, "services": {}})
        );
        assert_eq!(to_json(analytics(&knowledge)), json!({"services": {}}));
        assert_eq!(
            to_json(policies(&knowledge)),
            json!({"decided_at": null, "chosen": null, "weights": []})
        );
        assert_eq!(
            to_json(decisions(&knowledge, HistoryQuery::default())),
            json!({"total": 0, "decisions": []})
        );
        assert_eq!(
            to_json(shared_summary(&shared, &mut knowledge, now)),
            json!({"cluster": "c1", "node": "n1", "at": 1, "services": {}})
        );
        let node = to_json(node(&shared, &knowledge));
        assert_eq!(
            node["config"],
            json!({"loaded": false, "revision": 0, "rejected": null})
        );
        assert_eq!(
            node["instances"],
            json!({"total": 0, "running": 0, "by_service": {}})
        );
    }

    #[test]
    fn node_counts_instances_by_service_and_state() {
        let shared = shared();
        let mut knowledge = shared.knowledge();
        for (service, name, state) in [
            ("web", "w1", "running"),
            ("web", "w2", "exited"),
            ("web", "w3", "running"),
            ("db", "d1", "running"),
        ] {
            knowledge
                .instances
                .insert(format!("id-{name}"), instance(service, name, state));
        }
        // w3 runs but is not ready yet: counted as running, not as ready.
        if let Some(w3) = knowledge.instances.get_mut("id-w3") {
            w3.ready = false;
        }
        knowledge.config_status.revision = 42;
        knowledge.config_status.rejected = Some("services/x.json: bad".to_owned());
        let view = to_json(node(&shared, &knowledge));
        assert_eq!(
            view["instances"],
            json!({"total": 4, "running": 3, "by_service": {
                "db": {"total": 1, "running": 1, "ready": 1},
                "web": {"total": 3, "running": 2, "ready": 1},
            }})
        );
        assert_eq!(view["config"]["revision"], 42);
        assert_eq!(view["config"]["rejected"], "services/x.json: bad");
    }

    #[test]
    fn services_list_configured_ones_and_set_aside_the_rest() {
        let shared = shared();
        let mut knowledge = shared.knowledge();
        knowledge.config = Some(config(&[("web", 1, Some(4)), ("db", 0, None)]));
        knowledge.base_services = vec!["db".to_owned()];
        knowledge
            .instances
            .insert("a".to_owned(), instance("web", "w1", "running"));
        knowledge
            .instances
            .insert("b".to_owned(), instance("old", "o1", "running"));
        let view = to_json(services(&knowledge));
        assert_eq!(view["services"]["web"]["min_instances"], 1);
        assert_eq!(view["services"]["web"]["max_instances"], 4);
        assert_eq!(view["services"]["web"]["running"], 1);
        assert_eq!(view["services"]["web"]["instances"][0]["instance"], "w1");
        assert_eq!(
            view["services"]["web"]["instances"][0]["address"],
            "10.0.0.1:18080"
        );
        assert_eq!(view["services"]["db"]["max_instances"], json!(null));
        assert_eq!(view["services"]["db"]["base_service"], true);
        assert_eq!(view["unconfigured_instances"][0]["service"], "old");
    }

    #[test]
    fn analytics_show_numbers_or_why_not() {
        let cases = [
            (AnalyticValue::Available(0.25), json!(0.25)),
            (
                AnalyticValue::unavailable("no execution_time"),
                json!({"unavailable": "no execution_time"}),
            ),
            (
                AnalyticValue::Available(f64::NAN),
                json!({"unavailable": "NaN is not a finite number"}),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(to_json(AnalyticView::from(&value)), expected, "{value:?}");
        }
    }

    #[test]
    fn stats_and_summary_agree_on_means_and_instance_metrics_win() {
        let shared = shared();
        let mut knowledge = shared.knowledge();
        knowledge.config = Some(config(&[("web", 0, None)]));
        knowledge
            .instances
            .insert("a".to_owned(), instance("web", "w1", "running"));
        for (metric, value) in [("cpu_avg", 0.5), ("cpu_avg", 0.7)] {
            knowledge
                .metrics
                .record("web", "w1", metric, Millis(1000), value)
                .expect("ok");
        }
        for (metric, value) in [("queue", 4.0), ("cpu_avg", 0.9)] {
            let settings = knowledge.metrics.settings();
            knowledge
                .pushed
                .entry("web".to_owned())
                .or_default()
                .entry(metric.to_owned())
                .or_insert_with(|| {
                    crate::mape::MetricWindow::new(settings.span, settings.max_samples)
                })
                .push(Millis(1000), value)
                .expect("ok");
        }
        let now = Millis(2000);
        let stats = to_json(stats(&mut knowledge, now));
        assert_eq!(
            stats["services"]["web"]["metrics"]["cpu_avg"]["instances"],
            1
        );
        let cpu = stats["services"]["web"]["metrics"]["cpu_avg"]["mean"].as_f64();
        assert!(cpu.is_some_and(|cpu| (cpu - 0.6).abs() < 1e-9), "{cpu:?}");
        assert_eq!(
            stats["services"]["web"]["pushed"]["queue"],
            json!({"mean": 4.0, "samples": 1})
        );

        let summary = to_json(shared_summary(&shared, &mut knowledge, now));
        let web = &summary["services"]["web"];
        assert_eq!(web["instances"], 1);
        assert_eq!(web["metrics"]["queue"], 4.0);
        let cpu = web["metrics"]["cpu_avg"].as_f64();
        assert!(
            cpu.is_some_and(|cpu| (cpu - 0.6).abs() < 1e-9),
            "pushed cpu_avg must not win: {cpu:?}"
        );

        let later = Millis(20_000);
        let stats = to_json(self::stats(&mut knowledge, later));
        assert_eq!(
            stats["services"]["web"],
            json!({"metrics": {}, "pushed": {}}),
            "windows expired"
        );
    }

    #[test]
    fn history_limit_defaults_and_caps() {
        let cases = [
            (None, DEFAULT_HISTORY_LIMIT),
            (Some(0), 0),
            (Some(3), 3),
            (Some(256), 256),
            (Some(257), MAX_HISTORY_LIMIT),
            (Some(u64::MAX), MAX_HISTORY_LIMIT),
        ];
        for (limit, expected) in cases {
            assert_eq!(HistoryQuery { limit }.limit(), expected, "{limit:?}");
        }
    }

    #[test]
    fn histories_are_newest_first_and_policies_show_the_newest_decision() {
        let shared = shared();
        let mut knowledge = shared.knowledge();
        for at in 1..=30 {
            knowledge.record_decision(Decision {
                action: Action::None,
                weights: vec![CandidateWeight {
                    action: Action::ScaleOut {
                        service: "web".to_owned(),
                        count: 1,
                    },
                    weight: f64::from(at as u32) / 100.0,
                    explanation: Default::default(),
                    blocked_by: Default::default(),
                    clamped: None,
                }],
                draw: None,
                reason: format!("tick {at}"),
                dry_run: false,
                at: Millis(at),
            });
            knowledge.record_action(ActionRecord {
                at: Millis(at),
                action: "scale-out".to_owned(),
                service: "web".to_owned(),
                instance: None,
                result: "ok".to_owned(),
                reason: None,
            });
        }
        let view = decisions(&knowledge, HistoryQuery { limit: Some(2) });
        assert_eq!(view.total, 30);
        let times: Vec<Millis> = view.decisions.iter().map(|d| d.at).collect();
        assert_eq!(times, [Millis(30), Millis(29)]);
        assert_eq!(
            actions(&knowledge, HistoryQuery::default()).actions.len(),
            DEFAULT_HISTORY_LIMIT
        );
        let policies = to_json(policies(&knowledge));
        assert_eq!(policies["decided_at"], 30);
        assert_eq!(policies["chosen"], json!({"kind": "none"}));
        assert_eq!(policies["weights"][0]["weight"], 0.3);
    }
}
