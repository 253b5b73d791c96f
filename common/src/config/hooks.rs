//! `config.json`'s `Nodes` section: the hooks that add and remove machines when the cluster
//! saturates or idles (gru's addition; Gru scaled containers only).
//!
//! A hook is an exec command (the agent runs it on its own node, with the cluster, the
//! reason and the wanted count in its environment) or a webhook URL (a JSON body signed
//! with the cluster secret), with a timeout and a number of retries. Leaving a hook out
//! means nothing is called.

use serde::{Deserialize, Serialize};

use super::problem::{Findings, JsonPath};
use super::schema::{Field, Shape, field};

pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_HOOK_RETRIES: u32 = 2;
/// How long a scale-out no node can hold must last before the add-node hook is called.
pub const DEFAULT_SATURATED_PERIOD_SECS: u64 = 60;
/// How long a node must have had no instance but its base services before it is drained
/// and removed.
pub const DEFAULT_IDLE_PERIOD_SECS: u64 = 600;
/// At most one add-node call per this many seconds, cluster-wide.
pub const DEFAULT_NODES_COOLDOWN_SECS: u64 = 300;

/// `Nodes`: what to run when nodes must come or go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodesConfig {
    /// Seconds a scale-out must stay blocked by every node's room (this node's guard says
    /// "no free resources") before the cluster counts as saturated.
    #[serde(rename = "SaturatedPeriod")]
    pub saturated_period_secs: u64,
    /// Seconds between two add-node calls, and between two idle nodes' removals,
    /// cluster-wide (leases in etcd).
    #[serde(rename = "Cooldown")]
    pub cooldown_secs: u64,
    /// Seconds a node must have had no instance but its base services (with another node
    /// in the cluster) before it drains itself and calls the remove-node hook.
    #[serde(rename = "IdlePeriod")]
    pub idle_period_secs: u64,
    /// A node is idle too when its instances that are not base services, moved onto the
    /// other nodes, would leave their CPU and memory demand under this fraction of their
    /// capacity (and it is the node that moves least), for `IdlePeriod`. None: off.
    #[serde(rename = "IdleHeadroom", skip_serializing_if = "Option::is_none")]
    pub idle_headroom: Option<f64>,
    /// Called when the cluster saturates: a scale-out no node can hold.
    #[serde(rename = "AddNodeHook", skip_serializing_if = "Option::is_none")]
    pub add_node_hook: Option<HookConfig>,
    /// Called with a drained node's name, before it leaves.
    #[serde(rename = "RemoveNodeHook", skip_serializing_if = "Option::is_none")]
    pub remove_node_hook: Option<HookConfig>,
}

/// One hook: `Command` or `Url`, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookConfig {
    /// The program and its arguments, run without a shell.
    #[serde(rename = "Command", skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// An `http://` URL that receives a POST of the hook's JSON body.
    #[serde(rename = "Url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seconds one attempt may take; past it the command is killed or the request dropped.
    #[serde(rename = "Timeout")]
    pub timeout_secs: u64,
    /// Attempts after the first when one fails (a non-zero exit, a non-2xx answer, a
    /// timeout).
    #[serde(rename = "Retries")]
    pub retries: u32,
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            saturated_period_secs: DEFAULT_SATURATED_PERIOD_SECS,
            cooldown_secs: DEFAULT_NODES_COOLDOWN_SECS,
            idle_period_secs: DEFAULT_IDLE_PERIOD_SECS,
            idle_headroom: None,
            add_node_hook: None,
            remove_node_hook: None,
        }
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            command: Vec::new(),
            url: None,
            timeout_secs: DEFAULT_HOOK_TIMEOUT_SECS,
            retries: DEFAULT_HOOK_RETRIES,
        }
    }
}

/// What a hook does, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget<'a> {
    Exec(&'a [String]),
    Webhook(&'a str),
}

impl HookConfig {
    /// `None` only for a hook validation refused (neither or both).
    pub fn target(&self) -> Option<HookTarget<'_>> {
        match (&self.command[..], &self.url) {
            ([_, ..], None) => Some(HookTarget::Exec(&self.command)),
            ([], Some(url)) => Some(HookTarget::Webhook(url)),
            _ => None,
        }
    }
}

const HOOK_FIELDS: &[Field] = &[
    field("Command", Shape::Any),
    field("Url", Shape::Any),
    field("Timeout", Shape::Any),
    field("Retries", Shape::Any),
];
pub(crate) const NODES_FIELDS: &[Field] = &[
    field("SaturatedPeriod", Shape::Any),
    field("Cooldown", Shape::Any),
    field("IdlePeriod", Shape::Any),
    field("IdleHeadroom", Shape::Any),
    field("AddNodeHook", Shape::Object(HOOK_FIELDS)),
    field("RemoveNodeHook", Shape::Object(HOOK_FIELDS)),
];

pub(crate) fn validate(nodes: &NodesConfig, findings: &mut Findings) {
    findings.at_least("Nodes.SaturatedPeriod", nodes.saturated_period_secs, 1);
    findings.at_least("Nodes.Cooldown", nodes.cooldown_secs, 1);
    findings.at_least("Nodes.IdlePeriod", nodes.idle_period_secs, 1);
    if let Some(headroom) = nodes.idle_headroom
        && !(headroom > 0.0 && headroom <= 1.0)
    {
        findings.add_with_hint(
            &JsonPath::fields("Nodes.IdleHeadroom"),
            format!("must be in (0, 1], found {headroom}"),
            Some("a fraction of the other nodes' capacity, e.g. 0.5".to_owned()),
        );
    }
    for (name, hook) in [
        ("AddNodeHook", &nodes.add_node_hook),
        ("RemoveNodeHook", &nodes.remove_node_hook),
    ] {
        let Some(hook) = hook else { continue };
        let at = |leaf: &str| format!("Nodes.{name}.{leaf}");
        match (hook.command.is_empty(), &hook.url) {
            (true, None) => findings.add_with_hint(
                &JsonPath::fields(&format!("Nodes.{name}")),
                "names neither a Command nor a Url",
                Some(
                    "e.g. \"Command\": [\"/usr/local/bin/add-node\"] or \"Url\": \
                     \"http://10.0.0.1:8080/hooks\""
                        .to_owned(),
                ),
            ),
            (false, Some(_)) => findings.add(
                &JsonPath::fields(&format!("Nodes.{name}")),
                "names both a Command and a Url: choose one",
            ),
            (false, None) => {
                if !hook.command[0].starts_with('/') {
                    findings.add_with_hint(
                        &JsonPath::fields(&at("Command")),
                        format!("{:?} is not an absolute path", hook.command[0]),
                        Some(
                            "agents run from any directory: write the program's whole path"
                                .to_owned(),
                        ),
                    );
                }
            }
            (true, Some(url)) => {
                if !url.starts_with("http://") || url.len() <= "http://".len() {
                    findings.add_with_hint(
                        &JsonPath::fields(&at("Url")),
                        format!("{url:?} is not an http:// URL"),
                        Some(
                            "the body is signed with the cluster secret, not encrypted: \
                             reach an HTTPS endpoint through a local proxy"
                                .to_owned(),
                        ),
                    );
                }
            }
        }
        findings.at_least(&at("Timeout"), hook.timeout_secs, 1);
    }
}
