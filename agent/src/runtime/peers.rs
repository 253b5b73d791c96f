//! The peers an agent knows, kept from the cluster's node records as the etcd watch
//! delivers them (no polling of every node), and the nodes whose records came and went
//! lately: a node whose records vanish may be lost, or etcd may have lost its lease (a
//! stale leader revoking leases, etcd#15247) while it runs on, about to register again.
//! Until it has had the time to, the discovery records undercount the cluster, and a repair
//! of MinInstances must first ask it (see `Autonomic::keep_floor`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::config::{parse_node_config, parse_node_constraints};
use common::keys::{ClusterKeys, NodeField};
use serde::Serialize;

use super::state::Peer;
use crate::mape::Millis;

/// The other nodes of the cluster as this agent knows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Peers {
    /// Nodes with records in etcd, by name.
    pub nodes: BTreeMap<String, Peer>,
    /// Base services of nodes that were lost: they must keep one instance in the cluster.
    #[serde(skip)]
    pub orphaned_base_services: BTreeSet<String>,
    /// Nodes whose records vanished, or came back after vanishing, by name: where the node
    /// was last reachable and when (this agent's clock) its records changed.
    #[serde(skip)]
    pub turnover: BTreeMap<String, Turnover>,
}

/// A node whose records vanished or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turnover {
    pub address: String,
    pub port: u16,
    pub at: Millis,
}

impl Peers {
    /// Applies one node-record change (`value` `None` = deleted) seen at `now`. When a
    /// node's records vanish (its lease is gone: the node is lost, or etcd lost the lease),
    /// its base services go into `orphaned_base_services` (they must run somewhere, so the
    /// survivors re-home them) and the node into `turnover`, where it stays, or comes back
    /// to, if its records return. Returns false when `key` is not a node record.
    pub fn apply(
        &mut self,
        keys: &ClusterKeys,
        key: &str,
        value: Option<&str>,
        now: Millis,
    ) -> bool {
        let Some((node, field)) = keys.parse_node_key(key) else {
            return false;
        };
        match (field, value) {
            // The config record is written first and goes with the lease: it decides
            // whether the node exists.
            (NodeField::Config, None) => {
                if let Some(peer) = self.nodes.remove(node) {
                    self.vanished(node, peer, now);
                }
            }
            (NodeField::Config, Some(text)) => {
                if let Ok(config) = parse_node_config(key, text) {
                    if let Some(turnover) = self.turnover.get_mut(node) {
                        *turnover = Turnover {
                            address: config.address.clone(),
                            port: config.port,
                            at: now,
                        };
                    }
                    let peer = self.nodes.entry(node.to_owned()).or_default();
                    peer.address = config.address;
                    peer.port = config.port;
                    peer.scheme = config.scheme;
                }
            }
            (NodeField::Active, Some(text)) => {
                self.nodes.entry(node.to_owned()).or_default().active = text.trim() == "true";
            }
            (NodeField::Active, None) => {
                if let Some(peer) = self.nodes.get_mut(node) {
                    peer.active = false;
                }
            }
            (NodeField::Constraints, Some(text)) => {
                if let Ok(constraints) = parse_node_constraints(key, text) {
                    self.nodes.entry(node.to_owned()).or_default().base_services =
                        constraints.base_services;
                }
            }
            (NodeField::Constraints, None) | (NodeField::Resources, _) => {}
        }
        true
    }

