//! The claims no decision makes, at every tick: this node's base services (its own
//! placement, no claim), the repairs `tick::repairs` calls for (MinInstances as
//! `tick::floor` sets it, MaxInstances after a healed partition) and this node's share of a standing target (a fill), which the
//! ledger watch also brings forward, and which is tried again shortly after a lost race.
//!
//! Invariants: base services get an instance here whether the loop is active or not;
//! everything else only with the loop active, and through a claim. A repair of
//! MinInstances waits while discovery may undercount: this node registered again less than
//! a TTL and two loops ago (`tick::floor` is 0 while it settles), its own lease is gone, or
//! a node whose records vanished still answers (see `withheld`). A lost fill is retried at most `tick::MAX_FILL_RETRIES` times in
//! a row, one retry at a time.

use std::collections::BTreeSet;

use common::config::ClusterConfig;

use super::Autonomic;
use crate::tick::{self, Want};

impl Autonomic {
    /// Base services of this node get an instance here whether or not the loop is active
    /// (they are the operator's explicit placement). With the loop active, the repairs and
    /// fills `crate::tick::repairs` calls for are claimed in the cluster's ledger: a start
    /// for a service below its minimum (where there is room), a stop for one above its
    /// maximum (after a healed partition), and this node's share of a standing
    /// target-tracking decision.
    pub(super) async fn keep_floor(&mut self, config: &ClusterConfig, active: bool) {
        let (base, orphaned) = {
            let knowledge = self.shared.knowledge();
            (
                knowledge.base_services.clone(),
                knowledge.peers.orphaned_base_services.clone(),
            )
        };
        // A drained node starts no base service: it moves them (`drain`).
        let draining = self.shared.knowledge().drain.is_some();
        let counts = self.cluster_counts().await;
        let settling = self.discovery_settling(config);
        let targets = self.standing_targets();
        // Asked once, only if a repair needs it.
        let mut answering: Option<Vec<String>> = None;
        for descriptor in config.services.values() {
            let here = self.shared.knowledge().running(&descriptor.name).count() as u32;
            if base.contains(&descriptor.name) && here == 0 && !draining {
                self.start_instances(descriptor, 1, "base-service").await;
                continue;
            }
            // A lost node's base service must keep one instance somewhere: re-home it.
            let floor = tick::floor(
                descriptor.min_instances,
                orphaned.contains(&descriptor.name),
                settling,
                active,
            );
            // With the loop off, no claim at all: no repair, no fill.
            if !active {
                continue;
            }
            let observed = counts.get(&descriptor.name).copied().unwrap_or(0);
            let observation = self.observation(config, descriptor, observed);
            let standing = targets.contains(&descriptor.name);
            // A repair of MinInstances proves first that discovery does not undercount
            // (`tick::ClaimMachine`: this node's lease, then the nodes in doubt).
            // The loop's wake-up (`tick::Wake::Loop`) claims every repair.
            for want in tick::repairs(&observation, floor, standing) {
                let wants = vec![(descriptor.name.clone(), want)];
                self.carry_out(config, wants, &mut answering).await;
            }
        }
    }

    /// The services the ledger watch says have a standing target-tracking decision.
    fn standing_targets(&self) -> BTreeSet<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fills the standing targets now (woken by the ledger watch), without waiting for the
    /// next tick: a target-tracking decision larger than its node's room completes within
    /// moments on the nodes that have room.
    pub(super) async fn fill_targets(&mut self) {
        let Some(config) = self.config() else { return };
        if !self.shared.knowledge().active {
            return;
        }
        self.reconcile().await;
        // What this wake-up claims (`tick::Wake::Targets`): the fills.
        for service in self.standing_targets() {
            if config.services.contains_key(&service) {
                self.carry_out(&config, vec![(service, Want::Fill)], &mut None)
                    .await;
            }
        }
    }

    /// Tries the standing targets' fills again shortly (another agent's claim came first),
    /// after the delay `tick::FillRetry` says (none after [`tick::MAX_FILL_RETRIES`] in a
    /// row), one retry at a time: a lost fill while a retry waits is tried by that retry.
    pub(super) fn retry_fill(&mut self) {
        if self.fill_retry.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        let Some(delay) = self.fill_retries.on_lost(&mut self.rng) else {
            tracing::debug!(
                retries = self.fill_retries.retries(),
                "lost every fill retry; the next loop tries again"
            );
            return;
        };
        let wake = self.targets_changed.clone();
        self.fill_retry = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        }));
    }
}
