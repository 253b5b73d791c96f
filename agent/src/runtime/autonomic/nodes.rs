//! Nodes come: when the cluster saturates (`tick::saturation`: a scale-out only a full
//! node holds back, for `Nodes.SaturatedPeriod`), this agent claims the cluster's add-node
//! call (`/gru/<cluster>/node-scaling/add-node`, created under a lease of `Nodes.Cooldown`)
//! and, when it wins, calls `Nodes.AddNodeHook` in a task of its own (`runtime::hooks`).
//!
//! Invariants: at most one add-node call per cooldown, cluster-wide, whichever agent sees
//! the saturation first (the claim is a create-if-absent transaction); a hook never holds
//! the loop (it runs in its own task, killed at its timeout); a draining node does not
//! count (its room is 0 on purpose); the run's result is in `events`.

use common::config::ClusterConfig;

use super::{Autonomic, now};
use crate::runtime::hooks::{self, HookCall, HookKind};

impl Autonomic {
    /// Looks at this tick's held scale-outs (`held_by_room`, from `plan`) and calls the
    /// add-node hook when the saturation lasted its period and this agent wins the claim.
    pub(super) async fn watch_saturation(
        &mut self,
        config: &ClusterConfig,
        counts: &std::collections::BTreeMap<String, u32>,
    ) {
        let nodes = &config.agent.nodes;
        let Some(hook) = nodes.add_node_hook.clone() else {
            self.saturation.reset();
            return;
        };
        if self.shared.knowledge().drain.is_some() {
            self.saturation.reset();
            return;
        }
        let mut held = std::mem::take(&mut self.held_by_room);
        held.extend(self.unfilled_targets(config, counts));
        let period = std::time::Duration::from_secs(nodes.saturated_period_secs);
        // A target expires a few loops after it is written and the next follows a loop
        // or so later: two loops without one do not break the count.
        let grace = self.loop_interval() * 2;
        if !self.saturation.observe(&held, now(), period, grace) {
            return;
        }
        if self
            .add_node_call
            .as_ref()
            .is_some_and(|t| !t.is_finished())
        {
            return;
        }
        self.saturation.reset();
        let wanted: u32 = held.iter().map(|(_, n)| n).sum();
        let services: Vec<String> = held.iter().map(|(s, n)| format!("{s} +{n}")).collect();
        let reason = format!(
            "saturated: {} wanted for {} s and no node has room",
            services.join(", "),
            nodes.saturated_period_secs
        );
        let record = serde_json::json!({
            "node": self.shared.node,
            "reason": reason,
            "wanted": wanted,
        })
        .to_string();
        let cooldown = i64::try_from(nodes.cooldown_secs).unwrap_or(i64::MAX);
        match self
            .store
            .claim_node_call(self.keys.add_node_claim(), &record, cooldown)
            .await
        {
            Ok(true) => {
                tracing::info!(%reason, "claimed the add-node call");
                self.record(
                    "saturated",
                    "",
                    None,
                    format!("ok: {reason}; calling the add-node hook"),
                );
                let call = HookCall {
                    cluster: self.shared.cluster.clone(),
                    hook: HookKind::AddNode,
                    reason,
                    wanted,
                    node: None,
                };
                self.add_node_call = Some(hooks::spawn(self.shared.clone(), hook, call));
            }
            Ok(false) => {
                tracing::debug!("saturated, but the add-node call of this cooldown was made");
            }
            Err(err) => {
                self.shared.telemetry.metrics.etcd_error();
                tracing::warn!(error = %err, "cannot claim the add-node call");
            }
        }
    }
}

impl Autonomic {
    /// The standing scale-out targets (target tracking) that this node has no room to help
    /// fill while they are above the count (`tick::saturation::unfilled_targets`).
    fn unfilled_targets(
        &self,
        config: &ClusterConfig,
        counts: &std::collections::BTreeMap<String, u32>,
    ) -> Vec<(String, u32)> {
        let desired = self
            .target_desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let views: Vec<crate::tick::saturation::TargetView> = desired
            .into_iter()
            .filter_map(|(service, desired)| {
                let descriptor = config.services.get(&service)?;
                Some(crate::tick::saturation::TargetView {
                    counted: counts.get(&service).copied().unwrap_or(0),
                    free_slots_here: self.free_slots(config, descriptor),
                    service,
                    desired,
                })
            })
            .collect();
        crate::tick::saturation::unfilled_targets(&views)
    }
}

