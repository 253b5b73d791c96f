//! Benchmark of how fast one real agent reacts to a load step, against how fast the Docker
//! engine can start the same container, and of the agent's footprint.
//!
//! Everything is real: a throwaway etcd, the release `gru` binary (`gru create`, `gru config
//! push`, one `gru join --start` agent as a child process), the Docker engine on this
//! machine and the `gru-workload:latest` image.
//!
//! * **start_ms**: the median over `--trials` of one create + start of the service's
//!   container through gru's own start path (`Engine::start_instance`: image check, port
//!   allocation, create, start), with no agent running; each container is removed after.
//! * **reaction_ms**: service `web` (min 1, max 3) reports `execution_time` to the agent's
//!   push endpoint every `--report-ms` (a light baseline, `--low` × MAX_RESP_TIME). The load
//!   step switches the reported value to `--high` × MAX_RESP_TIME (analytic
//!   `execution_time / MAX_RESP_TIME` over the 0.75 scale-out threshold; loop 1 s, Period 0,
//!   no cooldowns). Measured from the first POST of the high value to the moment the new
//!   instance is both running (the engine's `start` event, from a Docker events
//!   subscription) and registered (its key under `<AppRoot>/web/`, from an etcd watch).
//!   The median over the trials is reported, with its parts: detection (first POST →
//!   the decision that led to the claim, from `GET /gru/v1/decisions`), claim (decision →
//!   the ledger's `last-claim` put seen by the watch), launch (claim → running) and register
//!   (running → discovery record).
//! * **Footprint**: the agent's VmRSS and CPU (utime + stime from /proc over
//!   `--sample-secs`, as a percentage of one core) at idle (web at 1, nothing reported) and
//!   with `--managed` containers (a second service pinned at min = max, 16 MiB each).
//!
//! Between trials the service goes back to one instance by itself (the baseline is under
//! the scale-in threshold), and the next step waits until discovery holds one instance,
//! no claim is settling (a settling scale-in blocks scale-outs) and two loops have passed,
//! then a random fraction of a loop, so steps fall at every phase of the agent's tick.
//!
//!   cargo build --release -p gru --example reaction_bench
//!   target/release/examples/reaction_bench [--trials 7] [--report-ms 200] [--high 2.0]
//!       [--low 0.1] [--sample-secs 20] [--managed 20] [--gru target/release/gru]
//!
//! Run by `scripts/bench.sh reaction`. The last line is
//! `reaction_ms=... start_ms=... ratio=... rss_idle_mb=... cpu_idle_pct=... rss_20_mb=...
//! cpu_20_pct=... tick_wait_ms=... detect_ms=... claim_ms=... launch_ms=... register_ms=...
//! trials=...`. Containers, the agent and etcd are removed on every path, Ctrl-C included.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::{ClusterConfig, ServiceDescriptor, SourceDocument};
use common::keys::{ClusterKeys, LedgerPart};
use gru_agent::coordination::{Direction, Intent};
use gru_agent::docker::{Engine, EventKind, InstancePlan, new_instance_id, process_env};
use gru_agent::mape::{Action, Decision};
use gru_agent::store::{EtcdSettings, Store, WatchEvent};
use rand::RngExt;
use testkit::{ChildGuard, ClusterContainers, Etcd, free_port, free_port_range, http_get};
use tokio_util::sync::CancellationToken;

/// The service the load step hits.
const SERVICE: &str = "web";
/// The service that only fills the node for the footprint with many containers.
const FILLER: &str = "bulk";
/// The node name of the agent.
const NODE: &str = "bench";
/// `MAX_RESP_TIME` of the service, in ms: the analytic is `execution_time / MAX_RESP_TIME`.
const MAX_RESP_TIME_MS: f64 = 100.0;
/// The autonomic loop under test (the acceptance's "loop 1 s").
const LOOP_SECS: u64 = 1;
/// Longest wait for one reaction before the trial counts as failed.
const REACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the service to settle back at one instance between trials.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the filler service to reach its count.
const FILL_TIMEOUT: Duration = Duration::from_secs(240);
/// How often the main thread looks at what the watchers recorded (in memory, no I/O).
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long the agent may take to leave after SIGTERM before it is killed.
const AGENT_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Set by SIGINT or SIGTERM; every wait checks it and unwinds, so the guards clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
struct Args {
    trials: usize,
    report_ms: u64,
    high: f64,
    low: f64,
    sample_secs: u64,
    managed: u32,
    gru: PathBuf,
}

