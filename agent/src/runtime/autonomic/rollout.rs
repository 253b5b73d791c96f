//! Rolling updates on this node: when a service's descriptor has a new version
//! (`ServiceDescriptor::version`), replace this node's outdated instances one claimed step
//! at a time (`crate::tick::rollout` decides; this file claims, starts, stops and writes).
//!
//! Invariants:
//! * A step is claimed in the service's scaling ledger (`rollout-step`, compared against
//!   `last-claim` like every claim), so two agents never replace at once and no scaling
//!   step runs meanwhile; its lease ends with the step (or expires if this agent dies).
//! * New instances first, old ones only once the new ones held (`tick::rollout::check`),
//!   unless the service asks for stop-first (`Update.Order`), which stops them at once;
//!   a failed step stops its new instances, never an old one, then rolls back or halts
//!   (`tick::rollout::on_failure`) through one transaction on the rollout record.
//! * No etcd traffic while nothing is outdated: the record and the ledger are read only
//!   when this node has an outdated instance and no step under way.
//! * A step never blocks the loop: each tick looks at it once and moves on.

use std::time::Duration;

use common::config::ServiceDescriptor;
use common::config::service::UpdateOrder;

use super::super::state::InstanceInfo;
use super::{Autonomic, now};
use crate::coordination::{RolloutStep, may_step, step_secs};
use crate::tick::local::parent_of;
use crate::tick::rollout::{
    Failure, Here, Step, StepState, check, interrupted, on_failure, to_replace,
};

/// What the action history calls a rollout's starts and stops.
const WHY: &str = "rollout";

impl Autonomic {
    /// One look at every service's rollout on this node.
    pub(super) async fn roll(&mut self, config: &common::config::ClusterConfig) {
        for descriptor in config.services.values() {
            self.roll_service(descriptor).await;
        }
        // A service that is gone takes its step along (its instances are the reconcile's).
        let gone: Vec<String> = self
            .steps
            .keys()
            .filter(|s| !config.services.contains_key(*s))
            .cloned()
            .collect();
        for service in gone {
            if let Some(step) = self.steps.remove(&service) {
                let _ = self.store.lease_revoke(step.lease).await;
            }
        }
    }

    /// This node's instances of `descriptor` (not sidecars), as a step sees them.
    fn here(&self, descriptor: &ServiceDescriptor) -> Vec<InstanceInfo> {
        self.shared
            .knowledge()
            .running(&descriptor.name)
            .filter(|i| parent_of(&i.instance, &i.service).is_none())
            .cloned()
            .collect()
    }

    async fn roll_service(&mut self, descriptor: &ServiceDescriptor) {
        let version = descriptor.version();
        let instances = self.here(descriptor);
        let here: Vec<Here<'_>> = instances
            .iter()
            .map(|i| Here {
                instance: &i.instance,
                started_at: i.started_at,
                current: i.runs(descriptor, &version),
                ready: i.ready,
                replaces: &i.replaces,
            })
            .collect();
        let now = now();
        if let Some(step) = self.steps.get(&descriptor.name).cloned() {
            if step.version != version {
                // Rolled back, or pushed again: its new instances are now outdated too,
                // and the next step replaces them.
                tracing::info!(service = %descriptor.name, "rollout step abandoned: the descriptor changed");
                self.end_step(&descriptor.name, &step).await;
                return;
            }
            let monitor = Duration::from_secs(descriptor.update.monitor_secs);
            match check(&step, &here, monitor, now) {
                StepState::Starting => {}
                StepState::Watching { since } => {
                    if let Some(step) = self.steps.get_mut(&descriptor.name) {
                        step.ready_since = Some(since);
                    }
                }
                StepState::Done => {
                    self.stop_named(descriptor, &step.old).await;
                    self.end_step(&descriptor.name, &step).await;
                    let delay = Duration::from_secs(descriptor.update.delay_secs);
                    self.step_after
                        .insert(descriptor.name.clone(), now.plus(delay));
                    tracing::info!(service = %descriptor.name, %version, replaced = step.old.len(), "rollout step done");
                }
                StepState::Failed(reason) => self.fail_step(descriptor, &step, &reason).await,
            }
            return;
        }
        if let Some((new, old)) = interrupted(&here) {
            let began = here
                .iter()
                .filter(|h| new.contains(&h.instance))
                .map(|h| h.started_at)
                .min()
                .unwrap_or(now);
            let new: Vec<String> = new.into_iter().map(str::to_owned).collect();
            let old: Vec<String> = old.into_iter().map(str::to_owned).collect();
            self.resume_step(descriptor, version, new, old, began).await;
            return;
        }
        let old = to_replace(&here, descriptor.update.parallelism);
        if old.is_empty()
            || self
                .step_after
                .get(&descriptor.name)
                .is_some_and(|t| *t > now)
        {
            return;
        }
        let old: Vec<String> = old.into_iter().map(str::to_owned).collect();
        self.start_step(descriptor, version, old).await;
    }

