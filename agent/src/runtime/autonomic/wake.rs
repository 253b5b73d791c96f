//! What wakes the loop besides its period: the engine's container events (→ reconcile),
//! the scaling ledgers' watch (a standing target → fill it), and fresh metrics that newly
//! cross a scale-out or scale-in threshold (→ the next tick brought forward: fast detection).
//!
//! Invariants: these only wake the loop (a `Notify`: a burst of wake-ups costs one); what
//! a wake-up leads to runs in the loop's task. A container-event stream that breaks is
//! opened again with backoff (500 ms doubling to 10 s), and meanwhile the periodic
//! reconcile notices changes a loop later; after the ledger watch broke, every service is
//! checked once. The crossing check reads only this node's metric windows: no I/O.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Autonomic, now};
use crate::store::WatchEvent;

impl Autonomic {
    /// Follows the engine's container events for this cluster; any event of this node wakes
    /// the loop. If the stream cannot be opened the periodic reconcile still notices
    /// changes, one loop interval later.
    pub(super) fn watch_events(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let engine = self.engine.clone();
        let cluster = self.shared.cluster.clone();
        let node = self.shared.node.clone();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            while !cancel.is_cancelled() {
                match engine.events(&cluster).await {
                    Ok(mut events) => loop {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            event = events.recv() => match event {
                                Some(event) if event.node == node => changed.notify_one(),
                                Some(_) => {}
                                None => break,
                            },
                        }
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot follow container events; retrying")
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        })
    }

    /// Follows the cluster's scaling ledgers: a target-tracking decision (a `target` record)
    /// put by any agent wakes the loop to fill its share; one that expires is forgotten.
    /// After the watch broke, every service is checked once (the ledger read says).
    pub(super) fn watch_ledgers(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let mut changes = self.store.watch_prefix(&self.keys.scaling_root(), cancel);
        let keys = self.keys.clone();
        let targets = self.targets.clone();
        let desired = self.target_desired.clone();
        let changed = self.targets_changed.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(event) = changes.recv().await {
                let mut set = targets.lock().unwrap_or_else(|p| p.into_inner());
                let mut woken = false;
                match event {
                    WatchEvent::Changed(keys_changed) => {
                        for (key, value) in keys_changed {
                            let Some((service, "target")) = keys.parse_scaling_key(&key) else {
                                continue;
                            };
                            let out = value
                                .as_deref()
                                .and_then(|v| {
                                    serde_json::from_str::<crate::coordination::Target>(v).ok()
                                })
                                .filter(|t| t.direction == crate::coordination::Direction::Out);
                            {
                                let mut desired = desired.lock().unwrap_or_else(|p| p.into_inner());
                                match out {
                                    Some(target) => {
                                        desired.insert(service.to_owned(), target.desired)
                                    }
                                    None => desired.remove(service),
                                };
                            }
                            if value.is_some() {
                                set.insert(service.to_owned());
                                woken = true;
                            } else {
                                set.remove(service);
                            }
                        }
                    }
                    WatchEvent::Resynced => {
                        if let Some(config) = shared.knowledge().config.clone() {
                            set.extend(config.services.keys().cloned());
                            woken = true;
                        }
                    }
                }
                drop(set);
                if woken {
                    changed.notify_one();
                }
            }
        })
    }

    /// Whether a service's freshest local values newly cross its scale-out or scale-in
    /// threshold (`mape::crossing`; they did not at the last check). Cheap: this node's metric means and the
    /// analytics over them, no I/O.
    pub(super) fn newly_crossing(&mut self) -> bool {
        let Some(config) = self.config() else {
            return false;
        };
        let Some((_, compiled)) = self.compiled.as_ref() else {
            return false;
        };
        let now = now();
        let mut crossing = BTreeSet::new();
        let mut knowledge = self.shared.knowledge();
        for descriptor in config.services.values() {
            let local = knowledge.local_metrics(&descriptor.name, now);
            if local.is_empty() {
                continue;
            }
            let analytics = compiled.evaluate(descriptor, &local);
            let policy = descriptor
                .policy
                .as_ref()
                .map_or_else(|| config.policy.clone(), |own| own.apply(&config.policy));
            let value = |name: &str| match common::config::base_metric(name) {
                Some(base) => local.get(base).copied(),
                None => analytics.get(name).and_then(|v| v.value()),
            };
            let crossed = crate::mape::crossing(&policy, &descriptor.analytics, value);
            let (over, under) = (crossed.scale_out, crossed.scale_in);
            if over {
                crossing.insert(format!("{}/out", descriptor.name));
            }
            if under {
                crossing.insert(format!("{}/in", descriptor.name));
            }
        }
        drop(knowledge);
        let newly = crossing.iter().any(|c| !self.crossing.contains(c));
        self.crossing = crossing;
        newly
    }
}
