//! `gru config validate|push|get`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use common::config::{ClusterConfig, DocumentKey, SourceDocument, redact_service_json};
use common::keys::{ClusterKeys, NodeField, leaf_name};
use common::rollout::records_for_push;
use gru_agent::store::EtcdSettings;
use serde_json::{Map, Value};

use crate::args::{ConfigCommand, ConfigPart};
use crate::exit::{InvalidConfig, Usage};

pub async fn run(etcd: &EtcdSettings, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Validate { dir } => {
            let config = load_dir(&dir)?;
            println!("{}: valid ({})", dir.display(), summary(&config));
            Ok(())
        }
        ConfigCommand::Push { cluster, dir } => {
            let keys = ClusterKeys::new(&cluster)?;
            let config = load_dir(&dir)?;
            let documents: Vec<(String, String)> = config
                .canonical_documents()
                .into_iter()
                .map(|(key, json)| (etcd_key(&keys, &key), json))
                .collect();
            let store = super::connect(etcd).await?;
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // What the last attempt started, to say so.
            let started = std::cell::RefCell::new(Vec::new());
            let rollouts = |stored: &BTreeMap<String, String>| {
                let stored: BTreeMap<String, String> = stored
                    .iter()
                    .filter_map(|(key, text)| {
                        Some((
                            leaf_name(&keys.services_prefix(), key)?.to_owned(),
                            text.clone(),
                        ))
                    })
                    .collect();
                let records = records_for_push(&stored, &config.services, "config push", at);
                *started.borrow_mut() = records
                    .iter()
                    .map(|(service, record)| {
                        format!(
                            "rolling out {service}: {} -> {} (gru manage: rollout status {service})",
                            record.from_version.as_deref().unwrap_or("?"),
                            record.version
                        )
                    })
                    .collect();
                records
                    .into_iter()
                    .map(|(service, record)| (keys.rollout(&service), record.to_json()))
                    .collect()
            };
            store
                .replace_config(&keys, &documents, rollouts)
                .await
                .with_context(|| format!("cannot push {} to cluster {cluster:?}", dir.display()))?;
            println!(
                "pushed {} to cluster {cluster} ({})",
                dir.display(),
                summary(&config)
            );
            for line in started.borrow().iter() {
                println!("{line}");
            }
            Ok(())
        }
        ConfigCommand::Get { cluster, what } => {
            let keys = ClusterKeys::new(&cluster)?;
            let store = super::connect(etcd).await?;
            store.cluster_id(&keys).await?;
            let entries = store.get_prefix(&keys.prefix()).await?;
            let tree =
                ClusterTree::from_entries(&keys, entries.into_iter().map(|e| (e.key, e.value)));
            let value = match what {
                None => tree.everything(),
                Some(part) => tree.part(part),
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}

fn etcd_key(keys: &ClusterKeys, key: &DocumentKey) -> String {
    match key {
        DocumentKey::Config => keys.config(),
        DocumentKey::Policy => keys.policy(),
        DocumentKey::Service(name) => keys.service(name),
        DocumentKey::Analytic(name) => keys.analytic(name),
    }
}

fn summary(config: &ClusterConfig) -> String {
    format!(
        "agent configuration, policy, {} service(s), {} analytic(s)",
        config.services.len(),
        config.analytics.len()
    )
}

/// Reads every `.json` file of the directory and of its direct subdirectories (so a
/// misplaced file is reported rather than silently ignored), then validates them together.
/// Every problem is printed to stderr before the error is returned.
fn load_dir(dir: &Path) -> anyhow::Result<ClusterConfig> {
    if !dir.is_dir() {
        return Err(Usage(format!("{} is not a directory", dir.display())).into());
    }
    let mut documents = Vec::new();
    read_json_files(dir, dir, 0, &mut documents)?;
    documents.sort_by(|a, b| a.file.cmp(&b.file));
    ClusterConfig::from_documents(&documents).map_err(|problems| {
        for problem in &problems {
            eprintln!("{problem}");
        }
        InvalidConfig {
            dir: dir.display().to_string(),
            count: problems.len(),
        }
        .into()
    })
}

fn read_json_files(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<SourceDocument>,
) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            if depth == 0 {
                read_json_files(root, &path, depth + 1, out)?;
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let file = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        out.push(SourceDocument { file, text });
    }
    Ok(())
}

/// The cluster's keys grouped by document, as JSON for `config get`.
#[derive(Debug, Default)]
struct ClusterTree {
    config: Option<Value>,
    policy: Option<Value>,
    services: Map<String, Value>,
    analytics: Map<String, Value>,
    nodes: BTreeMap<String, Map<String, Value>>,
}

impl ClusterTree {
    fn from_entries(keys: &ClusterKeys, entries: impl Iterator<Item = (String, String)>) -> Self {
        // A document that is not JSON (written around the CLI) is shown as a string.
        let parse = |text: &str| {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        let mut tree = ClusterTree::default();
        for (key, value) in entries {
            if key == keys.config() {
                tree.config = Some(parse(&value));
            } else if key == keys.policy() {
                tree.policy = Some(parse(&value));
            } else if let Some(name) = leaf_name(&keys.services_prefix(), &key) {
                // What `config get` prints never holds a registry password.
                let mut service = parse(&value);
                redact_service_json(&mut service);
                tree.services.insert(name.to_owned(), service);
            } else if let Some(name) = leaf_name(&keys.analytics_prefix(), &key) {
                tree.analytics.insert(name.to_owned(), parse(&value));
            } else if let Some((node, field)) = keys.parse_node_key(&key) {
                let field_value = match field {
                    NodeField::Active => Value::Bool(value.trim() == "true"),
                    _ => parse(&value),
                };
                tree.nodes
                    .entry(node.to_owned())
                    .or_default()
                    .insert(field.as_str().to_owned(), field_value);
            }
        }
        tree
    }

    fn part(&self, part: ConfigPart) -> Value {
        match part {
            ConfigPart::Config => self.config.clone().unwrap_or(Value::Null),
            ConfigPart::Policy => self.policy.clone().unwrap_or(Value::Null),
            ConfigPart::Services => Value::Object(self.services.clone()),
            ConfigPart::Analytics => Value::Object(self.analytics.clone()),
            ConfigPart::Nodes => Value::Object(
                self.nodes
                    .iter()
                    .map(|(name, fields)| (name.clone(), Value::Object(fields.clone())))
                    .collect(),
            ),
        }
    }

    fn everything(&self) -> Value {
        let mut all = Map::new();
        for (name, part) in [
            ("config", ConfigPart::Config),
            ("policy", ConfigPart::Policy),
            ("services", ConfigPart::Services),
            ("analytics", ConfigPart::Analytics),
            ("nodes", ConfigPart::Nodes),
        ] {
            all.insert(name.to_owned(), self.part(part));
        }
        Value::Object(all)
    }
}
