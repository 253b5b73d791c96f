//! The cluster-wide invariants, checked at every tick of a run.
//!
//! Per service:
//!
//! * **bounds**: instances (running or starting) never above `MaxInstances`, and, once the
//!   service has reached `MinInstances`, never below it, except while a crash is being
//!   repaired (the crashed node's lease TTL plus two autonomic loops);
//! * **one step per cooldown window**: the instances the whole cluster adds by scale-out in
//!   any window of `CooldownOut` seconds are at most the scale-out `Step`, and those it
//!   removes by scale-in in any window of `CooldownIn` seconds at most the scale-in `Step`.
//!   Restoring `MinInstances` after a crash is a repair, not a step, and is not counted.
//!   With target tracking a decision may be larger than `Step`: then at most one decision
//!   per direction per window, and the instances it adds (its claimer's share and every
//!   agent's fills) within the growth limit it was decided with.
//!
//! Violations are counted in ticks (a service above its max for 10 s counts 10), so a
//! brief herd and a lasting one are told apart.

use std::collections::VecDeque;

use serde::Serialize;

/// Violations and extremes of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    pub above_max: u64,
    pub below_min: u64,
    pub step_out: u64,
    pub step_in: u64,
}

impl Violations {
    pub fn total(&self) -> u64 {
        self.above_max + self.below_min + self.step_out + self.step_in
    }

    pub fn add(&mut self, other: &Violations) {
        self.above_max += other.above_max;
        self.below_min += other.below_min;
        self.step_out += other.step_out;
        self.step_in += other.step_in;
    }
}

/// The bounds and steps of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min: u32,
    pub max: Option<u32>,
    pub step_out: u32,
    pub step_in: u32,
    pub cooldown_out_secs: u64,
    pub cooldown_in_secs: u64,
    /// Scale-out is target tracking: decisions are counted, and each one's additions
    /// checked against its own growth limit.
    pub tracks_target: bool,
}

/// The checker of one service.
#[derive(Debug, Clone)]
pub struct ServiceInvariants {
    limits: Limits,
    reached_min: bool,
    outs: VecDeque<(u64, u32)>,
    ins: VecDeque<(u64, u32)>,
    repair_until: u64,
    below_since: Option<u64>,
    /// Target tracking: the times of the scale-out and scale-in decisions.
    decisions_out: VecDeque<(u64, u32)>,
    decisions_in: VecDeque<(u64, u32)>,
    /// Target tracking: what the latest scale-out decision allows, and what was added since.
    budget_out: (u32, u32),
    pub violations: Violations,
    /// The most instances added by scale-out within one `CooldownOut` window.
    pub max_added_per_window: u32,
    pub max_removed_per_window: u32,
    pub peak_instances: u32,
    /// The longest time spent below `MinInstances` once it was reached.
    pub longest_below_min_secs: u64,
}

impl ServiceInvariants {
    pub fn new(limits: Limits) -> ServiceInvariants {
        ServiceInvariants {
            limits,
            reached_min: false,
            outs: VecDeque::new(),
            ins: VecDeque::new(),
            repair_until: 0,
            below_since: None,
            decisions_out: VecDeque::new(),
            decisions_in: VecDeque::new(),
            budget_out: (0, 0),
            violations: Violations::default(),
            max_added_per_window: 0,
            max_removed_per_window: 0,
            peak_instances: 0,
            longest_below_min_secs: 0,
        }
    }

    /// A scale-out added `count` instances at `secs` (with target tracking: the decision's
    /// own share, or a fill).
    pub fn scaled_out(&mut self, secs: u64, count: u32) {
        if count > 0 {
            self.outs.push_back((secs, count));
            let (allowed, used) = &mut self.budget_out;
            *used += count;
            if self.limits.tracks_target && *used > *allowed {
                self.violations.step_out += 1;
            }
        }
    }

    /// A target-tracking decision was claimed at `secs`; a scale-out one allows `allowed`
    /// instances more (its growth limit).
    pub fn decided(&mut self, secs: u64, out: bool, allowed: u32) {
        if out {
            self.decisions_out.push_back((secs, 1));
            self.budget_out = (allowed, 0);
        } else {
            self.decisions_in.push_back((secs, 1));
        }
    }

