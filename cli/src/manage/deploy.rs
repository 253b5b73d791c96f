//! `deploy` and `undeploy`.
//!
//! deploy: read what every node offers (etcd) and runs (its agent), compute the whole
//! placement with [`placement::place`], and only if every service fits, make each placed
//! service a base service of its node (`set-base-services` with the node's current base
//! services plus the new ones). The agent starts its base services itself, whether or not
//! its loop is active. undeploy: clear every node's base services, then stop every
//! instance of every service, one `stop-service` per instance.

use std::collections::BTreeMap;

use gru_agent::runtime::AgentCommand;
use serde_json::json;

use super::agent_views::ServicesView;
use super::inspect::split;
use super::output::{NodeResults, Outcome, table};
use super::placement::{self, Demand, NodeRoom};
use super::session::Ctx;

/// What one instance of `service` needs on a node: its own pinned cores and memory limit,
/// plus those of the sidecars started with it.
fn demand(ctx: &Ctx<'_>, service: &str) -> Demand {
    let mut demand = Demand {
        service: service.to_owned(),
        cpus: 0,
        memory_bytes: 0,
    };
    let Ok(descriptor) = ctx.state.service(service) else {
        return demand;
    };
    let sidecars = descriptor
        .attached
        .iter()
        .filter_map(|s| ctx.state.service(s).ok());
    for d in std::iter::once(descriptor).chain(sidecars) {
        demand.cpus = demand.cpus.saturating_add(d.configuration.cpu_number);
        let memory = d.configuration.memory.map_or(0, |m| m.bytes());
        demand.memory_bytes = demand.memory_bytes.saturating_add(memory);
    }
    demand
}

/// A node's room: its resources record, less what its running instances (and base
/// services not started yet) take.
fn room(ctx: &Ctx<'_>, node: &str, view: &ServicesView) -> NodeRoom {
    let record = ctx.state.nodes.get(node);
    let resources = record.and_then(|r| r.resources.clone()).unwrap_or_default();
    let mut room = NodeRoom {
        node: node.to_owned(),
        cpus: resources.total_cpus,
        memory_bytes: resources.total_memory_bytes,
        used_cpus: 0,
        used_memory_bytes: 0,
        instances: view.unconfigured_instances.len(),
    };
    let mut charge = |service: &str, count: usize| {
        let d = demand(ctx, service);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        room.used_cpus = room.used_cpus.saturating_add(d.cpus.saturating_mul(count));
        room.used_memory_bytes = room
            .used_memory_bytes
            .saturating_add(d.memory_bytes.saturating_mul(u64::from(count)));
    };
    for (service, seen) in &view.services {
        // Sidecars are charged with their parent (see `demand`).
        let parents = seen
            .instances
            .iter()
            .filter(|i| i.state == "running" && !i.instance.ends_with(&format!("-{service}")))
            .count();
        charge(service, parents);
        room.instances += seen.running;
    }
    for base in record
        .map(|r| r.constraints.base_services.clone())
        .unwrap_or_default()
    {
        if view.running(&base) == 0 {
            charge(&base, 1);
            room.instances += 1;
        }
    }
    room
}

