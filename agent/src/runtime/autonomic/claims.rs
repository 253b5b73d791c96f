//! One exclusive step through the service's scaling ledger (see `crate::tick` and
//! ARCHITECTURE.md): read the ledger, then the count, let `tick::decide` say what may be
//! claimed, write the claim in one compare-revision transaction, and do this node's part of
//! a won claim (`tick::effect`).
//!
//! Invariants: the ledger is read before the count, and no claim is made from a count that
//! could not be read (without etcd, no exclusive step). A start or stop for a cluster-wide
//! step only after a won claim. A scale-out also waits while nodes that etcd lost still
//! answer (see `withheld`; the floor's repair asked already). A fill that lost the race is
//! retried shortly (see `repairs`). A decision's refusal is recorded as an action; a repair
//! with nothing to do is not.

use common::config::{ClusterConfig, ServiceDescriptor};

use super::Autonomic;
use crate::coordination::{Claim, Direction};
use crate::tick::{self, Effect, Want};

impl Autonomic {
    /// Claims `want` for a service and, if the claim is won, does this node's part of it.
    pub(super) async fn claim_and_act(
        &mut self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        want: Want,
    ) {
        let why = want.label();
        let Some(claim) = self.claim_want(config, descriptor, want, why).await else {
            return;
        };
        if let Some(target) = &claim.target {
            self.record(
                why,
                &descriptor.name,
                None,
                format!(
                    "claimed: {} instances in the cluster, {} of them here; agents with room \
                     fill the rest",
                    target.desired, claim.count
                ),
            );
        }
        match tick::effect(&claim) {
            Effect::Start(count) => self.start_instances(descriptor, count, why).await,
            Effect::Stop(count) => self.stop_instances(&descriptor.name, count, why).await,
            Effect::Nothing => {}
        }
    }

    /// Claims `want` for a service in the cluster's ledger (see `crate::tick`): reads the
    /// ledger, then the count, lets the tick core decide, and writes the claim in one
    /// compare-revision transaction. The claim when it was won; `None` when the cluster
    /// refuses (cooling down, at a bound, another agent was first, nothing left to repair,
    /// or etcd cannot be reached: exclusive steps need etcd). A decision's refusals are
    /// recorded as actions; a repair with nothing to do is not.
    pub(super) async fn claim_want(
        &mut self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        want: Want,
        why: &str,
    ) -> Option<Claim> {
        let service = descriptor.name.as_str();
        let decision = want.is_decision();
        let refused = |this: &Self, reason: String| {
            if decision {
                tracing::info!(%service, why, %reason, "step refused");
                this.record(why, service, None, format!("refused: {reason}"));
            }
        };
        let ledger = match self.store.read_ledger(&self.keys, service).await {
            Ok(ledger) => ledger,
            Err(err) => {
                refused(self, format!("cannot read the scaling ledger: {err}"));
                return None;
            }
        };
        if want == Want::Fill && ledger.target.is_none() {
            // The watch's news is stale: the target expired or was never there.
            self.fill_retries.on_nothing_to_do();
            self.targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(service);
            return None;
        }
        let observed = match self.observed_for_claim(service).await {
            Ok(observed) => observed,
            Err(err) => {
                refused(self, format!("cannot read the cluster's instances: {err}"));
                return None;
            }
        };
        let observation = self.observation(config, descriptor, observed);
        let policy = descriptor
            .policy
            .as_ref()
            .map_or_else(|| config.policy.clone(), |own| own.apply(&config.policy));
        let claim = match tick::decide(&self.shared.node, want, &observation, &ledger, &policy) {
            Ok(claim) => claim,
            Err(refusal) => {
                if want == Want::Fill {
                    self.fill_retries.on_nothing_to_do();
                }
                refused(self, refusal.to_string());
                return None;
            }
        };
        // A count short of nodes that still run could let a start pass MaxInstances (the
        // floor's repair asked already).
        if claim.intent.direction == Direction::Out && !matches!(want, Want::Floor { .. }) {
            let answering = self.withheld(config, &mut None, why, service).await;
            if tick::withheld(want, claim.intent.direction, true, answering) {
                return None;
            }
        }
        if !decision {
            tracing::info!(%service, ?ledger, observed, "claiming {}", want.describe());
        }
        let ttls = tick::ttls(
            want,
            claim.intent.direction,
            &policy,
            self.loop_interval().as_secs(),
            descriptor.configuration.stop_timeout_secs,
        );
        match self
            .store
            .claim_step(&self.keys, service, ledger.revision, &claim, ttls)
            .await
        {
            Ok(true) => {
                if want == Want::Fill {
                    self.fill_retries.on_won();
                }
                Some(claim)
            }
            Ok(false) => {
                refused(self, "another agent claimed this step first".into());
                if want == Want::Fill {
                    self.retry_fill();
                }
                None
            }
            Err(err) => {
                refused(self, format!("cannot claim the step in etcd: {err}"));
                None
            }
        }
    }
}
