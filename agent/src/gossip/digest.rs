//! Digest gossip: friends compare versions first, then send only the reports the other
//! side lacks.
//!
//! An exchange between an asker and a friend is two signed requests (`wire::Body`):
//!
//! 1. The asker sends its **digest**: its view cut into `b` buckets by a hash of the node
//!    name ([`bucket_count`]: about [`NODES_PER_BUCKET`] nodes each), one 32-bit
//!    fingerprint per bucket (the XOR of a hash of every (node, version) it holds there),
//!    and its **hot list**: the (node, version) of the reports it heard since its last
//!    round, at most [`HOT_CAP`] of them (rumours: each new version is announced by each
//!    agent once, in the round after it heard it).
//! 2. The friend answers ([`ClusterView::answer`]) with the nodes of that hot list it lacks
//!    or holds older (its **wants**), its own hot list (less what the asker's already
//!    says), and its **versions** in the buckets whose fingerprints still differ once
//!    both hot lists are accounted for: whole buckets, from a random one on, at most
//!    [`DETAIL_CAP`] entries. That is anti-entropy: what rumours missed.
//! 3. The asker ([`ClusterView::reconcile`]) **pushes** the reports the friend wants or
//!    lacks, and **wants** the nodes whose reports the friend holds newer; the friend
//!    merges the push and answers the wanted reports ([`ClusterView::wanted`]). Step 3 is
//!    skipped when there is nothing to say.
//!
//! In a steady cluster every fingerprint matches and the hot lists are short: an exchange
//! costs a digest and an empty answer. A report is sent to an agent that lacks it, not to
//! every friend of every agent every round, and the digest grows with the cluster by 4
//! bytes per 32 nodes.
//!
//! What keeps steady state steady: a node publishes a new version of its report only when
//! a value moved beyond [`value_moved`]'s dead band, its instances or services changed, or
//! its last version is older than [`heartbeat`] (which grows with the cluster, so that the
//! cluster makes about [`HEARTBEATS_PER_ROUND`] heartbeat versions per round at any size);
//! [`stale_after`] drops a report after three missed heartbeats. Versions are milliseconds
//! of the node's clock (at least one more than the last), so a restarted agent's reports
//! are newer than those it published before.
//!
//! Pure: no I/O, no clock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use super::view::{ClusterView, NodeReport};

/// Nodes per bucket the asker aims at when it cuts its view.
pub const NODES_PER_BUCKET: usize = 32;
/// Most buckets in a digest (4 KiB of fingerprints).
pub const MAX_BUCKETS: usize = 1024;
/// Most (node, version) entries in the versions of an answer. When more buckets differ
/// (right after every node changed), the rest wait for another exchange; the friend starts
/// from a random bucket so that exchanges cover different ones.
pub const DETAIL_CAP: usize = 1024;
/// Most entries in a hot list.
pub const HOT_CAP: usize = 1024;
/// A hot list travels as the reports themselves while they take at most this many bytes
/// (steady state: a report reaches a friend in one message, which matters when messages
/// are lost), else as versions, which the friend asks for (right after many nodes
/// changed).
pub const HOT_REPORT_BYTES: usize = 4 * 1024;
/// Most bytes of reports in one push or one answer to a push (`wire::within`): the rest
/// go in a later exchange. What bounds an agent's traffic right after every node changed.
pub const REPORT_BYTES_CAP: usize = 32 * 1024;
/// Heartbeat versions the whole cluster makes per communication round, about.
pub const HEARTBEATS_PER_ROUND: usize = 100;
/// Times a leg of an exchange is tried: a request that fails (no connection, no answer in
/// time, an error status other than a refusal) is sent again, with a new nonce, while the
/// exchange's time allows.
pub const LEG_ATTEMPTS: usize = 3;
/// A value moved when it changed by more than this fraction of itself...
pub const DEAD_BAND_RELATIVE: f64 = 0.02;
/// ...and by more than this much.
pub const DEAD_BAND_ABSOLUTE: f64 = 1e-3;

/// Buckets a digest of a view of `nodes` nodes has: a power of two, about
/// [`NODES_PER_BUCKET`] nodes each, at most [`MAX_BUCKETS`].
pub fn bucket_count(nodes: usize) -> usize {
    nodes
        .div_ceil(NODES_PER_BUCKET)
        .next_power_of_two()
        .clamp(1, MAX_BUCKETS)
}

