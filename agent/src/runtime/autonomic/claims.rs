//! Exclusive steps through the services' scaling ledgers (see `crate::tick` and
//! ARCHITECTURE.md): the I/O of a `tick::Execution` (claim each want, then act on this
//! node: stops, then starts) and of each of its `tick::ClaimMachine`s (before a repair of
//! MinInstances, this node's lease and the nodes in doubt; the ledger, then the count; the
//! nodes in doubt before a start; the claim in one compare-revision transaction).
//!
//! Invariants: the ledger is read before the count, and no claim is made from a count that
//! could not be read (without etcd, no exclusive step). A start or stop for a cluster-wide
//! step only after a won claim, and for several claims (a swap) only after all were won. A
//! start waits while nodes that etcd lost still answer (see `withheld`), and a repair of
//! MinInstances also while this node's lease is gone. A fill that lost the race is
//! retried shortly (see `repairs`). A decision's refusal is recorded as an action; a repair
//! with nothing to do is not.

use common::config::{ClusterConfig, ServiceDescriptor};

use super::Autonomic;
use crate::coordination::Claim;
use crate::tick::{Act, ClaimIo, ClaimMachine, ClaimOutcome, Effect, Execution, ExecutionIo, Want};

impl Autonomic {
    /// Carries `wants` out (one repair or fill, or a decision's claims) as a
    /// [`Execution`] says: claims each in order, and only once every one was won,
    /// stops then starts on this node. `answering` holds the nodes in doubt that answered,
    /// once asked (a floor check asks them once for all its repairs).
    pub(super) async fn carry_out(
        &mut self,
        config: &ClusterConfig,
        wants: Vec<(String, Want)>,
        answering: &mut Option<Vec<String>>,
    ) {
        let mut execution = Execution::new(wants);
        loop {
            match execution.next() {
                ExecutionIo::Claim { service, want } => {
                    let claim = match config.services.get(&service) {
                        Some(descriptor) => {
                            self.claim_want(config, descriptor, want, answering).await
                        }
                        None => None,
                    };
                    execution.on_claimed(claim);
                }
                ExecutionIo::Act(act) => {
                    self.act(config, &act).await;
                    execution.on_acted();
                }
                ExecutionIo::Done => break,
            }
        }
    }

    /// This node's part of a won claim.
    async fn act(&mut self, config: &ClusterConfig, act: &Act) {
        let why = act.want.label();
        if let Some(target) = &act.claim.target {
            self.record(
                why,
                &act.service,
                None,
                format!(
                    "claimed: {} instances in the cluster, {} of them here; agents with room \
                     fill the rest",
                    target.desired, act.claim.count
                ),
            );
        }
        match act.effect {
            Effect::Start(count) => {
                if let Some(descriptor) = config.services.get(&act.service) {
                    self.start_instances(descriptor, count, why).await;
                }
            }
            Effect::Stop(count) => {
                self.stop_instances(&act.service, count, why).await;
                // What runs now, before a start that the stop made room for.
                self.reconcile().await;
            }
            Effect::Nothing => {}
        }
    }

    /// Claims `want` for a service in the cluster's ledger: steps a [`ClaimMachine`]
    /// through its I/O (the ledger, then the count, the probe of nodes in doubt, the
    /// compare-revision transaction). The claim when it was won; `None` when the cluster
    /// refuses (cooling down, at a bound, another agent was first, nothing left to repair,
    /// or etcd cannot be reached: exclusive steps need etcd). A decision's refusals are
    /// recorded as actions; a repair with nothing to do is not.
    pub(super) async fn claim_want(
        &mut self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        want: Want,
        answering: &mut Option<Vec<String>>,
    ) -> Option<Claim> {
        let service = descriptor.name.as_str();
        let why = want.label();
        let policy = descriptor
            .policy
            .as_ref()
            .map_or_else(|| config.policy.clone(), |own| own.apply(&config.policy));
        let mut machine = ClaimMachine::new(
            &self.shared.node,
            want,
            &policy,
            self.loop_interval().as_secs(),
            descriptor.configuration.stop_timeout_secs,
        );
        // What was read, for the log line of a repair's or a fill's claim.
        let (mut ledger_read, mut observed_read) = (None, 0);
        loop {
            match machine.next() {
                ClaimIo::ReadLedger => {
                    let ledger = self.store.read_ledger(&self.keys, service).await;
                    ledger_read = ledger.as_ref().ok().cloned();
                    machine.on_ledger(ledger.map_err(|e| e.to_string()));
                }
                ClaimIo::ReadCount => {
                    let observed = self.observed_for_claim(service).await;
                    observed_read = observed.as_ref().copied().unwrap_or(0);
                    machine.on_observation(
                        observed
                            .map(|count| self.observation(config, descriptor, count))
                            .map_err(|e| e.to_string()),
                    );
                }
                ClaimIo::LeaseAlive => machine.on_lease(self.own_lease_alive().await),
                ClaimIo::Probe => {
                    let withheld = self.withheld(config, answering, why, service).await;
                    machine.on_probe(withheld);
                }
                ClaimIo::Write {
                    revision,
                    claim,
                    ttls,
                } => {
                    if !want.is_decision() {
                        let (ledger, observed) = (&ledger_read, observed_read);
                        tracing::info!(%service, ?ledger, observed, "claiming {}", want.describe());
                    }
                    let won = self
                        .store
                        .claim_step(&self.keys, service, revision, &claim, ttls)
                        .await;
                    machine.on_written(won.map_err(|e| e.to_string()));
                }
                ClaimIo::Done => break,
            }
        }
        let refused = |this: &Self, reason: String| {
            if want.is_decision() {
                tracing::info!(%service, why, %reason, "step refused");
                this.record(why, service, None, format!("refused: {reason}"));
            }
        };
        match machine.outcome()?.clone() {
            ClaimOutcome::Won { claim, .. } => {
                if want == Want::Fill {
                    self.fill_retries.on_won();
                }
                Some(claim)
            }
            ClaimOutcome::NoTarget => {
                // The watch's news is stale: the target expired or was never there.
                self.fill_retries.on_nothing_to_do();
                self.targets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(service);
                None
            }
            ClaimOutcome::Refused(refusal) => {
                if want == Want::Fill {
                    self.fill_retries.on_nothing_to_do();
                }
                refused(self, refusal.to_string());
                None
            }
            ClaimOutcome::Lost => {
                refused(self, "another agent claimed this step first".into());
                if want == Want::Fill {
                    self.retry_fill();
                }
                None
            }
            ClaimOutcome::StoreError { what, error } => {
                refused(self, format!("cannot {what}: {error}"));
                None
            }
            // Recorded with the nodes that answered (`withheld`).
            ClaimOutcome::Withheld => None,
        }
    }
}
