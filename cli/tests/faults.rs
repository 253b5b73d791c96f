//! Faults and bad input against real agents (`gru join` processes), a real etcd and the
//! Docker engine:
//!
//! * an agent killed (kill -9) at every stage of a container start, then restarted under
//!   the same name;
//! * configuration documents written into etcd around the CLI: malformed, wrong types,
//!   huge, deeply nested, deleted;
//! * a container printing thousands of malformed `gru:` lines a second among valid ones;
//! * oversized and random bodies on every POST route of a running agent;
//! * credentials (missing, wrong, replayed) on every state-changing route, the routes read
//!   from the router's source, and on the answers of a (fake) gossip friend; neither the
//!   etcd password nor the cluster's real secret in any help (the binary's or the shell's,
//!   with the secret read), nor in the agent's debug log.
//!
//! Each test prints its figures (for docs/reliability.md).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use gru_agent::gossip::NodeReport;
use gru_agent::gossip::digest::Answer as DigestAnswer;
use gru_agent::gossip::wire::{self, Body, GossipMessage};
use gru_agent::http::{API_PREFIX, MAX_BODY_BYTES};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use support::agents::Agent;
use support::cluster::{Cluster, registered};
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::docker_rm;
use support::{epoch_ms, tail};
use testkit::{
    ChildGuard, ClusterContainers, Component, EtcdCluster, http_get, require,
    require_workload_image, wait_until,
};

/// `config.json` of these tests: 1 s loops, a 2 s lease (a killed agent's records vanish
/// soon), log reading on.
const CONFIG: &str = r#"{
    "Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "greedy", "EnableLogReading": true},
    "Discovery": {"TTL": 2}
}"#;

// ---------------------------------------------------------------------------------------
// Helpers: the agent's API, its log and process, the cluster's containers, raw HTTP.