fn args() -> Result<Args, String> {
    let default_gru = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("gru")))
        .unwrap_or_else(|| PathBuf::from("gru"));
    let mut args = Args {
        trials: 7,
        report_ms: 200,
        high: 2.0,
        low: 0.1,
        sample_secs: 20,
        managed: 20,
        gru: default_gru,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair
            .get(1)
            .ok_or_else(|| format!("{} needs a value", pair[0]))?;
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{}: {value:?} is not a number ≥ 0", pair[0]))
        };
        match pair[0].as_str() {
            "--trials" => args.trials = (number()? as usize).max(5),
            "--report-ms" => args.report_ms = (number()? as u64).max(10),
            "--high" => args.high = number()?,
            "--low" => args.low = number()?,
            "--sample-secs" => args.sample_secs = (number()? as u64).max(1),
            "--managed" => args.managed = (number()? as u32).max(2),
            "--gru" => args.gru = PathBuf::from(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("reaction_bench: {why}");
            std::process::exit(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("reaction_bench: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    runtime.spawn(watch_signals());
    // Every guard lives inside `run`, so returning (an error, an interruption) removes the
    // containers, stops the agent and etcd before the process exits.
    let result = run(&args, &runtime);
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(summary) => println!("{summary}"),
        Err(why) => {
            eprintln!("reaction_bench: {why}");
            let interrupted = INTERRUPTED.load(Ordering::SeqCst);
            std::process::exit(if interrupted { 130 } else { 1 });
        }
    }
}

async fn watch_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("reaction_bench: cannot install signal handlers; Ctrl-C will not clean up");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("reaction_bench: interrupted; cleaning up");
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".to_owned())
    } else {
        Ok(())
    }
}

/// Sleeps `duration` in short steps, returning early with an error when interrupted.
fn pause(duration: Duration) -> Result<(), String> {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        check_interrupted()?;
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(POLL_INTERVAL * 10),
        );
    }
    Ok(())
}

/// Wall-clock milliseconds since the epoch, with microseconds: the agent stamps its
/// decisions and actions with the same clock (same machine), so the two can be compared.
fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------
// The configuration pushed to the cluster.

struct Documents {
    dir: tempfile::TempDir,
}

