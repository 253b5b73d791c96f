//! The exclusive part of one agent's tick, as a pure function of what it observed: which
//! claims it makes on the scaling ledger, and what a won claim makes it do on its node.
//!
//! The daemon (`runtime/autonomic/`) and the simulator (`sim/`) both drive this module,
//! so the rules below exist once: neither calls the planner ([`crate::mape::plan`]) or the
//! ledger rules of [`crate::coordination`] on its own.
//!
//! What the agent observes of a service is a [`ServiceObservation`]
//! ([`ServiceObservation::new`]: the discovery count, at least what runs here; a base
//! service's last instance is not removable). For every service, in this order:
//!
//! 1. repairs judged from the observation alone ([`repairs`], with the floor [`floor`]
//!    sets: MinInstances, at least 1 for a lost node's base service, none while discovery
//!    settles or the loop does not repair): below it with room here, a start
//!    ([`Want::Floor`]); above MaxInstances with an instance here, a stop
//!    ([`Want::Ceiling`]); a standing target-tracking decision, this agent's share of it
//!    ([`Want::Fill`]);
//! 2. the planner's decision and the claims it leads to ([`plan`], [`want_of`]): Gru's
//!    fixed step ([`Want::Step`]), a target-tracking decision ([`Want::Target`]), or the
//!    two halves of a swap ([`Want::Swap`]).
//!
//! Each want is claimed by a [`ClaimMachine`], which does no I/O itself: it says what it
//! needs next ([`ClaimIo`]), the caller does it (the daemon with etcd and its liveness
//! probe, the simulator with its fakes) and hands the answer back. The machine reads the
//! service's ledger, *then* its instance count (see [`crate::coordination`] for why in that
//! order, and why never from a count it could not read), lets [`decide`] say what to claim
//! or why not, asks whether a node in doubt still answers before a start that is not a
//! repair ([`withheld`]), writes the claim in one compare-revision transaction with
//! [`ttls`], and ends with a [`ClaimOutcome`]; only a won claim has an [`Effect`]:
//!
//! ```text
//!   observe ─► repairs / want_of ─► read ledger ─► read count ─► decide ─► [probe] ─► claim (txn) ─► won? ─► effect
//!                                                                  │           │                     │
//!                                                                  └─ refused ─┴─ withheld ◄──────────┘ lost: nothing
//! ```
//!
//! A list of wants (a repair, a fill, a decision's claims: a swap has two) is carried out by
//! an [`Execution`], also without I/O: each want claimed in order, and only when all were
//! won, the stops then the starts ([`Act`]). What wakes the loop says what it claims
//! ([`Wake`]: the period every repair and the planner, the ledger watch only fills). A lost
//! fill is tried again moments later, not at the next loop: [`FillRetry`] says after which
//! delay, and when to give up until the next loop.
//!
//! What the agent does on its own node (which containers a reconcile adopts or removes,
//! which discovery records it writes) is in [`local`].

pub mod headroom;
pub mod local;
pub mod ports;
pub mod rollout;
pub mod saturation;

use std::time::Duration;

use common::config::PolicyConfig;
use rand::{Rng, RngExt};

use crate::coordination::{
    self, Claim, Direction, Ledger, LedgerTtls, Refusal, Request, TargetRequest,
};
use crate::mape::{self, Action, Decision, PlanInput, PlannerState, ServiceSnapshot};

/// One service as this agent sees it when it considers claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceObservation {
    pub min: u32,
    pub max: Option<u32>,
    /// The cluster's running instances (discovery records), at least those running here.
    pub observed: u32,
    pub running_here: u32,
    /// Instances this agent may stop (a base service keeps its last one here).
    pub removable_here: u32,
    /// Instances this agent may start (free slots here).
    pub room_here: u32,
}

impl ServiceObservation {
    /// What an agent observes of a service from what it read: `discovered`, the cluster's
    /// count from the discovery records, is corrected up to what runs here (the records
    /// may lag this node's own starts); a base service of this node keeps its last
    /// instance here, so that one is not removable.
    pub fn new(
        min: u32,
        max: Option<u32>,
        discovered: u32,
        running_here: u32,
        base_service_here: bool,
        room_here: u32,
    ) -> Self {
        ServiceObservation {
            min,
            max,
            observed: discovered.max(running_here),
            running_here,
            removable_here: running_here.saturating_sub(u32::from(base_service_here)),
            room_here,
        }
    }
}

/// What an agent wants to claim for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// One start toward `min` (MinInstances, or 1 for a lost node's base service).
    Floor { min: u32 },
    /// One stop back under MaxInstances (a healed partition).
    Ceiling,
    /// This agent's share of the standing target-tracking decision.
    Fill,
    /// Gru's fixed step, from the planner.
    Step { direction: Direction, count: u32 },
    /// A target-tracking decision, from the planner: the count the cluster should reach.
    Target { direction: Direction, desired: u32 },
    /// One half of a swap: one instance in `direction` (the stop makes room for the start).
    Swap { direction: Direction },
    /// A draining node asks the others to start one instance of a service it runs
    /// (a target one above the count, `coordination::drain_move_claim`).
    DrainMove,
    /// A draining node stops one of its instances once the count reached `wait_for` (its
    /// replacement is in discovery; 0: stop first, the service is at its maximum).
    DrainStop { wait_for: u32 },
}

impl Want {
    /// What the action records say this want was for.
    pub fn label(self) -> &'static str {
        match self {
            Want::Floor { .. } => "min-instances",
            Want::Ceiling => "max-instances",
            Want::Fill => "fill",
            Want::Step {
                direction: Direction::Out,
                ..
            }
            | Want::Target {
                direction: Direction::Out,
                ..
            } => "scale-out",
            Want::Step { .. } | Want::Target { .. } => "scale-in",
            Want::Swap { .. } => "swap",
            Want::DrainMove | Want::DrainStop { .. } => "drain",
        }
    }

    /// What the agent's log says it claims.
    pub fn describe(self) -> &'static str {
        match self {
            Want::Floor { .. } => "a start to restore MinInstances",
            Want::Ceiling => "a stop to get back under MaxInstances",
            Want::Fill => "its share of a target-tracking decision",
            Want::Step { .. } => "a scaling step",
            Want::Target { .. } => "a target-tracking decision",
            Want::Swap { .. } => "half of a swap",
            Want::DrainMove => "a start elsewhere of an instance of this draining node",
            Want::DrainStop { .. } => "a stop of a drained instance whose replacement runs",
        }
    }

    /// Whether this want is a scaling decision (cooldowns apply), not a repair or a fill.
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            Want::Step { .. } | Want::Target { .. } | Want::Swap { .. }
        )
    }
}

/// The minimum a repair restores for a service ([`repairs`]' `floor`; 0 for no repair of
/// it): its MinInstances, and at least 1 for a base service of a node the cluster lost
/// (`orphaned_base`: it must keep an instance somewhere). None while discovery settles
/// after this node registered again (`settling`: the records may undercount, and a repair
/// from them could pass MaxInstances), nor while the loop does not repair (`repairing`:
/// the loop is inactive; which wake-up repairs is [`Wake::claims`]'s).
pub fn floor(min: u32, orphaned_base: bool, settling: bool, repairing: bool) -> u32 {
    if !repairing || settling {
        0
    } else if orphaned_base {
        min.max(1)
    } else {
        min
    }
}

