//! The agent's own counters, exposed at `GET /metrics`.
//!
//! Every family is registered from the start (a counter that never moved reads 0, so a
//! dashboard can tell "no errors" from "not reported"). Counting is a relaxed atomic add,
//! or a short std-mutex section for labelled counters: cheap enough for the loop, and never
//! held across an `.await`. The number of label combinations per family is capped
//! ([`MAX_SERIES_PER_FAMILY`]); beyond it new combinations are counted as `other`, so a
//! caller passing unbounded text cannot grow memory.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::prometheus::Exposition;

/// Label combinations kept per labelled counter before new ones fold into `other`.
pub const MAX_SERIES_PER_FAMILY: usize = 64;
/// Upper bounds of the loop-duration histogram, in seconds. A tick is mostly Docker and
/// etcd round trips: milliseconds when idle, seconds when it starts containers.
pub const LOOP_DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations with fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus `+Inf`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    last_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// A counter with labels, keyed by the label values in the family's label order.
#[derive(Debug)]
struct LabelledCounter {
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl LabelledCounter {
    fn new(labels: &'static [&'static str]) -> LabelledCounter {
        LabelledCounter {
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, values: &[&str], n: u64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if !series.contains_key(&key) && series.len() >= MAX_SERIES_PER_FAMILY {
            key = vec!["other".to_owned(); values.len()];
        }
        *series.entry(key).or_insert(0) += n;
    }

    fn get(&self, values: &[&str]) -> u64 {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        series.get(&key).copied().unwrap_or(0)
    }

    fn render(&self, page: &mut Exposition, name: &str, help: &str) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        page.counter(
            name,
            help,
            series.iter().map(|(values, count)| {
                (
                    self.labels
                        .iter()
                        .copied()
                        .zip(values.iter().map(String::as_str))
                        .collect(),
                    *count,
                )
            }),
        );
    }
}

