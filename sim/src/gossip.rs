//! One communication round: every live agent picks at most `MaxFriends` random friends
//! among the peers it knows and exchanges views with them, push-pull.
//!
//! Messages of a round are built from the views as they were when the round began, as if
//! every exchange of the round ran at the same time (the real agent sends its requests in
//! parallel). A report therefore moves at most one hop per direction per round, which is
//! what "rounds until convergence" should count. A request that arrives is merged by the
//! friend and answered with the friend's view; the answer is merged by the asker. The
//! network may lose either, or cut both.

use std::rc::Rc;

use gru_agent::mape::Millis;
use rand::{Rng, RngExt};

use crate::network::{FakeNetwork, MessageKind};
use crate::view::{ReportBook, Views};

/// Messages of one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundCounts {
    /// Agents that took part.
    pub agents: u64,
    pub requests: u64,
    pub replies: u64,
    /// The most requests any one agent sent.
    pub max_requests_per_agent: u64,
}

/// Buffers kept between rounds, so that a round allocates nothing at N = 10,000.
#[derive(Debug, Default)]
pub struct GossipScratch {
    /// Per agent, the agents whose message it receives this round.
    incoming: Vec<Vec<usize>>,
    /// Per agent, its slot in `messages` (usize::MAX when it sends nothing).
    slot: Vec<usize>,
    /// The messages of the round, one row of `nodes` versions per sender.
    messages: Vec<u32>,
    offered: Vec<u32>,
    friends: Vec<usize>,
}

/// Picks at most `max` distinct friends among `peers` other than `me`, into `out`.
pub fn pick_friends<R: Rng + ?Sized>(
    me: usize,
    peers: &[usize],
    max: usize,
    rng: &mut R,
    out: &mut Vec<usize>,
) {
    out.clear();
    let others = peers.iter().filter(|p| **p != me).count();
    if others <= max {
        out.extend(peers.iter().copied().filter(|p| *p != me));
        return;
    }
    while out.len() < max {
        let candidate = peers[rng.random_range(0..peers.len())];
        if candidate != me && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
}

/// Runs one round over `views`; `peers[a]` is what agent `a` learned of the active
/// nodes; `alive[a]` whether it runs. `limit` caps the reports of one message.
#[allow(clippy::too_many_arguments)]
pub fn communication_round<V: Views, R: Rng + ?Sized>(
    views: &mut V,
    book: &ReportBook,
    alive: &[bool],
    peers: &[Rc<[usize]>],
    max_friends: usize,
    limit: usize,
    network: &mut FakeNetwork,
    now: Millis,
    rng: &mut R,
    scratch: &mut GossipScratch,
) -> RoundCounts {
    let agents = views.agents();
    let nodes = book.nodes();
    scratch.incoming.resize_with(agents, Vec::new);
    scratch.incoming.iter_mut().for_each(Vec::clear);
    let mut counts = RoundCounts::default();
    let mut friends = std::mem::take(&mut scratch.friends);
    for me in 0..agents {
        if !alive[me] {
            continue;
        }
        counts.agents += 1;
        pick_friends(me, &peers[me], max_friends, rng, &mut friends);
        counts.max_requests_per_agent = counts.max_requests_per_agent.max(friends.len() as u64);
        for &friend in &friends {
            counts.requests += 1;
            let arrived = network.send(me, friend, MessageKind::Request, rng);
            if !arrived || !alive[friend] {
                continue;
            }
            scratch.incoming[friend].push(me);
            counts.replies += 1;
            if network.send(friend, me, MessageKind::Reply, rng) {
                scratch.incoming[me].push(friend);
            }
        }
    }
    scratch.friends = friends;

    // Every sender's message, as its view was when the round began.
    scratch.slot.clear();
    scratch.slot.resize(agents, usize::MAX);
    let mut senders = 0;
    for from in scratch.incoming.iter().flatten() {
        if scratch.slot[*from] == usize::MAX {
            scratch.slot[*from] = senders;
            senders += 1;
        }
    }
    scratch.messages.resize(senders * nodes, 0);
    for (agent, &slot) in scratch.slot.iter().enumerate() {
        if slot != usize::MAX {
            views.message(
                agent,
                limit,
                &mut scratch.messages[slot * nodes..(slot + 1) * nodes],
            );
        }
    }

    scratch.offered.resize(nodes, 0);
    for receiver in 0..agents {
        let incoming = &scratch.incoming[receiver];
        if incoming.is_empty() {
            continue;
        }
        scratch.offered.fill(0);
        for &from in incoming {
            let slot = scratch.slot[from];
            let message = &scratch.messages[slot * nodes..(slot + 1) * nodes];
            for (best, &version) in scratch.offered.iter_mut().zip(message) {
                *best = (*best).max(version);
            }
        }
        views.absorb(receiver, &scratch.offered, book, now);
    }
    counts
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::view::{CompactViews, Payload, Sample};

    #[test]
    fn friends_are_distinct_bounded_and_never_oneself() {
        let mut rng = StdRng::seed_from_u64(3);
        let peers: Vec<usize> = (0..50).collect();
        let mut out = Vec::new();
        for me in [0, 17, 49] {
            pick_friends(me, &peers, 5, &mut rng, &mut out);
            assert_eq!(out.len(), 5);
            assert!(!out.contains(&me));
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
        }
        pick_friends(1, &[0, 1, 2], 5, &mut rng, &mut out);
        assert_eq!(out, vec![0, 2]);
    }

    #[test]
    fn a_report_moves_at_most_one_hop_per_direction_per_round() {
        // A line of three agents that know only their neighbours.
        let mut book = ReportBook::new(3, vec!["web".into()]);
        let payload: Payload = Box::new([Some(Sample {
            instances: 1,
            load: 0.5,
        })]);
        for node in 0..3 {
            book.publish(node, payload.clone());
        }
        let mut views = CompactViews::new(3, 3);
        for node in 0..3 {
            views.merge(node, node, 1, &book, Millis::ZERO);
        }
        let peers: Vec<Rc<[usize]>> = vec![Rc::from([1]), Rc::from([2]), Rc::from([1])];
        let mut network = FakeNetwork::new(3);
        let mut rng = StdRng::seed_from_u64(1);
        let mut scratch = GossipScratch::default();
        let counts = communication_round(
            &mut views,
            &book,
            &[true; 3],
            &peers,
            5,
            usize::MAX,
            &mut network,
            Millis(1),
            &mut rng,
            &mut scratch,
        );
        assert_eq!((counts.requests, counts.replies), (3, 3));
        // Agent 0 talked with 1 only: it has 1's report but not yet 2's.
        assert_eq!((views.held(0, 1), views.held(0, 2)), (1, 0));
        communication_round(
            &mut views,
            &book,
            &[true; 3],
            &peers,
            5,
            usize::MAX,
            &mut network,
            Millis(2),
            &mut rng,
            &mut scratch,
        );
        assert_eq!(views.held(0, 2), 1, "one more round brings it through 1");
    }
}
