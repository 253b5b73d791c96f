//! `Engine::follow_logs` against the real engine, with the `gru-workload:latest` image
//! (built by `scripts/build-images.sh` when missing): the workload's `gru:` lines come back
//! parsed by `metrics_line`, and the follower ends with the container.
//!
//! Each test works in a cluster of its own (`logs-<pid>-<n>`) and holds a guard that removes
//! every container of that cluster when the test ends, also when it panics. Published ports
//! bind 127.0.0.1 only.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::{ServiceDescriptor, parse_service};
use gru_agent::docker::{
    self, DEFAULT_DOCKER_TIMEOUT, DockerError, Engine, InstancePlan, LogFollower, LogsEnd,
    StartedInstance, new_instance_id,
};
use gru_agent::metrics_line::{self, LineStats, UserMetric};
use testkit::{figure, http_get, wait_until};

const IMAGE: &str = "gru-workload:latest";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NODE: &str = "node-a";
/// How long a started workload may take to answer `/healthz`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an expected line may take: the workload reports once a second.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Harness

/// Checks the engine is there and the image is built (building it once per test binary).
fn ready(test: &str) -> bool {
    testkit::require_workload_image(test)
}

fn docker_cli(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// A cluster name of its own for one test; every container labelled with it is removed on
/// drop.
struct ClusterGuard {
    name: String,
}

impl ClusterGuard {
    fn new() -> ClusterGuard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "logs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let guard = ClusterGuard { name };
        guard.sweep(); // leftovers of a killed run that had the same pid
        guard
    }

    fn sweep(&self) {
        let filter = format!("label={}={}", docker::LABEL_CLUSTER, self.name);
        let ids = text(&docker_cli(&["ps", "-aq", "--filter", &filter]).stdout);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = docker_cli(&args);
        }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.sweep();
    }
}

async fn engine() -> Engine {
    docker::connect("", DEFAULT_DOCKER_TIMEOUT)
        .await
        .expect("connect to the Docker engine")
}

fn web_service(name: &str) -> ServiceDescriptor {
    let (low, high) = testkit::free_port_range(2);
    let text = format!(
        r#"{{
            "Name": "{name}",
            "Image": "{IMAGE}",
            "DiscoveryPort": "8080",
            "Configuration": {{
                "Memory": "64m",
                "StopTimeout": 2,
                "Env": {{ "SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5" }},
                "Ports": {{ "8080": "{low}-{high}" }}
            }}
        }}"#
    );
    parse_service(&format!("services/{name}.json"), &text)
        .unwrap_or_else(|problems| panic!("test service does not parse: {problems:?}"))
}

/// Starts one instance of `service` in `cluster` and waits until it answers; returns it
/// with its host port.
async fn start_healthy(
    engine: &Engine,
    cluster: &ClusterGuard,
    service: &ServiceDescriptor,
) -> (StartedInstance, u16) {
    let instance = new_instance_id();
    let plan = InstancePlan {
        service,
        cluster: &cluster.name,
        node: NODE,
        instance: &instance,
        bind_ip: LOCALHOST,
        registry_auth_file: None,
        replaces: &[],
    };
    let started = engine
        .start_instance(&plan, &|_| None)
        .await
        .expect("instance starts");
    let port = *started
        .host_ports
        .get("8080/tcp")
        .expect("8080/tcp is published");
    let healthy = tokio::task::spawn_blocking(move || {
        wait_until(HEALTHY_TIMEOUT, || {
            http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
        })
    })
    .await
    .expect("health probe");
    assert!(
        healthy.is_some(),
        "/healthz on 127.0.0.1:{port} did not answer in {HEALTHY_TIMEOUT:?}"
    );
    (started, port)
}

/// One `GET /`; the response time the workload measured, in ms.
async fn serve_one(port: u16) -> f64 {
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/"))
        .await
        .expect("request thread")
        .unwrap_or_else(|| panic!("GET / on 127.0.0.1:{port} did not answer"));
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("a JSON reply");
    reply["ms"].as_f64().expect("the reply's ms")
}

