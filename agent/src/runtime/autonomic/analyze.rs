//! Monitor and analyze as the planner and the claims read them: the cluster's instance
//! counts (the discovery records of the ready instances and the starting records of the
//! others: an instance that is not ready yet still counts, so min/max, repairs and the
//! planner do not start another one for it), what this agent observes of a service for a claim, the
//! planner's snapshots (the cluster's values from the gossip view, the analytics over them),
//! and this node's room.
//!
//! Invariants: a count is never less than what runs here. The tick's counts (the floor's
//! "is a repair needed", the planner's snapshots) come from the watch-fed mirror of the
//! discovery records (`crate::store::Mirror`) while it is ready, so a tick sends etcd
//! nothing in steady state; when it is not ready (never loaded, rebuilding, etcd found
//! unreachable) they are read from etcd, and when that fails too the planner falls back to
//! this node's instances. A claim never uses the mirror nor that fallback:
//! `observed_for_claim` reads etcd after the ledger (see `claims`), linearizably, or fails.
//! A stale mirror can therefore only make a claim be attempted and refused, or a repair be
//! noticed later (at worst one resync period, `crate::store::MIRROR_RESYNC_PERIOD`). Only
//! reads, besides the analytics it computes, which go into the knowledge (for the HTTP API
//! and this node's gossip report).

use std::collections::BTreeMap;

use common::config::{ClusterConfig, ServiceDescriptor};
use common::keys::leaf_name;

use super::Autonomic;
use crate::mape::{Millis, ServiceSnapshot, StartHeld};
use crate::store::{Mirror, MirrorSettings, StoreError};
use crate::tick::ServiceObservation;
use crate::tick::local::parent_of;

