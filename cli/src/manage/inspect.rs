//! Read commands: `list nodes|services`, `show node|service|cluster`.
//!
//! Records come from etcd (the state every command starts from); what only an agent knows
//! (its instances, whether its configuration loaded) is asked from it. A node that does
//! not answer is shown as such, named in the error, and fails the command, while the
//! others are shown in full.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::agent_views::{NodeView, ServicesView};
use super::cluster_state::NodeRecord;
use super::grammar::{NodeSection, Targets};
use super::output::{Outcome, age, human_bytes, now_millis, table};
use super::session::Ctx;

/// Marks `outcome` failed when some nodes could not be asked, listing them under its text.
pub fn with_unanswered(
    mut outcome: Outcome,
    command: &str,
    failures: &[(String, String)],
) -> Outcome {
    if failures.is_empty() {
        return outcome;
    }
    for (node, why) in failures {
        outcome.text.push_str(&format!("\n  {node}: FAILED: {why}"));
    }
    if let Value::Object(map) = &mut outcome.json {
        let errors: Map<String, Value> = failures
            .iter()
            .map(|(n, why)| (n.clone(), Value::String(why.clone())))
            .collect();
        map.insert("node_errors".to_owned(), Value::Object(errors));
    }
    let nodes: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    outcome.with_failure(format!(
        "{command}: {} node(s) did not answer ({})",
        failures.len(),
        nodes.join(", ")
    ))
}

/// Splits per-node results into answers and failures.
pub fn split<T>(
    results: Vec<(String, Result<T, String>)>,
) -> (BTreeMap<String, T>, Vec<(String, String)>) {
    let mut answers = BTreeMap::new();
    let mut failures = Vec::new();
    for (node, result) in results {
        match result {
            Ok(answer) => {
                answers.insert(node, answer);
            }
            Err(why) => failures.push((node, why)),
        }
    }
    (answers, failures)
}

fn resources_text(record: &NodeRecord) -> (String, String) {
    match &record.resources {
        Some(r) => (r.total_cpus.to_string(), human_bytes(r.total_memory_bytes)),
        None => ("?".to_owned(), "?".to_owned()),
    }
}

/// `-`, `draining` or `drained` (`?` when the agent did not answer).
fn drain_text(view: Option<&NodeView>) -> &'static str {
    match view.map(|v| v.drain) {
        None => "?",
        Some(None) => "-",
        Some(Some(d)) if d.done => "drained",
        Some(Some(_)) => "draining",
    }
}

pub async fn list_nodes(ctx: &Ctx<'_>) -> Outcome {
    let nodes = ctx.all_nodes();
    let (views, failures) = split(ctx.get_each::<NodeView>(&nodes, "node").await);
    let mut rows = table(&[
        "node",
        "address",
        "active",
        "cpus",
        "memory",
        "instances",
        "cpu used",
        "memory used",
        "free cores",
        "drain",
    ]);
    let mut json_nodes = Vec::new();
    for record in ctx.state.nodes.values() {
        let (cpus, memory) = resources_text(record);
        let view = views.get(&record.name);
        let instances = view.map(|v| v.instances.running);
        let usage = view.and_then(|v| v.usage);
        let unknown = || "?".to_owned();
        rows.add_row(vec![
            record.name.clone(),
            record.address(),
            if record.active { "yes" } else { "no" }.to_owned(),
            cpus,
            memory,
            instances.map_or_else(unknown, |n| n.to_string()),
            usage.map_or_else(unknown, |u| format!("{:.2}", u.cpu_used_cores)),
            usage.map_or_else(unknown, |u| human_bytes(u.memory_used_bytes)),
            usage.map_or_else(unknown, |u| u.free_cores.to_string()),
            drain_text(view).to_owned(),
        ]);
        json_nodes.push(json!({
            "name": record.name,
            "address": record.address(),
            "active": record.active,
            "cpus": record.resources.as_ref().map(|r| r.total_cpus),
            "memory_bytes": record.resources.as_ref().map(|r| r.total_memory_bytes),
            "base_services": record.constraints.base_services,
            "instances": instances,
            "cpu_used_cores": usage.map(|u| u.cpu_used_cores),
            "memory_used_bytes": usage.map(|u| u.memory_used_bytes),
            "free_cores": usage.map(|u| u.free_cores),
            "drain": view.map(|v| drain_text(Some(v))),
        }));
    }
    let text = if ctx.state.nodes.is_empty() {
        format!(
            "cluster {} has no live node (start agents with `gru join {}`)",
            ctx.cluster(),
            ctx.cluster()
        )
    } else {
        rows.to_string()
    };
    with_unanswered(
        Outcome::ok(text, json!({ "nodes": json_nodes })),
        "list nodes",
        &failures,
    )
}

