//! Exclusive steps through the services' scaling ledgers (see `crate::tick` and
//! ARCHITECTURE.md): the daemon's side of the tick core's ports (`tick::ports::Ports`),
//! which `tick::ports::carry_out` steps through a `tick::Execution` (claim each want, then
//! act on this node: stops, then starts) and its `tick::ClaimMachine`s (before a repair of
//! MinInstances, this node's lease and the nodes in doubt; the ledger, then the count; the
//! nodes in doubt before a start; the claim in one compare-revision transaction): etcd for
//! the lease, the ledger and the count, the liveness probe for the nodes in doubt, Docker
//! for the acts.
//!
//! Invariants: the ledger is read before the count, and no claim is made from a count that
//! could not be read (without etcd, no exclusive step). A start or stop for a cluster-wide
//! step only after a won claim, and for several claims (a swap) only after all were won. A
//! start waits while nodes that etcd lost still answer (see `withheld`), and a repair of
//! MinInstances also while this node's lease is gone. A fill that lost the race is
//! retried shortly (see `repairs`). A decision's refusal is recorded as an action; a repair
//! with nothing to do is not.

use std::future::Future;

use common::config::ClusterConfig;

use super::Autonomic;
use crate::coordination::{Claim, Ledger, LedgerTtls};
use crate::tick::ports::{self, Ports};
use crate::tick::{Act, ClaimMachine, ClaimOutcome, Effect, ServiceObservation, Want};

impl Autonomic {
    /// Carries `wants` out (one repair or fill, or a decision's claims) through the tick
    /// core (`tick::ports::carry_out`): each claimed in order, and only once every one was
    /// won, stops then starts on this node. `answering` holds the nodes in doubt that
    /// answered, once asked (a floor check asks them once for all its repairs).
    pub(super) async fn carry_out(
        &mut self,
        config: &ClusterConfig,
        wants: Vec<(String, Want)>,
        answering: &mut Option<Vec<String>>,
    ) -> Vec<crate::coordination::Claim> {
        let mut ports = DaemonPorts {
            agent: self,
            config,
            answering,
            read: None,
        };
        ports::carry_out(&mut ports, wants).await
    }
}

/// The tick core's ports for one carrying-out: etcd, the liveness probe and Docker, with
/// what the loop knows (the configuration, the nodes in doubt that answered).
struct DaemonPorts<'a> {
    agent: &'a mut Autonomic,
    config: &'a ClusterConfig,
    answering: &'a mut Option<Vec<String>>,
    /// The ledger and the count the current claim read, for its log line.
    read: Option<(Option<Ledger>, u32)>,
}

impl Ports for DaemonPorts<'_> {
    fn machine(&self, service: &str, want: Want) -> Option<ClaimMachine> {
        let descriptor = self.config.services.get(service)?;
        let policy = descriptor.policy.as_ref().map_or_else(
            || self.config.policy.clone(),
            |own| own.apply(&self.config.policy),
        );
        Some(ClaimMachine::new(
            &self.agent.shared.node,
            want,
            &policy,
            self.agent.loop_interval().as_secs(),
            descriptor.configuration.stop_timeout_secs,
        ))
    }

    fn lease_alive(&mut self) -> impl Future<Output = bool> + Send {
        self.agent.own_lease_alive()
    }

    fn answering_in_doubt(
        &mut self,
        service: &str,
        want: Want,
    ) -> impl Future<Output = bool> + Send {
        self.agent
            .withheld(self.config, self.answering, want.label(), service)
    }

    async fn read_ledger(&mut self, service: &str) -> Result<Ledger, String> {
        let ledger = self
            .agent
            .store
            .read_ledger(&self.agent.keys, service)
            .await;
        self.read = Some((ledger.as_ref().ok().cloned(), 0));
        ledger.map_err(|e| e.to_string())
    }

    async fn read_observation(&mut self, service: &str) -> Result<ServiceObservation, String> {
        let observed = self.agent.observed_for_claim(service).await;
        if let (Some((_, count)), Ok(observed)) = (self.read.as_mut(), &observed) {
            *count = *observed;
        }
        let descriptor = self
            .config
            .services
            .get(service)
            .ok_or_else(|| format!("{service} is not in the configuration"))?;
        observed
            .map(|count| self.agent.observation(self.config, descriptor, count))
            .map_err(|e| e.to_string())
    }

    async fn write_claim(
        &mut self,
        service: &str,
        want: Want,
        revision: i64,
        claim: &Claim,
        ttls: LedgerTtls,
    ) -> Result<bool, String> {
        if let Some((ledger, observed)) = self.read.take()
            && !want.is_decision()
        {
            tracing::info!(%service, ?ledger, observed, "claiming {}", want.describe());
        }
        self.agent
            .store
            .claim_step(&self.agent.keys, service, revision, claim, ttls)
            .await
            .map_err(|e| e.to_string())
    }

    fn claimed(&mut self, service: &str, want: Want, outcome: &ClaimOutcome) {
        let agent = &mut *self.agent;
        let why = want.label();
        let refused = |agent: &Autonomic, reason: String| {
            if want.is_decision() {
                tracing::info!(%service, why, %reason, "step refused");
                agent.record(why, service, None, format!("refused: {reason}"));
            }
        };
        if agent.fill_retries.on_claimed(want, outcome) {
            agent.retry_fill();
        }
        match outcome {
            ClaimOutcome::Won { claim, .. } => {
                // Recorded whatever this node's share (a decider with no room has none).
                if let Some(target) = &claim.target {
                    agent.record(
                        why,
                        service,
                        None,
                        format!(
                            "claimed: {} instances in the cluster, {} of them here; agents \
                             with room fill the rest",
                            target.desired, claim.count
                        ),
                    );
                }
            }
            ClaimOutcome::NoTarget => {
                // The watch's news is stale: the target expired or was never there.
                agent
                    .targets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(service);
            }
            ClaimOutcome::Refused(refusal) => refused(agent, refusal.to_string()),
            ClaimOutcome::Lost => {
                refused(agent, "another agent claimed this step first".into());
            }
            ClaimOutcome::StoreError { what, error } => {
                refused(agent, format!("cannot {what}: {error}"));
            }
            // Recorded with the nodes that answered (`withheld`). A decided step that was
            // not taken starts no cooldown.
            ClaimOutcome::Withheld => {
                if want.is_decision() {
                    agent.take_back_decision();
                }
            }
        }
    }

    async fn act(&mut self, act: &Act) {
        let why = act.want.label();
        match act.effect {
            Effect::Start(count) => {
                if let Some(descriptor) = self.config.services.get(&act.service) {
                    self.agent.start_instances(descriptor, count, why).await;
                }
            }
            Effect::Stop(count) => {
                self.agent.stop_instances(&act.service, count, why).await;
                if act.makes_room {
                    // What runs now, before the start that the stop made room for.
                    self.agent.reconcile().await;
                }
            }
            Effect::Nothing => {}
        }
    }
}
