//! Where `deploy` puts each service: a pure function of the nodes' room and the services'
//! needs, computed whole before anything is sent, so that a cluster that cannot hold every
//! service is refused with what is missing and nothing is half-deployed.
//!
//! Spread, not "service i on node i": services are taken largest first (CPUs, then memory,
//! then name, so big ones are not left without room by small ones), and each goes to the
//! node, among those where it fits, with the fewest instances after the placements so far,
//! then the most free room (the smaller of its free CPU and free memory fractions), then
//! the first name. A service that asks for no CPU and no memory fits anywhere.

use std::cmp::Ordering;
use std::fmt;

use super::output::human_bytes;

/// What a node offers and already uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoom {
    pub node: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub used_cpus: u32,
    pub used_memory_bytes: u64,
    /// gru instances it runs.
    pub instances: usize,
}

impl NodeRoom {
    pub fn free_cpus(&self) -> u32 {
        self.cpus.saturating_sub(self.used_cpus)
    }

    pub fn free_memory_bytes(&self) -> u64 {
        self.memory_bytes.saturating_sub(self.used_memory_bytes)
    }

    fn fits(&self, demand: &Demand) -> bool {
        self.free_cpus() >= demand.cpus && self.free_memory_bytes() >= demand.memory_bytes
    }

    /// The smaller of the free CPU and free memory fractions, in [0, 1].
    fn free_fraction(&self) -> f64 {
        let fraction = |free: f64, total: f64| if total > 0.0 { free / total } else { 0.0 };
        fraction(f64::from(self.free_cpus()), f64::from(self.cpus)).min(fraction(
            self.free_memory_bytes() as f64,
            self.memory_bytes as f64,
        ))
    }

    fn take(&mut self, demand: &Demand) {
        self.used_cpus = self.used_cpus.saturating_add(demand.cpus);
        self.used_memory_bytes = self.used_memory_bytes.saturating_add(demand.memory_bytes);
        self.instances += 1;
    }
}

/// What one instance of a service needs (its sidecars included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub service: String,
    /// Cores it is pinned to (`cpunumber`); 0 when not pinned.
    pub cpus: u32,
    /// Its memory limit; 0 when none.
    pub memory_bytes: u64,
}

impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.cpus, self.memory_bytes) {
            (0, 0) => write!(f, "nothing"),
            (cpus, 0) => write!(f, "{cpus} cpu(s)"),
            (0, memory) => write!(f, "{}", human_bytes(memory)),
            (cpus, memory) => write!(f, "{cpus} cpu(s) and {}", human_bytes(memory)),
        }
    }
}

/// One service placed on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub service: String,
    pub node: String,
}

/// Why the services do not fit: those left without a node, and the room that was left
/// once the others were placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    pub unplaced: Vec<Demand>,
    pub rooms_left: Vec<NodeRoom>,
    pub needed_cpus: u32,
    pub needed_memory_bytes: u64,
    pub free_cpus: u32,
    pub free_memory_bytes: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the nodes cannot hold one instance of every service ({} of them without room); nothing was deployed",
            self.unplaced.len()
        )?;
        let most_cpus = self
            .rooms_left
            .iter()
            .max_by_key(|r| (r.free_cpus(), std::cmp::Reverse(r.node.clone())));
        let most_memory = self
            .rooms_left
            .iter()
            .max_by_key(|r| (r.free_memory_bytes(), std::cmp::Reverse(r.node.clone())));
        for demand in &self.unplaced {
            write!(f, "\n  no room for {}: it needs {demand}", demand.service)?;
            if let (Some(cpus), Some(memory)) = (most_cpus, most_memory) {
                write!(
                    f,
                    "; once the others are placed, the most left on a node is {} cpu(s) ({}) and {} ({})",
                    cpus.free_cpus(),
                    cpus.node,
                    human_bytes(memory.free_memory_bytes()),
                    memory.node
                )?;
            } else {
                write!(f, "; there is no node to put it on")?;
            }
        }
        write!(
            f,
            "\n  in all the services need {} cpu(s) and {}; the nodes have {} cpu(s) and {} free",
            self.needed_cpus,
            human_bytes(self.needed_memory_bytes),
            self.free_cpus,
            human_bytes(self.free_memory_bytes)
        )?;
        write!(
            f,
            "\n  add nodes, or lower the services' cpunumber or Memory"
        )
    }
}

