//! `gru token create|list|revoke <cluster>`: operator tokens.
//!
//! A token is an Ed25519 key made here and printed once (`gru:<name>:<hex>`); etcd gets its
//! public key, role, creation and expiry (`/gru/<cluster>/tokens/<name>`), never the token.
//! Agents watch these records: a revoked token is refused as soon as their watch delivers
//! the deletion, an expired one at its expiry (by each agent's clock).

use anyhow::{Context, bail};
use common::auth::{OperatorToken, Role, TokenRecord};
use common::keys::ClusterKeys;
use gru_agent::store::EtcdSettings;

use crate::args::TokenCommand;
use crate::exit::Usage;
use crate::manage::output::{now_millis, table};

pub async fn run(etcd: &EtcdSettings, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            cluster,
            role,
            ttl,
            name,
        } => create(etcd, &cluster, &role, ttl.as_deref(), name).await,
        TokenCommand::List { cluster } => list(etcd, &cluster).await,
        TokenCommand::Revoke { cluster, name } => revoke(etcd, &cluster, &name).await,
    }
}

/// The record and the token for `name`, made at `now` from `seed`.
fn new_token(
    name: &str,
    role: Role,
    ttl: Option<std::time::Duration>,
    now: u64,
    seed: [u8; 32],
) -> (OperatorToken, TokenRecord) {
    let token = OperatorToken {
        name: name.to_owned(),
        seed,
    };
    let record = TokenRecord {
        public_key: gru_agent::signing::public_key(&token),
        role,
        created: now,
        expires: ttl.map(|ttl| now.saturating_add(ttl.as_millis() as u64)),
    };
    (token, record)
}

async fn create(
    etcd: &EtcdSettings,
    cluster: &str,
    role: &str,
    ttl: Option<&str>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let keys = ClusterKeys::new(cluster)?;
    let role =
        Role::parse(role).ok_or_else(|| Usage(format!("--role {role:?}: give read or operate")))?;
    let ttl = ttl
        .map(common::auth::parse_duration)
        .transpose()
        .map_err(|err| Usage(format!("--ttl {err}")))?;
    if ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(Usage("--ttl 0 would make a token that is already expired".into()).into());
    }
    let name = name.unwrap_or_else(|| {
        format!(
            "{}-{}",
            role.as_str(),
            hex::encode(rand::random::<[u8; 3]>())
        )
    });
    common::keys::check_name("token", &name).map_err(|err| Usage(err.to_string()))?;
    let store = super::connect(etcd).await?;
    store
        .cluster_id(&keys)
        .await
        .with_context(|| format!("cannot create a token in cluster {cluster:?}"))?;
    let (token, record) = new_token(&name, role, ttl, now_millis(), rand::random());
    let created = store
        .create(&keys.token(&name), &serde_json::to_string(&record)?)
        .await?;
    if !created {
        bail!(
            "cluster {cluster} already has a token named {name}: revoke it first \
             (`gru token revoke {cluster} {name}`) or choose another --name"
        );
    }
    eprintln!(
        "created token {name} (role {}, {}) in cluster {cluster}; it is shown once, keep it \
         safe: `export GRU_TOKEN=...` or save it in a file for `gru manage --token-file`",
        role.as_str(),
        match record.expires {
            Some(at) => format!("expires at {}", when(at)),
            None => "no expiry".to_owned(),
        }
    );
    println!("{}", token.encode());
    Ok(())
}

async fn list(etcd: &EtcdSettings, cluster: &str) -> anyhow::Result<()> {
    let keys = ClusterKeys::new(cluster)?;
    let store = super::connect(etcd).await?;
    store.cluster_id(&keys).await?;
    let prefix = keys.tokens_prefix();
    let now = now_millis();
    let mut rows = table(&["name", "role", "created", "expires"]);
    let mut count = 0;
    for entry in store.get_prefix(&prefix).await? {
        let name = entry.key.strip_prefix(&prefix).unwrap_or(&entry.key);
        let Ok(record) = serde_json::from_str::<TokenRecord>(&entry.value) else {
            rows.add_row(vec![name, "?", "unreadable record", "-"]);
            continue;
        };
        count += 1;
        let expires = match record.expires {
            None => "never".to_owned(),
            Some(at) if record.expired_at(now) => format!("{} (expired)", when(at)),
            Some(at) => when(at),
        };
        rows.add_row(vec![
            name.to_owned(),
            record.role.as_str().to_owned(),
            when(record.created),
            expires,
        ]);
    }
    if count == 0 {
        println!(
            "cluster {cluster} has no token (create one with `gru token create {cluster} --role operate`)"
        );
    } else {
        println!("{rows}");
    }
    Ok(())
}

async fn revoke(etcd: &EtcdSettings, cluster: &str, name: &str) -> anyhow::Result<()> {
    let keys = ClusterKeys::new(cluster)?;
    common::keys::check_name("token", name).map_err(|err| Usage(err.to_string()))?;
    let store = super::connect(etcd).await?;
    if store.get(&keys.token(name)).await?.is_none() {
        bail!("cluster {cluster} has no token named {name} (see `gru token list {cluster}`)");
    }
    store.delete(&keys.token(name)).await?;
    println!("revoked token {name}: agents refuse it as soon as their etcd watch tells them");
    Ok(())
}

/// A time (ms since the epoch) as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, written out from its description).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_keeps_only_its_public_key_in_the_record() {
        let (token, record) = new_token(
            "ops",
            Role::Operate,
            Some(std::time::Duration::from_secs(60)),
            1_000,
            [5; 32],
        );
        assert_eq!(record.expires, Some(61_000));
        let stored = serde_json::to_string(&record).expect("json");
        assert!(!stored.contains(&hex::encode(token.seed)), "{stored}");
        assert_eq!(record.public_key, gru_agent::signing::public_key(&token));
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
        assert_eq!(when(1_796_651_106_000), "2026-12-07 13:45:06Z");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00Z");
    }
}
