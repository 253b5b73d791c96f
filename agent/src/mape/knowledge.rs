//! Knowledge: what the planner is told about each service, and what it remembers between
//! ticks.
//!
//! [`ServiceSnapshot`] is plain data the agent's loop assembles from the runtime, the metric
//! windows, the analytics and the cluster view; [`PlannerState`] is the little the planner
//! carries from one tick to the next (breach starts and last actions), so that [`plan`]
//! stays a function.
//!
//! [`plan`]: super::planner::plan

use std::collections::BTreeMap;
use std::sync::Arc;

use common::config::{PolicyConfig, ServiceDescriptor};
use serde::{Deserialize, Serialize};

use super::analyze::AnalyticValue;
use super::cursor::Cursor;
use super::decision::Action;
use super::millis::Millis;
use super::smoothing::Smoother;
use super::target::Recommendations;

/// What the planner knows about one service this node could act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub name: String,
    /// Instances running on this node.
    pub running_here: u32,
    /// Instances this node is starting (not yet running).
    pub pending_here: u32,
    /// Running instances in the whole cluster, from the cluster view; equal to
    /// `running_here` when the node is alone. A view that lags behind this node's own count
    /// is corrected up to `running_here`.
    pub cluster_instances: u32,
    pub min_instances: u32,
    pub max_instances: Option<u32>,
    /// Whether this node's constraints list the service among its base services.
    pub base_service: bool,
    /// How many more instances of the service fit on this node (cores and memory), as the
    /// caller computes it; 0 when not one more fits.
    pub free_slots_here: u32,
    /// The service's `cpunumber`: swaps are only between services of the same size.
    pub cpu_number: u32,
    /// The service's own `Analytics`, used when a policy rule names none.
    pub own_analytics: Vec<String>,
    /// Base metrics, as fractions; `None` when no warmed-up instance reported one.
    pub cpu_avg: Option<f64>,
    pub mem_avg: Option<f64>,
    /// Analytic values by name (the service's and the policy's analytics).
    pub analytics: BTreeMap<String, AnalyticValue>,
    /// The service's last scale actions anywhere in the cluster, when the caller knows them
    /// (from the cluster's action records); cooldowns count from the later of these and this
    /// node's own actions.
    pub cluster_last_scale: LastScale,
    /// The service's own policy (its descriptor's `Policy` over the cluster's), when it has
    /// one; `None` for the cluster's policy.
    pub policy: Option<PolicyConfig>,
    /// Why this node cannot start the service for now (its last start here failed: a pull
    /// refused, an image missing), when it cannot; `free_slots_here` is then 0.
    pub start_held: Option<StartHeld>,
}

/// A node's start of a service held back after a failed one, as the planner shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartHeld {
    /// The failure, as the action history says it.
    pub error: String,
    /// Whole seconds until this node tries again.
    pub ends_in_secs: u64,
}

impl ServiceSnapshot {
    /// A snapshot with the descriptor's bounds, size and analytics, no instance, no free
    /// slot and no value; the caller fills in what it observed.
    pub fn new(descriptor: &ServiceDescriptor) -> ServiceSnapshot {
        ServiceSnapshot {
            name: descriptor.name.clone(),
            running_here: 0,
            pending_here: 0,
            cluster_instances: 0,
            min_instances: descriptor.min_instances,
            max_instances: descriptor.max_instances,
            base_service: false,
            free_slots_here: 0,
            cpu_number: descriptor.configuration.cpu_number,
            own_analytics: descriptor.analytics.clone(),
            cpu_avg: None,
            mem_avg: None,
            analytics: BTreeMap::new(),
            cluster_last_scale: LastScale::default(),
            policy: None,
            start_held: None,
        }
    }

    /// A snapshot for a service of `cluster`'s configuration, with the policy that applies
    /// to it.
    pub fn with_policy(descriptor: &ServiceDescriptor, cluster: &PolicyConfig) -> ServiceSnapshot {
        ServiceSnapshot {
            policy: descriptor.policy.as_ref().map(|own| own.apply(cluster)),
            ..ServiceSnapshot::new(descriptor)
        }
    }

    /// The policy that applies to this service: its own, else the cluster's.
    pub fn policy<'a>(&'a self, cluster: &'a PolicyConfig) -> &'a PolicyConfig {
        self.policy.as_ref().unwrap_or(cluster)
    }

