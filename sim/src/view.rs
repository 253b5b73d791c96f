//! Every agent's cluster view, two ways.
//!
//! * [`ClusterViews`] holds one real `gru_agent::gossip::ClusterView` per agent: the merge
//!   (highest version wins), the expiry by the receiver's clock, the freshest-first capped
//!   message and the instance-weighted values are the agent's own code (with an index of
//!   held versions beside it, checked against it at every merge and expiry, so that a
//!   round does not look names up a million times). Every agent holds every node's report,
//!   so memory is O(N²) reports: right up to N = 1,000.
//! * [`CompactViews`] holds, per agent, only the version it has of each node's report and
//!   when that version arrived (two `u32` per pair); values are looked up in the
//!   [`ReportBook`] by (node, version). Same rules, a few bytes per pair: N = 10,000 fits.
//!
//! Both answer the same questions through [`Views`], and the property test
//! `compact_views_match_cluster_views` drives plain `ClusterView`s, [`ClusterViews`] and
//! [`CompactViews`] with the same random publications, merges (of old and new versions, in
//! any order), capped messages, expiries and restarts, and requires the same versions, the
//! same messages and bit-identical weighted and plain values after every step. Node names are zero-padded (`n000042`) so that `ClusterView`'s name order is the
//! index order the compact view sums in.

use std::collections::BTreeMap;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use gru_agent::gossip::digest::{bucket_of, entry_hash, name_hash};
use gru_agent::gossip::{ClusterView, NodeReport, ServiceReport};
use gru_agent::mape::Millis;

/// The analytic every simulated node reports per service: its instances' load.
pub const LOAD: &str = "load";

/// What one node reports about one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Running instances of the service on the node.
    pub instances: u32,
    /// The node's value of [`LOAD`], in [0, 1].
    pub load: f64,
}

/// One node's report: a sample per service (by index), `None` for a service it does not
/// report.
pub type Payload = Box<[Option<Sample>]>;

/// Every report every node has published, by (node, version). A new version whose
/// payload equals the previous one's shares its entry.
#[derive(Debug, Clone)]
pub struct ReportBook {
    names: Vec<String>,
    services: Vec<String>,
    /// Every service and analytic name a report may hold, in order: the table of a list of
    /// reports on the wire is the part of it that its reports use.
    table: Vec<String>,
    latest: Vec<u32>,
    /// Per node: (first version, payload), by increasing version.
    history: Vec<Vec<(u32, Payload)>>,
    /// Per node, per history entry: the report's bytes alone (`wire::report_len`, the unit
    /// of the report caps), its services' bytes in a list (`codec::services_len`) and the
    /// names of `table` it uses (bits).
    wire: Vec<Vec<(usize, usize, u64)>>,
    /// Per node, per version (from 1): the version the agent would have written, in
    /// milliseconds of its clock.
    stamps: Vec<Vec<u64>>,
}

/// What the agent's report versions look like on the wire: milliseconds of a clock in
/// 2027 (`digest::next_version`), the time of the publication plus the node's phase within
/// the second (nodes do not all start their rounds at the same instant), so that byte
/// counts hold what the agent's do: 6-byte versions, and distances between versions of
/// 1 to 3 bytes.
pub const WIRE_VERSION_BASE: u64 = 1_800_000_000_000;

impl ReportBook {
    pub fn new(nodes: usize, services: Vec<String>) -> ReportBook {
        let mut table: Vec<String> = services.clone();
        table.push(LOAD.to_owned());
        table.sort();
        table.dedup();
        assert!(table.len() <= 64, "a table of at most 64 names");
        ReportBook {
            names: (0..nodes).map(node_name).collect(),
            services,
            table,
            latest: vec![0; nodes],
            history: vec![Vec::new(); nodes],
            wire: vec![Vec::new(); nodes],
            stamps: vec![Vec::new(); nodes],
        }
    }

    pub fn nodes(&self) -> usize {
        self.names.len()
    }

    pub fn services(&self) -> &[String] {
        &self.services
    }

    pub fn name(&self, node: usize) -> &str {
        &self.names[node]
    }

