//! One communication round: every live agent picks at most `MaxFriends` random friends
//! among the peers it knows and runs the agent's digest exchange with each
//! (`gru_agent::gossip::digest`): its fingerprints, the friend's versions in the buckets
//! that differ, then the reports the friend lacks pushed and those it holds newer wanted.
//!
//! Every leg of a round is computed from the views as they were when the round began, as
//! if every exchange of the round ran at the same time (the real agent runs its exchanges
//! in parallel), and what arrives is merged when the round ends. A report therefore moves
//! at most one hop per round, which is what "rounds until convergence" should count. The
//! network may lose any of the four messages of an exchange, or cut them all; a leg whose
//! request or answer is lost is sent again, as the agent sends a failed request again
//! (`digest::LEG_ATTEMPTS`): a loss here is one the sender sees (a reset connection, an
//! error status), not one it waits for (see `runtime::gossip::ATTEMPT_TIMEOUT`).
//!
//! Bytes are those of the agent's wire (`gru_agent::gossip::wire`: postcard), counted for
//! the agent that sends them, requests and answers; lost messages were sent and count.

use std::collections::HashSet;
use std::rc::Rc;

use gru_agent::gossip::codec;
use gru_agent::gossip::digest::{HOT_CAP, HOT_REPORT_BYTES, REPORT_BYTES_CAP};
use gru_agent::gossip::wire::{self, FINGERPRINT_LEN, MAX_REPORTS, MAX_VERSIONS, VersionList};
use gru_agent::mape::Millis;
use rand::{Rng, RngExt};

use crate::network::{FakeNetwork, MessageKind};
use crate::view::{Answer, Buckets, Reconciled, ReportBook, Views};

/// Messages and bytes of one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundCounts {
    /// Agents that took part.
    pub agents: u64,
    pub requests: u64,
    pub replies: u64,
    /// The most requests any one agent sent.
    pub max_requests_per_agent: u64,
    /// Bytes every agent sent, together, and the most one agent sent.
    pub bytes: u64,
    pub max_bytes_per_agent: u64,
    /// Of `bytes`, by leg: digests, answers to digests, pushes, wanted reports.
    pub bytes_by_leg: [u64; 4],
}

