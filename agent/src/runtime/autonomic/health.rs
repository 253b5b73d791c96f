//! What a change of an instance's health does (the probes, `runtime::health`, wake the loop
//! for it): the instance's record moves in or out of discovery at once, and an instance
//! whose liveness check fails is replaced: a new instance of its service is started on this
//! node, then the failing one stopped, both recorded as `replace-unhealthy` actions with
//! the reason.
//!
//! Invariants: a readiness change is published within the wake-up it causes, not at the
//! next tick. A replacement is this node's own repair, like removing an exited container:
//! it claims nothing in the ledger (the count is the same before and after; for a moment
//! it is one more) and is done whether or not the loop is active. A replacement is started
//! once per failing container; if the stop fails it is tried again at the next wake-up, the
//! replacement is not started again. A sidecar failing its liveness check is not replaced
//! alone: it is logged, and goes with its parent.

use super::Autonomic;
use crate::runtime::state::InstanceInfo;
use crate::tick::local::parent_of;

/// The action both halves of a replacement are recorded as.
pub const REPLACE_ACTION: &str = "replace-unhealthy";

impl Autonomic {
    /// An instance's health changed: publish the records as they now stand, and replace
    /// the instances whose liveness check fails.
    pub(super) async fn on_health_change(&mut self) {
        let infos = self.shared.knowledge().instances.clone();
        self.publish(&infos).await;
        self.replace_unhealthy().await;
    }

    async fn replace_unhealthy(&mut self) {
        let Some(config) = self.config() else { return };
        let dead: Vec<InstanceInfo> = self
            .shared
            .knowledge()
            .instances
            .values()
            .filter(|i| i.health.as_ref().is_some_and(|h| h.dead()))
            .cloned()
            .collect();
        self.replaced
            .retain(|id| self.shared.knowledge().instances.contains_key(id));
        for victim in dead {
            if parent_of(&victim.instance, &victim.service).is_some() {
                tracing::warn!(service = %victim.service, instance = %victim.instance, "sidecar fails its liveness check; it is replaced with its parent only");
                continue;
            }
            let Some(descriptor) = config.services.get(&victim.service) else {
                continue;
            };
            let reason = liveness_reason(&victim);
            if self.replaced.insert(victim.id.clone()) {
                tracing::warn!(service = %victim.service, instance = %victim.instance, %reason, "replacing an instance that fails its liveness check");
                self.start_instances(descriptor, 1, REPLACE_ACTION).await;
            }
            self.stop_one(&victim, REPLACE_ACTION, Some(&reason)).await;
        }
    }
}

/// Why an instance is replaced: its liveness check's failures in a row and the last error.
fn liveness_reason(info: &InstanceInfo) -> String {
    let Some(check) = info.health.as_ref().and_then(|h| h.liveness.as_ref()) else {
        return "liveness check failing".to_owned();
    };
    match &check.last_error {
        Some(error) => format!(
            "liveness check failed {} times in a row: {error}",
            check.failures
        ),
        None => format!("liveness check failed {} times in a row", check.failures),
    }
}
