//! Nodes come and go, on the real engine and etcd.
//!
//! * Two agents whose nodes are full under a sustained overload call the add-node hook
//!   exactly once per cooldown, whichever sees it first; the hook starts a third `gru join`,
//!   and the pending scale-out lands on that new node. "Full" is by memory in this one:
//!   all agents share this machine's one engine, so a node the hook adds shares its cores
//!   too and could not take a pinned instance; each agent counts memory against its own
//!   instances, so a service taking 60 % of the engine's memory fills every node with one.
//! * Full by pinned cores (every core of the engine pinned by an instance, both agents
//!   saying no core is free): one add-node call; a hook that hangs is killed at its
//!   timeout, retried, reported in `events`, and the loops go on.
//! * An idle node drains itself, the remove-node hook gets its name, and it leaves.
//! * Under target tracking (a target in the ledger, no "no free resources" guard), full
//!   nodes whose target stays above the count call the add-node hook once.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::agents::{Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{RESP_TIME_RATIO_ANALYTIC, TestConfig, nodes_config, scale_out_policy};
use support::docker::{docker, running_services};
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
    let agent_config = nodes_config(&format!(
        r#""SaturatedPeriod": 2, "Cooldown": {COOLDOWN_SECS},
         "AddNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 10, "Retries": 1}}"#,
        script.display()
    ));
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

#[test]
fn an_idle_node_is_drained_then_the_remove_node_hook_gets_its_name_and_it_leaves() {
    let test = "an_idle_node_is_drained_then_the_remove_node_hook_gets_its_name_and_it_leaves";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let calls_file = hook_dir.path().join("calls");
    let script = hook_dir.path().join("remove-node.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$GRU_NODE|$GRU_HOOK|$GRU_CLUSTER\" >> {}\necho removed $GRU_NODE\n",
            calls_file.display()
        ),
    )
    .unwrap();
    let agent_config = nodes_config(&format!(
        r#""IdlePeriod": 3, "Cooldown": 120,
         "RemoveNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 10}}"#,
        script.display()
    ));
    let service = |name: &str, min: u32, range: (u16, u16)| {
        format!(
            r#"{{
                "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
                "MinInstances": {min}, "MaxInstances": 3,
                "Configuration": {{
                    "Memory": "64m", "StopTimeout": 3,
                    "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5", "SHUTDOWN_DELAY_MS": "1500"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
            low = range.0,
            high = range.1
        )
    };
    let config = TestConfig::bare(&agent_config, support::configs::QUIET_POLICY);
    config.file(
        "services/web.json",
        &service("web", 2, testkit::free_port_range(6)),
    );
    config.file(
        "services/cache.json",
        &service("cache", 0, testkit::free_port_range(4)),
    );
    let bed = Cluster::start("idle", config);
    let events = ContainerEvents::start(&bed.name);

    // n1 runs web (MinInstances 2); n2 runs only its base service, cache, under load.
    let n1 = bed.spawn("n1");
    let on_n1 = wait_until(Duration::from_secs(30), || {
        running_services(&bed.name)
            .iter()
            .filter(|(s, n)| s == "web" && n == "n1")
            .count()
            == 2
    });
    assert!(on_n1.is_some(), "{:?}", running_services(&bed.name));
    let mut n2 = bed.spawn("n2");
    let out = support::run(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; set node n2 base-services cache", bed.name),
        ],
    );
    assert!(out.status.success(), "{}", support::text(&out));
    let cache_on_n2 = wait_until(Duration::from_secs(20), || {
        running_services(&bed.name)
            .iter()
            .any(|(s, n)| s == "cache" && n == "n2")
            && bed.registered("cache").len() == 1
    });
    assert!(cache_on_n2.is_some(), "{:?}", running_services(&bed.name));
    let from_ns = testkit::epoch_ns();
    let load = support::load::Load::start(&bed.etcd, &bed.name, "cache", 4);

    // IdlePeriod 3 s: n2 drains itself (cache started on n1 first), the hook gets its
    // name, and n2 leaves.
    let started = Instant::now();
    let left = wait_until(Duration::from_secs(60), || !n2.is_running());
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.stop_counting();
    figure(test, "idle_to_left_seconds", took.as_secs_f64());
    figure(test, "idle_requests", sent as f64);
    figure(test, "idle_failed_requests", failures.len() as f64);
    let agents = [n1];
    assert!(
        left.is_some(),
        "n2 did not leave: {:?}\n{}\n{}",
        running_services(&bed.name),
        n2.log_text(),
        logs_tail(&agents, 30)
    );
    let calls = std::fs::read_to_string(&calls_file).unwrap_or_default();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [format!("n2|remove-node|{}", bed.name)],
        "{}",
        n2.log_text()
    );
    assert!(
        n2.log_text().contains("left the cluster (lease revoked)"),
        "{}",
        n2.log_text()
    );
    assert!(sent > 50, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed while n2 drained: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Nothing lost: cache moved to n1 (never none), web stayed at 2, and n1 is not idle.
    let settled = wait_until(Duration::from_secs(10), || {
        let now = running_services(&bed.name);
        now.iter()
            .filter(|(s, n)| s == "cache" && n == "n1")
            .count()
            == 1
            && now.iter().filter(|(s, _)| s == "web").count() == 2
            && now.iter().all(|(_, n)| n == "n1")
    });
    assert!(settled.is_some(), "{:?}", running_services(&bed.name));
    events.assert_within("cache while n2 drained and left", 1..=2, from_ns, |e| {
        e.service == "cache"
    });
    events.assert_within("web while n2 drained and left", 2..=3, from_ns, |e| {
        e.service == "web"
    });
    assert!(agents[0].healthy());
}

