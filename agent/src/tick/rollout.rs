//! A rolling update on this node, as values: which of its instances a step replaces, how a
//! step under way stands, and what a failed step leaves behind. The daemon
//! (`runtime/autonomic/rollout.rs`) claims the steps, starts and stops, and writes the
//! records these say.
//!
//! Invariants:
//! * A step starts its new instances before it stops any old one, and stops the old ones
//!   only once every new one has been ready, and running, for the whole `Monitor` span: the
//!   cluster's ready count never drops below what it was when the step began.
//! * A new instance that is gone (it exited: the reconcile removed it) or is not ready by
//!   the step's deadline fails the step; its other new instances are stopped, no old one.
//! * A failed step rolls back (the previous descriptor is put back, and the cluster rolls
//!   toward it like toward any new version) only when the rollout record is about the
//!   current version, is rolling, and has a descriptor to go back to; a rollback has none,
//!   so a failing rollback halts instead of swinging back and forth.

use std::time::Duration;

use common::config::service::FailureAction;
use common::rollout::{RolledBack, RolloutRecord, RolloutState};

use crate::mape::Millis;

/// One of this node's instances of the service, as a step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Here<'a> {
    pub instance: &'a str,
    pub started_at: Millis,
    /// It runs the current descriptor's version.
    pub current: bool,
    pub ready: bool,
    /// The instances it replaces, when a step started it (its container's label).
    pub replaces: &'a [String],
}

/// A step this node began but did not see through (its agent restarted after the step's
/// new instances started, before the old ones stopped): current instances labelled as
/// replacing outdated instances that still run here. Gives the new instances (every current
/// one naming the same old ones as the oldest such) and the old ones still here, which the
/// resumed step stops once the new ones hold, as the step would have.
pub fn interrupted<'a>(here: &[Here<'a>]) -> Option<(Vec<&'a str>, Vec<&'a str>)> {
    let outdated = |name: &str| here.iter().any(|h| !h.current && h.instance == name);
    let first = here
        .iter()
        .filter(|h| h.current && h.replaces.iter().any(|o| outdated(o)))
        .min_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.instance.cmp(b.instance))
        })?;
    let new = here
        .iter()
        .filter(|h| h.current && h.replaces == first.replaces)
        .map(|h| h.instance)
        .collect();
    let old = first
        .replaces
        .iter()
        .map(String::as_str)
        .filter(|o| outdated(o))
        .collect();
    Some((new, old))
}

/// The old instances the next step replaces: the oldest outdated ones, at most
/// `parallelism`.
pub fn to_replace<'a>(here: &[Here<'a>], parallelism: u32) -> Vec<&'a str> {
    let mut outdated: Vec<&Here<'a>> = here.iter().filter(|h| !h.current).collect();
    outdated.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.instance.cmp(b.instance))
    });
    outdated
        .into_iter()
        .take(parallelism.max(1) as usize)
        .map(|h| h.instance)
        .collect()
}

/// A step this node has under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The version it rolls out.
    pub version: String,
    /// The lease of its `rollout-step` record: revoked when it ends.
    pub lease: i64,
    /// The instances it started.
    pub new: Vec<String>,
    /// The instances it stops once the new ones hold.
    pub old: Vec<String>,
    /// When it began.
    pub began: Millis,
    /// Every new instance must be ready by then.
    pub deadline: Millis,
    /// Since when every new instance has been ready without a break.
    pub ready_since: Option<Millis>,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Some new instance is not ready yet (within the deadline).
    Starting,
    /// All are ready, since `since`; they are watched for the `Monitor` span.
    Watching { since: Millis },
    /// They held: stop the old ones.
    Done,
    /// The step failed, and why.
    Failed(String),
}

