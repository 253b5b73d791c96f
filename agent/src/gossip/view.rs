//! The cluster view an agent builds from its friends: the latest report of every node it
//! has heard of, and per-service values merged across nodes, weighted by instance count.
//!
//! Anti-entropy: a report is owned by its node, which numbers its reports with an
//! increasing `version`; any agent keeps, for each node, the report with the highest
//! version it has seen, and forwards what it knows. Push-pull exchanges with random friends
//! spread a new report to all N agents in O(log N) rounds. Staleness is judged by the
//! receiver's own clock (when a node's version last increased), so agents need no
//! synchronised clocks; a node silent for longer than the bound drops out of the view.
//!
//! Pure: no I/O, no clock; time is passed in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mape::Millis;

/// What one node reports about one service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServiceReport {
    /// Running instances of the service on the node.
    pub instances: u32,
    /// Metric means over the node's instances (or pushed values), by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Analytic values the node computed, by name (only available ones).
    #[serde(default)]
    pub analytics: BTreeMap<String, f64>,
}

/// One node's report: its services, numbered by the node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub version: u64,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceReport>,
}

/// A report as held by a receiver: when it last saw the node's version increase.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    report: NodeReport,
    heard_at: Millis,
}

/// A service's values across the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ServiceView {
    /// Sum of the instances the fresh reports list.
    pub instances: u32,
    /// Nodes that report at least one instance.
    pub nodes: u32,
    /// Metric means weighted by each node's instance count (a node with no instance counts
    /// with weight 1 for values it pushed).
    pub metrics: BTreeMap<String, f64>,
    pub analytics: BTreeMap<String, f64>,
}

/// The latest report of every node heard of.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    held: BTreeMap<String, Held>,
}

impl ClusterView {
    pub fn new() -> ClusterView {
        ClusterView::default()
    }

    /// Takes `report` if it is newer than what is held for its node. Returns whether it
    /// changed the view.
    pub fn merge(&mut self, report: NodeReport, now: Millis) -> bool {
        match self.held.get_mut(&report.node) {
            Some(held) if held.report.version >= report.version => false,
            Some(held) => {
                *held = Held {
                    report,
                    heard_at: now,
                };
                true
            }
            None => {
                self.held.insert(
                    report.node.clone(),
                    Held {
                        report,
                        heard_at: now,
                    },
                );
                true
            }
        }
    }

    /// Merges every report of a friend's message; returns how many changed the view.
    pub fn merge_all(
        &mut self,
        reports: impl IntoIterator<Item = NodeReport>,
        now: Millis,
    ) -> usize {
        reports
            .into_iter()
            .filter(|r| !r.node.is_empty())
            .map(|r| self.merge(r, now))
            .filter(|changed| *changed)
            .count()
    }

    /// Drops reports not refreshed within `stale`, and those of nodes `gone` says are gone
    /// (e.g. their etcd records expired). Returns how many were dropped.
    pub fn expire(&mut self, now: Millis, stale: Duration, gone: impl Fn(&str) -> bool) -> usize {
        let before = self.held.len();
        self.held
            .retain(|node, held| now.since(held.heard_at) <= stale && !gone(node));
        before - self.held.len()
    }

    /// Every report held, freshest first, at most `limit` of them (a message's size cap).
    pub fn reports(&self, limit: usize) -> Vec<NodeReport> {
        let mut held: Vec<&Held> = self.held.values().collect();
        held.sort_by(|a, b| {
            b.heard_at
                .cmp(&a.heard_at)
                .then(a.report.node.cmp(&b.report.node))
        });
        held.into_iter()
            .take(limit)
            .map(|h| h.report.clone())
            .collect()
    }

    /// The (node, version) of the reports that arrived (or were published here) at `since`
    /// or later, in node order, at most `cap` of them: what this agent heard last round.
    pub fn heard_since(&self, since: Millis, cap: usize) -> Vec<(String, u64)> {
        self.held
            .iter()
            .filter(|(_, held)| held.heard_at >= since)
            .take(cap)
            .map(|(node, held)| (node.clone(), held.report.version))
            .collect()
    }

