//! Health checks as a state machine (pure: no I/O, no clock; the time of each result is
//! passed in). `runtime::health` runs the probes and feeds their results here.
//!
//! ```text
//!              SuccessThreshold passes in a row
//!   Starting ─────────────────────────────────► Passing
//!      │                                         │  ▲
//!      │ FailureThreshold          FailureThreshold │  │ SuccessThreshold
//!      │ failures in a row      failures in a row │  │ passes in a row
//!      ▼                                         ▼  │
//!   Failing ◄─────────────────────────────────────┘  │
//!      └────────────────────────────────────────────┘
//! ```
//!
//! A readiness check decides whether the instance is in discovery (ready iff `Passing`); a
//! liveness check whether it is replaced (when `Failing`). An instance is `Starting` until
//! its check has settled either way: not ready, but not failing either, so a slow start is
//! not taken for a dead instance before `FailureThreshold` probes have failed.

use common::config::HealthCheck;
use serde::Serialize;

use crate::mape::Millis;

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// Not settled yet: fewer than the thresholds' results since the instance started.
    Starting,
    Passing,
    Failing,
}

/// The consecutive results that change a check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub success: u32,
    pub failure: u32,
}

impl Thresholds {
    pub fn of(check: &HealthCheck) -> Thresholds {
        Thresholds {
            success: check.success_threshold.max(1),
            failure: check.failure_threshold.max(1),
        }
    }
}

/// One check of one instance: its state and the results that led there, as the HTTP API
/// and `status` show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckState {
    pub status: CheckStatus,
    /// Since when it has been in this status.
    pub since: Millis,
    /// Passes and failures in a row, up to now (one of them is 0 after the first result).
    pub successes: u32,
    pub failures: u32,
    /// Why the last failed probe failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Probes run so far.
    pub probes: u64,
    /// Whether it has ever passed: a readiness check that has not is still starting, for
    /// operators, even when it fails.
    pub ever_passed: bool,
}

impl CheckState {
    /// A check of an instance that has just started (or been adopted) at `now`.
    pub fn new(now: Millis) -> CheckState {
        CheckState {
            status: CheckStatus::Starting,
            since: now,
            successes: 0,
            failures: 0,
            last_error: None,
            probes: 0,
            ever_passed: false,
        }
    }

    /// Takes one probe's result at `now`; returns the new status when it changed.
    pub fn observe(
        &mut self,
        result: Result<(), String>,
        thresholds: Thresholds,
        now: Millis,
    ) -> Option<CheckStatus> {
        self.probes += 1;
        let next = match result {
            Ok(()) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.status != CheckStatus::Passing && self.successes >= thresholds.success)
                    .then_some(CheckStatus::Passing)
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.last_error = Some(why);
                (self.status != CheckStatus::Failing && self.failures >= thresholds.failure)
                    .then_some(CheckStatus::Failing)
            }
        };
        if let Some(status) = next {
            self.status = status;
            self.since = now;
            self.ever_passed |= status == CheckStatus::Passing;
        }
        next
    }
}

/// The checks of one instance, as far as its service has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceHealth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<CheckState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<CheckState>,
}

/// Which of an instance's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckRole {
    Readiness,
    Liveness,
}

impl CheckRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckRole::Readiness => "readiness",
            CheckRole::Liveness => "liveness",
        }
    }
}

impl InstanceHealth {
    pub fn check(&self, role: CheckRole) -> Option<&CheckState> {
        match role {
            CheckRole::Readiness => self.readiness.as_ref(),
            CheckRole::Liveness => self.liveness.as_ref(),
        }
    }

    pub fn check_mut(&mut self, role: CheckRole) -> &mut Option<CheckState> {
        match role {
            CheckRole::Readiness => &mut self.readiness,
            CheckRole::Liveness => &mut self.liveness,
        }
    }

    /// Whether the instance belongs in discovery: its readiness check passes, or it has
    /// none (`has_readiness` false: the service declares none).
    pub fn ready(&self, has_readiness: bool) -> bool {
        !has_readiness
            || self
                .readiness
                .as_ref()
                .is_some_and(|c| c.status == CheckStatus::Passing)
    }

    /// Whether its liveness check says to replace it.
    pub fn dead(&self) -> bool {
        self.liveness
            .as_ref()
            .is_some_and(|c| c.status == CheckStatus::Failing)
    }

