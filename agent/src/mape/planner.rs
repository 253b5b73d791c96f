//! Plan: a pure function from (knowledge, policy, now, rng) to a [`Decision`] value and the
//! knowledge to carry to the next tick.
//!
//! Each tick the planner lists candidates (scale-out and scale-in per service, swap per
//! pair of a service running here and one that is not), weighs them with Gru's formulas
//! ([`super::weights`]), removes those a guard forbids, weighs "no action" as
//! `1 - max(eligible weights)`, and lets the strategy choose. Guards run before the draw so
//! that a forbidden action never wins a draw only to be dropped, and every guard that removes
//! or clamps a candidate is recorded in the decision.
//!
//! The guards are in `guards.rs`, the knowledge types (and the state machine each
//! candidate moves through) in [`super::knowledge`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::config::{BASE_METRICS, PlannerStrategy, PolicyConfig, PolicyRule};
use rand::Rng;

use super::analyze::AnalyticValue;
use super::blocked::BlockedBy;
use super::cursor::Cursor;
use super::decision::{Action, CandidateWeight, Decision};
use super::guards::Guards;
use super::knowledge::{AnalyticsCursor, Breaches, Key, PlannerState, ServiceSnapshot};
use super::millis::Millis;
use super::smoothing::Smoother;
use super::strategy::{self, Pick};
use super::target::{desired_count, growth_limit};
use super::weights::{self, SwapValue, Weighing};

/// Everything one tick of the planner needs besides its state and randomness.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub services: &'a [ServiceSnapshot],
    pub policy: &'a PolicyConfig,
    pub strategy: PlannerStrategy,
    pub dry_run: bool,
    pub now: Millis,
}

/// A candidate while the planner weighs it.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) action: Action,
    /// Greedy's tie-break: lower is safer.
    pub(super) safety: u8,
    pub(super) weighing: Weighing,
    pub(super) blocked_by: BlockedBy,
    pub(super) clamped: Option<String>,
    /// The services it acts on, among the planner's services (sorted by name).
    pub(super) subject: Subject,
    /// When its breach started, for a candidate with weight > 0.
    pub(super) breach_started: Option<Millis>,
}

/// The services a candidate acts on, as indices into the planner's services, so that the
/// guards do not look them up by name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject {
    Nothing,
    Service(usize),
    Swap { stop: usize, start: usize },
}

impl Candidate {
    fn eligible(&self) -> bool {
        self.blocked_by.is_empty()
    }

    fn weight(&self) -> f64 {
        self.weighing.weight
    }
}

/// Safer first, as Nomad's autoscaler resolves conflicting checks: adding capacity beats
/// doing nothing beats moving capacity beats removing it.
const SAFETY_SCALE_OUT: u8 = 0;
const SAFETY_NONE: u8 = 1;
const SAFETY_SWAP: u8 = 2;
const SAFETY_SCALE_IN: u8 = 3;

