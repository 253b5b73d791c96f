//! `gru secret rotate <cluster> [--overlap <dur>]`: a new cluster key without downtime.
//!
//! The new key and a rotation record (`common::auth::KeyRotation`) are written in one
//! transaction. Agents learn of both through their etcd watch: they accept the old and the
//! new key at once, sign with the new one from `common::auth::SWITCH_DELAY` later, and
//! accept only the new one once the overlap is over.

use anyhow::{Context, bail};
use common::auth::{DEFAULT_OVERLAP, KeyRotation, MIN_OVERLAP};
use common::keys::ClusterKeys;
use gru_agent::store::EtcdSettings;

use super::token::when;
use crate::args::SecretCommand;
use crate::exit::Usage;
use crate::manage::output::now_millis;

pub async fn run(etcd: &EtcdSettings, command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Rotate { cluster, overlap } => {
            rotate(etcd, &cluster, overlap.as_deref()).await
        }
    }
}

async fn rotate(etcd: &EtcdSettings, cluster: &str, overlap: Option<&str>) -> anyhow::Result<()> {
    let keys = ClusterKeys::new(cluster)?;
    let overlap = match overlap {
        Some(text) => {
            common::auth::parse_duration(text).map_err(|err| Usage(format!("--overlap {err}")))?
        }
        None => DEFAULT_OVERLAP,
    };
    if overlap < MIN_OVERLAP {
        return Err(Usage(format!(
            "--overlap must be at least {} s: agents switch to the new key {} s after the \
             rotation, and the rest leaves room for clocks a few seconds apart",
            MIN_OVERLAP.as_secs(),
            common::auth::SWITCH_DELAY.as_secs()
        ))
        .into());
    }
    let store = super::connect(etcd).await?;
    store.cluster_id(&keys).await?;
    let current = store
        .get(&keys.secret())
        .await?
        .map(|e| e.value)
        .with_context(|| {
            format!("cluster {cluster} has no key in etcd (recreate it with `gru create --force`)")
        })?;
    let now = now_millis();
    if let Some(entry) = store.get(&keys.key_rotation()).await?
        && let Ok(under_way) = serde_json::from_str::<KeyRotation>(&entry.value)
        && now < under_way.accept_previous_until
    {
        bail!(
            "a rotation of cluster {cluster} is under way until {}: rotating again now would \
             drop the key some agents may still sign with; wait until then",
            when(under_way.accept_previous_until)
        );
    }
    let rotation = KeyRotation::starting(&current, now, overlap);
    let next = super::create::new_secret();
    let rotated = store
        .rotate_cluster_key(&keys, &current, &next, &serde_json::to_string(&rotation)?)
        .await?;
    if !rotated {
        bail!(
            "the key of cluster {cluster} changed while rotating (another rotation?): run it again"
        );
    }
    println!(
        "rotated the key of cluster {cluster}: agents sign with the new key from {} and accept the \
         old one until {}",
        when(rotation.send_new_from),
        when(rotation.accept_previous_until)
    );
    Ok(())
}
