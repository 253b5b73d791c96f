//! The fake network between agents, and between agents and the store.
//!
//! A message is delivered unless the two ends are on different sides of a partition or it
//! is lost (each message independently, with the configured probability). During a
//! partition the store sits with the majority: nodes of the minority cannot reach it, so
//! they can neither keep their lease alive, nor read the ledger, nor claim a step.

use rand::{Rng, RngExt};

/// Who can talk to whom right now.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeNetwork {
    loss: f64,
    /// Per node: whether it is in the minority of the current partition.
    minority: Vec<bool>,
    partitioned: bool,
    stats: NetworkStats,
}

/// Messages counted by the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Gossip requests sent (delivered or not).
    pub requests: u64,
    /// Replies sent (only a delivered request is answered).
    pub replies: u64,
    /// Messages lost or cut by a partition.
    pub dropped: u64,
}

impl FakeNetwork {
    pub fn new(nodes: usize) -> FakeNetwork {
        FakeNetwork {
            loss: 0.0,
            minority: vec![false; nodes],
            partitioned: false,
            stats: NetworkStats::default(),
        }
    }

    /// Each message is lost with probability `loss` (clamped to [0, 1]).
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = if loss.is_nan() {
            0.0
        } else {
            loss.clamp(0.0, 1.0)
        };
    }

    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Splits the nodes: `minority[i]` says which side node `i` is on.
    pub fn partition(&mut self, minority: Vec<bool>) {
        self.minority = minority;
        self.partitioned = true;
    }

    pub fn heal(&mut self) {
        self.minority.iter_mut().for_each(|m| *m = false);
        self.partitioned = false;
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Whether `a` and `b` are on the same side.
    pub fn can_talk(&self, a: usize, b: usize) -> bool {
        self.minority[a] == self.minority[b]
    }

    /// Whether `node` reaches the store.
    pub fn reaches_store(&self, node: usize) -> bool {
        !self.minority[node]
    }

    /// Sends one message of the given kind; whether it arrives.
    pub fn send<R: Rng + ?Sized>(
        &mut self,
        from: usize,
        to: usize,
        kind: MessageKind,
        rng: &mut R,
    ) -> bool {
        match kind {
            MessageKind::Request => self.stats.requests += 1,
            MessageKind::Reply => self.stats.replies += 1,
        }
        // The draw is made for every message, so that a partition does not shift the
        // random sequence of the rest of the run.
        let lost = self.loss > 0.0 && rng.random_bool(self.loss);
        let delivered = !lost && self.can_talk(from, to);
        if !delivered {
            self.stats.dropped += 1;
        }
        delivered
    }

    pub fn stats(&self) -> NetworkStats {
        self.stats
    }
}

/// A gossip request or its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Reply,
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn partitions_cut_messages_and_the_store_from_the_minority() {
        let mut network = FakeNetwork::new(4);
        let mut rng = StdRng::seed_from_u64(1);
        network.partition(vec![false, false, true, true]);
        assert!(network.send(0, 1, MessageKind::Request, &mut rng));
        assert!(network.send(2, 3, MessageKind::Request, &mut rng));
        assert!(!network.send(1, 2, MessageKind::Request, &mut rng));
        assert!(network.reaches_store(0) && !network.reaches_store(3));
        network.heal();
        assert!(network.send(1, 2, MessageKind::Reply, &mut rng));
        assert!(network.reaches_store(3));
        assert_eq!(
            network.stats(),
            NetworkStats {
                requests: 3,
                replies: 1,
                dropped: 1
            }
        );
    }

    #[test]
    fn loss_drops_about_its_share() {
        let mut network = FakeNetwork::new(2);
        network.set_loss(0.2);
        let mut rng = StdRng::seed_from_u64(9);
        let delivered = (0..10_000)
            .filter(|_| network.send(0, 1, MessageKind::Request, &mut rng))
            .count();
        assert!((7_700..8_300).contains(&delivered), "{delivered}");
    }
}
