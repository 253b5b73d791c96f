//! The last 15 minutes of what the loop saw, per service, for the web console's charts
//! (`GET /gru/v1/history`): the cluster's instance count, every value a policy rule weighs
//! with the rule's threshold, and this agent's decisions that did something.
//!
//! Bounded by construction: at most one sample per [`HISTORY_SAMPLE_PERIOD`], none older
//! than [`HISTORY_SPAN`] ([`MAX_HISTORY_SAMPLES`] in all), at most
//! [`MAX_HISTORY_SERVICES`] services and [`MAX_HISTORY_VALUES`] values per service in a
//! sample, and at most [`MAX_HISTORY_DECISIONS`] decisions. Pure data, fed by the loop
//! with the snapshots it planned over; the clock is the loop's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use common::config::{PolicyConfig, PolicyRule};
use serde::Serialize;

use crate::mape::{Action, Decision, Millis, ServiceSnapshot};

/// How far back the history goes.
pub const HISTORY_SPAN: Duration = Duration::from_secs(15 * 60);
/// Ticks closer than this to the last sample are not sampled (a 1 s loop keeps one in two).
pub const HISTORY_SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// Samples kept at most: the span at the sample period, and one more.
pub const MAX_HISTORY_SAMPLES: usize =
    (HISTORY_SPAN.as_secs() / HISTORY_SAMPLE_PERIOD.as_secs()) as usize + 1;
/// Services in one sample at most (the first by name); more are not charted.
pub const MAX_HISTORY_SERVICES: usize = 64;
/// Values per service in one sample at most (the rules' names first); more are not charted.
pub const MAX_HISTORY_VALUES: usize = 16;
/// Decisions kept at most (those older than the span go first).
pub const MAX_HISTORY_DECISIONS: usize = 256;

/// One service at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSample {
    /// Running instances in the whole cluster, as the planner counted them.
    pub instances: u32,
    /// Running on this node.
    pub here: u32,
    /// Each value a rule weighs (an analytic or a base metric), `null` while unavailable.
    pub values: BTreeMap<String, Option<f64>>,
}

/// What the loop saw at one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub at: Millis,
    pub services: BTreeMap<String, ServiceSample>,
}

/// The thresholds a value is held to, by the rules that weigh it (enabled rules only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Thresholds {
    pub scale_out: Option<f64>,
    pub scale_in: Option<f64>,
}

/// A decision of this agent that did something (or would have, in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionMark {
    pub at: Millis,
    pub action: Action,
    /// The service it scaled (for a swap: the one it stopped).
    pub service: String,
    pub reason: String,
    pub dry_run: bool,
}

/// One service at one sample, as kept: the value names are shared with the samples before
/// it while they stay the same, so a sample costs its numbers, not a map of names (a
/// `Sample` of two services with six values each took 1.6 KB of heap, measured with
/// heaptrack in the chaos soak; this one about 0.3 KB, estimated from its layout, not
/// measured).
#[derive(Debug, Clone)]
struct StoredService {
    name: Arc<str>,
    instances: u32,
    here: u32,
    names: Arc<[String]>,
    /// In the order of `names`.
    values: Box<[Option<f64>]>,
}

#[derive(Debug, Clone)]
struct StoredSample {
    at: Millis,
    services: Box<[StoredService]>,
}

impl StoredSample {
    fn view(&self) -> Sample {
        let services = self
            .services
            .iter()
            .map(|service| {
                let values = service
                    .names
                    .iter()
                    .cloned()
                    .zip(service.values.iter().copied())
                    .collect();
                let sample = ServiceSample {
                    instances: service.instances,
                    here: service.here,
                    values,
                };
                (service.name.to_string(), sample)
            })
            .collect();
        Sample {
            at: self.at,
            services,
        }
    }
}

/// The bounded history; see the module's documentation.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: VecDeque<StoredSample>,
    decisions: VecDeque<DecisionMark>,
    /// service → value → thresholds, from the latest sample's policies.
    thresholds: BTreeMap<String, BTreeMap<String, Thresholds>>,
}

/// `GET /gru/v1/history?since=MS`: what is newer than `since`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub span_ms: u64,
    pub sample_period_ms: u64,
    pub samples: Vec<Sample>,
    pub decisions: Vec<DecisionMark>,
    pub thresholds: BTreeMap<String, BTreeMap<String, Thresholds>>,
}

