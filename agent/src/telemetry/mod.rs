//! What the agent tells operators about itself: counters for Prometheus (`GET /metrics`)
//! and points for InfluxDB.
//!
//! * `registry.rs`: [`Metrics`], the agent's counters and the loop-duration histogram, in
//!   the `prometheus-client` crate's registry, which writes the text exposition format;
//! * `point.rs`: [`Point`], a measurement with tags, fields and a time;
//! * `measurements.rs`: the builders of every measurement below (plain functions);
//! * `buffer.rs`: [`PointBuffer`], bounded, oldest dropped and counted when full;
//! * `sink.rs`: the writer task, batched writes through the influxdb2 crate, retry with
//!   capped backoff ([`PointWriter`] is its port, [`InfluxWriter`] the real adapter).
//!
//! The loop hands points over with calls that never wait ([`Telemetry::observe`],
//! [`Telemetry::decided`], [`Telemetry::acted`]): building a tick's points and queueing
//! them is a few microseconds under std mutexes, and the network is only ever touched by
//! the writer task. Memory is bounded by the buffer's capacity plus one batch.
//!
//! # Measurements
//!
//! Every point carries the tags `cluster` and `node`. Integer fields are written as
//! integers (`1i`), flags as 0/1 integers. Times are the agent's wall clock.
//!
//! | measurement    | extra tags                      | fields                                                          | written           |
//! |----------------|---------------------------------|-----------------------------------------------------------------|-------------------|
//! | `gru_node`     |                                 | `cpus`, `memory_bytes`, `active` (0/1), `instances` (running)  | every tick        |
//! | `gru_instance` | `service`, `instance`, `status` | `up` (0/1), `uptime_seconds`                                    | every tick        |
//! | `gru_service`  | `service`                       | `instances` (running here), `min_instances`, `max_instances`    | every tick        |
//! | `gru_metric`   | `service`                       | one field per metric mean: `cpu_avg`, `mem_avg`, user metrics   | every tick        |
//! | `gru_analytic` | `service`, `analytic`           | `value` (when available), `available` (0/1)                     | every tick        |
//! | `gru_shared`   | `service`                       | one field per value the cluster shares (gossip)                 | when merged       |
//! | `gru_decision` | `action`, `service`, `target`   | `weight` (chosen), `draw`, `dry_run`, `candidates`, `eligible`  | every decision    |
//! | `gru_policy`   | `action`, `service`, `target`   | `weight`, `eligible` (0/1), `chosen` (0/1)                      | per candidate     |
//! | `gru_action`   | `action`, `service`, `result`   | `count` (1)                                                     | every action      |
//! | `gru_agent`    |                                 | `loop_seconds`, `rss_bytes`, `sink_buffer_points`, `sink_dropped_points`, `sink_written_points` | every tick |
//!
//! `action` of a decision or candidate is `none`, `scale-out`, `scale-in` or `swap`
//! (`service` is the service scaled, or stopped by a swap; `target` the one a swap
//! starts). `action` of `gru_action` is why the executor acted: `scale-out`, `scale-in`,
//! `swap`, `min-instances`, `base-service`, `start-service`, `stop-service`; `result` is
//! `ok`, `failed`, `skipped` or `refused` (by the cluster's scaling ledger).

mod buffer;
mod measurements;
mod point;
mod registry;
mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::config::MetricConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use buffer::{BufferStats, PointBuffer};
pub use measurements::{
    MEASUREMENTS, NodeFacts, Origin, action_parts, action_point, agent_point, decision_points,
    documented_fields, knowledge_points, result_label, shared_point,
};
pub use point::{FieldValue, Point};
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use registry::{LOOP_DURATION_BUCKETS_SECONDS, MAX_SERIES_PER_FAMILY, Metrics};
pub use sink::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_BATCH_POINTS, DEFAULT_BUFFER_POINTS,
    DEFAULT_FLUSH_INTERVAL, DEFAULT_WRITE_TIMEOUT, InfluxWriter, PointWriter,
    SHUTDOWN_FLUSH_DEADLINE, SinkConfigError, SinkSettings, WriteError, WriterTiming, spawn_writer,
};

