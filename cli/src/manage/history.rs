//! `why <node> [service]`: the node's latest decisions, each with every candidate's weight,
//! the draw and the planner's reason. `events [count]`: every node's executed actions,
//! merged newest first, each tagged with its node.

use gru_agent::mape::{Action, CandidateWeight, Decision};
use serde_json::json;

use super::agent_views::{ActionRecord, ActionsView, DecisionsView};
use super::grammar::Targets;
use super::inspect::{split, with_unanswered};
use super::output::{Outcome, age, now_millis, table};
use super::session::Ctx;

/// Decisions `why` shows.
pub const WHY_DECISIONS: usize = 3;
/// Decisions asked for when filtering by service (the agent keeps 256).
const WHY_SEARCH: usize = 256;

fn concerns(action: &Action, service: &str) -> bool {
    match action {
        Action::None => false,
        Action::ScaleOut { service: s, .. } | Action::ScaleIn { service: s, .. } => s == service,
        Action::Swap { stop, start } => stop == service || start == service,
    }
}

/// The decision as `why` shows it for `service`: only its candidates (and "no action").
fn about(decision: &Decision, service: Option<&str>) -> Option<Decision> {
    let Some(service) = service else {
        return Some(decision.clone());
    };
    let weights: Vec<CandidateWeight> = decision
        .weights
        .iter()
        .filter(|w| w.action.is_none() || concerns(&w.action, service))
        .cloned()
        .collect();
    let relevant =
        concerns(&decision.action, service) || weights.iter().any(|w| !w.action.is_none());
    relevant.then(|| Decision {
        weights,
        ..decision.clone()
    })
}

