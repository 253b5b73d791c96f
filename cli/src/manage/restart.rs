//! `restart agent <node>...|all`: a rolling restart of agents, one after another.
//!
//! Each agent is told to restart (`AgentCommand::Restart`): it stops, keeping its lease,
//! and executes its own binary again (see `gru_agent::kept_lease`); the new agent takes the
//! lease back and adopts the node's containers, so no other agent repairs anything and no
//! container is started or stopped. The shell waits for each agent to answer as a new
//! process (its `agent_started_at` changed), with its configuration loaded and at least as
//! many running instances as before, before it restarts the next one. A node that does not
//! come back in time stops the rolling restart: the nodes after it are left alone.

use std::time::Duration;

use gru_agent::runtime::AgentCommand;

use super::agent_client::NodeEndpoint;
use super::agent_views::NodeView;
use super::grammar::Targets;
use super::output::{NodeResults, Outcome};
use super::session::{Agents, Ctx};

/// How long one agent may take to answer again as a new process and adopt its instances.
/// Generous: a restart takes about a second, but an agent that re-registers (its lease ran
/// out) waits for Docker and etcd like any start.
pub const RESTART_WAIT: Duration = Duration::from_secs(30);
/// Pause between two looks at a restarting node.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub async fn restart(ctx: &Ctx<'_>, targets: &Targets) -> Outcome {
    let nodes = match ctx.state.resolve(targets) {
        Ok(nodes) => nodes,
        Err(why) => return Outcome::failed(why),
    };
    let mut results = NodeResults::default();
    for (node, why) in &nodes.broken {
        results.push(node, Err(why.clone()));
    }
    let mut stopped_at = None;
    for endpoint in &nodes.endpoints {
        if let Some(failed) = &stopped_at {
            results.push(
                &endpoint.node,
                Err(format!("not restarted: {failed} did not come back")),
            );
            continue;
        }
        let result = restart_one(&ctx.agents, endpoint).await;
        if result.is_err() {
            stopped_at = Some(endpoint.node.clone());
        }
        results.push(&endpoint.node, result);
    }
    results.outcome(
        "restart agent",
        "rolling restart (one agent after another; each keeps its lease and containers):",
    )
}

/// Restarts one agent and waits until it answers as a new process and has adopted at least
/// the instances it ran before.
async fn restart_one(agents: &Agents, endpoint: &NodeEndpoint) -> Result<String, String> {
    let before: NodeView = agents.get(endpoint, "node").await?;
    let started = tokio::time::Instant::now();
    agents.send(endpoint, &[AgentCommand::Restart]).await?;
    let deadline = started + RESTART_WAIT;
    let mut answered_at = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(view) = agents.get::<NodeView>(endpoint, "node").await
            && view.agent_started_at != before.agent_started_at
        {
            answered_at.get_or_insert_with(|| started.elapsed());
            if view.config.loaded && view.instances.running >= before.instances.running {
                return Ok(format!(
                    "restarted: answering after {:.1} s, {} instance(s) adopted after {:.1} s",
                    answered_at.unwrap_or_default().as_secs_f64(),
                    view.instances.running,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(match answered_at {
        None => format!(
            "no new agent answered within {} s (is it supervised, or did the exec fail? see its log)",
            RESTART_WAIT.as_secs()
        ),
        Some(_) => format!(
            "the new agent answers but has not adopted the {} instance(s) of before within {} s",
            before.instances.running,
            RESTART_WAIT.as_secs()
        ),
    })
}
