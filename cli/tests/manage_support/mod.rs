//! A real cluster for the `gru manage` tests: a throwaway etcd, a pushed configuration of
//! workload services, and agents (`gru join`, without `--start`) on this machine's Docker
//! engine. Everything is cleaned up when the [`TestCluster`] drops, also when a test
//! panics: the agents are killed first (so none restarts a container), then the cluster's
//! containers are removed, then etcd is stopped.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{ChildGuard, ClusterContainers, EtcdCluster, free_port, http_get, wait_until};

/// `gru` with `ETCD_ADDR` set and a quiet log.
pub fn gru(endpoints: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gru"));
    cmd.env("ETCD_ADDR", endpoints)
        .env_remove("ETCD_USER")
        .env_remove("ETCD_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CPUs of the engine, as every agent of this machine reports them.
pub fn engine_cpus() -> u32 {
    docker(&["info", "--format", "{{.NCPU}}"])
        .trim()
        .parse()
        .unwrap()
}

/// A service of the test configuration.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub cpus: u32,
}

impl ServiceSpec {
    pub fn new(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            cpus: 0,
        }
    }

    pub fn pinned(name: &str, cpus: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            cpus,
        }
    }
}

/// A loop every second, a lease of 10 s (a killed agent's records outlive the checks that
/// follow its death), scale-out enabled but out of reach (so decisions weigh it and
/// nothing scales by itself), scale-in and swap off.
fn write_config(dir: &Path, services: &[ServiceSpec]) {
    std::fs::create_dir_all(dir.join("services")).unwrap();
    std::fs::create_dir_all(dir.join("analytics")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "probcumulative"},
            "Discovery": {"TTL": 10}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.json"),
        r#"{"Scaleout": {"Enable": true, "Threshold": 0.99, "Analytics": ["cpu_load"]},
            "Scalein": {"Enable": false, "Threshold": 0.1},
            "Swap": {"Enable": false, "Threshold": 0.6}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("analytics/cpu_load.json"),
        r#"{"Name": "cpu_load", "Expr": "cpu_avg", "Metrics": ["cpu_avg"]}"#,
    )
    .unwrap();
    for service in services {
        let (low, high) = testkit::free_port_range(12);
        let doc = format!(
            r#"{{"Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["cpu_load"],
                "Configuration": {{"Memory": "64m", "StopTimeout": 1, "cpunumber": {cpus},
                    "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5"}},
                    "Ports": {{"8080": "{low}-{high}"}}}}}}"#,
            name = service.name,
            image = testkit::WORKLOAD_IMAGE,
            cpus = service.cpus,
        );
        std::fs::write(dir.join(format!("services/{}.json", service.name)), doc).unwrap();
    }
}

/// One agent process.
pub struct Agent {
    pub guard: ChildGuard,
    pub port: u16,
    pub log: PathBuf,
}

