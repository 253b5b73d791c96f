//! What the planner decided, as a value: the action, every candidate it weighed, the random
//! draw and a sentence saying why.
//!
//! A decision is data so that the executor is the only thing that acts on it, the agent can
//! keep a history of them (including "no action"), and `gru manage` can answer "why did it
//! scale" from the record alone.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::blocked::BlockedBy;
use super::explanation::Explanation;
use super::millis::Millis;

/// What to do on this node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    None,
    /// Start `count` instances of `service` on this node.
    ScaleOut {
        service: String,
        count: u32,
    },
    /// Stop `count` instances of `service` on this node.
    ScaleIn {
        service: String,
        count: u32,
    },
    /// Stop one instance of `stop` and start one of `start` in its place.
    Swap {
        stop: String,
        start: String,
    },
}

impl Action {
    /// Whether this action changes anything.
    pub fn is_none(&self) -> bool {
        matches!(self, Action::None)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::None => f.write_str("no action"),
            Action::ScaleOut { service, count } => write!(f, "scale-out {service} by {count}"),
            Action::ScaleIn { service, count } => write!(f, "scale-in {service} by {count}"),
            Action::Swap { stop, start } => write!(f, "swap {stop} for {start}"),
        }
    }
}

/// One candidate the planner weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateWeight {
    /// The action as it would be executed: for a scale action, the count after the step was
    /// clamped (the rule's step when a guard removed the candidate).
    pub action: Action,
    /// In [0, 1], as the policy's formula gives it, before any guard.
    pub weight: f64,
    /// How the weight came about: each value against its threshold, and the values left
    /// out because they were unavailable.
    pub explanation: Explanation,
    /// The guards that removed this candidate before the draw; empty when it was eligible.
    pub blocked_by: BlockedBy,
    /// A guard that reduced the action without removing it (a clamped step).
    pub clamped: Option<String>,
}

impl CandidateWeight {
    /// Whether the candidate took part in the draw (it may still have had weight 0).
    pub fn is_eligible(&self) -> bool {
        self.blocked_by.is_empty()
    }
}

/// The planner's answer for one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    /// Every candidate: "no action" first, then scale-out and scale-in by service name,
    /// then swaps.
    pub weights: Vec<CandidateWeight>,
    /// The uniform draw in [0, 1) of a probabilistic strategy; `None` for greedy.
    pub draw: Option<f64>,
    /// A sentence an operator understands, e.g. `scale-out web by 1: weight 0.62
    /// (resp_time_ratio 0.91 > 0.75), drawn 0.41 with probcumulative; scale-in db (weight
    /// 0.40) blocked: cooldown-in ends in 12 s`.
    pub reason: String,
    /// Decided and recorded like any other, but not to be executed.
    pub dry_run: bool,
    pub at: Millis,
}

impl Decision {
    /// Whether the executor should act on it.
    pub fn is_executable(&self) -> bool {
        !self.dry_run && !self.action.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_round_trips_through_json() {
        let decision = Decision {
            action: Action::ScaleOut {
                service: "web".to_owned(),
                count: 2,
            },
            weights: vec![CandidateWeight {
                action: Action::Swap {
                    stop: "a".to_owned(),
                    start: "b".to_owned(),
                },
                weight: 0.5,
                explanation: "cpu_avg 0.90 vs 0.20".into(),
                blocked_by: vec!["cooldown-out ends in 3 s".to_owned()].into(),
                clamped: None,
            }],
            draw: Some(0.25),
            reason: "because".to_owned(),
            dry_run: true,
            at: Millis(1234),
        };
        let json = serde_json::to_string(&decision).expect("serializes");
        assert!(
            json.contains(r#""action":{"kind":"scale-out","service":"web","count":2}"#),
            "{json}"
        );
        assert!(json.contains(r#""at":1234"#), "{json}");
        let back: Decision = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, decision);
        assert!(!back.is_executable(), "a dry-run decision is not executed");
    }

    #[test]
    fn actions_read_as_sentences() {
        let cases = [
            (Action::None, "no action"),
            (
                Action::ScaleIn {
                    service: "db".to_owned(),
                    count: 1,
                },
                "scale-in db by 1",
            ),
            (
                Action::Swap {
                    stop: "a".to_owned(),
                    start: "b".to_owned(),
                },
                "swap a for b",
            ),
        ];
        for (action, text) in cases {
            assert_eq!(action.to_string(), text);
        }
    }
}
