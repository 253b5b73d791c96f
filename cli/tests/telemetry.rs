//! The agent's observability through the real `gru` binary: JSON log lines with
//! `--log-format json`, `RUST_LOG` filtering, and `GET /metrics`, parsed strictly, with its
//! counters moving as the agent acts on the real Docker engine, while its InfluxDB sink
//! writes to a real VictoriaMetrics.
#![allow(clippy::unwrap_used)]

mod support;
#[path = "../../agent/tests/telemetry_support/mod.rs"]
mod telemetry_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::agents::AgentCommand;
use support::expect_code;
use telemetry_support::prometheus::{self, Page};
use telemetry_support::victoria::{self, Victoria};
use testkit::{
    ChildGuard, ClusterContainers, Component, EtcdCluster, figure, http_get, require,
    require_workload_image, wait_until,
};

/// Starts `gru [global] join <cluster> --name <node> ...` with stderr in `log`.
fn join(
    etcd: &EtcdCluster,
    global: &[&str],
    rust_log: &str,
    cluster: &str,
    node: &str,
    start: bool,
    log: &Path,
) -> (ChildGuard, u16) {
    let agent = AgentCommand::new(&etcd.endpoints(), cluster, node, log.parent().unwrap())
        .global(global)
        .rust_log(rust_log)
        .start(start)
        .log_file(log)
        .spawn();
    (agent.guard, agent.port)
}

/// SIGTERM, then the exit code (the agent leaves the cluster and exits 0).
fn terminate(mut guard: ChildGuard) -> Option<i32> {
    let mut child = guard.take();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exited = wait_until(Duration::from_secs(15), || {
        child.try_wait().ok().flatten().is_some()
    });
    if exited.is_none() {
        let _ = child.kill();
    }
    child.wait().ok().and_then(|s| s.code())
}

#[test]
fn join_logs_json_lines_with_log_format_json_and_rust_log_filters_them() {
    let test = "join_logs_json_lines_with_log_format_json_and_rust_log_filters_them";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let etcd = EtcdCluster::start();
    let cluster = format!("logs-{}", std::process::id());
    expect_code(&etcd.endpoints(), &["create", &cluster], 0);
    let logs = tempfile::tempdir().unwrap();

    let json_log = logs.path().join("json.log");
    let (agent, _) = join(
        &etcd,
        &["--log-format", "json"],
        "info",
        &cluster,
        "n1",
        false,
        &json_log,
    );
    assert_eq!(terminate(agent), Some(0));
    let text = std::fs::read_to_string(&json_log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{text}"))
        })
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let joined = lines
        .iter()
        .find(|l| l["fields"]["message"] == "joined")
        .unwrap_or_else(|| panic!("no joined line:\n{text}"));
    assert_eq!(joined["level"], "INFO");
    assert_eq!(joined["fields"]["node"], "n1");
    assert_eq!(joined["target"], "gru_agent::daemon");

    // RUST_LOG=warn hides the info lines; a directive for one module brings its back.
    let quiet_log = logs.path().join("quiet.log");
    let (agent, _) = join(&etcd, &[], "warn", &cluster, "n2", false, &quiet_log);
    assert_eq!(terminate(agent), Some(0));
    let quiet = std::fs::read_to_string(&quiet_log).unwrap();
    assert!(
        !quiet.contains("joined"),
        "RUST_LOG=warn let info through:\n{quiet}"
    );

    let module_log = logs.path().join("module.log");
    let (agent, _) = join(
        &etcd,
        &[],
        "warn,gru_agent::daemon=info",
        &cluster,
        "n3",
        false,
        &module_log,
    );
    assert_eq!(terminate(agent), Some(0));
    let module = std::fs::read_to_string(&module_log).unwrap();
    assert!(module.contains(" joined"), "{module}");
    assert!(
        module
            .lines()
            .all(|l| !l.contains(" INFO ") || l.contains("gru_agent::daemon")),
        "only gru_agent::daemon logs at info:\n{module}"
    );
}

