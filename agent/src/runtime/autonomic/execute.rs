//! Execute on this node: start instances with their attached sidecars, stop them (youngest
//! first, the discovery record first), back a service off after a failed start, and record
//! every action (`record`: knowledge and telemetry).
//!
//! Invariants: the loop calls these after a won claim, except for this node's base services
//! and an operator's start-service / stop-service (this node's own placement). At most
//! `MAX_PARALLEL_CHANGES` instances start at once. Nothing blocks the loop forever: every
//! Docker call has a deadline (the engine's timeout; a stop's plus its grace). A failed
//! start backs its service off (5 s, doubling up to 5 min); a start that succeeds clears it.
//! While a service backs off here, this node offers no room for it (`analyze::free_slots`),
//! so it claims no scale-out or repair of it and a node that can start it takes it (a pull
//! refused here, an image this node lacks with `Pull.Policy` "Never").
//! A sidecar's instance id names its parent, so the link survives an agent restart.

use std::sync::Arc;
use std::time::Duration;

use common::config::{ClusterConfig, ServiceDescriptor};

use super::super::state::{ActionRecord, InstanceInfo, StartBackoff};
use super::{Autonomic, now};
use crate::docker::{InstancePlan, new_instance_id, process_env};
use crate::mape::Millis;
use crate::tick::local::{attached_instance, parent_of};

/// First pause after a failed start of a service; doubles up to [`START_BACKOFF_MAX`].
const START_BACKOFF_INITIAL: Duration = Duration::from_secs(5);
const START_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Instances started or stopped at once by one action.
const MAX_PARALLEL_CHANGES: usize = 4;

/// What [`Autonomic::start_instances`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The instances of the service that started (not their sidecars).
    pub instances: Vec<String>,
    /// Why one did not, or why none was tried.
    pub failure: Option<String>,
    /// None was tried, and none failed: the image is being pulled beside the loop
    /// (`pulls.rs`); a start asked again after the pull goes ahead.
    pub deferred: Option<String>,
}

/// A start that failed: no new start of that service before `until`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) until: Millis,
    next: Duration,
}

impl Autonomic {
    /// Records what an action did ("ok", "failed: …", "refused: …"): in the knowledge
    /// (`/gru/v1/actions`) and in telemetry.
    pub(super) fn record(
        &self,
        action: &str,
        service: &str,
        instance: Option<&str>,
        result: String,
    ) {
        self.record_because(action, service, instance, result, None);
    }

    /// [`Autonomic::record`] with the reason the action was taken.
    pub(super) fn record_because(
        &self,
        action: &str,
        service: &str,
        instance: Option<&str>,
        result: String,
        reason: Option<&str>,
    ) {
        self.shared.telemetry.acted(action, service, &result, now());
        self.shared.knowledge().record_action(ActionRecord {
            at: now(),
            action: action.to_owned(),
            service: service.to_owned(),
            instance: instance.map(str::to_owned),
            result,
            reason: reason.map(str::to_owned),
        });
    }

    /// Starts `count` instances of a service (and their attached sidecars), at most
    /// `MAX_PARALLEL_CHANGES` at once. A failure backs the service off. Says which
    /// instances started and, if one did not, why.
    pub async fn start_instances(
        &mut self,
        descriptor: &ServiceDescriptor,
        count: u32,
        why: &str,
    ) -> Started {
        self.start_replacing(descriptor, count, why, &[]).await
    }

    /// As [`Self::start_instances`], each new instance labelled as replacing `replaces`
    /// (a rollout step's, so that a restarted agent can finish the step). A missing image
    /// is pulled beside the loop and the start deferred (`pulls.rs`).
    pub async fn start_replacing(
        &mut self,
        descriptor: &ServiceDescriptor,
        count: u32,
        why: &str,
        replaces: &[String],
    ) -> Started {
        // A start that backs off is skipped (and recorded) by `start_now`.
        if !self.backs_off(&descriptor.name)
            && let Some(deferred) = self.pull_first(descriptor)
        {
            tracing::debug!(service = %descriptor.name, why, %deferred, "start deferred");
            return Started {
                deferred: Some(deferred),
                ..Started::default()
            };
        }
        self.start_now(descriptor, count, why, replaces).await
    }

    /// Whether a failed start (or pull) of `service` backs it off here now.
    pub(super) fn backs_off(&self, service: &str) -> bool {
        self.backoff.get(service).is_some_and(|b| b.until > now())
    }