    /// Publishes `node`'s next report at `at`; returns its version (1 for the first).
    pub fn publish(&mut self, node: usize, payload: Payload, at: Millis) -> u32 {
        let version = self.latest[node] + 1;
        self.latest[node] = version;
        let phase = (node as u64).wrapping_mul(7_919) % 1_000;
        let stamp = WIRE_VERSION_BASE + at.0 + phase;
        let stamps = &mut self.stamps[node];
        let stamp = stamps.last().map_or(stamp, |last| stamp.max(last + 1));
        stamps.push(stamp);
        let history = &mut self.history[node];
        if history.last().is_none_or(|(_, last)| *last != payload) {
            history.push((version, payload));
            let mut report = self.node_report(node, version);
            report.version = stamp;
            let table: Vec<&str> = self.table.iter().map(String::as_str).collect();
            let mut used = 0_u64;
            for (service, values) in &report.services {
                for name in std::iter::once(service).chain(values.analytics.keys()) {
                    if let Ok(bit) = table.binary_search(&name.as_str()) {
                        used |= 1 << bit;
                    }
                }
            }
            self.wire[node].push((
                gru_agent::gossip::wire::report_len(&report),
                gru_agent::gossip::codec::services_len(&report, &table),
                used,
            ));
        }
        version
    }

    /// The payload `node` last published (empty before its first report).
    pub fn latest_payload(&self, node: usize) -> &[Option<Sample>] {
        self.payload(node, self.latest[node])
    }

    fn wire_entry(&self, node: usize, version: u32) -> (usize, usize, u64) {
        let history = &self.history[node];
        let at = history.partition_point(|(from, _)| *from <= version);
        self.wire[node]
            .get(at.wrapping_sub(1))
            .copied()
            .unwrap_or((0, 0, 0))
    }

    /// Bytes of `node`'s report `version` alone (`wire::report_len`): the unit of the
    /// agent's report caps.
    pub fn wire_len(&self, node: usize, version: u32) -> usize {
        self.wire_entry(node, version).0
    }

    /// The version the agent writes for `node`'s report `version`.
    pub fn wire_version(&self, node: usize, version: u32) -> u64 {
        let index = (version as usize).wrapping_sub(1);
        self.stamps[node]
            .get(index)
            .copied()
            .unwrap_or(WIRE_VERSION_BASE)
    }

    /// Bytes of a list of these (node, version) reports on the wire
    /// (`codec::reports_len`).
    pub fn reports_len(&self, reports: impl IntoIterator<Item = (usize, u32)>) -> usize {
        let mut used = 0;
        let entries: Vec<(&str, u64, usize)> = reports
            .into_iter()
            .map(|(node, version)| {
                let (_, services, names) = self.wire_entry(node, version);
                used |= names;
                (self.name(node), self.wire_version(node, version), services)
            })
            .collect();
        let table = self
            .table
            .iter()
            .enumerate()
            .filter(|(bit, _)| used & (1 << bit) != 0)
            .map(|(_, name)| name.as_str());
        gru_agent::gossip::codec::reports_len(table, entries)
    }

    /// The latest version `node` published; 0 before its first.
    pub fn latest(&self, node: usize) -> u32 {
        self.latest[node]
    }

    /// The payload of `node`'s report `version` (which it published).
    pub fn payload(&self, node: usize, version: u32) -> &[Option<Sample>] {
        let history = &self.history[node];
        let at = history.partition_point(|(from, _)| *from <= version);
        history
            .get(at.wrapping_sub(1))
            .map_or(&[], |(_, payload)| &payload[..])
    }

    /// The report as the agent's gossip carries it.
    pub fn node_report(&self, node: usize, version: u32) -> NodeReport {
        let services = self
            .payload(node, version)
            .iter()
            .zip(&self.services)
            .filter_map(|(sample, name)| {
                sample.map(|s| {
                    (
                        name.clone(),
                        ServiceReport {
                            instances: s.instances,
                            metrics: BTreeMap::new(),
                            analytics: BTreeMap::from([(LOAD.to_owned(), s.load)]),
                        },
                    )
                })
            })
            .collect();
        NodeReport {
            node: self.names[node].clone(),
            version: u64::from(version),
            services,
        }
    }
}

/// Whether a node's new payload says something its last one (`old`) does not, as the agent
/// judges its report (`digest::report_changed`): a service it runs appeared or went, another
/// instance count, or a load beyond the dead band (`digest::value_moved`).
pub fn payload_moved(old: &[Option<Sample>], new: &[Option<Sample>]) -> bool {
    new.iter().zip(old).any(|(new, old)| match (new, old) {
        (Some(new), Some(old)) => {
            new.instances != old.instances
                || gru_agent::gossip::digest::value_moved(old.load, new.load)
        }
        (new, old) => new.is_some() != old.is_some(),
    })
}

/// A node's name: zero-padded, so names sort as indices do.
pub fn node_name(index: usize) -> String {
    format!("n{index:06}")
}

fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// What an agent's view says about a service.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimate {
    /// Instances the held reports list.
    pub instances: u32,
    /// Held reports with at least one instance.
    pub nodes: u32,
    /// [`LOAD`] weighted by instance count (gru's merge).
    pub weighted: Option<f64>,
}

