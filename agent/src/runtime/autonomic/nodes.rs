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
    pub(super) async fn watch_saturation(&mut self, config: &ClusterConfig) {
        let nodes = &config.agent.nodes;
        let Some(hook) = nodes.add_node_hook.clone() else {
            self.saturation.reset();
            return;
        };
        if self.shared.knowledge().drain.is_some() {
            self.saturation.reset();
            return;
        }
        let held = std::mem::take(&mut self.held_by_room);
        let period = std::time::Duration::from_secs(nodes.saturated_period_secs);
        if !self.saturation.observe(&held, now(), period) {
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
            .claim_add_node(&self.keys, &record, cooldown)
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
