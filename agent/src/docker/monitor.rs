//! The engine's two streams, each read by a task that feeds a bounded channel: lifecycle
//! events of a cluster's containers, and resource samples of one container; and one
//! reading of a container's resource use at a time, for a caller that polls many
//! containers over few connections ([`Engine::stats_once`]).
//!
//! A task ends when its receiver is dropped (it watches the channel's closing even while
//! the engine is silent), so a caller stops a stream by dropping the receiver.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{EventsOptionsBuilder, StatsOptionsBuilder};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::events::{ContainerEvent, Resume, WATCHED_ACTIONS, event_from_message, since_parameter};
use super::labels::LABEL_CLUSTER;
use super::stats::{CpuAllowance, StatsSample, sample_from_response};
use super::stream::StreamExt;
use super::{DockerError, Engine};

/// Events buffered for a slow reader. When full, the task waits for room: nothing is
/// dropped by gru, the engine's stream backs up behind it (and the engine may drop events
/// for a subscriber that stays stuck), so a reader that fell far behind should reconcile
/// with [`Engine::list_managed`].
pub const EVENTS_CHANNEL_CAPACITY: usize = 256;

/// Samples buffered for a slow reader. When full, the newest sample is dropped: each sample
/// carries its own previous reading, so the next one received is complete on its own, and
/// a slow reader never stalls the engine's stream.
pub const STATS_CHANNEL_CAPACITY: usize = 8;

/// First wait before resubscribing to events after the stream failed; doubled up to
/// [`EVENTS_RETRY_MAX`].
const EVENTS_RETRY_INITIAL: Duration = Duration::from_millis(200);
const EVENTS_RETRY_MAX: Duration = Duration::from_secs(5);

