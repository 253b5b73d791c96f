//! The scaling ledger in etcd (see `crate::coordination` for what it means): read it, and
//! claim a step with one transaction that compares the last claim's revision to what was read.

use common::keys::{ClusterKeys, LedgerPart};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

use super::{Store, StoreError};
pub use crate::coordination::LedgerTtls;
use crate::coordination::{Claim, Intent, Ledger, RolloutStep, Target};

impl Store {
    /// Reads a service's ledger (one prefix read).
    pub async fn read_ledger(
        &self,
        keys: &ClusterKeys,
        service: &str,
    ) -> Result<Ledger, StoreError> {
        let prefix = keys.scaling_prefix(service);
        let resp = self
            .call(&format!("read ledger of {service}"), |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut ledger = Ledger::default();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if key == keys.scaling(service, LedgerPart::OutCooldown) {
                ledger.out_cooling = true;
            } else if key == keys.scaling(service, LedgerPart::InCooldown) {
                ledger.in_cooling = true;
            } else if key == keys.scaling(service, LedgerPart::Intent) {
                // An unreadable intent (written around gru) does not correct the count.
                ledger.intent = serde_json::from_slice::<Intent>(kv.value()).ok();
            } else if key == keys.scaling(service, LedgerPart::LastClaim) {
                ledger.revision = kv.mod_revision();
            } else if key == keys.scaling(service, LedgerPart::Target) {
                ledger.target = serde_json::from_slice::<Target>(kv.value()).ok();
            } else if key == keys.scaling(service, LedgerPart::RolloutStep) {
                // An unreadable step (written around gru) still holds scaling back.
                ledger.rollout_step = Some(
                    serde_json::from_slice::<RolloutStep>(kv.value()).unwrap_or(RolloutStep {
                        node: "an unknown node".to_owned(),
                        version: String::new(),
                        count: 0,
                        stop_first: false,
                    }),
                );
            }
        }
        Ok(ledger)
    }

    /// Writes `claim` if the last claim is still at `seen_revision`. Every record but the
    /// last claim is written under a lease of its own TTL (`ttls`). `Ok(false)` when another
    /// agent claimed first (nothing is written).
    pub async fn claim_step(
        &self,
        keys: &ClusterKeys,
        service: &str,
        seen_revision: i64,
        claim: &Claim,
        ttls: LedgerTtls,
    ) -> Result<bool, StoreError> {
        let mut leases = Vec::new();
        let intent_lease = self.lease_grant(ttls.settle_secs.max(2)).await?;
        leases.push(intent_lease);
        let intent = serde_json::to_string(&claim.intent).unwrap_or_default();
        let mut ops = vec![
            TxnOp::put(
                keys.scaling(service, LedgerPart::Intent),
                intent.clone(),
                Some(PutOptions::new().with_lease(intent_lease)),
            ),
            TxnOp::put(keys.scaling(service, LedgerPart::LastClaim), intent, None),
        ];
        for (start, part, ttl) in [
            (
                claim.start_out_cooldown,
                LedgerPart::OutCooldown,
                ttls.cooldown_out_secs,
            ),
            (
                claim.start_in_cooldown,
                LedgerPart::InCooldown,
                ttls.cooldown_in_secs,
            ),
        ] {
            if start && ttl > 0 {
                let lease = self.lease_grant(ttl.max(2)).await?;
                leases.push(lease);
                ops.push(TxnOp::put(
                    keys.scaling(service, part),
                    claim.intent.node.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                ));
            }
        }
        if let Some(target) = &claim.target {
            let lease = self.lease_grant(ttls.target_secs.max(2)).await?;
            leases.push(lease);
            ops.push(TxnOp::put(
                keys.scaling(service, LedgerPart::Target),
                serde_json::to_string(target).unwrap_or_default(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                keys.scaling(service, LedgerPart::LastClaim),
                CompareOp::Equal,
                seen_revision,
            )])
            .and_then(ops);
        let won = self
            .txn(&format!("claim a step of {service}"), txn)
            .await?
            .succeeded();
        if !won {
            for lease in leases {
                let _ = self.lease_revoke(lease).await;
            }
        }
        Ok(won)
    }

    /// Claims a cluster-scope node call (`ClusterKeys::add_node_claim`,
    /// `remove_node_claim`): creates `record` at `key` under a lease of `cooldown_secs` if
    /// no call stands. `Ok(false)` when one does (another agent claimed it within the
    /// cooldown): exactly one agent makes the call per cooldown.
    pub async fn claim_node_call(
        &self,
        key: String,
        record: &str,
        cooldown_secs: i64,
    ) -> Result<bool, StoreError> {
        let lease = self.lease_grant(cooldown_secs.max(2)).await?;
        let txn = Txn::new()
            .when(vec![Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                record,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let won = self.txn("claim a node call", txn).await?.succeeded();
        if !won {
            let _ = self.lease_revoke(lease).await;
        }
        Ok(won)
    }

    /// Claims a rollout step: writes `step` under a lease of `ttl_secs` (and rewrites
    /// `last-claim`, so a scaling claim read before it fails) if the last claim is still at
    /// `seen_revision`. The lease, to release the step with; `None` when another agent
    /// claimed first.
    pub async fn claim_rollout_step(
        &self,
        keys: &ClusterKeys,
        service: &str,
        seen_revision: i64,
        step: &RolloutStep,
        ttl_secs: i64,
    ) -> Result<Option<i64>, StoreError> {
        let lease = self.lease_grant(ttl_secs.max(2)).await?;
        let record = serde_json::to_string(step).unwrap_or_default();
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                keys.scaling(service, LedgerPart::LastClaim),
                CompareOp::Equal,
                seen_revision,
            )])
            .and_then(vec![
                TxnOp::put(
                    keys.scaling(service, LedgerPart::RolloutStep),
                    record.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(keys.scaling(service, LedgerPart::LastClaim), record, None),
            ]);
        let won = self
            .txn(&format!("claim a rollout step of {service}"), txn)
            .await?
            .succeeded();
        if !won {
            let _ = self.lease_revoke(lease).await;
        }
        Ok(won.then_some(lease))
    }
}
