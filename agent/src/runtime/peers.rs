//! The peers an agent knows, kept from the cluster's node records as the etcd watch
//! delivers them (no polling of every node).

use std::collections::{BTreeMap, BTreeSet};

use common::config::{parse_node_config, parse_node_constraints};
use common::keys::{ClusterKeys, NodeField};

use super::state::Peer;

/// Applies one node-record change (`value` `None` = deleted) to `peers`. When a node's
/// records vanish (its lease expired: the node is lost), its base services go into
/// `orphaned`: they must run somewhere, so the survivors re-home them. Returns false when
/// `key` is not a node record.
pub fn apply(
    peers: &mut BTreeMap<String, Peer>,
    orphaned: &mut BTreeSet<String>,
    keys: &ClusterKeys,
    key: &str,
    value: Option<&str>,
) -> bool {
    let Some((node, field)) = keys.parse_node_key(key) else {
        return false;
    };
    match (field, value) {
        // The config record is written first and goes with the lease: it decides whether
        // the node exists.
        (NodeField::Config, None) => {
            if let Some(peer) = peers.remove(node) {
                orphaned.extend(peer.base_services);
            }
        }
        (NodeField::Config, Some(text)) => {
            if let Ok(config) = parse_node_config(key, text) {
                let peer = peers.entry(node.to_owned()).or_default();
                peer.address = config.address;
                peer.port = config.port;
            }
        }
        (NodeField::Active, Some(text)) => {
            peers.entry(node.to_owned()).or_default().active = text.trim() == "true";
        }
        (NodeField::Active, None) => {
            if let Some(peer) = peers.get_mut(node) {
                peer.active = false;
            }
        }
        (NodeField::Constraints, Some(text)) => {
            if let Ok(constraints) = parse_node_constraints(key, text) {
                peers.entry(node.to_owned()).or_default().base_services = constraints.base_services;
            }
        }
        (NodeField::Constraints, None) | (NodeField::Resources, _) => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_records_make_and_unmake_peers() {
        let keys = ClusterKeys::new("c").expect("name");
        let mut peers = BTreeMap::new();
        let mut orphaned = BTreeSet::new();
        let config = keys.node("n2", NodeField::Config);
        let active = keys.node("n2", NodeField::Active);
        assert!(apply(
            &mut peers,
            &mut orphaned,
            &keys,
            &config,
            Some(r#"{"Name":"n2","Address":"10.0.0.2","Port":8080}"#)
        ));
        assert!(apply(
            &mut peers,
            &mut orphaned,
            &keys,
            &active,
            Some("true")
        ));
        assert_eq!(
            peers.get("n2"),
            Some(&Peer {
                address: "10.0.0.2".into(),
                port: 8080,
                active: true,
                base_services: vec![],
            })
        );
        apply(&mut peers, &mut orphaned, &keys, &active, Some("false"));
        assert_eq!(peers.get("n2").map(|p| p.active), Some(false));
        let constraints = keys.node("n2", NodeField::Constraints);
        apply(
            &mut peers,
            &mut orphaned,
            &keys,
            &constraints,
            Some(r#"{"BaseServices":["web"]}"#),
        );
        apply(&mut peers, &mut orphaned, &keys, &config, None);
        assert!(peers.is_empty());
        assert_eq!(
            orphaned,
            BTreeSet::from(["web".to_owned()]),
            "a lost node's base services are orphaned"
        );
        assert!(!apply(
            &mut peers,
            &mut orphaned,
            &keys,
            "/gru/c/config",
            Some("{}")
        ));
    }
}
