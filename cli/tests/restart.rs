//! Restarts that keep containers, on the real engine and etcd with three `gru join`
//! processes under a discovery-fed load: a rolling restart of the three, one after another,
//! starts and stops no container (the engine's events say so), no request fails, and each
//! node keeps its lease throughout. Two ways: `restart agent all` (each agent executes
//! itself again), and what a supervisor does (`systemctl restart`: SIGTERM, the binary
//! replaced, the agent started again a second later). (`kill -9` still leads to repairs:
//! `faults.rs`, `cluster.rs`, `etcd_faults.rs`.)
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::agents::{Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::running_services;
use support::load::Load;
use support::text;
use testkit::{Component, figure, require, require_workload_image, wait_until};

use std::path::Path;

/// Discovery.TTL of the test cluster: as short as the tests of kill -9 use, so that a
/// restart that did not keep the lease would show up as a repair within the test.
const TTL_SECS: u32 = 3;

/// A workload service at MinInstances `min` with a readiness check (an adopted instance must
/// not drop out of discovery while its check runs again) and a lame-duck delay.
fn web(range: (u16, u16), min: u32) -> String {
    format!(
        r#"{{
            "Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
            "MinInstances": {min}, "MaxInstances": 6,
            "Health": {{"Readiness": {{"Http": "/ready", "Interval": 0.5, "FailureThreshold": 1, "SuccessThreshold": 1}}}},
            "Configuration": {{
                "Memory": "64m", "StopTimeout": 3,
                "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5", "SHUTDOWN_DELAY_MS": "1500"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#,
        image = testkit::WORKLOAD_IMAGE,
        low = range.0,
        high = range.1
    )
}

fn manage(bed: &Cluster, line: &str) -> std::process::Output {
    support::run(
        &bed.endpoints(),
        &["manage", "-c", &format!("use {}; {line}", bed.name)],
    )
}

/// Each node key of the cluster → the lease it lives under (etcdctl, JSON).
fn node_leases(bed: &Cluster) -> BTreeMap<String, u64> {
    testkit::key_leases(&bed.endpoints(), &format!("/gru/{}/nodes/", bed.name))
        .into_iter()
        .collect()
}

fn started_at(agent: &Agent) -> u64 {
    agent
        .get_json("/gru/v1/node")
        .and_then(|v| v["agent_started_at"].as_u64())
        .unwrap_or(0)
}

/// How the scenario restarts the agents.
enum Rolling {
    /// `gru manage restart agent all`.
    Manage,
    /// For each agent in turn: SIGTERM, wait for its exit, `pause`, start it again (on a
    /// new port) and wait until it answers with its instances adopted.
    Supervisor { pause: Duration },
}

/// `node` joined; with `start` false its loop waits for `start agent` (a restarted agent
/// takes its predecessor's active flag back from etcd).
fn spawn(bed: &Cluster, node: &str, state_dir: &Path, start: bool) -> Agent {
    bed.agent(node)
        .start(start)
        .env(
            gru_agent::kept_lease::STATE_DIR_VAR,
            state_dir.to_string_lossy(),
        )
        .spawn()
}

fn running_count(agent: &Agent) -> u64 {
    agent
        .get_json("/gru/v1/node")
        .and_then(|v| v["instances"]["running"].as_u64())
        .unwrap_or(0)
}

/// Restarts `agents` one after another as `how` says; the figure lines it reports.
fn restart_all(
    bed: &Cluster,
    agents: &mut [Agent],
    how: &Rolling,
    state_dir: &Path,
) -> Vec<String> {
    match how {
        Rolling::Manage => {
            let out = manage(bed, "restart agent all");
            assert!(
                out.status.success(),
                "restart agent all failed: {}\n{}",
                text(&out),
                logs_tail(agents, 40)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("restarted"))
                .map(|l| l.trim().to_owned())
                .collect()
        }
        Rolling::Supervisor { pause } => {
            let mut lines = Vec::new();
            for agent in agents.iter_mut() {
                let running = running_count(agent);
                let began = Instant::now();
                let mut child = agent.guard.take();
                let pid = child.id().to_string();
                let killed = std::process::Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap();
                assert!(killed.success());
                let status = child.wait().unwrap();
                assert_eq!(status.code(), Some(0), "{} on SIGTERM", agent.node);
                let exited = began.elapsed();
                std::thread::sleep(*pause);
                let node = agent.node.clone();
                *agent = spawn(bed, &node, state_dir, false);
                let adopted =
                    wait_until(Duration::from_secs(30), || running_count(agent) >= running);
                assert!(
                    adopted.is_some(),
                    "{node} did not adopt its {running} instance(s):\n{}",
                    agent.log_text()
                );
                lines.push(format!(
                    "{node}: exited {:.2} s after SIGTERM, started again after {:.1} s more, {running} instance(s) adopted {:.2} s after SIGTERM",
                    exited.as_secs_f64(),
                    pause.as_secs_f64(),
                    began.elapsed().as_secs_f64()
                ));
            }
            lines
        }
    }
}

/// Three agents with web on each node under load; a rolling restart `how`; then the checks.
/// `tag` names the cluster (`t<pid>-<tag>`): each test its own, since a cluster's
/// containers are removed by label when its test ends.
fn rolling_restart_keeps_every_container(test: &str, tag: &str, how: Rolling) {
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::bare(&config_for_agents(TTL_SECS), QUIET_POLICY);
    let range = testkit::free_port_range(10);
    config.file("services/web.json", &web(range, 0));
    let bed = Cluster::start(tag, config);
    let events = testkit::ContainerEvents::start(&bed.name);
    let state_dir = bed.log_dir().join("state");
    let mut agents: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|node| spawn(&bed, node, &state_dir, true))
        .collect();
    // One web on each node (base services), then MinInstances 3 (pushed once they run, so
    // that no repair races the base services): exactly the floor, so a node whose records
    // vanished would be repaired elsewhere. Bounds change no container (no rollout).
    let out = manage(&bed, "set node all base-services web");
    assert!(out.status.success(), "{}", text(&out));
    let placed = wait_until(Duration::from_secs(60), || {
        let running = running_services(&bed.name);
        ["n1", "n2", "n3"].iter().all(|n| {
            running
                .iter()
                .filter(|(s, node)| s == "web" && node == n)
                .count()
                == 1
        }) && running.len() == 3
            && bed.registered("web").len() == 3
    });
    assert!(
        placed.is_some(),
        "web is not one instance on each node: {:?}\n{}",
        running_services(&bed.name),
        logs_tail(&agents, 40)
    );
    bed.config.file("services/web.json", &web(range, 3));
    support::expect_code(
        &bed.endpoints(),
        &["config", "push", &bed.name, bed.config.path()],
        0,
    );
    // Settle (no start or stop under way), then the load.
    std::thread::sleep(Duration::from_secs(3));
    let mut running_before = running_services(&bed.name);
    running_before.sort();
    let load = Load::start(&bed.etcd, &bed.name, "web", 4);
    std::thread::sleep(Duration::from_secs(2));
    let leases_before = node_leases(&bed);
    let started_before: Vec<u64> = agents.iter().map(started_at).collect();
    let from_ns = testkit::epoch_ns();

    let began = Instant::now();
    let report = restart_all(&bed, &mut agents, &how, &state_dir);
    let rolling = began.elapsed();
    // Past two TTLs after the last restart: a lease lost in the restart would have expired
    // and been repaired by now.
    std::thread::sleep(Duration::from_secs(2 * u64::from(TTL_SECS) + 2));
    let (sent, failures) = load.stop_counting();
    let to_ns = testkit::epoch_ns();

    figure(
        test,
        "rolling restart of 3 agents",
        format!("{:.2} s", rolling.as_secs_f64()),
    );
    for line in &report {
        figure(test, "agent restart", line);
    }
    figure(
        test,
        "requests served during the rolling restart",
        sent as f64,
    );
    figure(test, "failed requests", failures.len() as f64);
    let changed: Vec<_> = events
        .events()
        .into_iter()
        .filter(|e| e.at_ns >= from_ns && e.at_ns <= to_ns)
        .collect();
    figure(
        test,
        "container events (start, die, destroy) of the cluster",
        changed.len() as f64,
    );
    assert!(
        changed.is_empty(),
        "containers started or stopped during the rolling restart: {changed:#?}\n{}",
        logs_tail(&agents, 60)
    );
    for (i, agent) in agents.iter_mut().enumerate() {
        assert!(
            agent.is_running(),
            "{} exited:\n{}",
            agent.node,
            agent.log_text()
        );
        assert_ne!(
            started_at(agent),
            started_before[i],
            "{} was not restarted",
            agent.node
        );
        assert!(
            agent.log_text().contains("re-attached to the lease"),
            "{} did not take its lease back:\n{}",
            agent.node,
            support::tail(&agent.log_text(), 40)
        );
    }
    assert_eq!(
        node_leases(&bed).values().collect::<Vec<_>>(),
        leases_before.values().collect::<Vec<_>>(),
        "a node's records moved to another lease (or vanished) in the restart"
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during the rolling restart: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        logs_tail(&agents, 60)
    );
    let mut running_after = running_services(&bed.name);
    running_after.sort();
    assert_eq!(running_after, running_before, "web's instances by node");
    assert_eq!(
        bed.registered("web").len(),
        running_before.len(),
        "web's discovery records"
    );
}

/// `restart agent all`: each agent executes itself again (same pid) and takes its lease
/// back; the shell waits for each before the next.
#[test]
fn rolling_restart_agent_all_under_load_starts_and_stops_no_container() {
    rolling_restart_keeps_every_container(
        "rolling_restart_agent_all_under_load_starts_and_stops_no_container",
        "restart-exec",
        Rolling::Manage,
    );
}

/// What `systemctl restart` of an upgraded agent does, slower than the exec: SIGTERM, a
/// second with no agent on the node (the binary replaced), a new process. Without the kept
/// lease, the node's records vanish at the SIGTERM and the other agents' probe of the node
/// finds nobody answering during that second, so they repair.
#[test]
fn rolling_sigterm_and_start_a_second_later_under_load_starts_and_stops_no_container() {
    rolling_restart_keeps_every_container(
        "rolling_sigterm_and_start_a_second_later_under_load_starts_and_stops_no_container",
        "restart-sigterm",
        Rolling::Supervisor {
            pause: Duration::from_secs(1),
        },
    );
}
