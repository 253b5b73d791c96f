//! Plan: the planner (`crate::mape::plan`, pure) over the snapshots, and what its decision
//! leads to. A scale-out or scale-in becomes its claim (`tick::want_of`: a step or a
//! target); a swap claims both its halves before it stops one instance and starts the other.
//!
//! Invariants: every decision is recorded (knowledge, telemetry) with its weights and
//! reason, executable or not; a dry run and "no action" touch nothing; a decision starts or
//! stops an instance only after the claims it needs were won.

use common::config::ClusterConfig;

use super::Autonomic;
use crate::coordination::Direction;
use crate::mape::{Action, Decision, Millis, PlanInput, ServiceSnapshot, plan};
use crate::tick::{self, Want};

impl Autonomic {
    /// The planner's decision over `snapshots`, recorded (knowledge, telemetry, log); the
    /// planner's state moves on with it.
    pub(super) fn plan(
        &mut self,
        config: &ClusterConfig,
        snapshots: &[ServiceSnapshot],
        now: Millis,
    ) -> Decision {
        let input = PlanInput {
            services: snapshots,
            policy: &config.policy,
            strategy: config.agent.autonomic.planner_strategy,
            dry_run: config.agent.autonomic.dry_run,
            now,
        };
        let (decision, next) = plan(&input, &self.planner, &mut self.rng);
        self.planner = next;
        tracing::info!(action = %decision.action, reason = %decision.reason, "decision");
        self.shared.knowledge().record_decision(decision.clone());
        self.shared.telemetry.decided(&decision);
        decision
    }

    /// Carries a decision out: claims what it needs, then starts or stops on this node.
    pub(super) async fn execute(
        &mut self,
        config: &ClusterConfig,
        decision: &Decision,
        snapshots: &[ServiceSnapshot],
    ) {
        match &decision.action {
            Action::None => {}
            Action::ScaleOut { service, .. } | Action::ScaleIn { service, .. } => {
                let descriptor = config.services.get(service);
                let snapshot = snapshots.iter().find(|s| &s.name == service);
                if let (Some(descriptor), Some(snapshot)) = (descriptor, snapshot)
                    && let Some(want) = tick::want_of(&decision.action, snapshot, &config.policy)
                {
                    self.claim_and_act(config, descriptor, want).await;
                }
            }
            Action::Swap { stop, start } => {
                let (Some(start_descriptor), Some(stop_descriptor)) =
                    (config.services.get(start), config.services.get(stop))
                else {
                    return;
                };
                let out = Want::Swap {
                    direction: Direction::Out,
                };
                let r#in = Want::Swap {
                    direction: Direction::In,
                };
                if self
                    .claim_want(config, start_descriptor, out, "swap")
                    .await
                    .is_none()
                    || self
                        .claim_want(config, stop_descriptor, r#in, "swap")
                        .await
                        .is_none()
                {
                    return;
                }
                self.stop_instances(stop, 1, "swap").await;
                self.reconcile().await;
                self.start_instances(start_descriptor, 1, "swap").await;
            }
        }
    }
}
