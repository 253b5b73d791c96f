//! The baselines gru is compared with, re-implemented as single controllers that see the
//! true cluster utilisation (as a central metrics server would) and act on the whole
//! cluster at once.
//!
//! * [`Hpa`]: Kubernetes' Horizontal Pod Autoscaler: `desired = ceil(n · v / target)`, no
//!   change within the tolerance (0.1) of the target, and a scale-down stabilization window
//!   (300 s): a scale-down goes only as far as the highest recommendation of the window,
//!   while a scale-up takes the new recommendation at once.
//! * [`Dynamite`]: CoreOS Dynamite's rule: above the up-threshold (below the
//!   down-threshold) for a sustained period, one instance at a time, then a cooldown.
//!
//! Both are plain state machines stepped with the time and the utilisation.

use std::collections::VecDeque;

/// HPA's tolerance around the target: no change while `|v / target - 1| <= 0.1`.
pub const HPA_TOLERANCE: f64 = 0.1;
/// HPA's default scale-down stabilization window.
pub const HPA_DOWN_STABILIZATION_SECS: u64 = 300;
/// HPA's default sync period.
pub const HPA_SYNC_SECS: u64 = 15;

/// HPA's formula: the replica count that brings utilisation `v` to `target` from
/// `current` replicas; `current` when within the tolerance.
pub fn hpa_desired(current: u32, utilisation: f64, target: f64, tolerance: f64) -> u32 {
    if target <= 0.0 || !utilisation.is_finite() {
        return current;
    }
    let ratio = utilisation / target;
    if (ratio - 1.0).abs() <= tolerance {
        return current;
    }
    let desired = (f64::from(current) * ratio).ceil();
    if desired >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        desired.max(0.0) as u32
    }
}

/// The HPA controller of one service.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub target: f64,
    pub tolerance: f64,
    pub down_window_secs: u64,
    recommendations: VecDeque<(u64, u32)>,
}

impl Hpa {
    pub fn new(target: f64) -> Hpa {
        Hpa {
            target,
            tolerance: HPA_TOLERANCE,
            down_window_secs: HPA_DOWN_STABILIZATION_SECS,
            recommendations: VecDeque::new(),
        }
    }

    /// The replica count to move to at `secs`, from `current` replicas at utilisation
    /// `utilisation` (before clamping to the service's bounds).
    pub fn recommend(&mut self, secs: u64, current: u32, utilisation: f64) -> u32 {
        let recommendation = hpa_desired(current, utilisation, self.target, self.tolerance);
        self.recommendations.push_back((secs, recommendation));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at + self.down_window_secs < secs)
        {
            self.recommendations.pop_front();
        }
        // As Kubernetes stabilizes: up to the new recommendation at once (no scale-up
        // window), down only to the highest recommendation of the scale-down window.
        let highest = self
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommendation);
        let mut desired = current;
        if desired < recommendation {
            desired = recommendation;
        }
        if desired > highest {
            desired = highest;
        }
        desired
    }
}

/// Dynamite's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamiteSettings {
    pub up_threshold: f64,
    pub down_threshold: f64,
    /// How long a breach must last.
    pub period_secs: u64,
    /// No action within this long of the last one.
    pub cooldown_secs: u64,
}

/// The Dynamite controller of one service.
#[derive(Debug, Clone)]
pub struct Dynamite {
    pub settings: DynamiteSettings,
    above_since: Option<u64>,
    below_since: Option<u64>,
    last_action: Option<u64>,
}

impl Dynamite {
    pub fn new(settings: DynamiteSettings) -> Dynamite {
        Dynamite {
            settings,
            above_since: None,
            below_since: None,
            last_action: None,
        }
    }

    /// +1, -1 or 0 instances at `secs` for utilisation `utilisation`.
    pub fn decide(&mut self, secs: u64, utilisation: f64) -> i32 {
        let s = self.settings;
        if utilisation > s.up_threshold {
            self.above_since.get_or_insert(secs);
        } else {
            self.above_since = None;
        }
        if utilisation < s.down_threshold {
            self.below_since.get_or_insert(secs);
        } else {
            self.below_since = None;
        }
        let cooled = self
            .last_action
            .is_none_or(|at| secs >= at + s.cooldown_secs);
        let sustained = |since: Option<u64>| since.is_some_and(|at| secs >= at + s.period_secs);
        let change = if !cooled {
            0
        } else if sustained(self.above_since) {
            1
        } else if sustained(self.below_since) {
            -1
        } else {
            0
        };
        if change != 0 {
            self.last_action = Some(secs);
            self.above_since = None;
            self.below_since = None;
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_formula_table() {
        // (current, utilisation, target, desired)
        let cases = [
            (4, 0.9, 0.6, 6),   // ceil(4 · 1.5)
            (4, 0.65, 0.6, 4),  // ratio 1.083: within the tolerance
            (4, 0.56, 0.6, 4),  // ratio 0.933: within the tolerance
            (10, 0.5, 0.6, 9),  // ceil(10 · 0.833)
            (4, 0.3, 0.6, 2),   // halved
            (10, 1.0, 0.6, 17), // ceil(16.67)
            (3, 0.0, 0.6, 0),   // idle: the caller clamps to MinInstances
            (0, 1.0, 0.6, 0),   // nothing to scale from
            (5, 0.7, 0.0, 5),   // no target: no change
        ];
        for (current, utilisation, target, desired) in cases {
            assert_eq!(
                hpa_desired(current, utilisation, target, HPA_TOLERANCE),
                desired,
                "hpa_desired({current}, {utilisation}, {target})"
            );
        }
    }

    #[test]
    fn hpa_scales_up_at_once_and_down_only_after_the_stabilization_window() {
        let mut hpa = Hpa::new(0.5);
        assert_eq!(hpa.recommend(0, 4, 1.0), 8, "up at once");
        // Load drops: the recommendation is 2, but 8 was recommended within 300 s.
        assert_eq!(hpa.recommend(15, 8, 0.125), 8);
        assert_eq!(hpa.recommend(300, 8, 0.125), 8);
        // The recommendation of 8 (at 0 s) leaves the window after 300 s; the others are 2.
        assert_eq!(hpa.recommend(301, 8, 0.125), 2);
    }

    #[test]
    fn dynamite_waits_for_the_period_then_cools_down() {
        let mut dynamite = Dynamite::new(DynamiteSettings {
            up_threshold: 0.75,
            down_threshold: 0.35,
            period_secs: 30,
            cooldown_secs: 60,
        });
        assert_eq!(dynamite.decide(0, 0.9), 0);
        assert_eq!(dynamite.decide(20, 0.9), 0);
        assert_eq!(dynamite.decide(30, 0.9), 1);
        assert_eq!(dynamite.decide(70, 0.9), 0, "cooling down");
        assert_eq!(
            dynamite.decide(90, 0.9),
            0,
            "cooled, but the breach was seen at 70 s"
        );
        assert_eq!(dynamite.decide(100, 0.9), 1);
        assert_eq!(dynamite.decide(160, 0.1), 0);
        assert_eq!(dynamite.decide(190, 0.1), -1);
    }
}
