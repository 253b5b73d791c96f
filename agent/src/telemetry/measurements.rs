//! What the agent writes to InfluxDB: one builder per measurement, plain functions from the
//! agent's data to [`Point`]s. The schema is documented in the module doc of
//! `telemetry/mod.rs` and in the README; `MEASUREMENTS` lists every measurement name (the
//! dashboard test checks its queries against it).

use std::collections::{BTreeMap, BTreeSet};

use super::buffer::BufferStats;
use super::point::Point;
use crate::mape::{Action, AnalyticValue, Decision, Millis};
use crate::runtime::Knowledge;

pub const NODE: &str = "gru_node";
pub const INSTANCE: &str = "gru_instance";
pub const SERVICE: &str = "gru_service";
pub const METRIC: &str = "gru_metric";
pub const ANALYTIC: &str = "gru_analytic";
pub const SHARED: &str = "gru_shared";
pub const DECISION: &str = "gru_decision";
pub const POLICY: &str = "gru_policy";
pub const ACTION: &str = "gru_action";
pub const AGENT: &str = "gru_agent";

/// Every measurement the sink writes.
pub const MEASUREMENTS: [&str; 10] = [
    NODE, INSTANCE, SERVICE, METRIC, ANALYTIC, SHARED, DECISION, POLICY, ACTION, AGENT,
];

/// The fields a measurement has, or `None` for those whose fields are named by the user's
/// metrics (`gru_metric`, `gru_shared`).
pub fn documented_fields(measurement: &str) -> Option<&'static [&'static str]> {
    Some(match measurement {
        NODE => &[
            "cpus",
            "memory_bytes",
            "active",
            "instances",
            "cpu_used_cores",
            "cpu_used_fraction",
            "memory_used_bytes",
            "free_cores",
        ],
        INSTANCE => &["up", "uptime_seconds"],
        SERVICE => &["instances", "min_instances", "max_instances"],
        ANALYTIC => &["value", "available"],
        DECISION => &["weight", "draw", "dry_run", "candidates", "eligible"],
        POLICY => &["weight", "eligible", "chosen"],
        ACTION => &["count"],
        AGENT => &[
            "loop_seconds",
            "rss_bytes",
            "sink_buffer_points",
            "sink_dropped_points",
            "sink_written_points",
        ],
        _ => return None,
    })
}

/// Who writes: the tags every point carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub cluster: String,
    pub node: String,
}

/// What the node has, from the Docker engine at join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
}

impl Origin {
    fn point(&self, measurement: &'static str, at: Millis) -> Point {
        Point::new(measurement, at)
            .tag("cluster", self.cluster.as_str())
            .tag("node", self.node.as_str())
    }
}

/// The kind of an action, as tags and Prometheus labels spell it, with the service it
/// concerns and, for a swap, the service started in its place.
pub fn action_parts(action: &Action) -> (&'static str, Option<&str>, Option<&str>) {
    match action {
        Action::None => ("none", None, None),
        Action::ScaleOut { service, .. } => ("scale-out", Some(service), None),
        Action::ScaleIn { service, .. } => ("scale-in", Some(service), None),
        Action::Swap { stop, start } => ("swap", Some(stop), Some(start)),
    }
}

/// The outcome of an executed action as a label: `ok`, `failed`, `skipped`, `refused`
/// (by the cluster's scaling ledger) or `dry-run` (the word before any `:` of an action
/// record's result), `other` for anything else.
pub fn result_label(result: &str) -> &'static str {
    let word = result.split(':').next().unwrap_or_default().trim();
    ["ok", "failed", "skipped", "refused", "dry-run"]
        .into_iter()
        .find(|known| *known == word)
        .unwrap_or("other")
}