/// The number of records per service among `keys`, the discovery records' keys under
/// `prefix` (`<root>/`): `<root>/<service>/<instance>`; anything else is not counted.
fn count_records<K: AsRef<str>>(
    prefix: &str,
    keys: impl IntoIterator<Item = K>,
) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for key in keys {
        let record = key
            .as_ref()
            .strip_prefix(prefix)
            .and_then(|r| r.split_once('/'));
        if let Some((service, _)) = record.filter(|(_, i)| leaf_name("", i).is_some()) {
            *counts.entry(service.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Instances by service.
pub(super) type Counts = BTreeMap<String, u32>;

/// Adds `more` to `counts`, service by service.
fn add_counts(counts: &mut BTreeMap<String, u32>, more: BTreeMap<String, u32>) {
    for (service, count) in more {
        *counts.entry(service).or_insert(0) += count;
    }
}

/// Free slots reported for a service that asks for neither pinned cores nor a memory limit:
/// the node cannot tell how many more fit, so the planner's other guards decide.
const UNBOUNDED_SLOTS: u32 = 64;

impl Autonomic {
    /// The prefix of the discovery records under the current configuration's `AppRoot`
    /// (`<root>/`).
    fn discovery_prefix(&self) -> String {
        let app_root = self
            .config()
            .map(|c| c.agent.discovery.app_root.clone())
            .unwrap_or_default();
        format!("{}/", self.keys.discovery_root(&app_root))
    }

    /// Makes the mirror of the discovery records follow the current `AppRoot`: started the
    /// first time, replaced (the old one stops) when a reload changed the root; and the
    /// mirror of the starting records, started the first time.
    pub(super) fn follow_discovery(&mut self) {
        if self.starting_records.is_none() {
            self.starting_records = Some(Mirror::start(
                &self.store,
                &self.keys.starting_root(),
                MirrorSettings::default(),
            ));
        }
        let prefix = self.discovery_prefix();
        if self
            .discovery_records
            .as_ref()
            .is_some_and(|m| m.prefix() == prefix)
        {
            return;
        }
        self.discovery_records = Some(Mirror::start(
            &self.store,
            &prefix,
            MirrorSettings::default(),
        ));
    }

    /// Running instances of each service in the whole cluster, ready or starting, from
    /// the records (every agent publishes its running instances there, the ready ones in
    /// discovery, the others as starting records): the mirrors' while both are ready,
    /// else read from etcd, else none (the planner then counts this node's instances).
    pub(super) async fn cluster_counts(&self) -> BTreeMap<String, u32> {
        let prefix = self.discovery_prefix();
        let starting = self.keys.starting_root();
        let mirrored = self
            .discovery_records
            .as_ref()
            .filter(|m| m.prefix() == prefix)
            .and_then(|m| m.read(|records| count_records(&prefix, records.keys())));
        let mirrored_starting = self
            .starting_records
            .as_ref()
            .and_then(|m| m.read(|records| count_records(&starting, records.keys())));
        if let (Some(mut counts), Some(starting)) = (mirrored, mirrored_starting) {
            add_counts(&mut counts, starting);
            return counts;
        }
        self.read_cluster_counts().await.unwrap_or_else(|err| {
            self.shared.telemetry.metrics.etcd_error();
            tracing::warn!(error = %err, "cannot read the cluster's instances; using this node's");
            BTreeMap::new()
        })
    }

    /// The counts read from etcd (linearizable, never the mirror; the discovery and the
    /// starting records in one read, so an instance that moves between them is counted
    /// once); an unreadable count is an error: a claim in the ledger must not be based on
    /// this node's instances alone.
    async fn read_cluster_counts(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        let (mut counts, starting) = self.read_ready_and_starting().await?;
        add_counts(&mut counts, starting);
        Ok(counts)
    }

    /// The cluster's ready instances (discovery records) and starting ones (starting
    /// records) of each service, read from etcd in one transaction (linearizable, one
    /// revision: an instance that moves between them is in exactly one).
    pub(super) async fn read_ready_and_starting(&self) -> Result<(Counts, Counts), StoreError> {
        let prefixes = [self.discovery_prefix(), self.keys.starting_root()];
        let mut read = self.store.get_prefixes(&prefixes).await?.into_iter();
        let mut count = |prefix: &str| {
            let records = read.next().unwrap_or_default();
            count_records(prefix, records.iter().map(|e| &e.key))
        };
        let ready = count(&prefixes[0]);
        let starting = count(&prefixes[1]);
        Ok((ready, starting))
    }

    /// The service's running instances in the cluster, read for a claim: from etcd (never
    /// the mirror), after the ledger (see `crate::coordination`), and never less than this
    /// node runs.
    pub(super) async fn observed_for_claim(&self, service: &str) -> Result<u32, StoreError> {
        let here = self.shared.knowledge().running(service).count() as u32;
        let counts = self.read_cluster_counts().await?;
        Ok(counts.get(service).copied().unwrap_or(0).max(here))
    }

    /// What this agent observes of a service for its claims (`tick::ServiceObservation`),
    /// `observed` being the discovery count it read.
    pub(super) fn observation(
        &self,
        config: &ClusterConfig,
        descriptor: &ServiceDescriptor,
        observed: u32,
    ) -> ServiceObservation {
        let knowledge = self.shared.knowledge();
        let running_here = knowledge
            .running(&descriptor.name)
            .filter(|i| parent_of(&i.instance, &i.service).is_none())
            .count() as u32;
        let base = knowledge.base_services.contains(&descriptor.name);
        drop(knowledge);
        ServiceObservation::new(
            descriptor.min_instances,
            descriptor.max_instances,
            observed,
            running_here,
            base,
            self.free_slots(config, descriptor),
        )
    }

    /// The planner's input per service. Values are the cluster's: this node's own metrics
    /// (and the analytics over them) go into its report, the report into the cluster view,
    /// and the analytics the planner weighs are evaluated over the view's metrics, weighted
    /// by each node's instance count.
    pub(super) async fn snapshots(
        &mut self,
        config: &ClusterConfig,
        cluster_counts: &BTreeMap<String, u32>,
        now: Millis,
    ) -> Vec<ServiceSnapshot> {
        let free: BTreeMap<String, u32> = config
            .services
            .values()
            .map(|d| (d.name.clone(), self.free_slots(config, d)))
            .collect();
        let mut held = self.starts_held(now);
        let mut knowledge = self.shared.knowledge();
        let compiled = self.compiled.as_ref().map(|(_, c)| c);
        let mut local_analytics = BTreeMap::new();
        for descriptor in config.services.values() {
            let local = knowledge.local_metrics(&descriptor.name, now);
            if let Some(compiled) = compiled {
                local_analytics.insert(
                    descriptor.name.clone(),
                    compiled.evaluate(descriptor, &local),
                );
            }
        }
        knowledge.local_analytics = local_analytics;
        knowledge.refresh_own_report(&self.shared.node, now);

        let mut snapshots = Vec::new();
        let mut analytics_by_service = BTreeMap::new();
        for descriptor in config.services.values() {
            let mut snapshot = ServiceSnapshot::with_policy(descriptor, &config.policy);
            let running = knowledge.running(&descriptor.name).count() as u32;
            let metrics = knowledge.view.service(&descriptor.name).metrics;
            snapshot.running_here = running;
            snapshot.cluster_instances = cluster_counts
                .get(&descriptor.name)
                .copied()
                .unwrap_or(0)
                .max(running);
            snapshot.base_service = knowledge.base_services.contains(&descriptor.name);
            snapshot.free_slots_here = free.get(&descriptor.name).copied().unwrap_or(0);
            snapshot.start_held = held.remove(&descriptor.name);
            snapshot.cpu_avg = metrics.get("cpu_avg").copied();
            snapshot.mem_avg = metrics.get("mem_avg").copied();
            if let Some(compiled) = compiled {
                snapshot.analytics = compiled.evaluate(descriptor, &metrics);
            }
            analytics_by_service.insert(descriptor.name.clone(), snapshot.analytics.clone());
            snapshots.push(snapshot);
        }
        knowledge.analytics = analytics_by_service;
        snapshots
    }

    /// The services this node backs off from starting (its last start of them failed),
    /// with why and for how long, for the planner's "why".
    fn starts_held(&self, now: Millis) -> BTreeMap<String, StartHeld> {
        let knowledge = self.shared.knowledge();
        self.backoff
            .iter()
            .filter(|(_, backoff)| backoff.until > now)
            .map(|(service, backoff)| {
                let error = knowledge
                    .start_backoffs
                    .get(service)
                    .map_or_else(|| "failed".to_owned(), |b| b.error.clone());
                let ends_in_secs = backoff.until.since(now).as_secs().max(1);
                (
                    service.clone(),
                    StartHeld {
                        error,
                        ends_in_secs,
                    },
                )
            })
            .collect()
    }

    /// How many more instances of `descriptor` fit on this node: pinned cores and memory
    /// limits against what this cluster's containers on this engine already hold; none
    /// while a failed start of it backs off here or its image is missing here (being
    /// pulled beside the loop, `pulls.rs`), so that this node claims no start of it (a
    /// scale-out, a fill, a repair) and a node that can start it takes the claim.
    pub(super) fn free_slots(&self, config: &ClusterConfig, descriptor: &ServiceDescriptor) -> u32 {
        if self.backs_off(&descriptor.name) || self.pulls.holds_back(descriptor) {
            return 0;
        }
        let knowledge = self.shared.knowledge();
        if knowledge.drain.is_some() {
            // A drained node accepts no new instance.
            return 0;
        }
        let mut slots = UNBOUNDED_SLOTS;
        let cpu_number = descriptor.configuration.cpu_number;
        if let Some(cpu_number) = std::num::NonZeroU32::new(cpu_number) {
            // The engine's pins when known (agents sharing an engine share its cores),
            // else this node's own.
            let free_cores = match &knowledge.engine_cpusets {
                Some(held) => {
                    crate::runtime::usage::free_cores_on_engine(self.resources.cpus, held)
                }
                None => crate::runtime::usage::free_cores(
                    self.resources.cpus,
                    knowledge.instances.values(),
                    config,
                ),
            };
            slots = slots.min(free_cores / cpu_number);
        }
        if let Some(memory) = descriptor
            .configuration
            .memory
            .map(|m| m.bytes())
            .filter(|m| *m > 0)
        {
            let used: u64 = knowledge
                .instances
                .values()
                .filter_map(|i| config.services.get(&i.service))
                .filter_map(|s| s.configuration.memory.map(|m| m.bytes()))
                .sum();
            let free = self.resources.memory_bytes.saturating_sub(used);
            slots = slots.min(u32::try_from(free / memory).unwrap_or(u32::MAX));
        }
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::count_records;

    #[test]
    fn records_are_counted_per_service_and_nothing_else_is() {
        let keys = [
            "/gru/c/discovery/web/i1",
            "/gru/c/discovery/web/i2",
            "/gru/c/discovery/db/i3",
            "/gru/c/discovery/web/",
            "/gru/c/discovery/web/i4/deeper",
            "/gru/c/discovery/stray",
            "/gru/c/discoveryx/web/i5",
        ];
        let counts = count_records("/gru/c/discovery/", keys);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![("db".to_owned(), 1), ("web".to_owned(), 2)]
        );
    }
}