/// Every agent's view of the cluster.
pub trait Views {
    fn agents(&self) -> usize;

    /// The version of `node`'s report that `agent` holds; 0 when it holds none.
    fn held(&self, agent: usize, node: usize) -> u32;

    /// `ClusterView::merge`: takes the report if it is newer; whether it changed the view.
    fn merge(
        &mut self,
        agent: usize,
        node: usize,
        version: u32,
        book: &ReportBook,
        now: Millis,
    ) -> bool;

    /// Merges, for every node, the version `offered[node]` (0 for none).
    fn absorb(&mut self, agent: usize, offered: &[u32], book: &ReportBook, now: Millis) {
        for (node, &version) in offered.iter().enumerate() {
            if version > self.held(agent, node) {
                self.merge(agent, node, version, book, now);
            }
        }
    }

    /// `ClusterView::expire`: drops reports older than `stale` and those of `gone` nodes.
    fn expire(
        &mut self,
        agent: usize,
        now: Millis,
        stale: Duration,
        gone: &dyn Fn(usize) -> bool,
    ) -> usize;

    /// The message `agent` sends (`ClusterView::reports(limit)`): per node the version it
    /// carries, 0 for none. `out` has one slot per node.
    fn message(&self, agent: usize, limit: usize, out: &mut [u32]);

    /// The agent's values for service `service` (an index into the book's services), as
    /// `ClusterView::service` merges them.
    fn estimate(&self, agent: usize, service: usize, book: &ReportBook) -> Estimate;

    /// [`LOAD`] of `service` averaged over the reports that carry it, unweighted: Gru's
    /// merge.
    fn plain(&self, agent: usize, service: usize, book: &ReportBook) -> Option<f64>;

    /// Empties an agent's view (a restarted agent starts from nothing).
    fn forget(&mut self, agent: usize);

    /// `ClusterView::digest`: the fingerprints of `agent`'s view, into `out` (one per
    /// bucket).
    fn digest(&self, agent: usize, buckets: &Buckets, out: &mut [u32]) {
        out.fill(0);
        for node in 0..buckets.hash.len() {
            let version = self.held(agent, node);
            if version > 0 {
                out[buckets.of[node]] ^= entry_hash(buckets.hash[node], u64::from(version));
            }
        }
    }

    /// `ClusterView::heard_since`: the nodes whose held version arrived at `since` or
    /// later, in node order, at most `cap`, with that version.
    fn hot(&self, agent: usize, since: Millis, cap: usize, out: &mut Vec<(usize, u32)>);

    /// `ClusterView::answer`: `agent`'s answer to a digest `theirs` with hot list
    /// `their_hot`, given its own digest `mine` and hot list `own_hot`, never wanting the
    /// nodes in `skip`.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        agent: usize,
        mine: &[u32],
        theirs: &[u32],
        their_hot: &[(usize, u32)],
        own_hot: &[(usize, u32)],
        skip: &HashSet<usize>,
        start: usize,
        cap: usize,
        buckets: &Buckets,
        out: &mut Answer,
    ) {
        out.wants.clear();
        out.hot.clear();
        out.covered.clear();
        out.versions.clear();
        let mut mine = mine.to_vec();
        for &(node, version) in their_hot {
            let held = self.held(agent, node);
            if node == agent || held >= version {
                continue;
            }
            let sum = &mut mine[buckets.of[node]];
            if held > 0 {
                *sum ^= entry_hash(buckets.hash[node], u64::from(held));
            }
            *sum ^= entry_hash(buckets.hash[node], u64::from(version));
            if !skip.contains(&node) {
                out.wants.push(node);
            }
        }
        let theirs_hot: HashMap<usize, u32> = their_hot.iter().copied().collect();
        out.hot.extend(
            own_hot
                .iter()
                .filter(|(node, version)| theirs_hot.get(node).is_none_or(|t| t < version)),
        );
        let mut settled = vec![false; buckets.count()];
        for (node, _) in &out.hot {
            settled[buckets.of[*node]] = true;
        }
        let count = buckets.count();
        for step in 0..count {
            let bucket = (start + step) % count;
            if settled[bucket] || theirs[bucket] == mine[bucket] {
                continue;
            }
            let held = buckets.nodes[bucket]
                .iter()
                .filter(|node| self.held(agent, **node) > 0)
                .count();
            if !out.covered.is_empty() && out.versions.len() + held > cap {
                break;
            }
            out.covered.push(bucket);
            out.versions.extend(
                buckets.nodes[bucket]
                    .iter()
                    .map(|node| (*node, self.held(agent, *node)))
                    .filter(|(_, version)| *version > 0),
            );
        }
    }

    /// `ClusterView::reconcile`: what `agent` pushes to the friend whose `answer` it got
    /// (nodes, sorted) and what it asks of it (in the answer's order), never itself nor
    /// the nodes in `skip`.
    fn reconcile(
        &self,
        agent: usize,
        answer: &Answer,
        buckets: &Buckets,
        skip: &HashSet<usize>,
        out: &mut Reconciled,
    ) {
        out.push.clear();
        out.wants.clear();
        out.push.extend(
            answer
                .wants
                .iter()
                .filter(|node| self.held(agent, **node) > 0),
        );
        let theirs: HashMap<usize, u32> = answer.versions.iter().copied().collect();
        for &bucket in &answer.covered {
            for &node in &buckets.nodes[bucket] {
                let mine = self.held(agent, node);
                if mine > 0 && theirs.get(&node).is_none_or(|t| *t < mine) {
                    out.push.push(node);
                }
            }
        }
        out.push.sort_unstable();
        out.push.dedup();
        let mut wanted = HashSet::new();
        for &(node, version) in answer.hot.iter().chain(&answer.versions) {
            if version > self.held(agent, node)
                && node != agent
                && !skip.contains(&node)
                && wanted.insert(node)
            {
                out.wants.push(node);
            }
        }
    }
}