    /// One word for operators: `starting` (readiness has not passed yet), `ready`,
    /// `not-ready` (readiness failing after it had passed), `unhealthy` (liveness failing:
    /// about to be replaced).
    pub fn condition(&self, has_readiness: bool) -> &'static str {
        if self.dead() {
            "unhealthy"
        } else if self.ready(has_readiness) {
            "ready"
        } else if self
            .readiness
            .as_ref()
            .is_some_and(|c| c.status == CheckStatus::Failing && c.ever_passed)
        {
            "not-ready"
        } else {
            "starting"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        success: 2,
        failure: 3,
    };

    fn run(results: &str) -> Vec<(CheckStatus, Option<CheckStatus>)> {
        let mut state = CheckState::new(Millis(0));
        results
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let result = if c == '+' { Ok(()) } else { Err("no".into()) };
                let changed = state.observe(result, T, Millis(i as u64 + 1));
                (state.status, changed)
            })
            .collect()
    }

    fn statuses(results: &str) -> String {
        run(results)
            .into_iter()
            .map(|(s, _)| match s {
                CheckStatus::Starting => 's',
                CheckStatus::Passing => 'P',
                CheckStatus::Failing => 'F',
            })
            .collect()
    }

    #[test]
    fn thresholds_count_consecutive_results_only() {
        let table = [
            // results, status after each
            ("++", "sP"),
            ("+-+", "sss"),
            ("---", "ssF"),
            ("--+--", "sssss"),
            ("++---", "sPPPF"),
            ("++--+---", "sPPPPPPF"),
            ("---++", "ssFFP"),
            ("---+-++", "ssFFFFP"),
            ("++-++--+", "sPPPPPPP"),
        ];
        for (results, expected) in table {
            assert_eq!(statuses(results), expected, "{results}");
        }
    }

    #[test]
    fn a_transition_is_reported_once_with_its_time() {
        let mut state = CheckState::new(Millis(0));
        let changes: Vec<Option<CheckStatus>> = ["+", "+", "+", "-", "-", "-", "-"]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let result = if *r == "+" {
                    Ok(())
                } else {
                    Err(format!("e{i}"))
                };
                state.observe(result, T, Millis(i as u64 * 10))
            })
            .collect();
        assert_eq!(
            changes,
            [
                None,
                Some(CheckStatus::Passing),
                None,
                None,
                None,
                Some(CheckStatus::Failing),
                None
            ]
        );
        assert_eq!(state.since, Millis(50));
        assert_eq!(state.failures, 4);
        assert_eq!(state.last_error.as_deref(), Some("e6"));
        assert_eq!(state.probes, 7);
    }

    #[test]
    fn readiness_decides_discovery_and_liveness_replacement() {
        let check = |status| {
            Some(CheckState {
                status,
                ever_passed: true,
                ..CheckState::new(Millis(0))
            })
        };
        let table = [
            // readiness, liveness, has readiness, ready, dead, condition
            (None, None, false, true, false, "ready"),
            (None, None, true, false, false, "starting"),
            (
                check(CheckStatus::Starting),
                None,
                true,
                false,
                false,
                "starting",
            ),
            (
                check(CheckStatus::Passing),
                None,
                true,
                true,
                false,
                "ready",
            ),
            (
                check(CheckStatus::Failing),
                None,
                true,
                false,
                false,
                "not-ready",
            ),
            (
                None,
                check(CheckStatus::Starting),
                false,
                true,
                false,
                "ready",
            ),
            (
                None,
                check(CheckStatus::Failing),
                false,
                true,
                true,
                "unhealthy",
            ),
            (
                check(CheckStatus::Passing),
                check(CheckStatus::Failing),
                true,
                true,
                true,
                "unhealthy",
            ),
        ];
        let never_passed = Some(CheckState {
            status: CheckStatus::Failing,
            ..CheckState::new(Millis(0))
        });
        let table = table
            .into_iter()
            .chain([(never_passed, None, true, false, false, "starting")]);
        for (readiness, liveness, has, ready, dead, condition) in table {
            let health = InstanceHealth {
                readiness,
                liveness,
            };
            assert_eq!(health.ready(has), ready, "{health:?}");
            assert_eq!(health.dead(), dead, "{health:?}");
            assert_eq!(health.condition(has), condition, "{health:?}");
        }
    }

    #[test]
    fn thresholds_are_at_least_one() {
        let check = HealthCheck {
            success_threshold: 0,
            failure_threshold: 0,
            ..HealthCheck::default()
        };
        assert_eq!(
            Thresholds::of(&check),
            Thresholds {
                success: 1,
                failure: 1
            }
        );
    }
}