/// The counters of one agent.
#[derive(Debug)]
pub struct Metrics {
    loop_duration: Histogram,
    decisions: LabelledCounter,
    actions: LabelledCounter,
    gossip_rounds: AtomicU64,
    gossip_rejected: LabelledCounter,
    etcd_errors: AtomicU64,
    docker_errors: AtomicU64,
    log_lines: LabelledCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            loop_duration: Histogram::new(&LOOP_DURATION_BUCKETS_SECONDS),
            decisions: LabelledCounter::new(&["action"]),
            actions: LabelledCounter::new(&["action", "result"]),
            gossip_rounds: AtomicU64::new(0),
            gossip_rejected: LabelledCounter::new(&["reason"]),
            etcd_errors: AtomicU64::new(0),
            docker_errors: AtomicU64::new(0),
            log_lines: LabelledCounter::new(&["result"]),
        }
    }

    /// One autonomic tick took `duration`.
    pub fn loop_finished(&self, duration: Duration) {
        self.loop_duration.observe(duration);
    }

    /// How long the latest tick took.
    pub fn last_loop(&self) -> Duration {
        Duration::from_nanos(self.loop_duration.last_nanos.load(Ordering::Relaxed))
    }

    /// The planner chose `action` (`none`, `scale-out`, `scale-in`, `swap`).
    pub fn decision(&self, action: &str) {
        self.decisions.add(&[action], 1);
    }

    /// The executor did `action` (why it acted: `scale-out`, `min-instances`, ...) with
    /// `result` (`ok`, `failed`, `skipped`).
    pub fn action(&self, action: &str, result: &str) {
        self.actions.add(&[action, result], 1);
    }

    /// A gossip round with friends was run (for the gossip code).
    pub fn gossip_round(&self) {
        self.gossip_rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// A gossip message was refused, for a short fixed `reason` such as `bad-signature`,
    /// `too-large`, `stale` (for the gossip code).
    pub fn gossip_rejected(&self, reason: &str) {
        self.gossip_rejected.add(&[reason], 1);
    }

    /// An etcd request failed (after the store's own retries).
    pub fn etcd_error(&self) {
        self.etcd_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A Docker Engine call failed.
    pub fn docker_error(&self) {
        self.docker_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` lines of containers' output had `result`: `recorded` (a metric line of the
    /// container's service), `malformed` (a `gru:` line the parser refused), `ignored`
    /// (another service's metric line) or `dropped` (any line: the reader fell behind).
    pub fn log_lines(&self, result: &str, n: u64) {
        self.log_lines.add(&[result], n);
    }

    pub fn log_lines_count(&self, result: &str) -> u64 {
        self.log_lines.get(&[result])
    }

    pub fn decisions(&self, action: &str) -> u64 {
        self.decisions.get(&[action])
    }

    pub fn actions(&self, action: &str, result: &str) -> u64 {
        self.actions.get(&[action, result])
    }

    pub fn etcd_errors(&self) -> u64 {
        self.etcd_errors.load(Ordering::Relaxed)
    }

    pub fn docker_errors(&self) -> u64 {
        self.docker_errors.load(Ordering::Relaxed)
    }

    /// Writes every family of this registry.
    pub fn render(&self, page: &mut Exposition) {
        page.histogram(
            "gru_loop_duration_seconds",
            "Duration of one autonomic tick (reconcile, floor, plan, execute).",
            self.loop_duration.bounds,
            &self.loop_duration.counts(),
            self.loop_duration.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        );
        self.decisions.render(
            page,
            "gru_decisions_total",
            "Decisions of the planner, by chosen action (none, scale-out, scale-in, swap).",
        );
        self.actions.render(
            page,
            "gru_actions_total",
            "Actions carried out on this node, by why (scale-out, scale-in, swap, min-instances, base-service, start-service, stop-service) and result (ok, failed, skipped, refused).",
        );
        page.counter(
            "gru_gossip_rounds_total",
            "Gossip rounds with friends.",
            [(vec![], self.gossip_rounds.load(Ordering::Relaxed))],
        );
        self.gossip_rejected.render(
            page,
            "gru_gossip_rejected_total",
            "Gossip messages refused, by reason.",
        );
        page.counter(
            "gru_etcd_errors_total",
            "etcd requests that failed after retries.",
            [(vec![], self.etcd_errors())],
        );
        page.counter(
            "gru_docker_errors_total",
            "Docker Engine calls that failed.",
            [(vec![], self.docker_errors())],
        );
        self.log_lines.render(
            page,
            "gru_log_lines_total",
            "Lines of containers' output, by result: recorded (metric lines), malformed (gru: lines refused), ignored (another service's metric lines), dropped (the reader fell behind).",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_durations_land_in_their_bucket() {
        let metrics = Metrics::new();
        metrics.loop_finished(Duration::from_millis(3));
        metrics.loop_finished(Duration::from_millis(10));
        metrics.loop_finished(Duration::from_secs(60));
        let counts = metrics.loop_duration.counts();
        assert_eq!(counts[0], 1, "3 ms <= 5 ms");
        assert_eq!(counts[1], 1, "10 ms <= 10 ms");
        assert_eq!(counts[LOOP_DURATION_BUCKETS_SECONDS.len()], 1, "60 s: +Inf");
        assert_eq!(metrics.last_loop(), Duration::from_secs(60));
    }

    #[test]
    fn label_combinations_are_capped() {
        let metrics = Metrics::new();
        for i in 0..(MAX_SERIES_PER_FAMILY + 10) {
            metrics.gossip_rejected(&format!("reason-{i}"));
        }
        assert_eq!(metrics.gossip_rejected.get(&["other"]), 10);
        assert_eq!(metrics.gossip_rejected.get(&["reason-0"]), 1);
    }

    #[test]
    fn every_family_is_rendered_before_anything_happens() {
        let mut page = Exposition::new();
        Metrics::new().render(&mut page);
        let text = page.finish();
        for family in [
            "gru_loop_duration_seconds histogram",
            "gru_decisions_total counter",
            "gru_actions_total counter",
            "gru_gossip_rounds_total counter",
            "gru_gossip_rejected_total counter",
            "gru_etcd_errors_total counter",
            "gru_docker_errors_total counter",
            "gru_log_lines_total counter",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family}\n")),
                "{family} missing:\n{text}"
            );
        }
        assert!(text.contains("gru_etcd_errors_total 0\n"));
    }
}
