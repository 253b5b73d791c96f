//! Rollout records in etcd (`common::rollout`): read one, change its state, and put a
//! previous descriptor back together with the record of the rollback, each in one
//! transaction that compares the record's revision to what was read, so that a push or an
//! operator's command made in between wins and the late writer learns it.

use common::keys::ClusterKeys;
use common::rollout::RolloutRecord;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{Entry, Store, StoreError};

/// A rollout record and the revision it was read at (0: there was none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRollout {
    /// `None` when there is none, or it is unreadable (written around gru).
    pub record: Option<RolloutRecord>,
    pub revision: i64,
}

impl Store {
    /// The rollout record of `service`.
    pub async fn read_rollout(
        &self,
        keys: &ClusterKeys,
        service: &str,
    ) -> Result<ReadRollout, StoreError> {
        Ok(match self.get(&keys.rollout(service)).await? {
            Some(Entry {
                value,
                mod_revision,
                ..
            }) => ReadRollout {
                record: RolloutRecord::parse(&value),
                revision: mod_revision,
            },
            None => ReadRollout {
                record: None,
                revision: 0,
            },
        })
    }

    /// Writes `record` if the stored one is still at `seen_revision`; `Ok(false)` when it
    /// changed (nothing written).
    pub async fn update_rollout(
        &self,
        keys: &ClusterKeys,
        service: &str,
        seen_revision: i64,
        record: &RolloutRecord,
    ) -> Result<bool, StoreError> {
        self.rollout_txn(keys, service, seen_revision, None, record)
            .await
    }

    /// Puts `descriptor` (a descriptor's stored JSON) back as the service's descriptor and
    /// writes `record` (the rollout toward it), if the rollout record is still at
    /// `seen_revision`; `Ok(false)` when it changed (nothing written).
    pub async fn restore_descriptor(
        &self,
        keys: &ClusterKeys,
        service: &str,
        seen_revision: i64,
        descriptor: &str,
        record: &RolloutRecord,
    ) -> Result<bool, StoreError> {
        self.rollout_txn(keys, service, seen_revision, Some(descriptor), record)
            .await
    }

    async fn rollout_txn(
        &self,
        keys: &ClusterKeys,
        service: &str,
        seen_revision: i64,
        descriptor: Option<&str>,
        record: &RolloutRecord,
    ) -> Result<bool, StoreError> {
        let key = keys.rollout(service);
        let mut ops = vec![TxnOp::put(key.as_str(), record.to_json(), None)];
        if let Some(descriptor) = descriptor {
            ops.push(TxnOp::put(keys.service(service), descriptor, None));
        }
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(key.as_str(), CompareOp::Equal, seen_revision),
                // The cluster still exists.
                Compare::version(keys.uuid(), CompareOp::Greater, 0),
            ])
            .and_then(ops);
        Ok(self
            .txn(&format!("write the rollout record of {service}"), txn)
            .await?
            .succeeded())
    }
}
