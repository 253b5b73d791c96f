//! `gru manage` against a real etcd, the real Docker engine and three agents on this
//! machine: a scripted session whose every step is checked in etcd and Docker, a killed
//! (and a frozen) agent failing alone and fast, and a deploy the nodes cannot hold.
#![allow(clippy::unwrap_used)]

mod manage_support;
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use manage_support::{ServiceSpec, TestCluster, engine_cpus};
use serde_json::Value;
use support::{gru, text};
use testkit::{Component, figure, require, require_workload_image};

const NODES: [&str; 3] = ["north", "south", "west"];

fn ready(test: &str) -> bool {
    require(test, Component::Etcd) && require_workload_image(test)
}

/// The per-node results of an action's JSON document: (node, ok, detail or error).
fn per_node(doc: &Value) -> Vec<(String, bool, String)> {
    doc["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no per-node results: {doc}"))
        .iter()
        .map(|n| {
            let ok = n["ok"].as_bool().unwrap();
            let detail = if ok { &n["detail"] } else { &n["error"] };
            (
                n["node"].as_str().unwrap().to_owned(),
                ok,
                detail.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_scripted_session_deploys_controls_and_explains_the_cluster() {
    let test = "a_scripted_session_deploys_controls_and_explains_the_cluster";
    if !ready(test) {
        return;
    }
    let services = [
        ServiceSpec::new("cache"),
        ServiceSpec::new("db"),
        ServiceSpec::new("web"),
    ];
    let c = TestCluster::start("session", &NODES, &services);
    let mut timings: Vec<(&str, Duration)> = Vec::new();

    // list nodes: the three agents, loops stopped, the engine's CPUs, nothing running.
    let (doc, took) = c.manage_ok("list nodes");
    timings.push(("list nodes", took));
    let nodes = doc["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, NODES);
    for node in nodes {
        assert_eq!(node["active"], false, "{node}");
        assert_eq!(node["cpus"], engine_cpus(), "{node}");
        assert_eq!(node["instances"], 0, "{node}");
        assert!(
            node["address"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{node}"
        );
    }
    for node in NODES {
        assert_eq!(
            c.active(node),
            Some(false),
            "{node} active before start agent"
        );
    }

    // deploy: one service per node (spread), each its node's base service, started by the
    // agents although their loops are stopped.
    let (doc, took) = c.manage_ok("deploy");
    timings.push(("deploy", took));
    let placements: Vec<(String, String)> = doc["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["service"].as_str().unwrap().to_owned(),
                p["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(placements.len(), 3, "{doc}");
    let used: BTreeSet<&str> = placements.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(used.len(), 3, "not spread over the nodes: {placements:?}");
    for (service, node) in &placements {
        c.eventually(
            &format!("{service} a base service of {node} in etcd"),
            Duration::from_secs(10),
            || c.base_services(node) == [service.clone()],
        );
        c.eventually(
            &format!("{service} running on {node}"),
            Duration::from_secs(30),
            || c.running(Some(service), Some(node)) == 1,
        );
    }
    assert_eq!(c.running(None, None), 3, "more containers than placements");
    let web_node = placements
        .iter()
        .find(|(s, _)| s == "web")
        .map(|(_, n)| n.clone())
        .unwrap();

    // start agent all: every node active in etcd (the command waits for it).
    let (doc, took) = c.manage_ok("start agent all");
    timings.push(("start agent all", took));
    assert!(per_node(&doc).iter().all(|(_, ok, _)| *ok), "{doc}");
    for node in NODES {
        assert_eq!(c.active(node), Some(true), "{node} not active");
    }

    // status: services × nodes, one instance of each service.
    let (doc, took) = c.manage_ok("status");
    timings.push(("status", took));
    for service in ["cache", "db", "web"] {
        assert_eq!(doc["services"][service]["total"], 1, "{service}: {doc}");
    }
    assert_eq!(
        doc["services"]["web"]["nodes"][&web_node]["instances"], 1,
        "{doc}"
    );
    for node in NODES {
        assert_eq!(doc["nodes"][node]["answered"], true, "{doc}");
        assert_eq!(doc["nodes"][node]["active"], true, "{doc}");
    }

    // list nodes again: each node's use, from its container's stats readings (memory in
    // use once the poller read it; no service pins a core, so every core is free).
    c.eventually(
        "every node's memory in use in list nodes",
        Duration::from_secs(15),
        || {
            let (doc, _) = c.manage_ok("list nodes");
            doc["nodes"].as_array().unwrap().iter().all(|n| {
                n["memory_used_bytes"].as_u64().is_some_and(|b| b > 0)
                    && n["cpu_used_cores"].as_f64().is_some_and(|c| c >= 0.0)
            })
        },
    );
    let (doc, _) = c.manage_ok("list nodes");
    for node in doc["nodes"].as_array().unwrap() {
        assert_eq!(node["free_cores"], engine_cpus(), "{node}");
        assert_eq!(node["instances"], 1, "{node}");
    }

    // stop service web on its node: gone from Docker, no longer a base service there, and
    // not started again by the node's (active) loop.
    let (doc, took) = c.manage_ok(&format!("stop service web node {web_node}"));
    timings.push(("stop service", took));
    let results = per_node(&doc);
    assert!(results[0].2.starts_with("stopped "), "{doc}");
    assert!(results[0].2.contains("no longer a base service"), "{doc}");
    assert_eq!(
        c.running(Some("web"), None),
        0,
        "web still runs after stop service"
    );
    assert!(
        c.base_services(&web_node).is_empty(),
        "web still a base service of {web_node}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.running(Some("web"), None), 0, "web was started again");

    // start service web node all (and Gru's form for one more on north): an instance on
    // each node, each start reported with its instance.
    let (doc, took) = c.manage_ok("start service web node all");
    timings.push(("start service (3 nodes)", took));
    let results = per_node(&doc);
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|(_, ok, d)| *ok && d.starts_with("started ")),
        "{doc}"
    );
    for node in NODES {
        assert_eq!(c.running(Some("web"), Some(node)), 1, "web on {node}");
    }
    let (doc, _) = c.manage_ok("start service web north");
    assert!(per_node(&doc)[0].1, "{doc}");
    assert_eq!(
        c.running(Some("web"), Some("north")),
        2,
        "Gru's form did not start web on north"
    );

    // stop agent south: inactive in etcd, its containers keep running, the others active.
    let before_south = c.running(None, Some("south"));
    let (doc, took) = c.manage_ok("stop agent south");
    timings.push(("stop agent", took));
    assert_eq!(per_node(&doc)[0].0, "south");
    assert_eq!(c.active("south"), Some(false));
    assert_eq!(c.active("north"), Some(true));
    assert_eq!(c.active("west"), Some(true));
    assert_eq!(
        c.running(None, Some("south")),
        before_south,
        "stop agent stopped containers"
    );

    // why: north's latest decisions about web, with weights, draw and reason.
    let (doc, took) = c.manage_ok("why north web");
    timings.push(("why", took));
    let decisions = doc["decisions"].as_array().unwrap();
    assert!(
        !decisions.is_empty(),
        "north decided nothing about web: {doc}"
    );
    for decision in decisions {
        assert!(
            !decision["reason"].as_str().unwrap().is_empty(),
            "{decision}"
        );
        assert!(
            decision["draw"].is_number(),
            "probcumulative draws: {decision}"
        );
        let weighed = decision["weights"].as_array().unwrap();
        assert!(
            weighed
                .iter()
                .any(|w| w["action"]["kind"] == "scale-out" && w["action"]["service"] == "web"),
            "scale-out web not weighed: {decision}"
        );
    }

    // events: every node's actions, newest first, tagged with the node.
    let (doc, took) = c.manage_ok("events 50");
    timings.push(("events", took));
    let events = doc["events"].as_array().unwrap();
    let times: Vec<u64> = events.iter().map(|e| e["at"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
    let starts: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["action"] == "start-service" && e["service"] == "web" && e["result"] == "ok")
        .map(|e| e["node"].as_str().unwrap())
        .collect();
    assert_eq!(starts, NODES.into_iter().collect(), "{doc}");
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "stop-service" && e["node"] == web_node.as_str()),
        "the stop is not among the events: {doc}"
    );
    assert!(
        events.iter().any(|e| e["action"] == "base-service"),
        "deploy's starts missing: {doc}"
    );

    // The same session in text, as a script on standard input: tables and the transcript.
    let started = Instant::now();
    let mut child = gru(&c.etcd.endpoints())
        .args(["manage"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "use {}\nlist nodes\nstatus\nwhy west\nevents 5\nshow node south status\n",
        c.cluster
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    timings.push(("stdin script (6 commands)", started.elapsed()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let transcript = format!("gru({})> list nodes", c.cluster);
    for needle in [
        transcript.as_str(),
        "│ node ",
        "north",
        "latest decisions of west",
        "start-service",
        "inactive (loop stopped)",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing:\n{}",
            text(&out)
        );
    }

    // undeploy: no base service left, every instance stopped.
    let (doc, took) = c.manage_ok("stop agent all; undeploy");
    timings.push(("stop agent all; undeploy", took));
    assert_eq!(doc["command"], "stop agent", "{doc}");
    c.eventually(
        "every instance stopped after undeploy",
        Duration::from_secs(30),
        || c.running(None, None) == 0,
    );
    for node in NODES {
        assert!(
            c.base_services(node).is_empty(),
            "{node} kept base services"
        );
    }

    // A whole `gru manage -c` run: process, etcd, 3 agents.
    for (command, took) in timings {
        figure(
            test,
            &format!("a whole gru manage -c run: {command}"),
            format!("{:.0} ms", took.as_secs_f64() * 1000.0),
        );
    }
}

#[test]
fn script_errors_set_the_exit_code_and_every_command_still_runs() {
    let test = "script_errors_set_the_exit_code_and_every_command_still_runs";
    if !require(test, Component::Etcd) {
        return;
    }
    let etcd = testkit::EtcdCluster::start();
    let e = etcd.endpoints();
    let cluster = format!("t{}-errors", std::process::id());
    let out = gru(&e).args(["create", &cluster]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = |script: &str| gru(&e).args(["manage", "-c", script]).output().unwrap();

    // A typo: the nearest command, exit 64, and the commands after it still run.
    let out = run(&format!("use {cluster}; lsit nodes; list clusters"));
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown command `lsit`; did you mean `list`?"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{cluster} (in use)")),
        "{}",
        text(&out)
    );

    // Wrong arguments: that command's usage.
    let out = run(&format!("use {cluster}; start service web"));
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("usage: start service <service> node <node|all>"),
        "{}",
        text(&out)
    );

    // A command that fails at run time: exit 1, named.
    let out = run(&format!("use {cluster}; start agent ghost; list clusters"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no live node ghost"),
        "{}",
        text(&out)
    );
    let out = run("use no-such-cluster");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        text(&out)
    );
    let out = run("list nodes");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no cluster in use"),
        "{}",
        text(&out)
    );

    // --cluster and --output json: one document per command.
    let out = gru(&e)
        .args([
            "manage",
            "--cluster",
            &cluster,
            "--output",
            "json",
            "-c",
            "show cluster; list services",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let docs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "{}", text(&out));
    assert_eq!(docs[1]["cluster"], cluster.as_str());
    assert_eq!(docs[2]["services"], serde_json::json!([]));
}

#[test]
fn a_killed_agent_fails_alone_and_fast() {
    let test = "a_killed_agent_fails_alone_and_fast";
    if !ready(test) {
        return;
    }
    let mut c = TestCluster::start("killed", &NODES, &[ServiceSpec::new("web")]);
    let (doc, _) = c.manage_ok("start agent all");
    assert_eq!(per_node(&doc).len(), 3);

    // kill -9 south: its records stay in etcd until its lease expires (10 s), its port is
    // closed. Commands to it fail at once, naming it; the others go through.
    c.agents.get_mut("south").unwrap().kill9();
    let mut latencies = Vec::new();
    let mut node_latencies = Vec::new();
    for command in [
        "stop agent all",
        "list nodes",
        "status",
        "start service web node all",
        "events",
    ] {
        let (code, docs, took, out) = c.manage_json(command);
        latencies.push((command, took));
        assert_eq!(
            code,
            Some(1),
            "{command}: the dead node must fail the command\n{}",
            text(&out)
        );
        if command != "start service web node all" {
            // (That one also waits for the others' containers to start.)
            assert!(
                took < Duration::from_secs(5),
                "{command} took {took:?} with a dead node"
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("south"),
            "{command}: the dead node is not named\n{}",
            text(&out)
        );
        let doc = &docs[0];
        if doc.get("command").is_some() {
            // An action: each node's result, and how long the dead one took to fail.
            for (node, ok, detail) in per_node(doc) {
                if node == "south" {
                    assert!(!ok, "{command}: south succeeded? {doc}");
                    assert!(
                        detail.contains("unreachable at 127.0.0.1:"),
                        "{command}: {detail}"
                    );
                    assert!(detail.contains("refused"), "{command}: {detail}");
                } else {
                    assert!(ok, "{command}: {node} failed: {detail}");
                }
            }
            let south = doc["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node"] == "south")
                .unwrap();
            let failed_after = south["elapsed_ms"].as_u64().unwrap();
            assert!(
                failed_after < 5000,
                "{command}: south failed after {failed_after} ms"
            );
            node_latencies.push((command, failed_after));
        } else {
            let why = doc["node_errors"]["south"].as_str().unwrap_or_default();
            assert!(why.contains("unreachable"), "{command}: {doc}");
        }
    }
    assert_eq!(
        c.active("north"),
        Some(false),
        "stop agent all did not reach north"
    );
    assert_eq!(
        c.active("west"),
        Some(false),
        "stop agent all did not reach west"
    );
    assert_eq!(c.running(Some("web"), Some("north")), 1);
    assert_eq!(c.running(Some("web"), Some("west")), 1);

    // A frozen agent (SIGSTOP) accepts connections and never answers: the request
    // deadline bounds the wait.
    c.agents["west"].freeze();
    let (code, docs, took, out) = c.manage_json("start agent north west");
    latencies.push(("start agent (west frozen)", took));
    assert_eq!(code, Some(1), "{}", text(&out));
    assert!(
        took < Duration::from_secs(5),
        "a frozen agent held the command {took:?}"
    );
    let results = per_node(&docs[0]);
    assert_eq!(results[0].0, "north");
    assert!(results[0].1, "{results:?}");
    assert_eq!(results[1].0, "west");
    assert!(
        results[1].2.contains("no answer from 127.0.0.1:"),
        "{results:?}"
    );
    assert_eq!(c.active("north"), Some(true));
    let frozen_after = docs[0]["nodes"][1]["elapsed_ms"].as_u64().unwrap();
    node_latencies.push(("start agent (west frozen)", frozen_after));

    for (command, took) in latencies {
        figure(
            test,
            &format!("a whole gru manage -c run, one node dead or frozen: {command}"),
            format!("{:.0} ms", took.as_secs_f64() * 1000.0),
        );
    }
    for (command, ms) in node_latencies {
        figure(
            test,
            &format!("until the dead or frozen node's error: {command}"),
            format!("{ms} ms"),
        );
    }
}

#[test]
fn deploy_refuses_what_the_nodes_cannot_hold_and_changes_nothing() {
    let test = "deploy_refuses_what_the_nodes_cannot_hold_and_changes_nothing";
    if !ready(test) {
        return;
    }
    // Four services that each pin every core of a node, on three nodes.
    let cpus = engine_cpus();
    let services: Vec<ServiceSpec> = ["big1", "big2", "big3", "big4"]
        .iter()
        .map(|name| ServiceSpec::pinned(name, cpus))
        .collect();
    let c = TestCluster::start("refuse", &NODES, &services);
    let constraints = || -> Vec<(String, String)> {
        c.etcd
            .dump(&format!("/gru/{}/nodes/", c.cluster))
            .into_iter()
            .filter(|(k, _)| k.ends_with("/constraints"))
            .collect()
    };
    let before = constraints();
    assert_eq!(before.len(), 3, "{before:?}");

    let (code, docs, _, out) = c.manage_json("deploy");
    assert_eq!(code, Some(1), "{}", text(&out));
    let doc = &docs[0];
    assert_eq!(doc["refused"], true, "{doc}");
    let unplaced: Vec<&str> = doc["unplaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["service"].as_str().unwrap())
        .collect();
    assert_eq!(unplaced, ["big4"], "{doc}");
    assert_eq!(doc["needed"]["cpus"], 4 * cpus);
    assert_eq!(doc["free"]["cpus"], 3 * cpus);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "deploy refused: the nodes cannot hold one instance of every service",
        "nothing was deployed",
        &format!("no room for big4: it needs {cpus} cpu(s) and 64 MiB"),
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing:\n{}",
            text(&out)
        );
    }

    // Nothing half-deployed: the node records are as they were, no container exists.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(constraints(), before, "constraints records changed");
    for node in NODES {
        assert!(c.base_services(node).is_empty(), "{node} got base services");
    }
    assert_eq!(c.all_containers(), 0, "a container was created");

    // Text output says the same to an operator.
    let out = c.manage(&["-c", &format!("use {}; deploy", c.cluster)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("add nodes, or lower the services' cpunumber or Memory")
    );
}
