//! A real cluster for the `gru manage` tests: a throwaway etcd, a pushed configuration of
//! workload services, and agents (`gru join`, without `--start`) on this machine's Docker
//! engine. Everything is cleaned up when the [`TestCluster`] drops, also when a test
//! panics: the agents are killed first (so none restarts a container), then the cluster's
//! containers are removed, then etcd is stopped.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use testkit::{ClusterContainers, EtcdCluster, wait_until};

use crate::support::agents::{Agent, AgentCommand};
use crate::support::configs::{CPU_LOAD_ANALYTIC, TestConfig};
use crate::support::docker::docker;
use crate::support::{gru, tail, text};

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
fn test_config(services: &[ServiceSpec]) -> TestConfig {
    let config = TestConfig::bare(
        r#"{"Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "probcumulative"},
            "Discovery": {"TTL": 10}}"#,
        r#"{"Scaleout": {"Enable": true, "Threshold": 0.99, "Analytics": ["cpu_load"]},
            "Scalein": {"Enable": false, "Threshold": 0.1},
            "Swap": {"Enable": false, "Threshold": 0.6}}"#,
    );
    config.file("analytics/cpu_load.json", CPU_LOAD_ANALYTIC);
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
        config.file(&format!("services/{}.json", service.name), &doc);
    }
    config
}

/// Fields drop in order: agents, then containers, then etcd and the temporary files.
pub struct TestCluster {
    pub agents: BTreeMap<String, Agent>,
    pub containers: ClusterContainers,
    pub etcd: EtcdCluster,
    pub cluster: String,
    config: TestConfig,
    logs: tempfile::TempDir,
}

impl TestCluster {
    /// Creates the cluster, pushes `services`, joins one agent per name in `nodes`
    /// (loops not started) and waits until every one answers.
    pub fn start(tag: &str, nodes: &[&str], services: &[ServiceSpec]) -> TestCluster {
        let containers = ClusterContainers::unique(tag);
        let cluster = containers.cluster.clone();
        let etcd = EtcdCluster::start();
        let config = test_config(services);
        let logs = tempfile::tempdir().unwrap();
        config.create_and_push(&etcd, &cluster);
        let mut test = TestCluster {
            agents: BTreeMap::new(),
            containers,
            etcd,
            cluster,
            config,
            logs,
        };
        for node in nodes {
            let agent = AgentCommand::new(
                &test.etcd.endpoints(),
                &test.cluster,
                node,
                test.logs.path(),
            )
            .start(false)
            .launch();
            test.agents.insert((*node).to_owned(), agent);
        }
        for node in nodes {
            test.agents[*node].wait_up();
        }
        test
    }

    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|(node, agent)| {
                let tail = tail(&agent.log_text(), 15);
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
