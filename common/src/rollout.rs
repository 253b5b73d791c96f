//! A service's rollout record, `/gru/<cluster>/rollouts/<service>`: the rollout toward the
//! service's current descriptor, as `gru config push` started it and as agents and
//! operators changed it since.
//!
//! `gru config push` writes it, in the same transaction as the descriptors, for every
//! service whose version ([`crate::config::ServiceDescriptor::version`]) changes; `from`
//! is the descriptor text it replaced, so a failed rollout can put it back. An agent whose
//! step fails writes the previous descriptor back and a new record for the rollback (with
//! no `from`: a rollback is not rolled back in turn, it halts). `gru manage rollout
//! pause|resume|undo` change the state, undo by the same exchange.
//!
//! Whether a rollout is complete is not recorded: it is when every instance runs the
//! current version, which `rollout status` counts from the agents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ServiceDescriptor, parse_service};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Agents replace outdated instances, one claimed step at a time.
    Rolling,
    /// An operator paused it: no new step starts (a step under way finishes).
    Paused,
    /// A step failed and there is nothing to roll back to (or `FailureAction` is `pause`):
    /// no new step starts until an operator resumes or undoes it.
    Halted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Rolling => "rolling",
            RolloutState::Paused => "paused",
            RolloutState::Halted => "halted",
        }
    }
}

/// A rollback that led to the current descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The version that failed.
    pub version: String,
    /// Why, as the agent that rolled back saw it.
    pub reason: String,
    /// The node whose step failed.
    pub node: String,
    /// When (ms since the epoch).
    pub at: u64,
}

/// `/gru/<cluster>/rollouts/<service>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The version rolled out: the current descriptor's.
    pub version: String,
    /// The version it replaces, if the service existed before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The descriptor it replaces (its canonical JSON, as stored), to roll back to; `None`
    /// for a rollback (which halts instead) and for a new service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub state: RolloutState,
    /// Why it is in its state: who paused it, why it halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when this rollout is the rollback of a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
    /// Who started it: `config push`, `undo`, or the node that rolled back.
    pub by: String,
    /// When it started (ms since the epoch).
    pub started_at: u64,
}

impl RolloutRecord {
    /// The record of a rollout from `from` (a stored descriptor and its version) to `version`.
    pub fn new(version: String, from: Option<(String, String)>, by: &str, at: u64) -> Self {
        let (from_version, from) = match from {
            Some((version, text)) => (Some(version), Some(text)),
            None => (None, None),
        };
        RolloutRecord {
            version,
            from_version,
            from,
            state: RolloutState::Rolling,
            reason: None,
            rolled_back: None,
            by: by.to_owned(),
            started_at: at,
        }
    }

    /// Whether agents may start a step toward `version` (the current descriptor's): a
    /// record about another version says nothing about this one.
    pub fn allows_steps(&self, version: &str) -> bool {
        self.version != version || self.state == RolloutState::Rolling
    }

    /// The record as it is written.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and enums always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored record; `None` for one that is not readable (written around gru), which
    /// then neither pauses a rollout nor offers a rollback.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// The rollout records a push writes, by service: one for each pushed service that was
/// stored before (`stored`: service name → its stored JSON) with another version, rolling
/// from the stored descriptor to the pushed one. A new service, one whose version does not
/// change, and one whose stored text is unreadable get none.
pub fn records_for_push(
    stored: &BTreeMap<String, String>,
    pushed: &BTreeMap<String, ServiceDescriptor>,
    by: &str,
    at: u64,
) -> Vec<(String, RolloutRecord)> {
    pushed
        .iter()
        .filter_map(|(name, descriptor)| {
            let text = stored.get(name)?;
            let before = parse_service(name, text).ok()?.version();
            let version = descriptor.version();
            (before != version).then(|| {
                let record = RolloutRecord::new(version, Some((before, text.clone())), by, at);
                (name.clone(), record)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(text: &str) -> ServiceDescriptor {
        parse_service("web.json", text).expect("valid")
    }

    #[test]
    fn a_push_records_a_rollout_only_where_the_version_changes() {
        let v1 = r#"{"Name": "web", "Image": "w:1"}"#;
        let stored = BTreeMap::from([
            ("web".to_owned(), v1.to_owned()),
            (
                "db".to_owned(),
                r#"{"Name": "db", "Image": "d:1"}"#.to_owned(),
            ),
            ("odd".to_owned(), "not json".to_owned()),
        ]);
        let pushed = BTreeMap::from([
            (
                "web".to_owned(),
                descriptor(r#"{"Name": "web", "Image": "w:2"}"#),
            ),
            (
                "db".to_owned(),
                descriptor(r#"{"Name": "db", "Image": "d:1", "MinInstances": 2}"#),
            ),
            (
                "odd".to_owned(),
                descriptor(r#"{"Name": "odd", "Image": "o"}"#),
            ),
            (
                "new".to_owned(),
                descriptor(r#"{"Name": "new", "Image": "n"}"#),
            ),
        ]);
        let records = records_for_push(&stored, &pushed, "config push", 7);
        assert_eq!(records.len(), 1, "{records:?}");
        let (name, record) = &records[0];
        assert_eq!(name, "web");
        assert_eq!(record.version, pushed["web"].version());
        assert_eq!(record.from_version, Some(descriptor(v1).version()));
        assert_eq!(record.from.as_deref(), Some(v1));
        assert_eq!(
            (record.state, record.started_at),
            (RolloutState::Rolling, 7)
        );
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut record = RolloutRecord::new(
            "bbbbbbbbbbbb".into(),
            Some(("aaaaaaaaaaaa".into(), "{\"Name\":\"web\"}".into())),
            "config push",
            1_000,
        );
        record.rolled_back = Some(RolledBack {
            version: "cccccccccccc".into(),
            reason: "exited".into(),
            node: "n1".into(),
            at: 2_000,
        });
        assert_eq!(RolloutRecord::parse(&record.to_json()), Some(record));
        assert_eq!(RolloutRecord::parse("not json"), None);
    }

    #[test]
    fn only_a_record_about_this_version_can_hold_steps_back() {
        let mut record = RolloutRecord::new("v2".into(), None, "config push", 0);
        assert!(record.allows_steps("v2"));
        record.state = RolloutState::Paused;
        assert!(!record.allows_steps("v2"));
        assert!(
            record.allows_steps("v3"),
            "a record about v2 says nothing of v3"
        );
        record.state = RolloutState::Halted;
        assert!(!record.allows_steps("v2"));
    }
}