/// Decides what this node does now. Pure: the same input, state and random sequence give
/// the same decision and state.
pub fn plan<R: Rng + ?Sized>(
    input: &PlanInput<'_>,
    state: &PlannerState,
    rng: &mut R,
) -> (Decision, PlannerState) {
    let now = input.now;
    let mut services: Vec<&ServiceSnapshot> = input.services.iter().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));

    // Service names are unique (snapshots are made from the configuration's services).
    let known = |name: &str| {
        services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .is_ok()
    };
    // The last scales and the services are both in name order: they are walked together.
    let mut last_scale = state.last_scale.clone();
    let mut names = services.iter().map(|s| s.name.as_str()).peekable();
    last_scale.retain(|name, _| {
        while names.next_if(|known| *known < &**name).is_some() {}
        names.peek() == Some(&&**name)
    });
    let mut next = PlannerState {
        breaches: BTreeMap::new(),
        swap_breaches: BTreeMap::new(),
        last_scale,
        recommendations: state
            .recommendations
            .iter()
            .filter(|(key, _)| known(key.service()))
            .map(|(key, recent)| (key.clone(), recent.clone()))
            .collect(),
        smoothers: state
            .smoothers
            .iter()
            .filter(|((key, _), _)| known(key.service()))
            .map(|(key, smoother)| (key.clone(), smoother.clone()))
            .collect(),
    };
    let mut candidates = weigh_candidates(&services, input.policy, &mut next, now);
    breach_starts(&mut candidates, &services, state, &mut next, now);
    let guards = Guards {
        policy: input.policy,
        state: &next,
        now,
    };
    for candidate in &mut candidates {
        guards.apply(candidate, &services);
    }

    let heaviest = candidates
        .iter()
        .filter(|c| c.eligible())
        .map(Candidate::weight)
        .fold(0.0, f64::max);
    candidates[0] = no_action(
        (1.0 - heaviest).clamp(0.0, 1.0),
        format!("1 - {heaviest:.2}, the heaviest eligible action"),
    );

    let pool: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].eligible() && candidates[i].weight() > 0.0)
        .collect();
    let pool_weights: Vec<f64> = pool.iter().map(|&i| candidates[i].weight()).collect();
    let safer = |a: usize, b: usize| {
        let (a, b) = (&candidates[pool[a]], &candidates[pool[b]]);
        (a.safety, &a.action).cmp(&(b.safety, &b.action))
    };
    let pick = strategy::choose(input.strategy, &pool_weights, safer, rng);
    let chosen = pick.map(|pick| pool[pick.index]);

    let reason = reason(input, &candidates, chosen, pick);
    let action = chosen.map_or(Action::None, |i| candidates[i].action.clone());
    next.record(&action, now);
    let decision = Decision {
        action,
        weights: candidates.into_iter().map(into_weight).collect(),
        draw: pick.and_then(|pick| pick.draw),
        reason,
        dry_run: input.dry_run,
        at: now,
    };
    (decision, next)
}

/// Sets when the breach of each candidate with weight > 0 started (the previous tick's
/// start, or now) and keeps those starts in `next`; a breach of weight 0 is forgotten.
/// The candidates of services come in the services' (name) order, as `state`'s breaches
/// are kept: they are looked up by walking.
fn breach_starts(
    candidates: &mut [Candidate],
    services: &[&ServiceSnapshot],
    state: &PlannerState,
    next: &mut PlannerState,
    now: Millis,
) {
    let mut previous = Cursor::new(&state.breaches);
    // Each breaching service's name (shared with `state` when it breached before), its
    // breaches before and now, in name order.
    let mut breaching: Vec<(usize, Option<Arc<str>>, Breaches, Breaches)> = Vec::new();
    for candidate in candidates.iter_mut().filter(|c| c.weight() > 0.0) {
        let (out, index) = match (&candidate.action, candidate.subject) {
            (Action::ScaleOut { .. }, Subject::Service(index)) => (true, index),
            (Action::ScaleIn { .. }, Subject::Service(index)) => (false, index),
            (Action::Swap { .. }, Subject::Swap { stop, start }) => {
                let (stop, start) = (services[stop].name.as_str(), services[start].name.as_str());
                let before = state.swap_breaches.get_key_value(stop);
                let before_start = before.and_then(|(_, starts)| starts.get_key_value(start));
                let started = before_start.map_or(now, |(_, started)| *started);
                candidate.breach_started = Some(started);
                let starts = match next.swap_breaches.get_mut(stop) {
                    Some(starts) => starts,
                    None => {
                        let stop = before.map_or_else(|| Arc::from(stop), |(name, _)| name.clone());
                        next.swap_breaches.entry(stop).or_default()
                    }
                };
                let start = before_start.map_or_else(|| Arc::from(start), |(name, _)| name.clone());
                starts.insert(start, started);
                continue;
            }
            _ => continue,
        };
        // A service's two candidates come one after the other (and a name given twice,
        // which snapshots made from a configuration never do, once).
        let name = services[index].name.as_str();
        if breaching
            .last()
            .is_none_or(|(last, ..)| *last != index && services[*last].name != name)
        {
            let (name, before) = match previous.get(name) {
                Some((name, before)) => (Some(name.clone()), *before),
                None => (None, Breaches::default()),
            };
            breaching.push((index, name, before, Breaches::default()));
        }
        let Some((_, _, before, now_breaching)) = breaching.last_mut() else {
            continue;
        };
        let started = before.of(out).unwrap_or(now);
        candidate.breach_started = Some(started);
        *now_breaching.of(out) = Some(started);
    }
    next.breaches = breaching
        .into_iter()
        .map(|(index, name, _, breaches)| {
            let name = name.unwrap_or_else(|| Arc::from(services[index].name.as_str()));
            (name, breaches)
        })
        .collect();
}