/// How a digest exchange cuts the nodes into buckets (`gru_agent::gossip::digest`): per
/// node its name hash and bucket, per bucket its nodes in name order.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    hash: Vec<u64>,
    of: Vec<usize>,
    nodes: Vec<Vec<usize>>,
}

impl Buckets {
    pub fn new(book: &ReportBook, count: usize) -> Buckets {
        let hash: Vec<u64> = (0..book.nodes())
            .map(|node| name_hash(book.name(node)))
            .collect();
        let of: Vec<usize> = hash.iter().map(|h| bucket_of(*h, count)).collect();
        let mut nodes = vec![Vec::new(); count];
        for (node, bucket) in of.iter().enumerate() {
            nodes[*bucket].push(node);
        }
        Buckets { hash, of, nodes }
    }

    pub fn count(&self) -> usize {
        self.nodes.len()
    }
}

/// An answer to a digest (`digest::Answer`), by node index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub wants: Vec<usize>,
    pub hot: Vec<(usize, u32)>,
    pub covered: Vec<usize>,
    pub versions: Vec<(usize, u32)>,
}

/// What an asker sends after a [`Detail`]: reports to push, nodes it wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub push: Vec<usize>,
    pub wants: Vec<usize>,
}

/// One real `ClusterView` per agent.
///
/// Looking a node up in a `ClusterView` compares names; a round at N = 1,000 asks a million
/// times which version an agent holds. So the versions are also kept in a [`CompactViews`]
/// index, which answers `held` and uncapped messages, and which every merge and expiry
/// checks against the `ClusterView`'s own answer (a disagreement panics). The values the
/// planner weighs, capped messages and expiry are the `ClusterView`'s.
#[derive(Debug, Clone)]
pub struct ClusterViews {
    views: Vec<ClusterView>,
    names: Vec<String>,
    index: CompactViews,
}

impl ClusterViews {
    pub fn new(agents: usize, book: &ReportBook) -> ClusterViews {
        ClusterViews {
            views: vec![ClusterView::new(); agents],
            names: (0..book.nodes()).map(|n| book.name(n).to_owned()).collect(),
            index: CompactViews::new(agents, book.nodes()),
        }
    }

    pub fn view(&self, agent: usize) -> &ClusterView {
        &self.views[agent]
    }
}

impl Views for ClusterViews {
    fn agents(&self) -> usize {
        self.views.len()
    }

    fn held(&self, agent: usize, node: usize) -> u32 {
        self.index.held(agent, node)
    }

    fn merge(
        &mut self,
        agent: usize,
        node: usize,
        version: u32,
        book: &ReportBook,
        now: Millis,
    ) -> bool {
        if version <= self.index.held(agent, node) {
            // The view holds this version or a newer one: its merge would refuse the report,
            // so it is not even cloned.
            return false;
        }
        let changed = self.views[agent].merge(book.node_report(node, version), now);
        assert!(
            changed,
            "ClusterView of agent {agent} refused version {version} of {}, which its index lacks",
            self.names[node]
        );
        self.index.merge(agent, node, version, book, now)
    }

    fn expire(
        &mut self,
        agent: usize,
        now: Millis,
        stale: Duration,
        gone: &dyn Fn(usize) -> bool,
    ) -> usize {
        let dropped =
            self.views[agent].expire(now, stale, |name| node_index(name).is_none_or(gone));
        let indexed = self.index.expire(agent, now, stale, gone);
        assert_eq!(
            dropped, indexed,
            "ClusterView of agent {agent} and its index expired differently"
        );
        dropped
    }

