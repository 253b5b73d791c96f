//! The peers an agent knows, kept from the cluster's node records as the etcd watch
//! delivers them (no polling of every node).

use std::collections::BTreeMap;

use common::config::parse_node_config;
use common::keys::{ClusterKeys, NodeField};

use super::state::Peer;

/// Applies one node-record change (`value` `None` = deleted) to `peers`. Returns false
/// when `key` is not a node record.
pub fn apply(
    peers: &mut BTreeMap<String, Peer>,
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
            peers.remove(node);
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
        (NodeField::Constraints | NodeField::Resources, _) => {}
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
        let config = keys.node("n2", NodeField::Config);
        let active = keys.node("n2", NodeField::Active);
        assert!(apply(
            &mut peers,
            &keys,
            &config,
            Some(r#"{"Name":"n2","Address":"10.0.0.2","Port":8080}"#)
        ));
        assert!(apply(&mut peers, &keys, &active, Some("true")));
        assert_eq!(
            peers.get("n2"),
            Some(&Peer {
                address: "10.0.0.2".into(),
                port: 8080,
                active: true
            })
        );
        apply(&mut peers, &keys, &active, Some("false"));
        assert_eq!(peers.get("n2").map(|p| p.active), Some(false));
        apply(&mut peers, &keys, &config, None);
        assert!(peers.is_empty());
        assert!(!apply(&mut peers, &keys, "/gru/c/config", Some("{}")));
    }
}
