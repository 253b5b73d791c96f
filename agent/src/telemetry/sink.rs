//! The InfluxDB sink: a writer task that takes batches from the [`PointBuffer`] and writes
//! them through the influxdb2 crate, retrying with capped backoff.
//!
//! ```text
//!   agent ── push (never waits) ──► PointBuffer (bounded, oldest dropped) ──► writer task
//!                                                                 every flush interval, or
//!                                                                 as soon as a batch is full
//!   writer: take a batch ─► write (timeout) ─┬─ ok ─────────► count written, next batch
//!                                            ├─ refused ────► drop the batch, count it
//!                                            └─ failed ─────► put it back, wait (backoff
//!                                                             doubling to its cap), retry
//! ```
//!
//! The server side is one small trait, [`PointWriter`], so the retry logic is tested with a
//! fake under paused time and the real adapter ([`InfluxWriter`]) against a real server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::config::{MetricConfig, MetricService};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::buffer::PointBuffer;
use super::point::Point;

/// How often buffered points are written when fewer than a batch are waiting.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Points per write request.
pub const DEFAULT_BATCH_POINTS: usize = 1_000;
/// Points kept while the server cannot be reached (about 4 MB at most); beyond, the
/// oldest are dropped.
pub const DEFAULT_BUFFER_POINTS: usize = 10_000;
/// Deadline of one write request.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait after a failed write; it doubles up to [`DEFAULT_BACKOFF_MAX`].
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(15);
/// At shutdown the writer tries to write what is left for this long, then gives up.
pub const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// When and how much the writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterTiming {
    pub flush_interval: Duration,
    pub batch_points: usize,
    pub write_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for WriterTiming {
    fn default() -> Self {
        WriterTiming {
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            batch_points: DEFAULT_BATCH_POINTS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// Where the sink writes, validated from `Metric.Configuration`.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkSettings {
    pub url: String,
    /// Empty when not configured (InfluxDB 1.8's compatibility API ignores it).
    pub org: String,
    pub bucket: String,
    /// `Token`, or Gru's `Username:Password` (InfluxDB 1.8's form of a v2 token).
    credentials: String,
    pub buffer_points: usize,
    pub timing: WriterTiming,
}

/// Written by hand so that a token or password is never logged.
impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSettings")
            .field("url", &self.url)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field(
                "credentials",
                &(!self.credentials.is_empty()).then_some("<redacted>"),
            )
            .field("buffer_points", &self.buffer_points)
            .field("timing", &self.timing)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SinkConfigError {
    #[error("Metric.Configuration.Url is required when MetricService is \"influxdb\"")]
    MissingUrl,
    #[error("Metric.Configuration.Url {url:?} is not an http or https URL with a host")]
    BadUrl { url: String },
    #[error(
        "Metric.Configuration.Bucket (or Gru's DbName) is required when MetricService is \"influxdb\""
    )]
    MissingBucket,
    #[error("cannot build the InfluxDB client: {0}")]
    Client(String),
}

impl SinkSettings {
    /// The sink's settings from the agent configuration; `None` when metrics are not
    /// exported (`MetricService` is `""`).
    pub fn from_config(config: &MetricConfig) -> Result<Option<SinkSettings>, SinkConfigError> {
        if config.metric_service != MetricService::InfluxDb {
            return Ok(None);
        }
        let c = &config.configuration;
        let url = c.url.clone().filter(|u| !u.is_empty());
        let url = url.ok_or(SinkConfigError::MissingUrl)?;
        let bucket = c.bucket().ok_or(SinkConfigError::MissingBucket)?;
        let credentials = match (&c.token, &c.username) {
            (Some(token), _) if !token.is_empty() => token.clone(),
            (_, Some(user)) if !user.is_empty() => {
                format!("{user}:{}", c.password.as_deref().unwrap_or_default())
            }
            _ => String::new(),
        };
        SinkSettings::new(
            &url,
            c.org.as_deref().unwrap_or_default(),
            bucket,
            &credentials,
        )
        .map(Some)
    }

