//! Leaderless coordination of scaling: the few decisions that must be exclusive.
//!
//! Every agent plans on its own, and several may see the same overload at once. Gru let
//! them all act, overshooting by about p·N instances. gru keeps two cluster-wide
//! invariants without a leader:
//!
//! * a service's instances stay within [MinInstances, MaxInstances];
//! * the whole cluster takes at most one scaling step per service per cooldown window.
//!
//! Before acting, an agent reads the service's **ledger** in etcd and claims the step with a
//! transaction that compares the ledger's revision to what it read. Exactly one of the
//! agents racing for the same step wins; the others see the claim and back off. The ledger
//! holds, per service:
//!
//! ```text
//! /gru/<cluster>/scaling/<service>/out-cooldown   present while scale-out is cooling down (lease TTL = CooldownOut)
//! /gru/<cluster>/scaling/<service>/in-cooldown    present while scale-in is cooling down  (lease TTL = CooldownIn)
//! /gru/<cluster>/scaling/<service>/intent         {node, direction, count_after} of the last claim, until the
//!                                                  instances it announced show up in discovery (lease TTL = settle)
//! /gru/<cluster>/scaling/<service>/last-claim     the same, kept (no lease): its revision is the ledger's
//! /gru/<cluster>/scaling/<service>/target         {node, direction, desired} of the last target-tracking
//!                                                  decision, while agents fill it (lease TTL = fill window)
//! /gru/<cluster>/scaling/<service>/rollout-step   {node, version, count} of a rollout step under way
//!                                                  (lease TTL = the step's longest run)
//! ```
//!
//! **Rollout steps.** A rollout (a new descriptor version) replaces instances one claimed
//! step at a time: the claiming node starts new instances, waits until they are ready, then
//! stops as many old ones. The step is claimed like any other (it compares and rewrites
//! `last-claim`, and waits for a settling intent), and while it stands no scaling step, no
//! scale-in fill and no ceiling repair is claimed ([`Refusal::RollingOut`]): its new
//! instances briefly raise the count, and a stop then would take the cluster below the
//! ready count the rollout keeps. Floor repairs still go ahead (they only start), except
//! during a stop-first step, which is short of its instances on purpose and starts them.
//!
//! **Target tracking.** A rule in target mode decides a count, not a step: the claiming
//! agent writes the desired count (the `target`) in the same transaction that claims its own
//! share of the way there, and starts the decision's cooldown. While the target stands,
//! every agent with room (for a scale-in: with instances) fills toward it, each share claimed
//! like a repair ([`fill_claim`]: compare the last claim's revision, one intent), so a
//! decision larger than one node's room completes within a loop or two and two agents never
//! fill the same gap. The cluster still takes one decision per service per window: fills
//! neither need nor start a cooldown, and never go past the target.
//!
//! A claim compares `last-claim`'s revision, not the intent's: the intent disappears with
//! its lease, and a claim read before another agent's claim whose intent has since expired
//! would otherwise still see "no intent" and win, from a count that misses the other
//! agent's instances. For the same reason the agent reads the ledger before it counts the
//! instances: a claim the count misses is then one the ledger shows (its intent settling)
//! or one made after the ledger was read (which fails this claim's transaction).
//!
//! Cooldowns are lease TTLs, so no clock is compared across machines. The intent closes the
//! window between a claim and the new instance's discovery record: while it lives, the
//! count a scale-out starts from is at least its `count_after`.
//!
//! This module is the pure part: what an agent may claim given what it observed.

use serde::{Deserialize, Serialize};

/// Which way a claim scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Out,
    In,
}

/// The last claim on a service, while its instances settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub node: String,
    pub direction: Direction,
    /// The service's instance count once the claim is carried out.
    pub count_after: u32,
}

/// The count a target-tracking decision asked for, while agents fill toward it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The agent that decided.
    pub node: String,
    pub direction: Direction,
    /// The service's instance count the decision aims for (within its bounds).
    pub desired: u32,
}