impl Documents {
    fn new(ports: (u16, u16)) -> Result<Documents, String> {
        let dir = tempfile::Builder::new()
            .prefix("gru-reaction-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let docs = Documents { dir };
        docs.write(
            "config.json",
            &format!(
                r#"{{"Autonomic": {{"LoopTimeInterval": {LOOP_SECS}, "PlannerStrategy": "probcumulative", "EnableLogReading": true}}}}"#
            ),
        )?;
        docs.write(
            "policy.json",
            r#"{
                "Scaleout": {"Enable": true, "Threshold": 0.75, "Analytics": ["resp_time_ratio"], "Period": 0, "Step": 1},
                "Scalein":  {"Enable": true, "Threshold": 0.35, "Analytics": ["resp_time_ratio"], "Period": 0, "Step": 1},
                "Swap":     {"Enable": false},
                "CooldownOut": 0,
                "CooldownIn": 0
            }"#,
        )?;
        docs.write(
            "analytics/resp_time_ratio.json",
            r#"{"Name": "resp_time_ratio", "Expr": "execution_time / MAX_RESP_TIME",
                "Metrics": ["execution_time"], "Constraints": ["MAX_RESP_TIME"]}"#,
        )?;
        docs.write(
            &format!("services/{SERVICE}.json"),
            &format!(
                r#"{{
                    "Name": "{SERVICE}", "Image": "{image}", "DiscoveryPort": "8080",
                    "Analytics": ["resp_time_ratio"],
                    "Constraints": {{"MAX_RESP_TIME": {MAX_RESP_TIME_MS}}},
                    "MinInstances": 1, "MaxInstances": 3,
                    "Configuration": {{
                        "Memory": "64m", "StopTimeout": 1,
                        "Env": {{"SERVICE_NAME": "{SERVICE}", "SERVICE_TIME_MS": "20"}},
                        "Ports": {{"8080": "{low}-{high}"}}
                    }}
                }}"#,
                image = testkit::WORKLOAD_IMAGE,
                low = ports.0,
                high = ports.1
            ),
        )?;
        Ok(docs)
    }

    /// Adds the filler service: `count` instances pinned (min = max), 16 MiB each, no
    /// published ports and no analytics, so the policy leaves it alone.
    fn add_filler(&self, count: u32) -> Result<(), String> {
        self.write(
            &format!("services/{FILLER}.json"),
            &format!(
                r#"{{
                    "Name": "{FILLER}", "Image": "{image}",
                    "MinInstances": {count}, "MaxInstances": {count},
                    "Configuration": {{
                        "Memory": "16m", "StopTimeout": 1,
                        "Env": {{"SERVICE_NAME": "{FILLER}", "SERVICE_TIME_MS": "5"}}
                    }}
                }}"#,
                image = testkit::WORKLOAD_IMAGE,
            ),
        )
    }

    fn write(&self, file: &str, text: &str) -> Result<(), String> {
        let path = self.dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The service descriptor as the agent will read it (parsed by gru's own parser).
    fn descriptor(&self) -> Result<ServiceDescriptor, String> {
        let mut docs = Vec::new();
        for file in [
            "config.json".to_owned(),
            "policy.json".to_owned(),
            "analytics/resp_time_ratio.json".to_owned(),
            format!("services/{SERVICE}.json"),
        ] {
            let text = std::fs::read_to_string(self.path().join(&file))
                .map_err(|e| format!("cannot read {file}: {e}"))?;
            docs.push(SourceDocument { file, text });
        }
        let config = ClusterConfig::from_documents(&docs).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            format!(
                "the bench's configuration is invalid:\n{}",
                lines.join("\n")
            )
        })?;
        config
            .services
            .get(SERVICE)
            .cloned()
            .ok_or_else(|| format!("service {SERVICE} missing from the configuration"))
    }
}

// ---------------------------------------------------------------------------------------
// start_ms: the engine's create + start through gru's start path, no agent running.

fn measure_start(
    runtime: &tokio::runtime::Runtime,
    descriptor: &ServiceDescriptor,
    trials: usize,
) -> Result<Vec<f64>, String> {
    let guard = ClusterContainers::unique("reaction-start");
    let engine: Engine = runtime
        .block_on(gru_agent::docker::connect(
            "unix:///var/run/docker.sock",
            Duration::from_secs(10),
        ))
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let mut times = Vec::new();
    // One start first, not counted: the engine's first create of an image after a while
    // reads its layers from disk; the agent's starts happen with the image in use.
    for trial in 0..=trials {
        check_interrupted()?;
        let instance = new_instance_id();
        let plan = InstancePlan {
            service: descriptor,
            cluster: &guard.cluster,
            node: NODE,
            instance: &instance,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            registry_auth_file: None,
            replaces: &[],
        };
        let began = Instant::now();
        let started = runtime
            .block_on(engine.start_instance(&plan, &process_env))
            .map_err(|e| format!("create + start failed: {e}"))?;
        let elapsed = began.elapsed().as_secs_f64() * 1000.0;
        runtime
            .block_on(engine.remove_instance(&started.id))
            .map_err(|e| format!("cannot remove {}: {e}", started.id))?;
        if trial > 0 {
            eprintln!("  start {trial}: {elapsed:.1} ms");
            times.push(elapsed);
        }
    }
    Ok(times)
}

// ---------------------------------------------------------------------------------------
// What the watchers saw: the etcd watch (discovery, ledger) and the Docker events.

#[derive(Debug, Clone)]
enum Seen {
    Registered {
        service: String,
        instance: String,
    },
    Claim(Option<Intent>),
    Started {
        service: String,
    },
    /// The watch broke and was opened again: changes may have been missed.
    Resynced,
}

#[derive(Debug, Default)]
struct Tracker {
    /// Instances in discovery, by service.
    discovery: BTreeMap<String, BTreeSet<String>>,
    /// Whether a claim's intent is settling for [`SERVICE`].
    intent: bool,
    /// Everything seen, with the bench's wall clock when it arrived.
    log: Vec<(f64, Seen)>,
}

