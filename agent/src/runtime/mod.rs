//! The agent at run time: its shared knowledge, the commands it takes, and the tasks that
//! keep the knowledge current and act on it.
//!
//! * `state`: `Shared` (identity, keys, tokens) and `Knowledge` (config, metrics, instances,
//!   decision and action histories), behind one std mutex.
//! * `credentials`: the cluster key, its rotation and the operator tokens, kept current
//!   from etcd.
//! * `command`: what operators can ask an agent to do.
//! * `config_source`: the configuration read from etcd, last good one kept.
//! * `monitor`: per-container stats and log followers feeding the metric windows.
//! * `gossip`: the rounds with friends that keep the cluster view current.
//! * `peers`: the other nodes, from their etcd records, and those that came and went.
//! * `usage`: the node's CPU and memory in use and its free cores, from the stats readings.
//! * `hooks`: the add-node and remove-node hooks (exec or signed webhook, timeout, retries).
//! * `liveness`: asks a node whether it runs, when etcd says it is gone.
//! * `health`: probes each instance's readiness and liveness checks (HTTP, TCP, exec), one
//!   task per instance, and wakes the loop when a state changes.
//! * `autonomic`: the loop: reconcile with Docker, keep the floor, plan, claim, execute (one
//!   file per part).

pub mod autonomic;
pub mod command;
pub mod config_source;
pub mod credentials;
pub mod gossip;
pub mod health;
pub mod history;
pub mod hooks;
pub mod liveness;
pub mod monitor;
pub mod peers;
pub mod state;
pub mod usage;

pub use autonomic::{Autonomic, AutonomicParts};
pub use command::{AgentCommand, COMMAND_QUEUE_LEN};
pub use state::{ActionRecord, DrainRecord, InstanceInfo, Knowledge, Shared, StartBackoff};