/// Reads lines until one parses as a metric; returns it, when it was received, and the
/// other lines seen.
async fn next_metric(
    follower: &mut LogFollower,
    stats: &mut LineStats,
) -> (UserMetric, SystemTime, Vec<String>) {
    let mut others = Vec::new();
    loop {
        let line = tokio::time::timeout(LINE_TIMEOUT, follower.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no metric line within {LINE_TIMEOUT:?}; saw {others:?}"))
            .unwrap_or_else(|| panic!("the follower ended; saw {others:?}"));
        let parsed = metrics_line::parse(&line);
        stats.record(&parsed);
        match parsed {
            Ok(metric) => return (metric, SystemTime::now(), others),
            Err(_) => others.push(line),
        }
    }
}

/// The engine's timestamps of the container's output lines that contain `needle`.
fn engine_timestamps(id: &str, needle: &str) -> Vec<SystemTime> {
    let out = docker_cli(&["logs", "--timestamps", id]);
    assert!(out.status.success(), "docker logs: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|line| line.contains(needle))
        .map(|line| {
            let stamp = line.split_whitespace().next().unwrap_or_default();
            rfc3339_utc(stamp).unwrap_or_else(|| panic!("not a timestamp: {stamp:?}"))
        })
        .collect()
}

/// `2026-11-22T01:13:33.840247123Z`, as the engine writes it.
fn rfc3339_utc(stamp: &str) -> Option<SystemTime> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.split(':').map(str::parse::<i64>);
    let (hour, minute, second) = (
        clock.next()?.ok()?,
        clock.next()?.ok()?,
        clock.next()?.ok()?,
    );
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[test]
fn engine_timestamps_are_read_as_utc() {
    let cases = [
        ("1970-01-01T00:00:00Z", 0, 0),
        ("2000-03-01T00:00:01.5Z", 951_868_801, 500_000_000),
        ("2026-11-22T01:13:33.840247123Z", 1_795_310_013, 840_247_123),
    ];
    for (stamp, secs, nanos) in cases {
        assert_eq!(
            rfc3339_utc(stamp),
            Some(UNIX_EPOCH + Duration::new(secs, nanos)),
            "{stamp}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_requests_come_back_as_parsed_execution_time_lines() {
    let test = "served_requests_come_back_as_parsed_execution_time_lines";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let service = web_service("frontend");
    let (started, port) = start_healthy(&engine, &cluster, &service).await;

    let clock = Instant::now();
    let mut follower = engine.follow_logs(&started.id).await.expect("follow");
    let attach = clock.elapsed();

    // One request per round: the line reported after it is that request's alone, so its
    // value is the response time the reply gave. Each round waits a little longer after the
    // previous line, so the requests meet the workload's once-a-second report at different
    // phases.
    let mut stats = LineStats::default();
    let mut latencies = Vec::new();
    let mut received_at = Vec::new();
    for round in 0..3_u32 {
        tokio::time::sleep(Duration::from_millis(300) * round).await;
        let sent = Instant::now();
        let reply_ms = serve_one(port).await;
        let (metric, received, others) = next_metric(&mut follower, &mut stats).await;
        latencies.push(sent.elapsed());
        received_at.push(received);
        assert_eq!(
            (
                metric.service.as_str(),
                metric.metric.as_str(),
                metric.unit.as_str()
            ),
            ("frontend", "execution_time", "ms"),
            "round {round}"
        );
        assert!(
            (metric.value - reply_ms).abs() <= 0.11,
            "round {round}: line says {} ms, the reply {reply_ms} ms",
            metric.value
        );
        // Nothing from before the call (the startup `serving` line) is replayed.
        assert!(
            others.iter().all(|line| !line.contains("serving")),
            "history replayed: {others:?}"
        );
    }
    latencies.sort();
    // The engine stamps each line when it reads it from the container: the follower's own
    // share of the latency is from that stamp to the receipt.
    let logged_at = engine_timestamps(&started.id, "gru:frontend:");
    assert_eq!(logged_at.len(), 3, "{logged_at:?}");
    let mut delivery: Vec<Duration> = logged_at
        .iter()
        .zip(&received_at)
        .map(|(logged, received)| received.duration_since(*logged).unwrap_or_default())
        .collect();
    delivery.sort();
    figure(test, "follow_logs attached", format!("{attach:?}"));
    figure(
        test,
        "request to parsed line",
        format!(
            "min {:?}, median {:?}, max {:?} (the workload reports once a second)",
            latencies[0], latencies[1], latencies[2]
        ),
    );
    figure(
        test,
        "engine timestamp to parsed line",
        format!("min {:?}, max {:?}", delivery[0], delivery[2]),
    );
    assert!(delivery[2] < Duration::from_secs(1), "{delivery:?}");
    assert_eq!(
        stats,
        LineStats {
            parsed: 3,
            rejected: 0
        }
    );
    assert_eq!(follower.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_delivers_the_last_lines_and_ends_when_the_container_stops() {
    let test = "follower_delivers_the_last_lines_and_ends_when_the_container_stops";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let (started, port) = start_healthy(&engine, &cluster, &web_service("backend")).await;
    let mut kept = engine.follow_logs(&started.id).await.expect("follow");
    let dropped = engine.follow_logs(&started.id).await.expect("follow");

    // A follower whose reader is gone ends although the container runs on.
    drop(dropped.lines);
    let end = tokio::time::timeout(Duration::from_secs(5), dropped.ended)
        .await
        .expect("a dropped follower ends")
        .expect("the task does not panic");
    assert!(matches!(end, LogsEnd::ReaderGone), "{end:?}");

    // Served just before the stop: the workload reports it while draining, if its tick has
    // not come yet, and both that and its stderr shutdown message arrive before the end.
    serve_one(port).await;
    engine
        .stop_instance(&started.id, Duration::from_secs(5))
        .await
        .expect("stop");
    let stopped = Instant::now();
    let mut lines = Vec::new();
    loop {
        match tokio::time::timeout(LINE_TIMEOUT, kept.lines.recv()).await {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => break,
            Err(_) => panic!("the follower did not end after the stop; saw {lines:?}"),
        }
    }
    let closed_after = stopped.elapsed();
    let end = kept.ended.await.expect("the task does not panic");
    figure(
        test,
        "follower ended after the stop returned",
        format!("{closed_after:?}"),
    );
    assert!(matches!(end, LogsEnd::Finished), "{end:?}");
    let metrics: Vec<UserMetric> = lines
        .iter()
        .filter_map(|line| metrics_line::parse(line).ok())
        .collect();
    assert_eq!(metrics.len(), 1, "one request, one line: {lines:?}");
    assert_eq!(metrics[0].service, "backend");
    assert!(
        lines.iter().any(|line| line.contains("shutting down")),
        "stderr is followed too: {lines:?}"
    );

    // Following the stopped container: nothing from before, and the end at once.
    let mut late = engine.follow_logs(&started.id).await.expect("follow");
    let first = tokio::time::timeout(Duration::from_secs(5), late.lines.recv())
        .await
        .expect("a follower of a stopped container ends at once");
    assert_eq!(first, None);
    let end = late.ended.await.expect("the task does not panic");
    assert!(matches!(end, LogsEnd::Finished), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_missing_container_fails_naming_it() {
    if !ready("following_a_missing_container_fails_naming_it") {
        return;
    }
    let engine = engine().await;
    let gone = format!("gru-never-existed-{}", std::process::id());
    let error = engine
        .follow_logs(&gone)
        .await
        .expect_err("no such container");
    assert!(
        matches!(&error, DockerError::Call { target, .. } if *target == gone),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("docker inspect of {gone} failed")
    );
    let cause = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(cause.contains("No such container"), "{cause}");
}
