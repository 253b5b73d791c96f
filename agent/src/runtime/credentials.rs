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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mape::{Millis, WindowSettings};
    use common::auth::Role;
    use std::time::Duration;

    #[test]
    fn watched_changes_reach_the_keyring_and_the_tokens() {
        let shared = Shared::new(
            "c",
            "n1",
            "127.0.0.1",
            "k1",
            WindowSettings::for_loop_interval(Duration::from_secs(1)),
        );
        let keys = ClusterKeys::new("c").expect("name");
        let record = TokenRecord {
            public_key: "00".repeat(32),
            role: Role::Read,
            created: 1,
            expires: None,
        };
        let json = serde_json::to_string(&record).expect("json");
        assert!(apply(&shared, &keys, &keys.token("ops"), Some(&json)));
        assert_eq!(shared.token("ops"), Some(record));
        assert!(apply(&shared, &keys, &keys.token("ops"), None));
        assert_eq!(shared.token("ops"), None, "revoked");
        // An unreadable record is no token.
        apply(&shared, &keys, &keys.token("bad"), Some("{"));
        assert_eq!(shared.token("bad"), None);

        let rotation = KeyRotation::starting("k1", 0, Duration::from_secs(60));
        let json = serde_json::to_string(&rotation).expect("json");
        assert!(apply(&shared, &keys, &keys.key_rotation(), Some(&json)));
        assert!(apply(&shared, &keys, &keys.secret(), Some("k2")));
        assert_eq!(shared.accepted_keys(Millis(1)), vec!["k1", "k2"]);
        assert_eq!(shared.accepted_keys(Millis(60_000)), vec!["k2"]);
        // A deleted key leaves the agent with the one it has.
        apply(&shared, &keys, &keys.secret(), None);
        assert_eq!(shared.signing_key(Millis(60_000)), "k2");
        assert!(!apply(&shared, &keys, &keys.config(), Some("{}")));
    }
}