/// The state of the node as the knowledge holds it at `now`: `gru_node`, one
/// `gru_instance` per container, `gru_service` and `gru_metric` per service, and one
/// `gru_analytic` per service and analytic.
pub fn knowledge_points(
    origin: &Origin,
    facts: NodeFacts,
    knowledge: &mut Knowledge,
    now: Millis,
) -> Vec<Point> {
    let mut points = Vec::new();
    let running = knowledge
        .instances
        .values()
        .filter(|i| i.state == "running")
        .count();
    let mut usage = crate::runtime::usage::node_usage(
        crate::runtime::usage::NodeCapacity {
            cpus: facts.cpus,
            memory_bytes: facts.memory_bytes,
        },
        knowledge.instances.values(),
        &knowledge.usage,
        knowledge.config.as_deref(),
    );
    if let Some(held) = &knowledge.engine_cpusets {
        usage.free_cores = crate::runtime::usage::free_cores_on_engine(facts.cpus, held);
    }
    points.push(
        origin
            .point(NODE, now)
            .integer("cpus", i64::from(facts.cpus))
            .integer(
                "memory_bytes",
                i64::try_from(facts.memory_bytes).unwrap_or(i64::MAX),
            )
            .flag("active", knowledge.active)
            .integer("instances", running as i64)
            .float("cpu_used_cores", usage.cpu_used_cores)
            .float("cpu_used_fraction", usage.cpu_used_fraction)
            .integer(
                "memory_used_bytes",
                i64::try_from(usage.memory_used_bytes).unwrap_or(i64::MAX),
            )
            .integer("free_cores", i64::from(usage.free_cores)),
    );
    for info in knowledge.instances.values() {
        points.push(
            origin
                .point(INSTANCE, now)
                .tag("service", info.service.as_str())
                .tag("instance", info.instance.as_str())
                .tag("status", info.state.as_str())
                .flag("up", info.state == "running")
                .float("uptime_seconds", now.since(info.started_at).as_secs_f64()),
        );
    }

    let config = knowledge.config.clone();
    let mut services: BTreeSet<String> = knowledge
        .instances
        .values()
        .map(|i| i.service.clone())
        .collect();
    if let Some(config) = &config {
        services.extend(config.services.keys().cloned());
    }
    services.extend(knowledge.metrics.services().map(str::to_owned));
    for service in &services {
        let mut point = origin
            .point(SERVICE, now)
            .tag("service", service.as_str())
            .integer("instances", knowledge.running(service).count() as i64);
        if let Some(descriptor) = config.as_ref().and_then(|c| c.services.get(service)) {
            point = point.integer("min_instances", i64::from(descriptor.min_instances));
            if let Some(max) = descriptor.max_instances {
                point = point.integer("max_instances", i64::from(max));
            }
        }
        points.push(point);

        let mut means: BTreeMap<String, f64> = knowledge
            .metrics
            .means(service, now)
            .into_iter()
            .map(|(name, mean)| (name, mean.mean))
            .collect();
        if let Some(pushed) = knowledge.pushed.get_mut(service) {
            for (name, window) in pushed.iter_mut() {
                if let Some(mean) = window.mean(now) {
                    means.entry(name.clone()).or_insert(mean);
                }
            }
        }
        if !means.is_empty() {
            let mut point = origin.point(METRIC, now).tag("service", service.as_str());
            for (name, mean) in means {
                point = point.float(name, mean);
            }
            points.push(point);
        }
    }

    for (service, analytics) in &knowledge.analytics {
        for (analytic, value) in analytics {
            let mut point = origin
                .point(ANALYTIC, now)
                .tag("service", service.as_str())
                .tag("analytic", analytic.as_str())
                .flag("available", matches!(value, AnalyticValue::Available(_)));
            if let Some(v) = value.value() {
                point = point.float("value", v);
            }
            points.push(point);
        }
    }
    points
}

/// One decision: `gru_decision` for the choice and one `gru_policy` per candidate.
pub fn decision_points(origin: &Origin, decision: &Decision) -> Vec<Point> {
    let (kind, service, target) = action_parts(&decision.action);
    let chosen_weight = decision
        .weights
        .iter()
        .find(|c| c.action == decision.action)
        .map(|c| c.weight);
    let mut point = origin
        .point(DECISION, decision.at)
        .tag("action", kind)
        .tag("service", service.unwrap_or_default())
        .tag("target", target.unwrap_or_default())
        .flag("dry_run", decision.dry_run)
        .integer("candidates", decision.weights.len() as i64)
        .integer(
            "eligible",
            decision.weights.iter().filter(|c| c.is_eligible()).count() as i64,
        );
    if let Some(weight) = chosen_weight {
        point = point.float("weight", weight);
    }
    if let Some(draw) = decision.draw {
        point = point.float("draw", draw);
    }
    let mut points = vec![point];
    for candidate in &decision.weights {
        let (kind, service, target) = action_parts(&candidate.action);
        points.push(
            origin
                .point(POLICY, decision.at)
                .tag("action", kind)
                .tag("service", service.unwrap_or_default())
                .tag("target", target.unwrap_or_default())
                .float("weight", candidate.weight)
                .flag("eligible", candidate.is_eligible())
                .flag("chosen", candidate.action == decision.action),
        );
    }
    points
}

/// One executed action: `gru_action` with `count` 1.
pub fn action_point(
    origin: &Origin,
    action: &str,
    service: &str,
    result: &str,
    at: Millis,
) -> Point {
    origin
        .point(ACTION, at)
        .tag("action", action)
        .tag("service", service)
        .tag("result", result_label(result))
        .integer("count", 1)
}