    /// Running instances counted against `MinInstances` and `MaxInstances`.
    pub(super) fn counted_instances(&self) -> u32 {
        self.cluster_instances.max(self.running_here)
    }

    /// A value named by a policy rule: a base metric or an analytic.
    pub fn value(&self, name: &str) -> AnalyticValue {
        self.value_at(name, &mut self.values())
    }

    /// A reader of this service's values, for [`ServiceSnapshot::value_at`]: a rule's
    /// names are looked up through one.
    pub(super) fn values(&self) -> AnalyticsCursor<'_> {
        Cursor::new(&self.analytics)
    }

    /// A value named by a policy rule: a base metric or an analytic, the analytic found
    /// through `cursor` (one of this service's [`ServiceSnapshot::values`]).
    pub(super) fn value_at<'a>(
        &self,
        name: &'a str,
        cursor: &mut AnalyticsCursor<'a>,
    ) -> AnalyticValue {
        let base = match common::config::base_metric(name) {
            Some("cpu_avg") => Some(self.cpu_avg),
            Some("mem_avg") => Some(self.mem_avg),
            _ => None,
        };
        match base {
            Some(Some(value)) => AnalyticValue::Available(value),
            Some(None) => AnalyticValue::unavailable(format!("no warmed-up sample of {name}")),
            None => cursor
                .get(name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| {
                    AnalyticValue::unavailable(format!("not evaluated for service {}", self.name))
                }),
        }
    }
}

/// A reader of a service's analytics by name (see [`Cursor`]).
pub(super) type AnalyticsCursor<'a> = Cursor<'a, String, AnalyticValue>;

/// When a service was last scaled in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastScale {
    pub scaled_out: Option<Millis>,
    pub scaled_in: Option<Millis>,
}

impl LastScale {
    /// The later of the two actions.
    pub fn latest(&self) -> Option<Millis> {
        self.scaled_out.max(self.scaled_in)
    }

    /// The later of each direction's times.
    pub fn merge(self, other: LastScale) -> LastScale {
        LastScale {
            scaled_out: self.scaled_out.max(other.scaled_out),
            scaled_in: self.scaled_in.max(other.scaled_in),
        }
    }
}

/// A scale rule's identity across ticks, for target tracking's recommendations and a
/// `Window`'s smoothers: its service and direction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    Out(String),
    In(String),
}

impl Key {
    /// The service the key is about.
    pub(super) fn service(&self) -> &str {
        match self {
            Key::Out(service) | Key::In(service) => service,
        }
    }
}

/// The planner's knowledge carried from one tick to the next: when each breach started,
/// and when each service was last scaled by this node.
///
/// Each candidate action (a service and a direction, or a swap pair) moves through these
/// states; only the breach start and the time of the last action are stored:
///
/// ```text
///             weight > 0                   sustained for Period, guards pass,
///   calm ────────────────► breaching ───────── and the strategy draws it ─────────► acted
///    ▲                      │     ▲                                                  │
///    │      weight = 0      │     └── not drawn, or a guard holds it: still breaching │
///    └──────────────────────┘                                                        │
///    ▲                                                                               │
///    └──── breach start forgotten; the cooldown runs from the time of the action ◄───┘
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannerState {
    /// Each service's breaches, by name; the names are shared (not copied) by the states of
    /// successive ticks, as `last_scale`'s are.
    pub(super) breaches: BTreeMap<Arc<str>, Breaches>,
    /// Swap breaches, by the name of the service a swap stops, then the one it starts.
    pub(super) swap_breaches: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Millis>>,
    /// By service name, shared (not copied) by the states of successive ticks.
    pub(super) last_scale: BTreeMap<Arc<str>, LastScale>,
    /// Target tracking: the counts recommended lately, per service and direction.
    pub(super) recommendations: BTreeMap<Key, Recommendations>,
    /// Rules with a `Window`: each input's smoothed value, per service and direction.
    pub(super) smoothers: BTreeMap<(Key, String), Smoother>,
}

impl PlannerState {
    pub fn new() -> PlannerState {
        PlannerState::default()
    }

