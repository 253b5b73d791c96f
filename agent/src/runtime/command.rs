//! Commands an operator sends to an agent (over the HTTP API, authenticated with the cluster
//! secret). They reach the autonomic loop through a bounded channel: when it is full the API
//! answers 503 rather than queueing without bound.

use serde::{Deserialize, Serialize};

/// Capacity of the command channel.
pub const COMMAND_QUEUE_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum AgentCommand {
    /// Start the autonomic loop (`start agent`): the node becomes active.
    Start,
    /// Stop the loop (`stop agent`); containers keep running.
    Stop,
    /// Reload the configuration from etcd now.
    Update,
    /// Start one instance of a service on this node.
    StartService { service: String },
    /// Stop one instance of a service on this node.
    StopService { service: String },
    /// Replace this node's base services (Gru's `set node <n> base-services <s...>`): the
    /// agent keeps one instance of each running here and publishes its constraints record.
    SetBaseServices { services: Vec<String> },
}