/// Values of a service as the cluster shares them (gossip), one `gru_shared` point.
pub fn shared_point(
    origin: &Origin,
    service: &str,
    values: &BTreeMap<String, f64>,
    at: Millis,
) -> Point {
    let mut point = origin.point(SHARED, at).tag("service", service);
    for (name, value) in values {
        point = point.float(name.as_str(), *value);
    }
    point
}

/// The agent's own health: `gru_agent`.
pub fn agent_point(
    origin: &Origin,
    loop_seconds: f64,
    rss_bytes: Option<u64>,
    sink: BufferStats,
    at: Millis,
) -> Point {
    let mut point = origin
        .point(AGENT, at)
        .float("loop_seconds", loop_seconds)
        .integer("sink_buffer_points", sink.buffered as i64)
        .integer(
            "sink_dropped_points",
            i64::try_from(sink.dropped()).unwrap_or(i64::MAX),
        )
        .integer(
            "sink_written_points",
            i64::try_from(sink.written).unwrap_or(i64::MAX),
        );
    if let Some(rss) = rss_bytes {
        point = point.integer("rss_bytes", i64::try_from(rss).unwrap_or(i64::MAX));
    }
    point
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::point::FieldValue;
    use super::*;
    use crate::mape::{BlockedBy, CandidateWeight, WindowSettings};
    use crate::runtime::InstanceInfo;

    fn origin() -> Origin {
        Origin {
            cluster: "c1".into(),
            node: "n1".into(),
        }
    }

    fn find<'a>(points: &'a [Point], measurement: &str, tags: &[(&str, &str)]) -> &'a Point {
        points
            .iter()
            .find(|p| {
                p.measurement == measurement && tags.iter().all(|(k, v)| p.tag_value(k) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {measurement} {tags:?} in {points:#?}"))
    }

    fn candidate(action: Action, weight: f64, blocked: bool) -> CandidateWeight {
        CandidateWeight {
            action,
            weight,
            explanation: Default::default(),
            blocked_by: if blocked {
                vec!["cooldown".to_owned()].into()
            } else {
                BlockedBy::default()
            },
            clamped: None,
        }
    }

    #[test]
    fn knowledge_becomes_node_instance_service_metric_and_analytic_points() {
        let mut knowledge = Knowledge::new(WindowSettings {
            warmup: Duration::ZERO,
            warmup_samples: 1,
            ..WindowSettings::for_loop_interval(Duration::from_secs(60))
        });
        knowledge.active = true;
        knowledge.instances.insert(
            "id1".into(),
            InstanceInfo {
                id: "id1".into(),
                service: "web".into(),
                instance: "i1".into(),
                state: "running".into(),
                address: None,
                started_at: Millis(1_000),
                version: None,
                image: String::new(),
                ready: true,
                health: None,
                replaces: Vec::new(),
            },
        );
        knowledge
            .metrics
            .record("web", "i1", "cpu_avg", Millis(5_000), 0.5)
            .expect("a sample");
        knowledge.usage.insert(
            "id1".into(),
            crate::runtime::usage::InstanceUsage {
                cpu_cores: Some(0.5),
                memory_bytes: 4096,
            },
        );
        knowledge.analytics.insert(
            "web".into(),
            BTreeMap::from([
                ("cpu_load".to_owned(), AnalyticValue::Available(0.5)),
                ("resp".to_owned(), AnalyticValue::unavailable("no samples")),
            ]),
        );
        let facts = NodeFacts {
            cpus: 2,
            memory_bytes: 1 << 30,
        };
        let points = knowledge_points(&origin(), facts, &mut knowledge, Millis(11_000));

        let node = find(&points, NODE, &[("cluster", "c1"), ("node", "n1")]);
        assert_eq!(node.field("cpus"), Some(FieldValue::Integer(2)));
        assert_eq!(
            node.field("memory_bytes"),
            Some(FieldValue::Integer(1 << 30))
        );
        assert_eq!(node.field("active"), Some(FieldValue::Integer(1)));
        assert_eq!(node.field("instances"), Some(FieldValue::Integer(1)));
        assert_eq!(node.field("cpu_used_cores"), Some(FieldValue::Float(0.5)));
        assert_eq!(
            node.field("cpu_used_fraction"),
            Some(FieldValue::Float(0.25))
        );
        assert_eq!(
            node.field("memory_used_bytes"),
            Some(FieldValue::Integer(4096))
        );
        // No configuration: no service is known to pin a core.
        assert_eq!(node.field("free_cores"), Some(FieldValue::Integer(2)));
        assert_eq!(node.timestamp_ns, 11_000_000_000);

        let instance = find(
            &points,
            INSTANCE,
            &[
                ("service", "web"),
                ("instance", "i1"),
                ("status", "running"),
            ],
        );
        assert_eq!(instance.field("up"), Some(FieldValue::Integer(1)));
        assert_eq!(
            instance.field("uptime_seconds"),
            Some(FieldValue::Float(10.0))
        );
        let service = find(&points, SERVICE, &[("service", "web")]);
        assert_eq!(service.field("instances"), Some(FieldValue::Integer(1)));
        let metric = find(&points, METRIC, &[("service", "web")]);
        assert_eq!(metric.field("cpu_avg"), Some(FieldValue::Float(0.5)));
        let available = find(&points, ANALYTIC, &[("analytic", "cpu_load")]);
        assert_eq!(available.field("value"), Some(FieldValue::Float(0.5)));
        assert_eq!(available.field("available"), Some(FieldValue::Integer(1)));
        let missing = find(&points, ANALYTIC, &[("analytic", "resp")]);
        assert_eq!(missing.field("value"), None);
        assert_eq!(missing.field("available"), Some(FieldValue::Integer(0)));
    }

    #[test]
    fn a_decision_becomes_its_choice_and_one_point_per_candidate() {
        let out = Action::ScaleOut {
            service: "web".into(),
            count: 1,
        };
        let decision = Decision {
            action: out.clone(),
            weights: vec![
                candidate(Action::None, 0.3, false),
                candidate(out, 0.7, false),
                candidate(
                    Action::Swap {
                        stop: "web".into(),
                        start: "db".into(),
                    },
                    0.1,
                    true,
                ),
            ],
            draw: Some(0.42),
            reason: "because".into(),
            dry_run: false,
            at: Millis(2_000),
        };
        let points = decision_points(&origin(), &decision);
        assert_eq!(points.len(), 4);
        let chosen = find(
            &points,
            DECISION,
            &[("action", "scale-out"), ("service", "web")],
        );
        assert_eq!(chosen.field("weight"), Some(FieldValue::Float(0.7)));
        assert_eq!(chosen.field("draw"), Some(FieldValue::Float(0.42)));
        assert_eq!(chosen.field("candidates"), Some(FieldValue::Integer(3)));
        assert_eq!(chosen.field("eligible"), Some(FieldValue::Integer(2)));
        let none = find(&points, POLICY, &[("action", "none")]);
        assert_eq!(none.tag_value("service"), None);
        assert_eq!(none.field("chosen"), Some(FieldValue::Integer(0)));
        let out = find(&points, POLICY, &[("action", "scale-out")]);
        assert_eq!(out.field("chosen"), Some(FieldValue::Integer(1)));
        let swap = find(&points, POLICY, &[("action", "swap"), ("target", "db")]);
        assert_eq!(swap.field("eligible"), Some(FieldValue::Integer(0)));
    }

    #[test]
    fn builders_write_only_documented_fields() {
        let decision = Decision {
            action: Action::None,
            weights: vec![candidate(Action::None, 1.0, false)],
            draw: Some(0.5),
            reason: String::new(),
            dry_run: true,
            at: Millis(1),
        };
        let mut points = decision_points(&origin(), &decision);
        points.push(action_point(&origin(), "swap", "web", "ok", Millis(1)));
        points.push(agent_point(
            &origin(),
            0.1,
            Some(1),
            BufferStats::default(),
            Millis(1),
        ));
        let mut knowledge =
            Knowledge::new(WindowSettings::for_loop_interval(Duration::from_secs(5)));
        points.extend(knowledge_points(
            &origin(),
            NodeFacts::default(),
            &mut knowledge,
            Millis(1),
        ));
        for point in &points {
            let fields = documented_fields(point.measurement).expect("a fixed schema");
            for (name, _) in &point.fields {
                assert!(
                    fields.contains(&name.as_str()),
                    "{}.{name} is not documented",
                    point.measurement
                );
            }
        }
        for measurement in MEASUREMENTS {
            assert_eq!(
                documented_fields(measurement).is_none(),
                [METRIC, SHARED].contains(&measurement),
                "{measurement}"
            );
        }
    }

    #[test]
    fn action_results_become_a_small_set_of_labels() {
        let cases = [
            ("ok", "ok"),
            ("failed: image gru-x:latest is missing", "failed"),
            (
                "skipped: backing off after a failed start for 4 s",
                "skipped",
            ),
            ("refused: another agent claimed this step first", "refused"),
            ("dry-run", "dry-run"),
            ("weird", "other"),
        ];
        for (result, label) in cases {
            assert_eq!(result_label(result), label, "{result}");
            let point = action_point(&origin(), "scale-out", "web", result, Millis(1));
            assert_eq!(point.tag_value("result"), Some(label));
        }
    }
}
