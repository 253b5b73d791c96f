//! Operators' commands (`AgentCommand`, through the HTTP API) and the configuration reload
//! (from etcd), carried out by the loop between ticks (`set_active` also once by the daemon
//! before the loop starts).
//!
//! Invariants: an invalid configuration in etcd keeps the last good one (logged once per
//! reason); the node's `active` flag and base services are published under the node's
//! lease and kept in `NodeRecords`, so that re-registration after a lost lease writes the
//! current ones.

use std::sync::Arc;

use common::config::NodeConstraints;
use common::keys::NodeField;

use super::super::command::AgentCommand;
use super::super::config_source;
use super::Autonomic;
use crate::mape::CompiledAnalytics;

impl Autonomic {
    /// Reads the configuration from etcd. An invalid set keeps the last good configuration
    /// and is reported once.
    pub async fn reload(&mut self) {
        let snapshot = match config_source::read(&self.store, &self.keys, &self.shared.node).await {
            Ok(snapshot) => snapshot,
            Err(err) => {
                self.shared.telemetry.metrics.etcd_error();
                tracing::warn!(error = %err, "cannot read the configuration; keeping the current one");
                return;
            }
        };
        let mut knowledge = self.shared.knowledge();
        if let Some(constraints) = &snapshot.constraints {
            knowledge.base_services = constraints.base_services.clone();
            self.node_records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .constraints = constraints.clone();
        }
        match snapshot.config {
            Ok(config) => {
                let changed = knowledge.config.as_deref() != Some(&config);
                if changed {
                    self.compiled = Some((snapshot.revision, CompiledAnalytics::compile(&config)));
                    tracing::info!(
                        revision = snapshot.revision,
                        services = config.services.len(),
                        "configuration loaded"
                    );
                    knowledge.config = Some(Arc::new(config));
                }
                knowledge.config_status.revision = snapshot.revision;
                knowledge.config_status.rejected = None;
                self.last_rejection = None;
            }
            Err(reason) => {
                if self.last_rejection.as_deref() != Some(&reason) {
                    tracing::error!(%reason, "invalid configuration in etcd; keeping the last good one");
                    self.last_rejection = Some(reason.clone());
                }
                knowledge.config_status.rejected = Some(reason);
            }
        }
    }

    pub(super) async fn command(&mut self, command: AgentCommand) {
        tracing::info!(?command, "command received");
        match command {
            AgentCommand::Start => self.set_active(true).await,
            AgentCommand::Stop => self.set_active(false).await,
            AgentCommand::Update => self.reload().await,
            AgentCommand::Drain => self.set_drain(true, false).await,
            AgentCommand::Undrain => self.set_drain(false, false).await,
            AgentCommand::Leave => self.leave().await,
            AgentCommand::Restart => {
                self.record("restart", "", None, "ok: restarting the agent".to_owned());
                tracing::info!("restarting the agent: its lease and containers are kept");
                self.shared.restart.cancel();
            }
            AgentCommand::StartService { service } => {
                if self.shared.knowledge().drain.is_some() {
                    self.record(
                        "start-service",
                        &service,
                        None,
                        format!("refused: {}", drained_refusal(&self.shared.node)),
                    );
                    return;
                }
                if let Some(descriptor) = self
                    .config()
                    .and_then(|c| c.services.get(&service).cloned())
                {
                    // Asked once: it waits for a pull rather than be deferred.
                    self.start_now(&descriptor, 1, "start-service", &[]).await;
                    self.reconcile().await;
                }
            }
            AgentCommand::SetBaseServices { services } => self.set_base_services(services).await,
            AgentCommand::SetNodeCpu { cpumin, cpumax } => {
                let mut constraints = self.constraints();
                constraints.cpu_min = cpumin.or(constraints.cpu_min);
                constraints.cpu_max = cpumax.or(constraints.cpu_max);
                self.publish_constraints(constraints).await;
            }
            AgentCommand::StopService { service } => {
                self.stop_instances(&service, 1, "stop-service").await;
                self.reconcile().await;
            }
        }
    }

    /// Starts or stops the loop's actions and publishes the node's `active` record.
    pub async fn set_active(&mut self, active: bool) {
        self.shared.knowledge().active = active;
        self.node_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active = active;
        let key = self.keys.node(&self.shared.node, NodeField::Active);
        let lease = *self.lease.borrow();
        if let Err(err) = self.store.put(&key, &active.to_string(), Some(lease)).await {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot publish the node's active flag");
        }
        tracing::info!(
            active,
            "autonomic loop {}",
            if active { "started" } else { "stopped" }
        );
    }

    /// Records this node's base services and publishes them in its constraints record
    /// (under the node's lease, like the rest of its records).
    pub async fn set_base_services(&mut self, services: Vec<String>) {
        let mut constraints = self.constraints();
        constraints.base_services = services.clone();
        self.shared.knowledge().base_services = services;
        self.publish_constraints(constraints).await;
        let active = self.shared.knowledge().active;
        if let Some(config) = self.config() {
            self.keep_floor(&config, active).await;
            self.reconcile().await;
        }
    }

    /// This node's constraints record as last published.
    fn constraints(&self) -> NodeConstraints {
        self.node_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .constraints
            .clone()
    }

    /// Keeps `constraints` for re-registration and writes them under the node's lease.
    async fn publish_constraints(&mut self, constraints: NodeConstraints) {
        self.node_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .constraints = constraints.clone();
        let key = self.keys.node(&self.shared.node, NodeField::Constraints);
        let lease = *self.lease.borrow();
        let value = serde_json::to_string(&constraints).unwrap_or_else(|_| "{}".to_owned());
        if let Err(err) = self.store.put(&key, &value, Some(lease)).await {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot publish the node's constraints");
        }
    }
}

/// Why a drained node takes no new instance (the API's answer and the action record).
pub fn drained_refusal(node: &str) -> String {
    format!("node {node} is drained: it accepts no new instance (undrain node {node} first)")
}