/// Whether a claim waits because the discovery records may undercount the cluster's
/// instances (etcd lost the leases of nodes that still run: they register again and
/// republish moments later). A repair of MinInstances waits while this node's own lease is
/// gone (`own_lease_alive`: the others' are probably gone too), and any start that is
/// not such a repair (a fill, a step, a target, a swap's start) or a repair waits while a
/// node whose records vanished or came back lately still answers as itself
/// (`answering_in_doubt`; the daemon asks them, `runtime::liveness`). A lost node does not
/// answer, so its instances are repaired without delay. Stops never wait.
pub fn withheld(
    want: Want,
    direction: Direction,
    own_lease_alive: bool,
    answering_in_doubt: bool,
) -> bool {
    match (want, direction) {
        (Want::Floor { .. }, _) => !own_lease_alive || answering_in_doubt,
        (_, Direction::Out) => answering_in_doubt,
        (_, Direction::In) => false,
    }
}

/// The repairs and fills a service calls for, from the observation alone: the caller reads
/// the ledger only for these. `floor` is the minimum to restore (0 for none: the loop is
/// off); `target_standing` says whether the agent knows of a standing target (the ledger
/// watch).
pub fn repairs(observation: &ServiceObservation, floor: u32, target_standing: bool) -> Vec<Want> {
    let mut wants = Vec::new();
    if observation.observed < floor && observation.room_here > 0 {
        wants.push(Want::Floor { min: floor });
    }
    let above_max = observation
        .max
        .is_some_and(|max| observation.observed > max);
    if above_max && observation.running_here > 0 {
        wants.push(Want::Ceiling);
    }
    if target_standing {
        wants.push(Want::Fill);
    }
    wants
}

/// What woke the agent's loop, which says what it claims ([`Wake::claims`]) and whether
/// the planner runs ([`Wake::plans`]). The daemon's two wake-ups are two functions
/// (`keep_floor` with the loop, `fill_targets` on the ledger watch and a retry); the
/// simulator decides per agent and tick which one it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Its period (LoopTimeInterval), or fresh metrics that newly cross a threshold: every
    /// repair and fill [`repairs`] calls for, then the planner.
    Loop,
    /// The ledger watch (a target was set or changed) or a lost fill's retry: this
    /// agent's share of the standing targets only, without waiting for the loop.
    Targets,
}

impl Wake {
    /// Whether this wake-up claims `want` (one of [`repairs`]').
    pub fn claims(self, want: Want) -> bool {
        match self {
            Wake::Loop => true,
            Wake::Targets => want == Want::Fill,
        }
    }

    /// Whether this wake-up runs the planner.
    pub fn plans(self) -> bool {
        self == Wake::Loop
    }
}

/// One run of the planner, and the claims its decision leads to.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The decision, to be recorded whether or not it is carried out.
    pub decision: Decision,
    /// The planner's state after this decision (it moves on whether or not the claims are
    /// won: the agent's own cooldown runs).
    pub state: PlannerState,
    /// The claims the decision leads to, by service name, in the order they are claimed:
    /// none for no action or a dry run, one for a scale-out or scale-in ([`want_of`]), and
    /// for a swap the start's half ([`Want::Swap`] out) then the stop's (in). The caller
    /// acts only once every claim is won; a swap stops its instance before it starts the
    /// other (the stop makes room).
    pub wants: Vec<(String, Want)>,
}

/// Runs the planner ([`mape::plan`]) over `input` and says what its decision leads to.
/// Pure, like the planner: the same input, state and random sequence give the same result.
pub fn plan<R: Rng + ?Sized>(input: &PlanInput<'_>, state: &PlannerState, rng: &mut R) -> Planned {
    let (decision, state) = mape::plan(input, state, rng);
    let wants = if decision.is_executable() {
        wants_of(&decision.action, input.services, input.policy)
    } else {
        Vec::new()
    };
    Planned {
        decision,
        state,
        wants,
    }
}

/// The claims `action` leads to (see [`Planned::wants`]); none for a service the snapshots
/// do not hold.
fn wants_of(
    action: &Action,
    snapshots: &[ServiceSnapshot],
    cluster: &PolicyConfig,
) -> Vec<(String, Want)> {
    match action {
        Action::None => Vec::new(),
        Action::ScaleOut { service, .. } | Action::ScaleIn { service, .. } => snapshots
            .iter()
            .find(|s| &s.name == service)
            .and_then(|snapshot| want_of(action, snapshot, cluster))
            .map(|want| (service.clone(), want))
            .into_iter()
            .collect(),
        Action::Swap { stop, start } => vec![
            (
                start.clone(),
                Want::Swap {
                    direction: Direction::Out,
                },
            ),
            (
                stop.clone(),
                Want::Swap {
                    direction: Direction::In,
                },
            ),
        ],
    }
}

/// The claim a planner's decision leads to for `snapshot`'s service: a target when the
/// rule of that direction tracks one (the count the decision reaches from the count the
/// planner saw), else a step. `None` for no action and for swaps (two halves, see
/// [`plan`]).
pub fn want_of(
    action: &Action,
    snapshot: &ServiceSnapshot,
    cluster: &PolicyConfig,
) -> Option<Want> {
    let policy = snapshot.policy(cluster);
    let seen = snapshot.running_here.max(snapshot.cluster_instances);
    match action {
        Action::ScaleOut { count, .. } if policy.scaleout.tracks_target() => Some(Want::Target {
            direction: Direction::Out,
            desired: seen
                .saturating_add(snapshot.pending_here)
                .saturating_add(*count),
        }),
        Action::ScaleIn { count, .. } if policy.scalein.tracks_target() => Some(Want::Target {
            direction: Direction::In,
            desired: seen.saturating_sub(*count),
        }),
        Action::ScaleOut { count, .. } => Some(Want::Step {
            direction: Direction::Out,
            count: *count,
        }),
        Action::ScaleIn { count, .. } => Some(Want::Step {
            direction: Direction::In,
            count: *count,
        }),
        Action::None | Action::Swap { .. } => None,
    }
}

/// Why nothing is claimed for a repair or a fill: there is nothing left to do.
pub const NOTHING_TO_DO: Refusal = Refusal::AtTarget {
    count: 0,
    desired: 0,
};