impl Tracker {
    fn count(&self, service: &str) -> usize {
        self.discovery.get(service).map_or(0, BTreeSet::len)
    }
}

type Shared = Arc<Mutex<Tracker>>;

fn lock(tracker: &Shared) -> std::sync::MutexGuard<'_, Tracker> {
    tracker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follows `/gru/<cluster>/` (discovery under the default AppRoot, and the ledger).
async fn watch_etcd(
    store: Store,
    keys: ClusterKeys,
    tracker: Shared,
    cancel: CancellationToken,
    watching: tokio::sync::oneshot::Sender<()>,
) {
    let discovery_root = format!("{}/", keys.discovery_root(""));
    let last_claim = keys.scaling(SERVICE, LedgerPart::LastClaim);
    let intent = keys.scaling(SERVICE, LedgerPart::Intent);
    let mut events = store.watch_prefix(&keys.prefix(), cancel.clone());
    let _ = watching.send(());
    while let Some(event) = events.recv().await {
        let at = wall_ms();
        let mut tracker = lock(&tracker);
        let changes = match event {
            WatchEvent::Changed(changes) => changes,
            WatchEvent::Resynced => {
                tracker.log.push((at, Seen::Resynced));
                continue;
            }
        };
        for (key, value) in changes {
            if let Some((service, instance)) = key
                .strip_prefix(&discovery_root)
                .and_then(|rest| rest.split_once('/'))
            {
                let (service, instance) = (service.to_owned(), instance.to_owned());
                let set = tracker.discovery.entry(service.clone()).or_default();
                if value.is_none() {
                    set.remove(&instance);
                } else if set.insert(instance.clone()) {
                    tracker
                        .log
                        .push((at, Seen::Registered { service, instance }));
                }
            } else if key == last_claim {
                let parsed = value.and_then(|v| serde_json::from_str::<Intent>(&v).ok());
                tracker.log.push((at, Seen::Claim(parsed)));
            } else if key == intent {
                tracker.intent = value.is_some();
            }
        }
    }
}

/// Follows the engine's `start` events of the cluster's containers.
async fn watch_docker(
    engine: Engine,
    cluster: String,
    tracker: Shared,
    cancel: CancellationToken,
) -> Result<(), String> {
    let mut events = engine
        .events(&cluster)
        .await
        .map_err(|e| format!("cannot follow Docker events: {e}"))?;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = events.recv() => event,
            };
            let Some(event) = event else { return };
            if event.kind == EventKind::Start {
                let at = wall_ms();
                lock(&tracker).log.push((
                    at,
                    Seen::Started {
                        service: event.service,
                    },
                ));
            }
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The reporting service: POSTs the current value every report interval.

enum PushCommand {
    /// Report this `execution_time` from now on (at once, then every interval); `None`
    /// stops reporting.
    Report(Option<f64>),
    Stop,
}

