//! Idleness by headroom (`Nodes.IdleHeadroom`), as values: a node whose movable load (its
//! instances that are not base services) would fit on the other nodes and still leave them
//! under a fraction of their capacity is idle, even though it runs scaled instances.
//!
//! A node's demand on a resource is the larger of what its instances use (their latest
//! readings) and what they reserve (a `Memory` limit, pinned cores): the room the planner
//! counts is the reservation, and an instance may use more CPU than it pins. The daemon
//! gathers every node's [`NodeDemand`] (`GET /gru/v1/node`, `runtime::autonomic::nodes`);
//! [`idle_by_headroom`] decides.
//!
//! Only one node at a time qualifies: the one whose movable load is smallest (memory, then
//! CPU, then name), so that the agents, each deciding alone, agree on which node goes and
//! the one that goes moves the least. The removal claim (once per `Nodes.Cooldown`)
//! stays the last word.

use serde::{Deserialize, Serialize};

/// One node's capacity, demand and the part of its demand a drain would move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeDemand {
    /// Cores of the node's engine.
    pub cpus: u32,
    /// Memory of the node's engine.
    pub memory_bytes: u64,
    /// Cores its instances use or pin.
    pub cpu_cores: f64,
    /// Memory its instances use or reserve.
    pub memory_demand_bytes: u64,
    /// The part of `cpu_cores` of instances that are not its base services.
    pub movable_cpu_cores: f64,
    /// The part of `memory_demand_bytes` of instances that are not its base services.
    pub movable_memory_bytes: u64,
}

impl NodeDemand {
    /// Whether `self` moves less than `other` (memory, then CPU); equal loads go by name.
    fn moves_less(&self, name: &str, other: &NodeDemand, other_name: &str) -> bool {
        use std::cmp::Ordering::{Greater, Less};
        match self.movable_memory_bytes.cmp(&other.movable_memory_bytes) {
            Less => true,
            Greater => false,
            _ => match self.movable_cpu_cores.partial_cmp(&other.movable_cpu_cores) {
                Some(Less) => true,
                Some(Greater) => false,
                _ => name < other_name,
            },
        }
    }
}

/// Whether node `name` (demand `this`) is idle by headroom: with its movable load added
/// to the `others` (the nodes in service besides it), their CPU and memory demand stay
/// under `headroom` (a fraction of their capacity), and no other node moves less. False
/// with no other node, or when the others' capacity is unknown (0).
pub fn idle_by_headroom(
    name: &str,
    this: &NodeDemand,
    others: &[(String, NodeDemand)],
    headroom: f64,
) -> bool {
    if others.is_empty() {
        return false;
    }
    let cpus: f64 = others.iter().map(|(_, d)| f64::from(d.cpus)).sum();
    let memory: f64 = others.iter().map(|(_, d)| d.memory_bytes as f64).sum();
    if cpus <= 0.0 || memory <= 0.0 {
        return false;
    }
    let cpu_after: f64 =
        others.iter().map(|(_, d)| d.cpu_cores).sum::<f64>() + this.movable_cpu_cores;
    let memory_after: f64 = others
        .iter()
        .map(|(_, d)| d.memory_demand_bytes as f64)
        .sum::<f64>()
        + this.movable_memory_bytes as f64;
    let fits = cpu_after < headroom * cpus && memory_after < headroom * memory;
    fits && others
        .iter()
        .all(|(other_name, other)| this.moves_less(name, other, other_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node(memory_demand: u64, movable_memory: u64, cpu: f64, movable_cpu: f64) -> NodeDemand {
        NodeDemand {
            cpus: 4,
            memory_bytes: 10 * GIB,
            cpu_cores: cpu,
            memory_demand_bytes: memory_demand,
            movable_cpu_cores: movable_cpu,
            movable_memory_bytes: movable_memory,
        }
    }

    #[test]
    fn a_node_whose_load_fits_under_the_headroom_of_the_others_is_idle() {
        // n2 moves 1 GiB onto n1 (3 GiB of 10): 4 GiB < 5 GiB.
        let n1 = node(3 * GIB, 2 * GIB, 0.5, 0.2);
        let n2 = node(GIB, GIB, 0.1, 0.1);
        let others = [("n1".to_owned(), n1)];
        assert!(idle_by_headroom("n2", &n2, &others, 0.5));
        // Under 0.3 it does not fit (4 GiB ≥ 3 GiB).
        assert!(!idle_by_headroom("n2", &n2, &others, 0.3));
    }

    #[test]
    fn cpu_and_memory_must_both_fit() {
        let n1 = node(GIB, GIB, 1.9, 1.0);
        let n2 = node(GIB / 2, GIB / 2, 0.2, 0.2);
        // Memory fits (1.5 of 10 GiB), CPU does not: 2.1 cores ≥ 0.5 × 4.
        assert!(!idle_by_headroom("n2", &n2, &[("n1".to_owned(), n1)], 0.5));
    }

    #[test]
    fn only_the_node_that_moves_least_is_idle() {
        let n1 = node(3 * GIB, 2 * GIB, 0.5, 0.2);
        let n2 = node(GIB, GIB, 0.1, 0.1);
        assert!(!idle_by_headroom("n1", &n1, &[("n2".to_owned(), n2)], 0.9));
        assert!(idle_by_headroom("n2", &n2, &[("n1".to_owned(), n1)], 0.9));
        // Equal memory: the one with less CPU; equal both: the first by name.
        let a = node(GIB, GIB, 0.1, 0.1);
        let b = node(GIB, GIB, 0.3, 0.3);
        assert!(idle_by_headroom("b", &a, &[("a".to_owned(), b)], 0.9));
        assert!(!idle_by_headroom("a", &b, &[("b".to_owned(), a)], 0.9));
        assert!(idle_by_headroom("a", &a, &[("b".to_owned(), a)], 0.9));
        assert!(!idle_by_headroom("b", &a, &[("a".to_owned(), a)], 0.9));
    }

    #[test]
    fn no_other_node_or_no_known_capacity_is_never_idle() {
        let n2 = node(0, 0, 0.0, 0.0);
        assert!(!idle_by_headroom("n2", &n2, &[], 0.5));
        let unknown = NodeDemand::default();
        assert!(!idle_by_headroom(
            "n2",
            &n2,
            &[("n1".to_owned(), unknown)],
            0.5
        ));
    }
}
