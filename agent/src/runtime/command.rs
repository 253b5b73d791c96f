//! Commands an operator sends to an agent (over the HTTP API, authenticated with the cluster
//! secret). They reach the autonomic loop through a bounded channel: when it is full the API
//! answers 503 rather than queueing without bound.

use serde::{Deserialize, Serialize};

/// Capacity of the command channel.
pub const COMMAND_QUEUE_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Drain this node (`drain node <n>`): it accepts no new instances, its instances are
    /// started elsewhere and then stopped here, and it reports when none is left.
    Drain,
    /// Take it back into service (`undrain node <n>`).
    Undrain,
    /// Leave the cluster (`leave node <n>`): only once drained; the agent stops and revokes
    /// its lease, and its drain record goes.
    Leave,
    /// Restart the agent (`restart agent <n>`): it stops, keeping its lease, and executes its
    /// own binary again with the same arguments (same pid); the new agent takes the lease
    /// back and adopts the node's containers, so nothing is started or stopped anywhere.
    Restart,
    /// Record Gru's CPU bounds of this node (`set node <n> cpumin|cpumax <v>`), fractions in
    /// [0, 1]; a bound left out keeps its value. They are published in the node's
    /// constraints record and shown; as in Gru, nothing decides on them.
    SetNodeCpu {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpumin: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpumax: Option<f64>,
    },
}
