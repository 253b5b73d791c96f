//! The agent's own counters, exposed at `GET /metrics` through the `prometheus-client`
//! crate (the Prometheus project's Rust client), in Prometheus' text format 0.0.4.
//!
//! Every family is declared from the start, also a labelled one with no series yet (a
//! counter that never moved reads 0, so a dashboard can tell "no errors" from "not
//! reported"; the crate itself leaves empty families out, so [`CappedCounters`] says it is
//! never empty). Counting is a relaxed atomic add, or a short lock for labelled counters:
//! cheap enough for the loop, and never held across an `.await`. The number of label
//! combinations per family is capped ([`MAX_SERIES_PER_FAMILY`]); beyond it new
//! combinations are counted as `other`, so a caller passing unbounded text cannot grow
//! memory. The sink's counters and the process's memory are read when the page is
//! written ([`SinkCollector`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::buffer::PointBuffer;

/// Label combinations kept per labelled counter before new ones fold into `other`.
pub const MAX_SERIES_PER_FAMILY: usize = 64;
/// Upper bounds of the loop-duration histogram, in seconds. A tick is mostly Docker and
/// etcd round trips: milliseconds when idle, seconds when it starts containers.
pub const LOOP_DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One series' labels: the family's label names with this series' values, in order.
type LabelSet = Vec<(&'static str, String)>;

/// A counter family with labels, capped at [`MAX_SERIES_PER_FAMILY`] series. Clones share
/// the counts (one is registered, one is counted through).
#[derive(Debug, Clone)]
struct CappedCounters {
    labels: &'static [&'static str],
    family: Family<LabelSet, Counter>,
    /// Series in `family`, counted while holding the lock (so that the cap is exact under
    /// concurrent adds; the crate's own count is for its tests only).
    series: Arc<Mutex<usize>>,
}

impl CappedCounters {
    fn new(labels: &'static [&'static str]) -> CappedCounters {
        CappedCounters {
            labels,
            family: Family::default(),
            series: Arc::new(Mutex::new(0)),
        }
    }

    fn key(&self, values: &[&str]) -> LabelSet {
        self.labels
            .iter()
            .copied()
            .zip(values.iter().map(|v| (*v).to_owned()))
            .collect()
    }

    fn add(&self, values: &[&str], n: u64) {
        let key = self.key(values);
        if let Some(counter) = self.family.get(&key) {
            counter.inc_by(n);
            return;
        }
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = key;
        if self.family.get(&key).is_none() {
            if *series >= MAX_SERIES_PER_FAMILY {
                key = self.key(&vec!["other"; values.len()]);
            }
            if self.family.get(&key).is_none() {
                *series += 1;
            }
        }
        self.family.get_or_create(&key).inc_by(n);
    }

    fn get(&self, values: &[&str]) -> u64 {
        self.family
            .get(&self.key(values))
            .map_or(0, |counter| counter.get())
    }
}

impl TypedMetric for CappedCounters {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for CappedCounters {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }

    /// Declared even before its first series (see the module's documentation).
    fn is_empty(&self) -> bool {
        false
    }
}

/// The counters of one agent.
#[derive(Debug)]
pub struct Metrics {
    loop_duration: Histogram,
    last_loop_nanos: AtomicU64,
    decisions: CappedCounters,
    actions: CappedCounters,
    gossip_rounds: Counter,
    gossip_rejected: CappedCounters,
    etcd_errors: Counter,
    docker_errors: Counter,
    log_lines: CappedCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `help` as the crate wants it: it adds the full stop itself.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            loop_duration: Histogram::new(LOOP_DURATION_BUCKETS_SECONDS),
            last_loop_nanos: AtomicU64::new(0),
            decisions: CappedCounters::new(&["action"]),
            actions: CappedCounters::new(&["action", "result"]),
            gossip_rounds: Counter::default(),
            gossip_rejected: CappedCounters::new(&["reason"]),
            etcd_errors: Counter::default(),
            docker_errors: Counter::default(),
            log_lines: CappedCounters::new(&["result"]),
        }
    }

    /// Registers every family of these counters in `registry` (the registry keeps clones
    /// that share the counts). Counter names go without `_total`: the crate appends it.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gru_loop_duration_seconds",
            help("Duration of one autonomic tick (reconcile, floor, plan, execute)."),
            self.loop_duration.clone(),
        );
        registry.register(
            "gru_decisions",
            help("Decisions of the planner, by chosen action (none, scale-out, scale-in, swap)."),
            self.decisions.clone(),
        );
        registry.register(
            "gru_actions",
            help(
                "Actions carried out on this node, by why (scale-out, scale-in, swap, min-instances, base-service, start-service, stop-service) and result (ok, failed, skipped, refused).",
            ),
            self.actions.clone(),
        );
        registry.register(
            "gru_gossip_rounds",
            help("Gossip rounds with friends."),
            self.gossip_rounds.clone(),
        );
        registry.register(
            "gru_gossip_rejected",
            help("Gossip messages refused, by reason."),
            self.gossip_rejected.clone(),
        );
        registry.register(
            "gru_etcd_errors",
            help("etcd requests that failed after retries."),
            self.etcd_errors.clone(),
        );
        registry.register(
            "gru_docker_errors",
            help("Docker Engine calls that failed."),
            self.docker_errors.clone(),
        );
        registry.register(
            "gru_log_lines",
            help(
                "Lines of containers' output, by result: recorded (metric lines), malformed (gru: lines refused), ignored (another service's metric lines), dropped (the reader fell behind).",
            ),
            self.log_lines.clone(),
        );
    }

    /// One autonomic tick took `duration`.
    pub fn loop_finished(&self, duration: Duration) {
        self.loop_duration.observe(duration.as_secs_f64());
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.last_loop_nanos.store(nanos, Ordering::Relaxed);
    }

    /// How long the latest tick took.
    pub fn last_loop(&self) -> Duration {
        Duration::from_nanos(self.last_loop_nanos.load(Ordering::Relaxed))
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
        self.gossip_rounds.inc();
    }

    /// A gossip message was refused, for a short fixed `reason` such as `bad-signature`,
    /// `too-large`, `stale` (for the gossip code).
    pub fn gossip_rejected(&self, reason: &str) {
        self.gossip_rejected.add(&[reason], 1);
    }

    /// An etcd request failed (after the store's own retries).
    pub fn etcd_error(&self) {
        self.etcd_errors.inc();
    }

    /// A Docker Engine call failed.
    pub fn docker_error(&self) {
        self.docker_errors.inc();
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
        self.etcd_errors.get()
    }

    pub fn docker_errors(&self) -> u64 {
        self.docker_errors.get()
    }
}