/// Buffers kept between rounds, so that a round allocates little at N = 10,000.
#[derive(Debug, Default)]
pub struct GossipScratch {
    buckets: Option<Buckets>,
    /// Every agent's digest as the round began, `agents × buckets`.
    digests: Vec<u32>,
    /// Every agent's hot list as the round began.
    hot: Vec<Vec<(usize, u32)>>,
    /// The exchanges of the round: (asker, friend), by asker.
    exchanges: Vec<(usize, usize)>,
    /// (receiver, node, version) of every report that arrives this round.
    arrivals: Vec<(usize, usize, u32)>,
    bytes: Vec<u64>,
    friends: Vec<usize>,
    answer: Answer,
    reconciled: Reconciled,
    /// Per agent, the nodes it asked for this round, as asker or as friend.
    asked: Vec<HashSet<usize>>,
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

/// Bytes on the wire of a list of (node, version), versions numbered as the agent does.
fn versions_len(book: &ReportBook, entries: &[(usize, u32)]) -> usize {
    VersionList::len_of(
        entries
            .iter()
            .map(|(node, version)| (book.name(*node), book.wire_version(*node, *version))),
    )
}

/// Bytes on the wire of a list of node names.
fn names_len(book: &ReportBook, nodes: &[usize]) -> usize {
    codec::names_len(nodes.iter().map(|n| book.name(*n)))
}

/// Runs one round over `views`; `peers[a]` is what agent `a` learned of the active
/// nodes; `alive[a]` whether it runs. `cap` is the most versions an answer to a digest
/// lists (`digest::DETAIL_CAP` in the agent); `attempts` how many times a leg whose
/// request or answer is lost is sent (`digest::LEG_ATTEMPTS` in the agent); what an agent
/// heard at `hot_since` or later (the previous round) is its hot list.
#[allow(clippy::too_many_arguments)]
pub fn communication_round<V: Views, R: Rng + ?Sized>(
    views: &mut V,
    book: &ReportBook,
    alive: &[bool],
    peers: &[Rc<[usize]>],
    max_friends: usize,
    cap: usize,
    attempts: usize,
    network: &mut FakeNetwork,
    now: Millis,
    hot_since: Millis,
    rng: &mut R,
    scratch: &mut GossipScratch,
) -> RoundCounts {
    let agents = views.agents();
    let nodes = book.nodes();
    // Every agent of the simulation knows about as many nodes: one bucket count for all.
    let count = gru_agent::gossip::digest::bucket_count(nodes);
    if scratch.buckets.as_ref().is_none_or(|b| b.count() != count) {
        scratch.buckets = Some(Buckets::new(book, count));
    }
    let Some(buckets) = scratch.buckets.take() else {
        unreachable!("set above")
    };
    let mut counts = RoundCounts::default();
    scratch.exchanges.clear();
    scratch.arrivals.clear();
    scratch.bytes.clear();
    scratch.bytes.resize(agents, 0);
    let mut friends = std::mem::take(&mut scratch.friends);
    for me in 0..agents {
        if !alive[me] {
            continue;
        }
        counts.agents += 1;
        pick_friends(me, &peers[me], max_friends, rng, &mut friends);
        counts.max_requests_per_agent = counts.max_requests_per_agent.max(friends.len() as u64);
        for &friend in &friends {
            scratch.exchanges.push((me, friend));
        }
    }
    scratch.friends = friends;

    // Every agent's digest and hot list as the round began.
    scratch.digests.resize(agents * count, 0);
    scratch.hot.resize_with(agents, Vec::new);
    for (agent, alive) in alive.iter().enumerate().take(agents) {
        scratch.hot[agent].clear();
        if *alive {
            views.digest(
                agent,
                &buckets,
                &mut scratch.digests[agent * count..(agent + 1) * count],
            );
            views.hot(agent, hot_since, HOT_CAP, &mut scratch.hot[agent]);
        }
    }
    let fingerprints = wire::list_len(count, count * FINGERPRINT_LEN);
    // Per agent, its hot list's reports when they fit `HOT_REPORT_BYTES` (the digest then
    // carries them: `ClusterView::hot_message`): their bytes as a list; or `None` (it
    // carries their versions).
    let hot_reports: Vec<Option<usize>> = scratch
        .hot
        .iter()
        .map(|hot| {
            let alone: usize = hot
                .iter()
                .map(|(node, version)| book.wire_len(*node, *version))
                .sum();
            (alone <= HOT_REPORT_BYTES).then(|| book.reports_len(hot.iter().copied()))
        })
        .collect();
    scratch.asked.resize_with(agents, HashSet::new);
    scratch.asked.iter_mut().for_each(HashSet::clear);
    for index in 0..scratch.exchanges.len() {
        let (me, friend) = scratch.exchanges[index];
        // Leg 1: the digest and the hot list (its reports, or its versions). A leg whose
        // request or answer is lost is tried again, up to `attempts` times, as the agent
        // does after a failed request.
        let hot = match hot_reports[me] {
            Some(bytes) => versions_len(book, &[]) + bytes,
            None => versions_len(book, &scratch.hot[me]) + book.reports_len([]),
        };
        let digest = wire::message_len(book.name(me), 0, fingerprints + hot) as u64;
        let mut answered = false;
        let mut merged_hot = false;
        for _attempt in 0..attempts {
            counts.requests += 1;
            scratch.bytes[me] += digest;
            counts.bytes_by_leg[0] += digest;
            if !alive[friend] {
                break;
            }
            if !network.send(me, friend, MessageKind::Request, rng) {
                continue;
            }
            if hot_reports[me].is_some() && !merged_hot {
                // The friend merges them before it answers: it asks no one for them again.
                merged_hot = true;
                for &(node, version) in &scratch.hot[me] {
                    if node != friend {
                        scratch.arrivals.push((friend, node, version));
                        scratch.asked[friend].insert(node);
                    }
                }
            }
            // An answer to a digest sent again leaves out what the friend already asked
            // for (it recorded the first one's wants).
            let start = rng.random_range(0..count);
            views.answer(
                friend,
                &scratch.digests[friend * count..(friend + 1) * count],
                &scratch.digests[me * count..(me + 1) * count],
                &scratch.hot[me],
                &scratch.hot[friend],
                &scratch.asked[friend],
                start,
                cap,
                &buckets,
                &mut scratch.answer,
            );
            counts.replies += 1;
            let answer = &scratch.answer;
            scratch.asked[friend].extend(answer.wants.iter().copied());
            let covered: usize = answer
                .covered
                .iter()
                .map(|b| wire::varint_len(*b as u64))
                .sum();
            let sent = wire::message_len(
                book.name(friend),
                1,
                names_len(book, &answer.wants)
                    + versions_len(book, &answer.hot)
                    + wire::list_len(answer.covered.len(), covered)
                    + versions_len(book, &answer.versions),
            ) as u64;
            scratch.bytes[friend] += sent;
            counts.bytes_by_leg[1] += sent;
            if network.send(friend, me, MessageKind::Reply, rng) {
                answered = true;
                break;
            }
        }
        if !answered {
            continue;
        }
        // Leg 2: what the friend lacks, pushed, and what it has newer, wanted.
        views.reconcile(
            me,
            &scratch.answer,
            &buckets,
            &scratch.asked[me],
            &mut scratch.reconciled,
        );
        let reconciled = &mut scratch.reconciled;
        reconciled.push.truncate(MAX_REPORTS);
        reconciled.wants.truncate(MAX_VERSIONS);
        if reconciled.push.is_empty() && reconciled.wants.is_empty() {
            continue;
        }
        scratch.asked[me].extend(reconciled.wants.iter().copied());
        let keep = wire::kept_within(
            reconciled
                .push
                .iter()
                .map(|node| book.wire_len(*node, views.held(me, *node))),
            REPORT_BYTES_CAP,
        );
        reconciled.push.truncate(keep);
        let pushed = book.reports_len(
            reconciled
                .push
                .iter()
                .map(|node| (*node, views.held(me, *node))),
        );
        let push = wire::message_len(
            book.name(me),
            2,
            pushed + names_len(book, &reconciled.wants),
        ) as u64;
        let mut answered: Vec<(usize, u32)> = reconciled
            .wants
            .iter()
            .map(|node| (*node, views.held(friend, *node)))
            .filter(|(_, version)| *version > 0)
            .collect();
        let keep = wire::kept_within(
            answered
                .iter()
                .map(|(node, version)| book.wire_len(*node, *version)),
            REPORT_BYTES_CAP,
        );
        answered.truncate(keep);
        let reports = wire::message_len(
            book.name(friend),
            3,
            book.reports_len(answered.iter().copied()),
        ) as u64;
        let mut pushed = false;
        for _attempt in 0..attempts {
            scratch.bytes[me] += push;
            counts.bytes_by_leg[2] += push;
            counts.requests += 1;
            if !network.send(me, friend, MessageKind::Request, rng) {
                continue;
            }
            if !pushed {
                pushed = true;
                for &node in &reconciled.push {
                    if node != friend {
                        scratch.arrivals.push((friend, node, views.held(me, node)));
                    }
                }
            }
            scratch.bytes[friend] += reports;
            counts.bytes_by_leg[3] += reports;
            counts.replies += 1;
            if network.send(friend, me, MessageKind::Reply, rng) {
                scratch
                    .arrivals
                    .extend(answered.iter().map(|(node, version)| (me, *node, *version)));
                break;
            }
        }
    }
    for &(receiver, node, version) in &scratch.arrivals {
        views.merge(receiver, node, version, book, now);
    }
    counts.bytes = scratch.bytes.iter().sum();
    counts.max_bytes_per_agent = scratch.bytes.iter().copied().max().unwrap_or(0);
    scratch.buckets = Some(buckets);
    counts
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use gru_agent::gossip::digest::LEG_ATTEMPTS;

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
            book.publish(node, payload.clone(), Millis::ZERO);
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
            LEG_ATTEMPTS,
            &mut network,
            Millis(1),
            Millis::ZERO,
            &mut rng,
            &mut scratch,
        );
        // Three exchanges, every pair's views differed; the last (2 asks 1) needs no second
        // leg: each of them already asked the other for its report, as a friend in the
        // exchange before.
        assert_eq!((counts.requests, counts.replies), (5, 5));
        // Agent 0 talked with 1 only: it has 1's report but not yet 2's.
        assert_eq!((views.held(0, 1), views.held(0, 2)), (1, 0));
        communication_round(
            &mut views,
            &book,
            &[true; 3],
            &peers,
            5,
            usize::MAX,
            LEG_ATTEMPTS,
            &mut network,
            Millis(2),
            Millis(1),
            &mut rng,
            &mut scratch,
        );
        assert_eq!(views.held(0, 2), 1, "one more round brings it through 1");
    }

    #[test]
    fn equal_views_exchange_digests_only_and_bytes_are_the_wire_s() {
        let nodes = 100;
        let mut book = ReportBook::new(nodes, vec!["web".into()]);
        let payload: Payload = Box::new([Some(Sample {
            instances: 2,
            load: 0.25,
        })]);
        for node in 0..nodes {
            book.publish(node, payload.clone(), Millis::ZERO);
        }
        let mut views = CompactViews::new(nodes, nodes);
        for agent in 0..nodes {
            views.absorb(agent, &vec![1; nodes], &book, Millis::ZERO);
        }
        let all: Rc<[usize]> = (0..nodes).collect();
        let peers = vec![all; nodes];
        let mut network = FakeNetwork::new(nodes);
        let mut rng = StdRng::seed_from_u64(7);
        let mut scratch = GossipScratch::default();
        let round = |views: &mut CompactViews,
                     book: &ReportBook,
                     network: &mut FakeNetwork,
                     rng: &mut StdRng,
                     scratch: &mut GossipScratch| {
            communication_round(
                views,
                book,
                &vec![true; nodes],
                &peers,
                5,
                1_024,
                LEG_ATTEMPTS,
                network,
                Millis(1),
                Millis(1),
                rng,
                scratch,
            )
        };
        let steady = round(&mut views, &book, &mut network, &mut rng, &mut scratch);
        assert_eq!((steady.requests, steady.replies), (500, 500));
        // Per exchange: a digest of 4 buckets (n000042, kind, 4 × 4 bytes, an empty hot
        // list and no report: no table, base 0, none) and an empty answer (n000017, kind,
        // no bucket, no version).
        let digest = wire::message_len("n000000", 0, wire::list_len(4, 16) + 2 + 3);
        let answer = wire::message_len("n000000", 1, 1 + 2 + 1 + 2);
        assert_eq!((digest, answer), (31, 15));
        assert_eq!(steady.bytes, 500 * (31 + 15) as u64);

        // One node publishes: only its report travels, to the agents that lack it.
        let version = book.publish(
            3,
            Box::new([Some(Sample {
                instances: 3,
                load: 0.5,
            })]),
            Millis(1),
        );
        views.merge(3, 3, version, &book, Millis(1));
        let changed = round(&mut views, &book, &mut network, &mut rng, &mut scratch);
        assert!(changed.requests > 500 && changed.bytes > steady.bytes);
        let holders = (0..nodes).filter(|a| views.held(*a, 3) == version).count();
        assert!((2..=12).contains(&holders), "one hop: {holders}");
    }
}
