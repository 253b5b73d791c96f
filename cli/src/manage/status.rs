//! `status`: services × nodes, each cell the node's running instances of the service (and
//! how many are ready, when not all are) and their current load (mean CPU and the analytics the node computes, from the summary it
//! would give its friends, `GET /gru/v1/shared`). `status --watch` redraws it every few
//! seconds until Ctrl-C or `q`: a dashboard for operators who have none.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::agent_views::{AnalyticView, SharedService, SharedView};
use super::inspect::{split, with_unanswered};
use super::output::{Format, Outcome, Status, percent, table};
use super::session::{Ctx, Session};
use super::terminal::QuitKeys;

/// One cell: `2 running`, `1 ready` when not all are (the others are starting or fail
/// their readiness check: not in discovery), `cpu 35%`, then each analytic.
fn cell(service: &SharedService) -> String {
    let mut lines = vec![format!("{} running", service.instances)];
    if let Some(ready) = service.ready.filter(|r| *r != service.instances) {
        lines.push(format!("{ready} ready"));
    }
    if let Some(cpu) = service.metrics.get("cpu_avg") {
        lines.push(format!("cpu {}", percent(*cpu)));
    }
    for (name, value) in &service.analytics {
        match value {
            AnalyticView::Value(v) => lines.push(format!("{name} {v:.2}")),
            AnalyticView::Unavailable { .. } => lines.push(format!("{name} n/a")),
        }
    }
    lines.join("\n")
}

pub async fn status(ctx: &Ctx<'_>) -> Outcome {
    let nodes = ctx.all_nodes();
    if nodes.endpoints.is_empty() && nodes.broken.is_empty() {
        return Outcome::ok(
            format!("cluster {} has no live node", ctx.cluster()),
            json!({"nodes": {}, "services": {}}),
        );
    }
    let (views, failures) = split(ctx.get_each::<SharedView>(&nodes, "shared").await);
    let node_names = ctx.state.node_names();
    let services: BTreeSet<String> = ctx
        .state
        .services
        .keys()
        .cloned()
        .chain(views.values().flat_map(|v| v.services.keys().cloned()))
        .collect();
    let mut header: Vec<String> = vec!["service".to_owned()];
    for name in &node_names {
        let state = match (ctx.state.nodes.get(name), views.contains_key(name)) {
            (_, false) => "no answer",
            (Some(r), true) if r.active => "active",
            _ => "inactive",
        };
        header.push(format!("{name}\n{state}"));
    }
    header.push("total".to_owned());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut rows = table(&header_refs);
    let mut json_services = Map::new();
    for service in &services {
        let mut row = vec![service.clone()];
        let mut total = 0;
        let mut per_node = Map::new();
        for node in &node_names {
            match views.get(node) {
                Some(view) => {
                    let here = view.services.get(service).cloned().unwrap_or_default();
                    total += here.instances;
                    row.push(if here.instances == 0 {
                        "-".to_owned()
                    } else {
                        cell(&here)
                    });
                    per_node.insert(node.clone(), json!(here));
                }
                None => row.push("?".to_owned()),
            }
        }
        row.push(total.to_string());
        rows.add_row(row);
        json_services.insert(service.clone(), json!({"total": total, "nodes": per_node}));
    }
    let json_nodes: BTreeMap<&String, Value> = node_names
        .iter()
        .map(|n| {
            let active = ctx.state.nodes.get(n).is_some_and(|r| r.active);
            (
                n,
                json!({"active": active, "answered": views.contains_key(n)}),
            )
        })
        .collect();
    let text = if services.is_empty() {
        format!("cluster {} has no service", ctx.cluster())
    } else {
        rows.to_string()
    };
    let outcome = Outcome::ok(
        text,
        json!({"nodes": json_nodes, "services": json_services}),
    );
    with_unanswered(outcome, "status", &failures)
}

/// Redraws `status` every `every` until Ctrl-C, or `q` when standard input is a terminal.
pub async fn watch(session: &Session, every: Duration) -> Outcome {
    let keys = QuitKeys::start();
    let clear =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && session.format() == Format::Text;
    let mut worst = Status::Ok;
    let mut redraws = 0u64;
    loop {
        let outcome = match session.ctx().await {
            Ok(ctx) => status(&ctx).await,
            Err(outcome) => outcome,
        };
        worst = worst.max(outcome.status);
        redraws += 1;
        let mut out = std::io::stdout().lock();
        match session.format() {
            Format::Text => {
                if clear {
                    // Home and clear: the table replaces the previous one.
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                let stop_hint = if keys.is_some() {
                    "q or Ctrl-C"
                } else {
                    "Ctrl-C"
                };
                let _ = writeln!(out, "every {} s ({stop_hint} to stop)", every.as_secs());
                let _ = writeln!(out, "{}", outcome.text);
                if let Some(error) = &outcome.error {
                    let _ = writeln!(out, "error: {error}");
                }
            }
            Format::Json => {
                let _ = writeln!(out, "{}", outcome.json);
            }
        }
        let _ = out.flush();
        drop(out);
        let quit = async {
            match &keys {
                Some(keys) => keys.pressed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => break,
            () = quit => break,
        }
    }
    drop(keys);
    let outcome = Outcome::ok("", json!({"watch": "stopped", "redraws": redraws}));
    if worst == Status::Ok {
        outcome
    } else {
        outcome.with_failure("status: some redraws could not reach every node")
    }
}
