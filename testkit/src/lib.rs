//! Test harness for gru's integration tests: real components, started per test on free
//! loopback ports in a temporary directory, and stopped when the handle drops (also when
//! the test panics, because unwinding runs `Drop`).
//!
//! * [`Etcd`]: one throwaway etcd member; [`EtcdCluster`]: three members that can be killed
//!   one by one, restarted on their data, or paused (SIGSTOP, undone by [`PausedMember`]'s
//!   drop, so a failing test leaves no stopped process).
//! * [`require`]: a test that needs a component calls it first. If the component is missing
//!   the test fails with a message saying how to install it, unless `GRU_TEST_SKIP` names the
//!   component (`GRU_TEST_SKIP=etcd,docker`), in which case the skip is printed and the test
//!   returns early; on CI (`CI=true`) it fails instead ([`skip`]).
//! * [`figure`]: a figure a test measured, printed and collected into one file ([`figures`]).
//! * [`ClusterContainers`]: a test cluster's containers (a failing `docker` fails the test,
//!   it never reads as "no containers"), removed on drop; [`ContainerEvents`]: their start
//!   and death events from the engine, replayed into the running count at every moment.
//! * [`Registry`]: a throwaway image registry with basic auth (`docker-registry`).

mod container_events;
mod registry;
pub use registry::Registry;

pub use container_events::{
    ContainerAction, ContainerEvent, ContainerEvents, CountChange, Timeline, docker_must, epoch_ns,
    replay, seconds_between,
};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod browser;
pub mod figures;
pub mod skip;
pub use figures::{figure, target_dir};
pub use skip::skip_listed;

/// How long a fresh etcd may take to report healthy before the test gives up.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A real component an integration test can depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    Docker,
    /// The etcd command-line client (tests read and write etcd with it).
    Etcdctl,
    /// docker-compose (the compose topology).
    Compose,
    /// Chromium, driven headless over the DevTools protocol (the web console's test).
    Chromium,
    /// The Prometheus server (service discovery and scraping of the agents).
    Prometheus,
    /// An image registry (`docker-registry`) and `htpasswd` for its basic auth.
    Registry,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Docker => "docker",
            Component::Etcdctl => "etcdctl",
            Component::Compose => "compose",
            Component::Chromium => "chromium",
            Component::Prometheus => "prometheus",
            Component::Registry => "registry",
        }
    }

    fn how_to_get(self) -> &'static str {
        match self {
            Component::Etcd => {
                "install it with `scripts/install-deps.sh` (apt-get install etcd-server), or set ETCD_BIN"
            }
            Component::Docker => {
                "start a Docker engine (`scripts/dockerd.sh start`) or point DOCKER_HOST at one"
            }
            Component::Etcdctl => {
                "install it with `scripts/install-deps.sh` (apt-get install etcd-client)"
            }
            Component::Compose => {
                "install it with `scripts/install-deps.sh` (apt-get install docker-compose)"
            }
            Component::Chromium => {
                "install it with `scripts/install-deps.sh` (apt-get install --no-install-recommends chromium)"
            }
            Component::Prometheus => {
                "install it with `scripts/install-deps.sh` (apt-get install --no-install-recommends prometheus)"
            }
            Component::Registry => {
                "install them with `scripts/install-deps.sh` (apt-get install docker-registry apache2-utils)"
            }
        }
    }

    fn present(self) -> bool {
        match self {
            Component::Etcd => etcd_binary().is_some(),
            Component::Docker => succeeds("docker", &["info", "--format", "{{.ServerVersion}}"]),
            Component::Etcdctl => succeeds("etcdctl", &["version"]),
            Component::Compose => succeeds("docker-compose", &["version"]),
            Component::Chromium => succeeds(browser::CHROMIUM, &["--version"]),
            Component::Prometheus => succeeds("prometheus", &["--version"]),
            Component::Registry => {
                // `htpasswd -h` prints its usage and exits 2: that it runs is enough.
                succeeds("docker-registry", &["--version"])
                    && Command::new("htpasswd")
                        .arg("-h")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok()
            }
        }
    }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns `true` when the test may go on. A missing component fails the test with a
/// message that says how to get it, unless `GRU_TEST_SKIP` lists it: then the skip is
/// printed and `false` returned, and the test must return at once.
pub fn require(test: &str, component: Component) -> bool {
    if skip_listed(test, component.name()) {
        return false;
    }
    assert!(
        component.present(),
        "{test} needs {} and it is not available: {}; or set GRU_TEST_SKIP={} to skip such tests explicitly (not on CI)",
        component.name(),
        component.how_to_get(),
        component.name()
    );
    true
}

