//! The planner's behaviour: weights per rule, every guard, strategies end to end, state.

use common::config::{PlannerStrategy, PolicyConfig, PolicyRule};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::mape::{LastScale, StartHeld};

fn rule(threshold: f64) -> PolicyRule {
    PolicyRule {
        enable: true,
        threshold,
        metrics: vec!["cpu_avg".to_owned()],
        analytics: Vec::new(),
        period_secs: 0,
        step: 1,
        ..PolicyRule::disabled(threshold)
    }
}

/// Scale-out above 0.75 and scale-in below 0.35 on `cpu_avg`; no swap, no cooldown.
fn policy() -> PolicyConfig {
    PolicyConfig {
        scalein: rule(0.35),
        scaleout: rule(0.75),
        swap: PolicyRule::disabled(0.6),
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
    }
}

fn swap_policy() -> PolicyConfig {
    PolicyConfig {
        scalein: PolicyRule::disabled(0.35),
        scaleout: PolicyRule::disabled(0.75),
        swap: rule(0.6),
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
    }
}

/// One instance here and in the cluster, room for four more, no bounds, at `cpu` load.
fn service(name: &str, cpu: f64) -> ServiceSnapshot {
    ServiceSnapshot {
        name: name.to_owned(),
        running_here: 1,
        pending_here: 0,
        cluster_instances: 1,
        min_instances: 0,
        max_instances: None,
        base_service: false,
        free_slots_here: 4,
        cpu_number: 1,
        own_analytics: Vec::new(),
        cpu_avg: Some(cpu),
        mem_avg: None,
        analytics: BTreeMap::new(),
        cluster_last_scale: LastScale::default(),
        start_held: None,
        policy: None,
    }
}

fn busy(name: &str) -> ServiceSnapshot {
    service(name, 1.0)
}

fn idle(name: &str) -> ServiceSnapshot {
    service(name, 0.0)
}

fn plan_with(
    strategy: PlannerStrategy,
    services: &[ServiceSnapshot],
    policy: &PolicyConfig,
    state: &PlannerState,
    now_secs: u64,
    rng: &mut StdRng,
) -> (Decision, PlannerState) {
    let input = PlanInput {
        services,
        policy,
        strategy,
        dry_run: false,
        now: Millis::from_secs(now_secs),
    };
    plan(&input, state, rng)
}

/// One greedy tick: deterministic.
fn tick(
    services: &[ServiceSnapshot],
    policy: &PolicyConfig,
    state: &PlannerState,
    now_secs: u64,
) -> (Decision, PlannerState) {
    let mut rng = StdRng::seed_from_u64(0);
    plan_with(
        PlannerStrategy::Greedy,
        services,
        policy,
        state,
        now_secs,
        &mut rng,
    )
}

fn out(service: &str, count: u32) -> Action {
    Action::ScaleOut {
        service: service.to_owned(),
        count,
    }
}

fn scale_in(service: &str, count: u32) -> Action {
    Action::ScaleIn {
        service: service.to_owned(),
        count,
    }
}

/// The weighed candidate for `action`'s service and kind (its count may differ).
fn candidate<'a>(decision: &'a Decision, action: &Action) -> &'a CandidateWeight {
    decision
        .weights
        .iter()
        .find(|c| label(&c.action) == label(action))
        .unwrap_or_else(|| panic!("no candidate {action} in {:#?}", decision.weights))
}