/// The engine sends a stats sample about every second; a gap longer than the call timeout
/// plus this interval means the stream is stuck.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    /// Start, die, destroy and OOM events of the containers labelled with `cluster` (any
    /// node), from the moment of this call. The engine is pinged first, so an unreachable
    /// engine is an error here; later failures of the stream are retried with backoff,
    /// resuming from the last event received (the engine replays what it still holds).
    pub async fn events(
        &self,
        cluster: &str,
    ) -> Result<mpsc::Receiver<ContainerEvent>, DockerError> {
        self.call("ping", &self.url, self.docker.ping()).await?;
        // Events are asked for from now, by this host's clock: events the engine records
        // after this call are delivered even if the subscription reaches it a little later.
        let subscribed_at = now_nanos();
        let (sender, receiver) = mpsc::channel(EVENTS_CHANNEL_CAPACITY);
        let engine = self.clone();
        let cluster = cluster.to_owned();
        let span = tracing::info_span!("docker_events", cluster = %cluster);
        tokio::spawn(
            async move { engine.feed_events(&cluster, subscribed_at, sender).await }
                .instrument(span),
        );
        Ok(receiver)
    }

    async fn feed_events(
        &self,
        cluster: &str,
        subscribed_at: i64,
        sender: mpsc::Sender<ContainerEvent>,
    ) {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("label", vec![format!("{LABEL_CLUSTER}={cluster}")]),
            (
                "event",
                WATCHED_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            ),
        ]);
        let mut resume = Resume::default();
        let mut backoff = EVENTS_RETRY_INITIAL;
        loop {
            let since = since_parameter(resume.since(subscribed_at));
            let options = EventsOptionsBuilder::new()
                .since(&since)
                .filters(&filters)
                .build();
            let mut stream = self.docker.events(Some(options));
            let failure = loop {
                let item = tokio::select! {
                    () = sender.closed() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(message)) => {
                        backoff = EVENTS_RETRY_INITIAL;
                        let Some(event) = event_from_message(&message) else {
                            continue;
                        };
                        if resume.admit(&event) && sender.send(event).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(error)) => break error.to_string(),
                    None => break "the engine ended the stream".to_owned(),
                }
            };
            tracing::warn!(reason = %failure, retry_in = ?backoff, "docker events stream lost; resubscribing");
            tokio::select! {
                () = sender.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(EVENTS_RETRY_MAX);
        }
    }

    /// Resource samples of container `id`, about one a second, until the container is not
    /// running (the receiver then yields `None`) or the receiver is dropped. The container is inspected first (for the cores it may
    /// use, see [`CpuAllowance`]); an error then is returned here. A stream that fails or
    /// stays silent longer than the call timeout sends one `Err` and ends.
    ///
    /// Each stream holds a connection to the engine and a task for as long as it runs: to
    /// follow many containers, [`Engine::stats_once`] on a few connections costs less.
    pub async fn stats(
        &self,
        id: &str,
    ) -> Result<mpsc::Receiver<Result<StatsSample, DockerError>>, DockerError> {
        let (id, allowance) = self.cpu_allowance(id).await?;
        let (sender, receiver) = mpsc::channel(STATS_CHANNEL_CAPACITY);
        let engine = self.clone();
        let span = tracing::debug_span!("docker_stats", container = %id);
        tokio::spawn(
            async move { engine.feed_stats(&id, allowance, sender).await }.instrument(span),
        );
        Ok(receiver)
    }

    /// Container `id`'s full id and the cores it may use (from one inspect).
    pub async fn cpu_allowance(&self, id: &str) -> Result<(String, CpuAllowance), DockerError> {
        let inspected = self
            .call("inspect", id, self.docker.inspect_container(id, None))
            .await?;
        let host = inspected.host_config.unwrap_or_default();
        let allowance = CpuAllowance {
            cpuset_count: host
                .cpuset_cpus
                .filter(|set| !set.is_empty())
                .and_then(|set| set.parse::<common::config::CpuSet>().ok())
                .and_then(|set| u32::try_from(set.cpus().len()).ok()),
            nano_cpus: host
                .nano_cpus
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0),
        };
        Ok((inspected.id.unwrap_or_else(|| id.to_owned()), allowance))
    }

    /// One reading of container `id`'s resource use, at once (the engine's `one-shot`: it
    /// does not wait a second for a second reading). Its CPU counters have no previous
    /// reading: the caller sets [`CpuReading::previous`](super::stats::CpuReading) from its
    /// own last one. `None` when the container is not running. Bounded by the call timeout;
    /// the connection goes back to the client's pool afterwards.
    pub async fn stats_once(
        &self,
        id: &str,
        allowance: CpuAllowance,
    ) -> Result<Option<StatsSample>, DockerError> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = self.docker.stats(id, Some(options));
        let response = self
            .call("stats", id, async move { stream.next().await.transpose() })
            .await?;
        Ok(response.and_then(|response| {
            let mut sample = sample_from_response(id, &response, allowance)?;
            // A one-shot reading's previous counters are zeros, or absent.
            sample.cpu.previous = None;
            Some(sample)
        }))
    }

    async fn feed_stats(
        &self,
        id: &str,
        allowance: CpuAllowance,
        sender: mpsc::Sender<Result<StatsSample, DockerError>>,
    ) {
        let options = StatsOptionsBuilder::new().stream(true).build();
        let mut stream = self.docker.stats(id, Some(options));
        let limit = self.timeout + STATS_INTERVAL;
        let mut dropped = 0_u64;
        loop {
            let item = tokio::select! {
                () = sender.closed() => return,
                item = tokio::time::timeout(limit, stream.next()) => item,
            };
            let failure = match item {
                Ok(Some(Ok(response))) => {
                    // A stopped container's samples are all zeros, and the engine keeps
                    // sending them: the first one ends the stream.
                    let Some(sample) = sample_from_response(id, &response, allowance) else {
                        return;
                    };
                    match sender.try_send(Ok(sample)) {
                        Ok(()) => continue,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped += 1;
                            tracing::debug!(dropped, "stats reader is slow; sample dropped");
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Ok(None) => return,
                Ok(Some(Err(source))) => DockerError::Call {
                    call: "stats",
                    target: id.to_owned(),
                    source,
                },
                Err(_) => DockerError::Timeout {
                    call: "stats",
                    target: id.to_owned(),
                    after: limit,
                },
            };
            // The last word: wait for room, unless the reader is gone.
            let _ = sender.send(Err(failure)).await;
            return;
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