    /// When the breach behind `action` (its service and direction) started, if it lasts.
    pub fn breach_started(&self, action: &Action) -> Option<Millis> {
        match action {
            Action::None => None,
            Action::ScaleOut { service, .. } => self.breaches.get(service.as_str())?.out,
            Action::ScaleIn { service, .. } => self.breaches.get(service.as_str())?.r#in,
            Action::Swap { stop, start } => self
                .swap_breaches
                .get(stop.as_str())?
                .get(start.as_str())
                .copied(),
        }
    }

    /// When this node last scaled `service`.
    pub fn last_scale(&self, service: &str) -> LastScale {
        self.last_scale.get(service).copied().unwrap_or_default()
    }

    /// Records that `action` was taken at `at`: its cooldowns start and its breach is
    /// forgotten. [`plan`](super::planner::plan) does this for the action it chooses; the agent may also record
    /// actions taken outside the planner (restoring `MinInstances`, say).
    pub fn record(&mut self, action: &Action, at: Millis) {
        let mut mark = |service: &str, out: bool| {
            let last = self.last_scale.entry(Arc::from(service)).or_default();
            if out {
                last.scaled_out = Some(at);
            } else {
                last.scaled_in = Some(at);
            }
        };
        match action {
            Action::None => return,
            Action::ScaleOut { service, .. } => mark(service, true),
            Action::ScaleIn { service, .. } => mark(service, false),
            Action::Swap { stop, start } => {
                mark(stop, false);
                mark(start, true);
            }
        }
        self.forget_breach(action);
    }

    /// Takes back what [`record`](Self::record) did for `action`: its services' last scales
    /// and the breach behind it are put back as `before` (the state the decision was made
    /// from) had them. For a step that was decided but not taken (withheld): its cooldown
    /// does not start, and the breach goes on counting from when it began.
    pub fn take_back(&mut self, action: &Action, before: &PlannerState) {
        let mut restore_last = |service: &str| match before.last_scale.get(service) {
            Some(last) => {
                self.last_scale.insert(Arc::from(service), *last);
            }
            None => {
                self.last_scale.remove(service);
            }
        };
        let (service, out) = match action {
            Action::None => return,
            Action::ScaleOut { service, .. } => (service, true),
            Action::ScaleIn { service, .. } => (service, false),
            Action::Swap { stop, start } => {
                restore_last(stop);
                restore_last(start);
                let began = before
                    .swap_breaches
                    .get(stop.as_str())
                    .and_then(|starts| starts.get(start.as_str()));
                if let Some(began) = began {
                    self.swap_breaches
                        .entry(Arc::from(stop.as_str()))
                        .or_default()
                        .insert(Arc::from(start.as_str()), *began);
                }
                return;
            }
        };
        restore_last(service);
        let began = before
            .breaches
            .get(service.as_str())
            .and_then(|b| if out { b.out } else { b.r#in });
        if let Some(began) = began {
            let breaches = self
                .breaches
                .entry(Arc::from(service.as_str()))
                .or_default();
            *breaches.of(out) = Some(began);
        }
    }

    /// Forgets the breach behind `action`.
    fn forget_breach(&mut self, action: &Action) {
        let (service, out) = match action {
            Action::None => return,
            Action::ScaleOut { service, .. } => (service, true),
            Action::ScaleIn { service, .. } => (service, false),
            Action::Swap { stop, start } => {
                if let Some(starts) = self.swap_breaches.get_mut(stop.as_str()) {
                    starts.remove(start.as_str());
                    if starts.is_empty() {
                        self.swap_breaches.remove(stop.as_str());
                    }
                }
                return;
            }
        };
        if let Some(breaches) = self.breaches.get_mut(service.as_str()) {
            *breaches.of(out) = None;
            if breaches.is_empty() {
                self.breaches.remove(service.as_str());
            }
        }
    }
}

/// When the breaches behind a service's scale-out and scale-in started, if they last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Breaches {
    pub(super) out: Option<Millis>,
    pub(super) r#in: Option<Millis>,
}

impl Breaches {
    /// The scale-out's breach (`out`) or the scale-in's.
    pub(super) fn of(&mut self, out: bool) -> &mut Option<Millis> {
        if out { &mut self.out } else { &mut self.r#in }
    }

    fn is_empty(&self) -> bool {
        self.out.is_none() && self.r#in.is_none()
    }
}
