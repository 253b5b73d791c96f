//! Agents as `gru join` processes against a test etcd, the configurations they run, and
//! what the tests read back from Docker and etcd (running instances, discovery records).
//! Shared by the multi-agent tests (autonomic, coordination, faults).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use testkit::{ChildGuard, ClusterContainers, EtcdCluster, free_port, http_get, wait_until};

use super::{expect_code, gru};

/// `config.json` of the single-agent tests: 1 s loops, TTL 3 s, log reading on.
pub const CONFIG_ONE_SECOND_LOOPS: &str = r#"{
    "Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "greedy", "EnableLogReading": true},
    "Discovery": {"TTL": 3}
}"#;

/// `config.json` for several agents: 1 s loops, two friends per round, the given TTL.
pub fn config_for_agents(ttl: u32) -> String {
    format!(
        r#"{{"Autonomic": {{"LoopTimeInterval": 1, "PlannerStrategy": "greedy"}},
            "Communication": {{"LoopTimeInterval": 1, "MaxFriends": 2}},
            "Discovery": {{"TTL": {ttl}}}}}"#
    )
}

/// A policy that never scales by itself (operators and repairs only).
pub const QUIET_POLICY: &str = r#"{
    "Scaleout": {"Enable": false, "Threshold": 0.75},
    "Scalein":  {"Enable": false, "Threshold": 0.35},
    "Swap":     {"Enable": false, "Threshold": 0.6}
}"#;

/// A configuration directory: config.json, policy.json, the `resp_time_ratio` and
/// `cpu_load` analytics and the services added with [`TestConfig::service`].
pub struct TestConfig {
    pub dir: tempfile::TempDir,
}