    fn message(&self, agent: usize, limit: usize, out: &mut [u32]) {
        let view = &self.views[agent];
        if limit >= view.len() {
            self.index.message(agent, limit, out);
            return;
        }
        out.fill(0);
        for report in view.reports(limit) {
            if let Some(node) = node_index(&report.node) {
                out[node] = u32::try_from(report.version).unwrap_or(u32::MAX);
            }
        }
    }

    fn estimate(&self, agent: usize, service: usize, book: &ReportBook) -> Estimate {
        let merged = self.views[agent].service(&book.services()[service]);
        Estimate {
            instances: merged.instances,
            nodes: merged.nodes,
            weighted: merged.analytics.get(LOAD).copied(),
        }
    }

    fn plain(&self, agent: usize, service: usize, book: &ReportBook) -> Option<f64> {
        let view = &self.views[agent];
        let name = &book.services()[service];
        let (mut sum, mut count) = (0.0, 0_u32);
        for node in &self.names {
            let value = view
                .report(node)
                .and_then(|r| r.services.get(name))
                .and_then(|s| s.analytics.get(LOAD))
                .filter(|v| v.is_finite());
            if let Some(value) = value {
                sum += value;
                count += 1;
            }
        }
        (count > 0).then(|| sum / f64::from(count))
    }

    fn forget(&mut self, agent: usize) {
        self.views[agent] = ClusterView::new();
        self.index.forget(agent);
    }

    fn digest(&self, agent: usize, buckets: &Buckets, out: &mut [u32]) {
        out.copy_from_slice(&self.views[agent].digest(buckets.count()));
        let mut indexed = vec![0; out.len()];
        self.index.digest(agent, buckets, &mut indexed);
        assert_eq!(
            out,
            &indexed[..],
            "ClusterView of agent {agent} digests otherwise"
        );
    }

    fn hot(&self, agent: usize, since: Millis, cap: usize, out: &mut Vec<(usize, u32)>) {
        out.clear();
        out.extend(
            self.views[agent]
                .heard_since(since, cap)
                .iter()
                .map(|(name, version)| (self.index_of(name), wire_version(*version))),
        );
        let mut indexed = Vec::new();
        self.index.hot(agent, since, cap, &mut indexed);
        assert_eq!(
            *out, indexed,
            "ClusterView of agent {agent} heard otherwise"
        );
    }

    fn answer(
        &self,
        agent: usize,
        mine: &[u32],
        theirs: &[u32],
        their_hot: &[(usize, u32)],
        own_hot: &[(usize, u32)],
        skip: &HashSet<usize>,
        start: usize,
        cap: usize,
        buckets: &Buckets,
        out: &mut Answer,
    ) {
        let skip_names: HashSet<String> =
            skip.iter().map(|node| self.names[*node].clone()).collect();
        let real = self.views[agent].answer(
            theirs,
            &self.named(their_hot),
            self.named(own_hot),
            &self.names[agent],
            &skip_names,
            start,
            cap,
        );
        *out = Answer {
            wants: real.wants.iter().map(|n| self.index_of(n)).collect(),
            hot: self.indexed(&real.hot),
            covered: real.buckets.iter().map(|b| *b as usize).collect(),
            versions: self.indexed(&real.versions),
        };
        let mut indexed = Answer::default();
        self.index.answer(
            agent,
            mine,
            theirs,
            their_hot,
            own_hot,
            skip,
            start,
            cap,
            buckets,
            &mut indexed,
        );
        assert_eq!(
            *out, indexed,
            "ClusterView of agent {agent} answers otherwise"
        );
    }

    fn reconcile(
        &self,
        agent: usize,
        answer: &Answer,
        buckets: &Buckets,
        skip: &HashSet<usize>,
        out: &mut Reconciled,
    ) {
        let real_answer = gru_agent::gossip::digest::Answer {
            wants: answer
                .wants
                .iter()
                .map(|n| self.names[*n].clone())
                .collect(),
            hot: self.named(&answer.hot),
            buckets: answer.covered.iter().map(|b| *b as u32).collect(),
            versions: self.named(&answer.versions),
        };
        let skip_names: HashSet<String> =
            skip.iter().map(|node| self.names[*node].clone()).collect();
        let real = self.views[agent].reconcile(
            &real_answer,
            buckets.count(),
            &self.names[agent],
            &skip_names,
        );
        out.push = real.push.iter().map(|r| self.index_of(&r.node)).collect();
        out.push.sort_unstable();
        out.wants = real.wants.iter().map(|n| self.index_of(n)).collect();
        let mut indexed = Reconciled::default();
        self.index
            .reconcile(agent, answer, buckets, skip, &mut indexed);
        assert_eq!(
            *out, indexed,
            "ClusterView of agent {agent} reconciles otherwise"
        );
    }
}