/// A rollout step under way: `node` replaces `count` instances with `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    pub node: String,
    pub version: String,
    pub count: u32,
    /// The step stops its old instances before it starts the new ones (`Update.Order`):
    /// the count is short by `count` on purpose, and no floor repair fills it meanwhile.
    #[serde(default)]
    pub stop_first: bool,
}

/// A service's ledger as read from the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    pub out_cooling: bool,
    pub in_cooling: bool,
    pub intent: Option<Intent>,
    /// The standing target-tracking decision, if any.
    pub target: Option<Target>,
    /// A rollout step under way, if any.
    pub rollout_step: Option<RolloutStep>,
    /// The store revision the claim must still see (the `last-claim` key's modification
    /// revision, 0 before the service's first claim).
    pub revision: i64,
}

/// What an agent wants to do to a service, and what it observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub node: &'a str,
    pub direction: Direction,
    /// Instances the agent wants to add or remove.
    pub step: u32,
    /// Running instances in the cluster as the agent sees them (discovery records).
    pub observed: u32,
    pub min: u32,
    pub max: Option<u32>,
}

/// A claim to write: the new intent, and which cooldowns it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Instances to add or remove (≤ the request's step, clamped to the bounds).
    pub count: u32,
    pub intent: Intent,
    pub start_out_cooldown: bool,
    pub start_in_cooldown: bool,
    /// A target-tracking decision to publish for the other agents to fill; `None` leaves
    /// the standing target (if any) as it is.
    pub target: Option<Target>,
}

/// How long each ledger record lives (seconds; etcd raises anything below 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerTtls {
    /// The intent: until the claimed instances show up in discovery.
    pub settle_secs: i64,
    pub cooldown_out_secs: i64,
    pub cooldown_in_secs: i64,
    /// A target: as long as agents may fill it.
    pub target_secs: i64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    CoolingDown(Direction),
    AtBound {
        count: u32,
        bound: u32,
    },
    /// A stop of the service is settling: its instance left discovery first but may still
    /// be draining (running until its StopTimeout), so a start now could exceed
    /// MaxInstances for that long.
    StopSettling,
    /// The cluster already counts what a target-tracking decision asks for.
    AtTarget {
        count: u32,
        desired: u32,
    },
    /// A rollout step is under way on `node`: no scaling step until it is done.
    RollingOut {
        node: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CoolingDown(Direction::Out) => {
                f.write_str("the cluster scaled this service out within its CooldownOut")
            }
            Refusal::CoolingDown(Direction::In) => {
                f.write_str("the cluster scaled this service within its CooldownIn")
            }
            Refusal::AtBound { count, bound } => {
                write!(
                    f,
                    "the cluster already counts {count} instances (bound {bound})"
                )
            }
            Refusal::StopSettling => f.write_str(
                "a stop of this service is settling (its instance may still be draining)",
            ),
            Refusal::AtTarget { count, desired } => write!(
                f,
                "the cluster already counts {count} instances (the decision asks for {desired})"
            ),
            Refusal::RollingOut { node } => write!(
                f,
                "{node} is replacing instances of this service (a rollout step)"
            ),
        }
    }
}

/// The count a claim starts from: the observed count, corrected by a settling intent
/// (its instances may not be in discovery yet, or may still be there while stopping).
pub fn effective_count(observed: u32, intent: Option<&Intent>) -> u32 {
    match intent {
        Some(Intent {
            direction: Direction::Out,
            count_after,
            ..
        }) => observed.max(*count_after),
        Some(Intent {
            direction: Direction::In,
            count_after,
            ..
        }) => observed.min(*count_after),
        None => observed,
    }
}

/// Whether the ledger lets a scale-out decision start instances: not while the cluster
/// cools down from the last one, nor (under a MaxInstances) while a stop settles: the
/// stopped instance is out of discovery (so out of the count) before it is gone, and
/// starting one now would run max + 1 until it has drained.
fn may_start(ledger: &Ledger, max: Option<u32>) -> Result<(), Refusal> {
    if ledger.out_cooling {
        return Err(Refusal::CoolingDown(Direction::Out));
    }
    let stop_settling = ledger
        .intent
        .as_ref()
        .is_some_and(|i| i.direction == Direction::In);
    if stop_settling && max.is_some() {
        return Err(Refusal::StopSettling);
    }
    Ok(())
}

