//! Node records: what `gru join` writes about a node under `/gru/<cluster>/nodes/<node>/` and
//! `gru manage` and the agents read back.
//!
//! They are written by gru, not by hand, but are read with the same case-insensitive parser
//! and checks as the operator's documents, so a record edited around the CLI is still
//! refused with a clear reason rather than half-understood.

use serde::{Deserialize, Serialize};

use super::document::parse_document;
use super::name::{check_name, check_no_empty_names};
use super::problem::{Findings, JsonPath, Problem};
use super::schema::{Field, Shape, field};

/// Where a node's agent can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeConfig {
    pub name: String,
    /// Host name or IP address of the agent's HTTP API.
    pub address: String,
    pub port: u16,
    /// How the agent serves its API: `http`, or `https` when it was joined with TLS
    /// (`gru join --tls-cert`). Records written before TLS existed have no `Scheme` and mean
    /// `http`; an `http` record is written without it, as before.
    #[serde(skip_serializing_if = "Scheme::is_http")]
    pub scheme: Scheme,
}

/// The scheme a node's agent serves its API with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    /// TLS with the cluster's CA: peers must present a node certificate (`gru tls`).
    Https,
}

impl Scheme {
    pub fn is_http(&self) -> bool {
        *self == Scheme::Http
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node must run whatever the policy says, and Gru's CPU bounds of the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeConstraints {
    /// Services kept running on this node, one instance each.
    pub base_services: Vec<String>,
    /// Gru's `CpuMin` (`set node <n> cpumin <v>`), a fraction of the node's CPU in [0, 1].
    /// Recorded and shown as Gru did; neither Gru's planner nor gru's reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_min: Option<f64>,
    /// Gru's `CpuMax`, as `cpu_min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<f64>,
}

/// What a node offers to containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeResources {
    #[serde(rename = "TotalCpus")]
    pub total_cpus: u32,
    #[serde(rename = "TotalMemory")]
    pub total_memory_bytes: u64,
}

const NODE_CONFIG_FIELDS: &[Field] = &[
    field("Name", Shape::Any),
    field("Address", Shape::Any),
    field("Port", Shape::Any),
    field("Scheme", Shape::Any),
];
const NODE_CONSTRAINTS_FIELDS: &[Field] = &[
    field("BaseServices", Shape::Any),
    field("CpuMin", Shape::Any),
    field("CpuMax", Shape::Any),
];
const NODE_RESOURCES_FIELDS: &[Field] = &[
    field("TotalCpus", Shape::Any),
    field("TotalMemory", Shape::Any),
];

/// Parses and validates a node's configuration record.
pub fn parse_node_config(file: &str, text: &str) -> Result<NodeConfig, Vec<Problem>> {
    parse_document(
        file,
        text,
        NODE_CONFIG_FIELDS,
        |node: &NodeConfig, findings: &mut Findings| {
            check_name(findings, "Name", "node", &node.name);
            findings.required("Address", &node.address);
            findings.at_least("Port", node.port.into(), 1);
        },
    )
}

/// Parses and validates a node's constraints record.
pub fn parse_node_constraints(file: &str, text: &str) -> Result<NodeConstraints, Vec<Problem>> {
    parse_document(
        file,
        text,
        NODE_CONSTRAINTS_FIELDS,
        |constraints: &NodeConstraints, findings: &mut Findings| {
            check_no_empty_names(
                findings,
                &JsonPath::fields("BaseServices"),
                &constraints.base_services,
            );
            for (path, bound) in [
                ("CpuMin", constraints.cpu_min),
                ("CpuMax", constraints.cpu_max),
            ] {
                if let Some(bound) = bound.filter(|b| !(0.0..=1.0).contains(b)) {
                    findings.add(
                        &JsonPath::fields(path),
                        format!("{bound} is outside [0, 1]"),
                    );
                }
            }
        },
    )
}

/// Parses and validates a node's resources record.
pub fn parse_node_resources(file: &str, text: &str) -> Result<NodeResources, Vec<Problem>> {
    parse_document(
        file,
        text,
        NODE_RESOURCES_FIELDS,
        |resources: &NodeResources, findings: &mut Findings| {
            findings.at_least("TotalCpus", resources.total_cpus.into(), 1);
        },
    )
}