    /// Claims a step replacing `old` and starts as many new instances, each labelled with
    /// the instances it replaces.
    async fn start_step(
        &mut self,
        descriptor: &ServiceDescriptor,
        version: String,
        old: Vec<String>,
    ) {
        let service = &descriptor.name;
        let update = &descriptor.update;
        let count = old.len() as u32;
        let stop_first = update.order == UpdateOrder::StopFirst;
        // A new image comes in before the step is claimed (every node pulls it at once,
        // beside the loop).
        if self.pull_first(descriptor).is_some() {
            return;
        }
        let Some(lease) = self
            .claim_step(descriptor, &version, count, stop_first)
            .await
        else {
            return;
        };
        tracing::info!(%service, %version, count, stop_first, "rollout step claimed");
        let old = if stop_first {
            // Stop-first: the old ones go now, and the step has nothing left to stop.
            self.stop_named(descriptor, &old).await;
            Vec::new()
        } else {
            old
        };
        let began = now();
        let started = self.start_replacing(descriptor, count, WHY, &old).await;
        let step = Step {
            version: version.clone(),
            lease,
            new: started.instances,
            old,
            began,
            deadline: began.plus(Duration::from_secs(update.ready_timeout_secs)),
            ready_since: None,
        };
        match (started.failure, started.deferred) {
            (Some(failure), _) => self.fail_step(descriptor, &step, &failure).await,
            // The image went missing since the check: the step is given up, nothing failed.
            (None, Some(_)) if step.new.is_empty() => self.end_step(service, &step).await,
            _ => {
                self.steps.insert(service.clone(), step);
            }
        }
    }

    /// Takes up a step this node began before its agent restarted (`tick::rollout::
    /// interrupted`): claimed again like a new one (which waits for the old claim's lease
    /// to end), it starts nothing, and stops `old` once `new`, started at `began`, hold.
    async fn resume_step(
        &mut self,
        descriptor: &ServiceDescriptor,
        version: String,
        new: Vec<String>,
        old: Vec<String>,
        began: crate::mape::Millis,
    ) {
        let service = &descriptor.name;
        let count = old.len() as u32;
        let Some(lease) = self.claim_step(descriptor, &version, count, false).await else {
            return;
        };
        tracing::info!(%service, %version, count, "rollout step taken up again after a restart");
        self.record(
            WHY,
            service,
            None,
            format!(
                "step resumed: {} new instance(s) found on the engine",
                new.len()
            ),
        );
        let step = Step {
            version,
            lease,
            new,
            old,
            began,
            deadline: began.plus(Duration::from_secs(descriptor.update.ready_timeout_secs)),
            ready_since: None,
        };
        self.steps.insert(service.clone(), step);
    }

