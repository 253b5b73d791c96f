//! The ports: the I/O that the tick core's machines ask for, as one trait that the daemon
//! implements with etcd, its liveness probe and Docker (`runtime/autonomic/claims.rs`) and
//! the simulator with its fakes (`sim/src/sim.rs`), and the drivers that step the machines
//! through it ([`claim`], [`carry_out`]). The drivers hold no rule: the order of the I/O is
//! the machines' ([`ClaimMachine`], [`Execution`]); the drivers only do what `next` asks
//! and hand the answer back, so both callers run the same sequence.
//!
//! The port methods return futures: the daemon's wait on etcd, HTTP and Docker; the
//! simulator's are ready at once (it polls them once, with no executor).

use std::future::Future;

use super::{Act, ClaimIo, ClaimMachine, ClaimOutcome, Execution, ExecutionIo, Want};
use crate::coordination::{Claim, Ledger, LedgerTtls};
use crate::tick::ServiceObservation;

/// What one agent's claims and acts need from the world.
pub trait Ports {
    /// The machine that claims `want` for `service` (the service's policy, the loop's
    /// period, its StopTimeout); `None` for a service the configuration lacks.
    fn machine(&self, service: &str, want: Want) -> Option<ClaimMachine>;

    /// Whether this node's own lease still exists (an error reads as gone).
    fn lease_alive(&mut self) -> impl Future<Output = bool> + Send;

    /// Whether a node whose records vanished, or came back lately, still answers as itself
    /// (the start of `want` for `service` waits then, and says so in its record).
    fn answering_in_doubt(
        &mut self,
        service: &str,
        want: Want,
    ) -> impl Future<Output = bool> + Send;

    /// The service's scaling ledger, as etcd holds it now.
    fn read_ledger(&mut self, service: &str)
    -> impl Future<Output = Result<Ledger, String>> + Send;

    /// The service observed with its instance count read now (after the ledger).
    fn read_observation(
        &mut self,
        service: &str,
    ) -> impl Future<Output = Result<ServiceObservation, String>> + Send;

    /// Writes `claim` (for `want`) in one transaction compared on the ledger's
    /// `revision`: whether it won.
    fn write_claim(
        &mut self,
        service: &str,
        want: Want,
        revision: i64,
        claim: &Claim,
        ttls: LedgerTtls,
    ) -> impl Future<Output = Result<bool, String>> + Send;

    /// How a claim ended, for the caller's records (log, actions, counters) and its fill
    /// retries.
    fn claimed(&mut self, service: &str, want: Want, outcome: &ClaimOutcome);

    /// Starts or stops on this node, as a won claim says.
    fn act(&mut self, act: &Act) -> impl Future<Output = ()> + Send;
}

/// Claims `want` for `service` through `ports`: the won claim, or `None`.
pub async fn claim<P: Ports>(ports: &mut P, service: &str, want: Want) -> Option<Claim> {
    let mut machine = ports.machine(service, want)?;
    loop {
        match machine.next() {
            ClaimIo::LeaseAlive => machine.on_lease(ports.lease_alive().await),
            ClaimIo::Probe => machine.on_probe(ports.answering_in_doubt(service, want).await),
            ClaimIo::ReadLedger => machine.on_ledger(ports.read_ledger(service).await),
            ClaimIo::ReadCount => machine.on_observation(ports.read_observation(service).await),
            ClaimIo::Write {
                revision,
                claim,
                ttls,
            } => machine.on_written(
                ports
                    .write_claim(service, want, revision, &claim, ttls)
                    .await,
            ),
            ClaimIo::Done => break,
        }
    }
    let outcome = machine.outcome()?.clone();
    ports.claimed(service, want, &outcome);
    match outcome {
        ClaimOutcome::Won { claim, .. } => Some(claim),
        _ => None,
    }
}

/// Carries `wants` out through `ports`, as an [`Execution`] says: each claimed in order
/// ([`claim`]), then, once all were won, the stops and the starts. Returns the claims won.
pub async fn carry_out<P: Ports>(ports: &mut P, wants: Vec<(String, Want)>) -> Vec<Claim> {
    let mut execution = Execution::new(wants);
    loop {
        match execution.next() {
            ExecutionIo::Claim { service, want } => {
                let won = claim(ports, &service, want).await;
                execution.on_claimed(won);
            }
            ExecutionIo::Act(act) => {
                ports.act(&act).await;
                execution.on_acted();
            }
            ExecutionIo::Done => return execution.into_won(),
        }
    }
}