/// What this agent may claim for `want`, given the ledger it read and the count it read
/// after it. A repair or fill with nothing left to do is [`NOTHING_TO_DO`].
pub fn decide(
    node: &str,
    want: Want,
    observation: &ServiceObservation,
    ledger: &Ledger,
    policy: &PolicyConfig,
) -> Result<Claim, Refusal> {
    let observed = observation.observed.max(observation.running_here);
    let (cooldown_out, cooldown_in) = (policy.cooldown_out_secs > 0, policy.cooldown_in_secs > 0);
    match want {
        Want::Floor { min } => {
            if observation.room_here == 0 {
                return Err(NOTHING_TO_DO);
            }
            coordination::floor_claim(node, observed, min, ledger).ok_or(NOTHING_TO_DO)
        }
        Want::Ceiling => {
            if observation.running_here == 0 {
                return Err(NOTHING_TO_DO);
            }
            coordination::ceiling_claim(node, observed, observation.max, ledger)
                .ok_or(NOTHING_TO_DO)
        }
        Want::Fill => {
            let room = match ledger.target.as_ref().map(|t| t.direction) {
                Some(Direction::Out) => observation.room_here,
                Some(Direction::In) => observation.removable_here,
                None => 0,
            };
            coordination::fill_claim(node, observed, room, ledger).ok_or(NOTHING_TO_DO)
        }
        Want::Step { direction, count } => {
            // A step is this agent's own: it can start as many as it has room for, and
            // stop as many as it runs (the planner's guards clamp it the same way).
            let own = match direction {
                Direction::Out => observation.room_here,
                Direction::In => observation.removable_here,
            };
            if count.min(own) == 0 {
                return Err(NOTHING_TO_DO);
            }
            step(
                node,
                direction,
                count.min(own),
                observed,
                observation,
                ledger,
                policy,
            )
        }
        Want::Swap { direction } => step(node, direction, 1, observed, observation, ledger, policy),
        Want::DrainMove => {
            coordination::drain_move_claim(node, observation.observed, observation.max, ledger)
                .ok_or(NOTHING_TO_DO)
        }
        Want::DrainStop { wait_for } => {
            if observation.running_here == 0 {
                return Err(NOTHING_TO_DO);
            }
            coordination::drain_stop_claim(
                node,
                observation.observed,
                observation.min,
                wait_for,
                ledger,
            )
            .ok_or(NOTHING_TO_DO)
        }
        Want::Target { direction, desired } => coordination::evaluate_target(
            &TargetRequest {
                node,
                direction,
                desired,
                observed,
                room_here: match direction {
                    Direction::Out => observation.room_here,
                    Direction::In => observation.removable_here,
                },
                min: observation.min,
                max: observation.max,
            },
            ledger,
            cooldown_out,
            cooldown_in,
        ),
    }
}

/// A fixed step of `count` instances, as the ledger allows it.
fn step(
    node: &str,
    direction: Direction,
    count: u32,
    observed: u32,
    observation: &ServiceObservation,
    ledger: &Ledger,
    policy: &PolicyConfig,
) -> Result<Claim, Refusal> {
    coordination::evaluate(
        &Request {
            node,
            direction,
            step: count,
            observed,
            min: observation.min,
            max: observation.max,
        },
        ledger,
        policy.cooldown_out_secs > 0,
        policy.cooldown_in_secs > 0,
    )
}

/// How long the records of a claim for `want` live: the intent settles for two loops (a
/// stop, also for its StopTimeout), cooldowns only for decisions, and a target stands for
/// its direction's cooldown and at least three loops (long enough for every agent's watch
/// and loop to fill it, short enough that a target nobody can fill does not linger).
pub fn ttls(
    want: Want,
    direction: Direction,
    policy: &PolicyConfig,
    loop_secs: u64,
    stop_timeout_secs: u64,
) -> LedgerTtls {
    let decision = want.is_decision();
    let cooldown = match direction {
        Direction::Out => policy.cooldown_out_secs,
        Direction::In => policy.cooldown_in_secs,
    };
    LedgerTtls {
        settle_secs: coordination::settle_secs(loop_secs, direction, stop_timeout_secs),
        cooldown_out_secs: if decision {
            policy.cooldown_out_secs as i64
        } else {
            0
        },
        cooldown_in_secs: if decision {
            policy.cooldown_in_secs as i64
        } else {
            0
        },
        target_secs: cooldown.max(3 * loop_secs).max(5) as i64,
    }
}

/// A fill that lost its race (another agent's claim changed the ledger first) is tried
/// again after a random delay between these two, not at the next loop: the agents with
/// room fill a target one claim after another, and waiting a loop between turns made a
/// decision larger than a few nodes' room take many loops. The randomness spreads the
/// retries so that most of them find the ledger settled.
pub const FILL_RETRY_DELAY_MIN: Duration = Duration::from_millis(10);
pub const FILL_RETRY_DELAY_MAX: Duration = Duration::from_millis(100);
/// The most retries of lost fills in a row; after them the fill waits for the next loop
/// (or the next target). A won fill, or a ledger with no target, starts the count again.
pub const MAX_FILL_RETRIES: u32 = 50;

/// The delay before retrying a lost fill: uniform in
/// [[`FILL_RETRY_DELAY_MIN`], [`FILL_RETRY_DELAY_MAX`]).
pub fn fill_retry_delay<R: Rng + ?Sized>(rng: &mut R) -> Duration {
    let (min, max) = (
        FILL_RETRY_DELAY_MIN.as_millis() as u64,
        FILL_RETRY_DELAY_MAX.as_millis() as u64,
    );
    Duration::from_millis(rng.random_range(min..max))
}

/// The retries of this agent's lost fills in a row, as a value: the caller tells it how
/// each fill ended and waits the delay it returns before trying again.
///
/// ```text
///   on_won / on_nothing_to_do ──► 0 in a row
///   on_lost ──► fewer than MAX_FILL_RETRIES in a row? one more, Some(random delay)
///                                                else None: the next loop tries again
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FillRetry {
    retries: u32,
}

impl FillRetry {
    /// Lost fills retried in a row.
    pub fn retries(self) -> u32 {
        self.retries
    }

    /// A fill was won: the count starts again.
    pub fn on_won(&mut self) {
        self.retries = 0;
    }

    /// A fill found nothing to do (the ledger has no target, or it is filled): the count
    /// starts again.
    pub fn on_nothing_to_do(&mut self) {
        self.retries = 0;
    }

    /// How a claim of `want` ended, as far as the retries go: a won fill, or a fill that
    /// found nothing to do, starts the count again. True when it was a fill that lost its
    /// race: the caller retries it ([`Self::on_lost`] says after which delay).
    pub fn on_claimed(&mut self, want: Want, outcome: &ClaimOutcome) -> bool {
        match outcome {
            ClaimOutcome::Won { .. } if want == Want::Fill => self.on_won(),
            ClaimOutcome::NoTarget => self.on_nothing_to_do(),
            ClaimOutcome::Refused(_) if want == Want::Fill => self.on_nothing_to_do(),
            ClaimOutcome::Lost => return want == Want::Fill,
            _ => {}
        }
        false
    }

    /// A fill lost its race: how long to wait before trying again ([`fill_retry_delay`]),
    /// or `None` after [`MAX_FILL_RETRIES`] in a row. Draws from `rng` only for a retry.
    pub fn on_lost<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Duration> {
        if self.retries >= MAX_FILL_RETRIES {
            return None;
        }
        self.retries += 1;
        Some(fill_retry_delay(rng))
    }
}