/// "No action", with its weight and why.
fn no_action(weight: f64, explanation: String) -> Candidate {
    Candidate {
        action: Action::None,
        safety: SAFETY_NONE,
        weighing: Weighing {
            weight,
            explanation: explanation.into(),
        },
        blocked_by: BlockedBy::default(),
        clamped: None,
        subject: Subject::Nothing,
        breach_started: None,
    }
}

/// Every candidate the enabled rules allow (after "no action", weighed later), with its weight and unclamped step (in target
/// mode: the count that reaches the target). Rules with a `Window` smooth their inputs and
/// target-tracking rules record their recommendations in `state`.
fn weigh_candidates(
    services: &[&ServiceSnapshot],
    cluster_policy: &PolicyConfig,
    state: &mut PlannerState,
    now: Millis,
) -> Vec<Candidate> {
    let mut candidates = Vec::with_capacity(2 * services.len() + 1);
    // "No action" comes first; it is weighed once the others are (weight 0 until then).
    candidates.push(no_action(0.0, String::new()));
    // One buffer for the values as looked up, shared by a service's two rules when they
    // name the same, and one for every rule's values after its `Missing` and `Window`
    // (rules that have neither weigh the values as looked up).
    let mut transformed = Vec::new();
    let mut looked_up = Vec::new();
    for (index, service) in services.iter().enumerate() {
        let policy = service.policy(cluster_policy);
        let own = service.policy.is_some();
        if policy.scaleout.enable {
            let rule = &policy.scaleout;
            look_up(rule, service, &mut looked_up);
            let values = if transforms_values(rule) {
                rule_values(
                    &looked_up,
                    service,
                    rule,
                    Key::Out,
                    state,
                    now,
                    &mut transformed,
                );
                &transformed
            } else {
                &looked_up
            };
            let gru = weights::scale_out_of(values, rule.threshold);
            let (count, weighing) = if rule.tracks_target() {
                target_out(service, policy, values, gru, state, now)
            } else {
                (rule.step.max(1), gru)
            };
            candidates.push(Candidate {
                action: Action::ScaleOut {
                    service: service.name.clone(),
                    count,
                },
                safety: SAFETY_SCALE_OUT,
                weighing: with_own_policy(weighing, own, &service.name),
                blocked_by: BlockedBy::default(),
                clamped: None,
                subject: Subject::Service(index),
                breach_started: None,
            });
        }
        if policy.scalein.enable {
            let rule = &policy.scalein;
            let out = &policy.scaleout;
            if !(out.enable && out.metrics == rule.metrics && out.analytics == rule.analytics) {
                look_up(rule, service, &mut looked_up);
            }
            let values = if transforms_values(rule) {
                rule_values(
                    &looked_up,
                    service,
                    rule,
                    Key::In,
                    state,
                    now,
                    &mut transformed,
                );
                &transformed
            } else {
                &looked_up
            };
            let gru = weights::scale_in_of(values, rule.threshold);
            let (count, weighing) = if rule.tracks_target() {
                target_in(service, policy, values, gru, state, now)
            } else {
                (rule.step.max(1), gru)
            };
            candidates.push(Candidate {
                action: Action::ScaleIn {
                    service: service.name.clone(),
                    count,
                },
                safety: SAFETY_SCALE_IN,
                weighing: with_own_policy(weighing, own, &service.name),
                blocked_by: BlockedBy::default(),
                clamped: None,
                subject: Subject::Service(index),
                breach_started: None,
            });
        }
    }
    let policy = cluster_policy;
    if policy.swap.enable {
        let mut theirs = Vec::new();
        for (stop, running) in services.iter().enumerate() {
            if running.running_here == 0 {
                continue;
            }
            // Gru compared the running service's analytics: their names and the running
            // service's values are the same for every candidate.
            let names: Vec<(&str, bool)> = rule_names(&policy.swap, running).collect();
            let mut running_values = running.values();
            let here: Vec<AnalyticValue> = names
                .iter()
                .map(|&(name, metric)| lookup(running, &mut running_values, name, metric))
                .collect();
            let inactive = services.iter().enumerate().filter(|(_, s)| {
                s.running_here == 0 && s.pending_here == 0 && s.name != running.name
            });
            for (start, candidate) in inactive {
                theirs.clear();
                let mut candidate_values = candidate.values();
                theirs.extend(
                    names.iter().map(|&(name, metric)| {
                        lookup(candidate, &mut candidate_values, name, metric)
                    }),
                );
                let values: Vec<SwapValue<'_>> = names
                    .iter()
                    .zip(&here)
                    .zip(&theirs)
                    .map(|((&(name, _), here), theirs)| (name, here, theirs))
                    .collect();
                candidates.push(Candidate {
                    action: Action::Swap {
                        stop: running.name.clone(),
                        start: candidate.name.clone(),
                    },
                    safety: SAFETY_SWAP,
                    weighing: weights::swap(
                        &values,
                        &running.name,
                        &candidate.name,
                        policy.swap.threshold,
                    ),
                    blocked_by: BlockedBy::default(),
                    clamped: None,
                    subject: Subject::Swap { stop, start },
                    breach_started: None,
                });
            }
        }
    }
    candidates
}

