//! Keeps the agent's copy of the cluster key, the rotation under way and the operator
//! tokens current from etcd: read once at start and after the watch was down, then from
//! the daemon's watch of the cluster's tree, so a `gru token revoke` or a `gru secret
//! rotate` reaches every agent in the time the watch takes (milliseconds), with no restart.

use std::collections::BTreeMap;

use common::auth::{KeyRotation, TokenRecord};
use common::keys::ClusterKeys;

use super::Shared;
use crate::store::{Store, StoreError};

/// Applies one changed key (`None`: deleted); false if the key is none of ours.
pub fn apply(shared: &Shared, keys: &ClusterKeys, key: &str, value: Option<&str>) -> bool {
    if key == keys.secret() {
        // A deleted key is not a new key: the agent keeps signing with the one it has.
        if let Some(value) = value {
            shared.set_cluster_key(value);
            tracing::info!("the cluster key changed (gru secret rotate)");
        }
        true
    } else if key == keys.key_rotation() {
        shared.set_key_rotation(value.and_then(|v| rotation(key, v)));
        true
    } else if let Some(name) = key.strip_prefix(&keys.tokens_prefix()) {
        shared.set_token(name, value.and_then(|v| token(key, v)));
        true
    } else {
        false
    }
}

/// Reads the cluster key, the rotation and every token again.
pub async fn load(store: &Store, keys: &ClusterKeys, shared: &Shared) -> Result<(), StoreError> {
    if let Some(entry) = store.get(&keys.secret()).await? {
        shared.set_cluster_key(&entry.value);
    }
    let rotation = store.get(&keys.key_rotation()).await?;
    shared.set_key_rotation(rotation.and_then(|e| self::rotation(&e.key, &e.value)));
    let prefix = keys.tokens_prefix();
    let tokens: BTreeMap<String, TokenRecord> = store
        .get_prefix(&prefix)
        .await?
        .into_iter()
        .filter_map(|e| {
            Some((
                e.key.strip_prefix(&prefix)?.to_owned(),
                token(&e.key, &e.value)?,
            ))
        })
        .collect();
    shared.replace_tokens(tokens);
    Ok(())
}

fn rotation(key: &str, value: &str) -> Option<KeyRotation> {
    serde_json::from_str(value)
        .map_err(|err| tracing::warn!(%key, error = %err, "unreadable key rotation; only the current key is accepted"))
        .ok()
}

fn token(key: &str, value: &str) -> Option<TokenRecord> {
    serde_json::from_str(value)
        .map_err(|err| tracing::warn!(%key, error = %err, "unreadable token record; the token is refused"))
        .ok()
}
