//! Plan: the planner over the snapshots and what its decision leads to, both from the tick
//! core (`tick::plan`): a scale-out or scale-in becomes its claim (a step or a target); a
//! swap claims both its halves before it stops one instance and starts the other.
//!
//! Invariants: every decision is recorded (knowledge, telemetry) with its weights and
//! reason, executable or not; a dry run and "no action" touch nothing; a decision starts or
//! stops an instance only after the claims it needs were won.

use common::config::ClusterConfig;

use super::Autonomic;
use crate::mape::{Millis, PlanInput, ServiceSnapshot};
use crate::tick::{self, Want};

impl Autonomic {
    /// The planner's decision over `snapshots` (`tick::plan`), recorded (knowledge,
    /// telemetry, log); the planner's state moves on with it. Returns the claims the
    /// decision leads to, in the order they are claimed.
    pub(super) fn plan(
        &mut self,
        config: &ClusterConfig,
        snapshots: &[ServiceSnapshot],
        now: Millis,
    ) -> Vec<(String, Want)> {
        let input = PlanInput {
            services: snapshots,
            policy: &config.policy,
            strategy: config.agent.autonomic.planner_strategy,
            dry_run: config.agent.autonomic.dry_run,
            now,
        };
        let planned = tick::plan(&input, &self.planner, &mut self.rng);
        let before = std::mem::replace(&mut self.planner, planned.state);
        let decision = planned.decision;
        self.decided_from = (decision.action != crate::mape::Action::None)
            .then(|| (decision.action.clone(), before));
        self.held_by_room = crate::tick::saturation::held_by_room(&decision);
        tracing::info!(action = %decision.action, reason = %decision.reason, "decision");
        {
            let mut knowledge = self.shared.knowledge();
            knowledge.history.record(snapshots, &config.policy, now);
            knowledge.record_decision(decision.clone());
        }
        self.shared.telemetry.decided(&decision);
        planned.wants
    }

    /// A step the last decision led to was withheld (nodes in doubt): the planner's state
    /// forgets that it was taken, so its cooldown does not start and the next tick may
    /// decide it again once the doubt is over.
    pub(super) fn take_back_decision(&mut self) {
        if let Some((action, before)) = self.decided_from.take() {
            self.planner.take_back(&action, &before);
        }
    }

    /// Carries a decision's claims out (`tick::Planned::wants`) as `tick::Execution` says:
    /// each claimed in order, and only when all were won, stops then starts here.
    pub(super) async fn execute(&mut self, config: &ClusterConfig, wants: Vec<(String, Want)>) {
        self.carry_out(config, wants, &mut None).await;
    }
}