/// The names `rule` weighs for `service`: its metrics, then its analytics or, when it
/// names none, the service's own (as the planner reads them).
fn rule_names<'a>(rule: &'a PolicyRule, service: &'a ServiceSnapshot) -> Vec<&'a str> {
    let analytics = if rule.analytics.is_empty() {
        &service.own_analytics
    } else {
        &rule.analytics
    };
    rule.metrics
        .iter()
        .chain(analytics)
        .map(String::as_str)
        .collect()
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// A tick's snapshots at `now`, sampled unless the last sample is younger than the
    /// sample period. `policy` is the cluster's (a service's own overrides it).
    pub fn record(&mut self, snapshots: &[ServiceSnapshot], policy: &PolicyConfig, now: Millis) {
        if self
            .samples
            .back()
            .is_some_and(|last| now.since(last.at) < HISTORY_SAMPLE_PERIOD && now >= last.at)
        {
            return;
        }
        let mut services = Vec::new();
        let mut thresholds = BTreeMap::new();
        for snapshot in snapshots.iter().take(MAX_HISTORY_SERVICES) {
            let policy = snapshot.policy(policy);
            let mut limits: BTreeMap<String, Thresholds> = BTreeMap::new();
            for (rule, out) in [(&policy.scaleout, true), (&policy.scalein, false)] {
                for name in rule_names(rule, snapshot) {
                    if limits.len() >= MAX_HISTORY_VALUES && !limits.contains_key(name) {
                        continue;
                    }
                    let entry = limits.entry(name.to_owned()).or_default();
                    if rule.enable {
                        if out {
                            entry.scale_out = Some(rule.threshold);
                        } else {
                            entry.scale_in = Some(rule.threshold);
                        }
                    }
                }
            }
            for name in snapshot.analytics.keys() {
                if limits.len() >= MAX_HISTORY_VALUES {
                    break;
                }
                limits.entry(name.clone()).or_default();
            }
            let values = limits
                .keys()
                .map(|name| snapshot.value(name).value())
                .collect();
            let (name, names) = self.shared_names(&snapshot.name, limits.keys());
            services.push(StoredService {
                name,
                instances: snapshot.cluster_instances.max(snapshot.running_here),
                here: snapshot.running_here,
                names,
                values,
            });
            thresholds.insert(snapshot.name.clone(), limits);
        }
        self.thresholds = thresholds;
        self.samples.push_back(StoredSample {
            at: now,
            services: services.into_boxed_slice(),
        });
        while self.samples.len() > MAX_HISTORY_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| now.since(s.at) > HISTORY_SPAN)
        {
            self.samples.pop_front();
        }
    }

    /// The service's name and value names as the newest sample holds them when they are the
    /// same (shared, not copied), new ones otherwise.
    fn shared_names<'a>(
        &self,
        service: &str,
        names: impl ExactSizeIterator<Item = &'a String> + Clone,
    ) -> (Arc<str>, Arc<[String]>) {
        let last = self
            .samples
            .back()
            .and_then(|sample| sample.services.iter().find(|s| &*s.name == service));
        match last {
            Some(last) if last.names.iter().eq(names.clone()) => {
                (last.name.clone(), last.names.clone())
            }
            Some(last) => (last.name.clone(), names.cloned().collect()),
            None => (Arc::from(service), names.cloned().collect()),
        }
    }

    /// A decision of this agent: kept when it does something (a dry run's too).
    pub fn decided(&mut self, decision: &Decision) {
        let service = match &decision.action {
            Action::None => return,
            Action::ScaleOut { service, .. } | Action::ScaleIn { service, .. } => service,
            Action::Swap { stop, .. } => stop,
        };
        self.decisions.push_back(DecisionMark {
            at: decision.at,
            action: decision.action.clone(),
            service: service.clone(),
            reason: decision.reason.clone(),
            dry_run: decision.dry_run,
        });
        while self.decisions.len() > MAX_HISTORY_DECISIONS
            || self
                .decisions
                .front()
                .is_some_and(|d| decision.at.since(d.at) > HISTORY_SPAN)
        {
            self.decisions.pop_front();
        }
    }

    /// Samples and decisions newer than `since` (everything kept when `None`).
    pub fn since(&self, since: Option<Millis>) -> HistoryView {
        let newer = |at: Millis| since.is_none_or(|since| at > since);
        HistoryView {
            span_ms: HISTORY_SPAN.as_millis() as u64,
            sample_period_ms: HISTORY_SAMPLE_PERIOD.as_millis() as u64,
            samples: self
                .samples
                .iter()
                .filter(|s| newer(s.at))
                .map(StoredSample::view)
                .collect(),
            decisions: self
                .decisions
                .iter()
                .filter(|d| newer(d.at))
                .cloned()
                .collect(),
            thresholds: self.thresholds.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mape::AnalyticValue;

    fn web(instances: u32, load: Option<f64>) -> ServiceSnapshot {
        let mut snapshot = ServiceSnapshot::new(&common::config::ServiceDescriptor {
            name: "web".into(),
            analytics: vec!["load".into()],
            ..Default::default()
        });
        snapshot.cluster_instances = instances;
        snapshot.running_here = 1;
        snapshot.analytics.insert(
            "load".into(),
            load.map_or_else(
                || AnalyticValue::unavailable("no samples"),
                AnalyticValue::Available,
            ),
        );
        snapshot
    }

    fn policy() -> PolicyConfig {
        let mut policy = PolicyConfig::default();
        policy.scaleout.enable = true;
        policy.scaleout.threshold = 0.8;
        policy.scalein.enable = false;
        policy
    }

    #[test]
    fn samples_keep_instances_values_and_the_rules_thresholds() {
        let mut history = History::new();
        history.record(&[web(2, Some(0.5))], &policy(), Millis(10_000));
        history.record(&[web(3, None)], &policy(), Millis(12_000));
        let view = history.since(None);
        assert_eq!(view.samples.len(), 2);
        let first = &view.samples[0].services["web"];
        assert_eq!((first.instances, first.here), (2, 1));
        assert_eq!(first.values["load"], Some(0.5));
        assert_eq!(view.samples[1].services["web"].values["load"], None);
        assert_eq!(
            view.thresholds["web"]["load"],
            Thresholds {
                scale_out: Some(0.8),
                scale_in: None
            },
            "scale-in is disabled: no threshold drawn for it"
        );
        assert_eq!(history.since(Some(Millis(10_000))).samples.len(), 1);
    }

    #[test]
    fn samples_share_their_names_while_they_stay_the_same() {
        let mut history = History::new();
        history.record(&[web(2, Some(0.5))], &policy(), Millis(10_000));
        history.record(&[web(3, Some(0.6))], &policy(), Millis(12_000));
        let mut other = web(3, Some(0.7));
        other
            .analytics
            .insert("queue".into(), AnalyticValue::Available(4.0));
        history.record(&[other], &policy(), Millis(14_000));
        let kept: Vec<&StoredService> = history.samples.iter().map(|s| &s.services[0]).collect();
        assert!(Arc::ptr_eq(&kept[0].names, &kept[1].names));
        assert!(Arc::ptr_eq(&kept[0].name, &kept[2].name));
        assert!(!Arc::ptr_eq(&kept[1].names, &kept[2].names));
        // As served: every value under its name.
        let view = history.since(None);
        assert_eq!(view.samples[1].services["web"].values["load"], Some(0.6));
        assert_eq!(view.samples[2].services["web"].values["queue"], Some(4.0));
        assert_eq!(view.samples[2].services["web"].values["load"], Some(0.7));
    }

    #[test]
    fn ticks_closer_than_the_period_are_not_sampled_and_old_samples_go() {
        let mut history = History::new();
        let period = HISTORY_SAMPLE_PERIOD.as_millis() as u64;
        let mut now = 1_000_000;
        for _ in 0..(3 * MAX_HISTORY_SAMPLES) {
            history.record(&[web(1, Some(0.1))], &policy(), Millis(now));
            history.record(&[web(1, Some(0.1))], &policy(), Millis(now + period / 2));
            now += period;
        }
        let view = history.since(None);
        assert!(
            view.samples.len() <= MAX_HISTORY_SAMPLES,
            "{}",
            view.samples.len()
        );
        let oldest = view.samples.first().map(|s| s.at).unwrap_or_default();
        assert!(Millis(now - period).since(oldest) <= HISTORY_SPAN);
        assert!(
            view.samples
                .windows(2)
                .all(|w| w[1].at.since(w[0].at) >= HISTORY_SAMPLE_PERIOD)
        );
    }

    #[test]
    fn only_decisions_that_act_are_kept_and_their_number_is_bounded() {
        let mut history = History::new();
        let decision = |at: u64, action: Action| Decision {
            action,
            weights: vec![],
            draw: None,
            reason: "why".into(),
            dry_run: false,
            at: Millis(at),
        };
        history.decided(&decision(1, Action::None));
        history.decided(&decision(
            2,
            Action::ScaleOut {
                service: "web".into(),
                count: 2,
            },
        ));
        let marks = history.since(None).decisions;
        assert_eq!(marks.len(), 1);
        assert_eq!((marks[0].service.as_str(), marks[0].at), ("web", Millis(2)));
        for at in 3..(3 + 2 * MAX_HISTORY_DECISIONS as u64) {
            history.decided(&decision(
                at,
                Action::ScaleIn {
                    service: "web".into(),
                    count: 1,
                },
            ));
        }
        assert_eq!(history.since(None).decisions.len(), MAX_HISTORY_DECISIONS);
    }
}
