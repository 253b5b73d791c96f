//! A test cluster on this machine: a throwaway etcd, a cluster with a pushed
//! configuration on it, and the agents that join it. Everything goes when the [`Cluster`]
//! and its agents drop, also when a test panics: a test keeps its agents in locals declared
//! after the `Cluster` (so they are killed first and restart nothing), then the `Cluster`
//! drops its fields in order: logs, configuration, etcd, and last the cluster's containers.

use std::path::Path;

use testkit::{ClusterContainers, EtcdCluster};

use super::agents::{Agent, AgentCommand, spawn_nodes};
use super::configs::TestConfig;

pub struct Cluster {
    /// The cluster's name (`t<pid>-<tag>`).
    pub name: String,
    /// The cluster secret (Bearer for commands and stats, HMAC key for gossip).
    pub secret: String,
    pub logs: tempfile::TempDir,
    pub config: TestConfig,
    pub etcd: EtcdCluster,
    /// Removes every container of the cluster.
    pub containers: ClusterContainers,
}

impl Cluster {
    /// A fresh one-member etcd, the cluster `t<pid>-<tag>` created on it and `config`
    /// pushed.
    pub fn start(tag: &str, config: TestConfig) -> Cluster {
        let containers = ClusterContainers::unique(tag);
        let etcd = EtcdCluster::start();
        Self::on(etcd, containers, config)
    }

    /// Like [`Cluster::start`] on the given etcd (several members, say).
    pub fn on(etcd: EtcdCluster, containers: ClusterContainers, config: TestConfig) -> Cluster {
        let name = containers.cluster.clone();
        config.create_and_push(&etcd, &name);
        Cluster {
            secret: secret(&etcd, &name),
            name,
            logs: tempfile::tempdir().unwrap(),
            config,
            etcd,
            containers,
        }
    }

    pub fn endpoints(&self) -> String {
        self.etcd.endpoints()
    }

    /// How an agent `node` of this cluster is started (see [`AgentCommand`]).
    pub fn agent<'a>(&'a self, node: &'a str) -> AgentCommand<'a> {
        AgentCommand::new(&self.endpoints(), &self.name, node, self.logs.path())
    }

    /// `node` joined and started, waited for until it answers.
    pub fn spawn(&self, node: &str) -> Agent {
        AgentCommand::new(&self.endpoints(), &self.name, node, self.logs.path()).spawn()
    }

    /// `n1` ... `n<count>` joined and started, each waited for until it answers.
    pub fn spawn_nodes(&self, count: usize) -> Vec<Agent> {
        spawn_nodes(
            &self.endpoints(),
            &self.name,
            count,
            self.logs.path(),
            "info",
        )
    }

    /// Discovery records of `service`: instance → address.
    pub fn registered(&self, service: &str) -> Vec<(String, String)> {
        registered(&self.etcd, &self.name, service)
    }

    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }
}

/// The cluster secret (Bearer for commands and stats, HMAC key for gossip).
pub fn secret(etcd: &EtcdCluster, cluster: &str) -> String {
    etcd.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("/gru/{cluster}/secret"),
    ])
    .trim()
    .to_owned()
}

/// Discovery records of `service`: instance → address.
pub fn registered(etcd: &EtcdCluster, cluster: &str, service: &str) -> Vec<(String, String)> {
    let prefix = format!("/gru/{cluster}/discovery/{service}/");
    etcd.dump(&prefix)
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches(&prefix).to_owned(), v))
        .collect()
}
