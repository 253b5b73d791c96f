//! What a restarted agent needs to take its lease back (`crate::kept_lease`): which lease
//! a key lives under, one keep-alive on demand, and the node's records written again under
//! the kept lease only while the node's config key is still under it.

use etcd_client::{Compare, CompareOp};

use super::{Store, StoreError};

impl Store {
    /// The lease `key` lives under (`None`: no such key, or under no lease).
    pub async fn key_lease(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let resp = self
            .call(&format!("get {key}"), |mut c| async move {
                c.get(key, None).await
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| kv.lease()).filter(|&l| l != 0))
    }

    /// One keep-alive of `lease`: its TTL starts again in full. Returns the TTL etcd grants
    /// (0: the lease is gone).
    pub async fn lease_refresh(&self, lease: i64) -> Result<i64, StoreError> {
        self.call("refresh lease", |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok(stream.message().await?.map_or(0, |r| r.ttl()))
        })
        .await
    }

    /// Writes `records` under `lease` if `guard_key` is still under it (the node's records
    /// were not lost or taken over since it stopped), in one transaction; `Ok(false)` when
    /// it is not.
    pub async fn put_if_under_lease(
        &self,
        what: &str,
        guard_key: &str,
        records: &[(String, String)],
        lease: i64,
    ) -> Result<bool, StoreError> {
        let guard = Compare::lease(guard_key, CompareOp::Equal, lease);
        self.put_all_if(what, guard, records, lease).await
    }
}