/// FNV-1a, 64 bits: stable across builds and platforms (agents of different builds must
/// cut their views the same way).
pub fn name_hash(node: &str) -> u64 {
    node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The bucket of a node (by its [`name_hash`]) among `buckets`.
pub fn bucket_of(name_hash: u64, buckets: usize) -> usize {
    (name_hash % buckets.max(1) as u64) as usize
}

/// The fingerprint of one held (node, version): splitmix64 of both, folded to 32 bits.
pub fn entry_hash(name_hash: u64, version: u64) -> u32 {
    let mut x = name_hash ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x ^ (x >> 32)) as u32
}

/// (node, version) pairs: a hot list, or what a friend holds in some buckets.
pub type Versions = Vec<(String, u64)>;

/// A friend's answer to a digest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// Nodes of the asker's hot list that the friend lacks or holds older.
    pub wants: Vec<String>,
    /// What the friend heard since its last round, less what the asker's hot list says at
    /// that version or newer.
    pub hot: Vec<(String, u64)>,
    /// The buckets the versions cover, whole: a node of one of them that `versions` does
    /// not list is one the friend does not hold.
    pub buckets: Vec<u32>,
    /// What the friend holds in those buckets.
    pub versions: Vec<(String, u64)>,
}

/// What the asker sends after an [`Answer`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reconciled {
    /// Reports the friend wants, lacks or holds older.
    pub push: Vec<NodeReport>,
    /// Nodes whose reports the friend holds newer, or which the asker lacks.
    pub wants: Vec<String>,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        self.push.is_empty() && self.wants.is_empty()
    }
}

impl ClusterView {
    /// The view's fingerprints, cut into `buckets` buckets.
    pub fn digest(&self, buckets: usize) -> Vec<u32> {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let mut sums = vec![0_u32; buckets];
        for (node, version) in self.versions() {
            let hash = name_hash(node);
            sums[bucket_of(hash, buckets)] ^= entry_hash(hash, version);
        }
        sums
    }

    /// The friend's side of an exchange: the answer of this view to an asker's digest
    /// `theirs` and hot list `their_hot`, with `own_hot` (what this agent heard since its
    /// last round, `heard_since`); `own` is this node, which it never wants, nor the nodes
    /// in `skip` (asked of another agent this round; their buckets count as settled all
    /// the same). Versions are
    /// listed for the buckets that still differ once the asker's hot list is taken in (as
    /// if its wants were answered) and that hold no node of the hot list sent back (the
    /// asker asks for those), whole, from `start`, within `cap` entries.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        theirs: &[u32],
        their_hot: &[(String, u64)],
        own_hot: Vec<(String, u64)>,
        own: &str,
        skip: &HashSet<String>,
        start: usize,
        cap: usize,
    ) -> Answer {
        let buckets = theirs.len().clamp(1, MAX_BUCKETS);
        let mut mine = self.digest(buckets);
        let their_hot_map: HashMap<&str, u64> =
            their_hot.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let mut answer = Answer::default();
        for (node, version) in their_hot {
            let held = self.report(node).map(|r| r.version);
            if node == own || held.is_some_and(|h| h >= *version) {
                continue;
            }
            let hash = name_hash(node);
            let sum = &mut mine[bucket_of(hash, buckets)];
            if let Some(held) = held {
                *sum ^= entry_hash(hash, held);
            }
            *sum ^= entry_hash(hash, *version);
            if !skip.contains(node) {
                answer.wants.push(node.clone());
            }
        }
        answer.hot = own_hot
            .into_iter()
            .filter(|(node, version)| their_hot_map.get(node.as_str()).is_none_or(|t| t < version))
            .collect();
        let mut settled = vec![false; buckets];
        for (node, _) in &answer.hot {
            settled[bucket_of(name_hash(node), buckets)] = true;
        }
        let mut by_bucket: Vec<Vec<(&str, u64)>> = vec![Vec::new(); buckets];
        for (node, version) in self.versions() {
            by_bucket[bucket_of(name_hash(node), buckets)].push((node, version));
        }
        for step in 0..buckets {
            let bucket = (start + step) % buckets;
            if settled[bucket] || theirs.get(bucket) == Some(&mine[bucket]) {
                continue;
            }
            let entries = &by_bucket[bucket];
            if !answer.buckets.is_empty() && answer.versions.len() + entries.len() > cap {
                break;
            }
            answer.buckets.push(bucket as u32);
            answer
                .versions
                .extend(entries.iter().map(|(n, v)| ((*n).to_owned(), *v)));
        }
        answer
    }

    /// The asker's side: compares a friend's [`Answer`] (to this view's digest of
    /// `buckets` buckets) with this view: the reports to push (what the friend wants, and
    /// what it lacks or holds older in the buckets its versions cover; by node name), and
    /// the nodes to
    /// ask of it (in its hot list or its versions, newer than held). Nodes in `skip` are
    /// not asked for (another friend was asked this round); `own` is never asked for.
    pub fn reconcile(
        &self,
        answer: &Answer,
        buckets: usize,
        own: &str,
        skip: &HashSet<String>,
    ) -> Reconciled {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let mut reconciled = Reconciled::default();
        let mut pushed: HashSet<&str> = HashSet::new();
        for node in &answer.wants {
            if let Some(report) = self.report(node)
                && pushed.insert(node.as_str())
            {
                reconciled.push.push(report.clone());
            }
        }
        let covered: BTreeSet<usize> = answer.buckets.iter().map(|b| *b as usize).collect();
        let theirs: HashMap<&str, u64> = answer
            .versions
            .iter()
            .map(|(n, v)| (n.as_str(), *v))
            .collect();
        for (node, version) in self.versions() {
            if covered.contains(&bucket_of(name_hash(node), buckets))
                && theirs.get(node).is_none_or(|t| *t < version)
                && pushed.insert(node)
                && let Some(report) = self.report(node)
            {
                reconciled.push.push(report.clone());
            }
        }
        reconciled.push.sort_by(|a, b| a.node.cmp(&b.node));
        let mut wanted: HashSet<&str> = HashSet::new();
        for (node, version) in answer.hot.iter().chain(&answer.versions) {
            let newer = self.report(node).is_none_or(|held| held.version < *version);
            if newer && node != own && !skip.contains(node) && wanted.insert(node.as_str()) {
                reconciled.wants.push(node.clone());
            }
        }
        reconciled
    }

    /// What a digest carries of the hot list `hot` (`heard_since`): its reports while they
    /// fit [`HOT_REPORT_BYTES`] (and no versions), else its versions (and no reports).
    pub fn hot_message(&self, hot: Versions) -> (Versions, Vec<NodeReport>) {
        let mut bytes = 0;
        let mut reports = Vec::new();
        for (node, _) in &hot {
            let Some(report) = self.report(node) else {
                continue;
            };
            bytes += super::wire::report_len(report);
            if bytes > HOT_REPORT_BYTES {
                return (hot, Vec::new());
            }
            reports.push(report.clone());
        }
        (Vec::new(), reports)
    }

    /// The reports of `nodes` this view holds.
    pub fn wanted(&self, nodes: &[String]) -> Vec<NodeReport> {
        nodes
            .iter()
            .filter_map(|node| self.report(node).cloned())
            .collect()
    }
}