impl ClusterViews {
    fn index_of(&self, name: &str) -> usize {
        node_index(name).unwrap_or(usize::MAX)
    }

    fn named(&self, entries: &[(usize, u32)]) -> Vec<(String, u64)> {
        entries
            .iter()
            .map(|(node, version)| (self.names[*node].clone(), u64::from(*version)))
            .collect()
    }

    fn indexed(&self, entries: &[(String, u64)]) -> Vec<(usize, u32)> {
        entries
            .iter()
            .map(|(name, version)| (self.index_of(name), wire_version(*version)))
            .collect()
    }
}

fn wire_version(version: u64) -> u32 {
    u32::try_from(version).unwrap_or(u32::MAX)
}

/// Per agent and node: the version held and when it arrived.
#[derive(Debug, Clone)]
pub struct CompactViews {
    nodes: usize,
    agents: usize,
    /// `agents × nodes`, row per agent; 0 = not held.
    versions: Vec<u32>,
    /// When the held version arrived, in milliseconds of virtual time.
    heard: Vec<u32>,
}

impl CompactViews {
    pub fn new(agents: usize, nodes: usize) -> CompactViews {
        CompactViews {
            nodes,
            agents,
            versions: vec![0; agents * nodes],
            heard: vec![0; agents * nodes],
        }
    }

    fn row(&self, agent: usize) -> std::ops::Range<usize> {
        agent * self.nodes..(agent + 1) * self.nodes
    }
}

fn millis_u32(now: Millis) -> u32 {
    u32::try_from(now.0).unwrap_or(u32::MAX)
}

impl Views for CompactViews {
    fn agents(&self) -> usize {
        self.agents
    }

    fn held(&self, agent: usize, node: usize) -> u32 {
        self.versions[agent * self.nodes + node]
    }

    fn merge(
        &mut self,
        agent: usize,
        node: usize,
        version: u32,
        _book: &ReportBook,
        now: Millis,
    ) -> bool {
        let at = agent * self.nodes + node;
        if self.versions[at] >= version {
            return false;
        }
        self.versions[at] = version;
        self.heard[at] = millis_u32(now);
        true
    }

    fn absorb(&mut self, agent: usize, offered: &[u32], _book: &ReportBook, now: Millis) {
        let now = millis_u32(now);
        let row = self.row(agent);
        let versions = &mut self.versions[row.clone()];
        let heard = &mut self.heard[row];
        for ((held, at), &offer) in versions.iter_mut().zip(heard.iter_mut()).zip(offered) {
            if offer > *held {
                *held = offer;
                *at = now;
            }
        }
    }

    fn expire(
        &mut self,
        agent: usize,
        now: Millis,
        stale: Duration,
        gone: &dyn Fn(usize) -> bool,
    ) -> usize {
        let row = self.row(agent);
        let mut dropped = 0;
        for (node, at) in row.enumerate() {
            if self.versions[at] == 0 {
                continue;
            }
            let heard = Millis(u64::from(self.heard[at]));
            if now.since(heard) > stale || gone(node) {
                self.versions[at] = 0;
                self.heard[at] = 0;
                dropped += 1;
            }
        }
        dropped
    }

    fn message(&self, agent: usize, limit: usize, out: &mut [u32]) {
        let row = self.row(agent);
        let versions = &self.versions[row.clone()];
        let held = versions.iter().filter(|v| **v > 0).count();
        if limit >= held {
            out.copy_from_slice(versions);
            return;
        }
        // Freshest first, then by name, as `ClusterView::reports` orders them: a smaller
        // key is fresher, then the lower node.
        let heard = &self.heard[row];
        let mut keys: Vec<u64> = versions
            .iter()
            .zip(heard)
            .enumerate()
            .filter(|(_, (v, _))| **v > 0)
            .map(|(node, (_, at))| (u64::from(u32::MAX - at) << 32) | node as u64)
            .collect();
        out.fill(0);
        if limit == 0 {
            return;
        }
        keys.select_nth_unstable(limit - 1);
        for key in &keys[..limit] {
            let node = (key & u64::from(u32::MAX)) as usize;
            out[node] = versions[node];
        }
    }

