//! The baselines gru is compared with, re-implemented as single controllers that act on
//! the whole cluster at once, each seeing the metric with the lag it has in reality.
//!
//! * [`Hpa`]: Kubernetes' Horizontal Pod Autoscaler as `pkg/controller/podautoscaler`
//!   (`horizontal.go`, `replica_calculator.go`) runs it with its defaults: a sync every
//!   15 s (`--horizontal-pod-autoscaler-sync-period`); `desired = ceil(ready · v / target)`
//!   over the pods that are ready, no change within the tolerance (0.1) of the target;
//!   on a scale-up, pods not yet ready count as using nothing (so a scale-up in progress
//!   is not repeated); a scale-down stabilization window of 300 s (a scale-down goes only
//!   as far as the highest recommendation of the window); and the default scale-up
//!   behaviour: in any 15 s, at most the larger of 4 pods and 100 % of the replicas at
//!   the start of that period. It reads metrics-server, modelled by [`MetricWindow`]:
//!   metrics-server's default `--metric-resolution` is 15 s, and the value it serves is
//!   the mean over the window that ended at its last scrape; the HPA's sync is not
//!   aligned with the scrape.
//! * [`Dynamite`]: ICCLab's Dynamite, the scaling engine for CoreOS/fleet
//!   (github.com/icclab/dynamite, `dynamite/ENGINE/ScalingPolicyInstance.py` and
//!   `ScalingState.py`): a scale-up and a scale-down policy, each with a threshold, a
//!   threshold period and a cooldown of its own. A value past the threshold starts the
//!   period; a value that is not past it within the period ends it; the first value after
//!   the period triggers one instance up (down). The policy's cooldown then runs from the
//!   end of the period, and every value that arrives during the cooldown is ignored: the
//!   breach timer starts again only after the cooldown.
//!
//! All are plain state machines stepped with the time and the metric.

use std::collections::VecDeque;

/// HPA's tolerance around the target: no change while `|v / target - 1| <= 0.1`.
pub const HPA_TOLERANCE: f64 = 0.1;
/// HPA's default scale-down stabilization window.
pub const HPA_DOWN_STABILIZATION_SECS: u64 = 300;
/// HPA's default sync period.
pub const HPA_SYNC_SECS: u64 = 15;
/// metrics-server's default `--metric-resolution`: how often it scrapes, and the window
/// its value is the mean over.
pub const METRICS_RESOLUTION_SECS: u64 = 15;
/// The default scale-up policies (`behavior.scaleUp`): per period, at most this many pods
/// more than at the period's start...
pub const HPA_SCALE_UP_PODS: u32 = 4;
/// ...or this percentage more, whichever is larger (`selectPolicy: Max`)...
pub const HPA_SCALE_UP_PERCENT: u32 = 100;
/// ...over this period.
pub const HPA_SCALE_UP_PERIOD_SECS: u64 = 15;

/// HPA's formula on ready pods only (`replica_calculator.go`): the replica count that
/// brings utilisation `utilisation` (the mean over the `ready` pods) to `target`.
///
/// `current` is the replicas the scale asks for (ready and starting). On a scale-up with
/// pods still starting, those count as using nothing: the ratio is recomputed over all of
/// them, and a recomputed ratio within the tolerance, or one that changes direction,
/// keeps `current`. Without a metric (`None`, no ready pod), nothing changes.
pub fn hpa_desired(
    current: u32,
    ready: u32,
    utilisation: Option<f64>,
    target: f64,
    tolerance: f64,
) -> u32 {
    let Some(utilisation) = utilisation.filter(|v| v.is_finite()) else {
        return current;
    };
    if target <= 0.0 || ready == 0 {
        return current;
    }
    let ratio = utilisation / target;
    let unready = current.saturating_sub(ready);
    if unready == 0 || ratio <= 1.0 {
        if (ratio - 1.0).abs() <= tolerance {
            return current;
        }
        return ceil_count(ratio * f64::from(ready));
    }
    // A scale-up while pods start: they count as using 0.
    let all = f64::from(ready) + f64::from(unready);
    let new_ratio = utilisation * f64::from(ready) / (target * all);
    if (new_ratio - 1.0).abs() <= tolerance || new_ratio < 1.0 {
        return current;
    }
    ceil_count(new_ratio * all).max(current)
}

fn ceil_count(value: f64) -> u32 {
    let value = value.ceil();
    if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        value.max(0.0) as u32
    }
}

