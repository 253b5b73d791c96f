//! What etcd says about a cluster, read in one request and parsed with the same parsers the
//! agents use: its nodes (config, constraints, resources, active) and its documents.
//!
//! [`ClusterState::from_entries`] is pure, so the parsing of a tree (including records
//! written around the CLI) is table-tested without etcd.

use std::collections::BTreeMap;

use common::config::{
    AgentConfig, NodeConfig, NodeConstraints, NodeResources, PolicyConfig, ServiceDescriptor,
    parse_agent_config, parse_node_config, parse_node_constraints, parse_node_resources,
    parse_policy, parse_service,
};
use common::keys::{ClusterKeys, NodeField, leaf_name};
use gru_agent::store::{Entry, Store, StoreError};
use serde_json::Value;

use super::agent_client::NodeEndpoint;
use super::grammar::Targets;

/// The nodes a command is for: those that can be reached, and those whose records do not
/// say where (each with why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub endpoints: Vec<NodeEndpoint>,
    pub broken: Vec<(String, String)>,
}

/// One node as its records say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    pub name: String,
    pub config: Option<NodeConfig>,
    pub constraints: NodeConstraints,
    pub resources: Option<NodeResources>,
    pub active: bool,
    /// Records that could not be read, each with why.
    pub problems: Vec<String>,
}

impl NodeRecord {
    /// Where its agent listens, when its config record says.
    pub fn endpoint(&self) -> Option<NodeEndpoint> {
        self.config.as_ref().map(|config| NodeEndpoint {
            node: self.name.clone(),
            address: host_port(&config.address, config.port),
            scheme: config.scheme,
        })
    }

    pub fn address(&self) -> String {
        self.endpoint()
            .map_or_else(|| "?".to_owned(), |e| e.address)
    }
}

/// `host:port`, bracketing an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A cluster's tree at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub id: Option<String>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Every service document: its descriptor, or why it cannot be read.
    pub services: BTreeMap<String, Result<ServiceDescriptor, String>>,
    /// Raw documents, as stored, for `show` in JSON.
    pub raw_services: BTreeMap<String, Value>,
    pub analytics: Vec<String>,
    pub agent_config: Option<Result<AgentConfig, String>>,
    pub policy: Option<Result<PolicyConfig, String>>,
    pub raw_config: Option<Value>,
    pub raw_policy: Option<Value>,
}