/// Says in a weighing's explanation that the service's own policy applied (`why` shows it).
fn with_own_policy(weighing: Weighing, own: bool, service: &str) -> Weighing {
    if !own {
        return weighing;
    }
    Weighing {
        explanation: weighing.explanation.of_own_policy(service),
        ..weighing
    }
}

/// A target-tracking scale-out: when a value breaches the threshold (Gru's weight > 0), the
/// count the values call for, within the growth limit, with weight 1 (a controller, not a
/// draw). Returns the instances to add and the weighing.
fn target_out(
    service: &ServiceSnapshot,
    policy: &PolicyConfig,
    values: &[(&str, AnalyticValue)],
    gru: Weighing,
    state: &mut PlannerState,
    now: Millis,
) -> (u32, Weighing) {
    let rule = &policy.scaleout;
    let n = service
        .counted_instances()
        .saturating_add(service.pending_here);
    let key = Key::Out(service.name.clone());
    let Some(mut recommended) = recommend(policy, rule, key, n, values, state, now) else {
        return (rule.step.max(1), gru);
    };
    if gru.weight <= 0.0 {
        return (rule.step.max(1), gru);
    }
    let limit = growth_limit(n, rule.step, rule.max_growth_percent);
    let reached = recommended.stabilized.min(n.saturating_add(limit));
    if reached < recommended.stabilized {
        recommended
            .explanation
            .push_str(&format!(", growth limited to +{limit}"));
    }
    let explanation = format!("{} ({})", recommended.explanation, gru.explanation);
    decided(rule.step, reached.saturating_sub(n), n, explanation)
}