/// metrics-server's view of one service: it scrapes every `resolution_secs` (from
/// `phase_secs`), and serves until the next scrape the mean of the utilisation over the
/// window that the scrape closed.
#[derive(Debug, Clone)]
pub struct MetricWindow {
    pub resolution_secs: u64,
    pub phase_secs: u64,
    sum: f64,
    seconds: u32,
    served: Option<f64>,
}

impl MetricWindow {
    pub fn new(resolution_secs: u64, phase_secs: u64) -> MetricWindow {
        MetricWindow {
            resolution_secs: resolution_secs.max(1),
            phase_secs,
            sum: 0.0,
            seconds: 0,
            served: None,
        }
    }

    /// Records the utilisation of second `secs` (`None`: no pod ready to measure); at a
    /// scrape, the window closes first, so the value of second `secs` counts in the next.
    pub fn record(&mut self, secs: u64, utilisation: Option<f64>) {
        if secs >= self.phase_secs && (secs - self.phase_secs).is_multiple_of(self.resolution_secs)
        {
            self.served = (self.seconds > 0).then(|| self.sum / f64::from(self.seconds));
            self.sum = 0.0;
            self.seconds = 0;
        }
        if let Some(value) = utilisation.filter(|v| v.is_finite()) {
            self.sum += value;
            self.seconds += 1;
        }
    }

    /// What a client reading now gets: the mean of the last closed window.
    pub fn served(&self) -> Option<f64> {
        self.served
    }
}

/// The HPA controller of one service.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub target: f64,
    pub tolerance: f64,
    pub down_window_secs: u64,
    recommendations: VecDeque<(u64, u32)>,
    /// Pods added by this controller and when, for the scale-up limit.
    scale_ups: VecDeque<(u64, u32)>,
}

impl Hpa {
    pub fn new(target: f64) -> Hpa {
        Hpa {
            target,
            tolerance: HPA_TOLERANCE,
            down_window_secs: HPA_DOWN_STABILIZATION_SECS,
            recommendations: VecDeque::new(),
            scale_ups: VecDeque::new(),
        }
    }

    /// The replica count to move to at `secs`, from `current` replicas of which `ready`
    /// serve, at utilisation `utilisation` (as metrics-server serves it), before clamping
    /// to the service's bounds. The caller reports what it did with [`Hpa::scaled_up`].
    pub fn recommend(
        &mut self,
        secs: u64,
        current: u32,
        ready: u32,
        utilisation: Option<f64>,
    ) -> u32 {
        let recommendation = hpa_desired(current, ready, utilisation, self.target, self.tolerance);
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
        let mut desired = current.max(recommendation).min(highest);
        // The default scale-up behaviour, counted from the replicas at the start of the
        // period (those added within it taken off).
        while self
            .scale_ups
            .front()
            .is_some_and(|(at, _)| *at + HPA_SCALE_UP_PERIOD_SECS <= secs)
        {
            self.scale_ups.pop_front();
        }
        let added: u32 = self.scale_ups.iter().map(|(_, n)| n).sum();
        let period_start = current.saturating_sub(added);
        let by_pods = period_start.saturating_add(HPA_SCALE_UP_PODS);
        let by_percent =
            ceil_count(f64::from(period_start) * (1.0 + f64::from(HPA_SCALE_UP_PERCENT) / 100.0));
        let limit = by_pods.max(by_percent);
        if desired > current {
            desired = desired.min(limit.max(current));
        }
        desired
    }

    /// The controller added `count` replicas at `secs`.
    pub fn scaled_up(&mut self, secs: u64, count: u32) {
        if count > 0 {
            self.scale_ups.push_back((secs, count));
        }
    }
}

/// Dynamite's settings: the same period and cooldown for its scale-up and scale-down
/// policies (each runs its own timers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamiteSettings {
    pub up_threshold: f64,
    pub down_threshold: f64,
    /// How long a breach must last (Dynamite's threshold `period`).
    pub period_secs: u64,
    /// After an action, values are ignored this long (Dynamite's `cooldown_period`).
    pub cooldown_secs: u64,
}

/// One of Dynamite's two policies.
#[derive(Debug, Clone, Copy, Default)]
struct DynamitePolicy {
    /// When the breach began, if one is being timed.
    breach_since: Option<u64>,
    /// Values up to this time are ignored.
    cooldown_until: Option<u64>,
}