/// What a won claim makes this agent do on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Start(u32),
    Stop(u32),
    /// A target-tracking decision whose share here is 0: the other agents fill it.
    Nothing,
}

/// The effect of a won claim.
pub fn effect(claim: &Claim) -> Effect {
    match (claim.intent.direction, claim.count) {
        (_, 0) => Effect::Nothing,
        (Direction::Out, n) => Effect::Start(n),
        (Direction::In, n) => Effect::Stop(n),
    }
}

/// One start or stop on this agent's node, once every claim it needs was won.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub service: String,
    /// The want whose won claim this comes from.
    pub want: Want,
    pub effect: Effect,
    /// The won claim it comes from.
    pub claim: Claim,
    /// A stop that a start of the same execution follows (a swap's): the caller sees what
    /// runs after it, before that start.
    pub makes_room: bool,
}

/// What an [`Execution`] needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionIo {
    /// Claim `want` for `service` (a [`ClaimMachine`]): [`Execution::on_claimed`].
    Claim { service: String, want: Want },
    /// Start or stop on this node: [`Execution::on_acted`].
    Act(Act),
    /// Nothing more.
    Done,
}

/// Carrying out a list of wants (a repair, a fill, or a decision's [`Planned::wants`]) as a
/// machine without I/O. The rules: the wants are claimed in order, each after the one
/// before was won; nothing acts unless every claim was won (a swap's start without its
/// stop could pass the node's room, its stop without its start would only shrink the
/// cluster); then the stops come before the starts (a stop makes room), each as its won
/// claim's [`effect`] says.
///
/// ```text
///   Claim(1) ─won─► … ─► Claim(n) ─won─► Act(stops…) ─► Act(starts…) ─► Done
///      └──────── any not won ───────────────────────────────────────────► Done
/// ```
#[derive(Debug, Clone)]
pub struct Execution {
    wants: Vec<(String, Want)>,
    won: usize,
    /// The won claims, in order.
    claims: Vec<Claim>,
    refused: bool,
    acts: Vec<Act>,
    acted: usize,
}

impl Execution {
    pub fn new(wants: Vec<(String, Want)>) -> Execution {
        Execution {
            wants,
            won: 0,
            claims: Vec::new(),
            refused: false,
            acts: Vec::new(),
            acted: 0,
        }
    }

    /// The claims won, in order (all of them when every want was won).
    pub fn into_won(self) -> Vec<Claim> {
        self.claims
    }

    /// What the caller must do next.
    pub fn next(&self) -> ExecutionIo {
        if self.refused {
            return ExecutionIo::Done;
        }
        if let Some((service, want)) = self.wants.get(self.won) {
            return ExecutionIo::Claim {
                service: service.clone(),
                want: *want,
            };
        }
        match self.acts.get(self.acted) {
            Some(act) => ExecutionIo::Act(act.clone()),
            None => ExecutionIo::Done,
        }
    }

    /// How the claim asked for ended: the won claim, or `None` (refused, withheld, lost,
    /// or the store failed): then nothing acts.
    pub fn on_claimed(&mut self, claim: Option<Claim>) {
        let Some((service, want)) = self.wants.get(self.won).cloned() else {
            return;
        };
        if self.refused {
            return;
        }
        let Some(claim) = claim else {
            self.refused = true;
            return;
        };
        self.won += 1;
        self.claims.push(claim.clone());
        let effect = effect(&claim);
        if effect != Effect::Nothing {
            self.acts.push(Act {
                service,
                want,
                effect,
                claim,
                makes_room: false,
            });
        }
        if self.won == self.wants.len() {
            // Stops first: a stop makes room for a start. Stable, so in claim order.
            self.acts
                .sort_by_key(|act| !matches!(act.effect, Effect::Stop(_)));
            let starts = self
                .acts
                .iter()
                .any(|act| matches!(act.effect, Effect::Start(_)));
            for act in &mut self.acts {
                act.makes_room = starts && matches!(act.effect, Effect::Stop(_));
            }
        }
    }

    /// The act asked for was done (whatever its result: Docker's answer is for the record
    /// and the next reconcile).
    pub fn on_acted(&mut self) {
        if self.won == self.wants.len() && self.acted < self.acts.len() {
            self.acted += 1;
        }
    }
}

/// One claim through the ledger as a machine without I/O: the caller asks [`Self::next`]
/// what it needs, does that I/O (the daemon with etcd and its liveness probe, the
/// simulator with its fakes) and hands the answer back, until the machine is done. The
/// order is the rule: a repair of MinInstances first proves that discovery does not
/// undercount (this node's lease lives, no node in doubt answers: [`withheld`]), the
/// ledger is read before the count (see `crate::coordination`), nothing is claimed from a
/// ledger or count that could not be read, any other start waits while a node in doubt
/// answers, and the effect comes only from a won write.
///
/// ```text
///   a repair of MinInstances:  LeaseAlive ─alive─► Probe ─silent─┐
///                                  │ gone           │ answering  │
///                                  ▼                ▼            │
///                               Withheld         Withheld        │
///   any other want: ─────────────────────────────────────────────┤
///                                                                ▼
///   ReadLedger ─ledger─► ReadCount ─observation─► decide ─► [Probe ─answer─►] Write ─won─► Won(effect)
///       │ error / a fill     │ error                 │ refused     │ answering      │ lost / error
///       ▼ without target     ▼                       ▼             ▼                ▼
///   StoreError / NoTarget  StoreError             Refused       Withheld       Lost / StoreError
/// ```
/// (The probe after `decide` is for starts that are not a repair of MinInstances.)
#[derive(Debug, Clone)]
pub struct ClaimMachine {
    node: String,
    want: Want,
    policy: PolicyConfig,
    loop_secs: u64,
    stop_timeout_secs: u64,
    state: ClaimState,
}

#[derive(Debug, Clone)]
enum ClaimState {
    /// A repair of MinInstances: does this node's own lease live?
    LeaseAlive,
    /// A repair of MinInstances: does a node in doubt answer?
    ProveAlive,
    ReadLedger,
    ReadCount(Ledger),
    /// The claim decided, and the ledger revision its write compares.
    Probe(i64, Claim),
    Write(i64, Claim),
    Done(ClaimOutcome),
}

/// What a [`ClaimMachine`] needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimIo {
    /// Ask etcd whether this node's own lease still exists (only before a repair of
    /// MinInstances): [`ClaimMachine::on_lease`].
    LeaseAlive,
    /// Read the service's ledger: [`ClaimMachine::on_ledger`].
    ReadLedger,
    /// Read the service's instance count (after the ledger) and observe the service with
    /// it: [`ClaimMachine::on_observation`].
    ReadCount,
    /// Ask the nodes in doubt whether they still run (before a repair of MinInstances, or
    /// before any other start once it is decided): [`ClaimMachine::on_probe`].
    Probe,
    /// Write `claim` in one transaction compared on `revision`, its records living
    /// `ttls`: [`ClaimMachine::on_written`].
    Write {
        revision: i64,
        claim: Claim,
        ttls: LedgerTtls,
    },
    /// Nothing more: the outcome is [`ClaimMachine::outcome`].
    Done,
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// Won: this agent does `effect` on its node.
    Won { claim: Claim, effect: Effect },
    /// The store could not be read or written (`what` failed): no exclusive step then.
    StoreError { what: &'static str, error: String },
    /// A fill found no standing target (the watch's news was stale).
    NoTarget,
    /// The ledger and the count allow nothing (cooling down, at a bound, nothing to do).
    Refused(Refusal),
    /// A node whose records vanished still answers (or, before a repair of MinInstances,
    /// this node's own lease is gone): instances may be missing from the count.
    Withheld,
    /// Another agent's claim came first.
    Lost,
}