/// No scaling step while a rollout step stands (see the module's notes).
fn not_rolling_out(ledger: &Ledger) -> Result<(), Refusal> {
    match &ledger.rollout_step {
        Some(step) => Err(Refusal::RollingOut {
            node: step.node.clone(),
        }),
        None => Ok(()),
    }
}

/// Decides what `request` may claim given `ledger`. `cooldown_out`/`cooldown_in` say
/// whether those cooldowns are configured (non-zero).
pub fn evaluate(
    request: &Request<'_>,
    ledger: &Ledger,
    cooldown_out: bool,
    cooldown_in: bool,
) -> Result<Claim, Refusal> {
    not_rolling_out(ledger)?;
    let count = effective_count(request.observed, ledger.intent.as_ref());
    let (granted, count_after) = match request.direction {
        Direction::Out => {
            may_start(ledger, request.max)?;
            let room = request
                .max
                .map_or(u32::MAX, |max| max.saturating_sub(count));
            if room == 0 {
                return Err(Refusal::AtBound {
                    count,
                    bound: request.max.unwrap_or(u32::MAX),
                });
            }
            let granted = request.step.min(room);
            (granted, count + granted)
        }
        Direction::In => {
            if ledger.in_cooling {
                return Err(Refusal::CoolingDown(Direction::In));
            }
            let room = count.saturating_sub(request.min);
            if room == 0 {
                return Err(Refusal::AtBound {
                    count,
                    bound: request.min,
                });
            }
            let granted = request.step.min(room);
            (granted, count - granted)
        }
    };
    Ok(Claim {
        count: granted,
        intent: Intent {
            node: request.node.to_owned(),
            direction: request.direction,
            count_after,
        },
        start_out_cooldown: cooldown_out && request.direction == Direction::Out,
        start_in_cooldown: cooldown_in,
        target: None,
    })
}

/// What an agent asks of a target-tracking decision: the count it wants, and its own share
/// of the way there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRequest<'a> {
    pub node: &'a str,
    pub direction: Direction,
    /// The count the agent's view calls for (before the bounds).
    pub desired: u32,
    /// Running instances in the cluster as the agent sees them (discovery records).
    pub observed: u32,
    /// How many this agent can start (scale-out: free slots here) or stop (scale-in: its
    /// instances, less a base service's last one) now.
    pub room_here: u32,
    pub min: u32,
    pub max: Option<u32>,
}

/// Decides what a target-tracking decision may claim given `ledger`: the target (clamped to
/// the bounds) for every agent to fill, and this agent's share of it. Unlike a step, a
/// scale-out decision does not start the scale-in cooldown: a scale-in is held by the
/// rule's stabilization window instead, so a scale-out does not make the service drift up.
pub fn evaluate_target(
    request: &TargetRequest<'_>,
    ledger: &Ledger,
    cooldown_out: bool,
    cooldown_in: bool,
) -> Result<Claim, Refusal> {
    not_rolling_out(ledger)?;
    let count = effective_count(request.observed, ledger.intent.as_ref());
    let max = request.max.unwrap_or(u32::MAX);
    let desired = request.desired.clamp(request.min, max.max(request.min));
    let (own, count_after) = match request.direction {
        Direction::Out => {
            may_start(ledger, request.max)?;
            if count >= max {
                return Err(Refusal::AtBound { count, bound: max });
            }
            if desired <= count {
                return Err(Refusal::AtTarget { count, desired });
            }
            let own = (desired - count).min(request.room_here);
            (own, count + own)
        }
        Direction::In => {
            if ledger.in_cooling {
                return Err(Refusal::CoolingDown(Direction::In));
            }
            if count <= request.min {
                return Err(Refusal::AtBound {
                    count,
                    bound: request.min,
                });
            }
            if desired >= count {
                return Err(Refusal::AtTarget { count, desired });
            }
            let own = (count - desired).min(request.room_here);
            (own, count - own)
        }
    };
    Ok(Claim {
        count: own,
        intent: Intent {
            node: request.node.to_owned(),
            direction: request.direction,
            count_after,
        },
        start_out_cooldown: cooldown_out && request.direction == Direction::Out,
        start_in_cooldown: cooldown_in && request.direction == Direction::In,
        target: Some(Target {
            node: request.node.to_owned(),
            direction: request.direction,
            desired,
        }),
    })
}