    /// A scale-in removed `count` instances at `secs`.
    pub fn scaled_in(&mut self, secs: u64, count: u32) {
        if count > 0 {
            self.ins.push_back((secs, count));
        }
    }

    /// A node crashed at `secs`: instances may be missing until `repair_until`.
    pub fn crashed(&mut self, repair_until: u64) {
        self.repair_until = self.repair_until.max(repair_until);
    }

    /// Checks the invariants at `secs` with `instances` running or starting.
    pub fn check(&mut self, secs: u64, instances: u32) {
        let limits = self.limits;
        self.peak_instances = self.peak_instances.max(instances);
        if limits.max.is_some_and(|max| instances > max) {
            self.violations.above_max += 1;
        }
        if instances >= limits.min {
            self.reached_min = true;
            if let Some(since) = self.below_since.take() {
                self.longest_below_min_secs = self.longest_below_min_secs.max(secs - since);
            }
        } else if self.reached_min {
            self.below_since.get_or_insert(secs);
            if secs > self.repair_until {
                self.violations.below_min += 1;
            }
        }
        let added = window_sum(&mut self.outs, secs, limits.cooldown_out_secs);
        self.max_added_per_window = self.max_added_per_window.max(added);
        let removed = window_sum(&mut self.ins, secs, limits.cooldown_in_secs);
        self.max_removed_per_window = self.max_removed_per_window.max(removed);
        if limits.tracks_target {
            // A window of the cooldown holds one decision per direction.
            let (window_out, window_in) = (limits.cooldown_out_secs, limits.cooldown_in_secs);
            if window_out > 0 && window_sum(&mut self.decisions_out, secs, window_out) > 1 {
                self.violations.step_out += 1;
            }
            if window_in > 0 && window_sum(&mut self.decisions_in, secs, window_in) > 1 {
                self.violations.step_in += 1;
            }
            return;
        }
        if limits.cooldown_out_secs > 0 && added > limits.step_out {
            self.violations.step_out += 1;
        }
        if limits.cooldown_in_secs > 0 && removed > limits.step_in {
            self.violations.step_in += 1;
        }
    }
}

/// The sum of the events in the window `(secs - window, secs]` (just `secs` for a window
/// of 0), dropping those older.
fn window_sum(events: &mut VecDeque<(u64, u32)>, secs: u64, window: u64) -> u32 {
    while events
        .front()
        .is_some_and(|(at, _)| *at + window.max(1) <= secs)
    {
        events.pop_front();
    }
    events.iter().map(|(_, count)| count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            tracks_target: false,
            min: 2,
            max: Some(5),
            step_out: 1,
            step_in: 1,
            cooldown_out_secs: 30,
            cooldown_in_secs: 60,
        }
    }

    #[test]
    fn two_steps_in_one_cooldown_window_are_a_violation_and_spaced_ones_are_not() {
        let mut checker = ServiceInvariants::new(limits());
        checker.scaled_out(0, 1);
        checker.check(0, 3);
        checker.scaled_out(30, 1);
        checker.check(30, 4);
        assert_eq!(checker.violations, Violations::default());
        checker.scaled_out(45, 1);
        checker.check(45, 5);
        assert_eq!(checker.violations.step_out, 1);
        assert_eq!(checker.max_added_per_window, 2);
    }

    #[test]
    fn bounds_are_checked_and_min_only_once_reached_and_outside_repairs() {
        let mut checker = ServiceInvariants::new(limits());
        checker.check(0, 0);
        assert_eq!(checker.violations.below_min, 0, "min not reached yet");
        checker.check(1, 2);
        checker.crashed(20);
        checker.check(5, 1);
        assert_eq!(checker.violations.below_min, 0, "a crash is being repaired");
        checker.check(21, 1);
        assert_eq!(checker.violations.below_min, 1);
        checker.check(22, 2);
        assert_eq!(checker.longest_below_min_secs, 17);
        checker.check(23, 6);
        assert_eq!(checker.violations.above_max, 1);
        assert_eq!(checker.peak_instances, 6);
    }
}