/// A target-tracking scale-in: when a value is below the threshold (Gru's weight > 0), down
/// to the highest count recommended during the stabilization window, with weight 1.
fn target_in(
    service: &ServiceSnapshot,
    policy: &PolicyConfig,
    values: &[(&str, AnalyticValue)],
    gru: Weighing,
    state: &mut PlannerState,
    now: Millis,
) -> (u32, Weighing) {
    let rule = &policy.scalein;
    let n = service.counted_instances();
    let key = Key::In(service.name.clone());
    let Some(recommended) = recommend(policy, rule, key, n, values, state, now) else {
        return (rule.step.max(1), gru);
    };
    if gru.weight <= 0.0 {
        return (rule.step.max(1), gru);
    }
    let explanation = format!("{} ({})", recommended.explanation, gru.explanation);
    decided(
        rule.step,
        n.saturating_sub(recommended.stabilized),
        n,
        explanation,
    )
}

/// What a target-tracking rule recommends now, stabilized over its window.
struct Recommended {
    /// The count after stabilization: the lowest of the window for a scale-out, the highest
    /// for a scale-in.
    stabilized: u32,
    explanation: String,
}

/// Records the count `values` call for from `n` instances in the rule's recent
/// recommendations (keyed by service and direction) and stabilizes it; `None` when no value
/// is available.
fn recommend(
    policy: &PolicyConfig,
    rule: &PolicyRule,
    key: Key,
    n: u32,
    values: &[(&str, AnalyticValue)],
    state: &mut PlannerState,
    now: Millis,
) -> Option<Recommended> {
    let target = policy.target(rule);
    let (desired, how) = desired_count(&as_refs(values), n, target)?;
    let window = Duration::from_secs(rule.stabilization_secs);
    let out = matches!(key, Key::Out(_));
    let recent = state.recommendations.entry(key).or_default();
    recent.record(now, desired, window);
    let (stabilized, which) = if out {
        (recent.lowest(now, window).unwrap_or(desired), "lowest")
    } else {
        (recent.highest(now, window).unwrap_or(desired), "highest")
    };
    let mut explanation = format!("target {target:.2}: {how}");
    if stabilized != desired {
        explanation.push_str(&format!(
            ", {stabilized} the {which} of the last {} s",
            rule.stabilization_secs
        ));
    }
    Some(Recommended {
        stabilized,
        explanation,
    })
}

/// A target-tracking candidate that moves `count` instances (weight 1), or, with nothing to
/// move, weight 0 and why.
fn decided(step: u32, count: u32, n: u32, explanation: String) -> (u32, Weighing) {
    if count == 0 {
        return (
            step.max(1),
            Weighing {
                weight: 0.0,
                explanation: format!("{explanation}; {n} instances already").into(),
            },
        );
    }
    (
        count,
        Weighing {
            weight: 1.0,
            explanation: explanation.into(),
        },
    )
}

