//! Prometheus' HTTP service discovery of the agents (`GET /gru/v1/sd`): a real Prometheus,
//! configured only with `configs/prometheus.yml` pointed at one agent, finds every agent
//! of a three-node cluster, scrapes each, and a query on `gru_decisions_total` returns one
//! series per node.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agents::{Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use testkit::{ChildGuard, Component, http_get, require, wait_until};

/// `GET path` of the Prometheus on `port`, as JSON.
fn prometheus_json(port: u16, path: &str) -> Option<Value> {
    let (200, body) = http_get(port, path)? else {
        return None;
    };
    serde_json::from_str(&body).ok()
}

/// `configs/prometheus.yml` with its agent address and intervals made the test's: the
/// shipped file is what Prometheus runs (the replacements must each apply once).
fn shipped_config(agent_port: u16) -> String {
    let path = support::root().join("configs/prometheus.yml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        (
            "url: http://127.0.0.1:8080/gru/v1/sd",
            format!("url: http://127.0.0.1:{agent_port}/gru/v1/sd"),
        ),
        ("refresh_interval: 30s", "refresh_interval: 1s".to_owned()),
        (
            "  scrape_interval: 15s\n  evaluation",
            "  scrape_interval: 1s\n  evaluation".to_owned(),
        ),
        (
            "    scrape_interval: 15s",
            "    scrape_interval: 1s".to_owned(),
        ),
    ] {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{} lacks {from:?}",
            path.display()
        );
        text = text.replace(from, &to);
    }
    text
}

#[test]
fn prometheus_finds_every_agent_through_one_and_scrapes_their_decisions() {
    let test = "prometheus_finds_every_agent_through_one_and_scrapes_their_decisions";
    if !require(test, Component::Etcd)
        || !require(test, Component::Docker)
        || !require(test, Component::Prometheus)
    {
        return;
    }
    let config = TestConfig::new(&config_for_agents(3), QUIET_POLICY);
    let bed = Cluster::start("promsd", config);
    let agents: Vec<Agent> = bed.spawn_nodes(3);
    let nodes: BTreeSet<String> = agents.iter().map(|a| a.node.clone()).collect();

    // The agent's own answer first: every node, each with its labels.
    let listed = wait_until(Duration::from_secs(10), || {
        agents[0]
            .get_json("/gru/v1/sd")
            .is_some_and(|groups| groups.as_array().map_or(0, Vec::len) == agents.len())
    });
    assert!(listed.is_some(), "{:?}", agents[0].get_json("/gru/v1/sd"));
    let groups = agents[0].get_json("/gru/v1/sd").unwrap();
    for (group, agent) in groups.as_array().unwrap().iter().zip(&agents) {
        assert_eq!(group["labels"]["node"], agent.node.as_str());
        assert_eq!(group["labels"]["cluster"], bed.name.as_str());
        assert_eq!(
            group["targets"][0],
            format!("127.0.0.1:{}", agent.port).as_str()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, shipped_config(agents[0].port)).unwrap();
    let port = testkit::free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let started = Instant::now();
    let _prometheus = ChildGuard::new(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let prometheus_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(20), || {
        http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
    });
    assert!(
        ready.is_some(),
        "prometheus did not start:\n{}",
        prometheus_log()
    );

    // Every agent a target, each scraped (health "up"), with its node label.
    let mut up = BTreeSet::new();
    let all_up = wait_until(Duration::from_secs(30), || {
        let Some(targets) = prometheus_json(port, "/api/v1/targets?state=active") else {
            return false;
        };
        up = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["health"] == "up" && t["labels"]["cluster"] == bed.name.as_str())
            .filter_map(|t| t["labels"]["node"].as_str().map(str::to_owned))
            .collect();
        up == nodes
    });
    assert!(
        all_up.is_some(),
        "targets up: {up:?}, wanted {nodes:?}:\n{}\n{}",
        prometheus_json(port, "/api/v1/targets").unwrap_or_default(),
        logs_tail(&agents, 10)
    );
    testkit::figure(
        test,
        "every agent scraped (ms after prometheus started)",
        started.elapsed().as_millis(),
    );

    // One series of gru_decisions_total per node: the agents decide "no action" each tick.
    let mut series = Vec::new();
    let queried = wait_until(Duration::from_secs(20), || {
        let Some(answer) = prometheus_json(port, "/api/v1/query?query=gru_decisions_total") else {
            return false;
        };
        series = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let per_node: Vec<String> = series
            .iter()
            .filter_map(|s| s["metric"]["node"].as_str().map(str::to_owned))
            .collect();
        per_node.len() == nodes.len() && per_node.iter().cloned().collect::<BTreeSet<_>>() == nodes
    });
    assert!(queried.is_some(), "gru_decisions_total: {series:#?}");
    for one in &series {
        assert_eq!(one["metric"]["action"], "none", "{one}");
        assert_eq!(one["metric"]["cluster"], bed.name.as_str(), "{one}");
        let value: f64 = one["value"][1].as_str().unwrap().parse().unwrap();
        assert!(value >= 1.0, "{one}");
    }
    testkit::figure(test, "series of gru_decisions_total", series.len());
}