/// Places one instance of each of `services` on `nodes`, or says what does not fit.
/// Placements come back in service-name order.
pub fn place(nodes: &[NodeRoom], services: &[Demand]) -> Result<Vec<Placement>, Shortfall> {
    let mut rooms: Vec<NodeRoom> = nodes.to_vec();
    let mut order: Vec<&Demand> = services.iter().collect();
    order.sort_by(|a, b| {
        b.cpus
            .cmp(&a.cpus)
            .then(b.memory_bytes.cmp(&a.memory_bytes))
            .then(a.service.cmp(&b.service))
    });
    let mut placements = Vec::new();
    let mut unplaced = Vec::new();
    for demand in order {
        let best = rooms
            .iter_mut()
            .filter(|room| room.fits(demand))
            .min_by(|a, b| better(a, b));
        match best {
            Some(room) => {
                room.take(demand);
                placements.push(Placement {
                    service: demand.service.clone(),
                    node: room.node.clone(),
                });
            }
            None => unplaced.push(demand.clone()),
        }
    }
    if unplaced.is_empty() {
        placements.sort_by(|a, b| a.service.cmp(&b.service));
        return Ok(placements);
    }
    unplaced.sort_by(|a, b| a.service.cmp(&b.service));
    Err(Shortfall {
        unplaced,
        needed_cpus: services.iter().map(|d| d.cpus).fold(0, u32::saturating_add),
        needed_memory_bytes: services
            .iter()
            .map(|d| d.memory_bytes)
            .fold(0, u64::saturating_add),
        free_cpus: nodes
            .iter()
            .map(NodeRoom::free_cpus)
            .fold(0, u32::saturating_add),
        free_memory_bytes: nodes
            .iter()
            .map(NodeRoom::free_memory_bytes)
            .fold(0, u64::saturating_add),
        rooms_left: rooms,
    })
}