impl DynamitePolicy {
    /// One value at `secs`; whether the policy acts.
    fn update(&mut self, secs: u64, breached: bool, period: u64, cooldown: u64) -> bool {
        if self.cooldown_until.is_some_and(|until| secs < until) {
            return false;
        }
        match self.breach_since {
            None => {
                if breached {
                    self.breach_since = Some(secs);
                }
                false
            }
            Some(since) if secs < since + period => {
                if !breached {
                    self.breach_since = None;
                }
                false
            }
            Some(since) => {
                // As `ScalingStateTriggered` does: the first value after the period acts,
                // and the cooldown runs from the end of the period.
                self.breach_since = None;
                self.cooldown_until = Some(since + period + cooldown);
                true
            }
        }
    }
}

/// The Dynamite controller of one service.
#[derive(Debug, Clone)]
pub struct Dynamite {
    pub settings: DynamiteSettings,
    up: DynamitePolicy,
    down: DynamitePolicy,
}

impl Dynamite {
    pub fn new(settings: DynamiteSettings) -> Dynamite {
        Dynamite {
            settings,
            up: DynamitePolicy::default(),
            down: DynamitePolicy::default(),
        }
    }

    /// +1, -1 or 0 instances at `secs` for utilisation `utilisation`.
    pub fn decide(&mut self, secs: u64, utilisation: f64) -> i32 {
        let s = self.settings;
        let up = self.up.update(
            secs,
            utilisation > s.up_threshold,
            s.period_secs,
            s.cooldown_secs,
        );
        let down = self.down.update(
            secs,
            utilisation < s.down_threshold,
            s.period_secs,
            s.cooldown_secs,
        );
        i32::from(up) - i32::from(down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_formula_table() {
        // (current, ready, utilisation, target, desired)
        let cases = [
            (4, 4, Some(0.9), 0.6, 6),    // ceil(4 · 1.5)
            (4, 4, Some(0.65), 0.6, 4),   // ratio 1.083: within the tolerance
            (4, 4, Some(0.56), 0.6, 4),   // ratio 0.933: within the tolerance
            (10, 10, Some(0.5), 0.6, 9),  // ceil(10 · 0.833)
            (4, 4, Some(0.3), 0.6, 2),    // halved
            (10, 10, Some(1.0), 0.6, 17), // ceil(16.67)
            (3, 3, Some(0.0), 0.6, 0),    // idle: the caller clamps to MinInstances
            (0, 0, Some(1.0), 0.6, 0),    // nothing to scale from
            (5, 5, Some(0.7), 0.0, 5),    // no target: no change
            (5, 5, None, 0.6, 5),         // no metric: no change
            // 4 ready at 0.9 and 2 starting: the starting ones count as 0, so the ratio
            // is 0.9 · 4 / (0.6 · 6) = 1.0: within the tolerance, no second scale-up.
            (6, 4, Some(0.9), 0.6, 6),
            // 4 ready at 1.0 and 2 starting: ceil(1.0 · 4 / 0.6) = 7.
            (6, 4, Some(1.0), 0.6, 7),
            // A scale-down counts only the ready pods: ceil(4 · 0.3 / 0.6) = 2.
            (6, 4, Some(0.3), 0.6, 2),
        ];
        for (current, ready, utilisation, target, desired) in cases {
            assert_eq!(
                hpa_desired(current, ready, utilisation, target, HPA_TOLERANCE),
                desired,
                "hpa_desired({current}, {ready}, {utilisation:?}, {target})"
            );
        }
    }

    #[test]
    fn hpa_scales_up_at_once_and_down_only_after_the_stabilization_window() {
        let mut hpa = Hpa::new(0.5);
        assert_eq!(hpa.recommend(0, 4, 4, Some(1.0)), 8, "up at once");
        hpa.scaled_up(0, 4);
        // Load drops: the recommendation is 2, but 8 was recommended within 300 s.
        assert_eq!(hpa.recommend(15, 8, 8, Some(0.125)), 8);
        assert_eq!(hpa.recommend(300, 8, 8, Some(0.125)), 8);
        // The recommendation of 8 (at 0 s) leaves the window after 300 s; the others are 2.
        assert_eq!(hpa.recommend(301, 8, 8, Some(0.125)), 2);
    }

    #[test]
    fn hpa_scale_up_is_limited_to_four_pods_or_double_per_fifteen_seconds() {
        // (current, ready utilisation, target, desired): at most max(current + 4, 2 · current).
        let cases = [
            (2, 1.0, 0.1, 6),   // wants 20: 2 + 4
            (10, 1.0, 0.1, 20), // wants 100: 2 · 10
            (3, 1.0, 0.5, 6),   // wants 6: within max(7, 6)
            (40, 1.0, 0.4, 80), // wants 100: 2 · 40
        ];
        for (current, utilisation, target, desired) in cases {
            let mut hpa = Hpa::new(target);
            assert_eq!(
                hpa.recommend(0, current, current, Some(utilisation)),
                desired,
                "from {current} at {utilisation} for {target}"
            );
        }
        // Within one period the limit counts from the replicas at its start: after 2 -> 6
        // at 0 s, a sync at 10 s (say, from another controller's view) may not go beyond 6;
        // at 15 s the period has passed and 6 may grow to 12.
        let mut hpa = Hpa::new(0.1);
        assert_eq!(hpa.recommend(0, 2, 2, Some(1.0)), 6);
        hpa.scaled_up(0, 4);
        assert_eq!(hpa.recommend(10, 6, 6, Some(1.0)), 6);
        assert_eq!(hpa.recommend(15, 6, 6, Some(1.0)), 12);
    }

    #[test]
    fn metrics_server_serves_the_mean_of_the_last_closed_window() {
        let mut window = MetricWindow::new(15, 3);
        // Seconds 0..3 fall in a window closed at 3 s; seconds 3..18 in the next.
        for secs in 0..3 {
            window.record(secs, Some(0.25));
        }
        assert_eq!(window.served(), None, "nothing scraped yet");
        for secs in 3..18 {
            window.record(secs, Some(if secs < 10 { 0.25 } else { 0.75 }));
            assert_eq!(window.served(), Some(0.25), "at {secs} s: the first window");
        }
        // The scrape at 18 s closes 3..18: 7 s at 0.25 and 8 s at 0.75. A jump at 10 s is
        // seen, diluted, only from 18 s on.
        window.record(18, Some(0.75));
        let served = window.served().expect("a window closed");
        assert!(
            (served - (7.0 * 0.25 + 8.0 * 0.75) / 15.0).abs() < 1e-9,
            "{served}"
        );
        for secs in 19..33 {
            window.record(secs, Some(0.75));
            assert_eq!(window.served(), Some(served), "held until the next scrape");
        }
        window.record(33, None);
        assert_eq!(window.served(), Some(0.75));
    }

    fn dynamite() -> Dynamite {
        Dynamite::new(DynamiteSettings {
            up_threshold: 0.75,
            down_threshold: 0.35,
            period_secs: 30,
            cooldown_secs: 60,
        })
    }

    #[test]
    fn dynamite_waits_for_the_period_and_a_dip_restarts_it() {
        let mut d = dynamite();
        // (secs, utilisation, change)
        let cases = [
            (0, 0.9, 0),
            (10, 0.9, 0),
            (20, 0.5, 0), // a dip within the period ends the breach
            (30, 0.9, 0), // a new breach starts here
            (50, 0.9, 0),
            (60, 0.9, 1), // the first value after 30 + 30 s acts
        ];
        for (secs, utilisation, change) in cases {
            assert_eq!(d.decide(secs, utilisation), change, "at {secs} s");
        }
    }

    #[test]
    fn dynamite_ignores_metrics_during_its_cooldown() {
        let mut d = dynamite();
        assert_eq!(d.decide(0, 0.9), 0);
        assert_eq!(d.decide(30, 0.9), 1, "the period ended at 30 s");
        // The cooldown runs from the end of the period (30 s) to 90 s. Values within it are
        // ignored: the breach at 40..80 s starts no timer...
        for secs in [40, 50, 60, 70, 80] {
            assert_eq!(d.decide(secs, 0.95), 0, "at {secs} s: cooling down");
        }
        // ...so the timer starts again only at 90 s, and acts at 120 s, not at 90 s.
        assert_eq!(d.decide(90, 0.9), 0);
        assert_eq!(d.decide(110, 0.9), 0);
        assert_eq!(d.decide(120, 0.9), 1);
        // The scale-down policy has its own timers: a low value during the scale-up's
        // cooldown is not ignored.
        assert_eq!(d.decide(130, 0.1), 0);
        assert_eq!(d.decide(160, 0.1), -1);
    }
}