/// The names a rule weighs for a service, each marked whether the rule lists it as a
/// metric: the rule's base metrics, then the rule's analytics or, when it names none, the
/// service's own.
fn rule_names<'a>(
    rule: &'a PolicyRule,
    service: &'a ServiceSnapshot,
) -> impl ExactSizeIterator<Item = (&'a str, bool)> + 'a {
    let analytics = if rule.analytics.is_empty() {
        &service.own_analytics
    } else {
        &rule.analytics
    };
    let metrics = rule.metrics.iter().map(|name| (name.as_str(), true));
    let analytics = analytics.iter().map(|name| (name.as_str(), false));
    Names { metrics, analytics }
}

/// A rule's metrics then its analytics, with their number known (`chain` does not say it).
struct Names<M, A> {
    metrics: M,
    analytics: A,
}

impl<'a, M, A> Iterator for Names<M, A>
where
    M: Iterator<Item = (&'a str, bool)>,
    A: Iterator<Item = (&'a str, bool)>,
{
    type Item = (&'a str, bool);

    fn next(&mut self) -> Option<(&'a str, bool)> {
        self.metrics.next().or_else(|| self.analytics.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (m, a) = (self.metrics.size_hint().0, self.analytics.size_hint().0);
        (m + a, Some(m + a))
    }
}

impl<'a, M, A> ExactSizeIterator for Names<M, A>
where
    M: ExactSizeIterator<Item = (&'a str, bool)>,
    A: ExactSizeIterator<Item = (&'a str, bool)>,
{
}

/// Which thresholds a service's values cross: fast detection's test, which brings the
/// next plan forward (see [`crossing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crossing {
    /// A value the scale-out rule weighs is above its threshold (the rule is enabled).
    pub scale_out: bool,
    /// A value the scale-in rule weighs is below its threshold (the rule is enabled).
    pub scale_in: bool,
}

/// Whether the values `policy`'s rules weigh cross their thresholds, as the planner's
/// rules name them: a rule's metrics, then its analytics (the service's own,
/// `own_analytics`, when it names none). `value` gives a named value where there is one;
/// names without a value do not count.
pub fn crossing(
    policy: &PolicyConfig,
    own_analytics: &[String],
    value: impl Fn(&str) -> Option<f64>,
) -> Crossing {
    let values = |rule: &PolicyRule| -> Vec<f64> {
        let analytics = if rule.analytics.is_empty() {
            own_analytics
        } else {
            &rule.analytics
        };
        rule.metrics
            .iter()
            .chain(analytics)
            .filter_map(|name| value(name))
            .collect()
    };
    let (out, r#in) = (&policy.scaleout, &policy.scalein);
    Crossing {
        scale_out: out.enable && values(out).iter().any(|v| *v > out.threshold),
        scale_in: r#in.enable && values(r#in).iter().any(|v| *v < r#in.threshold),
    }
}

/// A value a rule names, for `service`, read through `values` (the service's
/// [`ServiceSnapshot::values`]).
fn lookup<'a>(
    service: &ServiceSnapshot,
    values: &mut AnalyticsCursor<'a>,
    name: &'a str,
    listed_as_metric: bool,
) -> AnalyticValue {
    if listed_as_metric && common::config::base_metric(name).is_none() {
        return AnalyticValue::unavailable(format!(
            "\"{name}\" is not a base metric ({}); weigh it through an analytic",
            BASE_METRICS.join(", ")
        ));
    }
    service.value_at(name, values)
}

/// The values a rule names for a service, as they are (see [`lookup`]), into `looked_up`.
fn look_up<'a>(
    rule: &'a PolicyRule,
    service: &'a ServiceSnapshot,
    looked_up: &mut Vec<(&'a str, AnalyticValue)>,
) {
    let mut values = service.values();
    looked_up.clear();
    looked_up.extend(
        rule_names(rule, service)
            .map(|(name, metric)| (name, lookup(service, &mut values, name, metric))),
    );
}

/// Whether a rule weighs other values than those it names as they are: a missing one
/// replaced by its `Missing`, or smoothed over its `Window` (see [`rule_values`]).
fn transforms_values(rule: &PolicyRule) -> bool {
    rule.missing.is_some() || rule.window_secs > 0
}

/// The values a rule weighs for a service, into `values`: those `looked_up` for its names,
/// a missing one replaced by the rule's `Missing` when it declares one, and smoothed over
/// the rule's `Window` (its smoothers are keyed by `key` of the service's name and the
/// value's name).
fn rule_values<'a>(
    looked_up: &[(&'a str, AnalyticValue)],
    service: &ServiceSnapshot,
    rule: &PolicyRule,
    key: fn(String) -> Key,
    state: &mut PlannerState,
    now: Millis,
    values: &mut Vec<(&'a str, AnalyticValue)>,
) {
    let window = Duration::from_secs(rule.window_secs);
    let key = (!window.is_zero()).then(|| key(service.name.clone()));
    values.clear();
    values.extend(looked_up.iter().map(|(name, value)| {
        let mut value = value.clone();
        if let (AnalyticValue::Unavailable { .. }, Some(missing)) = (&value, rule.missing) {
            value = AnalyticValue::Available(missing);
        }
        if let (Some(v), Some(key)) = (value.value(), &key) {
            let smoother = state
                .smoothers
                .entry((key.clone(), (*name).to_owned()))
                .or_insert_with(|| Smoother::new(rule.smoothing));
            if !smoother.is(rule.smoothing) {
                *smoother = Smoother::new(rule.smoothing);
            }
            value = AnalyticValue::Available(smoother.update(now, v, window));
        }
        (*name, value)
    }));
}

fn as_refs<'a>(values: &'a [(&'a str, AnalyticValue)]) -> Vec<(&'a str, &'a AnalyticValue)> {
    values.iter().map(|(name, value)| (*name, value)).collect()
}

/// A candidate named without its count, for the notes of a reason.
fn label(action: &Action) -> String {
    match action {
        Action::ScaleOut { service, .. } => format!("scale-out {service}"),
        Action::ScaleIn { service, .. } => format!("scale-in {service}"),
        other => other.to_string(),
    }
}

/// Blocked candidates named in a reason, heaviest first; the decision's weights list them
/// all, and a reason stays a sentence on a node that runs many services.
const MAX_BLOCKED_IN_REASON: usize = 3;

fn reason(
    input: &PlanInput<'_>,
    candidates: &[Candidate],
    chosen: Option<usize>,
    pick: Option<Pick>,
) -> String {
    let mut sentence = String::new();
    if input.dry_run {
        sentence.push_str("dry run: ");
    }
    let how = match pick.and_then(|pick| pick.draw) {
        Some(draw) => format!("drawn {draw:.2} with {}", input.strategy),
        None => "the heaviest, chosen by greedy".to_owned(),
    };
    let others_weigh = candidates
        .iter()
        .any(|c| !c.action.is_none() && c.weight() > 0.0);
    match chosen.map(|i| &candidates[i]) {
        _ if candidates.len() == 1 => sentence.push_str("no action: no policy rule is enabled"),
        None => sentence.push_str("no action: every weight is 0"),
        Some(candidate) if candidate.action.is_none() && !others_weigh => {
            sentence.push_str("no action: nothing crosses its threshold");
        }
        Some(candidate) if candidate.action.is_none() => {
            sentence.push_str(&format!(
                "no action: weight {:.2}, {how}",
                candidate.weight()
            ));
        }
        Some(candidate) => {
            sentence.push_str(&format!(
                "{}: weight {:.2} ({}), {how}",
                candidate.action,
                candidate.weight(),
                candidate.weighing.explanation
            ));
            if let Some(clamped) = &candidate.clamped {
                sentence.push_str(&format!("; {clamped}"));
            }
        }
    }
    let mut blocked: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.weight() > 0.0 && !c.eligible())
        .collect();
    blocked.sort_by(|a, b| b.weight().total_cmp(&a.weight()));
    for candidate in blocked.iter().take(MAX_BLOCKED_IN_REASON) {
        sentence.push_str(&format!(
            "; {} (weight {:.2}) blocked: {}",
            label(&candidate.action),
            candidate.weight(),
            candidate.blocked_by.join(", ")
        ));
    }
    if blocked.len() > MAX_BLOCKED_IN_REASON {
        sentence.push_str(&format!(
            "; {} lighter candidates blocked too",
            blocked.len() - MAX_BLOCKED_IN_REASON
        ));
    }
    sentence
}

fn into_weight(candidate: Candidate) -> CandidateWeight {
    CandidateWeight {
        action: candidate.action,
        weight: candidate.weighing.weight,
        explanation: candidate.weighing.explanation,
        blocked_by: candidate.blocked_by,
        clamped: candidate.clamped,
    }
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