    /// Settings with the default buffer and timing; the URL is checked here so that the
    /// client, which panics on a bad URL, is never given one.
    pub fn new(
        url: &str,
        org: &str,
        bucket: &str,
        credentials: &str,
    ) -> Result<SinkSettings, SinkConfigError> {
        let parsed = url::Url::parse(url).map_err(|_| SinkConfigError::BadUrl {
            url: url.to_owned(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(SinkConfigError::BadUrl {
                url: url.to_owned(),
            });
        }
        if bucket.is_empty() {
            return Err(SinkConfigError::MissingBucket);
        }
        Ok(SinkSettings {
            url: url.to_owned(),
            org: org.to_owned(),
            bucket: bucket.to_owned(),
            credentials: credentials.to_owned(),
            buffer_points: DEFAULT_BUFFER_POINTS,
            timing: WriterTiming::default(),
        })
    }

    pub fn has_credentials(&self) -> bool {
        !self.credentials.is_empty()
    }
}

/// Why a batch was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Worth retrying: the server is down, slow, overloaded or refuses our credentials
    /// (which an operator may fix).
    Transient(String),
    /// The server refused the points themselves: retrying would fail the same way.
    Rejected(String),
}

/// Where batches go: the one I/O port of the sink.
pub trait PointWriter: Send + Sync + 'static {
    fn write(&self, batch: &[Point]) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// The real adapter: InfluxDB 2's `/api/v2/write` through the influxdb2 crate.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    client: influxdb2::Client,
    bucket: String,
}

impl InfluxWriter {
    pub fn new(settings: &SinkSettings) -> Result<InfluxWriter, SinkConfigError> {
        let client = influxdb2::ClientBuilder::new(
            settings.url.as_str(),
            settings.org.as_str(),
            settings.credentials.as_str(),
        )
        .build()
        .map_err(|e| SinkConfigError::Client(e.to_string()))?;
        Ok(InfluxWriter {
            client,
            bucket: settings.bucket.clone(),
        })
    }
}

impl PointWriter for InfluxWriter {
    async fn write(&self, batch: &[Point]) -> Result<(), WriteError> {
        let points: Vec<_> = batch.iter().filter_map(Point::to_data_point).collect();
        if points.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .write_with_precision(
                &self.bucket,
                tokio_stream::iter(points),
                influxdb2::api::write::TimestampPrecision::Nanoseconds,
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(influxdb2::RequestError::Http { status, text }) => {
                let why = format!("HTTP {status}: {}", text.trim());
                if matches!(status.as_u16(), 400 | 413 | 422) {
                    Err(WriteError::Rejected(why))
                } else {
                    Err(WriteError::Transient(why))
                }
            }
            Err(err) => Err(WriteError::Transient(err.to_string())),
        }
    }
}

/// Starts the writer task: it runs until `cancel` fires, then tries for
/// [`SHUTDOWN_FLUSH_DEADLINE`] to write what is left.
pub fn spawn_writer<W: PointWriter>(
    buffer: Arc<PointBuffer>,
    writer: W,
    timing: WriterTiming,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(
        run_writer(buffer, writer, timing, cancel).instrument(tracing::info_span!("metrics_sink")),
    )
}

async fn write_with_deadline<W: PointWriter>(
    writer: &W,
    batch: &[Point],
    deadline: Duration,
) -> Result<(), WriteError> {
    match tokio::time::timeout(deadline, writer.write(batch)).await {
        Ok(result) => result,
        Err(_) => Err(WriteError::Transient(format!(
            "no answer within {deadline:?}"
        ))),
    }
}