fn etcd_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// Where [`free_port`] looks: below Linux's default ephemeral range (32768-60999), so that
/// no outgoing connection (an agent's, an etcd member's) takes the port as its source port
/// between the check and the caller's bind, which an ephemeral port picked by the kernel
/// allowed (seen: an etcd member's "bind: address already in use").
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A free TCP port on 127.0.0.1 (bound then released; the caller binds it soon after).
pub fn free_port() -> u16 {
    free_port_range(1).0
}

/// `n` consecutive free TCP ports on 127.0.0.1, as `(low, high)`: each was bindable a
/// moment ago (for a service's `Ports` range in a test). Ports are handed out in turn from
/// a per-process random start, a range at once, so that no two calls of one test binary
/// (from any thread) get overlapping ports.
pub fn free_port_range(n: u16) -> (u16, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let n = u32::from(n.max(1));
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = nanos.wrapping_add(std::process::id().wrapping_mul(7919)) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let low = TEST_PORTS.start + NEXT.fetch_add(n, Ordering::Relaxed) % span;
        if low + n > TEST_PORTS.end {
            continue;
        }
        let free = (low..low + n)
            .all(|p| u16::try_from(p).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()));
        if free {
            let port = |p: u32| u16::try_from(p).expect("test ports fit in u16");
            return (port(low), port(low + n - 1));
        }
    }
    panic!("no {n} free TCP ports on 127.0.0.1 in {TEST_PORTS:?}");
}