/// This agent's share of a standing target: as many starts as it has room for (or stops as
/// it has instances), up to what the target still lacks after the settling intent. Claimed
/// like a repair (no cooldown), so agents filling at once never overshoot the target. `None`
/// when there is no target, it is reached, or this agent cannot help.
pub fn fill_claim(node: &str, observed: u32, room_here: u32, ledger: &Ledger) -> Option<Claim> {
    let target = ledger.target.as_ref()?;
    if target.direction == Direction::In && ledger.rollout_step.is_some() {
        return None;
    }
    let count = effective_count(observed, ledger.intent.as_ref());
    let (own, count_after) = match target.direction {
        Direction::Out => {
            let own = target.desired.saturating_sub(count).min(room_here);
            (own, count + own)
        }
        Direction::In => {
            let own = count.saturating_sub(target.desired).min(room_here);
            (own, count - own)
        }
    };
    (own > 0).then(|| Claim {
        count: own,
        intent: Intent {
            node: node.to_owned(),
            direction: target.direction,
            count_after,
        },
        start_out_cooldown: false,
        start_in_cooldown: false,
        target: None,
    })
}

/// A start that restores `min` (a service below its minimum, e.g. after a node was lost):
/// claimed through the same ledger so that the agents noticing it at once start one
/// instance in all, not one each; cooldowns neither block nor start (restoring the floor
/// is not a scaling step). `None` when the floor already holds.
pub fn floor_claim(node: &str, observed: u32, min: u32, ledger: &Ledger) -> Option<Claim> {
    if ledger.rollout_step.as_ref().is_some_and(|s| s.stop_first) {
        // The step itself starts what it stopped.
        return None;
    }
    let count = effective_count(observed, ledger.intent.as_ref());
    (count < min).then(|| Claim {
        count: 1,
        intent: Intent {
            node: node.to_owned(),
            direction: Direction::Out,
            count_after: count + 1,
        },
        start_out_cooldown: false,
        start_in_cooldown: false,
        target: None,
    })
}

/// A drain's move of one instance off the draining `node`: a scale-out target one above the
/// count, for the other agents to fill (a draining node has no room, so its own share is
/// none). Claimed like a repair: no cooldown needed or started, compared on the last
/// claim's revision. `None` while another agent's target or intent stands, or a rollout
/// step (one move at a time, and never over another decision), and at `max` (no room above
/// it: the drain then stops first, see [`drain_stop_claim`]). This node's own reached
/// target (the one its last stop left) does not hold it back.
pub fn drain_move_claim(
    node: &str,
    observed: u32,
    max: Option<u32>,
    ledger: &Ledger,
) -> Option<Claim> {
    let count = effective_count(observed, ledger.intent.as_ref());
    let foreign_target = ledger
        .target
        .as_ref()
        .is_some_and(|t| t.node != node || t.desired > count);
    let foreign_intent = ledger.intent.as_ref().is_some_and(|i| i.node != node);
    if foreign_target || foreign_intent || ledger.rollout_step.is_some() {
        return None;
    }
    if max.is_some_and(|max| count >= max) {
        return None;
    }
    Some(Claim {
        count: 0,
        intent: Intent {
            node: node.to_owned(),
            direction: Direction::Out,
            count_after: count,
        },
        start_out_cooldown: false,
        start_in_cooldown: false,
        target: Some(Target {
            node: node.to_owned(),
            direction: Direction::Out,
            desired: count + 1,
        }),
    })
}

