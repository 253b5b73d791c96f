//! The local compose cluster on this machine: `docker-compose.yml` with
//! `docker-compose.local.yml` (every image built by `scripts/build-images.sh`): etcd,
//! the time-series server, `gru create` and `gru config push` as one-shot services, and
//! three agents in containers managing the sample application of `configs/example` on the
//! engine whose socket they mount. Under load the frontend scales out; the agents' metrics
//! reach the time-series server and their `/metrics`; everything is torn down by
//! `docker-compose down -v` (in a guard, so also on failure) and the cluster's containers
//! are removed.
#![allow(clippy::unwrap_used)]

mod support;
#[path = "../../agent/tests/telemetry_support/mod.rs"]
mod telemetry_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{copy_dir, root};
use telemetry_support::prometheus;
use telemetry_support::victoria;
use testkit::{
    ClusterContainers, Component, figure, free_port, http_get, require, skip_listed, wait_until,
};

const COMPOSE_FILES: [&str; 2] = ["docker-compose.yml", "docker-compose.local.yml"];
const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// Docker, docker-compose and etcdctl are needed; a missing one fails the test with how to
/// get it, unless `GRU_TEST_SKIP` lists `compose` (or the component).
fn require_compose(test: &str) -> bool {
    !skip_listed(test, "compose")
        && [Component::Docker, Component::Compose, Component::Etcdctl]
            .into_iter()
            .all(|component| require(test, component))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One compose project; `docker-compose down -v` when dropped, then the cluster's
/// containers (started by the agents, not by compose) are removed.
struct Compose {
    project: String,
    env: Vec<(String, String)>,
    _config: tempfile::TempDir,
    // Dropped after `down` has stopped the agents, so nothing restarts what it removes.
    containers: ClusterContainers,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command.current_dir(root()).stdin(Stdio::null());
        for file in COMPOSE_FILES {
            command.args(["-f", file]);
        }
        command.args(["-p", &self.project]).args(args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn env(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    fn port(&self, key: &str) -> u16 {
        self.env(key).parse().unwrap()
    }

    fn logs(&self) -> String {
        let out = self.run(&["logs", "--no-color", "--tail", "60"]);
        text(&out)
    }

    fn down(&self) -> Output {
        self.run(&["down", "-v", "--remove-orphans", "--timeout", "10"])
    }

    /// Containers of the compose project, in any state (a failing `docker` fails the test).
    fn project_containers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        testkit::docker_must(&["ps", "-aq", "--filter", &filter])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let out = self.down();
        if !out.status.success() {
            eprintln!("docker-compose down failed:\n{}", text(&out));
        }
    }
}

/// Builds every image with the project's script (idempotent: quick when nothing changed).
fn build_images(test: &str) {
    let started = Instant::now();
    let out = Command::new(root().join("scripts/build-images.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/build-images.sh failed:\n{}",
        text(&out)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    figure(
        test,
        "images built",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
}

/// The configuration pushed, in `dir/configs`: configs/example with its port ranges moved
/// to free ones; and its config.json (mounted over the copy's), configs/compose/config.json
/// pointed at this project's time-series port. Returns both paths.
fn configuration(tmp: &Path, influx_port: u16) -> (PathBuf, PathBuf) {
    let dir = tmp.join("configs");
    copy_dir(&root().join("configs/example"), &dir);
    for service in ["frontend", "backend", "cache"] {
        let path = dir.join(format!("services/{service}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let (low, high) = testkit::free_port_range(10);
        let start = text.find(r#""8080": ""#).unwrap() + r#""8080": ""#.len();
        let end = start + text[start..].find('"').unwrap();
        let text = format!("{}{low}-{high}{}", &text[..start], &text[end..]);
        std::fs::write(&path, text).unwrap();
    }
    let agent = std::fs::read_to_string(root().join("configs/compose/config.json")).unwrap();
    assert!(agent.contains("http://127.0.0.1:8086"));
    let agent = agent.replace(
        "http://127.0.0.1:8086",
        &format!("http://127.0.0.1:{influx_port}"),
    );
    let path = tmp.join("config.json");
    std::fs::write(&path, agent).unwrap();
    (dir, path)
}

fn etcdctl(compose: &Compose, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!(
            "--endpoints=http://127.0.0.1:{}",
            compose.port("GRU_ETCD_PORT")
        ))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `host:port` of every running instance of `service`, from discovery.
fn instances(compose: &Compose, service: &str) -> Vec<String> {
    let prefix = format!("/gru/{}/discovery/{service}/", compose.env("GRU_CLUSTER"));
    etcdctl(compose, &["get", "--prefix", "--print-value-only", &prefix])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn local_compose_cluster_comes_up_scales_under_load_and_is_torn_down() {
    let test = "local_compose_cluster_comes_up_scales_under_load_and_is_torn_down";
    if !require_compose(test) {
        return;
    }
    build_images(test);

    let pid = std::process::id();
    let containers = ClusterContainers {
        cluster: format!("compose{pid}"),
    };
    let config = tempfile::tempdir().unwrap();
    let influx_port = free_port();
    let (config_dir, agent_config) = configuration(config.path(), influx_port);
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let env = vec![
        ("GRU_CLUSTER".to_owned(), containers.cluster.clone()),
        ("GRU_ETCD_PORT".to_owned(), free_port().to_string()),
        ("GRU_INFLUX_PORT".to_owned(), influx_port.to_string()),
        ("GRU_AGENT1_PORT".to_owned(), free_port().to_string()),
        ("GRU_AGENT2_PORT".to_owned(), free_port().to_string()),
        ("GRU_AGENT3_PORT".to_owned(), free_port().to_string()),
        (
            "GRU_CONFIG_DIR".to_owned(),
            config_dir.display().to_string(),
        ),
        (
            "GRU_AGENT_CONFIG".to_owned(),
            agent_config.display().to_string(),
        ),
        ("DOCKER_SOCKET".to_owned(), socket),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let compose = Compose {
        project: format!("gru-test-{pid}"),
        env,
        _config: config,
        containers,
    };

    let started = Instant::now();
    let up = compose.run(&["up", "-d"]);
    assert!(
        up.status.success(),
        "docker-compose up failed:\n{}\n{}",
        text(&up),
        compose.logs()
    );
    let agent_ports: Vec<u16> = ["GRU_AGENT1_PORT", "GRU_AGENT2_PORT", "GRU_AGENT3_PORT"]
        .iter()
        .map(|k| compose.port(k))
        .collect();
    let healthy = wait_until(Duration::from_secs(60), || {
        agent_ports
            .iter()
            .all(|p| http_get(*p, "/healthz").is_some_and(|(s, _)| s == 200))
    });
    assert!(
        healthy.is_some(),
        "the agents did not come up:\n{}",
        compose.logs()
    );
    figure(
        test,
        "compose project up, three agents healthy",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );

    // The agents keep every service at its MinInstances.
    let floor = wait_until(Duration::from_secs(60), || {
        ["frontend", "backend", "cache"]
            .iter()
            .all(|s| !instances(&compose, s).is_empty())
    });
    assert!(
        floor.is_some(),
        "MinInstances not started:\n{}",
        compose.logs()
    );

    // Load on the frontend through its published ports, as discovery lists them.
    let targets = tempfile::NamedTempFile::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let stop = stop.clone();
        let path = targets.path().to_owned();
        let endpoints = format!("http://127.0.0.1:{}", compose.port("GRU_ETCD_PORT"));
        let prefix = format!("/gru/{}/discovery/frontend/", compose.env("GRU_CLUSTER"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([&format!("--endpoints={endpoints}"), "get", "--prefix"])
                    .args(["--print-value-only", &prefix])
                    .output();
                if let Ok(out) = out {
                    let list: String = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!("http://{l}/\n"))
                        .collect();
                    let _ = std::fs::write(&path, list);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // Built by scripts/build-images.sh into the same target directory as this test.
    let loadgen = testkit::target_dir()
        .unwrap_or_else(|| root().join("target"))
        .join("x86_64-unknown-linux-musl/release/gru-loadgen");
    let load = testkit::ChildGuard::new(
        Command::new(&loadgen)
            .arg("--targets-file")
            .arg(targets.path())
            .args(["--schedule", "120:240s", "--timeout-ms", "2000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let load_started = Instant::now();
    let mut peak = 1;
    let scaled = wait_until(Duration::from_secs(240), || {
        peak = peak.max(instances(&compose, "frontend").len());
        peak >= 2
    });
    drop(load);
    stop.store(true, Ordering::Relaxed);
    let _ = refresher.join();
    assert!(
        scaled.is_some(),
        "the frontend did not scale out under load (peak {peak}):\n{}",
        compose.logs()
    );
    figure(
        test,
        "frontend scaled after the load started",
        format!(
            "1 -> {peak} instances in {:.1} s",
            load_started.elapsed().as_secs_f64()
        ),
    );

    // The agents count what they did on /metrics ...
    let scale_outs: f64 = agent_ports
        .iter()
        .map(|port| {
            let (status, body) = http_get(*port, "/metrics").unwrap();
            assert_eq!(status, 200);
            let page = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            page.value(
                "gru_actions_total",
                &[("action", "scale-out"), ("result", "ok")],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert!(scale_outs >= 1.0, "no scale-out counted on /metrics");

    // ... and wrote it, with their node's state, to the time-series server.
    let selector = format!(
        r#"{{__name__=~"gru_(node_instances|action_count)",cluster="{}"}}"#,
        compose.env("GRU_CLUSTER")
    );
    let stored = victoria::export_until(influx_port, &selector, Duration::from_secs(30), |s| {
        NODES.iter().all(|node| {
            s.iter()
                .any(|s| s.name == "gru_node_instances" && s.labels["node"] == *node)
        }) && s.iter().any(|s| {
            s.name == "gru_action_count"
                && s.labels.get("action").map(String::as_str) == Some("scale-out")
                && s.labels.get("service").map(String::as_str) == Some("frontend")
                && s.labels.get("result").map(String::as_str) == Some("ok")
        })
    });
    for node in NODES {
        assert!(
            stored
                .iter()
                .any(|s| s.name == "gru_node_instances" && s.labels["node"] == node),
            "no gru_node points from {node}: {stored:#?}\n{}",
            compose.logs()
        );
    }
    assert!(
        stored.iter().any(|s| s.name == "gru_action_count"
            && s.labels.get("action").map(String::as_str) == Some("scale-out")),
        "the scale-out was not written: {stored:#?}"
    );

    // Torn down: nothing of the project is left (the guard does it again on failure).
    let down = compose.down();
    assert!(
        down.status.success(),
        "docker-compose down failed:\n{}",
        text(&down)
    );
    assert!(
        compose.project_containers().is_empty(),
        "containers of the project survived `down`"
    );
    let volumes = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!(
            "label=com.docker.compose.project={}",
            compose.project
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&volumes.stdout).trim().is_empty(),
        "volumes survived `down -v`"
    );
    figure(
        test,
        "instances of the cluster left to the guard after the tear-down",
        compose.containers.ids(None).len(),
    );
}
