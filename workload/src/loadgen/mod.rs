//! `gru-loadgen`: open-loop HTTP load.
//!
//! Open loop means requests are sent when the [`Schedule`] says, whether or not earlier
//! ones were answered, as independent users would; a closed loop (send, wait, send) slows
//! down with the server and hides overload. What must give is the in-flight bound: a
//! request due while `max_in_flight` are awaiting answers is not sent but counted as
//! dropped, so memory stays bounded however slow the target.
//!
//! Output (to `out`, stdout in the binary): one [`Tick`] line per interval (a second by
//! default) and, once the schedule is over and every request has been answered or timed
//! out, one [`Summary`] line. With a samples file, one line per request too ([`samples`]).

pub mod samples;
pub mod schedule;
pub mod settings;
pub mod tally;
pub mod targets;

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use samples::{Outcome, SampleLog};
pub use schedule::Schedule;
pub use settings::{LoadgenArgs, LoadgenSettings};
pub use tally::{Counts, Percentiles, Summary, Tally, Tick};
use targets::{RoundRobin, Targets};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What the sender and the request tasks share.
#[derive(Debug)]
struct Shared {
    client: HttpClient,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    tally: Mutex<Tally>,
    /// Whether the first failure was logged already: one line says what goes wrong
    /// (connection refused, timeout, 503) without one line per failed request.
    failure_logged: AtomicBool,
    samples: Option<SampleLog>,
}

impl Shared {
    /// A std mutex: held for a counter update or a swap, never across an `.await`.
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sample(&self, offset: Duration, outcome: Outcome) {
        if let Some(samples) = &self.samples {
            samples.record(offset, outcome);
        }
    }
}

/// Runs `settings.schedule` (or until `shutdown` resolves), waits for the requests still
/// in flight, prints the summary and returns it.
pub async fn run(
    settings: LoadgenSettings,
    mut out: impl Write,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let max_in_flight = settings.max_in_flight;
    let samples = settings.samples_file.as_deref().and_then(|path| {
        SampleLog::create(path)
            .inspect_err(|err| {
                tracing::warn!("cannot create the samples file {}: {err}", path.display());
            })
            .ok()
    });
    let shared = Arc::new(Shared {
        client: Client::builder(TokioExecutor::new()).build_http(),
        timeout: settings.timeout,
        in_flight: Arc::new(Semaphore::new(max_in_flight)),
        tally: Mutex::default(),
        failure_logged: AtomicBool::new(false),
        samples,
    });

    let (targets_tx, targets_rx) = watch::channel(Targets::from(settings.targets.clone()));
    let stop_watching = CancellationToken::new();
    let watcher = settings.targets_file.clone().map(|file| {
        tokio::spawn(
            targets::watch_targets_file(
                settings.targets.clone(),
                file,
                targets_tx,
                stop_watching.clone(),
            )
            .instrument(tracing::info_span!("targets_file")),
        )
    });

    let start = Instant::now();
    let stop_sending = CancellationToken::new();
    let sender = tokio::spawn(
        send_on_schedule(
            Arc::clone(&shared),
            settings.schedule.clone(),
            targets_rx,
            start,
            stop_sending.clone(),
        )
        .instrument(tracing::info_span!("sender")),
    );
    let in_flight = Arc::clone(&shared.in_flight);
    let all_answered = async move {
        if let Err(err) = sender.await {
            tracing::error!("the sender failed: {err}");
        }
        // Every permit back: every request answered or timed out.
        let _all = in_flight
            .acquire_many(u32::try_from(max_in_flight).unwrap_or(u32::MAX))
            .await;
    };
    tokio::pin!(all_answered, shutdown);

    let interval = settings.interval;
    let mut ticks = tokio::time::interval_at(start + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut t_secs = 0;
    loop {
        tokio::select! {
            at = ticks.tick() => {
                t_secs = (at - start).as_secs();
                let tick = close_interval(&shared, &settings.schedule, t_secs, interval);
                emit(&mut out, &tick);
            }
            () = &mut shutdown, if !stop_sending.is_cancelled() => {
                tracing::info!("stopping early: no more requests; waiting for those in flight");
                stop_sending.cancel();
            }
            () = &mut all_answered => break,
        }
    }
    if !shared.tally().window_is_empty() {
        // The last, partial interval: what the ticks have not covered yet (the schedule's
        // end can come just before its last tick) and answers that came after it.
        let end_secs = (t_secs + 1).max(start.elapsed().as_secs_f64().ceil() as u64);
        let partial = Duration::from_secs(end_secs - t_secs);
        let tick = close_interval(&shared, &settings.schedule, end_secs, partial);
        emit(&mut out, &tick);
    }
    let summary = shared.tally().summary();
    if let Some(samples) = &shared.samples {
        samples.flush();
    }
    emit(&mut out, &summary);

    stop_watching.cancel();
    if let Some(watcher) = watcher
        && let Err(err) = watcher.await
    {
        tracing::warn!("the targets file watcher failed: {err}");
    }
    summary
}

/// The tick for the `interval` that ends at `t_secs`.
fn close_interval(shared: &Shared, schedule: &Schedule, t_secs: u64, interval: Duration) -> Tick {
    let (counts, latency) = shared.tally().take_window();
    let end = Duration::from_secs(t_secs);
    let rate = schedule.mean_rate(end.saturating_sub(interval), end);
    Tick {
        t_secs,
        rate,
        counts,
        latency,
    }
}

fn emit(out: &mut impl Write, line: &impl std::fmt::Display) {
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!("cannot write to stdout: {err}");
    }
}

