//! Saturation: a scale-out the planner wants that no node can hold, sustained for
//! `Nodes.SaturatedPeriod`, as values. The daemon claims the add-node call when
//! [`Saturation::observe`] says it is due (`runtime::autonomic::nodes`).
//!
//! Every agent plans from the same cluster view, so a scale-out that only this node's room
//! holds back is one a node with room would take: while it stays held back here for the
//! whole period, no node took it, and the cluster is full for it.
//!
//! Target tracking asks otherwise: its decision is a target in the ledger that every agent
//! with room fills, so no guard says "no free resources". There the sign is
//! [`unfilled_targets`]: a scale-out target above the service's count while this node has
//! no room for it; sustained for the period, no node had room. A target lives a few loops
//! and the planner writes the next one a loop or so after it expires: the caller passes a
//! `grace` that such a gap does not break.

use std::time::Duration;

use crate::mape::{Action, Decision, Millis};

/// The scale-outs `decision` weighed that only this node's room held back: `(service,
/// count)`, with a weight above 0 (the rule is breached).
pub fn held_by_room(decision: &Decision) -> Vec<(String, u32)> {
    decision
        .weights
        .iter()
        .filter(|c| c.weight > 0.0 && c.blocked_by.held_only_by_room())
        .filter_map(|c| match &c.action {
            Action::ScaleOut { service, count } => Some((service.clone(), *count)),
            _ => None,
        })
        .collect()
}

/// A standing scale-out target of a service, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    pub service: String,
    /// The count the target asks for.
    pub desired: u32,
    /// The service's count (discovery and starting records).
    pub counted: u32,
    /// Instances of it this node has room for.
    pub free_slots_here: u32,
}

/// The scale-out targets this node cannot help fill: above the count, with no room here.
/// `(service, instances missing)`, as [`held_by_room`] gives them.
pub fn unfilled_targets(targets: &[TargetView]) -> Vec<(String, u32)> {
    targets
        .iter()
        .filter(|t| t.desired > t.counted && t.free_slots_here == 0)
        .map(|t| (t.service.clone(), t.desired - t.counted))
        .collect()
}

/// Since when the scale-outs have been held back by room, tick after tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saturation {
    since: Option<Millis>,
    /// The last tick that had one.
    last: Option<Millis>,
}

impl Saturation {
    /// Takes this tick's held scale-outs; true when they have been held back for `period`
    /// with no break longer than `grace` (then the caller claims the add-node call and
    /// calls [`Self::reset`]).
    pub fn observe(
        &mut self,
        held: &[(String, u32)],
        now: Millis,
        period: Duration,
        grace: Duration,
    ) -> bool {
        if held.is_empty() {
            if self.last.is_none_or(|last| now.since(last) > grace) {
                self.reset();
            }
            return false;
        }
        self.last = Some(now);
        let since = *self.since.get_or_insert(now);
        now.since(since) >= period
    }

    /// Starts counting again (after a claim, won or lost: the next call is a cooldown away).
    pub fn reset(&mut self) {
        self.since = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_needs_a_held_scale_out_for_the_whole_period_without_a_break() {
        let period = Duration::from_secs(10);
        let held = vec![("web".to_owned(), 1)];
        let none = Duration::ZERO;
        let mut s = Saturation::default();
        assert!(!s.observe(&held, Millis(1_000), period, none));
        assert!(!s.observe(&held, Millis(10_999), period, none));
        assert!(s.observe(&held, Millis(11_000), period, none));
        // A tick without one starts the count again.
        assert!(!s.observe(&[], Millis(12_000), period, none));
        assert!(!s.observe(&held, Millis(13_000), period, none));
        assert!(!s.observe(&held, Millis(22_999), period, none));
        assert!(s.observe(&held, Millis(23_000), period, none));
        s.reset();
        assert!(!s.observe(&held, Millis(24_000), period, none));
    }

    #[test]
    fn a_break_within_the_grace_does_not_start_the_count_again() {
        let (period, grace) = (Duration::from_secs(10), Duration::from_secs(2));
        let held = vec![("web".to_owned(), 1)];
        let mut s = Saturation::default();
        assert!(!s.observe(&held, Millis(1_000), period, grace));
        // A target expired and the next is not written yet: 2 s without one.
        assert!(!s.observe(&[], Millis(2_000), period, grace));
        assert!(!s.observe(&[], Millis(3_000), period, grace));
        assert!(s.observe(&held, Millis(11_000), period, grace));
        // Longer than the grace: the count starts again.
        s.reset();
        assert!(!s.observe(&held, Millis(12_000), period, grace));
        assert!(!s.observe(&[], Millis(14_001), period, grace));
        assert!(!s.observe(&held, Millis(15_000), period, grace));
        assert!(!s.observe(&held, Millis(24_999), period, grace));
        assert!(s.observe(&held, Millis(25_000), period, grace));
    }

    #[test]
    fn a_target_above_the_count_with_no_room_here_is_unfilled() {
        let target = |service: &str, desired, counted, free_slots_here| TargetView {
            service: service.to_owned(),
            desired,
            counted,
            free_slots_here,
        };
        assert_eq!(
            unfilled_targets(&[
                target("full", 5, 3, 0),
                target("room-here", 5, 3, 1),
                target("filled", 3, 3, 0),
                target("over", 2, 3, 0),
            ]),
            [("full".to_owned(), 2)]
        );
    }
}
