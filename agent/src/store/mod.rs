//! The etcd adapter: the only module of gru that speaks etcd's API.
//!
//! Every request goes through [`retry::with_retry`], so a dead member of a multi-member
//! cluster or a leader election costs latency, not a failed command. Operations that must
//! be atomic (creating a cluster, pushing a configuration, registering a node) are single
//! transactions guarded by a comparison, so two operators racing cannot interleave.
//!
//! Once a request has run out of its whole deadline without an answer, or the node's lease
//! keep-alive got no answer for a whole TTL ([`Store::note_unreachable`]), etcd is known to
//! be unreachable: until some request is answered again, each one, those under way too, gets
//! only [`UNREACHABLE_REQUEST_DEADLINE`]. An agent's loop makes several requests per tick;
//! waiting the full deadline for each while etcd is down would stall the loop, and with it
//! the guards that need no etcd (base services, dead containers), for tens of seconds per
//! tick. A member that does not answer while others do is left out of the balanced client
//! until it answers again (`health.rs`).

mod error;
mod health;
mod kept_lease;
mod ledger;
mod mirror;
mod retry;
mod rollouts;
mod settings;
mod watch;

pub use error::{StoreError, is_lease_not_found, is_transient};
pub use ledger::LedgerTtls;
pub use mirror::{MIRROR_RESYNC_PERIOD, Mirror, MirrorEvent, MirrorSettings, MirrorStatus};
pub use retry::{DEFAULT_REQUEST_DEADLINE, RETRY_MAX_BACKOFF, with_retry, with_retry_until};
pub use rollouts::ReadRollout;
pub use settings::{DEFAULT_ETCD_ENDPOINT, EtcdSettings};
pub use watch::{WATCH_CHANNEL_LEN, WatchEvent};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::keys::ClusterKeys;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp,
};

/// How long to wait for a TCP/TLS connection to one member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one request may retry while etcd is known to be unreachable (a request ran out
/// of its deadline, or the keep-alive got no answer for a TTL, and no request has been
/// answered since): enough to get around a dead member or
/// to notice that etcd is back, short enough that an outage does not stall the caller.
pub const UNREACHABLE_REQUEST_DEADLINE: Duration = Duration::from_secs(1);

/// etcd's default `--max-txn-ops`; a push that needs more operations is refused up front
/// with a clear message instead of etcd's terse one.
pub const MAX_TXN_OPS: usize = 128;

