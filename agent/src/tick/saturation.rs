//! Saturation: a scale-out the planner wants that no node can hold, sustained for
//! `Nodes.SaturatedPeriod`, as values. The daemon claims the add-node call when
//! [`Saturation::observe`] says it is due (`runtime::autonomic::nodes`).
//!
//! Every agent plans from the same cluster view, so a scale-out that only this node's room
//! holds back is one a node with room would take: while it stays held back here for the
//! whole period, no node took it, and the cluster is full for it.

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

/// Since when the scale-outs have been held back by room, tick after tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saturation {
    since: Option<Millis>,
}

impl Saturation {
    /// Takes this tick's held scale-outs; true when they have been held back for `period`
    /// without a break (then the caller claims the add-node call and calls [`Self::reset`]).
    pub fn observe(&mut self, held: &[(String, u32)], now: Millis, period: Duration) -> bool {
        if held.is_empty() {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.since(since) >= period
    }

    /// Starts counting again (after a claim, won or lost: the next call is a cooldown away).
    pub fn reset(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_needs_a_held_scale_out_for_the_whole_period_without_a_break() {
        let period = Duration::from_secs(10);
        let held = vec![("web".to_owned(), 1)];
        let mut s = Saturation::default();
        assert!(!s.observe(&held, Millis(1_000), period));
        assert!(!s.observe(&held, Millis(10_999), period));
        assert!(s.observe(&held, Millis(11_000), period));
        // A tick without one starts the count again.
        assert!(!s.observe(&[], Millis(12_000), period));
        assert!(!s.observe(&held, Millis(13_000), period));
        assert!(!s.observe(&held, Millis(22_999), period));
        assert!(s.observe(&held, Millis(23_000), period));
        s.reset();
        assert!(!s.observe(&held, Millis(24_000), period));
    }
}