/// Whether a value moved enough to publish a new version: by more than
/// [`DEAD_BAND_RELATIVE`] of itself and more than [`DEAD_BAND_ABSOLUTE`]. A value that
/// appears, disappears or stops being finite moved.
pub fn value_moved(old: f64, new: f64) -> bool {
    if !old.is_finite() || !new.is_finite() {
        return old.to_bits() != new.to_bits();
    }
    let change = (new - old).abs();
    change > DEAD_BAND_ABSOLUTE && change > DEAD_BAND_RELATIVE * old.abs().max(new.abs())
}

/// Whether `new` says something `old` (the last published report) does not: a service or
/// a value that appeared or disappeared, another instance count, or a value that
/// [`value_moved`]. Versions are not compared.
pub fn report_changed(old: &NodeReport, new: &NodeReport) -> bool {
    if old.services.len() != new.services.len() {
        return true;
    }
    old.services
        .iter()
        .zip(&new.services)
        .any(|((old_name, old), (new_name, new))| {
            let values_moved =
                |a: &std::collections::BTreeMap<String, f64>,
                 b: &std::collections::BTreeMap<String, f64>| {
                    a.len() != b.len()
                        || a.iter()
                            .zip(b)
                            .any(|((an, av), (bn, bv))| an != bn || value_moved(*av, *bv))
                };
            old_name != new_name
                || old.instances != new.instances
                || values_moved(&old.metrics, &new.metrics)
                || values_moved(&old.analytics, &new.analytics)
        })
}

/// How long a node's report may go unchanged before it publishes it again (a heartbeat):
/// one communication round while the cluster has at most [`HEARTBEATS_PER_ROUND`] nodes,
/// then `nodes / HEARTBEATS_PER_ROUND` rounds.
pub fn heartbeat(interval: Duration, nodes: usize) -> Duration {
    let rounds = nodes.div_ceil(HEARTBEATS_PER_ROUND).max(1);
    interval * u32::try_from(rounds).unwrap_or(u32::MAX)
}