impl TestConfig {
    pub fn new(config: &str, policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::create_dir_all(dir.path().join("analytics")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        std::fs::write(dir.path().join("policy.json"), policy).unwrap();
        std::fs::write(
            dir.path().join("analytics/resp_time_ratio.json"),
            r#"{"Name": "resp_time_ratio", "Expr": "execution_time / MAX_RESP_TIME",
                "Metrics": ["execution_time"], "Constraints": ["MAX_RESP_TIME"]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("analytics/cpu_load.json"),
            r#"{"Name": "cpu_load", "Expr": "cpu_avg", "Metrics": ["cpu_avg"]}"#,
        )
        .unwrap();
        Self { dir }
    }

    /// A workload service; `extra` holds more top-level fields, each followed by a comma
    /// (`"MinInstances": 1, "MaxInstances": 3,`); its port 8080 is published in `range`.
    pub fn service(&self, name: &str, extra: &str, range: (u16, u16)) -> &Self {
        let doc = format!(
            r#"{{
                "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio", "cpu_load"],
                "Constraints": {{"MAX_RESP_TIME": 100}},
                {extra}
                "Configuration": {{
                    "Memory": "64m", "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "20"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
            low = range.0,
            high = range.1
        );
        std::fs::write(self.dir.path().join(format!("services/{name}.json")), doc).unwrap();
        self
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// `gru create <cluster>` and `gru config push` of this directory.
    pub fn create_and_push(&self, etcd: &EtcdCluster, cluster: &str) {
        let e = etcd.endpoints();
        expect_code(&e, &["create", cluster], 0);
        expect_code(&e, &["config", "push", cluster, self.path()], 0);
    }
}

/// The cluster secret (Bearer for commands and stats, HMAC key for gossip).
pub fn secret(etcd: &EtcdCluster, cluster: &str) -> String {
    etcd.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("/gru/{cluster}/secret"),
    ])
    .trim()
    .to_owned()
}

/// One `gru join` process, killed when dropped; its stderr (RUST_LOG=info) goes to `log`.
pub struct Agent {
    pub node: String,
    pub port: u16,
    pub guard: ChildGuard,
    pub log: PathBuf,
}

impl Agent {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `gru join <cluster> --name <node> --start` on a free port, waited for until /healthz
/// answers.
pub fn spawn_agent(etcd: &EtcdCluster, cluster: &str, node: &str, log_dir: &Path) -> Agent {
    spawn_agent_with(&etcd.endpoints(), cluster, node, log_dir, true)
}

/// `gru join` against `endpoints`; with `start` false the loop waits for a `start` command.
pub fn spawn_agent_with(
    endpoints: &str,
    cluster: &str,
    node: &str,
    log_dir: &Path,
    start: bool,
) -> Agent {
    spawn(endpoints, cluster, node, log_dir, start, "info")
}

fn spawn(
    endpoints: &str,
    cluster: &str,
    node: &str,
    log_dir: &Path,
    start: bool,
    rust_log: &str,
) -> Agent {
    let port = free_port();
    let log = log_dir.join(format!("{node}-{port}.log"));
    let port_text = port.to_string();
    let mut args = vec![
        "join",
        cluster,
        "--name",
        node,
        "--port",
        &port_text,
        "--bind",
        "127.0.0.1",
        "--publish-ip",
        "127.0.0.1",
    ];
    if start {
        args.push("--start");
    }
    let child = gru(endpoints)
        .env("RUST_LOG", rust_log)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent {
        node: node.to_owned(),
        port,
        guard: ChildGuard::new(child),
        log,
    };
    let up = wait_until(Duration::from_secs(20), || {
        http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    assert!(
        up.is_some(),
        "agent {node} did not come up:\n{}",
        agent.log_text()
    );
    agent
}

/// Like [`spawn_agent_with`] (started), with the agent's log filtered by `rust_log` (e.g.
/// `debug`, to check what the agent would print at its most talkative).
pub fn spawn_agent_with_log_filter(
    endpoints: &str,
    cluster: &str,
    node: &str,
    log_dir: &Path,
    rust_log: &str,
) -> Agent {
    spawn(endpoints, cluster, node, log_dir, true, rust_log)
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Running containers of `service` in the cluster, by instance label.
pub fn running_instances(containers: &ClusterContainers, service: &str) -> BTreeSet<String> {
    containers
        .ids(Some(&format!("label=org.gru.service={service}")))
        .into_iter()
        .filter_map(|id| {
            let line = docker(&[
                "inspect",
                "--format",
                "{{.State.Running}} {{index .Config.Labels \"org.gru.instance\"}}",
                &id,
            ]);
            let (state, instance) = line.trim().split_once(' ')?;
            (state == "true").then(|| instance.to_owned())
        })
        .collect()
}

/// Running containers of the cluster: (id, node, created-at in ms since the epoch).
pub fn running_containers(containers: &ClusterContainers) -> Vec<(String, String, u64)> {
    containers
        .ids(Some("status=running"))
        .into_iter()
        .map(|id| {
            let line = docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"org.gru.node\"}} {{.Created}}",
                &id,
            ]);
            let (node, created) = line.trim().split_once(' ').unwrap_or(("", ""));
            (id, node.to_owned(), rfc3339_millis(created))
        })
        .collect()
}

/// Milliseconds since the epoch of Docker's `2026-11-22T01:02:03.123456789Z`.
fn rfc3339_millis(text: &str) -> u64 {
    let out = Command::new("date")
        .args(["-u", "-d", text, "+%s%3N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Discovery records of `service`: instance → address.
pub fn registered(etcd: &EtcdCluster, cluster: &str, service: &str) -> Vec<(String, String)> {
    let prefix = format!("/gru/{cluster}/discovery/{service}/");
    etcd.dump(&prefix)
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches(&prefix).to_owned(), v))
        .collect()
}

/// Closed-loop load: `clients` threads sending GETs to whatever instances discovery lists.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Load {
    pub fn start(etcd: &EtcdCluster, cluster: &str, service: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
        let mut threads = Vec::new();
        {
            // One thread refreshes the targets from discovery every 500 ms.
            let (stop, targets) = (stop.clone(), targets.clone());
            let endpoints = etcd.endpoints();
            let prefix = format!("/gru/{cluster}/discovery/{service}/");
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .args([
                            &format!("--endpoints={endpoints}"),
                            "get",
                            "--prefix",
                            "--print-value-only",
                            &prefix,
                        ])
                        .output();
                    if let Ok(out) = out {
                        let ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
                            .collect();
                        *targets.lock().unwrap() = ports;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                0
            }));
        }
        for client in 0..clients {
            let (stop, targets) = (stop.clone(), targets.clone());
            threads.push(std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ports = targets.lock().unwrap().clone();
                    if ports.is_empty() {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let port = ports[(client + sent as usize) % ports.len()];
                    let _ = http_get(port, "/");
                    sent += 1;
                }
                sent
            }));
        }
        Load { stop, threads }
    }

    /// Stops the clients; the number of requests they sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
