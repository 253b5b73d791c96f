//! The monitor at run time: one task reads the stats of every running container of the
//! node in rounds ([`poll_stats`]), and one task per container follows its `gru:` log lines
//! ([`follow_logs`]); both feed the agent's metric windows. None of them can block the loop
//! (reads have deadlines, log lines go through a bounded channel), and each ends when the
//! loop aborts it (a log follower also when its container stops).
//!
//! Why stats are polled, not streamed: the engine's stats stream holds a connection, a
//! reader task and their buffers per container for as long as it runs (about 60 KiB each,
//! measured with 100 containers), and every sample woke the loop. One reading per container
//! per round over a few pooled connections gives the same samples at the same cadence; the
//! CPU fraction is taken between two consecutive readings, as the stream's was.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::autonomic::now;
use super::state::{InstanceInfo, Shared};
use super::usage::InstanceUsage;
use crate::docker::{CpuAllowance, DockerError, Engine, StatsSample};
use crate::metrics_line;

/// Base metric names, as the analytics and policies refer to them.
pub const CPU_METRIC: &str = "cpu_avg";
pub const MEM_METRIC: &str = "mem_avg";

/// How often every running container's stats are read: the engine's own stats cadence
/// (its stream sends a sample a second), which the metric windows are made for.
pub const STATS_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Stats reads in flight at once, so at most as many connections to the engine: a round of
/// 100 containers at a few milliseconds a read takes well under the interval.
pub const STATS_POLL_CONCURRENCY: usize = 4;

/// What the poller keeps of a container between rounds.
#[derive(Debug, Clone, Copy)]
struct Polled {
    allowance: CpuAllowance,
    /// The CPU counters of the last reading (container, system), for the next fraction.
    counters: Option<(u64, u64)>,
}

/// A round's reading of one container.
type Reading = (
    InstanceInfo,
    Result<(CpuAllowance, Option<StatsSample>), DockerError>,
);

/// Feeds `cpu_avg` and `mem_avg` of every running container of this node (the knowledge's
/// instances) into the knowledge, one round per [`STATS_POLL_INTERVAL`]: each container
/// read once ([`Engine::stats_once`]; inspected once first, for the cores it may use), at
/// most [`STATS_POLL_CONCURRENCY`] at a time. A container's first reading gives memory
/// only; CPU is the fraction used between two readings. A failed read is skipped (the next
/// round reads again); containers that stopped leave the instances at the next reconcile.
/// The loop is woken once per round that recorded something.
pub fn poll_stats(engine: Engine, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut polled: HashMap<String, Polled> = HashMap::new();
        let mut rounds = tokio::time::interval(STATS_POLL_INTERVAL);
        rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            rounds.tick().await;
            let running: Vec<InstanceInfo> =
                shared.knowledge().instances.values().cloned().collect();
            polled.retain(|id, _| running.iter().any(|info| info.id == *id));
            let readings = read_round(&engine, running, &polled).await;
            let mut recorded = false;
            let mut knowledge = shared.knowledge();
            knowledge.usage.retain(|id, _| polled.contains_key(id));
            for (info, reading) in readings {
                let (allowance, sample) = match reading {
                    Ok(read) => read,
                    Err(err) => {
                        tracing::debug!(id = %info.id, error = %err, "cannot read stats");
                        continue;
                    }
                };
                let Some(mut sample) = sample else {
                    continue;
                };
                let last = polled.insert(
                    info.id.clone(),
                    Polled {
                        allowance,
                        counters: Some((sample.cpu.container_ns, sample.cpu.system_ns)),
                    },
                );
                sample.cpu.previous = last.and_then(|last| last.counters);
                knowledge.usage.insert(
                    info.id.clone(),
                    InstanceUsage {
                        cpu_cores: sample.cpu_cores(),
                        memory_bytes: sample.memory_used(),
                    },
                );
                let at = now();
                for (metric, value) in [
                    (CPU_METRIC, sample.cpu_fraction()),
                    (MEM_METRIC, sample.mem_fraction()),
                ] {
                    if let Some(value) = value {
                        recorded |= knowledge
                            .metrics
                            .record(&info.service, &info.instance, metric, at, value)
                            .is_ok();
                    }
                }
            }
            drop(knowledge);
            if recorded {
                shared.fresh_metrics.notify_one();
            }
        }
    })
}

