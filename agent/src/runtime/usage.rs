//! What this node uses of what it has: CPU and memory summed over its containers' latest
//! stats readings, and the cores its pinned instances leave free.
//!
//! The stats poller ([`super::monitor::poll_stats`]) records each container's latest use in
//! the knowledge; the views (`GET /gru/v1/node`, the `gru_node` point) add them up here,
//! with plain functions over plain data. Free cores are counted as the planner's room is
//! (`free_slots`): the engine's cores less those every pinned container on it holds, when a
//! service pins and the engine answered ([`free_cores_on_engine`]), else less those this
//! node's own pinned instances hold ([`free_cores`]); what `list nodes` shows is what the
//! resource guard decides on.

use std::collections::BTreeMap;

use common::config::{ClusterConfig, CpuSet};
use serde::Serialize;

use crate::docker::CoreAllocator;
use crate::runtime::InstanceInfo;

/// What the node has, from the Docker engine at join (0 until then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// One container's latest reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceUsage {
    /// Cores used between its last two readings; `None` after its first reading.
    pub cpu_cores: Option<f64>,
    /// Memory in use, reclaimable cache left out.
    pub memory_bytes: u64,
}

/// The node's use, as `/gru/v1/node`, `list nodes` and `gru_node` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NodeUsage {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Cores used by this node's containers (sum over them; 1.0 = one core busy).
    pub cpu_used_cores: f64,
    /// `cpu_used_cores / cpus`, 0 when the node has no cpu count yet.
    pub cpu_used_fraction: f64,
    pub memory_used_bytes: u64,
    /// Cores no pinned instance of this node holds.
    pub free_cores: u32,
}

/// Cores of `cpus` that no pinned instance among `instances` holds: a fixed `cpuset_cpus`
/// holds its cores, a `cpunumber` its count (which cores the engine decides at start).
/// Instances of services the configuration does not know hold none.
pub fn free_cores<'a>(
    cpus: u32,
    instances: impl IntoIterator<Item = &'a InstanceInfo>,
    config: &ClusterConfig,
) -> u32 {
    let mut fixed: Vec<&CpuSet> = Vec::new();
    let mut counted: u32 = 0;
    for instance in instances {
        let Some(service) = config.services.get(&instance.service) else {
            continue;
        };
        match &service.configuration.cpuset_cpus {
            Some(set) => fixed.push(set),
            None => counted = counted.saturating_add(service.configuration.cpu_number),
        }
    }
    let free = CoreAllocator::new(cpus, fixed).free().len();
    u32::try_from(free)
        .unwrap_or(u32::MAX)
        .saturating_sub(counted)
}

/// Cores of `cpus` that none of `held` (every pinned container's cpuset on the engine,
/// whichever node or cluster it belongs to) holds: the room a pinned start really has when
/// several agents share one engine.
pub fn free_cores_on_engine(cpus: u32, held: &[CpuSet]) -> u32 {
    u32::try_from(CoreAllocator::new(cpus, held).free().len()).unwrap_or(u32::MAX)
}

/// Sums the readings of the running instances among `instances` (a reading of a container
/// that is gone is not counted).
pub fn node_usage<'a>(
    capacity: NodeCapacity,
    instances: impl IntoIterator<Item = &'a InstanceInfo> + Clone,
    readings: &BTreeMap<String, InstanceUsage>,
    config: Option<&ClusterConfig>,
) -> NodeUsage {
    let running = instances
        .clone()
        .into_iter()
        .filter(|i| i.state == "running");
    let mut cpu_used_cores = 0.0;
    let mut memory_used_bytes: u64 = 0;
    for instance in running {
        if let Some(reading) = readings.get(&instance.id) {
            cpu_used_cores += reading.cpu_cores.unwrap_or(0.0);
            memory_used_bytes = memory_used_bytes.saturating_add(reading.memory_bytes);
        }
    }
    let free_cores = match config {
        Some(config) => free_cores(
            capacity.cpus,
            instances.into_iter().filter(|i| i.state == "running"),
            config,
        ),
        None => capacity.cpus,
    };
    NodeUsage {
        cpus: capacity.cpus,
        memory_bytes: capacity.memory_bytes,
        cpu_used_cores,
        cpu_used_fraction: if capacity.cpus == 0 {
            0.0
        } else {
            cpu_used_cores / f64::from(capacity.cpus)
        },
        memory_used_bytes,
        free_cores,
    }
}

