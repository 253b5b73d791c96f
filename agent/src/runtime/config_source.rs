//! Reads the cluster's configuration from etcd and keeps the last good one.
//!
//! Documents in etcd were validated by `gru config push`, but anyone with etcd access can
//! write around the CLI. The agent parses them with the same code; if the set is invalid it
//! keeps the configuration it has and reports why once (in its log and its status), until
//! the documents change again.

use common::config::{
    ClusterConfig, DocumentKey, NodeConstraints, SourceDocument, parse_node_constraints,
};
use common::keys::{ClusterKeys, NodeField, leaf_name};

use crate::store::{Entry, Store, StoreError};

/// The configuration documents of a cluster as read at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The highest mod revision among the documents (0 when there are none).
    pub revision: i64,
    pub config: Result<ClusterConfig, String>,
    /// This node's constraints (base services), when written.
    pub constraints: Option<NodeConstraints>,
}

/// Reads every configuration document and this node's constraints.
pub async fn read(store: &Store, keys: &ClusterKeys, node: &str) -> Result<Snapshot, StoreError> {
    let entries = store.get_prefix(&keys.prefix()).await?;
    Ok(from_entries(keys, node, &entries))
}

/// Builds a snapshot from the cluster's keys (pure, for tests).
pub fn from_entries(keys: &ClusterKeys, node: &str, entries: &[Entry]) -> Snapshot {
    let mut documents = Vec::new();
    let mut revision = 0;
    let mut constraints = None;
    for entry in entries {
        let document = if entry.key == keys.config() {
            Some(DocumentKey::Config)
        } else if entry.key == keys.policy() {
            Some(DocumentKey::Policy)
        } else if let Some(name) = leaf_name(&keys.services_prefix(), &entry.key) {
            Some(DocumentKey::Service(name.to_owned()))
        } else if let Some(name) = leaf_name(&keys.analytics_prefix(), &entry.key) {
            Some(DocumentKey::Analytic(name.to_owned()))
        } else {
            if entry.key == keys.node(node, NodeField::Constraints) {
                constraints = parse_node_constraints(&entry.key, &entry.value).ok();
            }
            None
        };
        if let Some(document) = document {
            revision = revision.max(entry.mod_revision);
            documents.push(SourceDocument {
                file: document.file(),
                text: entry.value.clone(),
            });
        }
    }
    let config = ClusterConfig::from_documents(&documents).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    });
    Snapshot {
        revision,
        config,
        constraints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, rev: i64) -> Entry {
        Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            mod_revision: rev,
        }
    }

    fn keys() -> ClusterKeys {
        ClusterKeys::new("c").expect("name")
    }

    #[test]
    fn a_valid_set_parses_with_its_revision_and_constraints() {
        let k = keys();
        let entries = [
            entry(&k.config(), "{}", 3),
            entry(&k.policy(), "{}", 4),
            entry(&k.service("web"), r#"{"Name":"web","Image":"img"}"#, 9),
            entry(
                &k.node("n1", NodeField::Constraints),
                r#"{"BaseServices":["web"]}"#,
                11,
            ),
            entry(
                &k.node("n2", NodeField::Constraints),
                r#"{"BaseServices":["db"]}"#,
                12,
            ),
        ];
        let snapshot = from_entries(&k, "n1", &entries);
        let config = snapshot.config.expect("valid");
        assert_eq!(config.services.len(), 1);
        assert_eq!(snapshot.revision, 9);
        assert_eq!(
            snapshot.constraints.expect("constraints").base_services,
            vec!["web"]
        );
    }

    #[test]
    fn a_document_written_around_the_cli_is_refused_with_its_reason() {
        let k = keys();
        let entries = [
            entry(&k.config(), "{}", 3),
            entry(&k.policy(), r#"{"Scaleout":{"Threshold":7}}"#, 4),
        ];
        let reason = from_entries(&k, "n1", &entries)
            .config
            .expect_err("invalid");
        assert!(
            reason.contains("policy.json") && reason.contains("Threshold"),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_configuration_is_refused() {
        let k = keys();
        let reason = from_entries(&k, "n1", &[]).config.expect_err("missing");
        assert!(reason.contains("config.json"), "{reason}");
    }
}
