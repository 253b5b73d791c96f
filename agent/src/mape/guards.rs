//! Guards: the rules that remove or shrink a candidate before the draw, whatever its weight.
//!
//! A scale-out needs free resources here, no failed start of it backing off here (a refused
//! pull: the start is left to nodes that can), and the cluster below `MaxInstances`; a scale-in
//! needs an instance here, the cluster above `MinInstances`, and never takes a base
//! service's last instance on this node; a swap needs the started service not to fit
//! otherwise, equal `cpunumber`s, and both services' bounds kept. Every action waits for its
//! breach to last the rule's `Period`; no scale-out within `CooldownOut` of the service's last
//! scale-out, no scale-in within `CooldownIn` of its last scale action in either direction
//! (so a scale-out is not undone at once). `Step` instances per action, clamped to the room
//! left. Each guard says what it did in words an operator reads in the decision.

use std::time::Duration;

use common::config::{PolicyConfig, PolicyRule};

use super::blocked::{Cooldown, Hold};
use super::decision::Action;
use super::knowledge::{LastScale, PlannerState, ServiceSnapshot};
use super::millis::{Millis, whole_secs_ceil};
use super::planner::{Candidate, Subject};

/// The guards, with what they read.
pub(super) struct Guards<'a> {
    pub(super) policy: &'a PolicyConfig,
    pub(super) state: &'a PlannerState,
    pub(super) now: Millis,
}