/// This node's demand for idleness by headroom (`tick::headroom`): per running instance,
/// the larger of its reading and its reservation (its service's `Memory`, its pinned
/// cores), summed; the instances of `base_services` stay, the others are movable.
pub fn node_demand<'a>(
    capacity: NodeCapacity,
    instances: impl IntoIterator<Item = &'a InstanceInfo>,
    readings: &BTreeMap<String, InstanceUsage>,
    config: &ClusterConfig,
    base_services: &[String],
) -> crate::tick::headroom::NodeDemand {
    let mut demand = crate::tick::headroom::NodeDemand {
        cpus: capacity.cpus,
        memory_bytes: capacity.memory_bytes,
        ..Default::default()
    };
    for instance in instances.into_iter().filter(|i| i.state == "running") {
        let reading = readings.get(&instance.id).copied().unwrap_or_default();
        let (reserved_memory, pinned) =
            config.services.get(&instance.service).map_or((0, 0), |s| {
                let pinned = match &s.configuration.cpuset_cpus {
                    Some(set) => set.cpus().len(),
                    None => s.configuration.cpu_number as usize,
                };
                (
                    s.configuration.memory.map_or(0, |m| m.bytes()),
                    u32::try_from(pinned).unwrap_or(u32::MAX),
                )
            });
        let memory = reading.memory_bytes.max(reserved_memory);
        let cpu = reading.cpu_cores.unwrap_or(0.0).max(f64::from(pinned));
        demand.memory_demand_bytes = demand.memory_demand_bytes.saturating_add(memory);
        demand.cpu_cores += cpu;
        if !base_services.contains(&instance.service) {
            demand.movable_memory_bytes = demand.movable_memory_bytes.saturating_add(memory);
            demand.movable_cpu_cores += cpu;
        }
    }
    demand
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mape::Millis;

    fn instance(id: &str, service: &str, state: &str) -> InstanceInfo {
        InstanceInfo {
            id: id.to_owned(),
            service: service.to_owned(),
            instance: format!("{service}-{id}"),
            state: state.to_owned(),
            address: None,
            started_at: Millis::ZERO,
            version: None,
            image: "img".to_owned(),
            ready: true,
            health: None,
            replaces: Vec::new(),
        }
    }

    fn config() -> ClusterConfig {
        let mut config = ClusterConfig {
            agent: Default::default(),
            policy: Default::default(),
            services: Default::default(),
            analytics: Default::default(),
        };
        for (name, cpu_number, cpuset) in [
            ("pinned", 1, None),
            ("fixed", 0, Some("2-3")),
            ("free", 0, None),
        ] {
            let mut descriptor = common::config::ServiceDescriptor {
                name: name.to_owned(),
                ..Default::default()
            };
            descriptor.configuration.cpu_number = cpu_number;
            descriptor.configuration.cpuset_cpus =
                cpuset.map(|s| s.parse::<CpuSet>().expect("a valid cpuset"));
            config.services.insert(name.to_owned(), descriptor);
        }
        config
    }

    #[test]
    fn usage_sums_running_readings_and_counts_cores_pinned_by_running_instances() {
        let instances = [
            instance("a", "pinned", "running"),
            instance("b", "fixed", "running"),
            instance("c", "free", "running"),
            instance("d", "pinned", "exited"),
        ];
        let readings = BTreeMap::from([
            (
                "a".to_owned(),
                InstanceUsage {
                    cpu_cores: Some(0.75),
                    memory_bytes: 100,
                },
            ),
            (
                "c".to_owned(),
                InstanceUsage {
                    cpu_cores: None,
                    memory_bytes: 50,
                },
            ),
            (
                "d".to_owned(),
                InstanceUsage {
                    cpu_cores: Some(1.0),
                    memory_bytes: 1000,
                },
            ),
        ]);
        let capacity = NodeCapacity {
            cpus: 6,
            memory_bytes: 4096,
        };
        let config = config();
        let usage = node_usage(capacity, instances.iter(), &readings, Some(&config));
        assert_eq!(usage.cpu_used_cores, 0.75);
        assert_eq!(usage.cpu_used_fraction, 0.125);
        assert_eq!(usage.memory_used_bytes, 150);
        // 6 cores: 2-3 fixed, one counted for `pinned`; the exited one holds none.
        assert_eq!(usage.free_cores, 3);
        assert_eq!(usage.cpus, 6);
        assert_eq!(usage.memory_bytes, 4096);
    }

    #[test]
    fn a_node_without_configuration_or_cpus_has_all_its_cores_free_and_no_fraction() {
        let usage = node_usage(
            NodeCapacity::default(),
            std::iter::empty(),
            &BTreeMap::new(),
            None,
        );
        assert_eq!(usage.free_cores, 0);
        assert_eq!(usage.cpu_used_fraction, 0.0);
        let two = NodeCapacity {
            cpus: 2,
            memory_bytes: 1,
        };
        assert_eq!(
            node_usage(two, std::iter::empty(), &BTreeMap::new(), None).free_cores,
            2
        );
    }

    #[test]
    fn cores_held_on_the_engine_by_any_node_are_not_free() {
        let held: Vec<CpuSet> = ["0", "2-3"]
            .iter()
            .map(|s| s.parse().expect("a valid cpuset"))
            .collect();
        assert_eq!(free_cores_on_engine(4, &held), 1);
        assert_eq!(
            free_cores_on_engine(2, &held),
            1,
            "cores past the engine's are ignored"
        );
        assert_eq!(free_cores_on_engine(2, &[]), 2);
    }

    #[test]
    fn more_pinned_instances_than_cores_leave_none_free() {
        let instances = [
            instance("a", "pinned", "running"),
            instance("b", "pinned", "running"),
            instance("c", "pinned", "running"),
        ];
        assert_eq!(free_cores(2, instances.iter(), &config()), 0);
    }
}