    /// Replaces every node with what a fresh read of the node records (`entries`) says,
    /// after the watch may have missed changes: nodes missing from it vanished.
    pub fn resync<'a>(
        &mut self,
        keys: &ClusterKeys,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: Millis,
    ) {
        let before = std::mem::take(&mut self.nodes);
        for (key, value) in entries {
            self.apply(keys, key, Some(value), now);
        }
        for (node, peer) in before {
            if !self.nodes.contains_key(&node) {
                self.vanished(&node, peer, now);
            }
        }
    }

    fn vanished(&mut self, node: &str, peer: Peer, now: Millis) {
        self.turnover.insert(
            node.to_owned(),
            Turnover {
                address: peer.address,
                port: peer.port,
                at: now,
            },
        );
        self.orphaned_base_services.extend(peer.base_services);
    }

    /// Nodes whose records vanished or came back less than `within` before `now` (older
    /// entries are forgotten): the discovery records may undercount their instances.
    pub fn recent_turnover(&mut self, now: Millis, within: Duration) -> Vec<(String, Turnover)> {
        self.turnover.retain(|_, t| now.since(t.at) < within);
        self.turnover
            .iter()
            .map(|(node, t)| (node.clone(), t.clone()))
            .collect()
    }

    /// The nodes whose instances the discovery records may be missing, other than `me`:
    /// the recent turnover, and the nodes known here whose records a read just now
    /// (`present`: the nodes with a config record) no longer holds, because the watch has
    /// not told this agent yet.
    pub fn in_doubt(
        &mut self,
        present: &BTreeSet<String>,
        me: &str,
        now: Millis,
        within: Duration,
    ) -> Vec<(String, Turnover)> {
        let mut doubt: BTreeMap<String, Turnover> =
            self.recent_turnover(now, within).into_iter().collect();
        for (node, peer) in &self.nodes {
            if !present.contains(node) {
                doubt.entry(node.clone()).or_insert_with(|| Turnover {
                    address: peer.address.clone(),
                    port: peer.port,
                    at: now,
                });
            }
        }
        doubt.remove(me);
        doubt.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N2_CONFIG: &str = r#"{"Name":"n2","Address":"10.0.0.2","Port":8080}"#;

    #[test]
    fn node_records_make_and_unmake_peers() {
        let keys = ClusterKeys::new("c").expect("name");
        let mut peers = Peers::default();
        let config = keys.node("n2", NodeField::Config);
        let active = keys.node("n2", NodeField::Active);
        assert!(peers.apply(&keys, &config, Some(N2_CONFIG), Millis(1)));
        assert!(peers.apply(&keys, &active, Some("true"), Millis(1)));
        assert_eq!(
            peers.nodes.get("n2"),
            Some(&Peer {
                address: "10.0.0.2".into(),
                port: 8080,
                scheme: Default::default(),
                active: true,
                base_services: vec![],
            })
        );
        assert!(peers.turnover.is_empty(), "a new node is no turnover");
        peers.apply(&keys, &active, Some("false"), Millis(1));
        assert_eq!(peers.nodes.get("n2").map(|p| p.active), Some(false));
        let constraints = keys.node("n2", NodeField::Constraints);
        peers.apply(
            &keys,
            &constraints,
            Some(r#"{"BaseServices":["web"]}"#),
            Millis(1),
        );
        peers.apply(&keys, &config, None, Millis(1));
        assert!(peers.nodes.is_empty());
        assert_eq!(
            peers.orphaned_base_services,
            BTreeSet::from(["web".to_owned()]),
            "a lost node's base services are orphaned"
        );
        assert!(!peers.apply(&keys, "/gru/c/config", Some("{}"), Millis(1)));
    }

    #[test]
    fn vanished_and_returning_nodes_are_turnover_until_it_is_old() {
        let keys = ClusterKeys::new("c").expect("name");
        let config = keys.node("n2", NodeField::Config);
        let mut peers = Peers::default();
        peers.apply(&keys, &config, Some(N2_CONFIG), Millis(1_000));
        peers.apply(&keys, &config, None, Millis(2_000));
        let window = Duration::from_secs(5);
        let turnover = Turnover {
            address: "10.0.0.2".into(),
            port: 8080,
            at: Millis(2_000),
        };
        assert_eq!(
            peers.recent_turnover(Millis(3_000), window),
            vec![("n2".to_owned(), turnover.clone())]
        );
        // It registers again (new address): the turnover restarts from then.
        let moved = r#"{"Name":"n2","Address":"10.0.0.9","Port":8081}"#;
        peers.apply(&keys, &config, Some(moved), Millis(4_000));
        let back = Turnover {
            address: "10.0.0.9".into(),
            port: 8081,
            at: Millis(4_000),
        };
        assert_eq!(
            peers.recent_turnover(Millis(8_999), window),
            vec![("n2".to_owned(), back)]
        );
        assert!(peers.recent_turnover(Millis(9_000), window).is_empty());
        assert!(peers.turnover.is_empty(), "old turnover is forgotten");
    }

    #[test]
    fn nodes_gone_from_a_fresh_read_are_in_doubt_before_the_watch_says_so() {
        let keys = ClusterKeys::new("c").expect("name");
        let mut peers = Peers::default();
        for (node, port) in [("n1", 1), ("n2", 2), ("n3", 3)] {
            let config = format!(r#"{{"Name":"{node}","Address":"10.0.0.1","Port":{port}}}"#);
            peers.apply(
                &keys,
                &keys.node(node, NodeField::Config),
                Some(&config),
                Millis(0),
            );
        }
        peers.apply(
            &keys,
            &keys.node("n2", NodeField::Config),
            None,
            Millis(1_000),
        );
        // The read holds only n1 (this node): n3's records went too, unseen yet.
        let present = BTreeSet::from(["n1".to_owned()]);
        let doubt = peers.in_doubt(&present, "n1", Millis(2_000), Duration::from_secs(5));
        assert_eq!(
            doubt
                .iter()
                .map(|(n, t)| (n.as_str(), t.port, t.at))
                .collect::<Vec<_>>(),
            [("n2", 2, Millis(1_000)), ("n3", 3, Millis(2_000))]
        );
        let all = BTreeSet::from(["n1".to_owned(), "n3".to_owned()]);
        assert!(
            peers
                .in_doubt(&all, "n1", Millis(6_000), Duration::from_secs(5))
                .is_empty(),
            "n2's turnover is old, n3 is in the read"
        );
    }

    #[test]
    fn a_resync_finds_the_nodes_that_vanished_unseen() {
        let keys = ClusterKeys::new("c").expect("name");
        let n2 = keys.node("n2", NodeField::Config);
        let n3 = keys.node("n3", NodeField::Config);
        let n3_config = r#"{"Name":"n3","Address":"10.0.0.3","Port":8080}"#;
        let mut peers = Peers::default();
        peers.apply(&keys, &n2, Some(N2_CONFIG), Millis(1_000));
        peers.apply(&keys, &n3, Some(n3_config), Millis(1_000));
        peers.resync(&keys, [(n3.as_str(), n3_config)], Millis(2_000));
        assert_eq!(peers.nodes.keys().collect::<Vec<_>>(), ["n3"]);
        let recent = peers.recent_turnover(Millis(2_500), Duration::from_secs(5));
        assert_eq!(
            recent.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["n2"]
        );
    }
}