impl ClaimMachine {
    /// A claim of `want` by `node` under `policy` (the service's), whose loop runs every
    /// `loop_secs` and whose instances stop within `stop_timeout_secs`.
    pub fn new(
        node: &str,
        want: Want,
        policy: &PolicyConfig,
        loop_secs: u64,
        stop_timeout_secs: u64,
    ) -> ClaimMachine {
        ClaimMachine {
            node: node.to_owned(),
            want,
            policy: policy.clone(),
            loop_secs,
            stop_timeout_secs,
            state: match want {
                Want::Floor { .. } => ClaimState::LeaseAlive,
                _ => ClaimState::ReadLedger,
            },
        }
    }

    pub fn want(&self) -> Want {
        self.want
    }

    /// What the caller must do next.
    pub fn next(&self) -> ClaimIo {
        match &self.state {
            ClaimState::LeaseAlive => ClaimIo::LeaseAlive,
            ClaimState::ReadLedger => ClaimIo::ReadLedger,
            ClaimState::ReadCount(_) => ClaimIo::ReadCount,
            ClaimState::ProveAlive | ClaimState::Probe(..) => ClaimIo::Probe,
            ClaimState::Write(revision, claim) => ClaimIo::Write {
                revision: *revision,
                claim: claim.clone(),
                ttls: ttls(
                    self.want,
                    claim.intent.direction,
                    &self.policy,
                    self.loop_secs,
                    self.stop_timeout_secs,
                ),
            },
            ClaimState::Done(_) => ClaimIo::Done,
        }
    }

    /// The ledger read (or why it could not be).
    pub fn on_ledger(&mut self, ledger: Result<Ledger, String>) {
        if !matches!(self.state, ClaimState::ReadLedger) {
            return;
        }
        self.state = match ledger {
            Err(error) => ClaimState::Done(ClaimOutcome::StoreError {
                what: "read the scaling ledger",
                error,
            }),
            Ok(ledger) if self.want == Want::Fill && ledger.target.is_none() => {
                ClaimState::Done(ClaimOutcome::NoTarget)
            }
            Ok(ledger) => ClaimState::ReadCount(ledger),
        };
    }

    /// The service as observed with the count read after the ledger (or why the count
    /// could not be read): the machine decides.
    pub fn on_observation(&mut self, observation: Result<ServiceObservation, String>) {
        let ClaimState::ReadCount(ledger) = &self.state else {
            return;
        };
        self.state = match observation {
            Err(error) => ClaimState::Done(ClaimOutcome::StoreError {
                what: "read the cluster's instances",
                error,
            }),
            Ok(observation) => {
                match decide(&self.node, self.want, &observation, ledger, &self.policy) {
                    Err(refusal) => ClaimState::Done(ClaimOutcome::Refused(refusal)),
                    Ok(claim)
                        if claim.intent.direction == Direction::Out
                            && !matches!(self.want, Want::Floor { .. }) =>
                    {
                        ClaimState::Probe(ledger.revision, claim)
                    }
                    Ok(claim) => ClaimState::Write(ledger.revision, claim),
                }
            }
        };
    }

    /// Whether this node's own lease still exists (an error reads as gone).
    pub fn on_lease(&mut self, alive: bool) {
        if !matches!(self.state, ClaimState::LeaseAlive) {
            return;
        }
        self.state = if alive {
            ClaimState::ProveAlive
        } else {
            ClaimState::Done(ClaimOutcome::Withheld)
        };
    }

    /// Whether a node in doubt answered the probe.
    pub fn on_probe(&mut self, answering_in_doubt: bool) {
        self.state = match &self.state {
            ClaimState::ProveAlive
                if withheld(self.want, Direction::Out, true, answering_in_doubt) =>
            {
                ClaimState::Done(ClaimOutcome::Withheld)
            }
            ClaimState::ProveAlive => ClaimState::ReadLedger,
            ClaimState::Probe(revision, claim) => {
                if withheld(self.want, claim.intent.direction, true, answering_in_doubt) {
                    ClaimState::Done(ClaimOutcome::Withheld)
                } else {
                    ClaimState::Write(*revision, claim.clone())
                }
            }
            _ => return,
        };
    }

    /// Whether the write won (or why it failed).
    pub fn on_written(&mut self, won: Result<bool, String>) {
        let ClaimState::Write(_, claim) = &self.state else {
            return;
        };
        self.state = ClaimState::Done(match won {
            Ok(true) => ClaimOutcome::Won {
                effect: effect(claim),
                claim: claim.clone(),
            },
            Ok(false) => ClaimOutcome::Lost,
            Err(error) => ClaimOutcome::StoreError {
                what: "claim the step in etcd",
                error,
            },
        });
    }

    /// How the claim ended; `None` while it is not done.
    pub fn outcome(&self) -> Option<&ClaimOutcome> {
        match &self.state {
            ClaimState::Done(outcome) => Some(outcome),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::{Intent, Target};

    #[test]
    fn only_starts_wait_for_nodes_in_doubt_and_a_repair_for_the_own_lease() {
        let floor = Want::Floor { min: 2 };
        let step_out = Want::Step {
            direction: Direction::Out,
            count: 1,
        };
        let cases = [
            // (want, direction, own lease alive, a node in doubt answers, withheld)
            (floor, Direction::Out, true, false, false),
            (floor, Direction::Out, false, false, true),
            (floor, Direction::Out, true, true, true),
            (Want::Fill, Direction::Out, false, false, false),
            (Want::Fill, Direction::Out, true, true, true),
            (Want::Fill, Direction::In, true, true, false),
            (step_out, Direction::Out, true, true, true),
            (Want::Ceiling, Direction::In, false, true, false),
        ];
        for (want, direction, lease, answering, expected) in cases {
            assert_eq!(
                withheld(want, direction, lease, answering),
                expected,
                "{want:?} {direction:?} lease alive {lease} answering {answering}"
            );
        }
    }

    #[test]
    fn a_lost_fill_is_retried_within_the_delay_range_spread_at_random() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1_000).map(|_| fill_retry_delay(&mut rng)).collect();
        assert!(
            delays
                .iter()
                .all(|d| (FILL_RETRY_DELAY_MIN..FILL_RETRY_DELAY_MAX).contains(d))
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "{} distinct delays", distinct.len());
    }

