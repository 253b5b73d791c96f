//! Service discovery records: `<Discovery.AppRoot>/<service>/<instance>` = `host:port` for
//! every ready instance on this node, and `/gru/<cluster>/starting/<service>/<instance>` for
//! every one that runs but is not ready (its readiness check has not passed, or fails now),
//! all written under the node's lease so they vanish with the node. Readers of discovery
//! (load balancers) see only ready instances; the instance counts add both. An instance
//! moves between the two in one transaction, so a count never misses it nor sees it twice.
//! The agent's loop registers an instance when its container starts, moves it as its
//! readiness changes, and deregisters it when the container dies.

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

    /// Publishes `address` (`host:port`) for `instance` of `service` under the current
    /// lease: in discovery when `ready`, else under the starting records; the other record
    /// is deleted in the same transaction.
    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        address: &str,
        ready: bool,
    ) -> Result<(), StoreError> {
        let [served, starting] = self.keys_of(service, instance);
        let (key, other) = if ready {
            (served, starting)
        } else {
            (starting, served)
        };
        let lease = *self.lease.borrow();
        self.store
            .put_deleting(&key, address, Some(lease), &[other])
            .await
    }

    /// Removes the records of `instance` (ready or starting); removing one that is not
    /// there is not an error.
    pub async fn deregister(&self, service: &str, instance: &str) -> Result<(), StoreError> {
        self.store
            .delete_all(&self.keys_of(service, instance))
            .await
    }

    /// The discovery record's key and the starting record's.
    fn keys_of(&self, service: &str, instance: &str) -> [String; 2] {
        [
            self.keys
                .discovery_instance(&self.app_root, service, instance),
            self.keys.starting_instance(service, instance),
        ]
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
