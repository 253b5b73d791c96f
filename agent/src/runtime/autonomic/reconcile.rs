//! Reconcile: Docker is the truth about what runs. Every reconcile lists this node's
//! labelled containers, adopts the running ones into the knowledge (instances, metric
//! windows), removes exited ones and orphaned sidecars (`tick::local::verdict` says which),
//! follows the running ones (stats and logs: `super::super::monitor`; health checks:
//! `super::super::health`), and makes this agent's records exactly its running instances,
//! the ready ones in discovery and the others as starting records (`tick::local::publish`
//! says which to write and delete).
//!
//! Invariants: a listing that fails keeps the last view (nothing is removed on a guess); a
//! removal or a record that failed is tried again at the next reconcile; records written
//! under a lost lease are all written again under the new one, and the loop remembers when
//! (see `withheld`). A restarted agent adopts its containers by label, without duplicates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

use common::config::ClusterConfig;
use tokio::task::JoinHandle;

use super::super::health::{ProbeTarget, health_of};
use super::super::monitor;
use super::super::state::InstanceInfo;
use super::execute::stop_grace;
use super::{Autonomic, now};
use crate::docker::{ContainerState, ManagedContainer};
use crate::health::CheckRole;
use crate::mape::Millis;
use crate::tick::local::{self, Record, Verdict};

impl Autonomic {
    /// Makes the knowledge match Docker: adopts this node's containers, removes dead ones
    /// and orphaned sidecars, follows the running ones, and publishes discovery records
    /// for exactly the running instances.
    pub async fn reconcile(&mut self) {
        let containers = match self
            .engine
            .list_managed(&self.shared.cluster, Some(&self.shared.node))
            .await
        {
            Ok(containers) => containers,
            Err(err) => {
                self.shared.telemetry.metrics.docker_error();
                tracing::warn!(error = %err, "cannot list containers; keeping the last view");
                return;
            }
        };
        let config = self.config();
        let pins = config.as_ref().is_some_and(|c| {
            c.services
                .values()
                .any(|s| s.configuration.cpu_number > 0 || s.configuration.cpuset_cpus.is_some())
        });
        let held = if pins {
            self.engine.held_cpusets().await.ok()
        } else {
            None
        };
        self.shared.knowledge().engine_cpusets = held;
        let running_instances: BTreeSet<&str> = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.instance.as_str())
            .collect();
        let mut keep = Vec::new();
        let mut remove = Vec::new();
        for container in &containers {
            let (instance, service) = (&container.instance, &container.service);
            match local::verdict(instance, service, container.state, &running_instances) {
                Verdict::Keep => keep.push(container.clone()),
                Verdict::Remove { stop_first } => remove.push((container.clone(), stop_first)),
                Verdict::Leave => {}
            }
        }
        for (container, stop_first) in &remove {
            tracing::info!(id = %container.id, service = %container.service, state = ?container.state, "removing container that is not running");
            let grace = stop_grace(config.as_deref(), &container.service);
            if *stop_first {
                let _ = self.engine.stop_instance(&container.id, grace).await;
            }
            if let Err(err) = self.engine.remove_instance(&container.id).await {
                self.shared.telemetry.metrics.docker_error();
                tracing::warn!(id = %container.id, error = %err, "cannot remove container");
            }
        }

