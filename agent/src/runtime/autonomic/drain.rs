//! Draining this node (`drain node <n>`): it accepts no new instance, and moves each of its
//! own elsewhere, one per service at a time, each started elsewhere before it is stopped
//! here.
//!
//! ```text
//!   move: claim a target one above the count ──► the others fill it (a draining node has
//!         (Want::DrainMove, no cooldown)            no room: they start the replacement)
//!   stop: once discovery counts that many ──────► claim a stop of one instance here
//!         (Want::DrainStop, never below min)        (Want::DrainStop) and stop it
//! ```
//!
//! Invariants: every start and stop is a claim in the service's ledger (one move per
//! service at a time: a move waits while a target, a rollout step or an intent stands); a
//! stop waits until the replacement is ready, in discovery (a linearizable read of the
//! ready records first, then the claim's own count, not an intent's promise), except for a service at its MaxInstances, which has no room for a replacement
//! first: its instance is stopped first (the count stays ≥ MinInstances) and moved after.
//! A move whose target expired unfilled (no node had room) is asked again. Base services
//! move the same way; once the node is gone, its base services are re-homed as a lost
//! node's are (`peers.orphaned_base_services`: the survivors keep one instance).
//! When no instance is left, the drain is done: recorded in etcd and in `events`.

use common::config::ClusterConfig;

use super::{Autonomic, now};
use crate::runtime::DrainRecord;
use crate::tick::Want;

impl Autonomic {
    /// One step of this node's drain per service it still runs.
    pub(super) async fn drain(&mut self, config: &ClusterConfig) {
        let Some(record) = self.shared.knowledge().drain.clone() else {
            self.drain_moves.clear();
            return;
        };
        let mut here: Vec<(String, u32)> = Vec::new();
        {
            let knowledge = self.shared.knowledge();
            for info in knowledge
                .instances
                .values()
                .filter(|i| i.state == "running")
            {
                match here.iter_mut().find(|(s, _)| *s == info.service) {
                    Some((_, n)) => *n += 1,
                    None => here.push((info.service.clone(), 1)),
                }
            }
        }
        self.drain_moves
            .retain(|service, _| here.iter().any(|(s, _)| s == service));
        if here.is_empty() {
            if !record.done {
                self.drain_done(record).await;
            }
            return;
        }
        let counts = self.cluster_counts().await;
        let targets = self
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (service, _) in here {
            let Some(descriptor) = config.services.get(&service) else {
                continue;
            };
            let observed = counts.get(&service).copied().unwrap_or(0);
            let at_max = descriptor.max_instances.is_some_and(|max| observed >= max);
            let want = match self.drain_moves.get(&service) {
                Some(wait_for) => Want::DrainStop {
                    wait_for: *wait_for,
                },
                None if at_max => Want::DrainStop { wait_for: 0 },
                None => Want::DrainMove,
            };
            if let Want::DrainStop { wait_for } = want
                && wait_for > 0
            {
                // The replacement must be ready (in discovery), not only started: the
                // claim's count holds starting instances too.
                let ready = match self.read_ready_and_starting().await {
                    Ok((ready, _)) => ready.get(&service).copied().unwrap_or(0),
                    Err(_) => continue,
                };
                if ready < wait_for {
                    if !targets.contains(&service) && observed < wait_for {
                        // The target expired before anyone filled it: ask again.
                        tracing::info!(
                            service,
                            "drain: the replacement did not come; asking again"
                        );
                        self.drain_moves.remove(&service);
                    }
                    continue;
                }
            }
            let won = self
                .carry_out(config, vec![(service.clone(), want)], &mut None)
                .await;
            match want {
                Want::DrainMove => {
                    if let Some(target) = won.first().and_then(|c| c.target.as_ref()) {
                        tracing::info!(
                            service,
                            desired = target.desired,
                            "drain: asked the others for a replacement"
                        );
                        self.record(
                            "drain",
                            &service,
                            None,
                            format!(
                                "ok: asked the other nodes to start one (count {} to {})",
                                target.desired - 1,
                                target.desired
                            ),
                        );
                        self.drain_moves.insert(service, target.desired);
                    }
                }
                Want::DrainStop { .. } if !won.is_empty() => {
                    self.drain_moves.remove(&service);
                    self.reconcile().await;
                }
                _ => {}
            }
        }
    }

