//! Commands that change what agents do: `set node ... base-services`, `start|stop service`,
//! `start|stop agent`, `update`.
//!
//! Each is sent to every named node in parallel and reported per node. Where the agent can
//! tell quickly how it went, the shell waits for it (bounded), so the report says what
//! happened and not only that the command was accepted: `start|stop service` watch the
//! node's action history for the result of their start or stop, `start|stop agent` watch
//! the node's `active` flag.

use std::time::Duration;

use gru_agent::runtime::AgentCommand;
use serde_json::json;

use super::agent_client::NodeEndpoint;
use super::agent_views::{ActionRecord, ActionsView, NodeView, ServicesView};
use super::grammar::{CpuBound, Targets, UpdatePart};
use super::output::{NodeResults, Outcome};
use super::session::{Agents, Ctx};

/// How long `start|stop service` wait for the agent's record of the start or stop.
pub const ACTION_WAIT: Duration = Duration::from_secs(10);
/// How long `start|stop agent` wait for the node to report its new state.
pub const ACTIVE_WAIT: Duration = Duration::from_secs(5);
/// Pause between two looks at a node while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

fn resolve_or_fail(
    ctx: &Ctx<'_>,
    targets: &Targets,
) -> Result<super::cluster_state::Resolved, Outcome> {
    ctx.state.resolve(targets).map_err(Outcome::failed)
}

pub async fn set_base_services(ctx: &Ctx<'_>, targets: &Targets, services: &[String]) -> Outcome {
    if let Err(why) = ctx.state.check_services(services) {
        return Outcome::failed(why);
    }
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results = ctx
        .on_each(&nodes, |endpoint, agents| {
            let services = services.to_vec();
            async move {
                let command = AgentCommand::SetBaseServices {
                    services: services.clone(),
                };
                agents.send(&endpoint, &[command]).await?;
                Ok(if services.is_empty() {
                    "base services cleared".to_owned()
                } else {
                    format!(
                        "base services {} (the agent keeps one instance of each)",
                        services.join(", ")
                    )
                })
            }
        })
        .await;
    results.outcome("set node base-services", "")
}

/// Records Gru's CPU bound on each node; the agent publishes it in its constraints record.
pub async fn set_node_cpu(ctx: &Ctx<'_>, targets: &Targets, bound: CpuBound) -> Outcome {
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let command = match bound {
        CpuBound::Min(value) => AgentCommand::SetNodeCpu {
            cpumin: Some(value),
            cpumax: None,
        },
        CpuBound::Max(value) => AgentCommand::SetNodeCpu {
            cpumin: None,
            cpumax: Some(value),
        },
    };
    let results = ctx
        .on_each(&nodes, |endpoint, agents| {
            let command = command.clone();
            async move {
                agents.send(&endpoint, &[command]).await?;
                Ok(format!(
                    "{} {} recorded (Gru's bound: shown in `show node`, no decision reads it)",
                    bound.name(),
                    bound.value()
                ))
            }
        })
        .await;
    results.outcome(&format!("set node {}", bound.name()), "")
}

/// The newest action a node recorded, to recognise the ones that come after it.
async fn newest_action(
    agents: &Agents,
    endpoint: &NodeEndpoint,
) -> Result<Option<ActionRecord>, String> {
    let view: ActionsView = agents.get(endpoint, "actions?limit=1").await?;
    Ok(view.actions.into_iter().next())
}

/// Waits for the node to record `action` on `service` after `marker`; its record, or
/// `None` when nothing came within [`ACTION_WAIT`].
async fn wait_for_action(
    agents: &Agents,
    endpoint: &NodeEndpoint,
    marker: Option<&ActionRecord>,
    action: &str,
    service: &str,
) -> Option<ActionRecord> {
    let deadline = tokio::time::Instant::now() + ACTION_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Ok(view) = agents
            .get::<ActionsView>(endpoint, "actions?limit=50")
            .await
        else {
            continue;
        };
        let newer = view
            .actions
            .into_iter()
            .take_while(|a| Some(a) != marker)
            .filter(|a| a.action == action && a.service == service)
            .last();
        if newer.is_some() {
            return newer;
        }
    }
    None
}

fn action_result(
    record: Option<ActionRecord>,
    done: &str,
    command: &str,
) -> Result<String, String> {
    match record {
        Some(r) if r.succeeded() => Ok(format!(
            "{done} {}",
            r.instance.as_deref().unwrap_or("an instance")
        )),
        Some(r) => Err(format!("{command}: {}", r.result)),
        None => Ok(format!(
            "accepted; no result after {} s (see `events`)",
            ACTION_WAIT.as_secs()
        )),
    }
}

pub async fn start_service(ctx: &Ctx<'_>, service: &str, targets: &Targets) -> Outcome {
    if let Err(why) = ctx.state.service(service) {
        return Outcome::failed(why);
    }
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results = ctx
        .on_each(&nodes, |endpoint, agents| {
            let service = service.to_owned();
            async move {
                let marker = newest_action(&agents, &endpoint).await?;
                let command = AgentCommand::StartService {
                    service: service.clone(),
                };
                agents.send(&endpoint, &[command]).await?;
                let record = wait_for_action(
                    &agents,
                    &endpoint,
                    marker.as_ref(),
                    "start-service",
                    &service,
                )
                .await;
                action_result(record, "started", "the start failed")
            }
        })
        .await;
    results.outcome(&format!("start service {service}"), "")
}

