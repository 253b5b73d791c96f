//! The fake store: etcd's semantics that gru relies on, in virtual time.
//!
//! * every write gets the next **revision**; a key remembers the revision of its last
//!   write (`mod_revision`), an absent key compares as revision 0;
//! * a **transaction** compares mod-revisions, then writes all or nothing;
//! * a **lease** has a TTL; a key written under it disappears when it expires (each expiry
//!   is a write, so it moves the revision on), unless it is kept alive; etcd's minimum TTL
//!   of 2 s applies where the real adapter asks for it;
//! * the **scaling ledger** is read and claimed exactly as `gru_agent::store` does it
//!   (`agent/src/store/ledger.rs`): the intent under a lease of TTL = settle, the cooldown
//!   keys under leases of TTL = cooldown, the last claim kept without a lease, one
//!   transaction comparing the last claim's revision; a lost claim revokes the leases it
//!   granted;
//! * **membership and discovery**: a node's `active` record and its per-service discovery
//!   record live under the node's lease, so a silent node vanishes within its TTL. The
//!   simulation publishes one discovery record per node and service whose value is the
//!   node's running count (the real agent writes one record per instance; the count under
//!   `<AppRoot>/<service>/` is the same).
//!
//! Keys are built by `common::keys`, as the real adapters build them.

use std::collections::BTreeMap;

use common::keys::{ClusterKeys, LedgerPart, NodeField};
use gru_agent::coordination::{Claim, Intent, Ledger, LedgerTtls, Target};
use gru_agent::mape::Millis;

pub type LeaseId = u64;

/// etcd refuses TTLs below this; the real adapter asks for at least this much.
pub const MIN_LEASE_TTL_SECS: u64 = 2;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: String,
    mod_revision: i64,
    lease: Option<LeaseId>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Lease {
    ttl_secs: u64,
    expires: Millis,
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub key: String,
    pub value: String,
    pub lease: Option<LeaseId>,
}

/// The store's counters, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub claims_won: u64,
    pub claims_lost: u64,
    pub leases_expired: u64,
}

/// An in-memory etcd, as far as gru uses it.
#[derive(Debug, Clone)]
pub struct FakeStore {
    keys: ClusterKeys,
    revision: i64,
    entries: BTreeMap<String, Entry>,
    leases: BTreeMap<LeaseId, Lease>,
    next_lease: LeaseId,
    now: Millis,
    stats: StoreStats,
}

impl FakeStore {
    pub fn new(keys: ClusterKeys) -> FakeStore {
        FakeStore {
            keys,
            revision: 1,
            entries: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease: 1,
            now: Millis::ZERO,
            stats: StoreStats::default(),
        }
    }

    pub fn keys(&self) -> &ClusterKeys {
        &self.keys
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Moves the store's clock to `now`: expired leases take their keys with them.
    pub fn advance(&mut self, now: Millis) {
        self.now = now;
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.revoke(id);
            self.stats.leases_expired += 1;
        }
    }

    /// A new lease of `ttl_secs` (at least [`MIN_LEASE_TTL_SECS`]).
    pub fn grant(&mut self, ttl_secs: u64) -> LeaseId {
        let id = self.next_lease;
        self.next_lease += 1;
        let ttl_secs = ttl_secs.max(MIN_LEASE_TTL_SECS);
        self.leases.insert(
            id,
            Lease {
                ttl_secs,
                expires: self.now.plus(std::time::Duration::from_secs(ttl_secs)),
            },
        );
        id
    }

    /// Renews `lease` for its TTL; `false` if it has already expired (its keys are gone).
    pub fn keep_alive(&mut self, lease: LeaseId) -> bool {
        let now = self.now;
        match self.leases.get_mut(&lease) {
            Some(held) => {
                held.expires = now.plus(std::time::Duration::from_secs(held.ttl_secs));
                true
            }
            None => false,
        }
    }