    /// Every (node, version) held, in node order.
    pub fn versions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.held
            .iter()
            .map(|(node, held)| (node.as_str(), held.report.version))
    }

    pub fn report(&self, node: &str) -> Option<&NodeReport> {
        self.held.get(node).map(|h| &h.report)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The cluster's values for `service`: instance counts summed, metrics and analytics
    /// averaged with each node weighted by its instance count (weight 1 for a node that
    /// reports values without instances, e.g. pushed metrics).
    pub fn service(&self, service: &str) -> ServiceView {
        let mut view = ServiceView::default();
        let mut metric_sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut analytic_sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for held in self.held.values() {
            let Some(report) = held.report.services.get(service) else {
                continue;
            };
            view.instances += report.instances;
            if report.instances > 0 {
                view.nodes += 1;
            }
            let weight = f64::from(report.instances.max(1));
            for (name, value) in report.metrics.iter().filter(|(_, v)| v.is_finite()) {
                let sum = metric_sums.entry(name).or_insert((0.0, 0.0));
                sum.0 += value * weight;
                sum.1 += weight;
            }
            for (name, value) in report.analytics.iter().filter(|(_, v)| v.is_finite()) {
                let sum = analytic_sums.entry(name).or_insert((0.0, 0.0));
                sum.0 += value * weight;
                sum.1 += weight;
            }
        }
        view.metrics = metric_sums
            .into_iter()
            .map(|(name, (sum, weight))| (name.to_owned(), sum / weight))
            .collect();
        view.analytics = analytic_sums
            .into_iter()
            .map(|(name, (sum, weight))| (name.to_owned(), sum / weight))
            .collect();
        view
    }

    /// Every service some report mentions.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .held
            .values()
            .flat_map(|h| h.report.services.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, version: u64, instances: u32, cpu: f64) -> NodeReport {
        NodeReport {
            node: node.into(),
            version,
            services: BTreeMap::from([(
                "web".into(),
                ServiceReport {
                    instances,
                    metrics: BTreeMap::from([("cpu_avg".into(), cpu)]),
                    analytics: BTreeMap::from([("cpu_load".into(), cpu)]),
                },
            )]),
        }
    }

    #[test]
    fn newer_versions_replace_older_ones_and_older_ones_are_ignored() {
        let mut view = ClusterView::new();
        assert!(view.merge(report("a", 2, 1, 0.5), Millis(0)));
        assert!(!view.merge(report("a", 1, 9, 0.9), Millis(1)));
        assert!(!view.merge(report("a", 2, 9, 0.9), Millis(1)));
        assert_eq!(view.service("web").instances, 1);
        assert!(view.merge(report("a", 3, 4, 0.1), Millis(2)));
        assert_eq!(view.service("web").instances, 4);
    }

    #[test]
    fn values_are_weighted_by_instance_count() {
        let mut view = ClusterView::new();
        view.merge(report("a", 1, 3, 0.9), Millis(0));
        view.merge(report("b", 1, 1, 0.1), Millis(0));
        let web = view.service("web");
        assert_eq!(web.instances, 4);
        assert_eq!(web.nodes, 2);
        assert!((web.metrics["cpu_avg"] - 0.7).abs() < 1e-9, "{web:?}");
        assert!((web.analytics["cpu_load"] - 0.7).abs() < 1e-9);
    }

    #[test]
    fn a_node_without_instances_counts_with_weight_one_and_non_finite_values_are_ignored() {
        let mut view = ClusterView::new();
        view.merge(report("a", 1, 0, 0.4), Millis(0));
        view.merge(report("b", 1, 1, f64::NAN), Millis(0));
        let web = view.service("web");
        assert_eq!(web.nodes, 1);
        assert!((web.metrics["cpu_avg"] - 0.4).abs() < 1e-9, "{web:?}");
    }

    #[test]
    fn silent_or_gone_nodes_expire() {
        let mut view = ClusterView::new();
        view.merge(report("a", 1, 1, 0.5), Millis(0));
        view.merge(report("b", 1, 1, 0.5), Millis(8_000));
        view.merge(report("c", 1, 1, 0.5), Millis(8_000));
        let dropped = view.expire(Millis(10_000), Duration::from_secs(5), |n| n == "c");
        assert_eq!(dropped, 2);
        assert_eq!(view.services(), vec!["web".to_owned()]);
        assert!(view.report("b").is_some());
    }

    #[test]
    fn reports_are_capped_freshest_first() {
        let mut view = ClusterView::new();
        for (i, node) in ["a", "b", "c"].iter().enumerate() {
            view.merge(report(node, 1, 1, 0.5), Millis(i as u64));
        }
        let nodes: Vec<String> = view.reports(2).into_iter().map(|r| r.node).collect();
        assert_eq!(nodes, vec!["c", "b"]);
    }
}