    /// What a start of `descriptor` does while it backs off here: nothing, recorded.
    fn backing_off(&mut self, descriptor: &ServiceDescriptor, why: &str) -> Option<Started> {
        let now = now();
        let backoff = self
            .backoff
            .get(&descriptor.name)
            .filter(|b| b.until > now)?;
        let skipped = format!(
            "skipped: backing off after a failed start for {} s",
            backoff.until.since(now).as_secs()
        );
        self.record(why, &descriptor.name, None, skipped.clone());
        Some(Started {
            failure: Some(skipped),
            ..Started::default()
        })
    }

    /// Starts `count` instances now, pulling a missing image first (inside the tick): for
    /// an operator's `start service`, which is asked once and waits for its answer.
    pub async fn start_now(
        &mut self,
        descriptor: &ServiceDescriptor,
        count: u32,
        why: &str,
        replaces: &[String],
    ) -> Started {
        if let Some(skipped) = self.backing_off(descriptor, why) {
            return skipped;
        }
        let mut started = Started::default();
        let config = self.config();
        let mut set = tokio::task::JoinSet::new();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL_CHANGES));
        for _ in 0..count {
            let instance = new_instance_id();
            let mut services = vec![(descriptor.clone(), instance.clone())];
            for attached in &descriptor.attached {
                if let Some(sidecar) = config.as_ref().and_then(|c| c.services.get(attached)) {
                    services.push((sidecar.clone(), attached_instance(&instance, attached)));
                }
            }
            let engine = self.engine.clone();
            let cluster = self.shared.cluster.clone();
            let node = self.shared.node.clone();
            let bind_ip = self.bind_ip;
            let auth_file = self.auth_file();
            let semaphore = semaphore.clone();
            let replaces = replaces.to_vec();
            let descriptor_name = descriptor.name.clone();
            set.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let mut results = Vec::new();
                for (service, instance) in services {
                    let replaces: &[String] = if service.name == descriptor_name {
                        &replaces
                    } else {
                        &[]
                    };
                    let plan = InstancePlan {
                        service: &service,
                        cluster: &cluster,
                        node: &node,
                        instance: &instance,
                        bind_ip,
                        registry_auth_file: auth_file.as_deref(),
                        replaces,
                    };
                    let result = engine.start_instance(&plan, &process_env).await;
                    let failed = result.is_err();
                    results.push((
                        service.name.clone(),
                        instance,
                        result.map(|_| ()).map_err(|e| e.to_string()),
                    ));
                    if failed {
                        break;
                    }
                }
                results
            });
        }
        let mut failed: Option<String> = None;
        while let Some(joined) = set.join_next().await {
            for (service, instance, result) in joined.unwrap_or_default() {
                match result {
                    Ok(()) => {
                        tracing::info!(%service, %instance, why, "instance started");
                        self.record(why, &service, Some(&instance), "ok".into());
                        if service == descriptor.name {
                            started.instances.push(instance);
                        }
                    }
                    Err(err) => {
                        failed.get_or_insert_with(|| err.clone());
                        self.shared.telemetry.metrics.docker_error();
                        tracing::warn!(%service, error = %err, why, "start failed");
                        self.record(why, &service, Some(&instance), format!("failed: {err}"));
                        started.failure = Some(format!("start of {service} failed: {err}"));
                    }
                }
            }
        }
        if let Some(error) = failed {
            self.back_off(&descriptor.name, error);
        } else {
            self.backoff.remove(&descriptor.name);
            self.shared
                .knowledge()
                .start_backoffs
                .remove(&descriptor.name);
        }
        started
    }

    /// Backs `service` off after a failed start (or pull): no start of it here, and no room
    /// for it, for 5 s, doubling with each failure in a row up to 5 min.
    pub(super) fn back_off(&mut self, service: &str, error: String) {
        let next = self
            .backoff
            .get(service)
            .map_or(START_BACKOFF_INITIAL, |b| {
                (b.next * 2).min(START_BACKOFF_MAX)
            });
        // From when the start ended: a pull can take most of its Timeout.
        let failed_at = super::now();
        let until = failed_at.plus(next);
        self.backoff
            .insert(service.to_owned(), Backoff { until, next });
        let mut knowledge = self.shared.knowledge();
        let failures = knowledge
            .start_backoffs
            .get(service)
            .map_or(0, |b| b.failures);
        knowledge.start_backoffs.insert(
            service.to_owned(),
            StartBackoff {
                failed_at,
                until,
                failures: failures + 1,
                error,
            },
        );
    }

    /// The Docker `config.json` pulls read credentials from: `gru join
    /// --registry-auth-file` (this node's) wins over the configuration's.
    pub(super) fn auth_file(&self) -> Option<std::path::PathBuf> {
        self.registry_auth_file.clone().or_else(|| {
            self.config()
                .and_then(|c| c.agent.docker.registry_auth_file.clone())
                .map(std::path::PathBuf::from)
        })
    }

    /// Stops `count` running instances of `service` on this node, with their sidecars: those
    /// that are not ready first (they serve no one), then those a rollout would replace (an
    /// older version), then the youngest (see [`Autonomic::stop_these`]).
    pub async fn stop_instances(&mut self, service: &str, count: u32, why: &str) {
        let config = self.config();
        let descriptor = config.as_ref().and_then(|c| c.services.get(service));
        let mut victims: Vec<InstanceInfo> = self
            .shared
            .knowledge()
            .running(service)
            .filter(|i| parent_of(&i.instance, &i.service).is_none())
            .cloned()
            .collect();
        let version = descriptor.map(|d| (d, d.version()));
        let current = |i: &InstanceInfo| version.as_ref().is_some_and(|(d, v)| i.runs(d, v));
        victims.sort_by(|a, b| {
            (a.ready.cmp(&b.ready))
                .then(current(a).cmp(&current(b)))
                .then(b.started_at.cmp(&a.started_at))
                .then(a.id.cmp(&b.id))
        });
        victims.truncate(count as usize);
        self.stop_these(victims, why).await;
    }

    /// Stops these instances with their sidecars: the discovery record goes first, so no
    /// client is sent to an instance that is stopping.
    pub(super) async fn stop_these(&mut self, victims: Vec<InstanceInfo>, why: &str) {
        for victim in victims {
            self.stop_one(&victim, why, None).await;
        }
    }

    /// Stops one instance of this node with its sidecars, its records first (see
    /// [`Autonomic::stop_instances`]), and records each stop with `reason`, if given.
    pub(super) async fn stop_one(
        &mut self,
        victim: &InstanceInfo,
        why: &str,
        reason: Option<&str>,
    ) {
        let config = self.config();
        let sidecars: Vec<InstanceInfo> = self
            .shared
            .knowledge()
            .instances
            .values()
            .filter(|i| parent_of(&i.instance, &i.service) == Some(victim.instance.as_str()))
            .cloned()
            .collect();
        for target in std::iter::once(victim).chain(sidecars.iter()) {
            if self.published.remove(&target.instance).is_some() {
                let _ = self
                    .discovery
                    .deregister(&target.service, &target.instance)
                    .await;
            }
            let grace = stop_grace(config.as_deref(), &target.service);
            // The intent first: an agent killed while the engine stops the container leaves
            // this line, so a stop in flight is told from a container that died on its own.
            tracing::info!(service = %target.service, instance = %target.instance, why, grace_secs = grace.as_secs(), "stopping instance");
            let result = match self.engine.stop_instance(&target.id, grace).await {
                Ok(()) => self.engine.remove_instance(&target.id).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => {
                    tracing::info!(service = %target.service, instance = %target.instance, why, reason, "instance stopped");
                    self.record_because(
                        why,
                        &target.service,
                        Some(&target.instance),
                        "ok".into(),
                        reason,
                    );
                }
                Err(err) => {
                    self.shared.telemetry.metrics.docker_error();
                    tracing::warn!(service = %target.service, error = %err, why, "stop failed");
                    self.record_because(
                        why,
                        &target.service,
                        Some(&target.instance),
                        format!("failed: {err}"),
                        reason,
                    );
                }
            }
        }
    }
}

pub(super) fn stop_grace(config: Option<&ClusterConfig>, service: &str) -> Duration {
    Duration::from_secs(
        config
            .and_then(|c| c.services.get(service))
            .map_or(common::config::service::DEFAULT_STOP_TIMEOUT_SECS, |s| {
                s.configuration.stop_timeout_secs
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_instances_name_their_parent() {
        let id = attached_instance("0123456789abcdef0123456789abcdef", "log-shipper");
        assert_eq!(
            parent_of(&id, "log-shipper"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            parent_of("0123456789abcdef0123456789abcdef", "log-shipper"),
            None
        );
        assert_eq!(parent_of("abc-other", "log-shipper"), None);
    }
}