    #[test]
    fn the_floor_is_min_instances_at_least_one_for_an_orphaned_base_service_while_repairing() {
        // (min, orphaned base, settling, repairing) -> floor
        let cases = [
            ((2, false, false, true), 2),
            ((0, false, false, true), 0),
            ((0, true, false, true), 1),
            ((3, true, false, true), 3),
            ((2, false, true, true), 0),
            ((0, true, true, true), 0),
            ((2, false, false, false), 0),
            ((0, true, false, false), 0),
        ];
        for ((min, orphaned, settling, repairing), expected) in cases {
            assert_eq!(
                floor(min, orphaned, settling, repairing),
                expected,
                "min {min}, orphaned {orphaned}, settling {settling}, repairing {repairing}"
            );
        }
    }

    #[test]
    fn an_observation_counts_at_least_what_runs_here_and_keeps_a_base_services_last() {
        // (discovered, running here, base service here) -> (observed, removable here)
        let cases = [
            ((5, 2, false), (5, 2)),
            ((1, 3, false), (3, 3)),
            ((0, 0, false), (0, 0)),
            ((4, 2, true), (4, 1)),
            ((0, 1, true), (1, 0)),
            ((0, 0, true), (0, 0)),
        ];
        for ((discovered, here, base), expected) in cases {
            let observation = ServiceObservation::new(1, Some(9), discovered, here, base, 4);
            assert_eq!(
                (observation.observed, observation.removable_here),
                expected,
                "discovered {discovered}, {here} here, base {base}"
            );
            assert_eq!(
                (observation.min, observation.max, observation.running_here),
                (1, Some(9), here)
            );
            assert_eq!(observation.room_here, 4);
        }
    }

    #[test]
    fn lost_fills_are_retried_at_most_max_fill_retries_in_a_row_and_a_win_or_nothing_to_do_resets()
    {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut retry = FillRetry::default();
        for n in 1..=MAX_FILL_RETRIES {
            let delay = retry.on_lost(&mut rng).expect("a retry");
            assert!((FILL_RETRY_DELAY_MIN..FILL_RETRY_DELAY_MAX).contains(&delay));
            assert_eq!(retry.retries(), n);
        }
        assert_eq!(retry.on_lost(&mut rng), None, "the next loop tries again");
        assert_eq!(retry.retries(), MAX_FILL_RETRIES);
        retry.on_won();
        assert_eq!(retry.retries(), 0);
        assert!(retry.on_lost(&mut rng).is_some());
        assert!(retry.on_lost(&mut rng).is_some());
        retry.on_nothing_to_do();
        assert_eq!(retry, FillRetry::default());
        // The delays are the ones fill_retry_delay draws, one draw per retry.
        let (mut a, mut b) = (
            rand::rngs::StdRng::seed_from_u64(9),
            rand::rngs::StdRng::seed_from_u64(9),
        );
        assert_eq!(
            FillRetry::default().on_lost(&mut a),
            Some(fill_retry_delay(&mut b))
        );
    }

    #[test]
    fn a_claims_outcome_resets_the_fill_retries_or_asks_for_one() {
        let won = ClaimOutcome::Won {
            claim: Claim {
                count: 1,
                intent: crate::coordination::Intent {
                    node: "n".into(),
                    direction: Direction::Out,
                    count_after: 2,
                },
                start_out_cooldown: false,
                start_in_cooldown: false,
                target: None,
            },
            effect: Effect::Start(1),
        };
        let step = Want::Step {
            direction: Direction::Out,
            count: 1,
        };
        // (want, outcome, retries after, retry asked for), from 3 lost fills in a row.
        let table = [
            (Want::Fill, won.clone(), 0, false),
            (step, won, 3, false),
            (Want::Fill, ClaimOutcome::NoTarget, 0, false),
            (Want::Fill, ClaimOutcome::Refused(NOTHING_TO_DO), 0, false),
            (step, ClaimOutcome::Refused(NOTHING_TO_DO), 3, false),
            (Want::Fill, ClaimOutcome::Lost, 3, true),
            (step, ClaimOutcome::Lost, 3, false),
            (Want::Fill, ClaimOutcome::Withheld, 3, false),
        ];
        for (want, outcome, retries, retry) in table {
            let mut fills = FillRetry { retries: 3 };
            assert_eq!(
                fills.on_claimed(want, &outcome),
                retry,
                "{want:?} {outcome:?}"
            );
            assert_eq!(fills.retries(), retries, "{want:?} {outcome:?}");
        }
    }

    fn observation(observed: u32, running_here: u32, room_here: u32) -> ServiceObservation {
        ServiceObservation {
            min: 1,
            max: Some(10),
            observed,
            running_here,
            removable_here: running_here,
            room_here,
        }
    }