/// `Less` when `a` is the better node for the next service: fewer instances, then more
/// free room, then the first name.
fn better(a: &NodeRoom, b: &NodeRoom) -> Ordering {
    a.instances
        .cmp(&b.instances)
        .then(b.free_fraction().total_cmp(&a.free_fraction()))
        .then(a.node.cmp(&b.node))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn node(name: &str, cpus: u32, memory: u64) -> NodeRoom {
        NodeRoom {
            node: name.to_owned(),
            cpus,
            memory_bytes: memory,
            used_cpus: 0,
            used_memory_bytes: 0,
            instances: 0,
        }
    }

    fn busy(mut room: NodeRoom, cpus: u32, memory: u64, instances: usize) -> NodeRoom {
        room.used_cpus = cpus;
        room.used_memory_bytes = memory;
        room.instances = instances;
        room
    }

    fn demand(service: &str, cpus: u32, memory: u64) -> Demand {
        Demand {
            service: service.to_owned(),
            cpus,
            memory_bytes: memory,
        }
    }

    fn placed(result: Result<Vec<Placement>, Shortfall>) -> Vec<(String, String)> {
        result
            .expect("fits")
            .into_iter()
            .map(|p| (p.service, p.node))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(s, n)| ((*s).to_owned(), (*n).to_owned()))
            .collect()
    }

    #[test]
    fn services_spread_over_the_nodes() {
        type Case<'a> = (
            &'a str,
            Vec<NodeRoom>,
            Vec<Demand>,
            &'a [(&'a str, &'a str)],
        );
        let three = || {
            vec![
                node("n1", 2, 4 * GIB),
                node("n2", 2, 4 * GIB),
                node("n3", 2, 4 * GIB),
            ]
        };
        let cases: Vec<Case<'_>> = vec![
            (
                "services asking for nothing still spread, one per node",
                three(),
                vec![demand("a", 0, 0), demand("b", 0, 0), demand("c", 0, 0)],
                &[("a", "n1"), ("b", "n2"), ("c", "n3")],
            ),
            (
                "a fourth service goes to the node with the most room left",
                vec![
                    node("n1", 2, 4 * GIB),
                    node("n2", 2, 8 * GIB),
                    node("n3", 2, 4 * GIB),
                ],
                vec![
                    demand("a", 0, 64 * MIB),
                    demand("b", 0, 64 * MIB),
                    demand("c", 0, 64 * MIB),
                    demand("d", 0, 64 * MIB),
                ],
                &[("a", "n1"), ("b", "n2"), ("c", "n3"), ("d", "n2")],
            ),
            (
                "nodes already running instances come last",
                vec![
                    busy(node("n1", 2, 4 * GIB), 0, 0, 2),
                    node("n2", 2, 4 * GIB),
                    busy(node("n3", 2, 4 * GIB), 0, 0, 1),
                ],
                vec![demand("a", 0, 0), demand("b", 0, 0), demand("c", 0, 0)],
                &[("a", "n2"), ("b", "n2"), ("c", "n3")],
            ),
            (
                "the largest service is placed first, where it fits",
                vec![node("n1", 1, 4 * GIB), node("n2", 4, 4 * GIB)],
                vec![demand("small", 1, 0), demand("big", 4, 0)],
                &[("big", "n2"), ("small", "n1")],
            ),
            (
                "memory already used counts",
                vec![
                    busy(node("n1", 2, GIB), 0, 900 * MIB, 0),
                    node("n2", 2, GIB),
                ],
                vec![demand("a", 0, 200 * MIB), demand("b", 0, 200 * MIB)],
                &[("a", "n2"), ("b", "n2")],
            ),
            (
                "whole-engine services, one per node",
                three(),
                vec![
                    demand("x", 2, 64 * MIB),
                    demand("y", 2, 64 * MIB),
                    demand("z", 2, 64 * MIB),
                ],
                &[("x", "n1"), ("y", "n2"), ("z", "n3")],
            ),
        ];
        for (name, nodes, services, expected) in cases {
            assert_eq!(placed(place(&nodes, &services)), pairs(expected), "{name}");
        }
    }

    #[test]
    fn more_than_the_nodes_hold_is_refused_with_what_is_missing() {
        let nodes = [
            node("n1", 2, 4 * GIB),
            node("n2", 2, 4 * GIB),
            node("n3", 2, 4 * GIB),
        ];
        let services: Vec<Demand> = ["s1", "s2", "s3", "s4"]
            .iter()
            .map(|s| demand(s, 2, 64 * MIB))
            .collect();
        let shortfall =
            place(&nodes, &services).expect_err("four whole-engine services on three nodes");
        assert_eq!(shortfall.unplaced, [demand("s4", 2, 64 * MIB)]);
        assert_eq!((shortfall.needed_cpus, shortfall.free_cpus), (8, 6));
        let text = shortfall.to_string();
        for needle in [
            "nothing was deployed",
            "no room for s4: it needs 2 cpu(s) and 64 MiB",
            "the most left on a node is 0 cpu(s)",
            "the services need 8 cpu(s) and 256 MiB; the nodes have 6 cpu(s) and 12 GiB free",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn every_service_without_room_is_named() {
        let nodes = [node("n1", 1, GIB)];
        let services = [
            demand("a", 1, 0),
            demand("b", 1, 0),
            demand("c", 0, 2 * GIB),
        ];
        let shortfall = place(&nodes, &services).expect_err("too much");
        let names: Vec<&str> = shortfall
            .unplaced
            .iter()
            .map(|d| d.service.as_str())
            .collect();
        assert_eq!(names, ["b", "c"]);
        let text = shortfall.to_string();
        assert!(text.contains("no room for c: it needs 2 GiB"), "{text}");
        assert!(
            place(&[], &[demand("a", 0, 0)])
                .expect_err("no node")
                .to_string()
                .contains("no node to put it on")
        );
    }

    #[test]
    fn nothing_to_place_is_an_empty_placement() {
        assert_eq!(place(&[node("n1", 1, GIB)], &[]), Ok(vec![]));
    }
}
