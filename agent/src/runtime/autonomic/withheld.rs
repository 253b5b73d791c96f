//! When a start waits because the discovery records may undercount the cluster's
//! instances: etcd may lose the leases of nodes that still run (a whole etcd paused and
//! resumed, a stale leader revoking leases, etcd#15247), and their records come back only
//! when they register again and republish. So a repair of MinInstances also waits while
//! this node registers again, or did less than a TTL and two loops ago
//! (`discovery_settling`), and while its own lease is gone (`own_lease_alive`).
//!
//! Invariants: a start is withheld for another node only when that node proved itself
//! alive: it answered a fresh `/healthz?challenge=…` (500 ms, in parallel) as itself with
//! a proof of the cluster secret (`super::super::liveness`). A lost node does not answer, so
//! its instances are repaired without delay; a node that answers but stays unregistered is
//! repaired after a TTL and two loops. The nodes are asked at most once per floor check,
//! and a withheld start is recorded with the nodes that answered. The test switch
//! `GRU_TEST_NO_WITHHOLD=1` (`daemon::NO_WITHHOLD_VAR`) turns the asking off, so that a test
//! can show its check of the withheld start fails without it.

use std::collections::BTreeSet;
use std::time::Duration;

use common::config::ClusterConfig;
use common::keys::NodeField;

use super::{Autonomic, now};

impl Autonomic {
    /// Whether the discovery records may undercount the cluster's instances, so that a
    /// repair of MinInstances would start instances that still run: this node registered
    /// again less than a TTL and two loops ago, or is registering again now. Leases are
    /// lost together (etcd revokes every lease whose TTL ran out while it was stopped, or a
    /// stale leader revokes them): the other nodes are registering again too.
    pub(super) fn discovery_settling(&self, config: &ClusterConfig) -> bool {
        let grace = self.settle_grace(config);
        self.lease.has_changed().unwrap_or(false)
            || self
                .lease_changed_at
                .is_some_and(|at| now().since(at) < grace)
    }

    /// How long a node that registered again may take to publish its instances again: a
    /// TTL and two loops.
    fn settle_grace(&self, config: &ClusterConfig) -> Duration {
        Duration::from_secs(config.agent.discovery.ttl_secs) + 2 * self.loop_interval()
    }

    /// The other nodes whose instances the discovery records may be missing although they
    /// run: nodes whose records vanished, or came back, less than a TTL and two loops ago
    /// (or that a read now misses before the watch says so) and that still answer as
    /// themselves (see `super::peers`). Lost nodes do not answer, so their instances are
    /// repaired without delay; a node that answers but stays unregistered is repaired
    /// after the grace. Empty when etcd cannot be read (no claim can be made then anyway),
    /// and always under the test switch `daemon::NO_WITHHOLD_VAR` (nobody is asked).
    async fn answering_in_doubt(&self, config: &ClusterConfig) -> Vec<String> {
        if !self.ask_nodes_in_doubt {
            return Vec::new();
        }
        let Ok(records) = self.store.get_prefix(&self.keys.nodes_prefix()).await else {
            return Vec::new();
        };
        let present: BTreeSet<String> = records
            .iter()
            .filter_map(|e| match self.keys.parse_node_key(&e.key) {
                Some((node, NodeField::Config)) => Some(node.to_owned()),
                _ => None,
            })
            .collect();
        let grace = self.settle_grace(config);
        let doubt =
            self.shared
                .knowledge()
                .peers
                .in_doubt(&present, &self.shared.node, now(), grace);
        if doubt.is_empty() {
            return Vec::new();
        }
        let candidates = doubt.into_iter().map(|(n, t)| (n, t.address, t.port));
        self.prober
            .answering(&self.shared.cluster, candidates)
            .await
    }

    /// Whether `action` (a start of `service` that the discovery count calls for) waits
    /// because nodes that etcd says are gone still answer (see
    /// [`Self::answering_in_doubt`]; asked once per `answering`). Recorded when it waits.
    pub(super) async fn withheld(
        &self,
        config: &ClusterConfig,
        answering: &mut Option<Vec<String>>,
        action: &str,
        service: &str,
    ) -> bool {
        if answering.is_none() {
            *answering = Some(self.answering_in_doubt(config).await);
        }
        let nodes = answering.as_deref().unwrap_or_default();
        if nodes.is_empty() {
            return false;
        }
        let why = format!(
            "withheld: {} lost their etcd records but still answer (etcd lost their leases, they \
             register again); their instances are not counted until they publish them",
            nodes.join(", ")
        );
        tracing::info!(%service, action, nodes = ?nodes, "{why}");
        self.record(action, service, None, why);
        true
    }

    /// Whether this node's lease still exists: when it does not, neither do the records of
    /// this node, nor probably those of the others (see [`Self::discovery_settling`]), and
    /// the membership is about to register again.
    pub(super) async fn own_lease_alive(&self) -> bool {
        let lease = *self.lease.borrow();
        match self.store.lease_alive(lease).await {
            Ok(alive) => alive,
            Err(err) => {
                tracing::warn!(lease, error = %err, "cannot read this node's lease");
                false
            }
        }
    }
}