/// A connected etcd client plus what is needed to report and retry its requests.
#[derive(Clone)]
pub struct Store {
    client: Client,
    endpoints: String,
    /// Each endpoint alone, and how to connect to it: see [`Store::member_client`].
    members: Arc<Vec<String>>,
    options: ConnectOptions,
    /// Keeps `client` away from members that do not answer.
    health: Arc<health::MemberHealth>,
    deadline: Duration,
    /// Shared by every clone: false from a request that ran out of its deadline (or
    /// [`Store::note_unreachable`]) until the next one that is answered.
    reachable: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .field("deadline", &self.deadline)
            .field("reachable", &self.reachable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A key, its value and its modification revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
}

impl Store {
    /// Connects (with retries until the request deadline) using `settings`.
    pub async fn connect(settings: &EtcdSettings) -> Result<Store, StoreError> {
        if settings.endpoints.is_empty() {
            return Err(StoreError::Settings("no etcd endpoint given".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => options = options.with_user(user, password),
            (Some(_), None) | (None, Some(_)) => {
                return Err(StoreError::Settings(
                    "--etcd-user and --etcd-password go together".into(),
                ));
            }
            (None, None) => {}
        }
        let tls = tls_options(settings)?;
        if let Some(tls) = tls.clone() {
            options = options.with_tls(tls);
        }
        let tls = tls.is_some();
        let endpoints = settings.endpoints_display();
        let client = with_retry(&endpoints, "connect", DEFAULT_REQUEST_DEADLINE, || {
            Client::connect(settings.endpoints.clone(), Some(options.clone()))
        })
        .await?;
        Ok(Store {
            client,
            endpoints,
            members: Arc::new(settings.endpoints.clone()),
            health: Arc::new(health::MemberHealth::new(
                &settings.endpoints,
                options.clone(),
                tls,
            )),
            options,
            deadline: DEFAULT_REQUEST_DEADLINE,
            reachable: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The raw client, for long-lived streams (lease keep-alive, watches) that manage their
    /// own reconnection.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Some member did not answer: probe them all, and keep requests away from those that
    /// do not answer (see `health.rs`).
    pub fn suspect_members(&self) {
        self.health.suspect(&self.client);
    }

    /// The `index`-th endpoint, counted modulo their number.
    pub fn member_endpoint(&self, index: usize) -> String {
        self.members[index % self.members.len().max(1)].clone()
    }

    /// A client of [`Store::member_endpoint`]`(index)` alone, for a long-lived stream that
    /// must move to another member when its own stops answering: the balanced client picks
    /// a member per request at random and may keep picking one that accepts connections but
    /// never answers (a stopped process).
    pub async fn member_client(&self, index: usize) -> Result<Client, StoreError> {
        let endpoint = self.member_endpoint(index);
        Client::connect([endpoint.as_str()], Some(self.options.clone()))
            .await
            .map_err(|source| StoreError::Failed {
                what: format!("connect to {endpoint}"),
                source,
            })
    }

    /// Runs one request with this store's retry policy: the full deadline while etcd
    /// answers, [`UNREACHABLE_REQUEST_DEADLINE`] once a request ran out of it.
    pub async fn call<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        // Asked again before every attempt: a request under way when etcd is found
        // unreachable gives up early too.
        let deadline = || {
            if self.reachable.load(Ordering::Relaxed) {
                self.deadline
            } else {
                self.deadline.min(UNREACHABLE_REQUEST_DEADLINE)
            }
        };
        let mut attempts = 0;
        let result = with_retry_until(&self.endpoints, what, deadline, || {
            attempts += 1;
            // Called again: the last attempt failed, perhaps on a member that hangs.
            if attempts > 1 {
                self.health.suspect(&self.client);
            }
            op(self.client.clone())
        })
        .await;
        // Any answer, a refusal too, shows that etcd is reachable.
        let reachable = !matches!(result, Err(StoreError::Unavailable { .. }));
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            if reachable {
                tracing::info!(endpoints = %self.endpoints, what, "etcd answers again");
            } else {
                tracing::warn!(
                    endpoints = %self.endpoints,
                    what,
                    deadline = ?UNREACHABLE_REQUEST_DEADLINE,
                    "etcd is unreachable; until it answers, each request gives up after the shorter deadline"
                );
            }
        }
        result
    }

    /// etcd has not answered for a while (the node's lease keep-alive got no answer for a
    /// whole TTL): from now until etcd answers a request, requests give up after
    /// [`UNREACHABLE_REQUEST_DEADLINE`], those under way too.
    pub fn note_unreachable(&self, why: &str) {
        if self.reachable.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                endpoints = %self.endpoints,
                why,
                deadline = ?UNREACHABLE_REQUEST_DEADLINE,
                "etcd is unreachable; until it answers, each request gives up after the shorter deadline"
            );
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let resp = self
            .call(&format!("get {key}"), |mut c| async move {
                c.get(key, None).await
            })
            .await?;
        Ok(resp.kvs().first().map(entry))
    }

    /// Every key under `prefix`, sorted by key.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let resp = self
            .call(&format!("get {prefix}*"), |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        Ok(resp.kvs().iter().map(entry).collect())
    }

    /// Every key under `prefix` (key → value) and the revision of etcd that the read saw:
    /// a watch from the next revision misses nothing and repeats nothing. Linearizable, like
    /// every read of this store.
    pub async fn get_prefix_at(
        &self,
        prefix: &str,
    ) -> Result<(std::collections::BTreeMap<String, String>, i64), StoreError> {
        let resp = self
            .call(&format!("get {prefix}*"), |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let keys = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect();
        Ok((keys, revision))
    }

    /// False from a request that ran out of its deadline (or [`Store::note_unreachable`])
    /// until the next request that etcd answers.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub async fn txn(&self, what: &str, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(what, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Creates the cluster's tree: its id and its secret, atomically. An existing cluster
    /// is refused unless `force`, which deletes the whole tree (in the same transaction as
    /// the new id is written) and starts over.
    pub async fn create_cluster(
        &self,
        keys: &ClusterKeys,
        id: &str,
        secret: &str,
        force: bool,
    ) -> Result<(), StoreError> {
        let puts = [
            (keys.uuid(), id.to_owned()),
            (keys.secret(), secret.to_owned()),
        ];
        let what = format!("create cluster {}", keys.cluster());
        if force {
            return self
                .replace_keys(&what, vec![], &[keys.prefix()], &puts)
                .await
                .map(drop);
        }
        let txn = Txn::new()
            .when(vec![Compare::version(keys.uuid(), CompareOp::Equal, 0)])
            .and_then(
                puts.iter()
                    .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
                    .collect::<Vec<_>>(),
            );
        if self.txn(&what, txn).await?.succeeded() {
            return Ok(());
        }
        let existing = self
            .get(&keys.uuid())
            .await?
            .map(|e| e.value)
            .unwrap_or_default();
        Err(StoreError::ClusterExists {
            cluster: keys.cluster().to_owned(),
            id: existing,
        })
    }

    /// Makes the keys under `prefixes` exactly `puts`, in one transaction that also checks
    /// `guard`. etcd refuses a transaction that deletes a range and writes inside it, so the
    /// keys to delete are read first and the transaction compares the prefixes' revision to
    /// that read: a concurrent writer makes it fail, and it is tried again. Returns
    /// `Ok(false)` when `guard` does not hold.
    async fn replace_keys(
        &self,
        what: &str,
        guard: Vec<Compare>,
        prefixes: &[String],
        puts: &[(String, String)],
    ) -> Result<bool, StoreError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut existing = Vec::new();
            let mut compares = guard.clone();
            for prefix in prefixes {
                let resp = self
                    .call(&format!("list {prefix}*"), |mut c| async move {
                        c.get(
                            prefix.as_str(),
                            Some(GetOptions::new().with_prefix().with_keys_only()),
                        )
                        .await
                    })
                    .await?;
                let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                compares.push(
                    Compare::mod_revision(prefix.as_str(), CompareOp::Less, revision + 1)
                        .with_prefix(),
                );
                existing.extend(
                    resp.kvs()
                        .iter()
                        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
                );
            }
            let mut ops: Vec<TxnOp> = existing
                .iter()
                .filter(|k| !puts.iter().any(|(p, _)| p == *k))
                .map(|k| TxnOp::delete(k.as_str(), None))
                .collect();
            ops.extend(
                puts.iter()
                    .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None)),
            );
            if ops.len() > MAX_TXN_OPS {
                return Err(StoreError::Settings(format!(
                    "{what} needs {} writes in one transaction, more than etcd's default limit of {MAX_TXN_OPS}; raise etcd's --max-txn-ops",
                    ops.len()
                )));
            }
            let txn = Txn::new().when(compares).and_then(ops);
            if self.txn(what, txn).await?.succeeded() {
                return Ok(true);
            }
            // Either the guard failed, or someone wrote under a prefix since we read it.
            let guard_holds = guard.is_empty()
                || self
                    .txn(what, Txn::new().when(guard.clone()))
                    .await?
                    .succeeded();
            if !guard_holds {
                return Ok(false);
            }
        }
        Err(StoreError::Settings(format!(
            "{what}: the keys kept changing under it for {ATTEMPTS} attempts; try again"
        )))
    }