use crate::mape::{Decision, Millis};
use crate::runtime::{Knowledge, Shared};

/// Where a tick's points go when a sink is attached.
#[derive(Debug)]
struct SinkHandle {
    origin: Origin,
    facts: NodeFacts,
    buffer: Arc<PointBuffer>,
}

/// The agent's counters, and the InfluxDB sink once one is attached. Lives in
/// [`Shared`], so every task of the agent reaches it.
#[derive(Debug)]
pub struct Telemetry {
    pub metrics: Metrics,
    sink: OnceLock<SinkHandle>,
    /// The sink's buffer, for the `/metrics` page (set with `sink`).
    sink_buffer: Arc<OnceLock<Arc<PointBuffer>>>,
    /// Every family of `/metrics`: `metrics`' and the sink's and memory's collector.
    registry: prometheus_client::registry::Registry,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let metrics = Metrics::new();
        let sink_buffer = Arc::new(OnceLock::new());
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(registry::SinkCollector {
            buffer: Arc::clone(&sink_buffer),
        }));
        Telemetry {
            metrics,
            sink: OnceLock::new(),
            sink_buffer,
            registry,
        }
    }

    /// Sends this agent's points to `buffer` from now on. Only the first attachment counts;
    /// returns whether this one did.
    pub fn attach_sink(&self, origin: Origin, facts: NodeFacts, buffer: Arc<PointBuffer>) -> bool {
        let attached = self
            .sink
            .set(SinkHandle {
                origin,
                facts,
                buffer: Arc::clone(&buffer),
            })
            .is_ok();
        if attached {
            let _ = self.sink_buffer.set(buffer);
        }
        attached
    }

    /// The sink's counters (all zero without a sink).
    pub fn sink_stats(&self) -> BufferStats {
        self.sink
            .get()
            .map(|sink| sink.buffer.stats())
            .unwrap_or_default()
    }

    /// A tick's sample of the node's state: `gru_node`, `gru_instance`, `gru_service`,
    /// `gru_metric`, `gru_analytic` and `gru_agent` points. Nothing without a sink.
    pub fn observe(&self, knowledge: &mut Knowledge, now: Millis) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let points = knowledge_points(&sink.origin, sink.facts, knowledge, now);
        sink.buffer.extend(points);
        sink.buffer.push(agent_point(
            &sink.origin,
            self.metrics.last_loop().as_secs_f64(),
            resident_memory_bytes(),
            sink.buffer.stats(),
            now,
        ));
    }

    /// The planner decided: counts it and writes `gru_decision` and `gru_policy` points.
    pub fn decided(&self, decision: &Decision) {
        let (kind, _, _) = action_parts(&decision.action);
        self.metrics.decision(kind);
        if let Some(sink) = self.sink.get() {
            sink.buffer.extend(decision_points(&sink.origin, decision));
        }
    }

    /// The executor acted (`action` says why, `result` is an action record's result):
    /// counts it and writes a `gru_action` point.
    pub fn acted(&self, action: &str, service: &str, result: &str, at: Millis) {
        self.metrics.action(action, result_label(result));
        if let Some(sink) = self.sink.get() {
            sink.buffer
                .push(action_point(&sink.origin, action, service, result, at));
        }
    }

    /// Values of `service` as the cluster shares them (for the gossip code): a
    /// `gru_shared` point.
    pub fn shared_values(&self, service: &str, values: &BTreeMap<String, f64>, at: Millis) {
        if let Some(sink) = self.sink.get() {
            sink.buffer
                .push(shared_point(&sink.origin, service, values, at));
        }
    }

    /// The whole `/metrics` page: the registry, the sink's counters and the process's
    /// resident memory, in Prometheus' text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut page = String::with_capacity(4096);
        // Writing into a String cannot fail; an error would only come from a collector,
        // and ours return none.
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut page, &self.registry)
        {
            tracing::warn!(error = %err, "the /metrics page could not be written in full");
        }
        page
    }
}

/// `GET /metrics`: the Prometheus page of the agent that owns `shared`.
pub fn metrics_response(shared: &Shared) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        shared.telemetry.render(),
    )
        .into_response()
}