pub async fn list_services(ctx: &Ctx<'_>) -> Outcome {
    let nodes = ctx.all_nodes();
    let (views, failures) = split(ctx.get_each::<ServicesView>(&nodes, "services").await);
    let mut rows = table(&[
        "service",
        "image",
        "min",
        "max",
        "cpus",
        "memory",
        "base service of",
        "running",
    ]);
    let mut json_services = Vec::new();
    for (name, descriptor) in &ctx.state.services {
        let base_of: Vec<String> = ctx
            .state
            .nodes
            .values()
            .filter(|n| n.constraints.base_services.contains(name))
            .map(|n| n.name.clone())
            .collect();
        let running: usize = views.values().map(|v| v.running(name)).sum();
        let ready: usize = views.values().map(|v| v.ready(name)).sum();
        // `2 (1 ready)` when some are starting or fail their readiness check.
        let running_cell = if ready == running {
            running.to_string()
        } else {
            format!("{running} ({ready} ready)")
        };
        match descriptor {
            Ok(d) => {
                let memory = d.configuration.memory.map(|m| m.bytes());
                rows.add_row(vec![
                    name.clone(),
                    d.image.clone(),
                    d.min_instances.to_string(),
                    d.max_instances
                        .map_or_else(|| "-".to_owned(), |m| m.to_string()),
                    d.configuration.cpu_number.to_string(),
                    memory.map_or_else(|| "-".to_owned(), human_bytes),
                    base_of.join(", "),
                    running_cell,
                ]);
                json_services.push(json!({
                    "name": name, "image": d.image, "min_instances": d.min_instances,
                    "max_instances": d.max_instances, "cpunumber": d.configuration.cpu_number,
                    "memory_bytes": memory, "base_service_of": base_of, "running": running,
                    "ready": ready,
                }));
            }
            Err(why) => {
                rows.add_row(vec![
                    name.clone(),
                    format!("invalid: {why}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    base_of.join(", "),
                    running_cell,
                ]);
                json_services.push(json!({"name": name, "invalid": why, "base_service_of": base_of, "running": running, "ready": ready}));
            }
        }
    }
    let text = if ctx.state.services.is_empty() {
        format!(
            "cluster {} has no service (push a configuration with `gru config push`)",
            ctx.cluster()
        )
    } else {
        rows.to_string()
    };
    with_unanswered(
        Outcome::ok(text, json!({ "services": json_services })),
        "list services",
        &failures,
    )
}

pub async fn show_node(ctx: &Ctx<'_>, targets: &Targets, section: Option<NodeSection>) -> Outcome {
    let nodes = match ctx.state.resolve(targets) {
        Ok(nodes) => nodes,
        Err(why) => return Outcome::failed(why),
    };
    let sections: Vec<NodeSection> = section.map_or_else(|| NodeSection::ALL.to_vec(), |s| vec![s]);
    let wants_status = sections.contains(&NodeSection::Status);
    let (views, failures) = if wants_status {
        split(ctx.get_each::<NodeView>(&nodes, "node").await)
    } else {
        (BTreeMap::new(), Vec::new())
    };
    let names: Vec<&str> = nodes
        .endpoints
        .iter()
        .map(|e| e.node.as_str())
        .chain(nodes.broken.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut text = String::new();
    let mut json_nodes = Map::new();
    for name in names {
        let Some(record) = ctx.state.nodes.get(name) else {
            continue;
        };
        let mut json_node = Map::new();
        text.push_str(&format!("node {name}\n"));
        for section in &sections {
            let (line, value) = match section {
                NodeSection::Config => match &record.config {
                    Some(c) => (format!("address {}", record.address()), json!(c)),
                    None => (
                        format!("unreadable: {}", record.problems.join("; ")),
                        Value::Null,
                    ),
                },
                NodeSection::Constraints => {
                    let constraints = &record.constraints;
                    let base = &constraints.base_services;
                    let mut line = if base.is_empty() {
                        "no base service".to_owned()
                    } else {
                        format!("base services {}", base.join(", "))
                    };
                    for (name, bound) in [
                        ("cpumin", constraints.cpu_min),
                        ("cpumax", constraints.cpu_max),
                    ] {
                        if let Some(bound) = bound {
                            line.push_str(&format!(", {name} {bound}"));
                        }
                    }
                    (line, json!(record.constraints))
                }
                NodeSection::Resources => match &record.resources {
                    Some(r) => (
                        format!(
                            "{} cpus, {} memory",
                            r.total_cpus,
                            human_bytes(r.total_memory_bytes)
                        ),
                        json!(r),
                    ),
                    None => ("unknown".to_owned(), Value::Null),
                },
                NodeSection::Status => match views.get(name) {
                    Some(view) => (status_line(view), json!(view)),
                    None => ("did not answer (see below)".to_owned(), Value::Null),
                },
            };
            text.push_str(&format!("  {:<12} {line}\n", section.as_str()));
            json_node.insert(section.as_str().to_owned(), value);
        }
        json_node.insert("active".to_owned(), Value::Bool(record.active));
        json_nodes.insert(name.to_owned(), Value::Object(json_node));
    }
    let outcome = Outcome::ok(text.trim_end().to_owned(), json!({ "nodes": json_nodes }));
    with_unanswered(outcome, "show node", &failures)
}

fn status_line(view: &NodeView) -> String {
    let active = if view.active {
        "active (loop running)"
    } else {
        "inactive (loop stopped)"
    };
    let config = match (&view.config.rejected, view.config.loaded) {
        (Some(why), _) => format!("configuration rejected: {why}"),
        (None, true) => format!("configuration revision {}", view.config.revision),
        (None, false) => "no configuration loaded".to_owned(),
    };
    let by_service: Vec<String> = view
        .instances
        .by_service
        .iter()
        .map(|(s, c)| format!("{s} {}", c.running))
        .collect();
    let instances = if by_service.is_empty() {
        "no instance".to_owned()
    } else {
        format!(
            "{} running ({})",
            view.instances.running,
            by_service.join(", ")
        )
    };
    let mut line = format!("{active}, {config}, {instances}");
    match view.drain {
        Some(d) if d.done => line.push_str("; drained: no instance left, it may leave (gru leave)"),
        Some(_) => line.push_str("; draining: its instances move to other nodes"),
        None => {}
    }
    for (service, failure) in &view.start_failures {
        line.push_str(&format!(
            "; {service}: {} failed start(s) in a row, the last: {}",
            failure.failures, failure.error
        ));
    }
    line
}

pub async fn show_service(ctx: &Ctx<'_>, service: &str) -> Outcome {
    let Some(parsed) = ctx.state.services.get(service) else {
        return Outcome::failed(super::cluster_state::unknown(
            "service",
            service,
            &ctx.state.service_names(),
        ));
    };
    let nodes = ctx.all_nodes();
    let (views, failures) = split(ctx.get_each::<ServicesView>(&nodes, "services").await);
    let base_of: Vec<String> = ctx
        .state
        .nodes
        .values()
        .filter(|n| n.constraints.base_services.iter().any(|s| s == service))
        .map(|n| n.name.clone())
        .collect();
    let now = now_millis();
    let mut instances = Map::new();
    let mut lines = Vec::new();
    for (node, view) in &views {
        let list = view
            .services
            .get(service)
            .map(|s| s.instances.clone())
            .unwrap_or_default();
        for i in &list {
            lines.push(format!(
                "    {node}  {}  {}  {}  started {}",
                i.instance,
                i.state,
                i.address.as_deref().unwrap_or("-"),
                age(now, i.started_at)
            ));
        }
        instances.insert(node.clone(), json!(list));
    }
    let running: usize = views.values().map(|v| v.running(service)).sum();
    let mut text = format!("service {service}\n");
    match parsed {
        Ok(d) => {
            let c = &d.configuration;
            let ports: Vec<String> = c.ports.iter().map(|(p, r)| format!("{p} -> {r}")).collect();
            let rows = [
                ("image", d.image.clone()),
                (
                    "bounds",
                    format!(
                        "min {}, max {}",
                        d.min_instances,
                        d.max_instances
                            .map_or_else(|| "unbounded".to_owned(), |m| m.to_string())
                    ),
                ),
                (
                    "resources",
                    format!(
                        "cpunumber {}, memory {}",
                        c.cpu_number,
                        c.memory
                            .map_or_else(|| "unlimited".to_owned(), |m| human_bytes(m.bytes()))
                    ),
                ),
                (
                    "ports",
                    if ports.is_empty() {
                        "-".to_owned()
                    } else {
                        ports.join(", ")
                    },
                ),
                ("analytics", list_or_dash(&d.analytics)),
                ("attached", list_or_dash(&d.attached)),
                ("base service", list_or_dash(&base_of)),
                ("running", running.to_string()),
            ];
            for (label, value) in rows {
                text.push_str(&format!("  {label:<13} {value}\n"));
            }
        }
        Err(why) => text.push_str(&format!("  invalid in etcd: {why}\n")),
    }
    if !lines.is_empty() {
        text.push_str("  instances:\n");
        text.push_str(&lines.join("\n"));
    }
    let json = json!({
        "service": service,
        "descriptor": ctx.state.raw_services.get(service),
        "invalid": parsed.as_ref().err(),
        "base_service_of": base_of,
        "running": running,
        "instances": instances,
    });
    with_unanswered(
        Outcome::ok(text.trim_end().to_owned(), json),
        "show service",
        &failures,
    )
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// Keys whose values are credentials: shown as `<redacted>`.
const SECRET_KEY_PARTS: [&str; 3] = ["token", "password", "secret"];

/// `value` with every credential replaced, at any depth.
pub fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_lowercase();
                    let secret = SECRET_KEY_PARTS.iter().any(|part| lower.contains(part));
                    let v = if secret && !v.is_null() {
                        Value::String("<redacted>".into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

pub fn show_cluster(ctx: &Ctx<'_>) -> Outcome {
    let state = &ctx.state;
    let active = state.nodes.values().filter(|n| n.active).count();
    let mut text = format!(
        "cluster {} (id {})\n",
        ctx.cluster(),
        state.id.as_deref().unwrap_or("?")
    );
    let mut line = |label: &str, value: String| text.push_str(&format!("  {label:<10} {value}\n"));
    line(
        "nodes",
        format!(
            "{} live, {active} active: {}",
            state.nodes.len(),
            list_or_dash(&state.node_names())
        ),
    );
    line("services", list_or_dash(&state.service_names()));
    line("analytics", list_or_dash(&state.analytics));
    match &state.agent_config {
        Some(Ok(c)) => {
            let strategy = serde_json::to_value(c.autonomic.planner_strategy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            line(
                "loop",
                format!(
                    "every {} s, planner {strategy}{}",
                    c.autonomic.loop_time_interval_secs,
                    if c.autonomic.dry_run { ", dry run" } else { "" }
                ),
            );
        }
        Some(Err(why)) => line("config", format!("invalid in etcd: {why}")),
        None => line("config", "none pushed (agents use defaults)".to_owned()),
    }
    match &state.policy {
        Some(Ok(p)) => {
            let rule = |name: &str, r: &common::config::PolicyRule| {
                if r.enable {
                    format!(
                        "{name} at {} (period {} s, step {})",
                        r.threshold, r.period_secs, r.step
                    )
                } else {
                    format!("{name} off")
                }
            };
            line(
                "policy",
                format!(
                    "{}; {}; {}; cooldown out {} s, in {} s",
                    rule("scale-out", &p.scaleout),
                    rule("scale-in", &p.scalein),
                    rule("swap", &p.swap),
                    p.cooldown_out_secs,
                    p.cooldown_in_secs
                ),
            );
        }
        Some(Err(why)) => line("policy", format!("invalid in etcd: {why}")),
        None => line("policy", "none pushed".to_owned()),
    }
    let json = json!({
        "cluster": ctx.cluster(),
        "id": state.id,
        "nodes": state.node_names(),
        "active_nodes": state.nodes.values().filter(|n| n.active).map(|n| n.name.clone()).collect::<Vec<_>>(),
        "services": state.service_names(),
        "analytics": state.analytics,
        "config": state.raw_config.as_ref().map(redacted),
        "policy": state.raw_policy,
    });
    Outcome::ok(text.trim_end().to_owned(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_at_any_depth() {
        let config = json!({
            "Metric": {"Configuration": {"Url": "http://x", "Token": "t0ps3cret", "Password": "pw", "Username": "u"}},
            "Storage": [{"ClientSecret": "s"}],
            "Docker": {"DaemonUrl": "unix:///x"}
        });
        let shown = redacted(&config).to_string();
        for secret in ["t0ps3cret", "\"pw\"", "\"s\""] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("http://x") && shown.contains("\"u\"") && shown.contains("unix:///x"),
            "{shown}"
        );
    }

    #[test]
    fn unanswered_nodes_fail_the_command_and_are_listed() {
        let outcome = with_unanswered(
            Outcome::ok("table", json!({"nodes": []})),
            "list nodes",
            &[(
                "n2".to_owned(),
                "unreachable at 127.0.0.1:9: connection refused".to_owned(),
            )],
        );
        assert_eq!(outcome.status, super::super::output::Status::Failed);
        assert!(
            outcome
                .text
                .ends_with("n2: FAILED: unreachable at 127.0.0.1:9: connection refused")
        );
        assert_eq!(
            outcome.json["node_errors"]["n2"],
            "unreachable at 127.0.0.1:9: connection refused"
        );
        assert_eq!(
            outcome.error.as_deref(),
            Some("list nodes: 1 node(s) did not answer (n2)")
        );
    }
}