pub async fn stop_service(ctx: &Ctx<'_>, service: &str, targets: &Targets) -> Outcome {
    if let Err(why) = ctx.state.service(service) {
        return Outcome::failed(why);
    }
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results = ctx
        .on_each(&nodes, |endpoint, agents| {
            let service = service.to_owned();
            let base = ctx.state.base_services(&endpoint.node);
            async move {
                let mut commands = Vec::new();
                let mut notes = Vec::new();
                if base.contains(&service) {
                    // A base service would be started again at once: it stops being one.
                    let rest: Vec<String> = base.into_iter().filter(|s| *s != service).collect();
                    commands.push(AgentCommand::SetBaseServices { services: rest });
                    notes.push(format!("{service} is no longer a base service here"));
                }
                let view: ServicesView = agents.get(&endpoint, "services").await?;
                let running = view.running(&service);
                if running == 0 {
                    agents.send(&endpoint, &commands).await?;
                    notes.insert(0, format!("no instance of {service} runs here"));
                    return Ok(notes.join("; "));
                }
                let marker = newest_action(&agents, &endpoint).await?;
                commands.push(AgentCommand::StopService {
                    service: service.clone(),
                });
                agents.send(&endpoint, &commands).await?;
                let record = wait_for_action(
                    &agents,
                    &endpoint,
                    marker.as_ref(),
                    "stop-service",
                    &service,
                )
                .await;
                let done = action_result(record, "stopped", "the stop failed")?;
                notes.insert(0, done);
                Ok(notes.join("; "))
            }
        })
        .await;
    results.outcome(&format!("stop service {service}"), "")
}

pub async fn agents(ctx: &Ctx<'_>, targets: &Targets, start: bool) -> Outcome {
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results: NodeResults = ctx
        .on_each(&nodes, |endpoint, agents| async move {
            let command = if start {
                AgentCommand::Start
            } else {
                AgentCommand::Stop
            };
            agents.send(&endpoint, &[command]).await?;
            let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
            while tokio::time::Instant::now() < deadline {
                if let Ok(view) = agents.get::<NodeView>(&endpoint, "node").await
                    && view.active == start
                {
                    return Ok(if start {
                        "active: the loop runs".to_owned()
                    } else {
                        "inactive: the loop stopped, containers keep running".to_owned()
                    });
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Ok(format!(
                "accepted; not yet {} after {} s",
                if start { "active" } else { "inactive" },
                ACTIVE_WAIT.as_secs()
            ))
        })
        .await;
    let command = if start { "start agent" } else { "stop agent" };
    results.outcome(command, "")
}

/// `drain node` / `undrain node`: each agent records its drain (or its end) and says so.
pub async fn drain(ctx: &Ctx<'_>, targets: &Targets, drain: bool) -> Outcome {
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results: NodeResults = ctx
        .on_each(&nodes, |endpoint, agents| async move {
            let command = if drain {
                AgentCommand::Drain
            } else {
                AgentCommand::Undrain
            };
            agents.send(&endpoint, &[command]).await?;
            let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
            while tokio::time::Instant::now() < deadline {
                if let Ok(view) = agents.get::<NodeView>(&endpoint, "node").await
                    && view.drain.is_some() == drain
                {
                    return Ok(match (drain, view.drain) {
                        (true, Some(d)) if d.done => "drained: no instance left".to_owned(),
                        (true, _) => format!(
                            "draining: {} instance(s) to move; `show node` says when it is done",
                            view.instances.running
                        ),
                        (false, _) => "undrained: it takes instances again".to_owned(),
                    });
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Ok(format!(
                "accepted; not yet {} after {} s",
                if drain { "draining" } else { "undrained" },
                ACTIVE_WAIT.as_secs()
            ))
        })
        .await;
    results.outcome(if drain { "drain node" } else { "undrain node" }, "")
}

/// `leave node`: each drained agent stops and revokes its lease; waits until it no longer
/// answers.
pub async fn leave(ctx: &Ctx<'_>, targets: &Targets) -> Outcome {
    let nodes = match resolve_or_fail(ctx, targets) {
        Ok(nodes) => nodes,
        Err(outcome) => return outcome,
    };
    let results: NodeResults = ctx
        .on_each(&nodes, |endpoint, agents| async move {
            agents.send(&endpoint, &[AgentCommand::Leave]).await?;
            let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
            while tokio::time::Instant::now() < deadline {
                if agents.get::<NodeView>(&endpoint, "node").await.is_err() {
                    return Ok("left the cluster (its agent stopped, its lease revoked)".to_owned());
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Ok(format!(
                "accepted; still answering after {} s",
                ACTIVE_WAIT.as_secs()
            ))
        })
        .await;
    results.outcome("leave node", "")
}

pub async fn update(ctx: &Ctx<'_>, part: UpdatePart) -> Outcome {
    let nodes = ctx.all_nodes();
    if nodes.endpoints.is_empty() && nodes.broken.is_empty() {
        return Outcome::failed("the cluster has no live node");
    }
    let results = ctx
        .on_each(&nodes, |endpoint, agents| async move {
            agents.send(&endpoint, &[AgentCommand::Update]).await?;
            Ok("reloading its configuration from etcd".to_owned())
        })
        .await;
    let mut outcome = results.outcome(&format!("update {}", part.as_str()), "");
    if let Some(map) = outcome.json.as_object_mut() {
        map.insert("part".into(), json!(part.as_str()));
    }
    outcome
}
