//! The agents' answers as the shell reads them: the JSON of `GET /gru/v1/...` (the shapes of
//! `agent/src/http/views.rs`). Every field has a default, so an agent a version ahead (a
//! field more) or behind (a field less) is still understood.

use std::collections::BTreeMap;

use gru_agent::mape::Decision;
use serde::{Deserialize, Serialize};

/// `GET /gru/v1/node`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct NodeView {
    pub node: String,
    /// When the agent process started (ms since the epoch; 0 from agents before issue 15):
    /// `restart agent` waits for it to change.
    pub agent_started_at: u64,
    pub active: bool,
    pub base_services: Vec<String>,
    pub config: ConfigView,
    pub instances: InstanceCounts,
    /// Services whose last start on the node failed (a refused pull...), by name.
    pub start_failures: BTreeMap<String, StartFailure>,
    /// CPU and memory in use and free cores (absent from agents before issue 17).
    pub usage: Option<NodeUsage>,
    /// Present while the node is drained.
    pub drain: Option<Drain>,
}

/// A node's drain.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Drain {
    pub since: u64,
    /// No instance is left on it.
    pub done: bool,
}

/// A node's use, as its agent reports it.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct NodeUsage {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub cpu_used_cores: f64,
    pub cpu_used_fraction: f64,
    pub memory_used_bytes: u64,
    pub free_cores: u32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StartFailure {
    pub failed_at: u64,
    pub failures: u32,
    pub error: String,
    pub backing_off_until: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConfigView {
    pub loaded: bool,
    pub revision: i64,
    pub rejected: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceCounts {
    pub total: usize,
    pub running: usize,
    pub by_service: BTreeMap<String, ServiceCounts>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceCounts {
    pub total: usize,
    pub running: usize,
}

/// `GET /gru/v1/services`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ServicesView {
    pub services: BTreeMap<String, ServiceView>,
    pub unconfigured_instances: Vec<InstanceView>,
}

impl ServicesView {
    /// Running instances of `service` on the node.
    pub fn running(&self, service: &str) -> usize {
        self.services.get(service).map_or(0, |s| s.running)
    }

    /// Of those, the ready ones (in discovery); all of them from an agent that does not
    /// say.
    pub fn ready(&self, service: &str) -> usize {
        self.services
            .get(service)
            .map_or(0, |s| s.ready.unwrap_or(s.running))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceView {
    pub base_service: bool,
    pub running: usize,
    /// Running instances that are ready; `None` from an agent that does not say.
    pub ready: Option<usize>,
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceView {
    pub id: String,
    pub service: String,
    pub instance: String,
    pub state: String,
    pub address: Option<String>,
    pub started_at: u64,
    /// The descriptor version it runs (`null` for a container without the label).
    pub version: Option<String>,
    /// Whether it is in discovery (an agent that does not say: it is).
    #[serde(default = "ready_unless_told")]
    pub ready: bool,
    /// `ready`, `starting`, `not-ready` or `unhealthy`; empty from an agent that does not
    /// say.
    pub condition: String,
}

fn ready_unless_told() -> bool {
    true
}

/// `GET /gru/v1/shared`: what the node would tell its friends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SharedView {
    pub node: String,
    pub at: u64,
    pub services: BTreeMap<String, SharedService>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SharedService {
    pub instances: usize,
    /// Of those, the ready ones (in discovery); `None` from an agent that does not say.
    pub ready: Option<usize>,
    pub metrics: BTreeMap<String, f64>,
    pub analytics: BTreeMap<String, AnalyticView>,
}

/// An analytic's value, or why there is none.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AnalyticView {
    Value(f64),
    Unavailable { unavailable: String },
}

/// `GET /gru/v1/decisions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DecisionsView {
    pub total: usize,
    pub decisions: Vec<Decision>,
}

/// `GET /gru/v1/actions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ActionsView {
    pub total: usize,
    pub actions: Vec<ActionRecord>,
}

/// One executed action, as the agent recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ActionRecord {
    pub at: u64,
    pub action: String,
    pub service: String,
    pub instance: Option<String>,
    /// `ok`, `dry-run`, `failed: <why>` or `skipped: <why>`.
    pub result: String,
    /// Why it was done, when the action's name does not say it all (a replacement of an
    /// instance failing its liveness check).
    pub reason: Option<String>,
}

impl ActionRecord {
    pub fn succeeded(&self) -> bool {
        self.result == "ok" || self.result == "dry-run"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_fields_more_or_fewer_are_read() {
        let node: NodeView = serde_json::from_str(
            r#"{"node":"n1","active":true,"future":1,"instances":{"running":2,"by_service":{"web":{"running":2}}}}"#,
        )
        .expect("node view");
        assert!(node.active);
        assert_eq!(node.instances.by_service["web"].running, 2);
        assert!(!node.config.loaded);

        let shared: SharedView = serde_json::from_str(
            r#"{"services":{"web":{"instances":1,"metrics":{"cpu_avg":0.5},
                "analytics":{"a":0.25,"b":{"unavailable":"no samples"}}}}}"#,
        )
        .expect("shared view");
        let web = &shared.services["web"];
        assert_eq!(web.analytics["a"], AnalyticView::Value(0.25));
        assert_eq!(
            web.analytics["b"],
            AnalyticView::Unavailable {
                unavailable: "no samples".into()
            }
        );
    }

    #[test]
    fn decisions_parse_as_the_planner_wrote_them() {
        let view: DecisionsView = serde_json::from_str(
            r#"{"total":1,"decisions":[{"action":{"kind":"scale-out","service":"web","count":1},
                "weights":[{"action":{"kind":"none"},"weight":0.4,"explanation":"","blocked_by":[],"clamped":null}],
                "draw":0.3,"reason":"because","dry_run":false,"at":12}]}"#,
        )
        .expect("decisions");
        assert_eq!(view.decisions[0].reason, "because");
        assert_eq!(view.decisions[0].draw, Some(0.3));
    }
}