fn scrape(port: u16) -> Page {
    let (status, body) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The counters that may only grow, with their values on `page`.
fn counters(page: &Page) -> Vec<(String, String, f64)> {
    page.families
        .values()
        .filter(|f| f.kind == "counter")
        .flat_map(|f| &f.samples)
        .map(|s| (s.name.clone(), format!("{:?}", s.labels), s.value))
        .collect()
}

#[test]
fn metrics_endpoint_counts_what_the_agent_does_and_its_sink_writes_it() {
    let test = "metrics_endpoint_counts_what_the_agent_does_and_its_sink_writes_it";
    if !require(test, Component::Etcd) || !require_workload_image(test) || !victoria::require(test)
    {
        return;
    }
    let vm = Victoria::start();
    let containers = ClusterContainers::unique("metrics");
    let cluster = containers.cluster.clone();
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::create_dir_all(path.join("services")).unwrap();
    std::fs::create_dir_all(path.join("analytics")).unwrap();
    std::fs::write(
        path.join("config.json"),
        format!(
            r#"{{
                "Autonomic": {{"LoopTimeInterval": 1, "PlannerStrategy": "greedy"}},
                "Discovery": {{"TTL": 3}},
                "Metric": {{"MetricService": "influxdb", "Configuration": {{
                    "Url": "{url}", "Org": "gru", "Bucket": "gru", "Token": "test-token"}}}}
            }}"#,
            url = vm.url()
        ),
    )
    .unwrap();
    std::fs::write(
        path.join("policy.json"),
        r#"{"Scaleout": {"Enable": true, "Threshold": 0.8, "Analytics": ["cpu_load"]},
            "Scalein": {"Enable": true, "Threshold": 0.1, "Analytics": ["cpu_load"]}}"#,
    )
    .unwrap();
    std::fs::write(
        path.join("analytics/cpu_load.json"),
        r#"{"Name": "cpu_load", "Expr": "cpu_avg", "Metrics": ["cpu_avg"]}"#,
    )
    .unwrap();
    let (low, _) = testkit::free_port_range(4);
    std::fs::write(
        path.join("services/web.json"),
        format!(
            r#"{{"Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["cpu_load"], "MinInstances": 1, "MaxInstances": 2,
                "Configuration": {{"Memory": "64m", "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "web"}}, "Ports": {{"8080": "{low}-{high}"}}}}}}"#,
            image = testkit::WORKLOAD_IMAGE,
            high = low + 3
        ),
    )
    .unwrap();
    // A service whose image does not exist: every start fails (a Docker error), at once
    // (never pulled: no registry is asked).
    std::fs::write(
        path.join("services/ghost.json"),
        r#"{"Name": "ghost", "Image": "gru-no-such-image:latest", "MinInstances": 1,
            "Pull": {"Policy": "Never"}, "Configuration": {"Memory": "16m"}}"#,
    )
    .unwrap();
    expect_code(&e, &["create", &cluster], 0);
    expect_code(&e, &["config", "push", &cluster, path.to_str().unwrap()], 0);

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("n1.log");
    let (agent, port) = join(&etcd, &[], "info", &cluster, "n1", true, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let started = wait_until(Duration::from_secs(30), || {
        scrape(port).value(
            "gru_actions_total",
            &[("action", "min-instances"), ("result", "ok")],
        ) >= Some(1.0)
    });
    assert!(started.is_some(), "web was not started:\n{}", log_text());
    let first = scrape(port);
    for family in [
        "gru_loop_duration_seconds",
        "gru_decisions_total",
        "gru_actions_total",
        "gru_gossip_rounds_total",
        "gru_gossip_rejected_total",
        "gru_etcd_errors_total",
        "gru_docker_errors_total",
        "gru_sink_buffer_points",
        "gru_sink_dropped_points_total",
        "gru_sink_written_points_total",
        "process_resident_memory_bytes",
    ] {
        assert!(first.families.contains_key(family), "{family} missing");
    }
    assert_eq!(
        first.value("gru_sink_buffer_capacity_points", &[]),
        Some(10_000.0)
    );

    // The counters move as the agent goes on: ticks, decisions, the ghost's failed starts
    // (each a Docker error), and points written by the sink.
    let moved = wait_until(Duration::from_secs(30), || {
        let now = scrape(port);
        now.value("gru_loop_duration_seconds_count", &[])
            > first.value("gru_loop_duration_seconds_count", &[])
            && now.sum("gru_decisions_total") > first.sum("gru_decisions_total")
            && now.value(
                "gru_actions_total",
                &[("action", "min-instances"), ("result", "failed")],
            ) >= Some(1.0)
            && now.value("gru_docker_errors_total", &[]) >= Some(1.0)
            && now.value("gru_sink_written_points_total", &[]) > Some(0.0)
    });
    let second = scrape(port);
    assert!(
        moved.is_some(),
        "counters did not move:\n{}\n{}",
        second
            .families
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        log_text()
    );
    let before: std::collections::BTreeMap<(String, String), f64> = counters(&first)
        .into_iter()
        .map(|(n, l, v)| ((n, l), v))
        .collect();
    for (name, labels, value) in counters(&second) {
        if let Some(old) = before.get(&(name.clone(), labels.clone())) {
            assert!(value >= *old, "{name}{labels} went down: {old} -> {value}");
        }
    }
    assert!(second.value("gru_loop_duration_seconds_sum", &[]) > Some(0.0));
    figure(
        test,
        "counters",
        format!(
            "after {:.1} s: {} ticks, {} decisions, actions {:?}, docker errors {}, sink written {}",
            moved.unwrap_or_default().as_secs_f64(),
            second
                .value("gru_loop_duration_seconds_count", &[])
                .unwrap_or(0.0),
            second.sum("gru_decisions_total"),
            second
                .family("gru_actions_total")
                .samples
                .iter()
                .map(|s| format!("{:?}={}", s.labels.values().collect::<Vec<_>>(), s.value))
                .collect::<Vec<_>>(),
            second.value("gru_docker_errors_total", &[]).unwrap_or(0.0),
            second
                .value("gru_sink_written_points_total", &[])
                .unwrap_or(0.0),
        ),
    );

    // What the sink wrote is in the time-series server, with the node's tags.
    let selector = format!(r#"{{__name__=~"gru_.*",cluster="{cluster}",node="n1"}}"#);
    let find = |stored: &[victoria::Series], name: &str, tags: &[(&str, &str)]| {
        stored
            .iter()
            .find(|s| {
                s.name == name
                    && tags
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .cloned()
    };
    let stored = vm.export_until(&selector, |stored| {
        find(
            stored,
            "gru_action_count",
            &[
                ("action", "min-instances"),
                ("result", "ok"),
                ("service", "web"),
            ],
        )
        .is_some()
            && find(stored, "gru_instance_up", &[("service", "web")]).is_some()
            && find(stored, "gru_node_cpus", &[]).is_some()
            && find(stored, "gru_decision_candidates", &[]).is_some()
    });
    let cpus: f64 = String::from_utf8_lossy(
        &Command::new("docker")
            .args(["info", "--format", "{{.NCPU}}"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    let node_cpus = find(&stored, "gru_node_cpus", &[])
        .unwrap_or_else(|| panic!("no gru_node_cpus for n1 in {stored:#?}\n{}", log_text()));
    assert!(node_cpus.values.iter().all(|v| *v == cpus), "{node_cpus:?}");
    let up = find(&stored, "gru_instance_up", &[("service", "web")]).unwrap();
    assert_eq!(up.values.last(), Some(&1.0), "{up:?}");
    let action = find(
        &stored,
        "gru_action_count",
        &[
            ("action", "min-instances"),
            ("result", "ok"),
            ("service", "web"),
        ],
    )
    .unwrap();
    assert_eq!(action.values, vec![1.0]);
    assert!(
        find(
            &stored,
            "gru_action_count",
            &[("service", "ghost"), ("result", "failed")]
        )
        .is_some(),
        "the failed starts are written too"
    );

    assert_eq!(terminate(agent), Some(0), "{}", log_text());
}