    /// No instance is left here: the node says so (etcd, `events`, its log).
    async fn drain_done(&mut self, mut record: DrainRecord) {
        record.done = true;
        self.write_drain(Some(&record)).await;
        self.shared.knowledge().drain = Some(record);
        tracing::info!("drain done: no instance left on this node; it may leave (gru leave)");
        self.record(
            "drain",
            "",
            None,
            "ok: drained: no instance left on this node".to_owned(),
        );
    }

    /// Starts or ends this node's drain (the `drain` and `undrain` commands; `remove` for
    /// an idle node's own drain, which ends in its removal). An undrained node is no longer
    /// on its way out: the record, and its `remove`, go.
    pub(super) async fn set_drain(&mut self, drain: bool, remove: bool) {
        let current = self.shared.knowledge().drain.clone();
        let record = match (drain, current) {
            (true, Some(_)) | (false, None) => return,
            (true, None) => Some(DrainRecord {
                since: now(),
                done: false,
                remove,
            }),
            (false, Some(_)) => None,
        };
        self.write_drain(record.as_ref()).await;
        self.shared.knowledge().drain = record;
        self.drain_moves.clear();
        let what = if drain {
            "drain started: no new instance here; moving this node's instances"
        } else {
            "undrained: this node takes instances again"
        };
        tracing::info!("{what}");
        self.record("drain", "", None, format!("ok: {what}"));
    }

    /// Leaves the cluster if the drain is done (the API refuses `leave` otherwise; this
    /// checks again): the daemon shuts down, and [`Autonomic::forget_drain`] runs on the
    /// way out.
    pub(super) async fn leave(&mut self) {
        let done = self
            .shared
            .knowledge()
            .drain
            .as_ref()
            .is_some_and(|d| d.done);
        if !done {
            self.record(
                "leave",
                "",
                None,
                format!("refused: {}", not_drained(&self.shared.node)),
            );
            return;
        }
        self.record("leave", "", None, "ok: leaving the cluster".to_owned());
        tracing::info!("leaving the cluster: drained, stopping the agent");
        self.shared.leave.cancel();
    }

    /// On the way out of the loop: a node that leaves drained takes its drain record with
    /// it (a later node of the same name starts in service). A killed agent keeps it.
    pub(super) async fn forget_drain(&mut self) {
        let done = self
            .shared
            .knowledge()
            .drain
            .as_ref()
            .is_some_and(|d| d.done);
        if done {
            self.write_drain(None).await;
        }
    }

    /// This node stays drained but is no longer on its way out (its remove-node hook
    /// failed): recorded, so that a restart does not call the hook again unasked.
    pub(super) async fn keep_drained(&mut self) {
        let Some(mut record) = self.shared.knowledge().drain.clone() else {
            return;
        };
        record.remove = false;
        self.write_drain(Some(&record)).await;
        self.shared.knowledge().drain = Some(record);
    }

    /// Writes (or, for `None`, deletes) this node's durable drain record.
    async fn write_drain(&self, record: Option<&DrainRecord>) {
        let key = self.keys.drain(&self.shared.node);
        let result = match record {
            Some(record) => {
                let value = serde_json::to_string(record).unwrap_or_default();
                self.store.put(&key, &value, None).await
            }
            None => self.store.delete(&key).await,
        };
        if let Err(err) = result {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot record this node's drain in etcd");
        }
    }
}

/// Why a node that is not drained (or still draining) does not leave.
pub fn not_drained(node: &str) -> String {
    format!("node {node} is not drained: `drain node {node}` first, and leave once it says drained")
}
