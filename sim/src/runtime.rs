//! The fake container runtime: what each node runs, as counts.
//!
//! It stands for the Docker engine of every node: a node has a number of instance slots
//! (its cores and memory, as the real agent's `free_slots_here` counts them); a started
//! instance runs after the start delay; a stopped one is gone at once; a crashed node loses
//! everything it ran.

/// One service on one node.
#[derive(Debug, Clone, Default, PartialEq)]
struct Instances {
    running: u32,
    /// Ready times (seconds) of instances still starting.
    starting: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    slots: u32,
    services: Vec<Instances>,
}

impl Node {
    fn used(&self) -> u32 {
        self.services
            .iter()
            .map(|s| s.running + s.starting.len() as u32)
            .sum()
    }
}

/// Every node's instances.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRuntime {
    nodes: Vec<Node>,
    start_delay_secs: u64,
    /// Instances started since the run began, all nodes and services.
    starts: u64,
}

impl FakeRuntime {
    /// `nodes` nodes of `slots` instance slots each, for `services` services.
    pub fn new(nodes: usize, slots: u32, services: usize, start_delay_secs: u64) -> FakeRuntime {
        FakeRuntime {
            nodes: vec![
                Node {
                    slots,
                    services: vec![Instances::default(); services],
                };
                nodes
            ],
            start_delay_secs,
            starts: 0,
        }
    }

    /// Instances started since the run began (the initial placement is not a start).
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Instances already running when the run starts.
    pub fn place_running(&mut self, node: usize, service: usize, count: u32) {
        self.nodes[node].services[service].running += count;
    }

    /// Starts up to `count` instances (as many as fit); returns how many were started.
    pub fn start(&mut self, node: usize, service: usize, count: u32, now_secs: u64) -> u32 {
        let started = count.min(self.free_slots(node));
        let ready = now_secs + self.start_delay_secs;
        let instances = &mut self.nodes[node].services[service];
        instances
            .starting
            .extend(std::iter::repeat_n(ready, started as usize));
        self.starts += u64::from(started);
        started
    }

    /// Stops up to `count` running instances; returns how many were stopped.
    pub fn stop(&mut self, node: usize, service: usize, count: u32) -> u32 {
        let instances = &mut self.nodes[node].services[service];
        let stopped = count.min(instances.running);
        instances.running -= stopped;
        stopped
    }

    /// The node is gone with everything it ran.
    pub fn crash(&mut self, node: usize) {
        for instances in &mut self.nodes[node].services {
            *instances = Instances::default();
        }
    }

    /// Instances whose start delay is over are running.
    pub fn advance(&mut self, now_secs: u64) {
        for node in &mut self.nodes {
            for instances in &mut node.services {
                let before = instances.starting.len();
                instances.starting.retain(|ready| *ready > now_secs);
                instances.running += (before - instances.starting.len()) as u32;
            }
        }
    }

    pub fn running(&self, node: usize, service: usize) -> u32 {
        self.nodes[node].services[service].running
    }

    pub fn starting(&self, node: usize, service: usize) -> u32 {
        self.nodes[node].services[service].starting.len() as u32
    }

    pub fn free_slots(&self, node: usize) -> u32 {
        let node = &self.nodes[node];
        node.slots.saturating_sub(node.used())
    }

    /// Running instances of `service` in the cluster.
    pub fn total_running(&self, service: usize) -> u32 {
        self.nodes.iter().map(|n| n.services[service].running).sum()
    }

    /// Running and starting instances of `service` in the cluster: the containers that
    /// exist, which the bounds are about.
    pub fn total_instances(&self, service: usize) -> u32 {
        self.nodes
            .iter()
            .map(|n| n.services[service].running + n.services[service].starting.len() as u32)
            .sum()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_run_after_the_start_delay_and_respect_slots() {
        let mut runtime = FakeRuntime::new(2, 3, 2, 5);
        assert_eq!(runtime.start(0, 0, 2, 10), 2);
        assert_eq!(runtime.start(0, 1, 2, 10), 1, "only one slot left");
        assert_eq!(runtime.free_slots(0), 0);
        runtime.advance(14);
        assert_eq!((runtime.running(0, 0), runtime.starting(0, 0)), (0, 2));
        runtime.advance(15);
        assert_eq!((runtime.running(0, 0), runtime.starting(0, 0)), (2, 0));
        assert_eq!(runtime.total_instances(0), 2);
        assert_eq!(runtime.stop(0, 0, 5), 2);
        runtime.place_running(1, 0, 1);
        runtime.crash(1);
        assert_eq!(runtime.total_instances(0), 0);
        assert_eq!(runtime.free_slots(1), 3);
    }
}