/// How long a node's report may go without a new version before it leaves the view:
/// three heartbeats and two rounds, five rounds at least, and never less than 10 s.
pub fn stale_after(interval: Duration, nodes: usize) -> Duration {
    (heartbeat(interval, nodes) * 3 + interval * 2)
        .max(interval * 5)
        .max(Duration::from_secs(10))
}

/// The version a node gives its next report: milliseconds of its clock, and at least one
/// more than the last.
pub fn next_version(last: u64, now_ms: u64) -> u64 {
    now_ms.max(last.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gossip::ServiceReport;
    use crate::mape::Millis;

    fn report(node: &str, version: u64, load: f64) -> NodeReport {
        NodeReport {
            node: node.into(),
            version,
            services: BTreeMap::from([(
                "web".into(),
                ServiceReport {
                    instances: 1,
                    metrics: BTreeMap::new(),
                    analytics: BTreeMap::from([("load".into(), load)]),
                },
            )]),
        }
    }

    fn view(entries: &[(&str, u64)]) -> ClusterView {
        let mut view = ClusterView::new();
        for (node, version) in entries {
            view.merge(report(node, *version, 0.5), Millis(0));
        }
        view
    }

    /// One whole exchange between two views without hot lists, as the runtime runs it.
    fn exchange(asker: &mut ClusterView, friend: &mut ClusterView, cap: usize) -> usize {
        let buckets = bucket_count(asker.len());
        let digest = asker.digest(buckets);
        let answer = friend.answer(&digest, &[], Vec::new(), "", &HashSet::new(), 0, cap);
        let reconciled = asker.reconcile(&answer, buckets, "", &HashSet::new());
        let sent = reconciled.push.len() + reconciled.wants.len();
        friend.merge_all(reconciled.push, Millis(1));
        asker.merge_all(friend.wanted(&reconciled.wants), Millis(1));
        sent
    }

    fn versions(view: &ClusterView) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = view.versions().map(|(n, v)| (n.to_owned(), v)).collect();
        all.sort();
        all
    }

    #[test]
    fn equal_views_have_equal_digests_and_answer_nothing() {
        let names: Vec<String> = (0..500).map(|i| format!("node-{i}")).collect();
        let entries: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 3)).collect();
        let (a, b) = (view(&entries), view(&entries));
        let buckets = bucket_count(a.len());
        assert_eq!(buckets, 16);
        assert_eq!(a.digest(buckets), b.digest(buckets));
        let answer = b.answer(
            &a.digest(buckets),
            &[],
            Vec::new(),
            "",
            &HashSet::new(),
            7,
            DETAIL_CAP,
        );
        assert_eq!(answer, Answer::default());
    }

    #[test]
    fn one_exchange_makes_both_views_equal_and_sends_only_the_differences() {
        let names: Vec<String> = (0..300).map(|i| format!("node-{i}")).collect();
        let mut left: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 5)).collect();
        let mut right = left.clone();
        left[3].1 = 9; // the asker is newer
        right[100].1 = 7; // the friend is newer
        right.push(("only-friend", 1));
        left.push(("only-asker", 1));
        let (mut asker, mut friend) = (view(&left), view(&right));
        let sent = exchange(&mut asker, &mut friend, DETAIL_CAP);
        assert_eq!(versions(&asker), versions(&friend));
        assert_eq!(asker.report("node-100").map(|r| r.version), Some(7));
        assert_eq!(friend.report("node-3").map(|r| r.version), Some(9));
        assert_eq!(sent, 4, "two pushed, two wanted");
    }

    #[test]
    fn a_capped_detail_covers_whole_buckets_and_later_exchanges_finish_the_job() {
        let names: Vec<String> = (0..2_000).map(|i| format!("n{i}")).collect();
        let old: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let new: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 2)).collect();
        let (mut asker, mut friend) = (view(&old), view(&new));
        let buckets = bucket_count(asker.len());
        let answer = friend.answer(
            &asker.digest(buckets),
            &[],
            Vec::new(),
            "",
            &HashSet::new(),
            5,
            200,
        );
        assert!(answer.versions.len() <= 200 && !answer.versions.is_empty());
        for (node, _) in &answer.versions {
            assert!(
                answer
                    .buckets
                    .contains(&(bucket_of(name_hash(node), buckets) as u32))
            );
        }
        let mut exchanges = 1;
        while versions(&asker) != versions(&friend) {
            exchange(&mut asker, &mut friend, 200);
            exchanges += 1;
            assert!(exchanges < 100, "the capped exchanges never converge");
        }
        assert!(
            exchanges > 5,
            "a cap of 200 cannot move 2,000 versions at once"
        );
    }

    #[test]
    fn skipped_and_own_nodes_are_not_wanted() {
        let (asker, friend) = (view(&[("a", 1)]), view(&[("a", 2), ("b", 1), ("me", 4)]));
        let answer = friend.answer(
            &asker.digest(1),
            &[],
            Vec::new(),
            "",
            &HashSet::new(),
            0,
            DETAIL_CAP,
        );
        let skip = HashSet::from(["b".to_owned()]);
        let reconciled = asker.reconcile(&answer, 1, "me", &skip);
        assert_eq!(reconciled.wants, vec!["a".to_owned()]);
        assert!(reconciled.push.is_empty());
    }

    #[test]
    fn hot_lists_settle_new_versions_without_listing_their_buckets() {
        let names: Vec<String> = (0..2_000).map(|i| format!("n{i}")).collect();
        let all: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let (mut asker, mut friend) = (view(&all), view(&all));
        // The asker heard a new version of n7, the friend one of n9, last round.
        asker.merge(report("n7", 2, 0.9), Millis(10));
        friend.merge(report("n9", 2, 0.9), Millis(10));
        let buckets = bucket_count(asker.len());
        let asker_hot = asker.heard_since(Millis(10), HOT_CAP);
        let friend_hot = friend.heard_since(Millis(10), HOT_CAP);
        assert_eq!(asker_hot, vec![("n7".to_owned(), 2)]);
        let answer = friend.answer(
            &asker.digest(buckets),
            &asker_hot,
            friend_hot,
            "",
            &HashSet::new(),
            3,
            64,
        );
        assert_eq!(answer.wants, vec!["n7".to_owned()]);
        assert_eq!(answer.hot, vec![("n9".to_owned(), 2)]);
        assert!(
            answer.versions.is_empty(),
            "nothing else differs: {answer:?}"
        );
        let reconciled = asker.reconcile(&answer, buckets, "", &HashSet::new());
        assert_eq!(reconciled.push.len(), 1);
        assert_eq!(reconciled.wants, vec!["n9".to_owned()]);
        friend.merge_all(reconciled.push, Millis(11));
        asker.merge_all(friend.wanted(&reconciled.wants), Millis(11));
        assert_eq!(versions(&asker), versions(&friend));
        // A friend that already holds what the asker announces neither wants it nor sends
        // it back.
        let again = friend.answer(
            &asker.digest(buckets),
            &[("n7".to_owned(), 2)],
            vec![("n7".to_owned(), 2)],
            "",
            &HashSet::new(),
            0,
            64,
        );
        assert_eq!(again, Answer::default());
    }

    #[test]
    fn bucket_counts_grow_with_the_cluster_and_stay_bounded() {
        assert_eq!(bucket_count(0), 1);
        assert_eq!(bucket_count(32), 1);
        assert_eq!(bucket_count(33), 2);
        assert_eq!(bucket_count(10_000), 512);
        assert_eq!(bucket_count(1_000_000), MAX_BUCKETS);
        // The hash is FNV-1a: pinned, so that agents of different builds agree.
        assert_eq!(name_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_dead_band_keeps_small_moves_from_making_versions() {
        assert!(!value_moved(0.500, 0.505));
        assert!(value_moved(0.50, 0.52));
        assert!(!value_moved(0.0, 0.0009), "below the absolute band");
        assert!(value_moved(100.0, 103.0));
        assert!(value_moved(f64::NAN, 1.0));
        let base = report("a", 1, 0.5);
        assert!(!report_changed(&base, &report("a", 2, 0.505)));
        assert!(report_changed(&base, &report("a", 2, 0.6)));
        let mut more = base.clone();
        if let Some(web) = more.services.get_mut("web") {
            web.instances = 2;
        }
        assert!(report_changed(&base, &more));
        let mut other = base.clone();
        other.services.clear();
        assert!(report_changed(&base, &other));
    }

    #[test]
    fn heartbeats_and_staleness_grow_with_the_cluster() {
        let second = Duration::from_secs(1);
        assert_eq!(heartbeat(second, 10), second);
        assert_eq!(heartbeat(second, 100), second);
        assert_eq!(heartbeat(second, 10_000), second * 100);
        assert_eq!(stale_after(second, 10), Duration::from_secs(10));
        assert_eq!(
            stale_after(Duration::from_secs(5), 10),
            Duration::from_secs(25)
        );
        assert_eq!(stale_after(second, 10_000), Duration::from_secs(302));
        assert_eq!(next_version(5, 3), 6);
        assert_eq!(next_version(5, 1_000), 1_000);
    }
}