/// One etcd member process. Killed (SIGKILL) and its data removed on drop.
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    data_dir: PathBuf,
    initial_cluster: String,
    token: String,
    /// Set while the process is stopped with SIGSTOP (shared with its [`PausedMember`]).
    paused: Arc<AtomicBool>,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// SIGKILL now; the member stays dead until [`EtcdMember::restart`] or the harness drops.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A stopped process dies from SIGKILL too; its guard must not signal the pid again.
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while the member runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts a killed member again on the same data directory and ports (a running one is
    /// killed first) and waits until its `/health` reports a healthy cluster; returns how
    /// long that took. The member keeps its identity, its data and the cluster's leases.
    pub fn restart(&mut self) -> Duration {
        self.kill();
        let started = Instant::now();
        self.child = Some(self.launch());
        while !etcd_healthy(self.client_port) {
            assert!(
                started.elapsed() < ETCD_READY_TIMEOUT,
                "etcd member {} did not become healthy within {:?} after a restart; its log ends with:\n{}",
                self.name,
                ETCD_READY_TIMEOUT,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }

    /// Stops the process with SIGSTOP: it keeps its sockets (connections are accepted by
    /// the kernel, nothing answers) until the returned guard is dropped or resumed (SIGCONT).
    pub fn pause(&self) -> PausedMember {
        let pid = self.pid().expect("pause a running etcd member");
        signal(pid, "-STOP");
        self.paused.store(true, Ordering::SeqCst);
        PausedMember {
            name: self.name.clone(),
            pid,
            paused: self.paused.clone(),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Running and not paused: a member that answers.
    pub fn is_serving(&self) -> bool {
        self.is_running() && !self.is_paused()
    }

    fn launch(&self) -> Child {
        let bin = etcd_binary().expect("etcd binary (call testkit::require first)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open etcd log file");
        let err_log = log.try_clone().expect("clone etcd log handle");
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        Command::new(bin)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            // Ignored by etcd when the data directory already holds a member (a restart).
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .expect("spawn etcd")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd member stopped with SIGSTOP; dropping this (or [`PausedMember::resume`]) sends
/// SIGCONT, also when the test panics.
#[derive(Debug)]
pub struct PausedMember {
    pub name: String,
    pid: u32,
    paused: Arc<AtomicBool>,
}

impl PausedMember {
    /// SIGCONT now.
    pub fn resume(self) {}
}

impl Drop for PausedMember {
    fn drop(&mut self) {
        // Only if the member was not killed meanwhile (its pid may be reused).
        if self.paused.swap(false, Ordering::SeqCst) {
            signal(self.pid, "-CONT");
        }
    }
}

fn signal(pid: u32, which: &str) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn spawn_member(
    dir: &Path,
    name: &str,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    token: &str,
) -> EtcdMember {
    let mut member = EtcdMember {
        name: name.to_owned(),
        client_port,
        peer_port,
        child: None,
        log_path: dir.join(format!("{name}.log")),
        data_dir: dir.join(format!("{name}.data")),
        initial_cluster: initial_cluster.to_owned(),
        token: token.to_owned(),
        paused: Arc::new(AtomicBool::new(false)),
    };
    member.child = Some(member.launch());
    member
}

/// Asks a member's `/health` endpoint; `true` when it reports a healthy cluster.
pub fn etcd_healthy(client_port: u16) -> bool {
    http_get(client_port, "/health")
        .map(|(status, body)| status == 200 && body.contains("\"health\":\"true\""))
        .unwrap_or(false)
}

/// Runs `etcdctl` (API v3) against `endpoints` (comma-separated; etcdctl's own deadlines:
/// 2 s to connect, 5 s per command): its stdout, or its stderr as the error. Usable from a
/// thread that samples etcd while the test kills or pauses members.
pub fn etcdctl_at(endpoints: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run etcdctl (apt-get install etcd-client): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Each key under `prefix` and the lease it lives under (0: none), in key order, read with
/// `etcdctl get -w json`: equal before and after a fault means no record was written again
/// under another lease.
pub fn key_leases(endpoints: &str, prefix: &str) -> Vec<(String, u64)> {
    let out = etcdctl_at(endpoints, &["get", "--prefix", prefix, "-w", "json"])
        .unwrap_or_else(|e| panic!("etcdctl get --prefix {prefix}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    doc["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    // The key as etcdctl's JSON gives it (base64): to compare, not to read.
                    let key = kv["key"].as_str().unwrap_or("");
                    (key.to_owned(), kv["lease"].as_u64().unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A plain HTTP/1.0 GET on 127.0.0.1: `(status, body)`, or `None` if nothing answered
/// within two seconds. Enough for health checks without an HTTP client dependency.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// One HTTP/1.0 request with optional bearer token and JSON body: `(status, body)`, or
/// `None` if nothing answered within five seconds.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    http_request_to(addr, Duration::from_secs(5), method, path, bearer, body)
}

/// [`http_request`] to any address (a container's, say), connecting, writing and reading
/// each within `timeout`.
pub fn http_request_to(
    addr: SocketAddr,
    timeout: Duration,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; returns how long it
/// took, or `None` on timeout.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A throwaway etcd cluster of one or more members on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    // Declared after `members` so the processes are killed before their data is removed.
    _dir: tempfile::TempDir,
}

/// A single-member cluster: the common case.
pub type Etcd = EtcdCluster;

impl EtcdCluster {
    /// Starts one member and waits until it is healthy.
    pub fn start() -> Self {
        Self::start_members(1)
    }

    /// Starts `n` members with a shared initial cluster and waits until all are healthy.
    pub fn start_members(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gru-test-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("gru-test-{}", std::process::id());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                spawn_member(
                    dir.path(),
                    &format!("m{i}"),
                    *client,
                    *peer,
                    &initial_cluster,
                    &token,
                )
            })
            .collect();
        let cluster = EtcdCluster { members, _dir: dir };
        cluster.wait_healthy();
        cluster
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        for member in &self.members {
            while !etcd_healthy(member.client_port) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} did not become healthy within {:?}; its log ends with:\n{}",
                    member.name,
                    ETCD_READY_TIMEOUT,
                    member.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The client URL of the first member.
    pub fn url(&self) -> String {
        self.members[0].client_url()
    }

    /// All client URLs, comma-separated: the form `--etcd` and `ETCD_ADDR` take.
    pub fn endpoints(&self) -> String {
        self.endpoints_where(|_, _| true)
    }

    /// The client URLs of every member but `member` (an index in [`EtcdCluster::members`]).
    pub fn endpoints_except(&self, member: usize) -> String {
        self.endpoints_where(|i, _| i != member)
    }

    fn endpoints_where(&self, keep: impl Fn(usize, &EtcdMember) -> bool) -> String {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| keep(*i, m))
            .map(|(_, m)| m.client_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `etcdctl` against this cluster's serving members (running, not paused) and
    /// returns its stdout (for checks that must not go through gru's own client).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let endpoints = self.serving_endpoints();
        match etcdctl_at(&endpoints, args) {
            Ok(out) => out,
            Err(err) => panic!("etcdctl {args:?} failed: {err}"),
        }
    }

    /// Client URLs of the members that answer (running, not paused), comma-separated.
    pub fn serving_endpoints(&self) -> String {
        self.endpoints_where(|_, m| m.is_serving())
    }

    /// The index in [`EtcdCluster::members`] of the current leader, as the serving members
    /// report it (`etcdctl endpoint status`); `None` while there is none.
    pub fn leader(&self) -> Option<usize> {
        let status = etcdctl_at(
            &self.serving_endpoints(),
            &["endpoint", "status", "-w", "fields"],
        )
        .ok()?;
        let (mut member, mut leader) = (None, None);
        for line in status.lines() {
            let Some((field, value)) = line.split_once(" : ") else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match field.trim().trim_matches('"') {
                "MemberID" => member = Some(value.to_owned()),
                "Leader" => leader = Some(value.to_owned()),
                "Endpoint" => {
                    if member.is_some() && member == leader {
                        return self.members.iter().position(|m| m.client_url() == value);
                    }
                    (member, leader) = (None, None);
                }
                _ => {}
            }
        }
        None
    }

    /// Every key and value under `prefix`, sorted by key, read with etcdctl.
    pub fn dump(&self, prefix: &str) -> Vec<(String, String)> {
        let text = self.etcdctl(&["get", "--prefix", prefix]);
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|kv| {
                (
                    kv[0].to_owned(),
                    kv.get(1).copied().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Keys under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A child process killed on drop (for `gru join` and other long-running commands).
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Takes the child out: the caller now owns its cleanup.
    pub fn take(&mut self) -> Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The image of the test workload (`workload/`), built by `scripts/build-images.sh`.
pub const WORKLOAD_IMAGE: &str = "gru-workload:latest";

/// Like [`require`] for Docker, and also makes sure [`WORKLOAD_IMAGE`] exists, building it
/// with `scripts/build-images.sh` once per test binary when it is missing. A failed build
/// fails the test with the script's output. `GRU_TEST_SKIP=workload` skips such tests.
pub fn require_workload_image(test: &str) -> bool {
    if skip_listed(test, "workload") || !require(test, Component::Docker) {
        return false;
    }
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", WORKLOAD_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            return Ok(());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
        let out = Command::new(&script)
            .args(["workload", "loadgen"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(why) = built {
        panic!("{test}: {WORKLOAD_IMAGE} is missing and could not be built:\n{why}");
    }
    true
}

/// Removes every container labelled `org.gru.cluster=<cluster>` when dropped (also when
/// the test panics), so a test leaves the engine as it found it.
#[derive(Debug)]
pub struct ClusterContainers {
    pub cluster: String,
}

impl ClusterContainers {
    /// A guard for a cluster name unique to this process and `tag`.
    pub fn unique(tag: &str) -> Self {
        Self {
            cluster: format!("t{}-{tag}", std::process::id()),
        }
    }

    /// Ids of the cluster's containers (any state, or those `extra_filter` keeps, e.g.
    /// `status=running`), in one `docker ps`. A `docker` that fails fails the test, naming
    /// the command and its stderr: an engine that does not answer is not an empty cluster.
    #[track_caller]
    pub fn ids(&self, extra_filter: Option<&str>) -> Vec<String> {
        match self.try_ids(extra_filter) {
            Ok(ids) => ids,
            Err(why) => panic!("{why}"),
        }
    }

    /// [`ClusterContainers::ids`], or what failed (the command and its stderr).
    pub fn try_ids(&self, extra_filter: Option<&str>) -> Result<Vec<String>, String> {
        let mut args = vec![
            "ps".to_owned(),
            "-aq".to_owned(),
            "--no-trunc".to_owned(),
            "--filter".to_owned(),
            format!("label=org.gru.cluster={}", self.cluster),
        ];
        if let Some(filter) = extra_filter {
            args.push("--filter".to_owned());
            args.push(filter.to_owned());
        }
        let command = format!("docker {}", args.join(" "));
        let out = Command::new("docker")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{command}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`{command}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }
}

impl Drop for ClusterContainers {
    fn drop(&mut self) {
        // No panic here: a drop may run while the test unwinds.
        let ids = match self.try_ids(None) {
            Ok(ids) => ids,
            Err(why) => {
                eprintln!(
                    "the containers of cluster {} may be left behind: {why}",
                    self.cluster
                );
                return;
            }
        };
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