    /// Ends `lease` and deletes its keys (one revision, as etcd does).
    pub fn revoke(&mut self, lease: LeaseId) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.lease != Some(lease));
        if self.entries.len() != before {
            self.revision += 1;
        }
    }

    pub fn lease_alive(&self, lease: LeaseId) -> bool {
        self.leases.contains_key(&lease)
    }

    /// A key's value and mod-revision.
    pub fn get(&self, key: &str) -> Option<(&str, i64)> {
        self.entries
            .get(key)
            .map(|e| (e.value.as_str(), e.mod_revision))
    }

    /// A key's mod-revision; 0 when absent, as etcd compares it.
    pub fn mod_revision(&self, key: &str) -> i64 {
        self.get(key).map_or(0, |(_, revision)| revision)
    }

    /// Keys under `prefix` with their values.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.entries
            .range(prefix.to_owned()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| (key.as_str(), entry.value.as_str()))
    }

    /// Writes every put if every key's mod-revision equals the one given; all or nothing,
    /// one revision. A put under an expired lease fails the whole transaction, as in etcd.
    pub fn txn(&mut self, compares: &[(&str, i64)], puts: Vec<Put>) -> bool {
        let holds = compares
            .iter()
            .all(|(key, revision)| self.mod_revision(key) == *revision);
        let leases_live = puts.iter().all(|put| {
            put.lease
                .is_none_or(|lease| self.leases.contains_key(&lease))
        });
        if !holds || !leases_live {
            return false;
        }
        self.revision += 1;
        for put in puts {
            self.entries.insert(
                put.key,
                Entry {
                    value: put.value,
                    mod_revision: self.revision,
                    lease: put.lease,
                },
            );
        }
        true
    }

    /// An unconditional write.
    pub fn put(&mut self, key: String, value: String, lease: Option<LeaseId>) -> bool {
        self.txn(&[], vec![Put { key, value, lease }])
    }

    /// Deletes a key (one revision); whether it existed.
    pub fn delete(&mut self, key: &str) -> bool {
        let existed = self.entries.remove(key).is_some();
        if existed {
            self.revision += 1;
        }
        existed
    }

    /// A service's ledger, read as `Store::read_ledger` reads it.
    pub fn read_ledger(&self, service: &str) -> Ledger {
        let mut ledger = Ledger::default();
        let prefix = self.keys.scaling_prefix(service);
        let out = self.keys.scaling(service, LedgerPart::OutCooldown);
        let r#in = self.keys.scaling(service, LedgerPart::InCooldown);
        let intent = self.keys.scaling(service, LedgerPart::Intent);
        let last_claim = self.keys.scaling(service, LedgerPart::LastClaim);
        let target = self.keys.scaling(service, LedgerPart::Target);
        for (key, entry) in self
            .entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
        {
            if *key == out {
                ledger.out_cooling = true;
            } else if *key == r#in {
                ledger.in_cooling = true;
            } else if *key == intent {
                ledger.intent = serde_json::from_str::<Intent>(&entry.value).ok();
            } else if *key == last_claim {
                ledger.revision = entry.mod_revision;
            } else if *key == target {
                ledger.target = serde_json::from_str::<Target>(&entry.value).ok();
            }
        }
        ledger
    }

    /// Claims a step as `Store::claim_step` does: the intent under a lease of
    /// `settle_secs`, each started cooldown under a lease of its own TTL (only when the TTL
    /// is positive), a target under a lease of `target_secs`, the last claim without a
    /// lease, all in one transaction guarded by the last claim's revision. A lost claim
    /// writes nothing and revokes the leases it granted.
    pub fn claim_step(
        &mut self,
        service: &str,
        seen_revision: i64,
        claim: &Claim,
        ttls: LedgerTtls,
    ) -> bool {
        let secs = |ttl: i64| u64::try_from(ttl).unwrap_or(0);
        let (cooldown_out_secs, cooldown_in_secs) =
            (secs(ttls.cooldown_out_secs), secs(ttls.cooldown_in_secs));
        let mut leases = Vec::new();
        let intent_lease = self.grant(secs(ttls.settle_secs));
        leases.push(intent_lease);
        let last_claim = self.keys.scaling(service, LedgerPart::LastClaim);
        let value = serde_json::to_string(&claim.intent).unwrap_or_default();
        let mut puts = vec![
            Put {
                key: self.keys.scaling(service, LedgerPart::Intent),
                value: value.clone(),
                lease: Some(intent_lease),
            },
            Put {
                key: last_claim.clone(),
                value,
                lease: None,
            },
        ];
        for (start, part, ttl) in [
            (
                claim.start_out_cooldown,
                LedgerPart::OutCooldown,
                cooldown_out_secs,
            ),
            (
                claim.start_in_cooldown,
                LedgerPart::InCooldown,
                cooldown_in_secs,
            ),
        ] {
            if start && ttl > 0 {
                let lease = self.grant(ttl);
                leases.push(lease);
                puts.push(Put {
                    key: self.keys.scaling(service, part),
                    value: claim.intent.node.clone(),
                    lease: Some(lease),
                });
            }
        }
        if let Some(target) = &claim.target {
            let lease = self.grant(secs(ttls.target_secs));
            leases.push(lease);
            puts.push(Put {
                key: self.keys.scaling(service, LedgerPart::Target),
                value: serde_json::to_string(target).unwrap_or_default(),
                lease: Some(lease),
            });
        }
        let won = self.txn(&[(last_claim.as_str(), seen_revision)], puts);
        if won {
            self.stats.claims_won += 1;
        } else {
            self.stats.claims_lost += 1;
            for lease in leases {
                self.revoke(lease);
            }
        }
        won
    }

    /// Registers `node` under a new lease of `ttl_secs`: its `active` record (one
    /// transaction). Returns the lease.
    pub fn register_node(&mut self, node: &str, ttl_secs: u64) -> LeaseId {
        let lease = self.grant(ttl_secs);
        // The config record decides whether a node exists (`runtime::peers`); the
        // simulated network needs no address, so it names the node.
        self.put(
            self.keys.node(node, NodeField::Config),
            format!(r#"{{"Name":"{node}","Address":"{node}","Port":1}}"#),
            Some(lease),
        );
        self.put(
            self.keys.node(node, NodeField::Active),
            "true".to_owned(),
            Some(lease),
        );
        lease
    }

    /// The node records (config, active, ...) with their values, in key order: what an
    /// agent's watch of the nodes' prefix follows.
    pub fn node_records(&self) -> Vec<(&str, &str)> {
        let prefix = self.keys.nodes_prefix();
        self.entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, entry)| (key.as_str(), entry.value.as_str()))
            .collect()
    }

    /// Nodes whose `active` record is live, in key order.
    pub fn active_nodes(&self) -> Vec<&str> {
        let prefix = self.keys.nodes_prefix();
        self.entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, _)| self.keys.parse_node_key(key))
            .filter(|(_, field)| *field == NodeField::Active)
            .map(|(node, _)| node)
            .collect()
    }

    /// Publishes `node`'s running count of `service` under its lease (nothing is written
    /// when the record already says so; a count of 0 deletes the record).
    pub fn publish_instances(&mut self, node: &str, service: &str, running: u32, lease: LeaseId) {
        let key = self.keys.discovery_instance("", service, node);
        let value = running.to_string();
        match self.get(&key) {
            Some((held, _)) if held == value => {}
            _ if running == 0 => {
                self.delete(&key);
            }
            _ => {
                self.put(key, value, Some(lease));
            }
        }
    }

    /// Running instances of `service` that discovery lists.
    pub fn discovered_instances(&self, service: &str) -> u32 {
        let prefix = self.keys.discovery_service_prefix("", service);
        self.range(&prefix)
            .filter_map(|(_, value)| value.parse::<u32>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use gru_agent::coordination::{Direction, Request, evaluate};

    use super::*;

    fn ttls(settle_secs: i64, cooldown_out_secs: i64, cooldown_in_secs: i64) -> LedgerTtls {
        LedgerTtls {
            settle_secs,
            cooldown_out_secs,
            cooldown_in_secs,
            target_secs: settle_secs,
        }
    }

    fn store() -> FakeStore {
        FakeStore::new(ClusterKeys::new("sim").expect("a valid cluster name"))
    }

    fn request(node: &str) -> Request<'_> {
        Request {
            node,
            direction: Direction::Out,
            step: 1,
            observed: 2,
            min: 1,
            max: Some(10),
        }
    }

    #[test]
    fn only_one_of_two_racing_claims_wins() {
        let mut store = store();
        // Both agents read the same ledger, then both claim.
        let seen = store.read_ledger("web");
        let a = evaluate(&request("a"), &seen, true, true).expect("granted");
        let b = evaluate(&request("b"), &seen, true, true).expect("granted");
        assert!(store.claim_step("web", seen.revision, &a, ttls(10, 30, 60)));
        assert!(!store.claim_step("web", seen.revision, &b, ttls(10, 30, 60)));
        let now = store.read_ledger("web");
        assert!(now.out_cooling && now.in_cooling);
        assert_eq!(now.intent.as_ref().map(|i| i.node.as_str()), Some("a"));
        assert_eq!(
            store.stats(),
            StoreStats {
                claims_won: 1,
                claims_lost: 1,
                leases_expired: 0
            }
        );
        // The loser's leases were revoked: only the winner's three remain.
        assert_eq!(store.leases.len(), 3);
    }

    #[test]
    fn ledger_keys_expire_with_their_leases() {
        let mut store = store();
        let seen = store.read_ledger("web");
        let claim = evaluate(&request("a"), &seen, true, true).expect("granted");
        assert!(store.claim_step("web", seen.revision, &claim, ttls(10, 30, 60)));
        store.advance(Millis::from_secs(10));
        let ledger = store.read_ledger("web");
        assert!(ledger.intent.is_none() && ledger.revision > 0, "{ledger:?}");
        assert!(ledger.out_cooling);
        store.advance(Millis::from_secs(30));
        let ledger = store.read_ledger("web");
        assert!(!ledger.out_cooling && ledger.in_cooling);
        store.advance(Millis::from_secs(60));
        let ledger = store.read_ledger("web");
        assert_eq!(
            Ledger {
                revision: 0,
                ..ledger.clone()
            },
            Ledger::default()
        );
        // The last claim outlives its intent: its revision is what the next claim compares.
        assert!(!store.claim_step("web", 0, &claim, ttls(10, 30, 60)));
        let claim = evaluate(&request("b"), &ledger, true, true).expect("granted");
        assert!(store.claim_step("web", ledger.revision, &claim, ttls(10, 30, 60)));
    }

    #[test]
    fn a_claim_read_before_another_whose_intent_expired_still_loses() {
        let mut store = store();
        // b reads the free ledger; a claims, and a's intent expires before b claims.
        let seen_by_b = store.read_ledger("web");
        let a = evaluate(&request("a"), &seen_by_b, false, false).expect("granted");
        assert!(store.claim_step("web", seen_by_b.revision, &a, ttls(2, 0, 0)));
        store.advance(Millis::from_secs(3));
        assert!(store.read_ledger("web").intent.is_none());
        let b = evaluate(&request("b"), &seen_by_b, false, false).expect("granted");
        assert!(!store.claim_step("web", seen_by_b.revision, &b, ttls(2, 0, 0)));
    }

    #[test]
    fn a_silent_node_vanishes_with_its_lease_and_a_kept_one_stays() {
        let mut store = store();
        let a = store.register_node("a", 10);
        let b = store.register_node("b", 10);
        store.publish_instances("a", "web", 2, a);
        store.publish_instances("b", "web", 3, b);
        assert_eq!(store.discovered_instances("web"), 5);
        store.advance(Millis::from_secs(9));
        assert!(store.keep_alive(a));
        store.advance(Millis::from_secs(10));
        assert_eq!(store.active_nodes(), vec!["a"]);
        assert_eq!(store.discovered_instances("web"), 2);
        assert!(!store.keep_alive(b));
        let revision = store.revision();
        store.publish_instances("a", "web", 2, a);
        assert_eq!(
            store.revision(),
            revision,
            "an unchanged record is not rewritten"
        );
    }

    #[test]
    fn a_transaction_under_an_expired_lease_writes_nothing() {
        let mut store = store();
        let lease = store.grant(2);
        store.advance(Millis::from_secs(2));
        assert!(!store.put("k".into(), "v".into(), Some(lease)));
        assert_eq!(store.get("k"), None);
    }
}
