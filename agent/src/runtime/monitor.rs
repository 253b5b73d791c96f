//! Per-container monitor tasks: they turn the engine's stats and log streams into samples
//! of the agent's metric windows. Each task ends when its container stops or when the loop
//! aborts it; none of them can block the loop (the streams are bounded channels).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::autonomic::now;
use super::state::{InstanceInfo, Shared};
use crate::docker::Engine;
use crate::metrics_line;

/// Base metric names, as the analytics and policies refer to them.
pub const CPU_METRIC: &str = "cpu_avg";
pub const MEM_METRIC: &str = "mem_avg";

/// Feeds `cpu_avg` and `mem_avg` samples of one container into the knowledge.
pub fn follow_stats(engine: Engine, shared: Arc<Shared>, info: InstanceInfo) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut samples = match engine.stats(&info.id).await {
            Ok(samples) => samples,
            Err(err) => {
                tracing::debug!(id = %info.id, error = %err, "cannot follow stats");
                return;
            }
        };
        while let Some(sample) = samples.recv().await {
            let Ok(sample) = sample else { break };
            let at = now();
            let mut knowledge = shared.knowledge();
            for (metric, value) in [
                (CPU_METRIC, sample.cpu_fraction()),
                (MEM_METRIC, sample.mem_fraction()),
            ] {
                if let Some(value) = value {
                    let _ =
                        knowledge
                            .metrics
                            .record(&info.service, &info.instance, metric, at, value);
                }
            }
            drop(knowledge);
            shared.fresh_metrics.notify_one();
        }
    })
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
        let mut follower = match engine.follow_logs(&info.id).await {
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
