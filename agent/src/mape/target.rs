//! Target tracking: the count a rule's values call for, as Kubernetes' HPA computes it.
//!
//! From `n` instances at level `v`, `ceil(n · v / target)` instances bring the level to the
//! target, if the load spreads evenly. With several values (a response-time ratio and a CPU
//! load, say) the busiest decides, as HPA does with several metrics: the largest count. A
//! scale-out grows by at most `max(Step, ceil(n · MaxGrowthPercent / 100))` per decision
//! (HPA's default scale-up policy: 100 %); a scale-in goes only down to the highest count
//! recommended during the rule's `Stabilization` window, so a dip does not remove what a
//! peak a moment ago needed, and a scale-out does not restart anything that makes the
//! service drift up.

use std::collections::VecDeque;
use std::time::Duration;

use super::analyze::AnalyticValue;
use super::millis::Millis;

/// Recommendations kept per service for stabilization, whatever the tick rate.
const MAX_RECOMMENDATIONS: usize = 1_024;

/// The count `values` call for from `n` instances, and the sentence saying so; `None` when
/// no value is available.
pub fn desired_count(
    values: &[(&str, &AnalyticValue)],
    n: u32,
    target: f64,
) -> Option<(u32, String)> {
    let n = n.max(1);
    values
        .iter()
        .filter_map(|(name, value)| value.value().map(|v| (*name, v)))
        .map(|(name, v)| {
            let desired = (f64::from(n) * v / target).ceil();
            let desired = if desired >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                desired.max(0.0) as u32
            };
            (
                desired,
                format!("ceil({n} × {name} {v:.2} / {target:.2}) = {desired}"),
            )
        })
        .max_by_key(|(desired, _)| *desired)
}

/// The most one scale-out decision adds to `n` instances.
pub fn growth_limit(n: u32, step: u32, max_growth_percent: u32) -> u32 {
    let by_percent = (u64::from(n) * u64::from(max_growth_percent)).div_ceil(100);
    step.max(1)
        .max(u32::try_from(by_percent).unwrap_or(u32::MAX))
}

/// A service's recent recommendations, for stabilization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recommendations(VecDeque<(Millis, u32)>);

impl Recommendations {
    /// Records the count recommended at `at`, forgetting what is older than `keep`.
    pub fn record(&mut self, at: Millis, desired: u32, keep: Duration) {
        self.0.push_back((at, desired));
        while self
            .0
            .front()
            .is_some_and(|(seen, _)| at.since(*seen) > keep)
            || self.0.len() > MAX_RECOMMENDATIONS
        {
            self.0.pop_front();
        }
    }

    /// The highest count recommended during the `window` before `now`.
    pub fn highest(&self, now: Millis, window: Duration) -> Option<u32> {
        self.within(now, window).max()
    }

    /// The lowest count recommended during the `window` before `now`.
    pub fn lowest(&self, now: Millis, window: Duration) -> Option<u32> {
        self.within(now, window).min()
    }

    fn within(&self, now: Millis, window: Duration) -> impl Iterator<Item = u32> + '_ {
        self.0
            .iter()
            .filter(move |(at, _)| now.since(*at) <= window)
            .map(|(_, desired)| *desired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(v: f64) -> AnalyticValue {
        AnalyticValue::Available(v)
    }

    #[test]
    fn the_busiest_value_decides_the_count() {
        let (resp, cpu) = (available(0.9), available(0.3));
        let values = [("resp_time_ratio", &resp), ("cpu_load", &cpu)];
        let (desired, why) = desired_count(&values, 4, 0.6).expect("available");
        assert_eq!(desired, 6);
        assert!(why.contains("resp_time_ratio"), "{why}");
        let gone = AnalyticValue::unavailable("no samples");
        assert_eq!(desired_count(&[("x", &gone)], 4, 0.6), None);
        // No instance yet counts as one: the formula still scales from zero.
        assert_eq!(desired_count(&[("x", &resp)], 0, 0.6).map(|d| d.0), Some(2));
    }

    #[test]
    fn growth_is_limited_to_step_or_a_percentage() {
        assert_eq!(growth_limit(4, 1, 100), 4);
        assert_eq!(growth_limit(1, 2, 100), 2);
        assert_eq!(growth_limit(10, 1, 50), 5);
        assert_eq!(growth_limit(3, 1, 50), 2);
    }

    #[test]
    fn stabilization_keeps_the_highest_recent_recommendation() {
        let mut recent = Recommendations::default();
        let keep = Duration::from_secs(60);
        recent.record(Millis(0), 8, keep);
        recent.record(Millis(30_000), 3, keep);
        let window = Duration::from_secs(60);
        assert_eq!(recent.highest(Millis(30_000), window), Some(8));
        assert_eq!(recent.lowest(Millis(30_000), window), Some(3));
        // After the window the peak no longer holds the count up.
        recent.record(Millis(61_000), 3, keep);
        assert_eq!(recent.highest(Millis(61_000), window), Some(3));
    }
}