/// A drain's stop of one instance on the draining `node`, once its replacement is in
/// discovery: the count read (`observed`, discovery itself, not an intent's promise)
/// reached `wait_for`, the count the move asked for. `wait_for` 0 is a stop-first move (the
/// service is at its maximum): it only keeps `min`. Never below `min`, never while another
/// agent's stop settles or a rollout step stands. The claim rewrites the move's target as
/// reached (`desired` = the count after the stop), so that no agent fills the gap the stop
/// leaves, as the move's target would have it do while it lives.
pub fn drain_stop_claim(
    node: &str,
    observed: u32,
    min: u32,
    wait_for: u32,
    ledger: &Ledger,
) -> Option<Claim> {
    let other_stopping = ledger
        .intent
        .as_ref()
        .is_some_and(|i| i.direction == Direction::In && i.node != node);
    let foreign_target = ledger.target.as_ref().is_some_and(|t| t.node != node);
    if ledger.rollout_step.is_some() || other_stopping || foreign_target {
        return None;
    }
    let count = effective_count(observed, ledger.intent.as_ref());
    (observed >= wait_for && count > min && count > 0).then(|| Claim {
        count: 1,
        intent: Intent {
            node: node.to_owned(),
            direction: Direction::In,
            count_after: count - 1,
        },
        start_out_cooldown: false,
        start_in_cooldown: false,
        target: Some(Target {
            node: node.to_owned(),
            direction: Direction::Out,
            desired: count - 1,
        }),
    })
}

/// A stop that brings a service back under `max` when the cluster holds more (a partition
/// healed: both sides scaled while they could not see each other's instances). Claimed
/// like the floor, one instance per claim, so the agents noticing it at once do not all
/// stop one.
pub fn ceiling_claim(
    node: &str,
    observed: u32,
    max: Option<u32>,
    ledger: &Ledger,
) -> Option<Claim> {
    let max = max?;
    if ledger.rollout_step.is_some() {
        // Its new instances are above the count only until it stops the old ones.
        return None;
    }
    let count = effective_count(observed, ledger.intent.as_ref());
    (count > max).then(|| Claim {
        count: 1,
        intent: Intent {
            node: node.to_owned(),
            direction: Direction::In,
            count_after: count - 1,
        },
        start_out_cooldown: false,
        start_in_cooldown: false,
        target: None,
    })
}

/// How long a claim's intent stands, in seconds: two loops (at least 3 s) for a start,
/// by when the new instance is in discovery; for a stop, also at least the service's
/// StopTimeout and a loop more: the stopped instance leaves discovery first and drains
/// until then, and while the intent stands no agent starts one in its place
/// ([`Refusal::StopSettling`]).
pub fn settle_secs(loop_secs: u64, direction: Direction, stop_timeout_secs: u64) -> i64 {
    let starts = (2 * loop_secs).max(3);
    let draining = match direction {
        Direction::In => stop_timeout_secs + loop_secs + 1,
        Direction::Out => 0,
    };
    starts.max(draining) as i64
}

/// Whether a rollout step may be claimed on `ledger`: not while another step stands, nor
/// while a scaling claim's intent settles (its instances are not all counted yet, and a
/// scale-in's may still drain). The claim itself compares `last-claim` like any other.
pub fn may_step(ledger: &Ledger) -> Result<(), String> {
    if let Some(step) = &ledger.rollout_step {
        return Err(format!(
            "{} is replacing instances (a rollout step)",
            step.node
        ));
    }
    if let Some(intent) = &ledger.intent {
        return Err(format!(
            "a scaling step by {} is settling (its instances are not all counted yet)",
            intent.node
        ));
    }
    Ok(())
}