fn problems_text(problems: Vec<common::config::Problem>) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl ClusterState {
    /// Reads the cluster's whole prefix (one request).
    pub async fn read(store: &Store, keys: &ClusterKeys) -> Result<ClusterState, StoreError> {
        let entries = store.get_prefix(&keys.prefix()).await?;
        Ok(ClusterState::from_entries(keys, &entries))
    }

    pub fn from_entries(keys: &ClusterKeys, entries: &[Entry]) -> ClusterState {
        let mut state = ClusterState::default();
        for entry in entries {
            let (key, text) = (entry.key.as_str(), entry.value.as_str());
            if key == keys.uuid() {
                state.id = Some(text.to_owned());
            } else if key == keys.config() {
                state.agent_config =
                    Some(parse_agent_config("config", text).map_err(problems_text));
                state.raw_config = Some(raw(text));
            } else if key == keys.policy() {
                state.policy = Some(parse_policy("policy", text).map_err(problems_text));
                state.raw_policy = Some(raw(text));
            } else if let Some(name) = leaf_name(&keys.services_prefix(), key) {
                let file = format!("services/{name}");
                let parsed = parse_service(&file, text).map_err(problems_text);
                state.services.insert(name.to_owned(), parsed);
                // Shown by `show service`: its secrets never are.
                let mut shown = raw(text);
                common::config::redact_service_json(&mut shown);
                state.raw_services.insert(name.to_owned(), shown);
            } else if let Some(name) = leaf_name(&keys.analytics_prefix(), key) {
                state.analytics.push(name.to_owned());
            } else if let Some((node, field)) = keys.parse_node_key(key) {
                let record = state
                    .nodes
                    .entry(node.to_owned())
                    .or_insert_with(|| NodeRecord {
                        name: node.to_owned(),
                        ..NodeRecord::default()
                    });
                let file = format!("nodes/{node}/{field}");
                match field {
                    NodeField::Config => match parse_node_config(&file, text) {
                        Ok(config) => record.config = Some(config),
                        Err(problems) => record.problems.push(problems_text(problems)),
                    },
                    NodeField::Constraints => match parse_node_constraints(&file, text) {
                        Ok(constraints) => record.constraints = constraints,
                        Err(problems) => record.problems.push(problems_text(problems)),
                    },
                    NodeField::Resources => match parse_node_resources(&file, text) {
                        Ok(resources) => record.resources = Some(resources),
                        Err(problems) => record.problems.push(problems_text(problems)),
                    },
                    NodeField::Active => record.active = text.trim() == "true",
                }
            }
        }
        state
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// The descriptor of `service`, or why there is none (with the nearest name).
    pub fn service(&self, service: &str) -> Result<&ServiceDescriptor, String> {
        match self.services.get(service) {
            Some(Ok(descriptor)) => Ok(descriptor),
            Some(Err(why)) => Err(format!("service {service} cannot be read from etcd: {why}")),
            None => Err(unknown("service", service, &self.service_names())),
        }
    }

    /// Checks that every named service exists.
    pub fn check_services(&self, services: &[String]) -> Result<(), String> {
        services.iter().try_for_each(|s| self.service(s).map(drop))
    }

    /// The nodes `targets` name, with their endpoints. An unknown name is an error that
    /// lists the live ones; a live node whose config record cannot be read is set aside
    /// in [`Resolved::broken`], to be reported with the others' results.
    pub fn resolve(&self, targets: &Targets) -> Result<Resolved, String> {
        let names: Vec<String> = match targets {
            Targets::All => {
                if self.nodes.is_empty() {
                    return Err(
                        "the cluster has no live node (start agents with `gru join`)".to_owned(),
                    );
                }
                self.node_names()
            }
            Targets::Nodes(names) => names.clone(),
        };
        let mut resolved = Resolved::default();
        for name in &names {
            let record = self
                .nodes
                .get(name)
                .ok_or_else(|| unknown("node", name, &self.node_names()))?;
            match record.endpoint() {
                Some(endpoint) => resolved.endpoints.push(endpoint),
                None => resolved.broken.push((
                    name.clone(),
                    format!(
                        "its config record cannot be read: {}",
                        record.problems.join("; ")
                    ),
                )),
            }
        }
        Ok(resolved)
    }

    /// The services each node must keep, as their constraints records say.
    pub fn base_services(&self, node: &str) -> Vec<String> {
        self.nodes
            .get(node)
            .map(|n| n.constraints.base_services.clone())
            .unwrap_or_default()
    }
}

/// "no live node n9 in the cluster; did you mean n1? (nodes: n1, n2)".
pub fn unknown(kind: &str, name: &str, known: &[String]) -> String {
    let live = if kind == "node" { "live " } else { "" };
    let mut message = format!("no {live}{kind} {name} in the cluster");
    if let Some(near) = super::grammar::nearest(name, known.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean {near}?"));
    }
    if known.is_empty() {
        message.push_str(&format!(" (it has no {kind})"));
    } else {
        message.push_str(&format!(" ({kind}s: {})", known.join(", ")));
    }
    message
}

/// The clusters in etcd: every `/gru/<cluster>/uuid`.
pub fn cluster_names(entries: &[Entry]) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            e.key
                .strip_prefix(common::keys::ROOT)?
                .strip_suffix("/uuid")
        })
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            mod_revision: 1,
        }
    }

    fn state() -> ClusterState {
        let keys = ClusterKeys::new("c").expect("name");
        ClusterState::from_entries(
            &keys,
            &[
                entry("/gru/c/uuid", "id-1"),
                entry(
                    "/gru/c/services/web",
                    r#"{"Name":"web","Image":"img","Configuration":{"cpunumber":1,"Memory":"64m"}}"#,
                ),
                entry("/gru/c/services/bad", r#"{"Name":"bad","Image":5}"#),
                entry("/gru/c/analytics/load", "{}"),
                entry(
                    "/gru/c/nodes/n1/config",
                    r#"{"Name":"n1","Address":"10.0.0.1","Port":8080}"#,
                ),
                entry("/gru/c/nodes/n1/constraints", r#"{"BaseServices":["web"]}"#),
                entry(
                    "/gru/c/nodes/n1/resources",
                    r#"{"TotalCpus":4,"TotalMemory":1024}"#,
                ),
                entry("/gru/c/nodes/n1/active", "true"),
                entry(
                    "/gru/c/nodes/n2/config",
                    r#"{"Name":"n2","Address":"::1","Port":9000}"#,
                ),
                entry("/gru/c/nodes/n2/active", "false"),
                entry("/gru/c/nodes/n3/config", "not json"),
                entry("/gru/c/discovery/web/i1", "10.0.0.1:1"),
            ],
        )
    }

    #[test]
    fn a_tree_is_read_into_nodes_and_documents() {
        let state = state();
        assert_eq!(state.id.as_deref(), Some("id-1"));
        assert_eq!(state.node_names(), ["n1", "n2", "n3"]);
        let n1 = &state.nodes["n1"];
        assert!(n1.active);
        assert_eq!(n1.constraints.base_services, ["web"]);
        assert_eq!(n1.resources.as_ref().map(|r| r.total_cpus), Some(4));
        assert_eq!(n1.address(), "10.0.0.1:8080");
        assert_eq!(state.nodes["n2"].address(), "[::1]:9000");
        assert!(!state.nodes["n2"].active);
        assert_eq!(state.nodes["n3"].config, None);
        assert_eq!(state.nodes["n3"].problems.len(), 1);
        assert_eq!(
            state.service("web").map(|s| s.configuration.cpu_number),
            Ok(1)
        );
        let bad = state.service("bad").expect_err("invalid");
        assert!(bad.contains("cannot be read"), "{bad}");
        assert_eq!(state.analytics, ["load"]);
    }

    #[test]
    fn targets_resolve_to_endpoints_or_name_the_unknown_node() {
        let state = state();
        let resolved = state
            .resolve(&Targets::Nodes(vec!["n2".into(), "n1".into()]))
            .expect("known");
        let names: Vec<&str> = resolved.endpoints.iter().map(|e| e.node.as_str()).collect();
        assert_eq!(names, ["n2", "n1"]);
        assert!(resolved.broken.is_empty());
        let err = state
            .resolve(&Targets::Nodes(vec!["n9".into()]))
            .expect_err("unknown");
        assert_eq!(
            err,
            "no live node n9 in the cluster; did you mean n1? (nodes: n1, n2, n3)"
        );
        let all = state.resolve(&Targets::All).expect("live nodes");
        assert_eq!(all.endpoints.len(), 2);
        assert_eq!(all.broken.len(), 1);
        assert_eq!(all.broken[0].0, "n3");
        assert!(
            all.broken[0].1.contains("config record cannot be read"),
            "{:?}",
            all.broken
        );
        let err = ClusterState::default()
            .resolve(&Targets::All)
            .expect_err("empty");
        assert!(err.contains("no live node"), "{err}");
    }

    #[test]
    fn cluster_names_come_from_their_ids() {
        let entries = [
            entry("/gru/a/uuid", "1"),
            entry("/gru/a/config", "{}"),
            entry("/gru/b/uuid", "2"),
            entry("/gru/b/nodes/x/uuid", "not a cluster"),
        ];
        assert_eq!(cluster_names(&entries), ["a", "b"]);
    }
}