impl Autonomic {
    /// Nodes go: a node that has had no instance but its base services for
    /// `Nodes.IdlePeriod`, with another node in the cluster, claims the cluster's
    /// remove-node slot (one removal per `Nodes.Cooldown`) and drains itself; once the
    /// drain is done it calls `Nodes.RemoveNodeHook` with its name and, when the hook
    /// succeeds, leaves (lease revoked). A failed hook leaves the node drained, in
    /// `events`, for an operator. The drain record says it is a removal (`remove`), so an
    /// agent restarted mid-drain still calls the hook once the drain is done.
    pub(super) async fn watch_idle(&mut self, config: &ClusterConfig, active: bool) {
        let nodes = &config.agent.nodes;
        let Some(hook) = nodes.remove_node_hook.clone() else {
            self.idle_since = None;
            return;
        };
        let drain = self.shared.knowledge().drain.clone();
        if let Some(drain) = drain {
            self.idle_since = None;
            // The record says whether the drain is a removal: an agent restarted
            // mid-drain goes on to the hook.
            if !drain.remove || !drain.done {
                return;
            }
            match self.remove_node_call.take() {
                None => {
                    let call = HookCall {
                        cluster: self.shared.cluster.clone(),
                        hook: HookKind::RemoveNode,
                        reason: "idle: drained, no instance left".to_owned(),
                        wanted: 0,
                        node: Some(self.shared.node.clone()),
                    };
                    self.remove_node_call = Some(hooks::spawn(self.shared.clone(), hook, call));
                }
                Some(task) if !task.is_finished() => self.remove_node_call = Some(task),
                Some(task) => {
                    let succeeded = task.await.is_ok_and(|run| run.succeeded.is_some());
                    if succeeded {
                        self.record(
                            "leave",
                            "",
                            None,
                            "ok: idle node removed: leaving the cluster".to_owned(),
                        );
                        tracing::info!("idle node drained and removed: leaving the cluster");
                        self.shared.leave.cancel();
                    } else {
                        tracing::warn!("the remove-node hook failed; this node stays drained");
                        self.keep_drained().await;
                    }
                }
            }
            return;
        }
        let (others, only_base) = {
            let knowledge = self.shared.knowledge();
            let others = knowledge.peers.nodes.keys().any(|n| *n != self.shared.node);
            let only_base = knowledge
                .instances
                .values()
                .filter(|i| i.state == "running")
                .all(|i| knowledge.base_services.contains(&i.service));
            (others, only_base)
        };
        let idle = if !active || !others {
            false
        } else if only_base {
            self.idle_reason = format!(
                "idle: no instance but its base services for {} s",
                nodes.idle_period_secs
            );
            true
        } else if let Some(headroom) = nodes.idle_headroom {
            let fits = self.fits_elsewhere(headroom).await;
            if fits {
                self.idle_reason = format!(
                    "idle: its instances fit on the other nodes under {:.0} % of their capacity for {} s",
                    headroom * 100.0,
                    nodes.idle_period_secs
                );
            }
            fits
        } else {
            false
        };
        if !idle {
            self.idle_since = None;
            return;
        }
        let now = now();
        let since = *self.idle_since.get_or_insert(now);
        let period = std::time::Duration::from_secs(nodes.idle_period_secs);
        if now.since(since) < period {
            return;
        }
        self.idle_since = None;
        let reason = self.idle_reason.clone();
        let record = serde_json::json!({ "node": self.shared.node, "reason": reason }).to_string();
        let cooldown = i64::try_from(nodes.cooldown_secs).unwrap_or(i64::MAX);
        match self
            .store
            .claim_node_call(self.keys.remove_node_claim(), &record, cooldown)
            .await
        {
            Ok(true) => {
                tracing::info!(%reason, "claimed this node's removal: draining");
                self.record(
                    "idle",
                    "",
                    None,
                    format!("ok: {reason}; draining this node"),
                );
                self.set_drain(true, true).await;
            }
            Ok(false) => tracing::debug!("idle, but a node was removed within the cooldown"),
            Err(err) => {
                self.shared.telemetry.metrics.etcd_error();
                tracing::warn!(error = %err, "cannot claim this node's removal");
            }
        }
    }
}

impl Autonomic {
    /// Idleness by headroom (`tick::headroom`): asks every other node its demand
    /// (`GET /gru/v1/node`, in parallel, each within `http::cluster::NODE_DEADLINE`);
    /// drained nodes do not count. A node that does not answer, or answers without a
    /// demand, makes the answer no: a removal is never decided on a partial view.
    async fn fits_elsewhere(&mut self, headroom: f64) -> bool {
        let (this, peers) = {
            let knowledge = self.shared.knowledge();
            let Some(this) = knowledge.node_demand() else {
                return false;
            };
            let peers: Vec<crate::http::NodeAddress> = knowledge
                .peers
                .nodes
                .iter()
                .filter(|(name, _)| **name != self.shared.node)
                .map(|(name, peer)| crate::http::NodeAddress::of(name, peer))
                .collect();
            (this, peers)
        };
        let client = self
            .peer_client
            .get_or_insert_with(|| crate::http::peer_client(&self.shared))
            .clone();
        let mut others = Vec::new();
        for (node, answer) in crate::http::node_views(&client, peers).await {
            let view = match answer {
                Ok(view) => view,
                Err(err) => {
                    tracing::debug!(node, error = %err, "no demand from this node: not idle");
                    return false;
                }
            };
            if !view["drain"].is_null() {
                continue;
            }
            match serde_json::from_value(view["demand"].clone()) {
                Ok(demand) => others.push((node, demand)),
                Err(_) => return false,
            }
        }
        crate::tick::headroom::idle_by_headroom(&self.shared.node, &this, &others, headroom)
    }
}