impl Agent {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, now: no lease revoked, nothing cleaned up.
    pub fn kill9(&mut self) {
        let mut child = self.guard.take();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP: the process keeps its port (the kernel still accepts connections) but
    /// answers nothing. The guard's SIGKILL still ends it.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.guard.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Fields drop in order: agents, then containers, then etcd and the temporary files.
pub struct TestCluster {
    pub agents: BTreeMap<String, Agent>,
    pub containers: ClusterContainers,
    pub etcd: EtcdCluster,
    pub cluster: String,
    config: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl TestCluster {
    /// Creates the cluster, pushes `services`, joins one agent per name in `nodes`
    /// (loops not started) and waits until every one answers.
    pub fn start(tag: &str, nodes: &[&str], services: &[ServiceSpec]) -> TestCluster {
        let containers = ClusterContainers::unique(tag);
        let cluster = containers.cluster.clone();
        let etcd = EtcdCluster::start();
        let config = tempfile::tempdir().unwrap();
        write_config(config.path(), services);
        let logs = tempfile::tempdir().unwrap();
        let mut test = TestCluster {
            agents: BTreeMap::new(),
            containers,
            etcd,
            cluster,
            config,
            logs,
        };
        test.gru_ok(&["create", &test.cluster]);
        let dir = test.config.path().to_str().unwrap().to_owned();
        test.gru_ok(&["config", "push", &test.cluster, &dir]);
        for node in nodes {
            let agent = test.spawn_agent(node);
            test.agents.insert((*node).to_owned(), agent);
        }
        for node in nodes {
            let agent = &test.agents[*node];
            let up = wait_until(Duration::from_secs(20), || {
                http_get(agent.port, "/healthz").is_some_and(|(s, _)| s == 200)
            });
            assert!(
                up.is_some(),
                "agent {node} did not come up:\n{}",
                agent.log_text()
            );
        }
        test
    }

    fn gru_ok(&self, args: &[&str]) {
        let out = gru(&self.etcd.endpoints()).args(args).output().unwrap();
        assert!(out.status.success(), "gru {args:?}\n{}", text(&out));
    }

    fn spawn_agent(&self, node: &str) -> Agent {
        let port = free_port();
        let log = self.logs.path().join(format!("{node}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = gru(&self.etcd.endpoints())
            .env("RUST_LOG", "info")
            .args([
                "join",
                &self.cluster,
                "--name",
                node,
                "--port",
                &port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--publish-ip", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Agent {
            guard: ChildGuard::new(child),
            port,
            log,
        }
    }

    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|(node, agent)| {
                let text = agent.log_text();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- agent {node} (last lines)\n{tail}\n")
            })
            .collect()
    }

    /// `gru manage` with `args`, standard input closed.
    pub fn manage(&self, args: &[&str]) -> Output {
        gru(&self.etcd.endpoints())
            .arg("manage")
            .args(args)
            .output()
            .unwrap()
    }

    /// `gru manage --output json -c "use <cluster>; <script>"`: the exit code and the JSON
    /// document of each command after `use`, with how long it took.
    pub fn manage_json(
        &self,
        script: &str,
    ) -> (Option<i32>, Vec<serde_json::Value>, Duration, Output) {
        let started = Instant::now();
        let out = self.manage(&[
            "--output",
            "json",
            "-c",
            &format!("use {}; {script}", self.cluster),
        ]);
        let took = started.elapsed();
        let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", text(&out)))
            })
            .collect();
        assert!(!docs.is_empty(), "no output\n{}", text(&out));
        assert_eq!(
            docs[0]["cluster"],
            self.cluster.as_str(),
            "use failed\n{}",
            text(&out)
        );
        (out.status.code(), docs[1..].to_vec(), took, out)
    }

    /// Like [`Self::manage_json`] for one command that must succeed: its document.
    #[track_caller]
    pub fn manage_ok(&self, command: &str) -> (serde_json::Value, Duration) {
        let (code, docs, took, out) = self.manage_json(command);
        assert_eq!(code, Some(0), "{command}\n{}\n{}", text(&out), self.logs());
        (docs.into_iter().next().unwrap(), took)
    }

    pub fn key(&self, key: &str) -> Option<String> {
        let found = self.etcd.dump(key);
        found.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A node's `active` record.
    pub fn active(&self, node: &str) -> Option<bool> {
        self.key(&format!("/gru/{}/nodes/{node}/active", self.cluster))
            .map(|v| v.trim() == "true")
    }

    /// A node's base services, from its constraints record.
    pub fn base_services(&self, node: &str) -> Vec<String> {
        let Some(text) = self.key(&format!("/gru/{}/nodes/{node}/constraints", self.cluster))
        else {
            return Vec::new();
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["BaseServices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Running containers of the cluster with the given labels (service and/or node).
    pub fn running(&self, service: Option<&str>, node: Option<&str>) -> usize {
        let mut filters = vec!["status=running".to_owned()];
        if let Some(service) = service {
            filters.push(format!("label=org.gru.service={service}"));
        }
        if let Some(node) = node {
            filters.push(format!("label=org.gru.node={node}"));
        }
        let mut args = vec!["ps", "-q", "--filter"];
        let label = format!("label=org.gru.cluster={}", self.cluster);
        args.push(&label);
        for f in &filters {
            args.push("--filter");
            args.push(f);
        }
        docker(&args).lines().filter(|l| !l.is_empty()).count()
    }

    /// Every container of the cluster (any state).
    pub fn all_containers(&self) -> usize {
        self.containers.ids(None).len()
    }

    /// Waits until `check` holds, or fails the test with `what` and the agents' logs.
    #[track_caller]
    pub fn eventually(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut() -> bool,
    ) -> Duration {
        match wait_until(timeout, check) {
            Some(took) => took,
            None => panic!("{what}: not within {timeout:?}\n{}", self.logs()),
        }
    }
}