        let now = now();
        let mut infos = BTreeMap::new();
        for container in &keep {
            let address = self.instance_address(config.as_deref(), container);
            let started_at = Millis(
                container
                    .created_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(now.0),
            );
            infos.insert(
                container.id.clone(),
                InstanceInfo {
                    id: container.id.clone(),
                    service: container.service.clone(),
                    instance: container.instance.clone(),
                    state: "running".into(),
                    address: Some(address),
                    started_at,
                    version: container.version.clone(),
                    image: container.image.clone(),
                    ready: true,
                    health: None,
                    replaces: container.replaces.clone(),
                },
            );
        }
        let probe_targets = self.probe_targets(config.as_deref(), &keep, &infos);
        {
            let mut knowledge = self.shared.knowledge();
            // Readiness as the probes last found it (ready at once without a check).
            for info in infos.values_mut() {
                let checks = config
                    .as_deref()
                    .and_then(|c| c.services.get(&info.service))
                    .map(|s| &s.health);
                (info.ready, info.health) = health_of(&knowledge.health, &info.id, checks);
            }
            let live: BTreeSet<(String, String)> = infos
                .values()
                .map(|i| (i.service.clone(), i.instance.clone()))
                .collect();
            knowledge.metrics.retain_instances(|service, instance| {
                live.contains(&(service.to_owned(), instance.to_owned()))
            });
            for info in infos.values() {
                knowledge
                    .metrics
                    .instance_started(&info.service, &info.instance, info.started_at);
            }
            knowledge.instances = infos.clone();
        }
        self.follow(&infos, config.as_deref());
        self.probes
            .follow(probe_targets, &self.engine, &self.shared);
        self.publish(&infos).await;
    }

    /// The instances whose services declare health checks, and where to probe them: the
    /// host port of the checks' port (their `Port`, else the `DiscoveryPort`) on the node's
    /// address.
    fn probe_targets(
        &self,
        config: Option<&ClusterConfig>,
        keep: &[ManagedContainer],
        infos: &BTreeMap<String, InstanceInfo>,
    ) -> Vec<ProbeTarget> {
        let Some(config) = config else {
            return Vec::new();
        };
        keep.iter()
            .filter_map(|container| {
                let descriptor = config.services.get(&container.service)?;
                let checks = &descriptor.health;
                if checks.is_empty() {
                    return None;
                }
                let addresses = [
                    (CheckRole::Readiness, &checks.readiness),
                    (CheckRole::Liveness, &checks.liveness),
                ]
                .into_iter()
                .filter_map(|(role, check)| {
                    let port = check.as_ref()?.port_or(descriptor.discovery_port)?;
                    let host_port = container.host_port(port)?;
                    Some((role, format!("{}:{host_port}", self.shared.address)))
                })
                .collect();
                Some(ProbeTarget {
                    container_id: container.id.clone(),
                    service: container.service.clone(),
                    instance: container.instance.clone(),
                    addresses,
                    started_at: infos.get(&container.id)?.started_at,
                    checks: checks.clone(),
                })
            })
            .collect()
    }

    /// `address:port` of an instance for discovery: the host port of the service's
    /// `DiscoveryPort`, else its first published port, else the node's address alone.
    fn instance_address(
        &self,
        config: Option<&ClusterConfig>,
        container: &ManagedContainer,
    ) -> String {
        let discovery_port = config
            .and_then(|c| c.services.get(&container.service))
            .and_then(|s| s.discovery_port);
        let port = discovery_port
            .and_then(|p| container.host_port(p))
            .or_else(|| container.host_ports.values().next().copied());
        match port {
            Some(port) => format!("{}:{port}", self.shared.address),
            None => self.shared.address.clone(),
        }
    }

    /// With `EnableLogReading`, starts log followers for new running containers; stops
    /// those of containers that are gone (and all of them when log reading is off). Stats
    /// are read for every running instance by one task (`monitor::poll_stats`), which reads
    /// the instances from the knowledge.
    fn follow(&mut self, infos: &BTreeMap<String, InstanceInfo>, config: Option<&ClusterConfig>) {
        let read_logs = config.is_some_and(|c| c.agent.autonomic.enable_log_reading);
        self.followers.retain(|id, tasks| {
            let alive =
                read_logs && infos.contains_key(id) && tasks.iter().any(|t| !t.is_finished());
            if !alive {
                tasks.iter().for_each(JoinHandle::abort);
            }
            alive
        });
        if !read_logs {
            return;
        }
        for (id, info) in infos {
            if self.followers.contains_key(id) {
                continue;
            }
            let logs = monitor::follow_logs(self.engine.clone(), self.shared.clone(), info.clone());
            self.followers.insert(id.clone(), vec![logs]);
        }
    }

    /// Makes this agent's records exactly its running instances: the ready ones in
    /// discovery, the others as starting records.
    pub(super) async fn publish(&mut self, infos: &BTreeMap<String, InstanceInfo>) {
        let wanted: BTreeMap<String, Record> = infos
            .values()
            .map(|i| {
                (
                    i.instance.clone(),
                    Record {
                        service: i.service.clone(),
                        address: i.address.clone().unwrap_or_default(),
                        ready: i.ready,
                    },
                )
            })
            .collect();
        let lease_changed = self.lease.has_changed().unwrap_or(false);
        let plan = local::publish(&wanted, &self.published, lease_changed);
        for (instance, service) in plan.deregister {
            match self.discovery.deregister(&service, &instance).await {
                Ok(()) => {
                    self.published.remove(&instance);
                }
                Err(err) => {
                    self.shared.telemetry.metrics.etcd_error();
                    tracing::warn!(%service, %instance, error = %err, "cannot remove discovery record")
                }
            }
        }
        if plan.forget_all {
            // Records written under a lost lease are gone; all are written again.
            self.lease.borrow_and_update();
            self.published.clear();
            self.lease_changed_at = Some(now());
        }
        for (instance, record) in plan.register {
            let Record {
                service,
                address,
                ready,
            } = &record;
            match self
                .discovery
                .register(service, &instance, address, *ready)
                .await
            {
                Ok(()) => {
                    tracing::debug!(%service, %instance, ready, "record published");
                    self.published.insert(instance, record);
                }
                Err(err) => {
                    self.shared.telemetry.metrics.etcd_error();
                    tracing::warn!(%service, %instance, error = %err, "cannot publish discovery record")
                }
            }
        }
    }
}
