//! Nodes come when the cluster saturates, on the real engine and etcd: two agents whose
//! nodes are full under a sustained overload call the add-node hook exactly once per
//! cooldown, whichever sees it first; the hook starts a third `gru join`, and the pending
//! scale-out lands on that new node.
//!
//! "Full" is by memory here: both agents share this machine's one engine, and each counts
//! only its own instances against the engine's resources (`free_slots`), so a service whose
//! `Memory` is 60 % of the engine's makes every node full with one instance. Pinned cores
//! would not: the engine's few cores are shared by both agents' allocations, so the second
//! agent's start fails at the engine (a held start) rather than at its guard.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::agents::{Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{RESP_TIME_RATIO_ANALYTIC, TestConfig, scale_out_policy};
use support::docker::docker;
use testkit::{Component, ContainerEvents, figure, require, require_workload_image, wait_until};

/// Kills the process whose pid the hook wrote, when the test ends (also on a panic).
struct HookedProcess(PathBuf);

impl Drop for HookedProcess {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .output();
        }
    }
}

fn running_on(cluster: &str, node: &str) -> usize {
    docker(&[
        "ps",
        "--filter",
        &format!("label=org.gru.cluster={cluster}"),
        "--filter",
        &format!("label=org.gru.node={node}"),
        "--filter",
        "label=org.gru.service=web",
        "--filter",
        "status=running",
        "-q",
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// The add-node hook: records its call, then starts node n3 in the background.
fn hook_script(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("add-node.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             echo \"$GRU_CLUSTER|$GRU_HOOK|$GRU_WANTED|$GRU_REASON\" >> {calls}\n\
             RUST_LOG=info nohup {gru} join \"$GRU_CLUSTER\" --name n3 --port {port} \
             --bind 127.0.0.1 --publish-ip 127.0.0.1 --start > {log} 2>&1 &\n\
             echo $! > {pid}\n\
             echo started n3\n",
            calls = dir.join("calls").display(),
            gru = env!("CARGO_BIN_EXE_gru"),
            log = dir.join("n3.log").display(),
            pid = dir.join("n3.pid").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn full_nodes_under_overload_call_the_add_node_hook_once_and_the_scale_out_lands_on_the_new_node() {
    let test = "full_nodes_under_overload_call_the_add_node_hook_once_and_the_scale_out_lands_on_the_new_node";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let n3_port = testkit::free_port();
    let script = hook_script(hook_dir.path(), n3_port);
    let _n3 = HookedProcess(hook_dir.path().join("n3.pid"));
    const COOLDOWN_SECS: u64 = 120;
    let agent_config = format!(
        r#"{{"Autonomic": {{"LoopTimeInterval": 1, "PlannerStrategy": "greedy"}},
            "Communication": {{"LoopTimeInterval": 1, "MaxFriends": 2}},
            "Discovery": {{"TTL": 3}},
            "Nodes": {{"SaturatedPeriod": 2, "Cooldown": {COOLDOWN_SECS},
                       "AddNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 10, "Retries": 1}}}}}}"#,
        script.display()
    );
    let engine_memory: u64 = docker(&["info", "--format", "{{.MemTotal}}"])
        .trim()
        .parse()
        .unwrap();
    let memory = format!("{}m", engine_memory / 10 * 6 / (1 << 20));
    let range = testkit::free_port_range(6);
    let config = TestConfig::bare(&agent_config, &scale_out_policy(1));
    config.file("analytics/resp_time_ratio.json", RESP_TIME_RATIO_ANALYTIC);
    config.file(
        "services/web.json",
        &format!(
            r#"{{
                "Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio"], "Constraints": {{"MAX_RESP_TIME": 100}},
                "MinInstances": 2, "MaxInstances": 3,
                "Configuration": {{
                    "Memory": "{memory}", "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
            low = range.0,
            high = range.1
        ),
    );
    let bed = Cluster::start("addnode", config);
    let events = ContainerEvents::start(&bed.name);
    let agents: Vec<Agent> = bed.spawn_nodes(2);
    let full = wait_until(Duration::from_secs(30), || {
        running_on(&bed.name, "n1") == 1 && running_on(&bed.name, "n2") == 1
    });
    assert!(
        full.is_some(),
        "n1 and n2 do not hold one web each\n{}",
        logs_tail(&agents, 40)
    );

    // Sustained overload on every agent (800 ms against a 100 ms target), n3 included once
    // it answers, until web runs on n3, then 6 s more.
    let started = Instant::now();
    let mut landed: Option<Duration> = None;
    while started.elapsed() < Duration::from_secs(60) {
        for agent in &agents {
            let _ = agent.push_stat(&bed.secret, "web", "execution_time", "800");
        }
        let _ = testkit::http_request(
            n3_port,
            "POST",
            "/gru/v1/stats/user/web/execution_time",
            Some(&bed.secret),
            Some("800"),
        );
        if landed.is_none() && running_on(&bed.name, "n3") == 1 {
            landed = Some(started.elapsed());
        }
        if landed.is_some_and(|at| started.elapsed() > at + Duration::from_secs(6)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let n3_log = std::fs::read_to_string(hook_dir.path().join("n3.log")).unwrap_or_default();
    let calls = std::fs::read_to_string(hook_dir.path().join("calls")).unwrap_or_default();
    let calls: Vec<&str> = calls.lines().collect();
    figure(test, "add_node_calls", calls.len() as f64);
    if let Some(at) = landed {
        figure(test, "overload_to_instance_on_n3_seconds", at.as_secs_f64());
    }
    assert_eq!(
        calls.len(),
        1,
        "the add-node hook ran {} times in one cooldown: {calls:?}\n{}",
        calls.len(),
        logs_tail(&agents, 40)
    );
    let parts: Vec<&str> = calls[0].splitn(4, '|').collect();
    assert_eq!(
        parts[..3],
        [bed.name.as_str(), "add-node", "1"],
        "{calls:?}"
    );
    assert!(
        parts[3].starts_with("saturated: web +1 wanted for 2 s and no node has room"),
        "{calls:?}"
    );
    assert!(
        landed.is_some(),
        "the pending scale-out did not land on n3\nn3's log:\n{}\n{}",
        support::tail(&n3_log, 40),
        logs_tail(&agents, 40)
    );
    // Whichever agent saw it first claimed it, and says so in its events; the other never
    // called the hook.
    let claimed: Vec<String> = agents
        .iter()
        .filter(|a| {
            a.actions(100)
                .iter()
                .any(|r| r.action == "add-node" && r.result.starts_with("ok: exit 0: started n3"))
        })
        .map(|a| a.node.clone())
        .collect();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    figure(
        test,
        "claimed_by_n1",
        f64::from(u8::from(claimed[0] == "n1")),
    );
    // Never more than MaxInstances.
    events.assert_at_most("web", 3, |e| e.service == "web");
    for agent in &agents {
        assert!(agent.healthy(), "{} unhealthy", agent.node);
    }
}