/// Reads every container of `running` once, at most [`STATS_POLL_CONCURRENCY`] at a time.
async fn read_round(
    engine: &Engine,
    running: Vec<InstanceInfo>,
    polled: &HashMap<String, Polled>,
) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(running.len());
    let mut reads = JoinSet::new();
    for info in running {
        if reads.len() >= STATS_POLL_CONCURRENCY
            && let Some(Ok(reading)) = reads.join_next().await
        {
            readings.push(reading);
        }
        let engine = engine.clone();
        let allowance = polled.get(&info.id).map(|p| p.allowance);
        reads.spawn(async move {
            let reading = read_once(&engine, &info.id, allowance).await;
            (info, reading)
        });
    }
    while let Some(done) = reads.join_next().await {
        if let Ok(reading) = done {
            readings.push(reading);
        }
    }
    readings
}

/// One reading of container `id`, inspecting it first when its allowance is not known.
async fn read_once(
    engine: &Engine,
    id: &str,
    allowance: Option<CpuAllowance>,
) -> Result<(CpuAllowance, Option<StatsSample>), DockerError> {
    let allowance = match allowance {
        Some(allowance) => allowance,
        None => engine.cpu_allowance(id).await?.1,
    };
    Ok((allowance, engine.stats_once(id, allowance).await?))
}

/// How often a container's malformed `gru:` lines are summarised in the agent's log: the
/// first is reported at once, then at most one line per interval says how many followed.
pub const MALFORMED_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Feeds user metrics from `gru:<service>:<metric>:<value>:<unit>` log lines of one
/// container into the knowledge. Lines naming another service are ignored: a container
/// reports for itself. Every line's fate is counted (`gru_log_lines_total`); malformed
/// lines are reported at a bounded rate ([`MALFORMED_REPORT_INTERVAL`]), never one log
/// line per bad line, so a container printing garbage cannot flood the agent's log.
pub fn follow_logs(engine: Engine, shared: Arc<Shared>, info: InstanceInfo) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Boxed, so that the task keeps only the reading's state once attached (the
        // inspection's would stay in it for as long as the container runs).
        let mut follower = match Box::pin(engine.follow_logs(&info.id)).await {
            Ok(follower) => follower,
            Err(err) => {
                tracing::debug!(id = %info.id, error = %err, "cannot follow logs");
                return;
            }
        };
        let counters = &shared.telemetry.metrics;
        let mut malformed = RateLimitedReport::new(MALFORMED_REPORT_INTERVAL);
        let mut dropped_counted = 0;
        while let Some(line) = follower.lines.recv().await {
            match metrics_line::parse(&line) {
                Ok(metric) if metric.service == info.service => {
                    counters.log_lines("recorded", 1);
                    let at = now();
                    let _ = shared.knowledge().metrics.record(
                        &info.service,
                        &info.instance,
                        &metric.metric,
                        at,
                        metric.value,
                    );
                    shared.fresh_metrics.notify_one();
                }
                Ok(_) => counters.log_lines("ignored", 1),
                Err(error) if error.is_rejection() => {
                    counters.log_lines("malformed", 1);
                    if let Some(count) = malformed.note(Instant::now()) {
                        tracing::warn!(
                            service = %info.service,
                            instance = %info.instance,
                            count,
                            latest = %error,
                            "malformed gru: metric lines in the container's output \
                             (count since the last report; reported at most once a minute)"
                        );
                    }
                }
                Err(_) => {}
            }
            let dropped = follower.dropped.load(Ordering::Relaxed);
            if dropped > dropped_counted {
                counters.log_lines("dropped", dropped - dropped_counted);
                dropped_counted = dropped;
            }
        }
    })
}

/// Reports a recurring event at most once per interval: the first occurrence at once, then
/// the next one after the interval, with how many happened since the last report.
#[derive(Debug)]
struct RateLimitedReport {
    interval: Duration,
    since_report: u64,
    last_report: Option<Instant>,
}

impl RateLimitedReport {
    fn new(interval: Duration) -> RateLimitedReport {
        RateLimitedReport {
            interval,
            since_report: 0,
            last_report: None,
        }
    }

    /// One more occurrence at `now`: `Some(count since the last report)` when it is time to
    /// report.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_report += 1;
        let due = self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= self.interval);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.since_report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recurring_event_is_reported_first_then_once_per_interval_with_its_count() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut report = RateLimitedReport::new(Duration::from_secs(60));
        assert_eq!(report.note(at(0)), Some(1), "the first at once");
        for ms in 1..1000 {
            assert_eq!(report.note(at(ms)), None);
        }
        assert_eq!(report.note(at(59_999)), None);
        assert_eq!(report.note(at(60_000)), Some(1001), "every one since");
        assert_eq!(report.note(at(60_001)), None);
        assert_eq!(report.note(at(200_000)), Some(2));
    }
}