    fn estimate(&self, agent: usize, service: usize, book: &ReportBook) -> Estimate {
        let mut estimate = Estimate::default();
        let (mut sum, mut weight) = (0.0, 0.0);
        for (node, &version) in self.versions[self.row(agent)].iter().enumerate() {
            if version == 0 {
                continue;
            }
            let Some(Some(sample)) = book.payload(node, version).get(service) else {
                continue;
            };
            estimate.instances += sample.instances;
            if sample.instances > 0 {
                estimate.nodes += 1;
            }
            if sample.load.is_finite() {
                let w = f64::from(sample.instances.max(1));
                sum += sample.load * w;
                weight += w;
            }
        }
        estimate.weighted = (weight > 0.0).then(|| sum / weight);
        estimate
    }

    fn plain(&self, agent: usize, service: usize, book: &ReportBook) -> Option<f64> {
        let (mut sum, mut count) = (0.0, 0_u32);
        for (node, &version) in self.versions[self.row(agent)].iter().enumerate() {
            if version == 0 {
                continue;
            }
            if let Some(Some(sample)) = book.payload(node, version).get(service)
                && sample.load.is_finite()
            {
                sum += sample.load;
                count += 1;
            }
        }
        (count > 0).then(|| sum / f64::from(count))
    }

    fn forget(&mut self, agent: usize) {
        let row = self.row(agent);
        self.versions[row.clone()].fill(0);
        self.heard[row].fill(0);
    }