fn get_json(agent: &Agent, path: &str) -> Value {
    let (status, body) = http_get(agent.port, path)
        .unwrap_or_else(|| panic!("no answer to GET {path}:\n{}", tail(&agent.log_text(), 40)));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn log_len(agent: &Agent) -> u64 {
    std::fs::metadata(&agent.log).map(|m| m.len()).unwrap_or(0)
}

/// Waits until `needle` shows in the agent's log after byte `from`; when it was seen.
/// Polls every 2 ms: the tests kill the agent at moments measured from such a line.
fn wait_for_log(agent: &Agent, from: u64, needle: &str, timeout: Duration) -> Option<Instant> {
    let started = Instant::now();
    let mut file = std::fs::File::open(&agent.log).unwrap();
    let mut seen = Vec::new();
    loop {
        file.seek(SeekFrom::Start(from + seen.len() as u64))
            .unwrap();
        file.read_to_end(&mut seen).unwrap();
        if String::from_utf8_lossy(&seen).contains(needle) {
            return Some(Instant::now());
        }
        if started.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A flag that tells a helper thread to stop; set when dropped, also when the test panics.
#[derive(Debug, Clone, Default)]
struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sets the flag when dropped.
#[derive(Debug)]
struct StopOnDrop(StopFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// One container of the cluster as `docker ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    id: String,
    instance: String,
    service: String,
    state: String,
}

/// Every container of the cluster, in any state, in one `docker ps` (a failing `docker`
/// fails the test: it must never read as no containers).
fn listed(containers: &ClusterContainers) -> Vec<Listed> {
    let out = testkit::docker_must(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=org.gru.cluster={}", containers.cluster),
        "--format",
        "{{.ID}}|{{.Label \"org.gru.instance\"}}|{{.Label \"org.gru.service\"}}|{{.State}}",
    ]);
    out.lines()
        .filter_map(|line| {
            let mut parts = line.split('|');
            Some(Listed {
                id: parts.next()?.to_owned(),
                instance: parts.next()?.to_owned(),
                service: parts.next()?.to_owned(),
                state: parts.next()?.to_owned(),
            })
        })
        .collect()
}

/// The cluster's containers of `service` settled as they must be: none created, exited or
/// otherwise not running, instance labels unique, between `min` and `max` of them, and the
/// discovery records exactly the running instances. The running instances, or what is
/// still off. Duplicate instance labels fail the test at once: no wait mends them.
fn settled(
    etcd: &EtcdCluster,
    containers: &ClusterContainers,
    service: &str,
    (min, max): (usize, usize),
) -> Result<BTreeSet<String>, String> {
    let all = listed(containers);
    let mut labels = BTreeMap::<&str, usize>::new();
    for container in &all {
        *labels.entry(container.instance.as_str()).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = labels.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate instance labels: {all:?}");
    let off: Vec<&Listed> = all.iter().filter(|c| c.state != "running").collect();
    if !off.is_empty() {
        return Err(format!("containers not running: {off:?}"));
    }
    let running: BTreeSet<String> = all
        .iter()
        .filter(|c| c.service == service)
        .map(|c| c.instance.clone())
        .collect();
    let records: BTreeSet<String> = registered(etcd, &containers.cluster, service)
        .into_iter()
        .map(|(instance, _)| instance)
        .collect();
    if records != running {
        return Err(format!("records {records:?} != running {running:?}"));
    }
    if !(min..=max).contains(&running.len()) {
        return Err(format!("{} running, not in [{min}, {max}]", running.len()));
    }
    Ok(running)
}

/// Waits for [`settled`]; how long it took and the running instances.
fn wait_settled(
    etcd: &EtcdCluster,
    containers: &ClusterContainers,
    service: &str,
    bounds: (usize, usize),
    timeout: Duration,
    agent: &Agent,
) -> (Duration, BTreeSet<String>) {
    let started = Instant::now();
    loop {
        match settled(etcd, containers, service, bounds) {
            Ok(running) => return (started.elapsed(), running),
            Err(why) if started.elapsed() > timeout => panic!(
                "not settled within {timeout:?}: {why}\n--- agent log\n{}",
                tail(&agent.log_text(), 40)
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Writes `value` under `key` with etcdctl reading it from standard input (a value of a
/// mebibyte does not fit in one command-line argument).
fn etcd_put(etcd: &EtcdCluster, key: &str, value: &[u8]) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints()))
        .args(["put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl put {key} ({} bytes): {}",
        value.len(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One HTTP/1.1 request written as is (`Connection: close`); the status, or `None` when no
/// status line came back. The server may answer before reading the whole body (413): the
/// write error is ignored, the answer is what counts.
fn raw_request(port: u16, head: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    // One write: with the body in a second one, Nagle holds it until the head is acked,
    // and a server that answers from the head alone (401, 503) may close before it lands;
    // the late bytes then draw a reset that can discard the answer before it is read.
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    let _ = stream.write_all(&request);
    let mut raw = Vec::new();
    let mut buf = [0_u8; 8192];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// `POST path` with `headers` and a `Content-Length` body.
fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> Option<u16> {
    request(port, "POST", path, headers, body)
}

/// `Name: value\r\n` for each header.
fn header_lines(headers: &[(&str, String)]) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect()
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<u16> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{}",
        header_lines(headers)
    );
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    raw_request(port, &head, body)
}

/// Request headers, name and value.
type Headers = Vec<(&'static str, String)>;

fn bearer(token: &str) -> Headers {
    vec![("Authorization", format!("Bearer {token}"))]
}

/// Gossip credentials for `body`: a timestamp, a nonce, and the HMAC under `key`.
fn signed(key: &str, at_ms: u64, nonce: &str, body: &[u8]) -> Headers {
    let at = at_ms.to_string();
    vec![
        (wire::HEADER_TIMESTAMP, at.clone()),
        (wire::HEADER_NONCE, nonce.to_owned()),
        (wire::HEADER_SIGNATURE, wire::sign(key, &at, nonce, body)),
    ]
}

/// `gru_log_lines_total{result=...}` from the agent's `/metrics`.
fn log_lines_counter(agent: &Agent, result: &str) -> u64 {
    let (_, text) = http_get(agent.port, "/metrics").unwrap_or_default();
    let prefix = format!("gru_log_lines_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// 1. An agent killed while a container start is in flight.

/// When, during a start, the agent is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This many milliseconds after the line that precedes the start.
    AfterLine(u64),
    /// As soon as the engine reports the container created.
    AtCreate,
}

/// What asks for the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// MinInstances: the test removes instances below it, the agent's floor starts one.
    Floor,
    /// An operator's `start-service` command.
    Command,
}

impl Trigger {
    /// The agent's log line just before the start.
    fn line(self) -> &'static str {
        match self {
            Trigger::Floor => "claiming a start to restore MinInstances",
            Trigger::Command => "command received",
        }
    }
}

const MOMENTS: [Moment; 6] = [
    Moment::AfterLine(0),
    Moment::AfterLine(50),
    Moment::AfterLine(100),
    Moment::AfterLine(200),
    Moment::AfterLine(400),
    Moment::AtCreate,
];

/// Where in a start the kills must land, each at least once: before the container exists,
/// between the engine's create and start, and after the start but before the instance's
/// discovery record. The [`MOMENTS`] aim at them, but a kill lands where the agent happens
/// to be (its log lines and the engine's speed decide), so the test counts where each one
/// landed from what the kill left.
const KILL_POINTS: [&str; 3] = [
    "killed before the container was created",
    "created, not started",
    "started, not in discovery",
];

/// Rounds of kills at most: every moment with both triggers once, then, while a kill point
/// was missed, the same schedule again (a point is missed in one pass now and then on a
/// busy machine), up to once more.
const MAX_KILL_ROUNDS: usize = 4 * MOMENTS.len();

/// `docker events` of the cluster's containers: (when read, action).
struct DockerEvents {
    _process: ChildGuard,
    events: mpsc::Receiver<(Instant, String)>,
}

impl DockerEvents {
    fn follow(cluster: &str) -> DockerEvents {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("label=org.gru.cluster={cluster}"),
                "--filter",
                "type=container",
                "--format",
                "{{.Action}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        // `docker events` subscribes as it starts: give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        DockerEvents {
            _process: ChildGuard::new(child),
            events,
        }
    }

    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits for the next `action` event.
    fn wait(&self, action: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok((at, seen)) if seen == action => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// Expected: an agent killed (kill -9) while it starts a container, for MinInstances or an
/// operator's `start-service`, and restarted under the same name leaves no duplicate
/// instance, nothing `created` or exited, the count back to what was asked and the discovery
/// records equal to the running containers. The kills must have landed at every one of the
/// [`KILL_POINTS`] at least once, or the test says where none did.
#[test]
fn an_agent_killed_during_a_container_start_leaves_no_duplicate_or_orphan_after_restart() {
    let test =
        "an_agent_killed_during_a_container_start_leaves_no_duplicate_or_orphan_after_restart";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const MIN: usize = 2;
    const MAX: usize = 3;
    let config = TestConfig::new(CONFIG, QUIET_POLICY);
    config.service(
        "web",
        &format!(r#""MinInstances": {MIN}, "MaxInstances": {MAX},"#),
        testkit::free_port_range(10),
    );
    let bed = Cluster::start("inflight", config);
    let cluster = &bed.name;
    let events = DockerEvents::follow(&bed.name);
    let mut agent = bed.spawn("n1");
    wait_settled(
        &bed.etcd,
        &bed.containers,
        "web",
        (MIN, MIN),
        Duration::from_secs(30),
        &agent,
    );

    let mut outcomes = BTreeMap::<String, u32>::new();
    let mut slowest = Duration::ZERO;
    let mut kills = 0;
    for round in 0..MAX_KILL_ROUNDS {
        let every_point_hit = KILL_POINTS.iter().all(|p| outcomes.contains_key(*p));
        if round >= 2 * MOMENTS.len() && every_point_hit {
            break;
        }
        let moment = MOMENTS[(round / 2) % MOMENTS.len()];
        let trigger = if round % 2 == 0 {
            Trigger::Floor
        } else {
            Trigger::Command
        };
        let before: Vec<Listed> = listed(&bed.containers);
        let offset = log_len(&agent);
        events.drain();
        // The instances before the start (the new one is told apart from them).
        let survivors: BTreeSet<String> = match trigger {
            Trigger::Floor => {
                // Below MinInstances: the agent's next tick claims and starts one.
                let (victims, kept) = before.split_at(before.len() - (MIN - 1));
                let ids: Vec<&str> = victims.iter().map(|c| c.id.as_str()).collect();
                docker_rm(&ids);
                kept.iter().map(|c| c.instance.clone()).collect()
            }
            Trigger::Command => {
                if before.len() == MAX {
                    docker_rm(&[before[0].id.as_str()]);
                    wait_settled(
                        &bed.etcd,
                        &bed.containers,
                        "web",
                        (MIN, MIN),
                        Duration::from_secs(10),
                        &agent,
                    );
                }
                let kept = listed(&bed.containers)
                    .into_iter()
                    .map(|c| c.instance)
                    .collect();
                let (status, body) = testkit::http_request(
                    agent.port,
                    "POST",
                    "/gru/v1/commands",
                    Some(&bed.secret),
                    Some(r#"{"name":"start-service","service":"web"}"#),
                )
                .expect("the agent answers");
                assert_eq!(status, 202, "{body}");
                kept
            }
        };

        // Kill -9 at the chosen moment of the start.
        let due = match moment {
            Moment::AfterLine(ms) => {
                wait_for_log(&agent, offset, trigger.line(), Duration::from_secs(15))
                    .map(|seen| seen + Duration::from_millis(ms))
            }
            Moment::AtCreate => events.wait("create", Duration::from_secs(15)),
        };
        let due = due.unwrap_or_else(|| {
            panic!(
                "round {round}: no start to interrupt ({trigger:?}, {moment:?})\n{}",
                tail(&agent.log_text(), 40)
            )
        });
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        agent.kill9();
        kills += 1;

        // What the kill left, once the engine finished what it was asked.
        std::thread::sleep(Duration::from_millis(500));
        let records: BTreeSet<String> = registered(&bed.etcd, &bed.name, "web")
            .into_iter()
            .map(|(instance, _)| instance)
            .collect();
        let new: Vec<Listed> = listed(&bed.containers)
            .into_iter()
            .filter(|c| !survivors.contains(&c.instance))
            .collect();
        let outcome = match new.as_slice() {
            [] => "killed before the container was created".to_owned(),
            [c] if c.state == "created" => "created, not started".to_owned(),
            [c] if c.state == "running" && !records.contains(&c.instance) => {
                "started, not in discovery".to_owned()
            }
            [c] if c.state == "running" => "started and in discovery".to_owned(),
            [c] => format!("left {}", c.state),
            _ => panic!("round {round}: more than one new container after the kill: {new:?}"),
        };
        *outcomes.entry(outcome.clone()).or_insert(0) += 1;

        // The same node name is free once the dead agent's lease has expired.
        let gone = wait_until(Duration::from_secs(15), || {
            bed.etcd
                .keys(&format!("/gru/{cluster}/nodes/n1/"))
                .is_empty()
        });
        assert!(
            gone.is_some(),
            "round {round}: the dead agent's lease stayed"
        );
        let restarted = Instant::now();
        agent = bed.spawn("n1");
        let bounds = match trigger {
            Trigger::Floor => (MIN, MIN),
            Trigger::Command => (MIN, MAX),
        };
        let (_, running) = wait_settled(
            &bed.etcd,
            &bed.containers,
            "web",
            bounds,
            Duration::from_secs(30),
            &agent,
        );
        let took = restarted.elapsed();
        slowest = slowest.max(took);
        // A second later nothing moved: no late start, no late removal.
        std::thread::sleep(Duration::from_secs(1));
        let again = settled(&bed.etcd, &bed.containers, "web", bounds)
            .unwrap_or_else(|why| panic!("round {round}: unsettled again: {why}"));
        assert_eq!(
            again, running,
            "round {round}: instances changed after settling"
        );
        println!(
            "in-flight start round {round}: {trigger:?} start, killed at {moment:?}: {outcome}; \
             settled {:.1} s after the restart with {} instances",
            took.as_secs_f64(),
            running.len()
        );
    }
    let landed = outcomes
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect::<Vec<_>>()
        .join(", ");
    testkit::figure(
        test,
        "in-flight start kills",
        format!(
            "in-flight start: {kills} kills ({landed}), 0 duplicates, 0 orphans (created or \
         exited), records = running containers within {:.1} s of every restart",
            slowest.as_secs_f64()
        ),
    );
    let missed: Vec<&str> = KILL_POINTS
        .into_iter()
        .filter(|p| !outcomes.contains_key(*p))
        .collect();
    assert!(
        missed.is_empty(),
        "no kill landed at {missed:?} in {kills} kills ({landed}): the test did not interrupt \
         a start there"
    );
    drop(agent);
    drop(events);
    drop(bed);
}

// ---------------------------------------------------------------------------------------
// 2. Documents written straight into etcd.

/// A bad document: written under `key` (relative to `/gru/<cluster>/`), or `None` to delete
/// it; the reason must name `file`.
struct BadDocument {
    what: &'static str,
    key: &'static str,
    value: Option<Vec<u8>>,
    file: &'static str,
}

fn bad_documents(good_web: &Value) -> Vec<BadDocument> {
    let mut huge_web = good_web.clone();
    huge_web["Image"] = json!("a".repeat(1 << 20));
    // evalexpr parses both recursively: the nesting overflowed a 2 MiB thread stack (an
    // agent's worker) in a release build before expressions were bounded; the long sum
    // is the bound's plain case.
    let long_expr = vec!["cpu_avg"; 6000].join(" + ");
    let nested_expr = format!("{}cpu_avg{}", "(".repeat(10_000), ")".repeat(10_000));
    let bad = |what, key, value: &[u8], file| BadDocument {
        what,
        key,
        value: Some(value.to_vec()),
        file,
    };
    vec![
        bad(
            "config: malformed JSON",
            "config",
            br#"{"Autonomic": {"LoopTimeInterval": 1,"#,
            "config.json",
        ),
        bad(
            "config: wrong type",
            "config",
            br#"{"Autonomic": {"LoopTimeInterval": "soon"}}"#,
            "config.json",
        ),
        bad(
            "config: 60 KB of nested arrays",
            "config",
            "[".repeat(60_000).as_bytes(),
            "config.json",
        ),
        bad(
            "config: 1 MiB of junk",
            "config",
            &vec![b'x'; 1 << 20],
            "config.json",
        ),
        bad(
            "policy: wrong types",
            "policy",
            br#"{"Scaleout": {"Enable": "yes", "Threshold": [1]}}"#,
            "policy.json",
        ),
        bad(
            "policy: binary",
            "policy",
            b"\xff\xfe\x00\x01gru\x00",
            "policy.json",
        ),
        BadDocument {
            what: "policy: deleted",
            key: "policy",
            value: None,
            file: "policy.json",
        },
        bad(
            "service: wrong types",
            "services/web",
            br#"{"Name": "web", "Image": 42, "MinInstances": "two"}"#,
            "services/web.json",
        ),
        bad(
            "service: truncated",
            "services/web",
            br#"{"Name": "web", "Ima"#,
            "services/web.json",
        ),
        bad(
            "service: a 1 MiB image name",
            "services/web",
            huge_web.to_string().as_bytes(),
            "services/web.json",
        ),
        bad(
            "service: a new one without an image",
            "services/evil",
            br#"{"Name": "evil"}"#,
            "services/evil.json",
        ),
        bad(
            "analytic: wrong types",
            "analytics/cpu_load",
            br#"{"Name": "cpu_load", "Expr": 5, "Metrics": "cpu_avg"}"#,
            "analytics/cpu_load.json",
        ),
        bad(
            "analytic: an unlisted name",
            "analytics/cpu_load",
            br#"{"Name": "cpu_load", "Expr": "nosuch * 2", "Metrics": ["cpu_avg"]}"#,
            "analytics/cpu_load.json",
        ),
        bad(
            "analytic: 10,000 nested parentheses",
            "analytics/cpu_load",
            json!({"Name": "cpu_load", "Expr": nested_expr, "Metrics": ["cpu_avg"]})
                .to_string()
                .as_bytes(),
            "analytics/cpu_load.json",
        ),
        bad(
            "analytic: a 60 KB expression",
            "analytics/cpu_load",
            json!({"Name": "cpu_load", "Expr": long_expr, "Metrics": ["cpu_avg"]})
                .to_string()
                .as_bytes(),
            "analytics/cpu_load.json",
        ),
    ]
}

/// The line the agent logs when it refuses the documents in etcd.
const REFUSED_LINE: &str = "invalid configuration in etcd";

#[test]
fn documents_written_around_the_cli_leave_the_last_good_configuration_in_place() {
    let test = "documents_written_around_the_cli_leave_the_last_good_configuration_in_place";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG, QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 1, "MaxInstances": 3,"#,
        testkit::free_port_range(4),
    );
    let bed = Cluster::start("baddocs", config);
    let cluster = &bed.name;
    let key = |k: &str| format!("/gru/{cluster}/{k}");
    let good: BTreeMap<&str, String> = ["config", "policy", "services/web", "analytics/cpu_load"]
        .into_iter()
        .map(|k| (k, bed.etcd.etcdctl(&["get", "--print-value-only", &key(k)])))
        .map(|(k, v)| (k, v.trim_end().to_owned()))
        .collect();
    let good_web: Value = serde_json::from_str(&good["services/web"]).unwrap();
    let agent = bed.spawn("n1");
    let (_, instances) = wait_settled(
        &bed.etcd,
        &bed.containers,
        "web",
        (1, 1),
        Duration::from_secs(30),
        &agent,
    );

    let node = || get_json(&agent, "/gru/v1/node");
    let services = || get_json(&agent, "/gru/v1/services")["services"].clone();
    let shown_max = || services()["web"]["max_instances"].as_u64();
    let mut max = 3_u64;
    let mut slowest_refusal = Duration::ZERO;
    let mut slowest_pickup = Duration::ZERO;
    let cases = bad_documents(&good_web);
    for case in &cases {
        let before_node = node();
        let before_services = services();
        let refusals = agent.log_text().matches(REFUSED_LINE).count();
        let written = Instant::now();
        match &case.value {
            Some(value) => etcd_put(&bed.etcd, &key(case.key), value),
            None => {
                bed.etcd.etcdctl(&["del", &key(case.key)]);
            }
        }
        let refused = wait_until(Duration::from_secs(10), || {
            !node()["config"]["rejected"].is_null()
        });
        assert!(
            refused.is_some(),
            "{}: the agent did not refuse it\n{}",
            case.what,
            tail(&agent.log_text(), 40)
        );
        slowest_refusal = slowest_refusal.max(written.elapsed());
        let reason = node()["config"]["rejected"].as_str().unwrap().to_owned();
        assert!(
            reason.contains(case.file),
            "{}: the reason does not name {}: {reason}",
            case.what,
            case.file
        );
        assert!(
            reason.len() < 2048,
            "{}: a reason of {} bytes",
            case.what,
            reason.len()
        );
        // More reloads of the same documents: nothing new to say.
        for _ in 0..2 {
            let (status, body) = testkit::http_request(
                agent.port,
                "POST",
                "/gru/v1/commands",
                Some(&bed.secret),
                Some(r#"{"name":"update"}"#),
            )
            .unwrap();
            assert_eq!(status, 202, "{body}");
        }
        std::thread::sleep(Duration::from_millis(1500));
        let log = agent.log_text();
        assert_eq!(
            log.matches(REFUSED_LINE).count(),
            refusals + 1,
            "{}: not said exactly once\n{}",
            case.what,
            tail(&log, 40)
        );
        assert!(agent.healthy(), "{}: the agent is unhealthy", case.what);
        let after_node = node();
        assert_eq!(
            after_node["config"]["revision"], before_node["config"]["revision"],
            "{}: the configuration in use changed",
            case.what
        );
        assert_eq!(after_node["config"]["loaded"], true);
        assert_eq!(
            services(),
            before_services,
            "{}: the services changed",
            case.what
        );
        assert_eq!(
            settled(&bed.etcd, &bed.containers, "web", (1, 1)),
            Ok(instances.clone()),
            "{}: the instances changed",
            case.what
        );

        // The next good documents are picked up: the key's good value, then a change.
        let restored = Instant::now();
        match good.get(case.key) {
            Some(value) => etcd_put(&bed.etcd, &key(case.key), value.as_bytes()),
            None => {
                bed.etcd.etcdctl(&["del", &key(case.key)]);
            }
        }
        // Never the good document's own MaxInstances (3): seeing the new value must mean
        // the second put was read, not only the first (else the agent may load the second
        // while the next case is already under test, and its revision moves).
        max = if max == 4 { 5 } else { 4 };
        let mut web = good_web.clone();
        web["MaxInstances"] = json!(max);
        etcd_put(&bed.etcd, &key("services/web"), web.to_string().as_bytes());
        let picked = wait_until(Duration::from_secs(10), || {
            node()["config"]["rejected"].is_null() && shown_max() == Some(max)
        });
        assert!(
            picked.is_some(),
            "{}: the good documents after it were not picked up: {}\n{}",
            case.what,
            node(),
            tail(&agent.log_text(), 40)
        );
        slowest_pickup = slowest_pickup.max(restored.elapsed());
        println!(
            "bad document: {}: refused, said once: {}",
            case.what,
            &reason[..reason.len().min(160)]
        );
    }

    // An expression at the length bound, nested as deep as it can be: accepted, and
    // evaluated every tick on the agent's own threads.
    let depth = (1024 - "cpu_avg".len()) / 2;
    let nested = format!("{}cpu_avg{}", "(".repeat(depth), ")".repeat(depth));
    let analytic = json!({"Name": "cpu_load", "Expr": nested, "Metrics": ["cpu_avg"]});
    etcd_put(
        &bed.etcd,
        &key("analytics/cpu_load"),
        analytic.to_string().as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.healthy(), "a deeply nested expression hurt the agent");
    assert!(
        node()["config"]["rejected"].is_null(),
        "a valid expression at the bound was refused: {}",
        node()
    );
    assert!(
        agent.guard.0.is_some() && rss_mib(agent.guard.pid()).is_some(),
        "the agent process is gone"
    );
    testkit::figure(
        test,
        "bad documents",
        format!(
            "bad documents: {} written around the CLI, each refused within {:.1} s and said once, \
         the last good configuration and the instances kept; good documents picked up within \
         {:.1} s",
            cases.len(),
            slowest_refusal.as_secs_f64(),
            slowest_pickup.as_secs_f64()
        ),
    );
    drop(agent);
    drop(bed);
}

// ---------------------------------------------------------------------------------------
// 3. Malformed `gru:` lines at a high rate.

/// Makes sure the workload image has `MALFORMED_LINES_PER_SEC` (added with this test);
/// rebuilds it once if it predates it.
fn require_noisy_workload(test: &str) -> bool {
    if !require_workload_image(test) {
        return false;
    }
    let knows = || {
        let out = Command::new("docker")
            .args(["run", "--rm", testkit::WORKLOAD_IMAGE, "--help"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("MALFORMED_LINES_PER_SEC")
    };
    if !knows() {
        let script = support::root().join("scripts/build-images.sh");
        let out = Command::new(&script).arg("workload").output().unwrap();
        assert!(
            out.status.success(),
            "{} workload: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            knows(),
            "{} has no MALFORMED_LINES_PER_SEC",
            testkit::WORKLOAD_IMAGE
        );
    }
    true
}

#[test]
fn a_container_flooding_its_log_with_malformed_metric_lines_costs_the_agent_little() {
    let test = "a_container_flooding_its_log_with_malformed_metric_lines_costs_the_agent_little";
    if !require(test, Component::Etcd) || !require_noisy_workload(test) {
        return;
    }
    const RATE: u64 = 3000;
    const FLOOD: Duration = Duration::from_secs(20);
    let config = TestConfig::new(CONFIG, QUIET_POLICY);
    let (low, high) = testkit::free_port_range(2);
    std::fs::write(
        config.dir.path().join("services/web.json"),
        json!({
            "Name": "web", "Image": testkit::WORKLOAD_IMAGE, "DiscoveryPort": "8080",
            "Analytics": ["resp_time_ratio", "cpu_load"],
            "Constraints": {"MAX_RESP_TIME": 100},
            "MinInstances": 1, "MaxInstances": 1,
            "Configuration": {
                "Memory": "64m", "StopTimeout": 2,
                "Env": {"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5",
                        "MALFORMED_LINES_PER_SEC": RATE.to_string()},
                "Ports": {"8080": format!("{low}-{high}")}
            }
        })
        .to_string(),
    )
    .unwrap();
    let bed = Cluster::start("noisy", config);
    let agent = bed.spawn("n1");
    let pid = agent.guard.pid();
    wait_settled(
        &bed.etcd,
        &bed.containers,
        "web",
        (1, 1),
        Duration::from_secs(30),
        &agent,
    );
    let address = registered(&bed.etcd, &bed.name, "web")[0].1.clone();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();

    // Requests, so that the container also prints valid execution_time lines.
    let stop = StopOnDrop(StopFlag::default());
    let load = {
        let stop = stop.0.clone();
        std::thread::spawn(move || {
            let mut answered = 0_u32;
            while !stop.is_set() {
                if http_get(port, "/").is_some_and(|(s, _)| s == 200) {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            answered
        })
    };
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < FLOOD {
        assert!(
            agent.healthy(),
            "the agent stopped answering under the flood"
        );
        rss.push(rss_mib(pid).expect("the agent is alive"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let execution_time =
        get_json(&agent, "/gru/v1/stats")["services"]["web"]["metrics"]["execution_time"]["mean"]
            .as_f64();
    drop(stop);
    let answered = load.join().unwrap();
    let malformed = log_lines_counter(&agent, "malformed");
    let dropped = log_lines_counter(&agent, "dropped");
    let recorded = log_lines_counter(&agent, "recorded");
    let log = agent.log_text();
    let warnings = log.matches("malformed gru: metric lines").count();
    let flooded = started.elapsed().as_secs_f64();

    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let early = mean(&rss[..3]);
    let late = mean(&rss[rss.len() - 3..]);
    let peak = rss.iter().copied().fold(0.0, f64::max);
    testkit::figure(
        test,
        "malformed log lines",
        format!(
            "malformed log lines: {RATE}/s for {flooded:.0} s: {malformed} counted malformed, \
         {dropped} dropped, {recorded} valid lines recorded (execution_time mean {:.1} ms over \
         {answered} requests), {warnings} warning line(s); agent RSS {early:.1} → {late:.1} MiB \
         (peak {peak:.1})",
            execution_time.unwrap_or(f64::NAN)
        ),
    );
    assert!(
        execution_time.is_some_and(|ms| ms > 0.0),
        "the valid lines did not arrive:\n{}",
        get_json(&agent, "/gru/v1/stats")
    );
    assert!(recorded >= 5, "{recorded} valid lines recorded");
    let expected = RATE as f64 * FLOOD.as_secs_f64();
    assert!(
        (malformed + dropped) as f64 > 0.5 * expected,
        "{malformed} malformed + {dropped} dropped lines counted of ~{expected} printed"
    );
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warning lines for {malformed} malformed lines:\n{}",
        tail(&log, 40)
    );
    assert!(
        late - early < 16.0 && peak < 256.0,
        "the agent's memory grew under the flood: {rss:?}"
    );
    drop(agent);
    drop(bed);
}

// ---------------------------------------------------------------------------------------
// 4. Oversized and random bodies on the POST routes of a running agent.

/// One service `web` (MinInstances 0: no container needed) for a lone agent.
fn lone_config() -> TestConfig {
    let config = TestConfig::new(CONFIG, QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 0, "MaxInstances": 2,"#,
        testkit::free_port_range(2),
    );
    config
}

/// A body that is not what any route takes (or now and then is): random bytes, broken or
/// deep JSON, long strings, odd numbers.
fn random_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..7) {
        0 => (0..rng.random_range(0..4096))
            .map(|_| rng.random())
            .collect(),
        1 => {
            let depth = rng.random_range(1..30_000);
            let mut body = "[".repeat(depth).into_bytes();
            body.extend(std::iter::repeat_n(b']', depth));
            body
        }
        2 => format!("\"{}\"", "x".repeat(rng.random_range(0..60_000))).into_bytes(),
        3 => [
            "1e999",
            "-0",
            "NaN",
            "18446744073709551616",
            "1.5e-400",
            "true",
            "null",
        ][rng.random_range(0..7)]
        .as_bytes()
        .to_vec(),
        4 => format!(
            r#"{{"name": "{}", "service": {}}}"#,
            ["start", "update", "stop-service", "set-base-services", "x"][rng.random_range(0..5)],
            ["\"web\"", "\"../..\"", "42", "null", "[\"web\"]"][rng.random_range(0..5)]
        )
        .into_bytes(),
        5 => format!(
            r#"{{"from": "n{}", "reports": [{{"node": "{}", "version": {}, "services": {}}}]}}"#,
            rng.random_range(0..9),
            ["n2", "", "../x", "\u{0}"][rng.random_range(0..4)],
            ["1", "-1", "1e99", "\"v\""][rng.random_range(0..4)],
            ["{}", "[]", "{\"web\": {\"instances\": -5}}", "null"][rng.random_range(0..4)]
        )
        .into_bytes(),
        _ => Vec::new(),
    }
}

#[test]
fn oversized_and_random_bodies_on_every_post_route_are_refused_and_the_agent_stays_well() {
    let test =
        "oversized_and_random_bodies_on_every_post_route_are_refused_and_the_agent_stays_well";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let bed = Cluster::start("bodies", lone_config());
    let agent = bed.spawn("n1");
    let secret = bed.secret.clone();
    let pid = agent.guard.pid();
    let rss_before = rss_mib(pid).unwrap();
    let commands = "/gru/v1/commands";
    let push = "/gru/v1/stats/user/web/queue_len";
    let gossip = wire::GOSSIP_PATH;

    // Over the cap, with and without credentials, with a length or chunked.
    let over = vec![b' '; MAX_BODY_BYTES + 1];
    let gossip_over = vec![b' '; wire::MAX_MESSAGE_BYTES + 1];
    let gossip_credentials = signed(&secret, epoch_ms(), "over-1", &gossip_over);
    let cases: [(&str, Headers, &[u8], u16); 6] = [
        (commands, bearer(&secret), &over, 413),
        (push, bearer(&secret), &over, 413),
        (commands, vec![], &over, 401),
        (push, vec![], &over, 401),
        (gossip, gossip_credentials, &gossip_over, 413),
        // Refused from its headers, before the body is read (as the Bearer routes do).
        (gossip, vec![], &gossip_over, 401),
    ];
    for (path, headers, body, expected) in &cases {
        let status = post(agent.port, path, headers, body);
        assert_eq!(
            status,
            Some(*expected),
            "POST {path} with {} bytes",
            body.len()
        );
    }
    for path in [commands, push, gossip] {
        let cap = if path == gossip {
            wire::MAX_MESSAGE_BYTES
        } else {
            MAX_BODY_BYTES
        };
        // Gossip is refused from its headers unless they look right: give it fresh ones
        // (the signature, over an empty body, fails only once the body is in).
        let credentials: String = if path == gossip {
            header_lines(&signed(&secret, epoch_ms(), "chunked", b""))
        } else {
            format!("Authorization: Bearer {secret}\r\n")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{credentials}\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        let mut body = Vec::new();
        for _ in 0..(cap / 65_536 + 2) {
            body.extend_from_slice(b"10000\r\n");
            body.extend(std::iter::repeat_n(b' ', 65_536));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            raw_request(agent.port, &head, &body),
            Some(413),
            "chunked {path}"
        );
    }
    // A body shorter than announced, then silence: the connection is given up, the agent
    // goes on.
    for path in [commands, push, gossip] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nContent-Length: 1000\r\n\r\n"
        );
        let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(b"{\"name\":").unwrap();
        drop(stream);
    }

    // Gossip bodies that pass the header check are read at most MAX_CONCURRENT_BODIES at a
    // time: with that many held open (half sent), the next is refused 503 at once; once
    // they are gone, bodies are read again.
    let slow: Vec<TcpStream> = (0..wire::MAX_CONCURRENT_BODIES)
        .map(|i| {
            let credentials = header_lines(&signed(&secret, epoch_ms(), &format!("slow-{i}"), b""));
            let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
            let head = format!(
                "POST {gossip} HTTP/1.1\r\nHost: x\r\n{credentials}Content-Length: 100000\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&[b' '; 1000]).unwrap();
            stream
        })
        .collect();
    let mut answers = Vec::new();
    let busy = wait_until(Duration::from_secs(5), || {
        let status = post(
            agent.port,
            gossip,
            &signed(&secret, epoch_ms(), &format!("busy-{}", epoch_ms()), b"{}"),
            b"{}",
        );
        answers.push(status);
        status == Some(503)
    });
    answers.dedup();
    assert!(
        busy.is_some(),
        "{} gossip bodies held open, and another was still read (answers, repeats \
         folded: {answers:?})",
        wire::MAX_CONCURRENT_BODIES
    );
    drop(slow);
    let freed = wait_until(Duration::from_secs(5), || {
        post(
            agent.port,
            gossip,
            &signed(&secret, epoch_ms(), &format!("freed-{}", epoch_ms()), b"{}"),
            b"{}",
        ) == Some(400)
    });
    assert!(
        freed.is_some(),
        "gossip bodies not read again after the slow ones left"
    );

    // Random bodies with the right credentials, so that they reach the parsers.
    let mut rng = StdRng::seed_from_u64(0x6661_756c_7473); // "faults"
    let mut statuses = BTreeMap::<(&str, u16), u32>::new();
    for i in 0..600 {
        let body = random_body(&mut rng);
        let (path, headers) = match i % 3 {
            0 => (commands, bearer(&secret)),
            1 => (push, bearer(&secret)),
            _ => (
                gossip,
                signed(&secret, epoch_ms(), &format!("random-{i}"), &body),
            ),
        };
        let status = post(agent.port, path, &headers, &body)
            .unwrap_or_else(|| panic!("no answer to random body {i} on {path}"));
        let allowed: &[u16] = match path {
            "/gru/v1/commands" => &[202, 400, 404, 503],
            "/gru/v1/stats/user/web/queue_len" => &[200, 400, 429],
            _ => &[200, 400],
        };
        assert!(
            allowed.contains(&status),
            "random body {i} on {path} answered {status}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        *statuses.entry((path, status)).or_insert(0) += 1;
    }

    // Many unauthenticated gossip bodies of the largest size at once: read in full before
    // their signature can be checked (it covers the body), so memory rises while they last.
    let peak = Arc::new(std::sync::Mutex::new(rss_mib(pid).unwrap()));
    let done = StopOnDrop(StopFlag::default());
    let sampler = {
        let (peak, done) = (peak.clone(), done.0.clone());
        std::thread::spawn(move || {
            while !done.is_set() {
                if let Some(rss) = rss_mib(pid) {
                    let mut peak = peak.lock().unwrap();
                    *peak = peak.max(rss);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let port = agent.port;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let body = vec![b'{'; wire::MAX_MESSAGE_BYTES];
                (0..3)
                    .map(|_| post(port, gossip, &[], &body).unwrap_or(0))
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let flood: Vec<u16> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    drop(done);
    sampler.join().unwrap();
    assert!(
        flood.iter().all(|s| *s == 401),
        "unauthenticated gossip answered {flood:?}"
    );

    assert!(agent.healthy(), "the agent stopped answering");
    let (status, _) = testkit::http_request(
        agent.port,
        "POST",
        commands,
        Some(&secret),
        Some(r#"{"name":"update"}"#),
    )
    .unwrap();
    assert_eq!(status, 202, "a good command after the noise");
    let rss_after = rss_mib(pid).unwrap();
    let peak = *peak.lock().unwrap();
    testkit::figure(
        test,
        "bodies",
        format!(
            "bodies: oversized (length and chunked) 413, unauthenticated 401 before the body; \
         600 random bodies on 3 routes answered {statuses:?}; 24 unauthenticated 4 MiB gossip \
         bodies, 8 at a time: all 401, agent RSS peak {peak:.1} MiB; RSS {rss_before:.1} → \
         {rss_after:.1} MiB"
        ),
    );
    assert!(
        rss_after < 256.0,
        "the agent kept {rss_after:.1} MiB after the noise"
    );
    drop(agent);
    drop(bed);
}

// ---------------------------------------------------------------------------------------
// 5. Credentials on every state-changing route; no secret in help or logs.

/// The routes of the agent's router that take something other than GET, read from its
/// source (`agent/src/http/mod.rs`), as (method, full path).
fn state_changing_routes() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(support::root().join("agent/src/http/mod.rs")).unwrap();
    let nested_from = source
        .find("let api = Router::new()")
        .expect("the nested API router");
    let nested_to = nested_from + source[nested_from..].find(';').unwrap();
    let mut routes = BTreeSet::new();
    let mut at = 0;
    while let Some(found) = source[at..].find(".route(") {
        let start = at + found + ".route(".len();
        let call = &source[start..];
        let path = call.split('"').nth(1).expect("a quoted path");
        // The route's handlers, up to the call's closing parenthesis.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("a closed route call");
        let handlers = &call[..end];
        let full = if (nested_from..nested_to).contains(&start) {
            format!("{API_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        for method in ["post", "put", "delete", "patch"] {
            let called = handlers
                .match_indices(&format!("{method}("))
                .any(|(i, _)| i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric());
            if called {
                routes.insert((method.to_uppercase(), full.clone()));
            }
        }
        at = start;
    }
    routes
}

#[test]
fn every_state_changing_route_refuses_missing_wrong_and_replayed_credentials() {
    let test = "every_state_changing_route_refuses_missing_wrong_and_replayed_credentials";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let bed = Cluster::start("creds", lone_config());
    let secret = bed.secret.clone();
    let created = support::expect_code(
        &bed.endpoints(),
        &[
            "token", "create", &bed.name, "--role", "operate", "--name", "ops",
        ],
        0,
    );
    let ops = gru_agent::signing::Signer::Token(
        common::auth::OperatorToken::parse(&String::from_utf8_lossy(&created.stdout)).unwrap(),
    );
    // At debug, the agent logs every request and every refusal.
    let agent = bed.agent("n1").rust_log("debug").spawn();
    let port = agent.port;

    let covered: BTreeSet<(String, String)> = [
        ("POST", "/gru/v1/commands"),
        ("POST", "/gru/v1/stats/user/{service}/{metric}"),
        ("POST", "/gru/v1/gossip"),
        ("POST", "/gru/v1/cluster/nodes/{node}/commands"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    let found = state_changing_routes();
    assert_eq!(
        found, covered,
        "the router's state-changing routes are not the ones this test covers: add a case"
    );

    // Bearer routes: missing, another scheme, wrong, near misses, right; then a replay.
    let wrong = "0".repeat(secret.len());
    let mut near_misses = vec![
        secret[..secret.len() - 1].to_owned(),
        format!("{secret}0"),
        secret.to_uppercase(),
        format!("{secret} {secret}"),
    ];
    near_misses.retain(|token| *token != secret);
    // The console's route passes a command to a node (here n1 itself) once the secret is
    // checked: after the first route stopped the loop, it starts it again.
    let bearer_routes: [(&str, &[u8], u16); 3] = [
        ("/gru/v1/commands", br#"{"name":"stop"}"#, 202),
        (
            "/gru/v1/cluster/nodes/n1/commands",
            br#"{"name":"start"}"#,
            202,
        ),
        ("/gru/v1/stats/user/web/queue_len", b"7", 200),
    ];
    let mut replays = Vec::new();
    for (path, body, ok) in bearer_routes {
        assert_eq!(post(port, path, &[], body), Some(401), "{path}: missing");
        let basic = vec![("Authorization", format!("Basic {secret}"))];
        assert_eq!(post(port, path, &basic, body), Some(401), "{path}: Basic");
        let elsewhere = vec![("X-Gru-Secret", secret.clone())];
        assert_eq!(
            post(port, path, &elsewhere, body),
            Some(401),
            "{path}: another header"
        );
        assert_eq!(
            post(port, path, &bearer(&wrong), body),
            Some(403),
            "{path}: wrong"
        );
        for token in &near_misses {
            assert_eq!(
                post(port, path, &bearer(token), body),
                Some(403),
                "{path}: a near miss of the secret"
            );
        }
        // Nothing refused took effect; the right request does.
        let effect = || match path {
            "/gru/v1/commands" => get_json(&agent, "/gru/v1/node")["active"] == false,
            "/gru/v1/cluster/nodes/n1/commands" => {
                get_json(&agent, "/gru/v1/node")["active"] == true
            }
            _ => get_json(&agent, "/gru/v1/stats")["services"]["web"]["pushed"]
                .get("queue_len")
                .is_some(),
        };
        assert!(!effect(), "{path}: a refused request took effect");
        assert_eq!(
            post(port, path, &bearer(&bed.secret), body),
            Some(ok),
            "{path}: right"
        );
        // A command is carried out by the loop, a moment after it was accepted.
        assert!(
            wait_until(Duration::from_secs(5), effect).is_some(),
            "{path}: the accepted request took no effect"
        );
        // The deprecated bearer form is the secret itself: the same request again is not a
        // replay the agent can tell apart (it has no timestamp or nonce).
        replays.push((path, post(port, path, &bearer(&bed.secret), body)));
        // A signed request (an operator token) is accepted once; the same request again
        // is refused as a replay, and so is one signed for another route.
        let signed_by_ops = ops.headers("POST", path, body, epoch_ms(), &format!("{path}-once"));
        assert_eq!(
            post(port, path, &signed_by_ops, body),
            Some(ok),
            "{path}: signed by a token"
        );
        assert_eq!(
            post(port, path, &signed_by_ops, body),
            Some(409),
            "{path}: a replayed signed request"
        );
        let elsewhere = ops.headers("POST", "/gru/v1/elsewhere", body, epoch_ms(), "moved");
        assert_eq!(
            post(port, path, &elsewhere, body),
            Some(403),
            "{path}: signed for another route"
        );
    }

    // Gossip: HMAC over method, path, timestamp, nonce and body.
    let message = &wire::seal(&mut GossipMessage {
        from: "n7".into(),
        body: Body::Push {
            reports: vec![NodeReport {
                node: "n7".into(),
                version: 1,
                services: Default::default(),
            }],
            wants: Vec::new(),
        },
    })[..];
    let gossip = wire::GOSSIP_PATH;
    let mut partial = signed(&bed.secret, epoch_ms(), "partial", message);
    partial.pop();
    let cases: [(&str, Headers, &[u8], u16); 7] = [
        ("missing", vec![], message, 401),
        ("a header missing", partial, message, 401),
        (
            "wrong key",
            signed(&wrong, epoch_ms(), "wrong-key", message),
            message,
            403,
        ),
        (
            "signed for another body",
            signed(&bed.secret, epoch_ms(), "other-body", b"{}"),
            message,
            403,
        ),
        (
            "stale",
            signed(&bed.secret, epoch_ms() - 120_000, "stale", message),
            message,
            409,
        ),
        (
            "from the future",
            signed(&bed.secret, epoch_ms() + 120_000, "future", message),
            message,
            409,
        ),
        (
            "right",
            signed(&bed.secret, epoch_ms(), "fresh", message),
            message,
            200,
        ),
    ];
    let mut right = Vec::new();
    for (what, headers, body, expected) in cases {
        assert_eq!(
            post(port, gossip, &headers, body),
            Some(expected),
            "gossip {what}"
        );
        if expected == 200 {
            right = headers;
        }
    }
    assert_eq!(
        post(port, gossip, &right, message),
        Some(409),
        "a replayed gossip message was accepted"
    );

    // Every other method on every route, without credentials: 401 where the route changes
    // state, 405 elsewhere; never served.
    let mut probed = 0;
    for path in [
        "/healthz",
        "/metrics",
        "/gru/v1/node",
        "/gru/v1/services",
        "/gru/v1/stats",
        "/gru/v1/analytics",
        "/gru/v1/policies",
        "/gru/v1/decisions",
        "/gru/v1/actions",
        "/gru/v1/shared",
        "/gru/v1/gossip",
        "/gru/v1/commands",
        "/gru/v1/stats/user/web/queue_len",
        "/gru/v1/history",
        "/gru/v1/cluster",
        "/gru/v1/sd",
        "/gru/v1/cluster/nodes/n1/commands",
        "/ui",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let route = if path.starts_with("/gru/v1/stats/user/") {
                "/gru/v1/stats/user/{service}/{metric}"
            } else if path.starts_with("/gru/v1/cluster/nodes/") {
                "/gru/v1/cluster/nodes/{node}/commands"
            } else {
                path
            };
            let expected = if covered.contains(&(method.to_owned(), route.to_owned())) {
                401
            } else {
                405
            };
            assert_eq!(
                request(port, method, path, &[], b"{}"),
                Some(expected),
                "{method} {path} without credentials"
            );
            probed += 1;
        }
    }

    let log = agent.log_text();
    assert!(
        log.contains("refused a state-changing request"),
        "{}",
        tail(&log, 40)
    );
    assert!(
        !log.contains(&bed.secret),
        "the secret is in the agent's debug log"
    );
    for token in near_misses.iter().chain([&wrong]) {
        assert!(
            !log.contains(token.as_str()),
            "a presented token is in the agent's debug log"
        );
    }
    testkit::figure(
        test,
        "credentials",
        format!(
            "credentials: {} state-changing routes (read from the router) each refuse missing (401), \
         wrong and near-miss (403) credentials; gossip refuses a missing header (401), a wrong \
         key or body (403), stale, future and replayed messages (409); {probed} \
         method/route pairs probed without credentials: 401 where state changes, else 405; \
         token-signed requests accepted once, their replays refused (409) and a signature for \
         another route refused (403); deprecated bearer replays answered {replays:?} (no \
         replay protection: the bearer value is the secret); neither the secret nor \
         presented tokens in the debug log",
            covered.len()
        ),
    );
    drop(agent);
    drop(bed);
}

/// What a fake friend answers to one gossip request.
#[derive(Debug, Clone)]
enum Answer {
    /// No credentials.
    Unsigned(Vec<u8>),
    /// Signed with `key`, dated `age_ms` ago, with `nonce`.
    Signed {
        key: String,
        age_ms: u64,
        nonce: String,
        body: Vec<u8>,
    },
    /// The very bytes of an earlier answer, again.
    Replay(usize),
}

/// A fake friend on a free port: answers each gossip request with the next of `answers`
/// (then 503), and sends the index of each answer on the channel once it is written. It
/// stops when the returned guard drops.
fn fake_friend(answers: Vec<Answer>) -> (u16, mpsc::Receiver<usize>, StopOnDrop) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    let stop = StopOnDrop(StopFlag::default());
    let stopping = stop.0.clone();
    std::thread::spawn(move || {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        while !stopping.is_set() {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // The request: its head, then as much body as it announces.
            let mut request = Vec::new();
            let mut buf = [0_u8; 8192];
            let complete = |r: &[u8]| {
                let text = String::from_utf8_lossy(r);
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    return false;
                };
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                body.len() >= length
            };
            while !complete(&request) {
                match stream.read(&mut buf) {
                    Ok(n @ 1..) => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let index = sent.len();
            let response = match answers.get(index) {
                None => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                Some(Answer::Replay(earlier)) => sent[*earlier].clone(),
                Some(answer) => {
                    let (headers, body) = match answer {
                        Answer::Unsigned(body) => (Vec::new(), body.clone()),
                        Answer::Signed {
                            key,
                            age_ms,
                            nonce,
                            body,
                        } => (signed(key, epoch_ms() - age_ms, nonce, body), body.clone()),
                        Answer::Replay(_) => unreachable!(),
                    };
                    let mut head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    head.push_str(&header_lines(&headers));
                    head.push_str("\r\n");
                    let mut response = head.into_bytes();
                    response.extend_from_slice(&body);
                    response
                }
            };
            let _ = stream.write_all(&response);
            drop(stream);
            sent.push(response);
            if tx.send(index).is_err() {
                return;
            }
        }
    });
    (port, rx, stop)
}

#[test]
fn gossip_answers_need_the_secret_too_and_are_accepted_once() {
    let test = "gossip_answers_need_the_secret_too_and_are_accepted_once";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let config = TestConfig::new(&config_for_agents(2), QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 0, "MaxInstances": 2,"#,
        testkit::free_port_range(2),
    );
    let bed = Cluster::start("answers", config);
    let cluster = &bed.name;
    let agent = bed.spawn("n1");

    // A friend's exchange is two requests: its answer to the digest announces "fake" at a
    // version (in its hot list), the agent asks for it, and the answer to that push
    // carries the report. The version tells which answer got in.
    let announce = |version: u64| {
        wire::seal(&mut GossipMessage {
            from: "fake".into(),
            body: Body::answer(&DigestAnswer {
                hot: vec![("fake".into(), version)],
                ..DigestAnswer::default()
            }),
        })
    };
    let report = |version: u64| {
        wire::seal(&mut GossipMessage {
            from: "fake".into(),
            body: Body::Reports(vec![NodeReport {
                node: "fake".into(),
                version,
                services: Default::default(),
            }]),
        })
    };
    let signed_answer = |key: &str, age_ms: u64, nonce: &str, body: Vec<u8>| Answer::Signed {
        key: key.to_owned(),
        age_ms,
        nonce: nonce.to_owned(),
        body,
    };
    let secret = bed.secret.as_str();
    // (the answers of one exchange, accepted)
    let script: Vec<(Vec<Answer>, bool)> = vec![
        (vec![Answer::Unsigned(announce(100))], false),
        (
            vec![
                signed_answer(secret, 0, "a1", announce(101)),
                signed_answer("0f0f0f", 0, "wrong-key", report(101)),
            ],
            false,
        ),
        (
            vec![
                signed_answer(secret, 0, "a2", announce(102)),
                signed_answer(secret, 120_000, "stale", report(102)),
            ],
            false,
        ),
        (
            vec![
                signed_answer(secret, 0, "genuine", announce(5)),
                signed_answer(secret, 0, "genuine-report", report(5)),
            ],
            true,
        ),
        // The genuine announcement's very bytes again (answer 5 of the whole script).
        (vec![Answer::Replay(5)], false),
        (
            vec![signed_answer(
                secret,
                0,
                "junk",
                b"{\"reports\": 7}".to_vec(),
            )],
            false,
        ),
    ];
    let (port, answered, stop) = fake_friend(
        script
            .iter()
            .flat_map(|(answers, _)| answers.iter().cloned())
            .collect(),
    );
    let node_key = |field: &str| format!("/gru/{cluster}/nodes/fake/{field}");
    let stats = || get_json(&agent, "/gru/v1/gossip");
    let base = stats()["stats"].clone();
    bed.etcd.etcdctl(&[
        "put",
        &node_key("config"),
        &json!({"Name": "fake", "Address": "127.0.0.1", "Port": port}).to_string(),
    ]);
    bed.etcd.etcdctl(&["put", &node_key("active"), "true"]);

    let count = |view: &Value, field: &str| {
        view["stats"][field].as_u64().unwrap() - base[field].as_u64().unwrap()
    };
    let mut refused = 0;
    let mut request = 0;
    for (index, (answers, accepted)) in script.iter().enumerate() {
        for _ in answers {
            let seen = answered
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no gossip request for answer {request}"));
            assert_eq!(seen, request);
            request += 1;
        }
        let answer = answers.last();
        let mut view = stats();
        let recorded = wait_until(Duration::from_secs(5), || {
            view = stats();
            count(&view, "sent") > index as u64
        });
        assert!(recorded.is_some(), "exchange {index} not recorded: {view}");
        if !accepted {
            refused += 1;
        }
        assert_eq!(
            count(&view, "failed"),
            refused,
            "answer {index} ({answer:?}) was {}: {}",
            if *accepted { "refused" } else { "accepted" },
            view["stats"]
        );
        let version = view["reports"]["fake"]["version"].as_u64();
        assert!(
            version.is_none_or(|v| v == 5),
            "a refused answer reached the view: {}",
            view["reports"]
        );
        if *accepted {
            assert_eq!(version, Some(5), "the genuine answer is not in the view");
        }
    }
    bed.etcd
        .etcdctl(&["del", "--prefix", &format!("/gru/{cluster}/nodes/fake/")]);
    drop(stop);
    testkit::figure(
        test,
        "gossip answers",
        format!(
            "gossip answers: {} scripted answers of a friend; unsigned, wrong key, stale, replayed \
         and malformed ones refused ({refused}), the genuine one merged once",
            script.len()
        ),
    );
    drop(agent);
    drop(bed);
}

/// Expected: no help or version output shows the etcd password or the cluster's secret,
/// with both at hand. The password is the one the commands authenticate with, in
/// `ETCD_PASSWORD` (clap prints the values of the variables it reads in help unless told
/// not to), against an etcd that requires it. The secret is the real one, which lives
/// only in etcd (`/gru/<cluster>/secret`, written by `gru create`, read by `gru join` and
/// by `gru manage` as it starts using a cluster): `gru manage --cluster` and `use` read it
/// into the session before the shell's `help` runs, for every command, in text and JSON.
/// The clap helps are asked with the cluster named where a command takes one.
#[test]
fn help_never_shows_the_etcd_password_or_the_cluster_secret() {
    let test = "help_never_shows_the_etcd_password_or_the_cluster_secret";
    if !require(test, Component::Etcd) {
        return;
    }
    let password = "pw-5f0e8c1d9a7b";
    let cluster = "helpful";
    let etcd = EtcdCluster::start();
    etcd.etcdctl(&["user", "add", &format!("root:{password}")]);
    etcd.etcdctl(&["auth", "enable"]);
    let endpoints = etcd.endpoints();
    let as_root = || {
        let mut gru = support::gru(&endpoints);
        gru.env("ETCD_USER", "root").env("ETCD_PASSWORD", password);
        gru
    };
    let created = as_root().args(["create", cluster]).output().unwrap();
    assert!(created.status.success(), "{}", support::text(&created));
    let secret = testkit::etcdctl_at(
        &endpoints,
        &[
            &format!("--user=root:{password}"),
            "get",
            "--print-value-only",
            &format!("/gru/{cluster}/secret"),
        ],
    )
    .unwrap()
    .trim()
    .to_owned();
    assert_eq!(secret.len(), 64, "the cluster's secret: {secret:?}");
    let shows_neither = |what: &str, out: &std::process::Output| {
        let all = support::text(out);
        assert!(!all.contains(password), "{what} shows the password\n{all}");
        assert!(!all.contains(&secret), "{what} shows the secret\n{all}");
        all
    };
    shows_neither("gru create", &created);

    // The binary's own help (clap), with every variable set.
    let helps: [&[&str]; 15] = [
        &["--help"],
        &["-h"],
        &["help"],
        &["join", "--help"],
        &["join", cluster, "--help"],
        &["help", "join"],
        &["create", "--help"],
        &["manage", "--help"],
        &["manage", "--cluster", cluster, "--help"],
        &["config", "--help"],
        &["config", "push", "--help"],
        &["config", "validate", "--help"],
        &["config", "get", "--help"],
        &["config", "get", cluster, "--help"],
        &["--version"],
    ];
    for args in helps {
        let out = as_root().args(args).output().unwrap();
        let all = shows_neither(&format!("gru {args:?}"), &out);
        assert_eq!(out.status.code(), Some(0), "gru {args:?}\n{all}");
    }
    // The variable is documented, its value hidden.
    let out = as_root().args(["join", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ETCD_PASSWORD"));

    // The shell's help, once the session holds the secret: every command's, in text and
    // JSON, on a cluster given by --cluster and by `use`, and a mistyped `help`.
    let manage = |args: &[&str]| as_root().arg("manage").args(args).output().unwrap();
    let listing = manage(&["--cluster", cluster, "-c", "help"]);
    let all = shows_neither("gru manage -c help", &listing);
    assert_eq!(listing.status.code(), Some(0), "{all}");
    let verbs: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(
        verbs.len() >= 10 && verbs.iter().any(|v| v == "use"),
        "the shell's help lists {verbs:?}\n{all}"
    );
    let every_help: String = std::iter::once("help".to_owned())
        .chain(verbs.iter().map(|v| format!("help {v}")))
        .collect::<Vec<_>>()
        .join("; ");
    let use_then_help = format!("use {cluster}; {every_help}");
    let scripts = [
        (vec!["--cluster", cluster, "-c", every_help.as_str()], 0),
        (
            vec![
                "--cluster",
                cluster,
                "--output",
                "json",
                "-c",
                every_help.as_str(),
            ],
            0,
        ),
        (vec!["-c", use_then_help.as_str()], 0),
        (vec!["--cluster", cluster, "-c", "help hlep; hlep"], 64),
    ];
    let mut shell_helps = 0;
    for (args, code) in &scripts {
        let out = manage(args);
        let all = shows_neither(&format!("gru manage {args:?}"), &out);
        assert_eq!(out.status.code(), Some(*code), "gru manage {args:?}\n{all}");
        // The cluster was in use (its secret read) when the helps ran.
        let in_use = if args.contains(&"json") {
            format!(r#"{{"cluster":"{cluster}"}}"#)
        } else {
            format!("gru({cluster})> help")
        };
        assert!(
            all.contains(&in_use),
            "gru manage {args:?} did not use {cluster}\n{all}"
        );
        shell_helps += args.last().map_or(0, |s| s.split(';').count());
    }
    testkit::figure(
        test,
        "help outputs",
        format!(
            "help: {} help and version outputs of gru and {shell_helps} of its shell (with cluster \
         {cluster}'s secret read) show neither the etcd password nor the secret",
            helps.len() + 1
        ),
    );
}