fn assert_blocked(decision: &Decision, action: &Action, fragment: &str) {
    let weighed = candidate(decision, action);
    assert!(
        weighed
            .blocked_by
            .iter()
            .any(|guard| guard.contains(fragment)),
        "{action} should be blocked by \"{fragment}\": {weighed:#?}"
    );
    assert_ne!(
        label(&decision.action),
        label(action),
        "{}",
        decision.reason
    );
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn busy_service_scales_out_and_says_why() {
    let (decision, _) = tick(&[busy("web")], &policy(), &PlannerState::new(), 0);
    assert_eq!(decision.action, out("web", 1));
    assert_eq!(
        decision.reason,
        "scale-out web by 1: weight 1.00 (cpu_avg 1.00 > 0.75), the heaviest, chosen by greedy"
    );
    assert_eq!(decision.draw, None);
    assert_eq!(decision.at, Millis::ZERO);
    assert_eq!(
        decision.weights[0].action,
        Action::None,
        "no action is listed first"
    );
    assert_eq!(decision.weights[0].weight, 0.0);
}

#[test]
fn weights_follow_gru_formulas_over_the_rule_values() {
    // (scale-out rule's analytics, service's own analytics, expected scale-out weight)
    let cases: &[(&[&str], &[&str], f64)] = &[
        (&[], &[], 0.5),                 // cpu_avg 0.875 alone: (0.875 - 0.75) / 0.25
        (&["resp"], &[], 0.75),          // mean(0.5, 1.0)
        (&[], &["resp"], 0.75),          // a rule naming no analytic uses the service's
        (&["resp"], &["ignored"], 0.75), // a rule naming analytics uses only those
        (&["unknown"], &[], 0.5),        // an analytic without a value is left out
    ];
    for &(rule_analytics, own, expected) in cases {
        let mut policy = policy();
        policy.scaleout.analytics = rule_analytics.iter().map(|a| (*a).to_owned()).collect();
        let mut web = service("web", 0.875);
        web.own_analytics = own.iter().map(|a| (*a).to_owned()).collect();
        web.analytics
            .insert("resp".to_owned(), AnalyticValue::Available(1.0));
        web.analytics
            .insert("ignored".to_owned(), AnalyticValue::Available(0.0));
        let (decision, _) = tick(&[web], &policy, &PlannerState::new(), 0);
        let weight = candidate(&decision, &out("web", 1)).weight;
        assert!(
            close(weight, expected),
            "{rule_analytics:?} {own:?}: {weight}"
        );
        assert!(
            close(decision.weights[0].weight, 1.0 - expected),
            "no action is 1 - max"
        );
    }
}

#[test]
fn edge_thresholds_weigh_nothing_instead_of_dividing_by_zero() {
    let mut policy = policy();
    policy.scaleout.threshold = 1.0;
    policy.scalein.threshold = 0.0;
    let (decision, _) = tick(&[busy("web"), idle("db")], &policy, &PlannerState::new(), 0);
    assert_eq!(decision.action, Action::None);
    assert_eq!(decision.reason, "no action: nothing crosses its threshold");
    let scale_out = candidate(&decision, &out("web", 1));
    assert_eq!(scale_out.weight, 0.0);
    assert!(
        scale_out
            .explanation
            .contains("threshold 1 can never be exceeded")
    );
    let scale_in = candidate(&decision, &scale_in("db", 1));
    assert_eq!(scale_in.weight, 0.0);
    assert!(scale_in.explanation.contains("no value can be below it"));
}

#[test]
fn unavailable_analytics_are_excluded_and_named() {
    let mut policy = policy();
    policy.scaleout.analytics = vec!["latency".to_owned()];
    let mut web = busy("web");
    web.analytics.insert(
        "latency".to_owned(),
        AnalyticValue::unavailable("metric \"resp_time\" has no value"),
    );
    let (decision, _) = tick(&[web], &policy, &PlannerState::new(), 0);
    assert_eq!(decision.action, out("web", 1));
    assert!(
        close(candidate(&decision, &out("web", 1)).weight, 1.0),
        "not averaged as a 0"
    );
    assert!(
        decision
            .reason
            .contains("latency left out: metric \"resp_time\" has no value"),
        "{}",
        decision.reason
    );
}

#[test]
fn missing_base_metric_and_non_base_rule_metric_are_named() {
    let mut policy = policy();
    policy.scaleout.metrics = vec![
        "cpu_avg".to_owned(),
        "mem_avg".to_owned(),
        "resp".to_owned(),
    ];
    let (decision, _) = tick(&[busy("web")], &policy, &PlannerState::new(), 0);
    let explanation = &candidate(&decision, &out("web", 1)).explanation;
    assert!(explanation.contains("mem_avg left out: no warmed-up sample of mem_avg"));
    assert!(
        explanation.contains("\"resp\" is not a base metric"),
        "{explanation}"
    );
}

#[test]
fn a_failed_start_here_blocks_scale_out_and_says_why() {
    // A node whose pull of the image was refused has no room for the service (the agent
    // zeroes it) and says why, so that it claims nothing and a node that can pull takes it.
    let mut web = busy("web");
    web.free_slots_here = 0;
    web.start_held = Some(StartHeld {
        error: "pull of image r/web:1 failed: unauthorized".to_owned(),
        ends_in_secs: 10,
    });
    let (decision, _) = tick(&[web.clone()], &policy(), &PlannerState::new(), 0);
    assert_eq!(decision.action, Action::None);
    assert_blocked(
        &decision,
        &out("web", 1),
        "this node's last start failed (pull of image r/web:1 failed: unauthorized); \
         it backs off for 10 s and leaves the start to nodes that can",
    );
    let weighed = candidate(&decision, &out("web", 1));
    assert!(
        !weighed
            .blocked_by
            .iter()
            .any(|g| g.contains("no free resources")),
        "{weighed:#?}"
    );
    // Once the backoff is over the node has room again, and scales out.
    web.start_held = None;
    web.free_slots_here = 4;
    let (decision, _) = tick(&[web], &policy(), &PlannerState::new(), 0);
    assert_eq!(decision.action, out("web", 1));
}

#[test]
fn no_free_resources_blocks_scale_out() {
    let mut web = busy("web");
    web.free_slots_here = 0;
    let (decision, _) = tick(&[web], &policy(), &PlannerState::new(), 0);
    assert_blocked(&decision, &out("web", 1), "no free resources on this node");
    assert_eq!(decision.action, Action::None);
    assert_eq!(
        decision.reason,
        "no action: weight 1.00, the heaviest, chosen by greedy; scale-out web (weight 1.00) \
         blocked: no free resources on this node for another instance"
    );
}

#[test]
fn only_a_scale_out_held_back_by_room_alone_counts_toward_saturation() {
    use crate::tick::saturation::held_by_room;
    let mut web = busy("web");
    web.free_slots_here = 0;
    let (decision, _) = tick(&[web.clone()], &policy(), &PlannerState::new(), 0);
    assert_eq!(held_by_room(&decision), [("web".to_owned(), 1)]);
    // Room here: it scales out, nothing is held back.
    web.free_slots_here = 4;
    let (decision, _) = tick(&[web.clone()], &policy(), &PlannerState::new(), 0);
    assert!(held_by_room(&decision).is_empty());
    // Held back by MaxInstances too: more room would not help.
    web.free_slots_here = 0;
    web.max_instances = Some(web.counted_instances());
    let (decision, _) = tick(&[web], &policy(), &PlannerState::new(), 0);
    assert!(held_by_room(&decision).is_empty(), "{decision:#?}");
}

#[test]
fn max_instances_blocks_scale_out() {
    // (cluster instances, pending here, max, blocked?)
    let cases = [
        (5, 0, 5, true),
        (4, 1, 5, true),
        (6, 0, 5, true),
        (4, 0, 5, false),
    ];
    for (cluster, pending, max, blocked) in cases {
        let mut web = busy("web");
        web.cluster_instances = cluster;
        web.pending_here = pending;
        web.max_instances = Some(max);
        let (decision, _) = tick(&[web], &policy(), &PlannerState::new(), 0);
        if blocked {
            assert_blocked(
                &decision,
                &out("web", 1),
                &format!("MaxInstances {max} reached"),
            );
        } else {
            assert_eq!(decision.action, out("web", 1));
        }
    }
}

#[test]
fn step_is_clamped_to_the_room_left() {
    // (max instances, free slots here, expected count, clamp note)
    let cases = [
        (Some(5), 4, 1, Some("Step 3 clamped to 1 by MaxInstances 5")),
        (
            None,
            2,
            2,
            Some("Step 3 clamped to 2 by free resources on this node"),
        ),
        (
            Some(9),
            2,
            2,
            Some("Step 3 clamped to 2 by free resources on this node"),
        ),
        (None, 4, 3, None),
    ];
    for (max, free, count, note) in cases {
        let mut policy = policy();
        policy.scaleout.step = 3;
        let mut web = busy("web");
        web.cluster_instances = 4;
        web.max_instances = max;
        web.free_slots_here = free;
        let (decision, _) = tick(&[web], &policy, &PlannerState::new(), 0);
        assert_eq!(decision.action, out("web", count), "{max:?} {free}");
        assert_eq!(
            candidate(&decision, &out("web", count)).clamped.as_deref(),
            note
        );
        if let Some(note) = note {
            assert!(decision.reason.ends_with(note), "{}", decision.reason);
        }
    }
}

#[test]
fn scale_in_needs_an_instance_here() {
    let mut db = idle("db");
    db.running_here = 0;
    db.cluster_instances = 3;
    let (decision, _) = tick(&[db], &policy(), &PlannerState::new(), 0);
    assert_blocked(
        &decision,
        &scale_in("db", 1),
        "no instance running on this node",
    );
}

#[test]
fn min_instances_blocks_scale_in() {
    // (instances, all on this node; min; step; expected action)
    let cases = [
        (2, 2, 1, None),
        (2, 3, 1, None),
        (3, 2, 1, Some(scale_in("db", 1))),
        (3, 1, 5, Some(scale_in("db", 2))), // clamped by MinInstances, not below it
    ];
    for (instances, min, step, expected) in cases {
        let mut policy = policy();
        policy.scalein.step = step;
        let mut db = idle("db");
        db.running_here = instances;
        db.cluster_instances = instances;
        db.min_instances = min;
        let (decision, _) = tick(&[db], &policy, &PlannerState::new(), 0);
        match expected {
            None => assert_blocked(
                &decision,
                &scale_in("db", 1),
                &format!("MinInstances {min}"),
            ),
            Some(action) => assert_eq!(decision.action, action, "{instances} {min} {step}"),
        }
    }
}

#[test]
fn base_service_never_scaled_below_one() {
    // (base service?, running here, step, expected action)
    let cases = [
        (true, 1, 1, Action::None),
        (true, 3, 5, scale_in("db", 2)),
        (true, 2, 1, scale_in("db", 1)),
        (false, 1, 1, scale_in("db", 1)),
    ];
    for (base, running, step, expected) in cases {
        let mut policy = policy();
        policy.scalein.step = step;
        let mut db = idle("db");
        db.base_service = base;
        db.running_here = running;
        db.cluster_instances = running;
        let (decision, _) = tick(&[db], &policy, &PlannerState::new(), 0);
        assert_eq!(
            decision.action, expected,
            "base {base}, {running} here, step {step}"
        );
        if expected.is_none() {
            assert_blocked(
                &decision,
                &scale_in("db", 1),
                "its last instance here stays",
            );
        }
    }
}

#[test]
fn lagging_cluster_view_counts_at_least_the_local_instances() {
    let mut db = idle("db");
    db.running_here = 2;
    db.cluster_instances = 0;
    db.min_instances = 1;
    let (decision, _) = tick(&[db], &policy(), &PlannerState::new(), 0);
    assert_eq!(decision.action, scale_in("db", 1));
}

#[test]
fn cooldown_blocks_second_scale_out() {
    let mut policy = policy();
    policy.cooldown_out_secs = 60;
    let web = [busy("web")];
    let (first, state) = tick(&web, &policy, &PlannerState::new(), 0);
    assert_eq!(first.action, out("web", 1));
    assert_eq!(state.last_scale("web").scaled_out, Some(Millis::ZERO));
    let (second, state) = tick(&web, &policy, &state, 30);
    assert_blocked(&second, &out("web", 1), "cooldown-out ends in 30 s");
    let (third, _) = tick(&web, &policy, &state, 60);
    assert_eq!(third.action, out("web", 1));
}

#[test]
fn a_step_taken_back_starts_no_cooldown_and_keeps_its_breach() {
    let mut policy = policy();
    policy.cooldown_out_secs = 60;
    policy.scaleout.period_secs = 10;
    let web = [busy("web")];
    // The breach begins at 0 and lasts its period at 10: a scale-out is decided.
    let (_, before) = tick(&web, &policy, &PlannerState::new(), 0);
    let (first, mut state) = tick(&web, &policy, &before, 10);
    assert_eq!(first.action, out("web", 1));
    assert_eq!(
        state.last_scale("web").scaled_out,
        Some(Millis::from_secs(10))
    );
    // The step it led to was withheld: as if it had not been decided.
    state.take_back(&first.action, &before);
    assert_eq!(state.last_scale("web"), before.last_scale("web"));
    assert_eq!(state.breach_started(&first.action), Some(Millis::ZERO));
    let (second, _) = tick(&web, &policy, &state, 11);
    assert_eq!(
        second.action,
        out("web", 1),
        "no cooldown, the breach still long enough"
    );
    // Not taken back, the same tick is held by the cooldown.
    let (_, kept) = tick(&web, &policy, &before, 10);
    let (held, _) = tick(&web, &policy, &kept, 11);
    assert_blocked(&held, &out("web", 1), "cooldown-out ends in 59 s");
}

#[test]
fn cooldown_in_counts_from_any_scale_action() {
    let mut policy = policy();
    policy.cooldown_in_secs = 100;
    let (first, state) = tick(&[busy("web")], &policy, &PlannerState::new(), 0);
    assert_eq!(first.action, out("web", 1));
    let mut quiet = idle("web");
    quiet.running_here = 2;
    quiet.cluster_instances = 2;
    let (second, state) = tick(std::slice::from_ref(&quiet), &policy, &state, 50);
    assert_blocked(&second, &scale_in("web", 1), "cooldown-in ends in 50 s");
    let (third, state) = tick(std::slice::from_ref(&quiet), &policy, &state, 100);
    assert_eq!(third.action, scale_in("web", 1));
    let (fourth, _) = tick(&[quiet], &policy, &state, 150);
    assert_blocked(&fourth, &scale_in("web", 1), "cooldown-in ends in 50 s");
}

#[test]
fn cluster_wide_last_scale_counts_for_cooldown() {
    let mut policy = policy();
    policy.cooldown_out_secs = 60;
    let mut web = busy("web");
    web.cluster_last_scale.scaled_out = Some(Millis::from_secs(10));
    let (decision, _) = tick(&[web], &policy, &PlannerState::new(), 20);
    assert_blocked(&decision, &out("web", 1), "cooldown-out ends in 50 s");
}

#[test]
fn period_requires_sustained_breach() {
    let mut policy = policy();
    policy.scaleout.period_secs = 60;
    let web = [busy("web")];
    let (at_0, state) = tick(&web, &policy, &PlannerState::new(), 0);
    assert_blocked(
        &at_0,
        &out("web", 1),
        "breach sustained 0 s of the 60 s Period",
    );
    let (at_30, state) = tick(&web, &policy, &state, 30);
    assert_blocked(
        &at_30,
        &out("web", 1),
        "breach sustained 30 s of the 60 s Period",
    );
    assert_eq!(state.breach_started(&out("web", 1)), Some(Millis::ZERO));
    let (at_60, state) = tick(&web, &policy, &state, 60);
    assert_eq!(at_60.action, out("web", 1));
    assert_eq!(
        state.breach_started(&out("web", 1)),
        None,
        "acting resets the breach"
    );
    let (at_90, _) = tick(&web, &policy, &state, 90);
    assert_blocked(&at_90, &out("web", 1), "breach sustained 0 s");
}

#[test]
fn calm_tick_restarts_the_period() {
    let mut policy = policy();
    policy.scaleout.period_secs = 60;
    let (_, state) = tick(&[busy("web")], &policy, &PlannerState::new(), 0);
    let (_, state) = tick(&[service("web", 0.5)], &policy, &state, 30);
    assert_eq!(state.breach_started(&out("web", 1)), None);
    let (at_60, state) = tick(&[busy("web")], &policy, &state, 60);
    assert_blocked(&at_60, &out("web", 1), "breach sustained 0 s");
    let (at_120, _) = tick(&[busy("web")], &policy, &state, 120);
    assert_eq!(at_120.action, out("web", 1));
}

#[test]
fn disabled_rules_give_no_candidates() {
    let policy = PolicyConfig::default();
    let (decision, _) = tick(&[busy("web"), idle("db")], &policy, &PlannerState::new(), 0);
    assert_eq!(decision.action, Action::None);
    assert_eq!(
        decision.weights.len(),
        1,
        "only no action: {:#?}",
        decision.weights
    );
    assert_eq!(decision.weights[0].weight, 1.0);
    assert_eq!(decision.reason, "no action: no policy rule is enabled");
}

#[test]
fn greedy_ties_prefer_scale_out_then_no_action_then_scale_in() {
    // web: scale-out weight (0.875 - 0.75) / 0.25 = 0.5; db: scale-in 1 - 0.175 / 0.35 = 0.5;
    // so no action weighs 1 - 0.5 = 0.5 too.
    let services = [service("web", 0.875), service("db", 0.175)];
    let (all, _) = tick(&services, &policy(), &PlannerState::new(), 0);
    assert_eq!(all.action, out("web", 1), "{}", all.reason);
    let mut no_scale_out = policy();
    no_scale_out.scaleout.enable = false;
    let (without_out, _) = tick(&services, &no_scale_out, &PlannerState::new(), 0);
    assert_eq!(without_out.action, Action::None, "{}", without_out.reason);
    // Equal weights of one kind: by service name.
    let (by_name, _) = tick(
        &[busy("web"), busy("api")],
        &policy(),
        &PlannerState::new(),
        0,
    );
    assert_eq!(by_name.action, out("api", 1));
}

#[test]
fn no_action_weight_ignores_blocked_candidates() {
    let mut full = busy("api");
    full.free_slots_here = 0;
    let services = [full, service("web", 0.875)];
    let (decision, _) = tick(&services, &policy(), &PlannerState::new(), 0);
    assert!(
        close(decision.weights[0].weight, 0.5),
        "{:#?}",
        decision.weights
    );
    assert_eq!(
        decision.action,
        out("web", 1),
        "0.5 ties 0.5: scale-out is safer"
    );
}

/// `web` runs two idle instances here; `batch` runs nowhere here, cannot fit, and is busy
/// elsewhere in the cluster.
fn swap_pair() -> [ServiceSnapshot; 2] {
    let mut web = service("web", 0.2);
    web.running_here = 2;
    web.cluster_instances = 2;
    let mut batch = service("batch", 0.8);
    batch.running_here = 0;
    batch.cluster_instances = 3;
    batch.free_slots_here = 0;
    [web, batch]
}

fn swap_action() -> Action {
    Action::Swap {
        stop: "web".to_owned(),
        start: "batch".to_owned(),
    }
}

#[test]
fn swap_replaces_an_idle_service_with_a_busy_one_that_cannot_fit() {
    let (decision, state) = tick(&swap_pair(), &swap_policy(), &PlannerState::new(), 5);
    assert_eq!(decision.action, swap_action(), "{}", decision.reason);
    assert!(close(candidate(&decision, &swap_action()).weight, 1.0));
    assert_eq!(
        decision.reason,
        "swap web for batch: weight 1.00 (cpu_avg web 0.20, batch 0.80), the heaviest, chosen \
         by greedy"
    );
    assert_eq!(
        state.last_scale("web").scaled_in,
        Some(Millis::from_secs(5))
    );
    assert_eq!(
        state.last_scale("batch").scaled_out,
        Some(Millis::from_secs(5))
    );
    let reverse = decision
        .weights
        .iter()
        .find(|c| matches!(&c.action, Action::Swap { stop, .. } if stop == "batch"));
    assert!(
        reverse.is_none(),
        "batch runs nothing here, so it cannot be stopped"
    );
}

#[test]
fn swap_guards() {
    type Change = fn(&mut [ServiceSnapshot; 2]);
    let cases: [(Change, &str); 6] = [
        (
            |s| s[1].free_slots_here = 1,
            "batch fits on this node without stopping web",
        ),
        (
            |s| s[1].cpu_number = 2,
            "cpunumber differs (web 1, batch 2)",
        ),
        (
            |s| {
                s[0].base_service = true;
                s[0].running_here = 1;
            },
            "web is a base service of this node with one instance here",
        ),
        (
            |s| s[0].min_instances = 2,
            "web would fall below MinInstances 2",
        ),
        (
            |s| s[1].max_instances = Some(3),
            "batch is at MaxInstances 3",
        ),
        (
            |s| s[1].cluster_last_scale.scaled_out = Some(Millis::from_secs(4)),
            "cooldown-out of batch ends in 9 s",
        ),
    ];
    for (change, fragment) in cases {
        let mut services = swap_pair();
        change(&mut services);
        let mut policy = swap_policy();
        policy.cooldown_out_secs = 10;
        let (decision, _) = tick(&services, &policy, &PlannerState::new(), 5);
        assert_blocked(&decision, &swap_action(), fragment);
    }
}

#[test]
fn roulette_plan_frequencies_follow_the_weights() {
    // scale-out web weighs 0.5, so does no action: each about half of 10,000 draws.
    let services = [service("web", 0.875)];
    let mut rng = StdRng::seed_from_u64(2024);
    let mut scale_outs = 0;
    for _ in 0..10_000 {
        let (decision, _) = plan_with(
            PlannerStrategy::ProbCumulative,
            &services,
            &policy(),
            &PlannerState::new(),
            0,
            &mut rng,
        );
        assert!(decision.draw.is_some());
        if decision.action == out("web", 1) {
            scale_outs += 1;
        }
    }
    let frequency = f64::from(scale_outs) / 10_000.0;
    assert!((frequency - 0.5).abs() <= 0.02, "{frequency}");
}

#[test]
fn same_seed_same_decision() {
    let services = [service("web", 0.875), service("db", 0.1)];
    for strategy in [PlannerStrategy::ProbCumulative, PlannerStrategy::ProbDelta] {
        let run = || {
            let mut rng = StdRng::seed_from_u64(99);
            plan_with(
                strategy,
                &services,
                &policy(),
                &PlannerState::new(),
                0,
                &mut rng,
            )
        };
        assert_eq!(run(), run());
        let (decision, _) = run();
        assert!(
            decision.reason.contains(&format!("with {strategy}")),
            "{}",
            decision.reason
        );
    }
}

#[test]
fn dry_run_decides_and_records_identically_but_flagged() {
    let services = [busy("web")];
    let policy = policy();
    let run = |dry_run| {
        let input = PlanInput {
            services: &services,
            policy: &policy,
            strategy: PlannerStrategy::Greedy,
            dry_run,
            now: Millis::from_secs(7),
        };
        plan(&input, &PlannerState::new(), &mut StdRng::seed_from_u64(0))
    };
    let (wet, wet_state) = run(false);
    let (dry, dry_state) = run(true);
    assert!(dry.dry_run && !wet.dry_run);
    assert_eq!(dry.action, wet.action);
    assert_eq!(dry.weights, wet.weights);
    assert_eq!(dry.reason, format!("dry run: {}", wet.reason));
    assert_eq!(dry_state, wet_state, "cooldowns run in dry-run too");
    assert!(wet.is_executable() && !dry.is_executable());
}

#[test]
fn state_forgets_services_no_longer_planned() {
    let mut state = PlannerState::new();
    state.record(&out("gone", 1), Millis::from_secs(1));
    assert_eq!(
        state.last_scale("gone").scaled_out,
        Some(Millis::from_secs(1))
    );
    let (_, state) = tick(&[service("web", 0.5)], &policy(), &state, 2);
    assert_eq!(state.last_scale("gone"), LastScale::default());
}

/// Target tracking on `cpu_avg` at 0.5: scale out above 0.75 (growth ≤ 100 %), scale in
/// below 0.25 with a 60 s stabilization window.
fn target_policy() -> PolicyConfig {
    let tracking = |threshold: f64| PolicyRule {
        mode: common::config::RuleMode::Target,
        target: Some(0.5),
        ..rule(threshold)
    };
    PolicyConfig {
        scalein: PolicyRule {
            stabilization_secs: 60,
            ..tracking(0.25)
        },
        scaleout: tracking(0.75),
        ..policy()
    }
}

fn with_counts(
    mut snapshot: ServiceSnapshot,
    cluster: u32,
    here: u32,
    free: u32,
) -> ServiceSnapshot {
    snapshot.cluster_instances = cluster;
    snapshot.running_here = here;
    snapshot.free_slots_here = free;
    snapshot
}

#[test]
fn target_tracking_asks_for_the_count_the_load_calls_for_beyond_this_nodes_room() {
    // 4 instances at 0.9 with a target of 0.5: ceil(4 × 0.9 / 0.5) = 8, so 4 more, although
    // this node has room for one: the other agents fill the rest.
    let web = with_counts(service("web", 0.9), 4, 1, 1);
    let (decision, _) = tick(&[web], &target_policy(), &PlannerState::new(), 100);
    assert_eq!(decision.action, out("web", 4));
    assert!(
        decision
            .reason
            .contains("ceil(4 × cpu_avg 0.90 / 0.50) = 8"),
        "{}",
        decision.reason
    );
    // A full node still decides: filling is the others' job.
    let full = with_counts(service("web", 0.9), 4, 1, 0);
    let (decision, _) = tick(&[full], &target_policy(), &PlannerState::new(), 100);
    assert_eq!(decision.action, out("web", 4));
}

#[test]
fn target_tracking_growth_is_limited_and_bounded_by_max() {
    let mut policy = target_policy();
    policy.scaleout.max_growth_percent = 50;
    let web = with_counts(service("web", 1.0), 4, 1, 8);
    let (decision, _) = tick(
        std::slice::from_ref(&web),
        &policy,
        &PlannerState::new(),
        100,
    );
    assert_eq!(decision.action, out("web", 2), "{}", decision.reason);
    let mut bounded = web;
    bounded.max_instances = Some(5);
    let (decision, _) = tick(&[bounded], &target_policy(), &PlannerState::new(), 100);
    assert_eq!(decision.action, out("web", 1), "{}", decision.reason);
}

#[test]
fn a_target_tracking_scale_in_waits_for_its_stabilization_window() {
    let policy = target_policy();
    // Busy at t = 100: the recommendation is 8.
    let busy_web = with_counts(service("web", 1.0), 4, 4, 0);
    let (_, state) = tick(&[busy_web], &policy, &PlannerState::new(), 100);
    // Idle at t = 130: ceil(4 × 0.1 / 0.5) = 1, but 8 was recommended 30 s ago.
    let idle_web = with_counts(service("web", 0.1), 4, 4, 0);
    let (decision, state) = tick(std::slice::from_ref(&idle_web), &policy, &state, 130);
    assert_eq!(decision.action, Action::None, "{}", decision.reason);
    // At t = 161 the peak is out of the 60 s window: down to 1 at once.
    let (decision, _) = tick(&[idle_web], &policy, &state, 161);
    assert_eq!(decision.action, scale_in("web", 3), "{}", decision.reason);
}

#[test]
fn a_declared_missing_value_lets_an_idle_service_scale_in() {
    let mut policy = target_policy();
    policy.scalein.stabilization_secs = 0;
    let mut idle_web = with_counts(service("web", 0.0), 3, 3, 0);
    idle_web.cpu_avg = None;
    idle_web.min_instances = 1;
    // Without a declaration, no sample means no weight.
    let (decision, _) = tick(&[idle_web.clone()], &policy, &PlannerState::new(), 100);
    assert_eq!(decision.action, Action::None, "{}", decision.reason);
    policy.scalein.missing = Some(0.0);
    let (decision, _) = tick(&[idle_web], &policy, &PlannerState::new(), 100);
    assert_eq!(decision.action, scale_in("web", 2), "{}", decision.reason);
}

#[test]
fn a_rule_window_smooths_a_one_tick_spike() {
    let mut smoothed = policy();
    smoothed.scaleout.window_secs = 10;
    smoothed.scaleout.smoothing = common::config::Smoothing::Sliding;
    let mut state = PlannerState::new();
    for t in 100..105 {
        (_, state) = tick(&[service("web", 0.5)], &smoothed, &state, t);
    }
    // One sample at 1.0 after five at 0.5: the mean over 10 s is 0.58, below 0.75.
    let (decision, _) = tick(&[service("web", 1.0)], &smoothed, &state, 105);
    assert_eq!(decision.action, Action::None, "{}", decision.reason);
    // Without the window the same sample scales out.
    let (decision, _) = tick(&[service("web", 1.0)], &policy(), &PlannerState::new(), 105);
    assert_eq!(decision.action, out("web", 1));
}

#[test]
fn a_service_policy_overrides_the_cluster_policy_and_says_so() {
    let mut web = service("web", 0.6);
    // The cluster's threshold (0.75) is not crossed; web's own (0.1) is, by far.
    let mut own = policy();
    own.scaleout.threshold = 0.1;
    web.policy = Some(own);
    let (decision, _) = tick(
        &[web, service("db", 0.6)],
        &policy(),
        &PlannerState::new(),
        100,
    );
    assert_eq!(decision.action, out("web", 1));
    assert!(
        decision.reason.contains("web's own policy"),
        "{}",
        decision.reason
    );
    let db = candidate(&decision, &out("db", 1));
    assert_eq!(db.weight, 0.0);
}

#[test]
fn fast_detection_crosses_a_threshold_on_the_values_the_rules_weigh() {
    // Rules on cpu_avg plus the service's own analytics (none named by the rules).
    let own = vec!["load".to_owned()];
    let mut disabled_out = policy();
    disabled_out.scaleout.enable = false;
    let mut named = policy();
    named.scaleout.analytics = vec!["latency".to_owned()];
    // (policy, cpu_avg, load, latency) -> (scale-out, scale-in)
    let cases = [
        (policy(), Some(0.9), None, None, (true, false)),
        (policy(), Some(0.75), None, None, (false, false)),
        (policy(), Some(0.2), None, None, (false, true)),
        (policy(), Some(0.5), Some(0.8), None, (true, false)),
        (policy(), Some(0.5), Some(0.1), None, (false, true)),
        (policy(), Some(0.9), Some(0.1), None, (true, true)),
        (policy(), None, None, None, (false, false)),
        (disabled_out, Some(0.9), None, None, (false, false)),
        // A rule that names its analytics weighs those, not the service's own.
        (named.clone(), Some(0.5), Some(0.9), None, (false, false)),
        (named, Some(0.5), Some(0.9), Some(0.8), (true, false)),
    ];
    for (policy, cpu, load, latency, (out, r#in)) in cases {
        let value = |name: &str| match name {
            "cpu_avg" => cpu,
            "load" => load,
            "latency" => latency,
            _ => None,
        };
        assert_eq!(
            crossing(&policy, &own, value),
            Crossing {
                scale_out: out,
                scale_in: r#in
            },
            "cpu {cpu:?}, load {load:?}, latency {latency:?}"
        );
    }
}

#[test]
fn a_rule_naming_gru_s_memory_avg_weighs_the_mem_avg_samples() {
    let mut policy = policy();
    policy.scaleout.metrics = vec!["memory_avg".to_owned()];
    let mut web = busy("web");
    web.mem_avg = Some(1.0);
    let (decision, _) = tick(&[web], &policy, &PlannerState::new(), 0);
    assert_eq!(decision.action, out("web", 1));
    let explanation = &candidate(&decision, &out("web", 1)).explanation;
    assert!(!explanation.contains("not a base metric"), "{explanation}");
    assert!(!explanation.contains("left out"), "{explanation}");
}
