//! `gru join` against a real etcd and the real Docker engine: registration under one lease,
//! name uniqueness, and what happens to the node's keys when the agent dies or stops.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{copy_dir, expect_code, gru, root};
use testkit::{
    ChildGuard, Component, EtcdCluster, figure, free_port, http_get, require, wait_until,
};

/// A cluster `c` with the example configuration, its Discovery.TTL set to `ttl`.
fn cluster_with_ttl(etcd: &EtcdCluster, ttl: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("configs/example"), dir.path());
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{ "Discovery": {{ "TTL": {ttl} }} }}"#),
    )
    .unwrap();
    let e = etcd.endpoints();
    expect_code(&e, &["create", "c"], 0);
    expect_code(
        &e,
        &["config", "push", "c", dir.path().to_str().unwrap()],
        0,
    );
    dir
}

fn spawn_join(endpoints: &str, node: &str, port: u16) -> ChildGuard {
    let child: Child = gru(endpoints)
        .args([
            "join",
            "c",
            "--name",
            node,
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard::new(child)
}

fn wait_healthy(port: u16) {
    let up = wait_until(Duration::from_secs(20), || {
        http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
    });
    assert!(up.is_some(), "agent on port {port} never served /healthz");
}

fn node_keys(etcd: &EtcdCluster, node: &str) -> Vec<String> {
    etcd.keys(&format!("/gru/c/nodes/{node}/"))
}

fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn lease_ttl_of(etcd: &EtcdCluster, key: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&etcd.etcdctl(&["get", key, "-w", "json"])).unwrap();
    let lease = json["kvs"][0]["lease"].as_i64().expect("key has a lease");
    let out = etcd.etcdctl(&["lease", "timetolive", &format!("{lease:x}")]);
    // "lease 694d... granted with TTL(2s), remaining(1s)"
    let granted = out.split("TTL(").nth(1).unwrap().split('s').next().unwrap();
    granted.parse().unwrap()
}

#[test]
fn join_registers_under_one_lease_with_the_configured_ttl_and_serves_healthz() {
    let test = "join_registers_under_one_lease_with_the_configured_ttl_and_serves_healthz";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let etcd = EtcdCluster::start();
    let _config = cluster_with_ttl(&etcd, 3);
    let port = free_port();
    let _agent = spawn_join(&etcd.endpoints(), "n1", port);
    wait_healthy(port);

    let (status, body) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["node"], "n1");
    assert_eq!(health["cluster"], "c");

    let keys = node_keys(&etcd, "n1");
    assert_eq!(
        keys,
        ["active", "config", "constraints", "resources"].map(|f| format!("/gru/c/nodes/n1/{f}"))
    );
    let leases: std::collections::BTreeSet<i64> = keys
        .iter()
        .map(|k| {
            let json: serde_json::Value =
                serde_json::from_str(&etcd.etcdctl(&["get", k, "-w", "json"])).unwrap();
            json["kvs"][0]["lease"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        leases.len(),
        1,
        "node keys under several leases: {leases:?}"
    );
    assert_eq!(lease_ttl_of(&etcd, "/gru/c/nodes/n1/config"), 3);

    let out = expect_code(&etcd.endpoints(), &["config", "get", "c", "nodes"], 0);
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n1 = &nodes["n1"];
    assert_eq!(n1["active"], false);
    assert_eq!(n1["config"]["Name"], "n1");
    assert_eq!(n1["config"]["Port"], port);
    assert!(n1["resources"]["TotalCpus"].as_u64().unwrap() >= 1, "{n1}");
    assert!(n1["resources"]["TotalMemory"].as_u64().unwrap() > 0, "{n1}");
}

#[test]
fn a_name_held_by_a_live_node_is_refused() {
    let test = "a_name_held_by_a_live_node_is_refused";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let etcd = EtcdCluster::start();
    let _config = cluster_with_ttl(&etcd, 5);
    let port = free_port();
    let _first = spawn_join(&etcd.endpoints(), "n1", port);
    wait_healthy(port);

    let out = gru(&etcd.endpoints())
        .args([
            "join",
            "c",
            "--name",
            "n1",
            "--port",
            &free_port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("held by a live node"));
    // The first agent is untouched.
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert_eq!(node_keys(&etcd, "n1").len(), 4);
}

#[test]
fn joining_a_missing_cluster_fails_clearly() {
    let test = "joining_a_missing_cluster_fails_clearly";
    if !require(test, Component::Etcd) {
        return;
    }
    let etcd = EtcdCluster::start();
    let out = gru(&etcd.endpoints())
        .args(["join", "nope", "--name", "n1", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(etcd.keys("/gru/").is_empty());
}

#[test]
fn sigkill_keys_vanish_within_ttl_and_sigint_at_once() {
    let test = "sigkill_keys_vanish_within_ttl_and_sigint_at_once";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    const TTL_SECS: u64 = 2;
    let etcd = EtcdCluster::start();
    let _config = cluster_with_ttl(&etcd, TTL_SECS as u32);
    let e = etcd.endpoints();

    // kill -9: nobody revokes the lease; etcd expires it.
    let port = free_port();
    let mut killed = spawn_join(&e, "n1", port);
    wait_healthy(port);
    // Let a few keep-alives refresh the lease, so the measurement starts from a full TTL.
    std::thread::sleep(Duration::from_secs(TTL_SECS + 1));
    assert_eq!(
        node_keys(&etcd, "n1").len(),
        4,
        "keep-alive failed to hold the keys"
    );
    let pid = killed.pid();
    send_signal(pid, "KILL");
    let _ = killed.take().wait();
    let started = Instant::now();
    let gone = wait_until(Duration::from_secs(TTL_SECS + 5), || {
        node_keys(&etcd, "n1").is_empty()
    });
    let waited =
        gone.unwrap_or_else(|| panic!("keys still there {:?} after SIGKILL", started.elapsed()));
    figure(
        test,
        "SIGKILL: node keys vanished after the kill",
        format!("{:.2} s (TTL {TTL_SECS} s)", waited.as_secs_f64()),
    );
    assert!(
        waited <= Duration::from_secs(TTL_SECS + 1),
        "keys outlived TTL + 1 s: {waited:?}"
    );

    // SIGINT (Ctrl-C): the agent revokes its lease on the way out. (SIGTERM keeps it for a
    // restart: `sigterm_keeps_the_lease_and_the_restarted_agent_takes_it_back`.)
    let port = free_port();
    let mut stopped = spawn_join(&e, "n2", port);
    wait_healthy(port);
    assert_eq!(node_keys(&etcd, "n2").len(), 4);
    let started = Instant::now();
    send_signal(stopped.pid(), "INT");
    let status = stopped.take().wait().unwrap();
    let exit_after = started.elapsed();
    assert_eq!(status.code(), Some(0), "agent did not exit 0 on SIGINT");
    assert!(
        node_keys(&etcd, "n2").is_empty(),
        "keys survived a clean stop"
    );
    figure(
        test,
        "SIGINT: agent exited 0 and its keys were gone after the signal",
        format!("{:.3} s", exit_after.as_secs_f64()),
    );
    assert!(
        exit_after < Duration::from_secs(TTL_SECS),
        "clean stop took {exit_after:?}"
    );
}

#[test]
fn with_one_of_three_etcd_members_dead_create_push_and_join_still_work() {
    let test = "with_one_of_three_etcd_members_dead_create_push_and_join_still_work";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let mut etcd = EtcdCluster::start_members(3);
    // All three endpoints are given, as an operator would; the first one dies.
    let e = etcd.endpoints();
    etcd.members[0].kill();
    let example: &Path = &root().join("configs/example");
    let started = Instant::now();
    expect_code(&e, &["create", "c"], 0);
    expect_code(&e, &["config", "push", "c", example.to_str().unwrap()], 0);
    let port = free_port();
    let _agent = spawn_join(&e, "n1", port);
    wait_healthy(port);
    figure(
        test,
        "member m0 dead: create + push + join",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    );
    assert_eq!(node_keys(&etcd, "n1").len(), 4);
    assert!(etcd.keys("/gru/c/services/").len() >= 2);
}

/// A SIGINT or SIGTERM that arrives while the agent starts (its port is bound, it is
/// registering) still makes it stop cleanly: the signal handlers are installed before
/// anything else (they were installed only once the agent was serving, and an early
/// SIGTERM killed it with the default action, leaving its keys to expire). SIGINT leaves
/// no key behind; SIGTERM keeps the lease for a restart, so only its exit is checked.
#[test]
fn a_signal_right_after_start_up_still_stops_cleanly() {
    let test = "a_signal_right_after_start_up_still_stops_cleanly";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let etcd = EtcdCluster::start();
    let _config = cluster_with_ttl(&etcd, 10);
    let e = etcd.endpoints();
    for round in 0..10 {
        let node = format!("early{round}");
        let port = free_port();
        let mut agent = spawn_join(&e, &node, port);
        let started = Instant::now();
        // The port is bound before the node registers and serves.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{node} never bound"
            );
        }
        let signal = if round % 2 == 0 { "INT" } else { "TERM" };
        send_signal(agent.pid(), signal);
        let output = agent.take().wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "round {round}: the agent did not stop cleanly on an early SIG{signal}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if signal == "INT" {
            assert!(
                node_keys(&etcd, &node).is_empty(),
                "round {round}: keys left behind"
            );
        }
    }
}

/// Each key of node `node` and the lease it lives under, read with etcdctl.
fn node_leases(endpoints: &str, node: &str) -> Vec<(String, u64)> {
    testkit::key_leases(endpoints, &format!("/gru/c/nodes/{node}/"))
}

/// SIGTERM stops the agent keeping its lease (one last keep-alive, a note in its state
/// directory); an agent of the same node started within the TTL takes the lease back: its
/// keys never vanish and stay under the same lease, which the new agent keeps alive. An
/// agent stopped with SIGTERM that nobody restarts loses its keys with the TTL, as after
/// `kill -9`.
#[test]
fn sigterm_keeps_the_lease_and_the_restarted_agent_takes_it_back() {
    let test = "sigterm_keeps_the_lease_and_the_restarted_agent_takes_it_back";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    const TTL_SECS: u64 = 4;
    let etcd = EtcdCluster::start();
    let _config = cluster_with_ttl(&etcd, TTL_SECS as u32);
    let e = etcd.endpoints();
    let port = free_port();
    let mut first = spawn_join(&e, "n1", port);
    wait_healthy(port);
    let before = node_leases(&e, "n1");
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(
        before
            .iter()
            .all(|(_, lease)| *lease != 0 && *lease == before[0].1)
    );

    let stopped = Instant::now();
    send_signal(first.pid(), "TERM");
    let output = first.take().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "SIGTERM: {log}");
    let note = support::test_state_dir().join("c/n1.lease.json");
    assert!(
        note.is_file(),
        "no kept-lease note at {}: {log}",
        note.display()
    );
    assert_eq!(
        node_leases(&e, "n1"),
        before,
        "the keys vanished or moved at a SIGTERM"
    );

    let mut second = spawn_join(&e, "n1", port);
    wait_healthy(port);
    let away = stopped.elapsed();
    figure(
        test,
        "SIGTERM to the restarted agent serving again (process exit, start, re-attach)",
        format!("{:.2} s (TTL {TTL_SECS} s)", away.as_secs_f64()),
    );
    // Past the TTL of the last keep-alive of the first agent: only the second keeps it.
    std::thread::sleep(Duration::from_secs(TTL_SECS + 1));
    assert_eq!(
        node_leases(&e, "n1"),
        before,
        "the restarted agent did not take back (and keep alive) the same lease"
    );

    // Nobody comes back: the keys go with the TTL.
    send_signal(second.pid(), "TERM");
    let output = second.take().wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let started = Instant::now();
    let gone = wait_until(Duration::from_secs(TTL_SECS + 5), || {
        node_keys(&etcd, "n1").is_empty()
    })
    .unwrap_or_else(|| panic!("keys still there {:?} after SIGTERM", started.elapsed()));
    figure(
        test,
        "SIGTERM and no restart: node keys vanished after the stop",
        format!("{:.2} s (TTL {TTL_SECS} s)", gone.as_secs_f64()),
    );
    assert!(
        gone <= Duration::from_secs(TTL_SECS + 1),
        "keys outlived TTL + 1 s: {gone:?}"
    );
}