/// How `step` stands given this node's instances now.
pub fn check(step: &Step, here: &[Here<'_>], monitor: Duration, now: Millis) -> StepState {
    let mut all_ready = true;
    for new in &step.new {
        match here.iter().find(|h| h.instance == new.as_str()) {
            None => {
                let when = if step.ready_since.is_some() {
                    "while it was watched"
                } else {
                    "before it was ready"
                };
                return StepState::Failed(format!("new instance {} exited {when}", short(new)));
            }
            Some(h) if !h.ready => all_ready = false,
            Some(_) => {}
        }
    }
    if !all_ready {
        if now > step.deadline {
            let waited = step.deadline.since(step.began).as_secs();
            return StepState::Failed(format!(
                "new instance {} was not ready within {waited} s",
                step.new
                    .iter()
                    .map(|n| short(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return StepState::Starting;
    }
    let since = step.ready_since.unwrap_or(now);
    if now.since(since) >= monitor {
        StepState::Done
    } else {
        StepState::Watching { since }
    }
}

/// What a failed step writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Put `descriptor` back, with `record` for the rollback toward it.
    Restore {
        descriptor: String,
        record: RolloutRecord,
    },
    /// Halt the rollout: `record` says why.
    Halt(RolloutRecord),
}

/// What a step of `version` that failed for `reason` on `node` leaves behind, given the
/// rollout record as read and the service's `FailureAction`.
pub fn on_failure(
    record: Option<&RolloutRecord>,
    version: &str,
    action: FailureAction,
    reason: &str,
    node: &str,
    now: Millis,
) -> Failure {
    let about_this = record.filter(|r| r.version == version);
    if let Some(record) = about_this
        && record.state == RolloutState::Rolling
        && action == FailureAction::Rollback
        && let (Some(descriptor), Some(from_version)) = (&record.from, &record.from_version)
    {
        let mut back = RolloutRecord::new(from_version.clone(), None, node, now.0);
        back.rolled_back = Some(RolledBack {
            version: version.to_owned(),
            reason: reason.to_owned(),
            node: node.to_owned(),
            at: now.0,
        });
        return Failure::Restore {
            descriptor: descriptor.clone(),
            record: back,
        };
    }
    let mut halted = about_this
        .cloned()
        .unwrap_or_else(|| RolloutRecord::new(version.to_owned(), None, node, now.0));
    halted.state = RolloutState::Halted;
    let why = match (action, about_this.and_then(|r| r.from.as_ref())) {
        (FailureAction::Pause, _) => "FailureAction is pause",
        (FailureAction::Rollback, None) => "there is no previous descriptor to roll back to",
        (FailureAction::Rollback, Some(_)) => "the rollout was not rolling",
    };
    halted.reason = Some(format!("a step on {node} failed: {reason} (halted: {why})"));
    Failure::Halt(halted)
}

/// The first 12 characters of an instance id, as containers are named.
fn short(instance: &str) -> &str {
    instance.get(..12).unwrap_or(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here(instance: &'static str, started: u64, current: bool, ready: bool) -> Here<'static> {
        Here {
            instance,
            started_at: Millis(started),
            current,
            ready,
            replaces: &[],
        }
    }

    #[test]
    fn a_step_its_agent_did_not_see_through_is_found_from_the_labels() {
        let replaced = ["old1".to_owned(), "old2".to_owned()];
        let elsewhere = ["gone".to_owned()];
        let labelled = |instance, started, replaces| Here {
            replaces,
            ..here(instance, started, true, true)
        };
        let instances = [
            here("old1", 10, false, true),
            here("old2", 11, false, true),
            here("old3", 12, false, true),
            labelled("new1", 50, &replaced[..]),
            labelled("new2", 51, &replaced[..]),
            // Its old instance is gone: that step was seen through.
            labelled("new0", 40, &elsewhere[..]),
            here("other", 5, true, true),
        ];
        assert_eq!(
            interrupted(&instances),
            Some((vec!["new1", "new2"], vec!["old1", "old2"]))
        );
        // Once the old ones are stopped there is nothing to resume.
        let done = [
            here("old3", 12, false, true),
            labelled("new1", 50, &replaced[..]),
        ];
        assert_eq!(interrupted(&done), None);
        // An outdated instance carrying the label (a step of an older rollout) resumes nothing.
        let older = [
            here("old1", 10, false, true),
            Here {
                replaces: &replaced[..],
                ..here("mid", 20, false, true)
            },
        ];
        assert_eq!(interrupted(&older), None);
    }

    fn step() -> Step {
        Step {
            version: "v2".into(),
            lease: 7,
            new: vec!["new1".into()],
            old: vec!["old1".into()],
            began: Millis(1_000),
            deadline: Millis(61_000),
            ready_since: None,
        }
    }

    const WATCH: Duration = Duration::from_secs(5);

    #[test]
    fn a_step_replaces_the_oldest_outdated_instances() {
        let instances = [
            here("b", 30, false, true),
            here("a", 20, true, true),
            here("c", 10, false, true),
            here("d", 40, false, true),
        ];
        assert_eq!(to_replace(&instances, 2), vec!["c", "b"]);
        assert_eq!(to_replace(&instances, 0), vec!["c"], "at least one");
        assert!(to_replace(&[here("a", 1, true, true)], 3).is_empty());
    }

    #[test]
    fn a_step_waits_for_ready_then_watches_then_is_done() {
        let mut step = step();
        let starting = [
            here("old1", 0, false, true),
            here("new1", 1_500, true, false),
        ];
        assert_eq!(
            check(&step, &starting, WATCH, Millis(5_000)),
            StepState::Starting
        );
        let ready = [
            here("old1", 0, false, true),
            here("new1", 1_500, true, true),
        ];
        assert_eq!(
            check(&step, &ready, WATCH, Millis(6_000)),
            StepState::Watching {
                since: Millis(6_000)
            }
        );
        step.ready_since = Some(Millis(6_000));
        assert_eq!(
            check(&step, &ready, WATCH, Millis(10_999)),
            StepState::Watching {
                since: Millis(6_000)
            }
        );
        assert_eq!(check(&step, &ready, WATCH, Millis(11_000)), StepState::Done);
    }

    #[test]
    fn a_new_instance_that_exits_or_is_late_fails_the_step() {
        let mut step = step();
        let gone = [here("old1", 0, false, true)];
        let StepState::Failed(why) = check(&step, &gone, WATCH, Millis(2_000)) else {
            panic!("not failed")
        };
        assert_eq!(why, "new instance new1 exited before it was ready");
        step.ready_since = Some(Millis(3_000));
        let StepState::Failed(why) = check(&step, &gone, WATCH, Millis(4_000)) else {
            panic!("not failed")
        };
        assert!(why.ends_with("while it was watched"), "{why}");
        step.ready_since = None;
        let late = [
            here("old1", 0, false, true),
            here("new1", 1_500, true, false),
        ];
        assert_eq!(
            check(&step, &late, WATCH, Millis(61_001)),
            StepState::Failed("new instance new1 was not ready within 60 s".into())
        );
    }

    fn rolling(version: &str, from: Option<(&str, &str)>) -> RolloutRecord {
        RolloutRecord::new(
            version.into(),
            from.map(|(v, t)| (v.to_owned(), t.to_owned())),
            "config push",
            0,
        )
    }

    #[test]
    fn a_failed_step_puts_the_previous_descriptor_back() {
        let record = rolling("v3", Some(("v2", "{v2}")));
        let failure = on_failure(
            Some(&record),
            "v3",
            FailureAction::Rollback,
            "it exited",
            "n1",
            Millis(9),
        );
        let Failure::Restore { descriptor, record } = failure else {
            panic!("no rollback: {failure:?}")
        };
        assert_eq!(descriptor, "{v2}");
        assert_eq!(record.version, "v2");
        assert_eq!(record.from, None, "a rollback is not rolled back in turn");
        assert_eq!(record.state, RolloutState::Rolling);
        let back = record.rolled_back.expect("says why");
        assert_eq!(
            (back.version.as_str(), back.reason.as_str()),
            ("v3", "it exited")
        );
    }

    #[test]
    fn a_failed_rollback_or_a_pausing_service_halts() {
        let cases = [
            (
                Some(rolling("v2", None)),
                FailureAction::Rollback,
                "no previous",
            ),
            (
                Some(rolling("v3", Some(("v2", "{v2}")))),
                FailureAction::Pause,
                "FailureAction is pause",
            ),
            (None, FailureAction::Rollback, "no previous"),
            (
                Some(rolling("v1", Some(("v0", "{v0}")))),
                FailureAction::Rollback,
                "no previous",
            ),
        ];
        for (record, action, says) in cases {
            let version = if action == FailureAction::Pause {
                "v3"
            } else {
                "v2"
            };
            let failure = on_failure(record.as_ref(), version, action, "late", "n1", Millis(1));
            let Failure::Halt(halted) = failure else {
                panic!("not halted: {failure:?}")
            };
            assert_eq!(halted.state, RolloutState::Halted);
            assert_eq!(halted.version, version);
            let reason = halted.reason.expect("why");
            assert!(reason.contains(says) && reason.contains("n1"), "{reason}");
        }
    }
}