    /// Claims a step of `count` instances of `version` in the service's ledger, when the
    /// rollout record allows steps and no other step or scaling claim stands; the claim's
    /// lease, or `None` (then the next tick tries again).
    async fn claim_step(
        &mut self,
        descriptor: &ServiceDescriptor,
        version: &str,
        count: u32,
        stop_first: bool,
    ) -> Option<i64> {
        let service = &descriptor.name;
        match self.store.read_rollout(&self.keys, service).await {
            Ok(read) => {
                if let Some(record) = read.record.filter(|r| !r.allows_steps(version)) {
                    tracing::debug!(%service, state = record.state.as_str(), "rollout waits");
                    return None;
                }
            }
            Err(err) => {
                tracing::debug!(%service, error = %err, "cannot read the rollout record");
                return None;
            }
        }
        let ledger = match self.store.read_ledger(&self.keys, service).await {
            Ok(ledger) => ledger,
            Err(err) => {
                tracing::debug!(%service, error = %err, "cannot read the ledger");
                return None;
            }
        };
        if let Err(why) = may_step(&ledger) {
            tracing::debug!(%service, %why, "rollout step waits");
            return None;
        }
        let update = &descriptor.update;
        let ttl = step_secs(
            update.ready_timeout_secs,
            update.monitor_secs,
            descriptor.configuration.stop_timeout_secs,
            self.loop_interval().as_secs(),
        );
        let claim = RolloutStep {
            node: self.shared.node.clone(),
            version: version.to_owned(),
            count,
            stop_first,
        };
        match self
            .store
            .claim_rollout_step(&self.keys, service, ledger.revision, &claim, ttl)
            .await
        {
            Ok(lease) => lease,
            Err(err) => {
                tracing::debug!(%service, error = %err, "cannot claim a rollout step");
                None
            }
        }
    }

    /// Stops this node's running instances of `descriptor` named in `instances` (those
    /// still running; a gone one is the reconcile's).
    async fn stop_named(&mut self, descriptor: &ServiceDescriptor, instances: &[String]) {
        let named: Vec<InstanceInfo> = self
            .here(descriptor)
            .into_iter()
            .filter(|i| instances.contains(&i.instance))
            .collect();
        self.stop_these(named, WHY).await;
    }

    /// A failed step: its new instances stopped (never an old one), the ledger freed, then
    /// a rollback or a halt.
    async fn fail_step(&mut self, descriptor: &ServiceDescriptor, step: &Step, reason: &str) {
        self.stop_named(descriptor, &step.new).await;
        self.end_step(&descriptor.name, step).await;
        self.step_failed(descriptor, &step.version, reason).await;
    }

    /// Forgets `step` and frees the ledger.
    async fn end_step(&mut self, service: &str, step: &Step) {
        self.steps.remove(service);
        if let Err(err) = self.store.lease_revoke(step.lease).await {
            // It expires by itself at the step's TTL.
            tracing::debug!(%service, error = %err, "cannot revoke the rollout step's lease");
        }
    }

    /// Rolls back or halts after a failed step, as the rollout record allows.
    async fn step_failed(&mut self, descriptor: &ServiceDescriptor, version: &str, reason: &str) {
        let service = &descriptor.name;
        tracing::warn!(%service, %version, %reason, "rollout step failed");
        self.record(WHY, service, None, format!("failed: {reason}"));
        let read = match self.store.read_rollout(&self.keys, service).await {
            Ok(read) => read,
            Err(err) => {
                // Nothing written: the next outdated instance tries a step again.
                tracing::warn!(%service, error = %err, "cannot read the rollout record after a failed step");
                return;
            }
        };
        let failure = on_failure(
            read.record.as_ref(),
            version,
            descriptor.update.failure_action,
            reason,
            &self.shared.node,
            now(),
        );
        let (written, what) = match &failure {
            Failure::Restore { descriptor, record } => (
                self.store
                    .restore_descriptor(&self.keys, service, read.revision, descriptor, record)
                    .await,
                "rolled back",
            ),
            Failure::Halt(record) => (
                self.store
                    .update_rollout(&self.keys, service, read.revision, record)
                    .await,
                "halted",
            ),
        };
        match written {
            Ok(true) => {
                tracing::warn!(%service, %version, %reason, "rollout {what}");
                self.record(WHY, service, None, format!("{what}: {reason}"));
            }
            Ok(false) => {
                tracing::info!(%service, "the rollout record changed meanwhile: nothing {what}");
            }
            Err(err) => {
                tracing::warn!(%service, error = %err, "cannot write the rollout record");
            }
        }
    }
}
