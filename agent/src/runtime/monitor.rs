//! Per-container monitor tasks: they turn the engine's stats and log streams into samples
//! of the agent's metric windows. Each task ends when its container stops or when the loop
//! aborts it; none of them can block the loop (the streams are bounded channels).

use std::sync::Arc;

use tokio::task::JoinHandle;

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
        }
    })
}

/// Feeds user metrics from `gru:<service>:<metric>:<value>:<unit>` log lines of one
/// container into the knowledge. Lines naming another service are ignored: a container
/// reports for itself.
pub fn follow_logs(engine: Engine, shared: Arc<Shared>, info: InstanceInfo) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut follower = match engine.follow_logs(&info.id).await {
            Ok(follower) => follower,
            Err(err) => {
                tracing::debug!(id = %info.id, error = %err, "cannot follow logs");
                return;
            }
        };
        while let Some(line) = follower.lines.recv().await {
            let Ok(metric) = metrics_line::parse(&line) else {
                continue;
            };
            if metric.service != info.service {
                continue;
            }
            let at = now();
            let _ = shared.knowledge().metrics.record(
                &info.service,
                &info.instance,
                &metric.metric,
                at,
                metric.value,
            );
        }
    })
}