/// Starts the InfluxDB sink when the configuration asks for one and attaches it to the
/// agent's telemetry. A bad `Metric` section is logged and the agent runs without a sink:
/// metrics are worth less than the node's containers.
pub fn start_sink(
    shared: &Arc<Shared>,
    config: &MetricConfig,
    facts: NodeFacts,
    cancel: CancellationToken,
) -> Option<JoinHandle<()>> {
    let settings = match SinkSettings::from_config(config) {
        Ok(Some(settings)) => settings,
        Ok(None) => return None,
        Err(err) => {
            tracing::error!(error = %err, "metrics are not exported");
            return None;
        }
    };
    let writer = match InfluxWriter::new(&settings) {
        Ok(writer) => writer,
        Err(err) => {
            tracing::error!(error = %err, "metrics are not exported");
            return None;
        }
    };
    let buffer = Arc::new(PointBuffer::new(
        settings.buffer_points,
        settings.timing.batch_points,
    ));
    let origin = Origin {
        cluster: shared.cluster.clone(),
        node: shared.node.clone(),
    };
    if !shared.telemetry.attach_sink(origin, facts, buffer.clone()) {
        tracing::warn!("a metrics sink is already running; not starting another");
        return None;
    }
    tracing::info!(
        url = %settings.url,
        org = %settings.org,
        bucket = %settings.bucket,
        credentials = settings.has_credentials(),
        buffer_points = settings.buffer_points,
        flush_interval = ?settings.timing.flush_interval,
        "exporting metrics to InfluxDB"
    );
    Some(spawn_writer(buffer, writer, settings.timing, cancel))
}

/// Waits for a sink started by [`start_sink`] to finish its last flush (its token must
/// have been cancelled), at most a little longer than its own deadline.
pub async fn finish_sink(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        let deadline = SHUTDOWN_FLUSH_DEADLINE + DEFAULT_WRITE_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(deadline, task).await.is_err() {
            tracing::warn!(?deadline, "the metrics sink did not stop in time");
        }
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mape::{Action, WindowSettings};

    #[test]
    fn counters_move_without_a_sink_and_points_flow_with_one() {
        let telemetry = Telemetry::new();
        let decision = Decision {
            action: Action::None,
            weights: vec![],
            draw: None,
            reason: String::new(),
            dry_run: false,
            at: Millis(1),
        };
        telemetry.decided(&decision);
        telemetry.acted("scale-out", "web", "failed: no image", Millis(2));
        assert_eq!(telemetry.metrics.decisions("none"), 1);
        assert_eq!(telemetry.metrics.actions("scale-out", "failed"), 1);
        assert_eq!(telemetry.sink_stats(), BufferStats::default());

        let buffer = Arc::new(PointBuffer::new(100, 100));
        let origin = Origin {
            cluster: "c".into(),
            node: "n".into(),
        };
        assert!(telemetry.attach_sink(origin.clone(), NodeFacts::default(), buffer.clone()));
        assert!(!telemetry.attach_sink(origin, NodeFacts::default(), buffer.clone()));
        telemetry.decided(&decision);
        telemetry.acted("scale-in", "web", "ok", Millis(3));
        let mut knowledge =
            Knowledge::new(WindowSettings::for_loop_interval(Duration::from_secs(5)));
        telemetry.observe(&mut knowledge, Millis(4));
        let names: Vec<&str> = buffer.take(100).iter().map(|p| p.measurement).collect();
        assert_eq!(
            names,
            vec!["gru_decision", "gru_action", "gru_node", "gru_agent"]
        );
    }

    #[test]
    fn the_page_declares_every_family_the_issue_lists() {
        let text = Telemetry::new().render();
        for family in [
            "gru_loop_duration_seconds",
            "gru_decisions_total",
            "gru_actions_total",
            "gru_gossip_rounds_total",
            "gru_gossip_rejected_total",
            "gru_etcd_errors_total",
            "gru_docker_errors_total",
            "gru_sink_buffer_points",
            "gru_sink_dropped_points_total",
            "gru_sink_written_points_total",
            "process_resident_memory_bytes",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing:\n{text}"
            );
        }
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        let rss = resident_memory_bytes().expect("/proc/self/status has VmRSS");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
