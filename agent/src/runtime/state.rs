//! The agent's shared knowledge: one writer per part (the loop, the monitor tasks, the HTTP
//! API), many cheap readers. A std `Mutex` is right here: every critical section is a few
//! map operations with no `.await` inside, so an async mutex would only add cost.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use common::config::ClusterConfig;
use serde::Serialize;

use crate::mape::{AnalyticValue, Decision, Millis, ServiceMetrics, WindowSettings};

/// Decisions kept for `why` (every tick's, including "no action").
pub const DECISION_HISTORY_LEN: usize = 256;
/// Executed actions kept for `events`.
pub const ACTION_HISTORY_LEN: usize = 256;

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
    pub analytics: BTreeMap<String, BTreeMap<String, AnalyticValue>>,
    pub decisions: VecDeque<Decision>,
    pub actions: VecDeque<ActionRecord>,
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
            analytics: BTreeMap::new(),
            decisions: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    pub fn record_decision(&mut self, decision: Decision) {
        if self.decisions.len() == DECISION_HISTORY_LEN {
            self.decisions.pop_front();
        }
        self.decisions.push_back(decision);
    }

    pub fn record_action(&mut self, record: ActionRecord) {
        if self.actions.len() == ACTION_HISTORY_LEN {
            self.actions.pop_front();
        }
        self.actions.push_back(record);
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
    secret: String,
    knowledge: Mutex<Knowledge>,
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
            secret: secret.to_owned(),
            knowledge: Mutex::new(Knowledge::new(window)),
        }
    }

    /// Locks the knowledge. A panic while holding the lock leaves data that is still
    /// consistent map by map, so a poisoned lock is taken over rather than propagated.
    pub fn knowledge(&self) -> MutexGuard<'_, Knowledge> {
        self.knowledge
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Constant-time comparison of a presented secret with the cluster's.
    pub fn secret_matches(&self, presented: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), presented.as_bytes());
        if a.len() != b.len() || a.is_empty() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
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
        assert!(s.secret_matches("s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3CRET", "s3creu"] {
            assert!(!s.secret_matches(wrong), "{wrong:?} matched");
        }
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
            });
        }
        assert_eq!(k.actions.len(), ACTION_HISTORY_LEN);
        assert_eq!(k.actions.front().map(|a| a.at), Some(Millis(10)));
    }
}
