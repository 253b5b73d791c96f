//! Images come in beside the loop. Once per tick (`prefetch`) the agent looks for the
//! images of the configured services (`Pull.Policy` "IfNotPresent") on its engine: one it
//! lacks is pulled by a task of its own, and until that pull has succeeded this node offers
//! no room for the services that run it (`analyze::free_slots`). A claim (a repair, a fill,
//! a scale-out) then goes to a node that has the image, and a start here never waits for a
//! pull inside the tick. A pull that fails backs those services off, as a failed start
//! does, and is tried again when the backoff ends.
//!
//! Invariants: at most one task per image; the loop never awaits a running pull (it looks
//! at finished ones, `collect_pulls`); an image is looked up on the engine once per
//! configuration loaded while present, and again after each backoff while missing; an
//! engine that cannot say counts as having it (the start then pulls, as it always did).
//! `Always` and `Never` keep their meaning at the start (`Engine::ensure_image`). An
//! operator's `start service` still pulls inline (`Autonomic::start_now`): it is asked
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use common::config::pull::PullPolicy;
use common::config::{ClusterConfig, ServiceDescriptor};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Autonomic;
use crate::docker::DockerError;

/// The images of this node's engine, as the loop knows them.
#[derive(Debug, Default)]
pub(super) struct Pulls {
    /// Pulls under way, by image.
    tasks: BTreeMap<String, JoinHandle<Result<(), DockerError>>>,
    /// Images found on the engine (or pulled) since the configuration `seen` was loaded.
    present: BTreeSet<String>,
    /// Images found missing: their services have no room here until they are pulled.
    missing: BTreeSet<String>,
    seen: Option<Weak<ClusterConfig>>,
    /// Woken when a pull ends: the loop ticks at once, so that the room it gives back (or
    /// the backoff it starts) counts without waiting a loop.
    pub(super) ended: Arc<Notify>,
}

impl Pulls {
    /// Whether this node offers no room for `descriptor` because its image is not here yet.
    pub(super) fn holds_back(&self, descriptor: &ServiceDescriptor) -> bool {
        descriptor.pull.policy == PullPolicy::IfNotPresent
            && (self.missing.contains(&descriptor.image)
                || self.tasks.contains_key(&descriptor.image))
    }
}

impl Drop for Pulls {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl Autonomic {
    /// Looks for the configured services' images and starts a pull for each one missing
    /// (unless it runs, or its services back off after a failed one).
    pub(super) async fn prefetch(&mut self, config: &Arc<ClusterConfig>) {
        let same = self
            .pulls
            .seen
            .as_ref()
            .is_some_and(|seen| seen.ptr_eq(&Arc::downgrade(config)));
        if !same {
            // A new configuration: images may have been removed or retagged meanwhile.
            self.pulls.seen = Some(Arc::downgrade(config));
            self.pulls.present.clear();
        }
        for descriptor in config.services.values() {
            let image = &descriptor.image;
            if descriptor.pull.policy != PullPolicy::IfNotPresent
                || self.pulls.present.contains(image)
                || self.pulls.tasks.contains_key(image)
            {
                continue;
            }
            let backing_off = self.backs_off(&descriptor.name);
            if backing_off && self.pulls.missing.contains(image) {
                continue;
            }
            // An engine that cannot say counts as having it: the start pulls, as before.
            if self.engine.image_present(image).await.unwrap_or(true) {
                self.pulls.missing.remove(image);
                self.pulls.present.insert(image.clone());
                continue;
            }
            self.pulls.missing.insert(image.clone());
            if backing_off {
                continue;
            }
            let engine = self.engine.clone();
            let pull = descriptor.pull.clone();
            let auth_file = self.auth_file();
            let owned = image.clone();
            let ended = Arc::clone(&self.pulls.ended);
            let task = tokio::spawn(async move {
                let result = engine
                    .ensure_image(&owned, &pull, auth_file.as_deref())
                    .await;
                ended.notify_one();
                result
            });
            tracing::info!(service = %descriptor.name, %image, "image missing: pulling it beside the loop");
            self.record(
                "pull",
                &descriptor.name,
                None,
                format!("pulling image {image}; no room for it here until it is in"),
            );
            self.pulls.tasks.insert(image.clone(), task);
        }
    }

    /// `Some(why)` when a start of `descriptor` must wait: its image is missing here (a
    /// pull runs beside the loop, or is backed off). No engine call.
    pub(super) fn pull_first(&self, descriptor: &ServiceDescriptor) -> Option<String> {
        self.pulls.holds_back(descriptor).then(|| {
            format!(
                "deferred: image {} is not on this node yet (pulling beside the loop)",
                descriptor.image
            )
        })
    }

    /// Looks at the pulls that ended: a success gives their services' room back, a failure
    /// backs them off as a failed start does. Never waits for a running pull.
    pub(super) async fn collect_pulls(&mut self) {
        let ended: Vec<String> = self
            .pulls
            .tasks
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(image, _)| image.clone())
            .collect();
        for image in ended {
            let Some(task) = self.pulls.tasks.remove(&image) else {
                continue;
            };
            let result = match task.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(joined) => Err(format!("the pull task ended: {joined}")),
            };
            match result {
                Ok(()) => {
                    tracing::info!(%image, "image pulled: its services have room here again");
                    self.pulls.missing.remove(&image);
                    self.pulls.present.insert(image);
                }
                Err(error) => {
                    tracing::warn!(%image, %error, "pull failed");
                    let services: Vec<String> = self
                        .config()
                        .map(|config| {
                            config
                                .services
                                .values()
                                .filter(|d| d.image == image)
                                .map(|d| d.name.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    for service in services {
                        self.record("pull", &service, None, format!("failed: {error}"));
                        self.back_off(&service, error.clone());
                    }
                }
            }
        }
    }
}