/// Sends each request when it is due, until the schedule ends or `stop` fires.
async fn send_on_schedule(
    shared: Arc<Shared>,
    schedule: Schedule,
    targets: watch::Receiver<Targets>,
    start: Instant,
    stop: CancellationToken,
) {
    let mut round_robin = RoundRobin::default();
    for offset in schedule.send_offsets() {
        tokio::select! {
            () = tokio::time::sleep_until(start + offset) => {}
            () = stop.cancelled() => return,
        }
        let Some(uri) = round_robin.pick(&targets.borrow()) else {
            shared.tally().dropped();
            shared.sample(offset, Outcome::Dropped);
            continue;
        };
        let Ok(permit) = Arc::clone(&shared.in_flight).try_acquire_owned() else {
            shared.tally().dropped();
            shared.sample(offset, Outcome::Dropped);
            continue;
        };
        shared.tally().sent();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let outcome = request(&shared, uri).await;
            match outcome {
                Ok(latency) => {
                    let latency_ms = latency.as_secs_f64() * 1000.0;
                    shared.tally().ok(latency_ms);
                    shared.sample(offset, Outcome::Ok { latency_ms });
                }
                Err(why) => {
                    shared.tally().err();
                    shared.sample(offset, Outcome::Err);
                    if !shared.failure_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "first failed request: {why} (later failures are only counted)"
                        );
                    }
                }
            }
            // Only now: the summary is taken once every permit is back, and it must
            // include this request's outcome.
            drop(permit);
        });
    }
    // A schedule may end with a quiet phase (`0:5s`): it lasts all the same.
    tokio::select! {
        () = tokio::time::sleep_until(start + schedule.total()) => {}
        () = stop.cancelled() => {}
    }
}

/// One `GET`, body read to the end (so the connection can be reused), within the timeout.
/// The latency on success; on failure, a description of it.
async fn request(shared: &Shared, uri: Uri) -> Result<Duration, String> {
    let started = Instant::now();
    let target = uri.to_string();
    let request = Request::get(uri)
        .body(Empty::new())
        .map_err(|e| format!("{target}: {e}"))?;
    let exchange = async {
        let response = shared
            .client
            .request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    match tokio::time::timeout(shared.timeout, exchange).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(why)) => Err(format!("{target}: {why}")),
        Err(_) => Err(format!("{target}: no answer within {:?}", shared.timeout)),
    }
}

/// hyper-util's errors say little at the top ("client error (Connect)"): the cause says
/// what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