fn decision_text(decision: &Decision, now: u64) -> String {
    let draw = decision
        .draw
        .map_or_else(|| "no draw (greedy)".to_owned(), |d| format!("draw {d:.3}"));
    let dry = if decision.dry_run { ", dry run" } else { "" };
    let mut text = format!(
        "{} · {} · {draw}{dry}\n  reason: {}\n",
        age(now, decision.at.0),
        decision.action,
        decision.reason
    );
    let mut rows = table(&["candidate", "weight", "how", "blocked by"]);
    for w in &decision.weights {
        let mut blocked = w.blocked_by.join("; ");
        if let Some(clamped) = &w.clamped {
            if !blocked.is_empty() {
                blocked.push_str("; ");
            }
            blocked.push_str(&format!("clamped: {clamped}"));
        }
        rows.add_row(vec![
            w.action.to_string(),
            format!("{:.3}", w.weight),
            w.explanation.to_string(),
            if blocked.is_empty() {
                "-".to_owned()
            } else {
                blocked
            },
        ]);
    }
    for line in rows.to_string().lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

pub async fn why(ctx: &Ctx<'_>, node: &str, service: Option<&str>) -> Outcome {
    let nodes = match ctx.state.resolve(&Targets::Nodes(vec![node.to_owned()])) {
        Ok(nodes) => nodes,
        Err(why) => return Outcome::failed(why),
    };
    if let Some(service) = service
        && let Err(why) = ctx.state.service(service)
    {
        return Outcome::failed(why);
    }
    let limit = if service.is_some() {
        WHY_SEARCH
    } else {
        WHY_DECISIONS
    };
    let path = format!("decisions?limit={limit}");
    let mut results = ctx.get_each::<DecisionsView>(&nodes, &path).await;
    let view = match results.pop() {
        Some((_, Ok(view))) => view,
        Some((node, Err(why))) => return Outcome::failed(format!("why: {node}: {why}")),
        None => return Outcome::failed(format!("why: {node}: no answer")),
    };
    let shown: Vec<Decision> = view
        .decisions
        .iter()
        .filter_map(|d| about(d, service))
        .take(WHY_DECISIONS)
        .collect();
    let scope = service.map_or_else(String::new, |s| format!(" about {s}"));
    let text = if shown.is_empty() {
        let active = ctx.state.nodes.get(node).is_some_and(|n| n.active);
        if active {
            format!("{node} has taken no decision{scope} yet")
        } else {
            format!(
                "{node} has taken no decision{scope}: its loop is stopped (`start agent {node}`)"
            )
        }
    } else {
        let now = now_millis();
        let mut text = format!("latest decisions of {node}{scope}, newest first\n");
        for decision in &shown {
            text.push_str(&decision_text(decision, now));
        }
        text.trim_end().to_owned()
    };
    Outcome::ok(
        text,
        json!({"node": node, "service": service, "total": view.total, "decisions": shown}),
    )
}

pub async fn events(ctx: &Ctx<'_>, count: usize) -> Outcome {
    let nodes = ctx.all_nodes();
    let path = format!("actions?limit={count}");
    let (views, failures) = split(ctx.get_each::<ActionsView>(&nodes, &path).await);
    let mut merged: Vec<(String, ActionRecord)> = views
        .into_iter()
        .flat_map(|(node, view)| view.actions.into_iter().map(move |a| (node.clone(), a)))
        .collect();
    // Newest first; a tie keeps node order, so the list is the same on every call.
    merged.sort_by(|(na, a), (nb, b)| b.at.cmp(&a.at).then(na.cmp(nb)));
    merged.truncate(count);
    let now = now_millis();
    let mut rows = table(&["when", "node", "action", "service", "instance", "result"]);
    for (node, a) in &merged {
        rows.add_row(vec![
            age(now, a.at),
            node.clone(),
            a.action.clone(),
            a.service.clone(),
            a.instance.clone().unwrap_or_else(|| "-".to_owned()),
            match &a.reason {
                Some(reason) => format!("{} ({reason})", a.result),
                None => a.result.clone(),
            },
        ]);
    }
    let text = if merged.is_empty() {
        "no action recorded yet".to_owned()
    } else {
        rows.to_string()
    };
    let events: Vec<_> = merged
        .iter()
        .map(|(node, a)| {
            json!({"node": node, "at": a.at, "action": a.action, "service": a.service,
                   "instance": a.instance, "result": a.result, "reason": a.reason})
        })
        .collect();
    with_unanswered(
        Outcome::ok(text, json!({"events": events})),
        "events",
        &failures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gru_agent::mape::Millis;

    fn weight(action: Action, weight: f64) -> CandidateWeight {
        CandidateWeight {
            action,
            weight,
            explanation: Default::default(),
            blocked_by: Default::default(),
            clamped: None,
        }
    }

    fn out(service: &str) -> Action {
        Action::ScaleOut {
            service: service.to_owned(),
            count: 1,
        }
    }

    fn decision(action: Action, weights: Vec<CandidateWeight>) -> Decision {
        Decision {
            action,
            weights,
            draw: Some(0.5),
            reason: "r".into(),
            dry_run: false,
            at: Millis(1),
        }
    }

    #[test]
    fn a_service_filter_keeps_its_candidates_and_no_action() {
        let d = decision(
            Action::None,
            vec![
                weight(Action::None, 0.6),
                weight(out("web"), 0.4),
                weight(out("db"), 0.1),
            ],
        );
        let web = about(&d, Some("web")).expect("web was weighed");
        let kept: Vec<String> = web.weights.iter().map(|w| w.action.to_string()).collect();
        assert_eq!(kept, ["no action", "scale-out web by 1"]);
        assert!(about(&d, Some("cache")).is_none(), "cache was not weighed");
        assert_eq!(about(&d, None).map(|d| d.weights.len()), Some(3));
        let swap = decision(
            Action::Swap {
                stop: "db".into(),
                start: "web".into(),
            },
            vec![weight(
                Action::Swap {
                    stop: "db".into(),
                    start: "web".into(),
                },
                0.9,
            )],
        );
        assert!(about(&swap, Some("db")).is_some());
    }

    #[test]
    fn a_decision_reads_with_its_draw_reason_and_weights() {
        let mut blocked = weight(out("db"), 0.7);
        blocked.blocked_by = vec!["cooldown-out ends in 3 s".to_owned()].into();
        let d = decision(
            out("web"),
            vec![weight(Action::None, 0.3), weight(out("web"), 0.62), blocked],
        );
        let text = decision_text(&d, 5_001);
        for needle in [
            "5 s ago · scale-out web by 1 · draw 0.500",
            "reason: r",
            "0.620",
            "cooldown-out ends in 3 s",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }
}
