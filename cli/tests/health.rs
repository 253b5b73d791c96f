//! Health checks on the real Docker engine and a real etcd: readiness gates discovery (a
//! starting instance is counted, not served, and starts nothing more), an instance leaves
//! discovery within one check interval plus a loop when its readiness check fails and comes
//! back when it passes, liveness failing past its threshold replaces the instance, and the
//! HTTP API and `status` show it all.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{Cluster, registered};
use support::configs::{CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::{running_ids_of, running_instances};
use support::{gru, text};
use testkit::{
    Component, ContainerEvents, EtcdCluster, epoch_ns, figure, http_request_to, require,
    require_workload_image, wait_until,
};

/// The checks' interval in these tests, and the agents' loop (`CONFIG_ONE_SECOND_LOOPS`).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const LOOP: Duration = Duration::from_secs(1);
/// What the tests allow on top of a stated bound: etcd writes, the test's own polling
/// (an etcdctl process per look), a loaded machine.
const MARGIN: Duration = Duration::from_secs(2);

/// A workload service with `health` as its `Health` and `env` added to its environment
/// (each `"KEY": "value",`), port 8080 published in `range`.
fn workload_service(
    config: &TestConfig,
    name: &str,
    min: u32,
    health: &str,
    env: &str,
    range: (u16, u16),
) {
    let doc = format!(
        r#"{{
            "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
            "MinInstances": {min},
            "Health": {health},
            "Configuration": {{
                "Memory": "64m", "StopTimeout": 2,
                "Env": {{{env} "SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#,
        image = testkit::WORKLOAD_IMAGE,
        low = range.0,
        high = range.1
    );
    config.file(&format!("services/{name}.json"), &doc);
}

/// Starting records of `service`: instance → address.
fn starting(etcd: &EtcdCluster, cluster: &str, service: &str) -> Vec<(String, String)> {
    let prefix = format!("/gru/{cluster}/starting/{service}/");
    etcd.dump(&prefix)
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches(&prefix).to_owned(), v))
        .collect()
}

/// Switches the workload's readiness at `address` (`host:port`), as its operator would.
#[track_caller]
fn switch_ready(address: &str, on: bool) {
    let addr: SocketAddr = address.parse().unwrap();
    let answer = http_request_to(
        addr,
        Duration::from_secs(2),
        "POST",
        &format!("/ready?value={on}"),
        None,
        None,
    );
    let expected = if on { 200 } else { 503 };
    assert_eq!(
        answer.as_ref().map(|(status, _)| *status),
        Some(expected),
        "POST /ready?value={on} to {address}: {answer:?}"
    );
}

/// `gru manage --output json -c "use <cluster>; status"`: the status document.
fn status_json(bed: &Cluster) -> Value {
    manage_json(bed, "status")
}

/// `gru manage --output json -c "use <cluster>; <command>"`: the command's document.
fn manage_json(bed: &Cluster, command: &str) -> Value {
    let out = gru(&bed.endpoints())
        .args([
            "manage",
            "--output",
            "json",
            "-c",
            &format!("use {}; {command}", bed.name),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// `gru manage -c "use <cluster>; status"` as text.
fn status_text(bed: &Cluster) -> String {
    let out = gru(&bed.endpoints())
        .args(["manage", "-c", &format!("use {}; status", bed.name)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_starting_instance_counts_but_is_not_served_and_readiness_moves_it_out_of_discovery_and_back() {
    let test = "a_starting_instance_counts_but_is_not_served_and_readiness_moves_it_out_of_discovery_and_back";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let ready_delay = Duration::from_secs(6);
    let config = TestConfig::bare(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    workload_service(
        &config,
        "web",
        2,
        r#"{"Readiness": {"Http": "/ready", "Interval": 0.5, "FailureThreshold": 1, "SuccessThreshold": 1}}"#,
        &format!(r#""READY_DELAY_MS": "{}","#, ready_delay.as_millis()),
        testkit::free_port_range(8),
    );
    let bed = Cluster::start("ready", config);
    let events = ContainerEvents::start(&bed.name);
    let agent = bed.spawn("n1");
    let (cluster, etcd) = (bed.name.as_str(), &bed.etcd);

    // MinInstances 2, both starting: counted (two starting records), not in discovery.
    let both_starting = wait_until(Duration::from_secs(30), || {
        starting(etcd, cluster, "web").len() == 2
    });
    assert!(
        both_starting.is_some(),
        "two starting records expected: {:?}, discovery {:?}\n{}",
        starting(etcd, cluster, "web"),
        registered(etcd, cluster, "web"),
        agent.log_text()
    );
    let served_while_starting = registered(etcd, cluster, "web");
    assert!(
        served_while_starting.is_empty(),
        "an instance that is not ready yet is in discovery: {served_while_starting:?}"
    );
    let services = agent.get_json("/gru/v1/services").unwrap();
    assert_eq!(services["services"]["web"]["running"], 2, "{services}");
    assert_eq!(services["services"]["web"]["ready"], 0, "{services}");
    for instance in services["services"]["web"]["instances"].as_array().unwrap() {
        assert_eq!(instance["ready"], false, "{instance}");
        assert_eq!(instance["condition"], "starting", "{instance}");
        // Failing (FailureThreshold 1) or not yet settled, but never passed: starting.
        assert_ne!(
            instance["health"]["readiness"]["status"], "passing",
            "{instance}"
        );
    }
    let status = status_json(&bed);
    assert_eq!(
        status["services"]["web"]["nodes"]["n1"]["instances"], 2,
        "{status}"
    );
    assert_eq!(
        status["services"]["web"]["nodes"]["n1"]["ready"], 0,
        "{status}"
    );
    assert!(
        status_text(&bed).contains("0 ready"),
        "{}",
        status_text(&bed)
    );

    // Once ready (after READY_DELAY_MS), both are in discovery and none is starting.
    let both_ready = wait_until(ready_delay + Duration::from_secs(10), || {
        registered(etcd, cluster, "web").len() == 2 && starting(etcd, cluster, "web").is_empty()
    });
    assert!(
        both_ready.is_some(),
        "not both in discovery: {:?}, starting {:?}\n{}",
        registered(etcd, cluster, "web"),
        starting(etcd, cluster, "web"),
        agent.log_text()
    );
    figure(
        test,
        "starting to ready",
        format!(
            "both instances in discovery {:.1} s after both were starting (READY_DELAY_MS {} ms)",
            both_ready.unwrap().as_secs_f64(),
            ready_delay.as_millis()
        ),
    );
    // Not one more than MinInstances was ever started while they were starting.
    events.assert_at_most("web", 2, |e| e.service == "web");
    assert_eq!(running_instances(&bed.containers, "web").len(), 2);

    // One instance's readiness fails: it leaves discovery (into the starting records)
    // within one check interval plus a loop, the other stays, nothing is started for it.
    let (instance, address) = registered(etcd, cluster, "web").remove(0);
    let switched = Instant::now();
    switch_ready(&address, false);
    let left = wait_until(Duration::from_secs(15), || {
        !registered(etcd, cluster, "web")
            .iter()
            .any(|(i, _)| *i == instance)
    });
    assert!(
        left.is_some(),
        "{instance} still in discovery after its readiness failed\n{}",
        agent.log_text()
    );
    let left_after = switched.elapsed();
    assert_eq!(
        starting(etcd, cluster, "web"),
        vec![(instance.clone(), address.clone())],
        "the instance that is not ready must still be counted"
    );
    assert_eq!(registered(etcd, cluster, "web").len(), 1);
    assert!(
        left_after <= CHECK_INTERVAL + LOOP + MARGIN,
        "left discovery {left_after:?} after its readiness failed (bound: interval {CHECK_INTERVAL:?} + loop {LOOP:?})"
    );
    figure(
        test,
        "readiness failing -> out of discovery",
        format!(
            "{:.0} ms (bound: interval {} ms + loop {} ms; FailureThreshold 1)",
            left_after.as_secs_f64() * 1000.0,
            CHECK_INTERVAL.as_millis(),
            LOOP.as_millis()
        ),
    );

    // The HTTP API and status say which one and why.
    let services = agent.get_json("/gru/v1/services").unwrap();
    assert_eq!(services["services"]["web"]["ready"], 1, "{services}");
    let failing = services["services"]["web"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == instance.as_str())
        .cloned()
        .unwrap();
    assert_eq!(failing["ready"], false, "{failing}");
    assert_eq!(failing["condition"], "not-ready", "{failing}");
    assert_eq!(
        failing["health"]["readiness"]["status"], "failing",
        "{failing}"
    );
    assert!(
        failing["health"]["readiness"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{failing}"
    );
    let node = agent.get_json("/gru/v1/node").unwrap();
    assert_eq!(node["instances"]["by_service"]["web"]["ready"], 1, "{node}");
    let shown = status_text(&bed);
    let listed = manage_json(&bed, "list services");
    assert_eq!(listed["services"][0]["running"], 2, "{listed}");
    assert_eq!(listed["services"][0]["ready"], 1, "{listed}");
    assert!(
        shown.contains("2 running") && shown.contains("1 ready"),
        "{shown}"
    );

    // Passing again, it comes back.
    std::thread::sleep(Duration::from_secs(2));
    let switched = Instant::now();
    switch_ready(&address, true);
    let back = wait_until(Duration::from_secs(15), || {
        registered(etcd, cluster, "web")
            .iter()
            .any(|(i, _)| *i == instance)
    });
    assert!(
        back.is_some(),
        "{instance} not back in discovery after its readiness passed\n{}",
        agent.log_text()
    );
    let back_after = switched.elapsed();
    assert!(starting(etcd, cluster, "web").is_empty());
    assert!(
        back_after <= CHECK_INTERVAL + LOOP + MARGIN,
        "back in discovery {back_after:?} after its readiness passed"
    );
    figure(
        test,
        "readiness passing -> back in discovery",
        format!(
            "{:.0} ms (SuccessThreshold 1)",
            back_after.as_secs_f64() * 1000.0
        ),
    );
    // Through it all, two containers and no more.
    events.assert_at_most("web", 2, |e| e.service == "web");
    assert_eq!(running_instances(&bed.containers, "web").len(), 2);
}

#[test]
fn an_instance_failing_its_liveness_check_is_replaced_and_the_action_says_why() {
    let test = "an_instance_failing_its_liveness_check_is_replaced_and_the_action_says_why";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::bare(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    // The workload's readiness switch stands in for a hung process: `/ready` answers 503
    // once switched off, as a liveness endpoint of a stuck service would.
    workload_service(
        &config,
        "live",
        1,
        r#"{"Liveness": {"Http": "/ready", "Interval": 0.5, "FailureThreshold": 2}}"#,
        "",
        testkit::free_port_range(8),
    );
    let bed = Cluster::start("live", config);
    let events = ContainerEvents::start(&bed.name);
    let agent = bed.spawn("n1");
    let (cluster, etcd) = (bed.name.as_str(), &bed.etcd);

    // No readiness check: in discovery as soon as it runs.
    let up = wait_until(Duration::from_secs(30), || {
        registered(etcd, cluster, "live").len() == 1
    });
    assert!(up.is_some(), "not started\n{}", agent.log_text());
    let old_ids = running_ids_of(cluster, "live");
    assert_eq!(old_ids.len(), 1);
    let (old_instance, address) = registered(etcd, cluster, "live").remove(0);
    // Registered as soon as its container runs, which may be before the workload listens
    // (seen on a loaded machine: the switch below found no one): wait for an answer.
    let addr: SocketAddr = address.parse().unwrap();
    let listening = wait_until(Duration::from_secs(15), || {
        http_request_to(addr, Duration::from_secs(2), "GET", "/ready", None, None).is_some()
    });
    assert!(
        listening.is_some(),
        "{address} never answered\n{}",
        agent.log_text()
    );
    let from_ns = epoch_ns();

    let switched = Instant::now();
    switch_ready(&address, false);
    let replaced = wait_until(Duration::from_secs(30), || {
        let ids = running_ids_of(cluster, "live");
        ids.len() == 1
            && ids != old_ids
            && registered(etcd, cluster, "live")
                .iter()
                .all(|(i, _)| *i != old_instance)
            && registered(etcd, cluster, "live").len() == 1
    });
    assert!(
        replaced.is_some(),
        "not replaced: {:?} (was {old_ids:?})\n{}",
        running_ids_of(cluster, "live"),
        agent.log_text()
    );
    figure(
        test,
        "liveness failing -> replaced",
        format!(
            "new instance in discovery and the old one gone {:.1} s after /ready was switched off (Interval 0.5 s, FailureThreshold 2)",
            switched.elapsed().as_secs_f64()
        ),
    );

    // Both halves recorded with the reason.
    let actions = agent.get_json("/gru/v1/actions?limit=50").unwrap();
    let actions = actions["actions"].as_array().unwrap();
    let stopped = actions
        .iter()
        .find(|a| a["action"] == "replace-unhealthy" && a["instance"] == old_instance.as_str());
    let stopped = stopped.unwrap_or_else(|| panic!("no replace-unhealthy stop: {actions:?}"));
    assert_eq!(stopped["result"], "ok", "{stopped}");
    let reason = stopped["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("liveness check failed 2 times in a row") && reason.contains("HTTP 503"),
        "{stopped}"
    );
    assert!(
        actions.iter().any(|a| a["action"] == "replace-unhealthy"
            && a["instance"] != old_instance.as_str()
            && a["result"] == "ok"),
        "no replace-unhealthy start: {actions:?}"
    );
    // `events` shows the reason too.
    let out = gru(&bed.endpoints())
        .args(["manage", "-c", &format!("use {}; events 20", bed.name)])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("replace-unhealthy") && shown.contains("liveness check failed"),
        "{}",
        text(&out)
    );
    // The new one started before the old one stopped: never none, never more than two.
    events.assert_within("live", 1..=2, from_ns, |e| e.service == "live");
}

#[test]
fn agents_count_each_others_starting_instances_and_start_no_extra_one() {
    let test = "agents_count_each_others_starting_instances_and_start_no_extra_one";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let ready_delay = Duration::from_secs(5);
    let config = TestConfig::bare(&config_for_agents(5), QUIET_POLICY);
    workload_service(
        &config,
        "web",
        3,
        r#"{"Readiness": {"Http": "/ready", "Interval": 0.5}}"#,
        &format!(r#""READY_DELAY_MS": "{}","#, ready_delay.as_millis()),
        testkit::free_port_range(12),
    );
    let bed = Cluster::start("ready2", config);
    let events = ContainerEvents::start(&bed.name);
    let agents = bed.spawn_nodes(2);
    let (cluster, etcd) = (bed.name.as_str(), &bed.etcd);

    // Three starting instances (the repairs of MinInstances, claimed by either agent, see
    // the others' starting records), then three ready ones, and never a fourth container.
    // Seen at least once: all three counted while some were not served yet.
    let mut counted_while_starting = false;
    let all_ready = wait_until(Duration::from_secs(45), || {
        let (served, waiting) = (
            registered(etcd, cluster, "web").len(),
            starting(etcd, cluster, "web").len(),
        );
        counted_while_starting |= waiting > 0 && served + waiting == 3;
        served == 3 && waiting == 0
    });
    assert!(
        all_ready.is_some(),
        "discovery {:?}, starting {:?}\n{}",
        registered(etcd, cluster, "web"),
        starting(etcd, cluster, "web"),
        support::agents::logs_tail(&agents, 40)
    );
    assert!(
        counted_while_starting,
        "never saw the three instances counted while some were starting"
    );
    // A few loops more: still three.
    std::thread::sleep(Duration::from_secs(3));
    let timeline = events.assert_at_most("web", 3, |e| e.service == "web");
    assert_eq!(running_instances(&bed.containers, "web").len(), 3);
    assert_eq!(registered(etcd, cluster, "web").len(), 3);
    let (peak, _) = timeline.peak();
    figure(
        test,
        "instances with READY_DELAY_MS 5000 on 2 agents",
        format!(
            "MinInstances 3: peak {peak} containers, 3 in discovery {:.1} s after the agents were up",
            all_ready.unwrap().as_secs_f64()
        ),
    );
}
