//! `gru create <cluster> [--force]`.

use anyhow::Context;
use common::keys::ClusterKeys;
use gru_agent::store::EtcdSettings;

pub async fn run(etcd: &EtcdSettings, cluster: &str, force: bool) -> anyhow::Result<()> {
    let keys = ClusterKeys::new(cluster)?;
    let store = super::connect(etcd).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let secret = new_secret();
    store
        .create_cluster(&keys, &id, &secret, force)
        .await
        .with_context(|| format!("cannot create cluster {cluster:?}"))?;
    println!("created cluster {cluster} (id {id})");
    Ok(())
}

/// 256 random bits, hex-encoded: the secret agents use to authenticate each other.
pub(super) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_64_hex_digits_and_differ() {
        let a = super::new_secret();
        let b = super::new_secret();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