/// The families read when the page is written: the InfluxDB sink's buffer counters (all
/// zero until a sink is attached) and the process's resident memory.
#[derive(Debug, Clone, Default)]
pub struct SinkCollector {
    pub buffer: Arc<OnceLock<Arc<PointBuffer>>>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// An unlabelled counter; `name` without `_total` (the encoder appends it).
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// A counter family with one label, `label`, and a series per value.
fn labelled_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    samples: &[(&'static str, u64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in samples {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SinkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sink = self
            .buffer
            .get()
            .map(|buffer| buffer.stats())
            .unwrap_or_default();
        gauge(
            &mut encoder,
            "gru_sink_buffer_points",
            "Points waiting for the InfluxDB sink (including the batch being written).",
            sink.buffered as f64,
        )?;
        gauge(
            &mut encoder,
            "gru_sink_buffer_capacity_points",
            "Points the sink's buffer holds at most (0 without a sink).",
            sink.capacity as f64,
        )?;
        labelled_counter(
            &mut encoder,
            "gru_sink_dropped_points",
            "Points the sink dropped: overflow (buffer full, oldest first) or rejected (refused by the server).",
            "reason",
            &[
                ("overflow", sink.dropped_overflow),
                ("rejected", sink.dropped_rejected),
            ],
        )?;
        counter(
            &mut encoder,
            "gru_sink_written_points",
            "Points written to InfluxDB.",
            sink.written,
        )?;
        counter(
            &mut encoder,
            "gru_sink_write_errors",
            "Failed write attempts of the sink (each retried).",
            sink.write_errors,
        )?;
        if let Some(rss) = super::resident_memory_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory of the agent process.",
                rss as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("a String takes any page");
        text
    }

    #[test]
    fn loop_durations_land_in_their_bucket() {
        let metrics = Metrics::new();
        metrics.loop_finished(Duration::from_millis(3));
        metrics.loop_finished(Duration::from_millis(10));
        metrics.loop_finished(Duration::from_secs(60));
        let text = page(&metrics);
        for line in [
            "gru_loop_duration_seconds_bucket{le=\"0.005\"} 1",
            "gru_loop_duration_seconds_bucket{le=\"0.01\"} 2",
            "gru_loop_duration_seconds_bucket{le=\"30\"} 2",
            "gru_loop_duration_seconds_bucket{le=\"+Inf\"} 3",
            "gru_loop_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
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
        let series = *metrics.gossip_rejected.series.lock().expect("not poisoned");
        assert_eq!(
            series,
            MAX_SERIES_PER_FAMILY + 1,
            "the kept series and `other`"
        );
        metrics.gossip_rejected("reason-0");
        assert_eq!(
            metrics.gossip_rejected.get(&["reason-0"]),
            2,
            "kept series still count"
        );
    }

    #[test]
    fn every_family_is_rendered_before_anything_happens() {
        let text = page(&Metrics::new());
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
        assert!(text.contains("gru_etcd_errors_total 0\n"), "{text}");
        assert!(
            text.contains("# HELP gru_gossip_rounds_total Gossip rounds with friends.\n"),
            "one full stop, not two:\n{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.gossip_rejected("a\"b\\c\nd");
        let text = page(&metrics);
        assert!(
            text.contains("gru_gossip_rejected_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }
}