async fn run_writer<W: PointWriter>(
    buffer: Arc<PointBuffer>,
    writer: W,
    timing: WriterTiming,
    cancel: CancellationToken,
) {
    let mut backoff = timing.backoff_initial;
    // Failing since this many attempts; the first failure and the recovery are logged,
    // the attempts in between only at debug level.
    let mut failures = 0u64;
    'run: loop {
        tokio::select! {
            () = cancel.cancelled() => break 'run,
            () = tokio::time::sleep(timing.flush_interval) => {}
            () = buffer.ready.notified() => {}
        }
        loop {
            let batch = buffer.take(timing.batch_points);
            if batch.is_empty() {
                break;
            }
            match write_with_deadline(&writer, &batch, timing.write_timeout).await {
                Ok(()) => {
                    buffer.written(batch.len());
                    if failures > 0 {
                        tracing::info!(
                            failed_attempts = failures,
                            dropped_points = buffer.stats().dropped(),
                            "metrics written again"
                        );
                    }
                    failures = 0;
                    backoff = timing.backoff_initial;
                }
                Err(WriteError::Rejected(why)) => {
                    tracing::warn!(points = batch.len(), %why, "the server refused a batch of metrics; dropped");
                    buffer.rejected(batch.len());
                }
                Err(WriteError::Transient(why)) => {
                    buffer.requeue(batch);
                    if failures == 0 {
                        tracing::warn!(%why, retry_in = ?backoff, "cannot write metrics; keeping them (oldest dropped when the buffer is full) and retrying");
                    } else {
                        tracing::debug!(%why, retry_in = ?backoff, "metrics write failed again");
                    }
                    failures += 1;
                    tokio::select! {
                        () = cancel.cancelled() => break 'run,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(timing.backoff_max);
                }
            }
        }
    }
    let flushed = tokio::time::timeout(SHUTDOWN_FLUSH_DEADLINE, async {
        loop {
            let batch = buffer.take(timing.batch_points);
            if batch.is_empty() {
                return;
            }
            match write_with_deadline(&writer, &batch, timing.write_timeout).await {
                Ok(()) => buffer.written(batch.len()),
                Err(_) => {
                    buffer.requeue(batch);
                    return;
                }
            }
        }
    })
    .await;
    let left = buffer.stats().buffered;
    if flushed.is_err() || left > 0 {
        tracing::warn!(
            points = left,
            "metrics not written at shutdown (server unreachable or too slow)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::mape::Millis;
    use common::config::MetricConfiguration;

    /// A server that fails while `down` is set and records what it accepted.
    #[derive(Debug, Default)]
    struct FakeServer {
        down: std::sync::atomic::AtomicBool,
        refuse: std::sync::atomic::AtomicBool,
        accepted: Mutex<Vec<i64>>,
        attempts: Mutex<Vec<tokio::time::Instant>>,
    }

    impl PointWriter for Arc<FakeServer> {
        async fn write(&self, batch: &[Point]) -> Result<(), WriteError> {
            self.attempts
                .lock()
                .expect("lock")
                .push(tokio::time::Instant::now());
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(WriteError::Transient("connection refused".into()));
            }
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(WriteError::Rejected("HTTP 400".into()));
            }
            self.accepted
                .lock()
                .expect("lock")
                .extend(batch.iter().map(|p| p.timestamp_ns / 1_000_000));
            Ok(())
        }
    }

    fn timing() -> WriterTiming {
        WriterTiming {
            flush_interval: Duration::from_secs(1),
            batch_points: 10,
            write_timeout: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        }
    }

    fn point(i: u64) -> Point {
        Point::new("gru_test", Millis(i * 1000)).integer("i", i as i64)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn points_are_written_in_batches_on_the_interval() {
        let server = Arc::new(FakeServer::default());
        let buffer = Arc::new(PointBuffer::new(100, 10));
        let cancel = CancellationToken::new();
        let task = spawn_writer(buffer.clone(), server.clone(), timing(), cancel.clone());
        buffer.extend((0..25).map(point));
        settle().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        settle().await;
        assert_eq!(server.accepted.lock().expect("lock").len(), 25);
        assert_eq!(
            server.attempts.lock().expect("lock").len(),
            3,
            "batches of 10"
        );
        assert_eq!(buffer.stats().written, 25);
        assert_eq!(buffer.stats().buffered, 0);
        cancel.cancel();
        task.await.expect("the writer ends");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_keeps_the_bound_backs_off_to_its_cap_and_recovers() {
        let server = Arc::new(FakeServer::default());
        server.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let buffer = Arc::new(PointBuffer::new(50, 10));
        let cancel = CancellationToken::new();
        let task = spawn_writer(buffer.clone(), server.clone(), timing(), cancel.clone());
        for i in 0..120 {
            buffer.push(point(i));
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(buffer.stats().buffered <= 50 + 10, "bound exceeded");
        }
        let stats = buffer.stats();
        assert!(stats.dropped_overflow >= 60, "{stats:?}");
        // Waits between attempts: 1, 2, 4, 8, 8, ... seconds (the first attempt comes at
        // the first flush interval).
        let attempts = server.attempts.lock().expect("lock").clone();
        let gaps: Vec<u64> = attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect();
        assert_eq!(&gaps[..5], &[1, 2, 4, 8, 8], "{gaps:?}");

        server
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        buffer.push(point(1000));
        tokio::time::sleep(Duration::from_secs(9)).await;
        settle().await;
        let accepted = server.accepted.lock().expect("lock").clone();
        assert_eq!(
            accepted.last(),
            Some(&1_000_000),
            "the newest point is written"
        );
        assert_eq!(buffer.stats().buffered, 0);
        assert_eq!(
            buffer.stats().written + buffer.stats().dropped(),
            121,
            "every point is either written or counted as dropped"
        );
        cancel.cancel();
        task.await.expect("the writer ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_batch_is_dropped_not_retried() {
        let server = Arc::new(FakeServer::default());
        server
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let buffer = Arc::new(PointBuffer::new(100, 10));
        let cancel = CancellationToken::new();
        let task = spawn_writer(buffer.clone(), server.clone(), timing(), cancel.clone());
        buffer.extend((0..5).map(point));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(buffer.stats().dropped_rejected, 5);
        assert_eq!(server.attempts.lock().expect("lock").len(), 1);
        cancel.cancel();
        task.await.expect("the writer ends");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_writes_what_is_left() {
        let server = Arc::new(FakeServer::default());
        let buffer = Arc::new(PointBuffer::new(100, 1000));
        let cancel = CancellationToken::new();
        let task = spawn_writer(buffer.clone(), server.clone(), timing(), cancel.clone());
        settle().await;
        buffer.extend((0..3).map(point));
        cancel.cancel();
        task.await.expect("the writer ends");
        assert_eq!(server.accepted.lock().expect("lock").len(), 3);
    }

    fn metric(configuration: MetricConfiguration) -> MetricConfig {
        MetricConfig {
            metric_service: MetricService::InfluxDb,
            configuration,
        }
    }

    #[test]
    fn settings_come_from_the_v2_fields_or_grus_v1_fields() {
        let v2 = SinkSettings::from_config(&metric(MetricConfiguration {
            url: Some("http://influx:8086".into()),
            org: Some("acme".into()),
            bucket: Some("gru".into()),
            token: Some("t0k3n".into()),
            ..MetricConfiguration::default()
        }))
        .expect("valid")
        .expect("enabled");
        assert_eq!(
            (v2.url.as_str(), v2.org.as_str(), v2.bucket.as_str()),
            ("http://influx:8086", "acme", "gru")
        );
        assert_eq!(v2.credentials, "t0k3n");
        assert!(
            !format!("{v2:?}").contains("t0k3n"),
            "the token is redacted"
        );

        let v1 = SinkSettings::from_config(&metric(MetricConfiguration {
            url: Some("http://influx:8086".into()),
            db_name: Some("grudb".into()),
            username: Some("admin".into()),
            password: Some("pw".into()),
            ..MetricConfiguration::default()
        }))
        .expect("valid")
        .expect("enabled");
        assert_eq!((v1.bucket.as_str(), v1.org.as_str()), ("grudb", ""));
        assert_eq!(v1.credentials, "admin:pw");
        assert!(!format!("{v1:?}").contains("pw\""));

        let off = SinkSettings::from_config(&MetricConfig::default()).expect("valid");
        assert_eq!(off, None);
    }

    #[test]
    fn bad_settings_are_refused_with_the_field_named() {
        let cases = [
            (None, Some("b"), SinkConfigError::MissingUrl),
            (
                Some("influx:8086"),
                Some("b"),
                SinkConfigError::BadUrl {
                    url: "influx:8086".into(),
                },
            ),
            (
                Some("ftp://influx"),
                Some("b"),
                SinkConfigError::BadUrl {
                    url: "ftp://influx".into(),
                },
            ),
            (
                Some("http://influx:8086"),
                None,
                SinkConfigError::MissingBucket,
            ),
        ];
        for (url, bucket, expected) in cases {
            let config = metric(MetricConfiguration {
                url: url.map(str::to_owned),
                bucket: bucket.map(str::to_owned),
                ..MetricConfiguration::default()
            });
            assert_eq!(SinkSettings::from_config(&config), Err(expected));
        }
    }
}
