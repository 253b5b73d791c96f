//! Service discovery records: `<Discovery.AppRoot>/<service>/<instance>` = `host:port` for
//! every running instance on this node, written under the node's lease so they vanish with
//! the node. The agent's loop registers an instance when its container starts and
//! deregisters it when the container dies.

use common::keys::ClusterKeys;
use tokio::sync::watch;

use crate::store::{Store, StoreError};

/// Writes and removes this node's discovery records.
#[derive(Debug, Clone)]
pub struct DiscoveryRegistry {
    store: Store,
    keys: ClusterKeys,
    app_root: String,
    /// The node's current lease (it changes if the node had to register again).
    lease: watch::Receiver<i64>,
}

impl DiscoveryRegistry {
    pub fn new(
        store: Store,
        keys: ClusterKeys,
        app_root: &str,
        lease: watch::Receiver<i64>,
    ) -> Self {
        Self {
            store,
            keys,
            app_root: app_root.to_owned(),
            lease,
        }
    }

    /// Publishes `address` (`host:port`) for `instance` of `service` under the current lease.
    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        let key = self
            .keys
            .discovery_instance(&self.app_root, service, instance);
        let lease = *self.lease.borrow();
        self.store.put(&key, address, Some(lease)).await
    }

    /// Removes the record of `instance`; removing one that is not there is not an error.
    pub async fn deregister(&self, service: &str, instance: &str) -> Result<(), StoreError> {
        let key = self
            .keys
            .discovery_instance(&self.app_root, service, instance);
        self.store.delete(&key).await
    }

    /// Every published instance of `service` in the cluster (all nodes): (instance, address).
    pub async fn instances(&self, service: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = self.keys.discovery_service_prefix(&self.app_root, service);
        Ok(self
            .store
            .get_prefix(&prefix)
            .await?
            .into_iter()
            .filter_map(|e| {
                common::keys::leaf_name(&prefix, &e.key)
                    .map(|instance| (instance.to_owned(), e.value))
            })
            .collect())
    }
}