    /// Fails with [`StoreError::ClusterMissing`] unless the cluster has an id; returns it.
    pub async fn cluster_id(&self, keys: &ClusterKeys) -> Result<String, StoreError> {
        self.get(&keys.uuid())
            .await?
            .map(|e| e.value)
            .ok_or_else(|| StoreError::ClusterMissing {
                cluster: keys.cluster().to_owned(),
            })
    }

    /// Replaces the cluster's configuration with `documents` (key, JSON) in one
    /// transaction, guarded by the cluster's existence. Services and analytics not in
    /// `documents` are deleted: the pushed directory is the whole truth. `also` is given the
    /// service descriptors as stored before the push (key → JSON) and returns more records
    /// to write in the same transaction (the rollout records of the services whose version
    /// changes); a push that races another one reads them again.
    pub async fn replace_config(
        &self,
        keys: &ClusterKeys,
        documents: &[(String, String)],
        also: impl Fn(&std::collections::BTreeMap<String, String>) -> Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        const ATTEMPTS: usize = 5;
        let prefixes = [keys.services_prefix(), keys.analytics_prefix()];
        let what = format!("push config to {}", keys.cluster());
        for _ in 0..ATTEMPTS {
            let (before, revision) = self.get_prefix_at(&keys.services_prefix()).await?;
            let mut puts = documents.to_vec();
            puts.extend(also(&before));
            let guard = vec![
                Compare::version(keys.uuid(), CompareOp::Greater, 0),
                // The descriptors `also` was given are still the stored ones.
                Compare::mod_revision(keys.services_prefix(), CompareOp::Less, revision + 1)
                    .with_prefix(),
            ];
            if self.replace_keys(&what, guard, &prefixes, &puts).await? {
                return Ok(());
            }
            if self.get(&keys.uuid()).await?.is_none() {
                return Err(StoreError::ClusterMissing {
                    cluster: keys.cluster().to_owned(),
                });
            }
        }
        Err(StoreError::Settings(format!(
            "{what}: the services changed during each of {ATTEMPTS} attempts (another push?); try again"
        )))
    }

    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let resp = self
            .call("grant lease", |mut c| async move {
                c.lease_grant(ttl_secs, None).await
            })
            .await?;
        Ok(resp.id())
    }

    /// Whether lease `id` still exists (etcd reports a remaining TTL above 0).
    pub async fn lease_alive(&self, id: i64) -> Result<bool, StoreError> {
        let resp = self
            .call("read lease", |mut c| async move {
                c.lease_time_to_live(id, None).await
            })
            .await?;
        Ok(resp.ttl() > 0)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), StoreError> {
        self.call(
            "revoke lease",
            |mut c| async move { c.lease_revoke(id).await },
        )
        .await
        .map(drop)
    }

    /// Writes `records` under `lease` if `guard_key` does not exist (no live holder), in one
    /// transaction; `Ok(false)` when the guard key exists.
    pub async fn put_if_absent(
        &self,
        what: &str,
        guard_key: &str,
        records: &[(String, String)],
        lease: i64,
    ) -> Result<bool, StoreError> {
        let guard = Compare::version(guard_key, CompareOp::Equal, 0);
        self.put_all_if(what, guard, records, lease).await
    }

    /// Writes `records` under `lease` in one transaction if `guard` holds; `Ok(false)`
    /// when it does not.
    pub(crate) async fn put_all_if(
        &self,
        what: &str,
        guard: Compare,
        records: &[(String, String)],
        lease: i64,
    ) -> Result<bool, StoreError> {
        let ops: Vec<TxnOp> = records
            .iter()
            .map(|(k, v)| {
                TxnOp::put(
                    k.as_str(),
                    v.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        let txn = Txn::new().when(vec![guard]).and_then(ops);
        Ok(self.txn(what, txn).await?.succeeded())
    }

    /// Creates `key` with `value` (no lease) unless it exists; `Ok(false)` when it does.
    pub async fn create(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when(vec![Compare::version(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key, value, None)]);
        Ok(self.txn(&format!("create {key}"), txn).await?.succeeded())
    }

    /// Replaces the cluster key `previous` with `next` and writes the rotation record, in
    /// one transaction (the record first: a watcher that applies the events in order learns
    /// of the overlap before the new key); `Ok(false)` when the key is no longer `previous`
    /// (another rotation won).
    pub async fn rotate_cluster_key(
        &self,
        keys: &ClusterKeys,
        previous: &str,
        next: &str,
        rotation: &str,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when(vec![Compare::value(
                keys.secret(),
                CompareOp::Equal,
                previous,
            )])
            .and_then(vec![
                TxnOp::put(keys.key_rotation(), rotation, None),
                TxnOp::put(keys.secret(), next, None),
            ]);
        let what = format!("rotate the key of cluster {}", keys.cluster());
        Ok(self.txn(&what, txn).await?.succeeded())
    }

    /// Puts one key, optionally under a lease.
    pub async fn put(&self, key: &str, value: &str, lease: Option<i64>) -> Result<(), StoreError> {
        let options = lease.map(|id| PutOptions::new().with_lease(id));
        self.call(&format!("put {key}"), |mut c| {
            let options = options.clone();
            async move { c.put(key, value, options).await }
        })
        .await
        .map(drop)
    }
}

impl Store {
    /// Puts `key` (optionally under `lease`) and deletes `deleted` in one transaction:
    /// a record that moves from one key to another is never seen at both, nor at neither.
    pub async fn put_deleting(
        &self,
        key: &str,
        value: &str,
        lease: Option<i64>,
        deleted: &[String],
    ) -> Result<(), StoreError> {
        let mut ops = vec![TxnOp::put(
            key,
            value,
            lease.map(|id| PutOptions::new().with_lease(id)),
        )];
        ops.extend(deleted.iter().map(|k| TxnOp::delete(k.as_str(), None)));
        self.txn(&format!("put {key}"), Txn::new().and_then(ops))
            .await
            .map(drop)
    }

    /// Deletes `keys` in one transaction; keys that do not exist are not an error.
    pub async fn delete_all(&self, keys: &[String]) -> Result<(), StoreError> {
        let ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::delete(k.as_str(), None))
            .collect();
        let what = format!("delete {}", keys.join(", "));
        self.txn(&what, Txn::new().and_then(ops)).await.map(drop)
    }

    /// Every key under each of `prefixes`, read in one transaction (one revision of etcd,
    /// linearizable): the lists in the order of `prefixes`, each sorted by key.
    pub async fn get_prefixes(&self, prefixes: &[String]) -> Result<Vec<Vec<Entry>>, StoreError> {
        let ops: Vec<TxnOp> = prefixes
            .iter()
            .map(|p| TxnOp::get(p.as_str(), Some(GetOptions::new().with_prefix())))
            .collect();
        let what = format!("get {}*", prefixes.join("*, "));
        let resp = self.txn(&what, Txn::new().and_then(ops)).await?;
        Ok(resp
            .op_responses()
            .into_iter()
            .map(|op| match op {
                etcd_client::TxnOpResponse::Get(get) => get.kvs().iter().map(entry).collect(),
                _ => Vec::new(),
            })
            .collect())
    }

    /// Deletes one key; deleting a key that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(&format!("delete {key}"), |mut c| async move {
            c.delete(key, None).await
        })
        .await
        .map(drop)
    }
}

fn entry(kv: &etcd_client::KeyValue) -> Entry {
    Entry {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        mod_revision: kv.mod_revision(),
    }
}

fn tls_options(settings: &EtcdSettings) -> Result<Option<TlsOptions>, StoreError> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            StoreError::Settings(format!("cannot read {what} {}: {e}", path.display()))
        })
    };
    let any_https = settings.endpoints.iter().any(|e| e.starts_with("https://"));
    if settings.ca.is_none() && settings.cert.is_none() && settings.key.is_none() && !any_https {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &settings.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
    }
    match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Settings(
                "--etcd-cert and --etcd-key go together".into(),
            ));
        }
    }
    Ok(Some(tls))
}