pub async fn deploy(ctx: &Ctx<'_>) -> Outcome {
    let invalid: Vec<String> = ctx
        .state
        .services
        .iter()
        .filter_map(|(name, parsed)| parsed.as_ref().err().map(|why| format!("{name}: {why}")))
        .collect();
    if !invalid.is_empty() {
        return Outcome::failed(format!(
            "deploy refused: some services cannot be read from etcd (push a valid configuration): {}",
            invalid.join("; ")
        ));
    }
    if ctx.state.services.is_empty() {
        return Outcome::failed(
            "nothing to deploy: the cluster has no service (push a configuration with `gru config push`)",
        );
    }
    let mut already: BTreeMap<String, String> = BTreeMap::new();
    for record in ctx.state.nodes.values() {
        for service in &record.constraints.base_services {
            already
                .entry(service.clone())
                .or_insert_with(|| record.name.clone());
        }
    }
    let wanted: Vec<Demand> = ctx
        .state
        .services
        .keys()
        .filter(|s| !already.contains_key(*s))
        .map(|s| demand(ctx, s))
        .collect();
    let already_json: Vec<_> = already
        .iter()
        .filter(|(s, _)| ctx.state.services.contains_key(*s))
        .map(|(s, n)| json!({"service": s, "node": n}))
        .collect();
    if wanted.is_empty() {
        let text = format!(
            "every service is already deployed: {}",
            already
                .iter()
                .map(|(s, n)| format!("{s} on {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Outcome::ok(
            text,
            json!({"placements": [], "already": already_json, "nodes": []}),
        );
    }

    let nodes = ctx.all_nodes();
    if nodes.endpoints.is_empty() && nodes.broken.is_empty() {
        return Outcome::failed(
            "deploy refused: the cluster has no live node (start agents with `gru join`)",
        );
    }
    let (views, unanswered) = split(ctx.get_each::<ServicesView>(&nodes, "services").await);
    let rooms: Vec<NodeRoom> = views
        .iter()
        .map(|(node, view)| room(ctx, node, view))
        .collect();
    let skipped: String = unanswered
        .iter()
        .map(|(node, why)| format!("\n  {node} was left out: {why}"))
        .collect();
    let placements = match placement::place(&rooms, &wanted) {
        Ok(placements) => placements,
        Err(shortfall) => {
            let unplaced: Vec<_> = shortfall
                .unplaced
                .iter()
                .map(|d| json!({"service": d.service, "cpus": d.cpus, "memory_bytes": d.memory_bytes}))
                .collect();
            let mut outcome = Outcome::failed(format!("deploy refused: {shortfall}{skipped}"));
            outcome.json = json!({
                "refused": true,
                "error": outcome.error,
                "unplaced": unplaced,
                "needed": {"cpus": shortfall.needed_cpus, "memory_bytes": shortfall.needed_memory_bytes},
                "free": {"cpus": shortfall.free_cpus, "memory_bytes": shortfall.free_memory_bytes},
            });
            return outcome;
        }
    };

    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &placements {
        by_node
            .entry(p.node.clone())
            .or_default()
            .push(p.service.clone());
    }
    let reachable = super::cluster_state::Resolved {
        endpoints: nodes
            .endpoints
            .iter()
            .filter(|e| by_node.contains_key(&e.node))
            .cloned()
            .collect(),
        broken: Vec::new(),
    };
    let results = ctx
        .on_each(&reachable, |endpoint, agents| {
            let placed = by_node.get(&endpoint.node).cloned().unwrap_or_default();
            let mut base = ctx.state.base_services(&endpoint.node);
            for service in &placed {
                if !base.contains(service) {
                    base.push(service.clone());
                }
            }
            async move {
                let command = AgentCommand::SetBaseServices {
                    services: base.clone(),
                };
                agents.send(&endpoint, &[command]).await?;
                Ok(format!(
                    "base services now {} (placed {}); the agent starts them",
                    base.join(", "),
                    placed.join(", ")
                ))
            }
        })
        .await;

    let mut rows = table(&["service", "node"]);
    for p in &placements {
        rows.add_row(vec![p.service.clone(), p.node.clone()]);
    }
    for (service, node) in &already {
        rows.add_row(vec![service.clone(), format!("{node} (already)")]);
    }
    let heading = format!("{rows}{skipped}");
    let mut outcome = results.outcome("deploy", &heading);
    if let Some(map) = outcome.json.as_object_mut() {
        let placed: Vec<_> = placements
            .iter()
            .map(|p| json!({"service": p.service, "node": p.node}))
            .collect();
        map.insert("placements".into(), json!(placed));
        map.insert("already".into(), json!(already_json));
        let left_out: Vec<_> = unanswered
            .iter()
            .map(|(node, why)| json!({"node": node, "why": why}))
            .collect();
        map.insert("left_out".into(), json!(left_out));
    }
    outcome
}

pub async fn undeploy(ctx: &Ctx<'_>) -> Outcome {
    let nodes = ctx.all_nodes();
    if nodes.endpoints.is_empty() && nodes.broken.is_empty() {
        return Outcome::failed("the cluster has no live node");
    }
    let (views, unanswered) = split(ctx.get_each::<ServicesView>(&nodes, "services").await);
    let mut results = NodeResults::default();
    let asked = super::cluster_state::Resolved {
        endpoints: nodes
            .endpoints
            .iter()
            .filter(|e| views.contains_key(&e.node))
            .cloned()
            .collect(),
        broken: Vec::new(),
    };
    let sent = ctx
        .on_each(&asked, |endpoint, agents| {
            let base = ctx.state.base_services(&endpoint.node);
            let mut commands = Vec::new();
            if !base.is_empty() {
                commands.push(AgentCommand::SetBaseServices {
                    services: Vec::new(),
                });
            }
            let mut stopping = Vec::new();
            if let Some(view) = views.get(&endpoint.node) {
                for (service, seen) in &view.services {
                    let parents = seen
                        .instances
                        .iter()
                        .filter(|i| {
                            i.state == "running" && !i.instance.ends_with(&format!("-{service}"))
                        })
                        .count();
                    if parents > 0 {
                        stopping.push(format!("{service} x{parents}"));
                        commands.extend((0..parents).map(|_| AgentCommand::StopService {
                            service: service.clone(),
                        }));
                    }
                }
            }
            async move {
                if commands.is_empty() {
                    return Ok("nothing deployed here".to_owned());
                }
                agents.send(&endpoint, &commands).await?;
                let cleared = if base.is_empty() {
                    "no base service".to_owned()
                } else {
                    format!("base services cleared ({})", base.join(", "))
                };
                let stopped = if stopping.is_empty() {
                    "no instance to stop".to_owned()
                } else {
                    format!("stopping {}", stopping.join(", "))
                };
                Ok(format!("{cleared}; {stopped}"))
            }
        })
        .await;
    results.results.extend(sent.results);
    for (node, why) in unanswered {
        results.push(&node, Err(why));
    }
    results.outcome("undeploy", "")
}