struct Pusher {
    commands: mpsc::Sender<PushCommand>,
    /// `(wall ms when the POST was sent, value)`: every POST that was accepted.
    sent: Arc<Mutex<Vec<(f64, f64)>>>,
    /// The last refusal or failure, if any.
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pusher {
    fn start(port: u16, secret: String, interval: Duration) -> Pusher {
        let (commands, receiver) = mpsc::channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let failure = Arc::new(Mutex::new(None));
        let (sent_log, failure_slot) = (sent.clone(), failure.clone());
        let path = format!("/gru/v1/stats/user/{SERVICE}/execution_time");
        let thread = std::thread::spawn(move || {
            let mut value: Option<f64> = None;
            let mut next = Instant::now();
            loop {
                match receiver.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Ok(PushCommand::Report(v)) => {
                        value = v;
                        next = Instant::now();
                    }
                    Ok(PushCommand::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                let now = Instant::now();
                if now < next {
                    continue;
                }
                next = (next + interval).max(now);
                let Some(v) = value else {
                    next = now + Duration::from_secs(3600);
                    continue;
                };
                let at = wall_ms();
                let body = format!("{v}");
                match testkit::http_request(port, "POST", &path, Some(&secret), Some(&body)) {
                    Some((status, _)) if (200..300).contains(&status) => {
                        sent_log
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((at, v));
                    }
                    other => {
                        *failure_slot
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(format!("POST {path} {body}: {other:?}"));
                    }
                }
            }
        });
        Pusher {
            commands,
            sent,
            failure,
            thread: Some(thread),
        }
    }

    fn report(&self, value: Option<f64>) {
        let _ = self.commands.send(PushCommand::Report(value));
    }

    /// When the first accepted POST of `value` at or after `since` was sent.
    fn first_sent(&self, value: f64, since: f64) -> Option<f64> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(at, v)| *at >= since && *v == value)
            .map(|(at, _)| *at)
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let _ = self.commands.send(PushCommand::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The agent and the cluster around it.

struct Agent {
    guard: ChildGuard,
    port: u16,
    log: PathBuf,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.guard.pid()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http_get(self.port, path)
            .ok_or_else(|| format!("GET {path}: the agent did not answer"))?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}"))
    }

    /// The decision history, oldest first.
    fn decisions(&self) -> Result<Vec<Decision>, String> {
        let view = self.get_json("/gru/v1/decisions?limit=256")?;
        let mut decisions: Vec<Decision> =
            serde_json::from_value(view["decisions"].clone()).map_err(|e| e.to_string())?;
        decisions.reverse();
        Ok(decisions)
    }

    /// The action history, oldest first.
    fn actions(&self) -> Result<Vec<serde_json::Value>, String> {
        let view = self.get_json("/gru/v1/actions?limit=256")?;
        let mut actions = view["actions"].as_array().cloned().unwrap_or_default();
        actions.reverse();
        Ok(actions)
    }

    /// SIGTERM, so the agent revokes its lease, then waits for it to leave (killed after
    /// [`AGENT_EXIT_TIMEOUT`] by the guard).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let mut child = self.guard.take();
        let until = Instant::now() + AGENT_EXIT_TIMEOUT;
        while Instant::now() < until {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("  the agent did not leave within {AGENT_EXIT_TIMEOUT:?} of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn gru(args: &Args, endpoints: &str, arguments: &[&str]) -> Result<(), String> {
    let out = Command::new(&args.gru)
        .env("ETCD_ADDR", endpoints)
        .env("RUST_LOG", "warn")
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.gru.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "gru {arguments:?} exited with {:?}:\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn spawn_agent(args: &Args, endpoints: &str, cluster: &str, dir: &Path) -> Result<Agent, String> {
    let port = free_port();
    let log = dir.join("agent.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create the agent's log: {e}"))?;
    let child = Command::new(&args.gru)
        .env("ETCD_ADDR", endpoints)
        .env("RUST_LOG", "info")
        .args(["join", cluster, "--name", NODE, "--port", &port.to_string()])
        .args([
            "--bind",
            "127.0.0.1",
            "--publish-ip",
            "127.0.0.1",
            "--start",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args.gru.display()))?;
    let agent = Agent {
        guard: ChildGuard::new(child),
        port,
        log,
    };
    wait_for(Duration::from_secs(20), "the agent's /healthz", || {
        http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
    })
    .map_err(|why| format!("{why}; its log ends with:\n{}", agent.log_tail(20)))?;
    Ok(agent)
}

/// Polls `check` every [`POLL_INTERVAL`] until it holds, `timeout` passes (an error naming
/// `what`) or the bench is interrupted.
fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + timeout;
    loop {
        check_interrupted()?;
        if check() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------
// One trial.

/// The times of one reaction, in ms after the first POST of the high value.
#[derive(Debug, Clone, Copy)]
struct Reaction {
    /// The first tick after the step (any decision): the loop's phase.
    tick_wait: f64,
    /// The scale-out decision whose claim won.
    decided: f64,
    /// The claim seen in the ledger.
    claimed: f64,
    /// The engine's `start` event of the new container.
    running: f64,
    /// Its discovery record.
    registered: f64,
    /// Scale-out decisions of the step before the one that claimed (refused claims).
    earlier_decisions: usize,
}

impl Reaction {
    fn total(&self) -> f64 {
        self.running.max(self.registered)
    }
}

/// Waits until the service is back at one instance with nothing settling, for two loops.
fn settle(tracker: &Shared) -> Result<(), String> {
    let mut steady_since: Option<Instant> = None;
    wait_for(SETTLE_TIMEOUT, "web back at one instance", || {
        let calm = {
            let t = lock(tracker);
            t.count(SERVICE) == 1 && !t.intent
        };
        match (calm, steady_since) {
            (false, _) => {
                steady_since = None;
                false
            }
            (true, None) => {
                steady_since = Some(Instant::now());
                false
            }
            (true, Some(since)) => since.elapsed() >= Duration::from_secs(2 * LOOP_SECS),
        }
    })
}

fn trial(
    number: usize,
    args: &Args,
    agent: &Agent,
    pusher: &Pusher,
    tracker: &Shared,
) -> Result<Reaction, String> {
    settle(tracker)?;
    // A random phase against the agent's tick, so that steps do not all land at the same
    // point of its loop.
    let phase = rand::rng().random_range(0..LOOP_SECS * 1000);
    pause(Duration::from_millis(phase))?;
    let high = args.high * MAX_RESP_TIME_MS;
    let mark = lock(tracker).log.len();
    let before = wall_ms();
    pusher.report(Some(high));
    let mut end: Option<(f64, f64, String)> = None;
    wait_for(REACTION_TIMEOUT, "the new instance", || {
        let t = lock(tracker);
        let after = &t.log[mark..];
        let running = after.iter().find_map(|(at, seen)| match seen {
            Seen::Started { service } if service == SERVICE => Some(*at),
            _ => None,
        });
        let registered = after.iter().find_map(|(at, seen)| match seen {
            Seen::Registered { service, instance } if service == SERVICE => {
                Some((*at, instance.clone()))
            }
            _ => None,
        });
        end = running
            .zip(registered)
            .map(|(running, (registered, instance))| (running, registered, instance));
        end.is_some()
    })
    .map_err(|why| format!("{why}; the agent's log ends with:\n{}", agent.log_tail(15)))?;
    pusher.report(Some(args.low * MAX_RESP_TIME_MS));
    if let Some(failure) = pusher.failure() {
        return Err(format!("a report was refused: {failure}"));
    }
    let (running, registered, instance) = end.ok_or("no reaction")?;
    let t0 = pusher
        .first_sent(high, before)
        .ok_or("the POST of the step was not accepted")?;
    let (claimed, resynced) = {
        let t = lock(tracker);
        let after = &t.log[mark..];
        let claimed = after.iter().find_map(|(at, seen)| match seen {
            Seen::Claim(Some(Intent {
                direction: Direction::Out,
                ..
            })) => Some(*at),
            _ => None,
        });
        let resynced = after.iter().any(|(_, seen)| matches!(seen, Seen::Resynced));
        (claimed, resynced)
    };
    if resynced {
        return Err("the etcd watch was re-established during the trial".to_owned());
    }
    let claimed = claimed.ok_or("no scale-out claim was seen in the ledger")?;
    let decisions = agent.decisions()?;
    let after_step: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.at.0 as f64 >= t0.floor())
        .collect();
    let first_tick = after_step
        .first()
        .map(|d| d.at.0 as f64)
        .ok_or("no decision after the step")?;
    let scale_outs: Vec<f64> = after_step
        .iter()
        .filter(|d| {
            d.at.0 as f64 <= claimed
                && matches!(&d.action, Action::ScaleOut { service, .. } if service == SERVICE)
        })
        .map(|d| d.at.0 as f64)
        .collect();
    let decided = *scale_outs
        .last()
        .ok_or("no scale-out decision before the claim")?;
    // Cross-check with the agent's own record of the start (its clock, after the start
    // call returned): the instance it started first must be the one registered first.
    let started_record = agent.actions()?.into_iter().find_map(|a| {
        let at = a["at"].as_f64()?;
        (at >= t0.floor()
            && a["action"] == "scale-out"
            && a["service"] == SERVICE
            && a["result"] == "ok")
            .then(|| (at, a["instance"].as_str().unwrap_or_default().to_owned()))
    });
    if let Some((_, started)) = &started_record
        && *started != instance
    {
        return Err(format!(
            "the agent started {started} first but {instance} was registered first"
        ));
    }
    let reaction = Reaction {
        tick_wait: first_tick - t0,
        decided: decided - t0,
        claimed: claimed - t0,
        running: running - t0,
        registered: registered - t0,
        earlier_decisions: scale_outs.len() - 1,
    };
    eprintln!(
        "trial {number}/{}: reaction {:.0} ms = detect {:.0} (first tick {:.0}) + claim {:.0} + launch {:.0} + register {:.0}{}{}",
        args.trials,
        reaction.total(),
        reaction.decided,
        reaction.tick_wait,
        reaction.claimed - reaction.decided,
        reaction.running - reaction.claimed,
        reaction.registered - reaction.running,
        started_record.map_or(String::new(), |(at, _)| format!(
            " (the agent's start record at {:.0})",
            at - t0
        )),
        if reaction.earlier_decisions > 0 {
            format!(
                "; {} earlier scale-out decision(s) claimed nothing",
                reaction.earlier_decisions
            )
        } else {
            String::new()
        }
    );
    Ok(reaction)
}

// ---------------------------------------------------------------------------------------
// Footprint from /proc.

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed:
    // state is field 3, utime field 14, stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat has no field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

fn rss_mb(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `(VmRSS in MiB at the end, CPU % of one core over the sample)`.
fn footprint(pid: u32, sample: Duration) -> Result<(f64, f64), String> {
    let per_second = clock_ticks_per_second();
    let (ticks_before, began) = (cpu_ticks(pid)?, Instant::now());
    let mut peak = 0.0_f64;
    while began.elapsed() < sample {
        pause(Duration::from_secs(1).min(sample.saturating_sub(began.elapsed())))?;
        peak = peak.max(rss_mb(pid)?);
    }
    let ticks = cpu_ticks(pid)? - ticks_before;
    let rss = rss_mb(pid)?;
    let cpu = ticks as f64 / per_second / began.elapsed().as_secs_f64() * 100.0;
    eprintln!(
        "  {:.1} s: {ticks} ticks of CPU ({cpu:.2} % of a core), VmRSS {rss:.1} MiB (peak {peak:.1})",
        began.elapsed().as_secs_f64()
    );
    Ok((rss, cpu))
}

// ---------------------------------------------------------------------------------------

fn run(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<String, String> {
    if !args.gru.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p gru` or pass --gru",
            args.gru.display()
        ));
    }
    let docs = Documents::new(free_port_range(10))?;
    let descriptor = docs.descriptor()?;

    eprintln!(
        "start_ms: create + start of {} through Engine::start_instance, {} times (+1 not counted)",
        testkit::WORKLOAD_IMAGE,
        args.trials
    );
    let starts = measure_start(runtime, &descriptor, args.trials)?;
    let start_ms = median(&starts);

    // Declared before the agent, so it is dropped after it: the agent is gone before its
    // containers are removed.
    let containers = ClusterContainers::unique("reaction");
    let cluster = containers.cluster.clone();
    let etcd = Etcd::start();
    let endpoints = etcd.endpoints();
    gru(args, &endpoints, &["create", &cluster])?;
    let path = docs.path().to_string_lossy().into_owned();
    gru(args, &endpoints, &["config", "push", &cluster, &path])?;
    let secret = etcd
        .etcdctl(&[
            "get",
            "--print-value-only",
            &format!("/gru/{cluster}/secret"),
        ])
        .trim()
        .to_owned();

    let keys = ClusterKeys::new(&cluster).map_err(|e| e.to_string())?;
    let store = runtime
        .block_on(Store::connect(&EtcdSettings {
            endpoints: EtcdSettings::parse_endpoints(&endpoints),
            ..EtcdSettings::default()
        }))
        .map_err(|e| format!("cannot connect to etcd: {e}"))?;
    let engine = runtime
        .block_on(gru_agent::docker::connect(
            "unix:///var/run/docker.sock",
            Duration::from_secs(10),
        ))
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let cancel = CancellationToken::new();
    let _stop_watchers = cancel.clone().drop_guard();
    let tracker: Shared = Arc::default();
    let (watching, watch_open) = tokio::sync::oneshot::channel();
    runtime.spawn(watch_etcd(
        store,
        keys,
        tracker.clone(),
        cancel.clone(),
        watching,
    ));
    runtime
        .block_on(watch_open)
        .map_err(|_| "the etcd watch did not start")?;
    runtime.block_on(watch_docker(
        engine,
        cluster.clone(),
        tracker.clone(),
        cancel.clone(),
    ))?;

    let agent = spawn_agent(args, &endpoints, &cluster, docs.path())?;
    eprintln!(
        "agent {NODE} (pid {}) on port {}; loop {LOOP_SECS} s, Period 0, no cooldowns; reports every {} ms: {:.0} ms at rest, {:.0} ms in the step (MAX_RESP_TIME {MAX_RESP_TIME_MS} ms, threshold 0.75)",
        agent.pid(),
        agent.port,
        args.report_ms,
        args.low * MAX_RESP_TIME_MS,
        args.high * MAX_RESP_TIME_MS
    );
    let pusher = Pusher::start(agent.port, secret, Duration::from_millis(args.report_ms));
    pusher.report(Some(args.low * MAX_RESP_TIME_MS));

    let mut reactions = Vec::new();
    for i in 1..=args.trials {
        match trial(i, args, &agent, &pusher, &tracker) {
            Ok(reaction) => reactions.push(reaction),
            Err(why) if INTERRUPTED.load(Ordering::SeqCst) => return Err(why),
            Err(why) => eprintln!("  trial {i} failed: {why}"),
        }
    }
    if reactions.len() < 5 {
        return Err(format!(
            "only {} of {} trials succeeded (5 needed)",
            reactions.len(),
            args.trials
        ));
    }

    eprintln!(
        "footprint at idle: {SERVICE} at one instance, nothing reported, {} s",
        args.sample_secs
    );
    // Back at one instance first: scale-in needs the light reports.
    settle(&tracker)?;
    pusher.report(None);
    // Until the reported values have left the window (one loop) and a few ticks ran.
    pause(Duration::from_secs(LOOP_SECS + 3))?;
    let (rss_idle, cpu_idle) = footprint(agent.pid(), Duration::from_secs(args.sample_secs))?;

    let filler = args.managed - 1;
    eprintln!(
        "footprint with {} managed containers: {SERVICE} at 1 and {FILLER} pinned at {filler} (16 MiB each)",
        args.managed
    );
    docs.add_filler(filler)?;
    gru(args, &endpoints, &["config", "push", &cluster, &path])?;
    let began = Instant::now();
    wait_for(FILL_TIMEOUT, "the filler's instances in discovery", || {
        let t = lock(&tracker);
        t.count(FILLER) == filler as usize && t.count(SERVICE) == 1
    })
    .map_err(|why| format!("{why}; the agent's log ends with:\n{}", agent.log_tail(15)))?;
    let running = containers.ids(Some("status=running")).len();
    eprintln!(
        "  {running} containers running, all registered {:.1} s after the push",
        began.elapsed().as_secs_f64()
    );
    pause(Duration::from_secs(5))?;
    let (rss_20, cpu_20) = footprint(agent.pid(), Duration::from_secs(args.sample_secs))?;

    agent.stop();
    drop(pusher);

    let column =
        |f: fn(&Reaction) -> f64| -> f64 { median(&reactions.iter().map(f).collect::<Vec<_>>()) };
    let reaction_ms = column(Reaction::total);
    let tick_wait = column(|r| r.tick_wait);
    let detect = column(|r| r.decided);
    let claim = column(|r| r.claimed - r.decided);
    let launch = column(|r| r.running - r.claimed);
    let register = column(|r| r.registered - r.running);
    eprintln!(
        "medians over {} trials: reaction {reaction_ms:.0} ms (detect {detect:.0}, of which waiting for the first tick {tick_wait:.0}; claim {claim:.0}; launch {launch:.0}; register {register:.0}); create + start {start_ms:.0} ms",
        reactions.len()
    );
    Ok(format!(
        "reaction_ms={reaction_ms:.0} start_ms={start_ms:.0} ratio={:.2} rss_idle_mb={rss_idle:.1} cpu_idle_pct={cpu_idle:.2} rss_{}_mb={rss_20:.1} cpu_{}_pct={cpu_20:.2} tick_wait_ms={tick_wait:.0} detect_ms={detect:.0} claim_ms={claim:.0} launch_ms={launch:.0} register_ms={register:.0} trials={}",
        reaction_ms / start_ms,
        args.managed,
        args.managed,
        reactions.len()
    ))
}