/// How long a rollout step's claim stands, in seconds: the time its new instances have to
/// become ready, the time they are watched, the old ones' stop and two loops. A step that
/// runs longer (an agent that died mid-step) frees the ledger when its lease expires.
pub fn step_secs(
    ready_timeout_secs: u64,
    monitor_secs: u64,
    stop_timeout_secs: u64,
    loop_secs: u64,
) -> i64 {
    (ready_timeout_secs + monitor_secs + stop_timeout_secs + 2 * loop_secs).max(3) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rolling(node: &str) -> Ledger {
        Ledger {
            rollout_step: Some(RolloutStep {
                node: node.into(),
                version: "v2".into(),
                count: 1,
                stop_first: false,
            }),
            ..Ledger::default()
        }
    }

    #[test]
    fn a_rollout_step_holds_scaling_steps_scale_in_fills_and_ceilings_back() {
        let ledger = rolling("n2");
        for direction in [Direction::Out, Direction::In] {
            assert_eq!(
                evaluate(&request(direction, 1, 2), &ledger, true, true),
                Err(Refusal::RollingOut { node: "n2".into() })
            );
        }
        let target = |direction| TargetRequest {
            node: "n1",
            direction,
            desired: 3,
            observed: 2,
            room_here: 2,
            min: 1,
            max: Some(8),
        };
        assert!(evaluate_target(&target(Direction::Out), &ledger, true, true).is_err());
        assert_eq!(ceiling_claim("n1", 6, Some(4), &ledger), None);
        let shrinking = Ledger {
            target: Some(Target {
                node: "n3".into(),
                direction: Direction::In,
                desired: 1,
            }),
            ..rolling("n2")
        };
        assert_eq!(fill_claim("n1", 3, 3, &shrinking), None);
        // Starts that restore the floor go ahead: they only add; not during a stop-first
        // step, which is short on purpose.
        assert!(floor_claim("n1", 0, 1, &ledger).is_some());
        let mut stop_first = rolling("n2");
        if let Some(step) = &mut stop_first.rollout_step {
            step.stop_first = true;
        }
        assert_eq!(floor_claim("n1", 0, 1, &stop_first), None);
        assert_eq!(
            Refusal::RollingOut { node: "n2".into() }.to_string(),
            "n2 is replacing instances of this service (a rollout step)"
        );
    }

    #[test]
    fn a_rollout_step_waits_for_another_step_and_a_settling_claim() {
        assert_eq!(may_step(&Ledger::default()), Ok(()));
        assert!(may_step(&rolling("n2")).is_err());
        let settling = Ledger {
            intent: Some(Intent {
                node: "n3".into(),
                direction: Direction::In,
                count_after: 2,
            }),
            ..Ledger::default()
        };
        let why = may_step(&settling).expect_err("settling");
        assert!(why.contains("n3"), "{why}");
        assert_eq!(step_secs(60, 5, 10, 2), 79);
    }

    fn request(direction: Direction, step: u32, observed: u32) -> Request<'static> {
        Request {
            node: "n1",
            direction,
            step,
            observed,
            min: 1,
            max: Some(4),
        }
    }

    #[test]
    fn a_free_ledger_grants_the_step_within_bounds() {
        let claim = evaluate(
            &request(Direction::Out, 2, 1),
            &Ledger::default(),
            true,
            true,
        )
        .expect("granted");
        assert_eq!(claim.count, 2);
        assert_eq!(claim.intent.count_after, 3);
        assert!(claim.start_out_cooldown && claim.start_in_cooldown);
    }

    #[test]
    fn steps_are_clamped_to_max_and_min() {
        let out = evaluate(
            &request(Direction::Out, 3, 3),
            &Ledger::default(),
            false,
            false,
        )
        .expect("granted");
        assert_eq!((out.count, out.intent.count_after), (1, 4));
        let r#in = evaluate(
            &request(Direction::In, 3, 2),
            &Ledger::default(),
            false,
            false,
        )
        .expect("granted");
        assert_eq!((r#in.count, r#in.intent.count_after), (1, 1));
        assert!(!out.start_out_cooldown && !r#in.start_in_cooldown);
    }

    #[test]
    fn bounds_refuse_when_no_room_is_left() {
        let at_max = evaluate(
            &request(Direction::Out, 1, 4),
            &Ledger::default(),
            false,
            false,
        );
        assert_eq!(at_max, Err(Refusal::AtBound { count: 4, bound: 4 }));
        let at_min = evaluate(
            &request(Direction::In, 1, 1),
            &Ledger::default(),
            false,
            false,
        );
        assert_eq!(at_min, Err(Refusal::AtBound { count: 1, bound: 1 }));
    }

    #[test]
    fn cooldowns_refuse_their_direction_only() {
        let ledger = Ledger {
            out_cooling: true,
            ..Ledger::default()
        };
        assert_eq!(
            evaluate(&request(Direction::Out, 1, 2), &ledger, true, true),
            Err(Refusal::CoolingDown(Direction::Out))
        );
        assert!(evaluate(&request(Direction::In, 1, 2), &ledger, true, true).is_ok());
        let ledger = Ledger {
            in_cooling: true,
            ..Ledger::default()
        };
        assert_eq!(
            evaluate(&request(Direction::In, 1, 2), &ledger, true, true),
            Err(Refusal::CoolingDown(Direction::In))
        );
    }

    #[test]
    fn a_stop_settles_until_its_instance_has_drained() {
        assert_eq!(settle_secs(1, Direction::Out, 30), 3);
        assert_eq!(settle_secs(3, Direction::Out, 30), 6);
        assert_eq!(settle_secs(3, Direction::In, 2), 6);
        assert_eq!(settle_secs(1, Direction::In, 10), 12);
    }

    #[test]
    fn a_scale_out_waits_for_a_settling_stop_under_a_max() {
        // n2 scaled in from 4 to 3: its instance left discovery but may still be draining.
        let ledger = Ledger {
            intent: Some(Intent {
                node: "n2".into(),
                direction: Direction::In,
                count_after: 3,
            }),
            revision: 9,
            ..Ledger::default()
        };
        assert_eq!(
            evaluate(&request(Direction::Out, 1, 3), &ledger, false, false),
            Err(Refusal::StopSettling)
        );
        let unbounded = Request {
            max: None,
            ..request(Direction::Out, 1, 3)
        };
        assert!(evaluate(&unbounded, &ledger, false, false).is_ok());
        // Scaling in further is still judged by the count the stop leads to.
        assert!(evaluate(&request(Direction::In, 1, 3), &ledger, false, false).is_ok());
    }

    #[test]
    fn the_floor_is_claimed_one_instance_at_a_time() {
        let free = Ledger::default();
        let claim = floor_claim("n1", 0, 2, &free).expect("below min");
        assert_eq!((claim.count, claim.intent.count_after), (1, 1));
        assert!(!claim.start_out_cooldown && !claim.start_in_cooldown);
        assert_eq!(floor_claim("n1", 2, 2, &free), None);
        let settling = Ledger {
            intent: Some(claim.intent.clone()),
            revision: 3,
            ..Ledger::default()
        };
        // Another agent still sees 0 in discovery, but the first claim is settling.
        assert_eq!(floor_claim("n2", 0, 1, &settling), None);
        assert!(floor_claim("n2", 0, 2, &settling).is_some());
    }

    #[test]
    fn above_max_one_stop_is_claimed_at_a_time() {
        let free = Ledger::default();
        let claim = ceiling_claim("n1", 6, Some(4), &free).expect("above max");
        assert_eq!((claim.count, claim.intent.count_after), (1, 5));
        assert_eq!(claim.intent.direction, Direction::In);
        assert_eq!(ceiling_claim("n1", 4, Some(4), &free), None);
        assert_eq!(ceiling_claim("n1", 9, None, &free), None);
        let settling = Ledger {
            intent: Some(claim.intent),
            revision: 5,
            ..Ledger::default()
        };
        // Discovery still shows 6; the claim already leads to 5.
        assert_eq!(ceiling_claim("n2", 6, Some(5), &settling), None);
    }

    #[test]
    fn a_settling_intent_counts_instances_not_yet_in_discovery() {
        let ledger = Ledger {
            intent: Some(Intent {
                node: "n2".into(),
                direction: Direction::Out,
                count_after: 4,
            }),
            revision: 7,
            ..Ledger::default()
        };
        // Discovery still shows 2, but n2 claimed the way to 4: nothing is left.
        assert_eq!(
            evaluate(&request(Direction::Out, 1, 2), &ledger, false, false),
            Err(Refusal::AtBound { count: 4, bound: 4 })
        );
        assert_eq!(effective_count(5, ledger.intent.as_ref()), 5);
        let stopping = Intent {
            node: "n2".into(),
            direction: Direction::In,
            count_after: 1,
        };
        assert_eq!(effective_count(3, Some(&stopping)), 1);
    }

    #[test]
    fn a_drain_moves_one_instance_at_a_time_and_stops_only_once_its_replacement_is_counted() {
        let free = Ledger::default();
        let moved = drain_move_claim("n1", 3, Some(5), &free).expect("a move");
        assert_eq!(moved.count, 0, "the draining node starts nothing");
        assert_eq!(
            moved.target,
            Some(Target {
                node: "n1".to_owned(),
                direction: Direction::Out,
                desired: 4,
            })
        );
        assert!(!moved.start_out_cooldown && !moved.start_in_cooldown);
        // One move at a time (its target unfilled), never over another agent's decision
        // or claim, never above max.
        let with_target = Ledger {
            target: moved.target.clone(),
            ..Ledger::default()
        };
        assert_eq!(drain_move_claim("n1", 3, Some(5), &with_target), None);
        let foreign = |direction| Ledger {
            target: Some(Target {
                node: "n2".to_owned(),
                direction,
                desired: 2,
            }),
            ..Ledger::default()
        };
        assert_eq!(
            drain_move_claim("n1", 3, Some(5), &foreign(Direction::In)),
            None
        );
        let settling = Ledger {
            intent: Some(Intent {
                node: "n2".to_owned(),
                direction: Direction::Out,
                count_after: 4,
            }),
            ..Ledger::default()
        };
        assert_eq!(drain_move_claim("n1", 3, Some(5), &settling), None);
        assert_eq!(drain_move_claim("n1", 5, Some(5), &free), None);

        // The filler's start settles (its intent promises 4): not counted until discovery is.
        let filling = Ledger {
            intent: Some(Intent {
                node: "n2".to_owned(),
                direction: Direction::Out,
                count_after: 4,
            }),
            ..Ledger::default()
        };
        assert_eq!(drain_stop_claim("n1", 3, 1, 4, &filling), None);
        let stop = drain_stop_claim("n1", 4, 1, 4, &filling).expect("replacement counted");
        assert_eq!((stop.count, stop.intent.direction), (1, Direction::In));
        assert_eq!(stop.intent.count_after, 3);
        // The stop leaves the move's target reached: no fill of the gap it makes.
        let after_stop = Ledger {
            intent: Some(stop.intent.clone()),
            target: stop.target.clone(),
            ..Ledger::default()
        };
        assert_eq!(fill_claim("n2", 4, 5, &after_stop), None);
        assert_eq!(fill_claim("n2", 3, 5, &after_stop), None);
        // ... and the next move goes ahead from it (its own reached target, its own stop).
        let next = drain_move_claim("n1", 4, Some(5), &after_stop).expect("next move");
        assert_eq!(next.target.map(|t| t.desired), Some(4));
        // Another agent's stop settling: wait.
        let other_stop = Ledger {
            intent: Some(Intent {
                node: "n2".to_owned(),
                direction: Direction::In,
                count_after: 3,
            }),
            ..Ledger::default()
        };
        assert_eq!(drain_stop_claim("n1", 4, 1, 4, &other_stop), None);
        // Stop-first at max keeps min.
        assert!(drain_stop_claim("n1", 2, 1, 0, &free).is_some());
        assert_eq!(drain_stop_claim("n1", 1, 1, 0, &free), None);
    }
}