#[test]
fn pinned_full_nodes_call_the_add_node_hook_once_and_a_hanging_one_is_killed_retried_and_reported()
{
    let test = "pinned_full_nodes_call_the_add_node_hook_once_and_a_hanging_one_is_killed_retried_and_reported";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let script = hook_dir.path().join("hang.sh");
    let starts = hook_dir.path().join("starts");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> {}\nexec sleep 600\n",
            starts.display()
        ),
    )
    .unwrap();
    let agent_config = nodes_config(&format!(
        r#""SaturatedPeriod": 2, "Cooldown": 120,
         "AddNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 2, "Retries": 1}}"#,
        script.display()
    ));
    // Here the nodes are full by pinned cores: one core per instance, as many instances as
    // the engine has cores (the two agents share the engine, and count its pins).
    let cores: u32 = docker(&["info", "--format", "{{.NCPU}}"])
        .trim()
        .parse()
        .unwrap();
    let range = testkit::free_port_range(2 * cores as u16 + 4);
    let config = TestConfig::bare(&agent_config, &scale_out_policy(1));
    config.file("analytics/resp_time_ratio.json", RESP_TIME_RATIO_ANALYTIC);
    config.file(
        "services/web.json",
        &format!(
            r#"{{
                "Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio"], "Constraints": {{"MAX_RESP_TIME": 100}},
                "MinInstances": {cores}, "MaxInstances": {max},
                "Configuration": {{
                    "Memory": "64m", "cpunumber": 1, "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
            max = cores + 1,
            low = range.0,
            high = range.1
        ),
    );
    let bed = Cluster::start("hookhang", config);
    let agents: Vec<Agent> = bed.spawn_nodes(2);
    // Every core pinned: both nodes say they have none free.
    let full = wait_until(Duration::from_secs(30), || {
        running_on(&bed.name, "n1") + running_on(&bed.name, "n2") == cores as usize
            && agents.iter().all(|a| {
                a.get_json("/gru/v1/node")
                    .is_some_and(|v| v["usage"]["free_cores"] == 0)
            })
    });
    assert!(full.is_some(), "{}", logs_tail(&agents, 40));

    // Overload until one agent reports the hook's failure (2 attempts of 2 s, killed).
    let started = Instant::now();
    let mut reported = None;
    let mut healthy_answers = 0;
    while started.elapsed() < Duration::from_secs(40) && reported.is_none() {
        for agent in &agents {
            let _ = agent.push_stat(&bed.secret, "web", "execution_time", "800");
            healthy_answers += usize::from(agent.healthy());
        }
        reported = agents.iter().find_map(|a| {
            a.actions(100)
                .into_iter()
                .find(|r| r.action == "add-node" && r.result.starts_with("failed"))
                .map(|r| (a.node.clone(), r.result))
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    let (node, result) = reported
        .unwrap_or_else(|| panic!("no add-node failure reported\n{}", logs_tail(&agents, 40)));
    figure(
        test,
        "hook_failure_reported_seconds",
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(
        result, "failed: 2 attempt(s): timed out after 2 s (killed); timed out after 2 s (killed)",
        "{node}"
    );
    // One claim across both agents (the other found it made), one run of two attempts.
    let claims: usize = agents
        .iter()
        .map(|a| {
            a.actions(100)
                .iter()
                .filter(|r| r.action == "saturated")
                .count()
        })
        .sum();
    assert_eq!(claims, 1);
    // One process per attempt, both killed; the agents answered throughout and their loops
    // went on deciding while the hook hung.
    let pids: Vec<String> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let gone = wait_until(Duration::from_secs(5), || {
        pids.iter()
            .all(|pid| !Path::new(&format!("/proc/{}", pid.trim())).exists())
    });
    assert!(
        gone.is_some(),
        "a timed-out hook process is still alive: {pids:?}"
    );
    for agent in &agents {
        assert!(agent.healthy(), "{} unhealthy", agent.node);
    }
    assert!(healthy_answers > 0);
    // Decisions recorded while the hook hung (from the claim to its failure, 4 s and a
    // second between attempts): the loop was not held.
    let claimer = agents.iter().find(|a| a.node == node).unwrap();
    let actions = claimer.actions(100);
    let claimed_at = actions
        .iter()
        .find(|r| r.action == "saturated")
        .map(|r| r.at_ms)
        .unwrap();
    let failed_at = actions
        .iter()
        .find(|r| r.action == "add-node")
        .map(|r| r.at_ms)
        .unwrap();
    let during = claimer
        .decisions(256)
        .iter()
        .filter(|d| {
            d["at"]
                .as_u64()
                .is_some_and(|at| at > claimed_at && at < failed_at)
        })
        .count();
    figure(test, "decisions_while_the_hook_hung", during as f64);
    assert!(
        during >= 3,
        "the loop of {node} stalled while its hook hung: {during} decisions in {} ms",
        failed_at - claimed_at
    );
}

#[test]
fn full_nodes_under_target_tracking_call_the_add_node_hook_once() {
    let test = "full_nodes_under_target_tracking_call_the_add_node_hook_once";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let calls_file = hook_dir.path().join("calls");
    let script = hook_dir.path().join("add-node.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$GRU_HOOK|$GRU_WANTED|$GRU_REASON\" >> {}\n",
            calls_file.display()
        ),
    )
    .unwrap();
    let agent_config = nodes_config(&format!(
        r#""SaturatedPeriod": 2, "Cooldown": 120,
         "AddNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 10}}"#,
        script.display()
    ));
    // Target tracking: the decision is a target in the ledger that the agents with room
    // fill, so no guard says "no free resources"; the nodes are full by memory (60 % of
    // the engine each, one per node), and the target stays above the count.
    let policy = r#"{
        "Scaleout": {"Enable": true, "Mode": "target", "Target": 0.5, "Threshold": 0.6,
                     "Analytics": ["resp_time_ratio"], "Period": 1},
        "Scalein": {"Enable": false, "Mode": "target", "Target": 0.5, "Threshold": 0.3,
                    "Analytics": ["resp_time_ratio"]},
        "Swap": {"Enable": false, "Threshold": 0.6},
        "CooldownOut": 3
    }"#;
    let engine_memory: u64 = docker(&["info", "--format", "{{.MemTotal}}"])
        .trim()
        .parse()
        .unwrap();
    let memory = format!("{}m", engine_memory / 10 * 6 / (1 << 20));
    let range = testkit::free_port_range(6);
    let config = TestConfig::bare(&agent_config, policy);
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
    let bed = Cluster::start("tgtsat", config);
    let events = ContainerEvents::start(&bed.name);
    let agents: Vec<Agent> = bed.spawn_nodes(2);
    let full = wait_until(Duration::from_secs(30), || {
        running_on(&bed.name, "n1") == 1 && running_on(&bed.name, "n2") == 1
    });
    assert!(full.is_some(), "{}", logs_tail(&agents, 40));

    // Sustained overload for 25 s: many SaturatedPeriods, several targets written and
    // expired unfilled, one cooldown.
    let started = Instant::now();
    let mut called_at = None;
    while started.elapsed() < Duration::from_secs(25) {
        for agent in &agents {
            let _ = agent.push_stat(&bed.secret, "web", "execution_time", "800");
        }
        if called_at.is_none() && calls_file.exists() {
            called_at = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let calls = std::fs::read_to_string(&calls_file).unwrap_or_default();
    let calls: Vec<&str> = calls.lines().collect();
    figure(test, "add_node_calls", calls.len());
    if let Some(at) = called_at {
        figure(test, "overload_to_add_node_call_seconds", at.as_secs_f64());
    }
    assert_eq!(
        calls.len(),
        1,
        "the add-node hook ran {} times: {calls:?}\n{}",
        calls.len(),
        logs_tail(&agents, 40)
    );
    assert!(
        calls[0].starts_with("add-node|1|saturated: web +1 wanted for 2 s and no node has room"),
        "{calls:?}"
    );
    // One claim across both agents; nothing went above MaxInstances.
    let claims: usize = agents
        .iter()
        .map(|a| {
            a.actions(100)
                .iter()
                .filter(|r| r.action == "saturated")
                .count()
        })
        .sum();
    assert_eq!(claims, 1);
    events.assert_at_most("web", 3, |e| e.service == "web");
    for agent in &agents {
        assert!(agent.healthy(), "{} unhealthy", agent.node);
    }
}
