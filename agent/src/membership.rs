//! A node's membership in its cluster: its records under one lease, kept alive.
//!
//! ```text
//!   register ──► alive ──(keep-alive answered, ttl > 0)──► alive
//!                  │
//!                  ├─(member does not answer)──► keep-alive on the next member, with
//!                  │        backoff while none answers (records stay until the TTL runs out)
//!                  └─(lease gone: ttl = 0)──► register again under a new lease
//! ```
//!
//! Everything the node owns in etcd is written under the lease, so a node that dies
//! disappears from the tree within its TTL without anyone cleaning up after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::{NodeConfig, NodeConstraints, NodeResources};
use common::keys::{ClusterKeys, NodeField};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, is_lease_not_found};

/// etcd raises shorter TTLs anyway (1.5 × election timeout); asking for less than this
/// would only make the registration flap.
pub const MIN_LEASE_TTL_SECS: i64 = 2;

/// First pause after a keep-alive failed (the next attempt goes to another member).
const KEEPALIVE_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts to reach etcd again after a keep-alive failed (and
/// never more than half the keep-alive period: when etcd returns after it revoked the lease,
/// the node registers again within a fraction of its TTL).
const KEEPALIVE_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecords {
    pub config: NodeConfig,
    pub constraints: NodeConstraints,
    pub resources: NodeResources,
    pub active: bool,
}

impl NodeRecords {
    fn entries(&self, keys: &ClusterKeys, node: &str) -> Vec<(String, String)> {
        let json = |v: serde_json::Result<String>| v.unwrap_or_else(|_| "{}".to_owned());
        vec![
            (
                keys.node(node, NodeField::Config),
                json(serde_json::to_string(&self.config)),
            ),
            (
                keys.node(node, NodeField::Constraints),
                json(serde_json::to_string(&self.constraints)),
            ),
            (
                keys.node(node, NodeField::Resources),
                json(serde_json::to_string(&self.resources)),
            ),
            (keys.node(node, NodeField::Active), self.active.to_string()),
        ]
    }
}

/// A registered node: its lease and what it wrote under it.
#[derive(Debug)]
pub struct Membership {
    store: Store,
    keys: ClusterKeys,
    node: String,
    ttl_secs: i64,
    /// The records as they are now (the agent updates constraints and `active`), so a
    /// re-registration after a lost lease writes the current ones, not those of start-up.
    records: Arc<Mutex<NodeRecords>>,
    lease: watch::Sender<i64>,
}

impl Membership {
    /// Grants a lease and writes the node's records under it, refusing a name that a live
    /// node holds (its config key exists). On refusal the fresh lease is revoked.
    pub async fn register(
        store: Store,
        keys: ClusterKeys,
        node: &str,
        ttl_secs: i64,
        records: NodeRecords,
    ) -> Result<Membership, StoreError> {
        let ttl_secs = ttl_secs.max(MIN_LEASE_TTL_SECS);
        let lease = register_once(&store, &keys, node, ttl_secs, &records).await?;
        Ok(Membership {
            store,
            keys,
            node: node.to_owned(),
            ttl_secs,
            records: Arc::new(Mutex::new(records)),
            lease: watch::channel(lease).0,
        })
    }

    /// Takes back the lease this node's previous agent kept when it stopped to restart
    /// (`crate::kept_lease`): if the node's config key is still under `lease` and etcd
    /// still has it, the lease gets a full TTL again and the node's records are written
    /// under it once more (its address and resources as they are now; its `active` flag
    /// and constraints as the previous agent left them). `Ok(None)` when the lease cannot
    /// be taken back (it ran out, or the records are under another lease): the caller
    /// registers as usual.
    pub async fn reattach(
        store: Store,
        keys: ClusterKeys,
        node: &str,
        ttl_secs: i64,
        mut records: NodeRecords,
        lease: i64,
    ) -> Result<Option<Membership>, StoreError> {
        let guard = keys.node(node, NodeField::Config);
        if store.key_lease(&guard).await? != Some(lease) || store.lease_refresh(lease).await? <= 0 {
            return Ok(None);
        }
        if let Some(entry) = store.get(&keys.node(node, NodeField::Active)).await? {
            records.active = entry.value == "true";
        }
        if let Some(entry) = store.get(&keys.node(node, NodeField::Constraints)).await?
            && let Ok(constraints) = serde_json::from_str(&entry.value)
        {
            records.constraints = constraints;
        }
        let written = store
            .put_if_under_lease(
                &format!("re-attach node {node}"),
                &guard,
                &records.entries(&keys, node),
                lease,
            )
            .await?;
        Ok(written.then(|| Membership {
            store,
            keys,
            node: node.to_owned(),
            ttl_secs: ttl_secs.max(MIN_LEASE_TTL_SECS),
            records: Arc::new(Mutex::new(records)),
            lease: watch::channel(lease).0,
        }))
    }

    /// One keep-alive now, so that the lease runs a full TTL from here: called by an agent
    /// that stops to restart, which leaves its successor the whole TTL to take the lease
    /// back. Returns the TTL granted (0: the lease is gone).
    pub async fn refresh(&self) -> Result<i64, StoreError> {
        self.store.lease_refresh(self.lease_id()).await
    }

    pub fn lease_id(&self) -> i64 {
        *self.lease.borrow()
    }

    /// Follows lease changes (re-registration after the lease was lost).
    pub fn subscribe_lease(&self) -> watch::Receiver<i64> {
        self.lease.subscribe()
    }

    /// The node's current records, shared with whoever changes them.
    pub fn records(&self) -> Arc<Mutex<NodeRecords>> {
        self.records.clone()
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Keeps the lease alive until `cancel` fires. If the lease expired (etcd was
    /// unreachable for longer than the TTL), registers again under a new lease.
    ///
    /// The keep-alive talks to one member at a time, over a client of its own, and moves on
    /// to the next member as soon as its member stops answering: a member that is stopped
    /// (or partitioned) accepts connections and never answers, and the store's balanced
    /// client may keep choosing it until the lease has run out.
    pub async fn keep_alive(&self, cancel: CancellationToken) {
        let period = Duration::from_millis((self.ttl_secs as u64 * 1000 / 3).max(500));
        let max_backoff = KEEPALIVE_MAX_BACKOFF.min(period / 2);
        let mut backoff = KEEPALIVE_INITIAL_BACKOFF;
        // Agents start on different members, so their keep-alives are spread over them.
        let mut member = rand::random::<u32>() as usize;
        let ttl = Duration::from_secs(self.ttl_secs as u64);
        let mut last_answer = tokio::time::Instant::now();
        while !cancel.is_cancelled() {
            let answered_before = last_answer;
            match self
                .keep_alive_stream(period, member, &mut last_answer, &cancel)
                .await
            {
                Ok(()) => return,
                Err(LeaseLost::Expired) => {
                    tracing::warn!(node = %self.node, "lease expired; registering again");
                    let records = self
                        .records
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    match register_once(
                        &self.store,
                        &self.keys,
                        &self.node,
                        self.ttl_secs,
                        &records,
                    )
                    .await
                    {
                        Ok(lease) => {
                            self.lease.send_replace(lease);
                            last_answer = tokio::time::Instant::now();
                            backoff = KEEPALIVE_INITIAL_BACKOFF;
                            tracing::info!(node = %self.node, lease, "registered again");
                            continue;
                        }
                        Err(err) => {
                            tracing::warn!(node = %self.node, error = %err, "registering again failed")
                        }
                    }
                }
                Err(LeaseLost::Unreachable { endpoint, reason }) => {
                    tracing::warn!(node = %self.node, %endpoint, error = %reason, "lease keep-alive failed; trying the next member");
                    member = member.wrapping_add(1);
                    self.store.suspect_members();
                    // No member answered for a whole TTL: etcd is unreachable (or so slow
                    // that the lease is lost anyway). The loop's requests should not each
                    // wait for the full deadline now.
                    if last_answer.elapsed() >= ttl {
                        self.store
                            .note_unreachable("no lease keep-alive answer for a whole TTL");
                    }
                }
            }
            // A stream that worked for a while is retried at once; only failures in a row
            // back off.
            if last_answer > answered_before {
                backoff = KEEPALIVE_INITIAL_BACKOFF;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    /// One keep-alive stream on the `member`-th endpoint, until it fails or `cancel` fires;
    /// `last_answer` is moved to each answer with the lease alive.
    async fn keep_alive_stream(
        &self,
        period: Duration,
        member: usize,
        last_answer: &mut tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<(), LeaseLost> {
        let lease = self.lease_id();
        let endpoint = self.store.member_endpoint(member);
        let unreachable = |reason: String| LeaseLost::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        // Connecting authenticates when etcd has users: bounded like every other step.
        let mut client = tokio::time::timeout(period, self.store.member_client(member))
            .await
            .map_err(|_| unreachable("no connection in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut keeper, mut stream) = tokio::time::timeout(period, client.lease_keep_alive(lease))
            .await
            .map_err(|_| unreachable("keep-alive stream did not open in time".into()))?
            .map_err(|e| {
                // A lease that ran out while etcd was unreachable: register again.
                if is_lease_not_found(&e) {
                    LeaseLost::Expired
                } else {
                    unreachable(e.to_string())
                }
            })?;
        *last_answer = tokio::time::Instant::now();
        loop {
            keeper
                .keep_alive()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            match tokio::time::timeout(period, stream.message()).await {
                Err(_) => return Err(unreachable("no keep-alive answer in time".into())),
                Ok(Err(e)) => return Err(unreachable(e.to_string())),
                Ok(Ok(None)) => return Err(unreachable("keep-alive stream closed".into())),
                Ok(Ok(Some(resp))) if resp.ttl() <= 0 => return Err(LeaseLost::Expired),
                Ok(Ok(Some(_))) => *last_answer = tokio::time::Instant::now(),
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Revokes the lease: every key written under it disappears at once.
    pub async fn resign(&self) -> Result<(), StoreError> {
        self.store.lease_revoke(self.lease_id()).await
    }
}

#[derive(Debug)]
enum LeaseLost {
    Expired,
    /// The member at `endpoint` did not answer.
    Unreachable {
        endpoint: String,
        reason: String,
    },
}

async fn register_once(
    store: &Store,
    keys: &ClusterKeys,
    node: &str,
    ttl_secs: i64,
    records: &NodeRecords,
) -> Result<i64, StoreError> {
    let lease = store.lease_grant(ttl_secs).await?;
    let guard = keys.node(node, NodeField::Config);
    let written = store
        .put_if_absent(
            &format!("register node {node}"),
            &guard,
            &records.entries(keys, node),
            lease,
        )
        .await;
    match written {
        Ok(true) => Ok(lease),
        Ok(false) => {
            let _ = store.lease_revoke(lease).await;
            Err(StoreError::NodeNameTaken {
                cluster: keys.cluster().to_owned(),
                node: node.to_owned(),
            })
        }
        Err(err) => {
            let _ = store.lease_revoke(lease).await;
            Err(err)
        }
    }
}