    fn hot(&self, agent: usize, since: Millis, cap: usize, out: &mut Vec<(usize, u32)>) {
        out.clear();
        let since = millis_u32(since);
        let row = self.row(agent);
        out.extend(
            self.versions[row.clone()]
                .iter()
                .zip(&self.heard[row])
                .enumerate()
                .filter(|(_, (version, heard))| **version > 0 && **heard >= since)
                .map(|(node, (version, _))| (node, *version))
                .take(cap),
        );
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    fn random_payload(rng: &mut StdRng, services: usize) -> Payload {
        (0..services)
            .map(|_| {
                rng.random_bool(0.8).then(|| Sample {
                    instances: rng.random_range(0..4),
                    load: if rng.random_bool(0.05) {
                        f64::NAN
                    } else {
                        rng.random::<f64>()
                    },
                })
            })
            .collect()
    }

    /// The real views, driven directly (not through [`ClusterViews`] and its index).
    struct Real {
        views: Vec<ClusterView>,
    }

    impl Real {
        fn held(&self, agent: usize, node: usize, book: &ReportBook) -> u32 {
            self.views[agent]
                .report(book.name(node))
                .map_or(0, |r| r.version as u32)
        }

        fn message(&self, agent: usize, limit: usize, nodes: usize) -> Vec<u32> {
            let mut out = vec![0; nodes];
            for report in self.views[agent].reports(limit) {
                out[node_index(&report.node).expect("a simulated node")] = report.version as u32;
            }
            out
        }

        fn plain(&self, agent: usize, service: &str) -> Option<f64> {
            let values: Vec<f64> = self.views[agent]
                .reports(usize::MAX)
                .into_iter()
                .map(|r| (node_index(&r.node), r))
                .collect::<BTreeMap<_, _>>()
                .into_values()
                .filter_map(|r| r.services.get(service)?.analytics.get(LOAD).copied())
                .filter(|v| v.is_finite())
                .collect();
            let mut sum = 0.0;
            for v in &values {
                sum += v;
            }
            (!values.is_empty()).then(|| sum / values.len() as f64)
        }
    }

    /// The property: the same sequence of publications, merges, messages and expiries
    /// leaves `ClusterView`s and [`CompactViews`] holding the same versions, sending the
    /// same (capped) messages and computing bit-identical values; [`ClusterViews`], the
    /// indexed wrapper the simulation uses, agrees with both.
    #[test]
    fn compact_views_match_cluster_views() {
        for case in 0..80_u64 {
            let mut rng = StdRng::seed_from_u64(case);
            let nodes = rng.random_range(1..12);
            let agents = rng.random_range(1..6);
            let services = rng.random_range(1..3);
            let names = ["web".to_owned(), "db".to_owned()];
            let mut book = ReportBook::new(nodes, names[..services].to_vec());
            let mut real = Real {
                views: vec![ClusterView::new(); agents],
            };
            let mut wrapped = ClusterViews::new(agents, &book);
            let mut compact = CompactViews::new(agents, nodes);
            let mut now = Millis::ZERO;
            for _step in 0..80 {
                now = now.plus(Duration::from_millis(rng.random_range(0..3_000)));
                match rng.random_range(0..10) {
                    0..=2 => {
                        let node = rng.random_range(0..nodes);
                        book.publish(node, random_payload(&mut rng, services), now);
                    }
                    3..=6 => {
                        // A merge of any published version, old or new, in any order.
                        let agent = rng.random_range(0..agents);
                        let node = rng.random_range(0..nodes);
                        if book.latest(node) > 0 {
                            let version = rng.random_range(1..=book.latest(node));
                            let a = real.views[agent].merge(book.node_report(node, version), now);
                            let b = compact.merge(agent, node, version, &book, now);
                            let c = wrapped.merge(agent, node, version, &book, now);
                            assert_eq!((a, a), (b, c), "case {case}: merge result");
                        }
                    }
                    7 => {
                        // A whole message from one agent to another, capped.
                        let from = rng.random_range(0..agents);
                        let to = rng.random_range(0..agents);
                        let limit = rng.random_range(0..nodes + 2);
                        let a = real.message(from, limit, nodes);
                        let mut b = vec![0; nodes];
                        compact.message(from, limit, &mut b);
                        let mut c = vec![0; nodes];
                        wrapped.message(from, limit, &mut c);
                        assert_eq!(
                            (&a, &a),
                            (&b, &c),
                            "case {case}: message of {from} capped at {limit}"
                        );
                        for (node, &version) in a.iter().enumerate() {
                            if version > 0 {
                                real.views[to].merge(book.node_report(node, version), now);
                            }
                        }
                        compact.absorb(to, &b, &book, now);
                        wrapped.absorb(to, &c, &book, now);
                    }
                    8 => {
                        let agent = rng.random_range(0..agents);
                        let stale = Duration::from_millis(rng.random_range(0..5_000));
                        let gone_node = rng.random_range(0..nodes * 3);
                        let gone = |node: usize| node == gone_node;
                        let a = real.views[agent]
                            .expire(now, stale, |name| node_index(name).is_some_and(gone));
                        let b = compact.expire(agent, now, stale, &gone);
                        let c = wrapped.expire(agent, now, stale, &gone);
                        assert_eq!((a, a), (b, c), "case {case}: expired count");
                    }
                    _ => {
                        let agent = rng.random_range(0..agents);
                        real.views[agent] = ClusterView::new();
                        compact.forget(agent);
                        wrapped.forget(agent);
                    }
                }
                for agent in 0..agents {
                    for node in 0..nodes {
                        let a = real.held(agent, node, &book);
                        assert_eq!(
                            (a, a),
                            (compact.held(agent, node), wrapped.held(agent, node)),
                            "case {case}: version held by {agent} of {node}"
                        );
                    }
                    for (service, name) in names[..services].iter().enumerate() {
                        let merged = real.views[agent].service(name);
                        let a = Estimate {
                            instances: merged.instances,
                            nodes: merged.nodes,
                            weighted: merged.analytics.get(LOAD).copied(),
                        };
                        let b = compact.estimate(agent, service, &book);
                        let c = wrapped.estimate(agent, service, &book);
                        assert_eq!(
                            (a.instances, a.nodes),
                            (b.instances, b.nodes),
                            "case {case}"
                        );
                        assert_eq!(
                            a.weighted.map(f64::to_bits),
                            b.weighted.map(f64::to_bits),
                            "case {case}: weighted {a:?} vs {b:?}"
                        );
                        assert_eq!(a, c, "case {case}: wrapped");
                        let plain = real.plain(agent, name).map(f64::to_bits);
                        assert_eq!(
                            (plain, plain),
                            (
                                compact.plain(agent, service, &book).map(f64::to_bits),
                                wrapped.plain(agent, service, &book).map(f64::to_bits)
                            ),
                            "case {case}: plain mean"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_book_keeps_each_version_payload() {
        let mut book = ReportBook::new(1, vec!["web".into()]);
        let one: Payload = Box::new([Some(Sample {
            instances: 1,
            load: 0.5,
        })]);
        let two: Payload = Box::new([Some(Sample {
            instances: 2,
            load: 0.9,
        })]);
        assert_eq!(book.publish(0, one.clone(), Millis::ZERO), 1);
        assert_eq!(book.publish(0, one.clone(), Millis::ZERO), 2);
        assert_eq!(book.publish(0, two.clone(), Millis(5_000)), 3);
        assert_eq!(
            (1..=3).map(|v| book.wire_version(0, v)).collect::<Vec<_>>(),
            [
                WIRE_VERSION_BASE,
                WIRE_VERSION_BASE + 1,
                WIRE_VERSION_BASE + 5_000
            ],
            "milliseconds, always increasing"
        );
        assert_eq!(book.payload(0, 2), &one[..]);
        assert_eq!(book.payload(0, 3), &two[..]);
        assert_eq!(
            book.history[0].len(),
            2,
            "an unchanged payload is not stored again"
        );
        let report = book.node_report(0, 1);
        assert_eq!((report.node.as_str(), report.version), ("n000000", 1));
        assert_eq!(report.services["web"].analytics[LOAD], 0.5);
    }
}