impl Guards<'_> {
    /// Applies the guards of `candidate`'s action; its subject indexes `services`.
    pub(super) fn apply(&self, candidate: &mut Candidate, services: &[&ServiceSnapshot]) {
        match (&candidate.action, candidate.subject) {
            (Action::ScaleOut { .. }, Subject::Service(service)) => {
                self.scale_out(candidate, services[service]);
            }
            (Action::ScaleIn { .. }, Subject::Service(service)) => {
                self.scale_in(candidate, services[service]);
            }
            (Action::Swap { .. }, Subject::Swap { stop, start }) => {
                self.swap(candidate, services[stop], services[start]);
            }
            _ => {}
        }
    }

    fn last_scale(&self, service: &ServiceSnapshot) -> LastScale {
        self.state
            .last_scale(&service.name)
            .merge(service.cluster_last_scale)
    }

    fn scale_out(&self, candidate: &mut Candidate, service: &ServiceSnapshot) {
        let policy = service.policy(self.policy);
        let rule = &policy.scaleout;
        let tracks = rule.tracks_target();
        let blocked = &mut candidate.blocked_by;
        // A target-tracking decision is filled by every agent with room, not only this one.
        if let (Some(held), false) = (&service.start_held, tracks) {
            blocked.push(Hold::StartHeld {
                error: held.error.clone(),
                ends_in_secs: held.ends_in_secs,
            });
        } else if service.free_slots_here == 0 && !tracks {
            blocked.push(Hold::NoFreeResources);
        }
        let counted = service
            .counted_instances()
            .saturating_add(service.pending_here);
        let room_to_max = service.max_instances.map(|max| max.saturating_sub(counted));
        if let (Some(max), Some(0)) = (service.max_instances, room_to_max) {
            blocked.push(Hold::MaxInstancesReached { max, counted });
        }
        blocked.extend(self.period(rule, candidate.breach_started));
        blocked.extend(cooldown(
            Cooldown::Out,
            || None,
            self.last_scale(service).scaled_out,
            policy.cooldown_out_secs,
            self.now,
        ));
        if candidate.blocked_by.is_empty() && tracks {
            let count = candidate_count(candidate);
            if let Some(max) = service.max_instances {
                let room = room_to_max.unwrap_or(u32::MAX);
                clamp_step(candidate, count, room, || format!("MaxInstances {max}"));
            }
        } else if candidate.blocked_by.is_empty() {
            let by_max = room_to_max.unwrap_or(u32::MAX);
            let step = rule.step.max(1);
            if by_max <= service.free_slots_here {
                clamp_step(candidate, step, by_max, || {
                    format!("MaxInstances {}", service.max_instances.unwrap_or(0))
                });
            } else {
                clamp_step(candidate, step, service.free_slots_here, || {
                    "free resources on this node".to_owned()
                });
            }
        }
    }

    fn scale_in(&self, candidate: &mut Candidate, service: &ServiceSnapshot) {
        let policy = service.policy(self.policy);
        let rule = &policy.scalein;
        let tracks = rule.tracks_target();
        let blocked = &mut candidate.blocked_by;
        // A target-tracking decision is carried out by the agents that run instances.
        if service.running_here == 0 && !tracks {
            blocked.push(Hold::NoInstanceHere);
        }
        let counted = service.counted_instances();
        let room_to_min = counted.saturating_sub(service.min_instances);
        if room_to_min == 0 {
            blocked.push(Hold::MinInstancesReached {
                min: service.min_instances,
                counted,
            });
        }
        let keep_here = u32::from(service.base_service);
        if service.base_service && service.running_here == 1 && !tracks {
            blocked.push(Hold::BaseServiceKeepsLast);
        }
        blocked.extend(self.period(rule, candidate.breach_started));
        // A step waits CooldownIn after any scale action, so it does not undo a scale-out;
        // a target-tracking scale-in has its stabilization window for that, and waits only
        // for the last scale-in.
        let last = self.last_scale(service);
        blocked.extend(cooldown(
            Cooldown::In,
            || None,
            if tracks {
                last.scaled_in
            } else {
                last.latest()
            },
            policy.cooldown_in_secs,
            self.now,
        ));
        let min = || format!("MinInstances {}", service.min_instances);
        if candidate.blocked_by.is_empty() && tracks {
            let count = candidate_count(candidate);
            clamp_step(candidate, count, room_to_min, min);
        } else if candidate.blocked_by.is_empty() {
            let by_here = service.running_here.saturating_sub(keep_here);
            let step = rule.step.max(1);
            if room_to_min <= by_here {
                clamp_step(candidate, step, room_to_min, min);
            } else if service.base_service {
                clamp_step(candidate, step, by_here, || {
                    "the base service keeps one instance here".to_owned()
                });
            } else {
                clamp_step(candidate, step, by_here, || {
                    "instances running on this node".to_owned()
                });
            }
        }
    }

    fn swap(&self, candidate: &mut Candidate, stop: &ServiceSnapshot, start: &ServiceSnapshot) {
        let (start_policy, stop_policy) = (start.policy(self.policy), stop.policy(self.policy));
        let blocked = &mut candidate.blocked_by;
        if let Some(held) = &start.start_held {
            blocked.push(Hold::StartHeld {
                error: held.error.clone(),
                ends_in_secs: held.ends_in_secs,
            });
        } else if start.free_slots_here > 0 {
            blocked.push(Hold::FitsWithoutStopping {
                start: start.name.clone(),
                stop: stop.name.clone(),
            });
        }
        if stop.cpu_number != start.cpu_number {
            blocked.push(Hold::CpuNumberDiffers {
                stop: stop.name.clone(),
                stop_cpus: stop.cpu_number,
                start: start.name.clone(),
                start_cpus: start.cpu_number,
            });
        }
        if stop.base_service && stop.running_here < 2 {
            blocked.push(Hold::LastBaseInstance {
                stop: stop.name.clone(),
            });
        }
        if stop.counted_instances() <= stop.min_instances {
            blocked.push(Hold::BelowMinInstances {
                stop: stop.name.clone(),
                min: stop.min_instances,
            });
        }
        let start_counted = start.counted_instances().saturating_add(start.pending_here);
        if let Some(max) = start.max_instances.filter(|max| start_counted >= *max) {
            blocked.push(Hold::AtMaxInstances {
                start: start.name.clone(),
                max,
            });
        }
        blocked.extend(self.period(&self.policy.swap, candidate.breach_started));
        blocked.extend(cooldown(
            Cooldown::Out,
            || Some(start.name.clone()),
            self.last_scale(start).scaled_out,
            start_policy.cooldown_out_secs,
            self.now,
        ));
        blocked.extend(cooldown(
            Cooldown::In,
            || Some(stop.name.clone()),
            self.last_scale(stop).latest(),
            stop_policy.cooldown_in_secs,
            self.now,
        ));
    }

    /// Holds an action whose breach, which `started` then, has not yet lasted the rule's
    /// `Period`. An action with no breach (weight 0) is not held: it cannot be drawn anyway.
    fn period(&self, rule: &PolicyRule, started: Option<Millis>) -> Option<Hold> {
        let started = started?;
        let sustained = self.now.since(started);
        (sustained < Duration::from_secs(rule.period_secs)).then_some(Hold::Period {
            sustained_secs: sustained.as_secs(),
            period_secs: rule.period_secs,
        })
    }
}

/// Holds an action taken less than `cooldown_secs` ago: the cooldown of `direction`, of the
/// candidate's service or of the one `of` names (asked only then).
fn cooldown(
    direction: Cooldown,
    of: impl FnOnce() -> Option<String>,
    last: Option<Millis>,
    cooldown_secs: u64,
    now: Millis,
) -> Option<Hold> {
    let ends = last?.plus(Duration::from_secs(cooldown_secs));
    (now < ends).then(|| Hold::Cooldown {
        direction,
        of: of(),
        ends_in_secs: whole_secs_ceil(ends.since(now)),
    })
}

/// The instances a scale candidate adds or removes (1 for a swap).
fn candidate_count(candidate: &Candidate) -> u32 {
    match &candidate.action {
        Action::ScaleOut { count, .. } | Action::ScaleIn { count, .. } => *count,
        Action::None | Action::Swap { .. } => 1,
    }
}

/// Sets the action's count to `min(step, room)`, saying so (and `why`) when the room is the
/// smaller.
fn clamp_step(candidate: &mut Candidate, step: u32, room: u32, why: impl FnOnce() -> String) {
    if room >= step {
        return;
    }
    if let Action::ScaleOut { count, .. } | Action::ScaleIn { count, .. } = &mut candidate.action {
        *count = room;
    }
    candidate.clamped = Some(format!("Step {step} clamped to {room} by {}", why()));
}