    fn policy() -> PolicyConfig {
        PolicyConfig {
            cooldown_out_secs: 10,
            cooldown_in_secs: 30,
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn repairs_follow_from_the_observation_alone() {
        assert_eq!(
            repairs(&observation(0, 0, 2), 1, false),
            vec![Want::Floor { min: 1 }]
        );
        assert_eq!(repairs(&observation(0, 0, 0), 1, false), vec![]);
        assert_eq!(
            repairs(&observation(12, 1, 0), 1, true),
            vec![Want::Ceiling, Want::Fill]
        );
        assert_eq!(repairs(&observation(12, 0, 0), 1, false), vec![]);
    }

    #[test]
    fn a_target_decision_claims_the_count_and_this_agents_share() {
        let want = Want::Target {
            direction: Direction::Out,
            desired: 8,
        };
        let claim = decide(
            "n1",
            want,
            &observation(2, 1, 3),
            &Ledger::default(),
            &policy(),
        )
        .expect("granted");
        assert_eq!(effect(&claim), Effect::Start(3));
        assert_eq!(claim.intent.count_after, 5);
        assert_eq!(claim.target.as_ref().map(|t| t.desired), Some(8));
        assert!(claim.start_out_cooldown && !claim.start_in_cooldown);
        let ttls = ttls(want, Direction::Out, &policy(), 1, 5);
        assert_eq!((ttls.cooldown_out_secs, ttls.target_secs), (10, 10));
    }

    #[test]
    fn fills_complete_a_target_without_passing_it() {
        let mut ledger = Ledger {
            intent: Some(Intent {
                node: "n1".into(),
                direction: Direction::Out,
                count_after: 5,
            }),
            target: Some(Target {
                node: "n1".into(),
                direction: Direction::Out,
                desired: 8,
            }),
            revision: 4,
            ..Ledger::default()
        };
        // Discovery still shows 2: the intent says 5 are on their way, 3 are missing.
        let n2 =
            decide("n2", Want::Fill, &observation(2, 0, 2), &ledger, &policy()).expect("a share");
        assert_eq!(effect(&n2), Effect::Start(2));
        assert!(n2.target.is_none() && !n2.start_out_cooldown);
        ledger.intent = Some(n2.intent);
        let n3 = decide("n3", Want::Fill, &observation(2, 0, 4), &ledger, &policy())
            .expect("the last one");
        assert_eq!(effect(&n3), Effect::Start(1));
        ledger.intent = Some(n3.intent);
        assert_eq!(
            decide("n4", Want::Fill, &observation(8, 0, 4), &ledger, &policy()),
            Err(NOTHING_TO_DO)
        );
    }

    #[test]
    fn a_scale_in_target_is_carried_out_by_agents_with_instances() {
        let ledger = Ledger {
            target: Some(Target {
                node: "n1".into(),
                direction: Direction::In,
                desired: 3,
            }),
            ..Ledger::default()
        };
        let claim =
            decide("n2", Want::Fill, &observation(6, 2, 0), &ledger, &policy()).expect("a share");
        assert_eq!(effect(&claim), Effect::Stop(2));
        assert_eq!(claim.intent.count_after, 4);
    }

    #[test]
    fn a_target_decision_is_refused_while_its_direction_cools_down_or_at_its_count() {
        let cooling = Ledger {
            out_cooling: true,
            ..Ledger::default()
        };
        let want = Want::Target {
            direction: Direction::Out,
            desired: 6,
        };
        assert_eq!(
            decide("n1", want, &observation(2, 1, 2), &cooling, &policy()),
            Err(Refusal::CoolingDown(Direction::Out))
        );
        assert!(matches!(
            decide(
                "n1",
                want,
                &observation(6, 1, 2),
                &Ledger::default(),
                &policy()
            ),
            Err(Refusal::AtTarget { .. })
        ));
        // A scale-out does not start the scale-in cooldown, and vice versa.
        let scale_in = Want::Target {
            direction: Direction::In,
            desired: 2,
        };
        let claim = decide("n1", scale_in, &observation(4, 2, 0), &cooling, &policy())
            .expect("scale-in is not blocked by a scale-out cooldown");
        assert!(claim.start_in_cooldown && !claim.start_out_cooldown);
    }

    fn random_direction(rng: &mut rand::rngs::StdRng) -> Direction {
        use rand::RngExt;
        if rng.random_bool(0.5) {
            Direction::Out
        } else {
            Direction::In
        }
    }

    /// A random want of every kind (swap halves only with `swaps`), toward `min` for a
    /// repair of MinInstances.
    fn random_want(
        rng: &mut rand::rngs::StdRng,
        min: u32,
        direction: Direction,
        swaps: bool,
    ) -> Want {
        use rand::RngExt;
        match rng.random_range(0..if swaps { 6 } else { 5 }) {
            0 => Want::Floor { min },
            1 => Want::Ceiling,
            2 => Want::Fill,
            3 => Want::Step {
                direction,
                count: rng.random_range(1..4),
            },
            4 if swaps => Want::Swap { direction },
            _ => Want::Target {
                direction,
                desired: rng.random_range(0..20),
            },
        }
    }

    /// Random sequences of agents claiming against one ledger, as etcd would serialise
    /// them: whatever they observed (stale counts included), a won claim never leads past
    /// MaxInstances or below MinInstances from the count the ledger and its reader saw,
    /// fills never pass their target, a repair or fill never starts a cooldown, and every
    /// start or stop comes from a won claim.
    #[test]
    fn random_claim_sequences_keep_the_bounds_and_the_target() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};

        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (min, max) = (rng.random_range(0..3), rng.random_range(3..12));
            let mut running: u32 = rng.random_range(min..=max);
            let mut ledger = Ledger::default();
            let policy = policy();
            for step in 0..60 {
                // A lagging reader sees up to 3 fewer instances than run (discovery lags);
                // the intent it reads corrects the count, as in the agent.
                let lag = rng.random_range(0..=3.min(running));
                let here = rng.random_range(0..=running.min(4));
                let obs = ServiceObservation {
                    min,
                    max: Some(max),
                    observed: running - lag,
                    running_here: here,
                    removable_here: here,
                    room_here: rng.random_range(0..4),
                };
                let direction = random_direction(&mut rng);
                let want = random_want(&mut rng, min, direction, false);
                let Ok(claim) = decide("n", want, &obs, &ledger, &policy) else {
                    continue;
                };
                let seen = obs.observed.max(obs.running_here);
                let from = crate::coordination::effective_count(seen, ledger.intent.as_ref());
                match effect(&claim) {
                    Effect::Start(n) => {
                        assert!(
                            from + n <= max,
                            "seed {seed} step {step}: {from} + {n} > {max} ({want:?})"
                        );
                        assert!(n <= obs.room_here, "seed {seed}: more starts than room");
                        running += n;
                    }
                    Effect::Stop(n) => {
                        assert!(
                            n <= obs.removable_here,
                            "seed {seed}: more stops than instances here"
                        );
                        if !matches!(want, Want::Ceiling) {
                            assert!(
                                from - n >= min,
                                "seed {seed} step {step}: below min ({want:?})"
                            );
                        }
                        running -= n;
                    }
                    Effect::Nothing => {}
                }
                if let (Want::Fill, Some(target)) = (want, ledger.target.as_ref()) {
                    match target.direction {
                        Direction::Out => assert!(claim.intent.count_after <= target.desired),
                        Direction::In => assert!(claim.intent.count_after >= target.desired),
                    }
                }
                if !want.is_decision() {
                    assert!(!claim.start_out_cooldown && !claim.start_in_cooldown);
                }
                // The claim is won: etcd now holds it (a new target replaces the old one).
                ledger.revision += 1;
                ledger.intent = Some(claim.intent.clone());
                if claim.target.is_some() {
                    ledger.target = claim.target.clone();
                }
            }
        }
    }

    /// The claim machine driven by random answers from its I/O (reads that fail, nodes in
    /// doubt that answer or not, writes that win, lose or fail), over a cluster whose
    /// count it claims against: nothing is written from a ledger or count that could not
    /// be read; nothing written passes MaxInstances from the count read (with the intent
    /// read); a claim is withheld only when a node in doubt answered; a start or stop
    /// comes only from a write that won; and every claim ends.
    #[test]
    fn random_machine_runs_claim_only_from_reads_within_max_and_act_only_when_won() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};

        let policy = policy();
        let mut probes = 0;
        for seed in 0..2_000u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (min, max) = (rng.random_range(0..3), rng.random_range(3..12));
            let observed = rng.random_range(0..=max + 2);
            let here = rng.random_range(0..=observed.min(4));
            let direction = random_direction(&mut rng);
            let want = random_want(&mut rng, min, direction, true);
            let ledger = Ledger {
                out_cooling: rng.random_bool(0.2),
                in_cooling: rng.random_bool(0.2),
                intent: rng.random_bool(0.3).then(|| Intent {
                    node: "other".into(),
                    direction,
                    count_after: rng.random_range(0..=max),
                }),
                target: rng.random_bool(0.5).then(|| Target {
                    node: "other".into(),
                    direction,
                    desired: rng.random_range(min..=max),
                }),
                rollout_step: None,
                revision: rng.random_range(0..100),
            };
            let mut machine = ClaimMachine::new("n", want, &policy, 1, 0);
            let (mut ledger_ok, mut count_ok, mut answered, mut won) = (false, false, false, false);
            let (mut lease_gone, mut proved) = (false, false);
            let mut written: Option<Claim> = None;
            for _ in 0..10 {
                match machine.next() {
                    ClaimIo::LeaseAlive => {
                        assert!(
                            matches!(want, Want::Floor { .. }),
                            "seed {seed}: the lease asked for {want:?}"
                        );
                        lease_gone = rng.random_bool(0.2);
                        machine.on_lease(!lease_gone);
                    }
                    ClaimIo::ReadLedger => {
                        if let Want::Floor { .. } = want {
                            assert!(
                                proved,
                                "seed {seed}: a repair read the ledger before the proof"
                            );
                        }
                        ledger_ok = rng.random_bool(0.9);
                        machine.on_ledger(if ledger_ok {
                            Ok(ledger.clone())
                        } else {
                            Err("etcd unreachable".into())
                        });
                    }
                    ClaimIo::ReadCount => {
                        count_ok = rng.random_bool(0.9);
                        machine.on_observation(if count_ok {
                            Ok(ServiceObservation::new(
                                min,
                                Some(max),
                                observed,
                                here,
                                false,
                                rng.random_range(0..4),
                            ))
                        } else {
                            Err("etcd unreachable".into())
                        });
                    }
                    ClaimIo::Probe => {
                        answered = rng.random_bool(0.3);
                        proved = !answered;
                        probes += 1;
                        machine.on_probe(answered);
                    }
                    ClaimIo::Write {
                        revision, claim, ..
                    } => {
                        assert!(
                            ledger_ok && count_ok,
                            "seed {seed}: a write from an unread read"
                        );
                        assert_eq!(
                            revision, ledger.revision,
                            "seed {seed}: compared on another revision"
                        );
                        if claim.intent.direction == Direction::Out {
                            let from = crate::coordination::effective_count(
                                observed.max(here),
                                ledger.intent.as_ref(),
                            );
                            assert!(
                                from + claim.count <= max,
                                "seed {seed}: {from} + {} > {max} ({want:?})",
                                claim.count
                            );
                        }
                        written = Some(claim);
                        let answer = rng.random_range(0..3);
                        won = answer == 0;
                        machine.on_written(match answer {
                            0 => Ok(true),
                            1 => Ok(false),
                            _ => Err("timed out".into()),
                        });
                    }
                    ClaimIo::Done => break,
                }
            }
            let outcome = machine
                .outcome()
                .expect("every claim ends within its steps");
            if answered || lease_gone {
                assert_eq!(
                    outcome,
                    &ClaimOutcome::Withheld,
                    "seed {seed}: a node answered or the lease was gone"
                );
            }
            match outcome {
                ClaimOutcome::Won { claim, effect: e } => {
                    assert!(won, "seed {seed}: an effect without a won write");
                    assert_eq!(Some(claim), written.as_ref());
                    assert_eq!(*e, effect(claim));
                }
                ClaimOutcome::Withheld => {
                    assert!(
                        answered || lease_gone,
                        "seed {seed}: withheld though no node in doubt answered and the \
                         lease lived"
                    );
                    if lease_gone {
                        assert!(matches!(want, Want::Floor { .. }), "seed {seed}: {want:?}");
                    }
                }
                ClaimOutcome::Lost | ClaimOutcome::StoreError { .. } => assert!(!won),
                ClaimOutcome::NoTarget => assert!(want == Want::Fill && ledger.target.is_none()),
                ClaimOutcome::Refused(_) => assert!(written.is_none()),
            }
        }
        assert!(probes > 100, "only {probes} runs reached the probe");
    }

    /// Random lists of wants (one, or a swap's two halves) whose claims are won or not at
    /// random: nothing acts unless every claim was won, each act is its won claim's effect,
    /// stops come before starts, and a claim is asked for only after the one before won.
    #[test]
    fn random_executions_act_only_when_every_claim_was_won_stops_first() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};

        let mut acted_runs = 0;
        for seed in 0..1_000u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let wants: Vec<(String, Want)> = if rng.random_bool(0.5) {
                vec![
                    (
                        "start".into(),
                        Want::Swap {
                            direction: Direction::Out,
                        },
                    ),
                    (
                        "stop".into(),
                        Want::Swap {
                            direction: Direction::In,
                        },
                    ),
                ]
            } else {
                let direction = random_direction(&mut rng);
                vec![("web".into(), random_want(&mut rng, 1, direction, true))]
            };
            let mut execution = Execution::new(wants.clone());
            let (mut claimed, mut all_won) = (0, true);
            let mut claims = Vec::new();
            let mut acts = Vec::new();
            for _ in 0..8 {
                match execution.next() {
                    ExecutionIo::Claim { service, want } => {
                        assert_eq!((service, want), wants[claimed].clone(), "seed {seed}");
                        claimed += 1;
                        let won = rng.random_bool(0.7);
                        all_won &= won;
                        let direction = match want {
                            Want::Swap { direction }
                            | Want::Step { direction, .. }
                            | Want::Target { direction, .. } => direction,
                            Want::Floor { .. } | Want::DrainMove => Direction::Out,
                            Want::Ceiling | Want::DrainStop { .. } => Direction::In,
                            Want::Fill => random_direction(&mut rng),
                        };
                        let claim = Claim {
                            intent: crate::coordination::Intent {
                                node: "n".into(),
                                direction,
                                count_after: 3,
                            },
                            count: rng.random_range(0..3),
                            start_out_cooldown: false,
                            start_in_cooldown: false,
                            target: None,
                        };
                        if won {
                            claims.push(claim.clone());
                        }
                        execution.on_claimed(won.then_some(claim));
                    }
                    ExecutionIo::Act(act) => {
                        assert!(
                            all_won && claimed == wants.len(),
                            "seed {seed}: acted early"
                        );
                        assert_eq!(act.effect, effect(&act.claim), "seed {seed}");
                        assert_ne!(act.effect, Effect::Nothing, "seed {seed}");
                        acts.push(act);
                        execution.on_acted();
                    }
                    ExecutionIo::Done => break,
                }
            }
            assert_eq!(
                execution.next(),
                ExecutionIo::Done,
                "seed {seed}: did not end"
            );
            if !all_won {
                assert!(
                    acts.is_empty(),
                    "seed {seed}: acted after a claim was not won"
                );
                continue;
            }
            let expected = claims
                .iter()
                .filter(|c| effect(c) != Effect::Nothing)
                .count();
            assert_eq!(acts.len(), expected, "seed {seed}: one act per won effect");
            let first_start = acts
                .iter()
                .position(|a| matches!(a.effect, Effect::Start(_)));
            let last_stop = acts
                .iter()
                .rposition(|a| matches!(a.effect, Effect::Stop(_)));
            if let (Some(start), Some(stop)) = (first_start, last_stop) {
                assert!(stop < start, "seed {seed}: a start before a stop");
            }
            for act in &acts {
                let stop = matches!(act.effect, Effect::Stop(_));
                assert_eq!(
                    act.makes_room,
                    stop && first_start.is_some(),
                    "seed {seed}: makes_room of {act:?}"
                );
            }
            acted_runs += usize::from(!acts.is_empty());
        }
        assert!(acted_runs > 200, "only {acted_runs} runs acted");
    }
}
