//! `gru-workload`: the HTTP service gru manages in tests and the demo.
//!
//! * `GET /` waits for a worker (bounded queue, else 503), holds it for the configured
//!   off-CPU wait (none by default), burns a fixed amount of CPU ([`BusyWork`]) and answers
//!   `{"service", "instance", "ms"}`, `ms` being its response time (queueing + wait + work).
//! * `GET /healthz` answers 200 at once, whatever the load: the work runs on blocking
//!   threads, never on the threads that serve connections.
//! * `GET /ready` answers 200 once the instance is ready, 503 before: it is not ready for
//!   the configured ready delay after it starts (none by default), nor while it is switched
//!   off by `POST /ready?value=false` (`?value=true` switches it on again), for tests of
//!   readiness checks. `/healthz` does not follow it.
//! * Every report interval with completions, one `gru:<service>:execution_time:<ms>:ms` line
//!   goes to `out` (stdout in the binary).
//! * With `--malformed-lines-per-sec N`, the binary also prints N malformed `gru:` lines a
//!   second to stdout ([`noise`]), for tests of the agent's log reader.
//!
//! Shutdown: when `shutdown` resolves the server goes on serving for the configured
//! shutdown delay (none by default), then the listener closes, every admitted request
//! (working or queued) is finished within [`DRAIN_DEADLINE`], the last partial window is
//! reported, and [`run`] returns.

pub mod admission;
pub mod busy_work;
pub mod noise;
pub mod report;
pub mod settings;

use std::future::{Future, IntoFuture};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use admission::Admission;
pub use busy_work::BusyWork;
pub use report::{ExecutionWindow, report_line};
pub use settings::{ServerArgs, ServerSettings};

/// How long admitted requests may take to finish after the shutdown signal. Docker waits
/// 10 s after `docker stop` before it kills; this leaves room to spare.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// What `GET /` answers.
#[derive(Debug, Serialize)]
struct WorkReply<'a> {
    service: &'a str,
    instance: &'a str,
    /// Response time as the server saw it (queueing + work), in milliseconds.
    ms: f64,
}

#[derive(Debug)]
struct App {
    service: String,
    instance: String,
    work: BusyWork,
    wait: Duration,
    admission: Admission,
    window: report::SharedWindow,
    ready: Readiness,
}

/// What `GET /ready` answers: ready once the delay after start has passed, unless switched
/// off.
#[derive(Debug)]
struct Readiness {
    ready_at: Instant,
    switched_on: AtomicBool,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        self.switched_on.load(Ordering::Relaxed) && Instant::now() >= self.ready_at
    }
}

/// `POST /ready?value=true|false`.
#[derive(Debug, serde::Deserialize)]
struct ReadySwitch {
    value: bool,
}

/// Serves on `listener` until `shutdown` resolves, then drains (see the module doc).
/// `settings.addr` is ignored: the caller bound the listener (tests bind port 0).
pub async fn run(
    listener: TcpListener,
    settings: ServerSettings,
    out: impl Write + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service_time = settings.service_time;
    let work = tokio::task::spawn_blocking(move || BusyWork::calibrate(service_time))
        .await
        .map_err(std::io::Error::other)?;
    let app = Arc::new(App {
        service: settings.service.clone(),
        instance: instance_name(),
        work,
        wait: settings.wait,
        admission: Admission::new(settings.concurrency, settings.queue),
        window: report::SharedWindow::default(),
        ready: Readiness {
            ready_at: Instant::now() + settings.ready_delay,
            switched_on: AtomicBool::new(true),
        },
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        service = %app.service,
        instance = %app.instance,
        service_time_ms = service_time.as_millis(),
        wait_ms = settings.wait.as_millis(),
        work_rounds = work.rounds(),
        concurrency = settings.concurrency,
        queue = settings.queue,
        ready_delay_ms = settings.ready_delay.as_millis(),
        "serving"
    );

    let stop_reporting = CancellationToken::new();
    let reporter = tokio::spawn(
        report::report_every(
            settings.report_interval,
            settings.service.clone(),
            Arc::clone(&app.window),
            out,
            stop_reporting.clone(),
        )
        .instrument(tracing::info_span!("reporter")),
    );

    let shutting_down = CancellationToken::new();
    let router = Router::new()
        .route("/", get(work_handler))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready).post(switch_ready))
        .with_state(app);
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutting_down.clone().cancelled_owned())
        .into_future();
    tokio::pin!(server);

    let served = tokio::select! {
        // The server only ends by itself on an error from the listener.
        result = &mut server => Some(result),
        () = shutdown => None,
    };
    let lame_duck = settings.shutdown_delay;
    let served = match served {
        None if !lame_duck.is_zero() => {
            // Clients learn that this instance is going from discovery, a little after it
            // was deregistered; until they do, new requests are still answered.
            tracing::info!(
                delay_ms = lame_duck.as_millis(),
                "shutdown signal: serving on for the shutdown delay"
            );
            tokio::time::timeout(lame_duck, &mut server).await.ok()
        }
        served => served,
    };
    let result = match served {
        Some(result) => result,
        None => {
            tracing::info!("shutting down: no new connections; finishing admitted requests");
            shutting_down.cancel();
            match tokio::time::timeout(DRAIN_DEADLINE, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "drain deadline of {DRAIN_DEADLINE:?} exceeded; stopping with requests unfinished"
                    );
                    Ok(())
                }
            }
        }
    };
    stop_reporting.cancel();
    if let Err(err) = reporter.await {
        tracing::warn!("the reporter failed: {err}");
    }
    result
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.ready.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Switches readiness on or off (the ready delay still applies), answering what
/// `GET /ready` answers now. A missing or bad `value` is a 400 (axum's rejection).
async fn switch_ready(State(app): State<Arc<App>>, Query(switch): Query<ReadySwitch>) -> Response {
    app.ready.switched_on.store(switch.value, Ordering::Relaxed);
    tracing::info!(ready = switch.value, "readiness switched");
    ready(State(app)).await
}

async fn work_handler(State(app): State<Arc<App>>) -> Response {
    let arrived = Instant::now();
    let Some(admitted) = app.admission.try_admit() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "queue full\n").into_response();
    };
    let working = admitted.start().await;
    if !app.wait.is_zero() {
        // The worker stays taken while it waits, as a thread blocked on a downstream call
        // would be; if the client goes away meanwhile, the handler is dropped and so is
        // the worker, which is right: nothing was computed yet.
        tokio::time::sleep(app.wait).await;
    }
    let work = app.work;
    let window = Arc::clone(&app.window);
    // The permits move into the blocking task: if the client goes away and this handler is
    // dropped, the worker stays taken until the work really ends, so concurrency holds.
    let done = tokio::task::spawn_blocking(move || {
        work.run();
        let response_time = arrived.elapsed();
        report::record(&window, response_time);
        drop(working);
        response_time
    })
    .await;
    match done {
        Ok(response_time) => Json(WorkReply {
            service: &app.service,
            instance: &app.instance,
            ms: (response_time.as_secs_f64() * 10_000.0).round() / 10.0,
        })
        .into_response(),
        Err(err) => {
            tracing::error!("the work failed: {err}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The host name, which in a container is the container's short id.
fn instance_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
