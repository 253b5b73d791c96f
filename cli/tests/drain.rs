//! Draining a node on the real engine and etcd, with two agents and a discovery-fed load:
//! `drain node n1` moves its base service and its two scaled instances to n2, each started
//! there before it is stopped on n1, with no failed request and never fewer instances than
//! MinInstances; n1 refuses new instances and reports the drain done.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::agents::logs_tail;
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::running_services;
use support::load::Load;
use support::{expect_code, text};
use testkit::{Component, figure, require, require_workload_image, wait_until};

/// A workload service at MinInstances `min`, with a lame-duck delay so that a stop leaves
/// discovery before the process goes, and a readiness check: a new instance is ready
/// (in discovery) only `ready_delay_ms` after it starts.
fn service(name: &str, min: u32, ready_delay_ms: u32, range: (u16, u16)) -> String {
    format!(
        r#"{{
            "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
            "MinInstances": {min}, "MaxInstances": 4,
            "Health": {{"Readiness": {{"Http": "/ready", "Interval": 0.5, "FailureThreshold": 1, "SuccessThreshold": 1}}}},
            "Configuration": {{
                "Memory": "64m", "StopTimeout": 3,
                "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5", "SHUTDOWN_DELAY_MS": "1500",
                         "READY_DELAY_MS": "{ready_delay_ms}"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#,
        image = testkit::WORKLOAD_IMAGE,
        low = range.0,
        high = range.1
    )
}

fn on(cluster: &str, service: &str, node: &str) -> usize {
    running_services(cluster)
        .iter()
        .filter(|(s, n)| s == service && n == node)
        .count()
}

/// Samples web's discovery records (its ready instances) every 100 ms until `stop`; the
/// lowest count and the number of samples.
fn ready_floor(
    endpoints: String,
    prefix: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let (mut lowest, mut samples) = (usize::MAX, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(keys) =
                testkit::etcdctl_at(&endpoints, &["get", "--prefix", "--keys-only", &prefix])
            {
                lowest = lowest.min(keys.lines().filter(|l| !l.trim().is_empty()).count());
                samples += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (lowest, samples)
    })
}

fn manage(bed: &Cluster, line: &str) -> std::process::Output {
    support::run(
        &bed.endpoints(),
        &["manage", "-c", &format!("use {}; {line}", bed.name)],
    )
}

#[test]
fn drain_node_moves_its_base_service_and_scaled_instances_first_started_elsewhere() {
    let test = "drain_node_moves_its_base_service_and_scaled_instances_first_started_elsewhere";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let web_range = testkit::free_port_range(8);
    let cache_range = testkit::free_port_range(4);
    let config = TestConfig::bare(&config_for_agents(3), QUIET_POLICY);
    config.file("services/web.json", &service("web", 2, 2000, web_range));
    config.file("services/cache.json", &service("cache", 0, 0, cache_range));
    let bed = Cluster::start("drain", config);
    let events = testkit::ContainerEvents::start(&bed.name);

    // n1 alone first: it repairs web's floor (two instances) and takes cache as its base
    // service; then n2 joins, empty.
    let n1 = bed.spawn("n1");
    let out = manage(&bed, "set node n1 base-services cache");
    assert!(out.status.success(), "{}", text(&out));
    let placed = wait_until(Duration::from_secs(40), || {
        on(&bed.name, "web", "n1") == 2
            && on(&bed.name, "cache", "n1") == 1
            && bed.registered("web").len() == 2
    });
    assert!(
        placed.is_some(),
        "n1 does not hold web x2 and cache: {:?}\n{}",
        running_services(&bed.name),
        logs_tail(std::slice::from_ref(&n1), 60)
    );
    let n2 = bed.spawn("n2");
    let agents = [n1, n2];

    // Drain n1 under a discovery-fed load on web.
    let load = Load::start(&bed.etcd, &bed.name, "web", 4);
    std::thread::sleep(Duration::from_secs(2));
    let from_ns = testkit::epoch_ns();
    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = ready_floor(
        bed.endpoints(),
        format!("/gru/{}/discovery/web/", bed.name),
        stop_sampling.clone(),
    );
    let started = Instant::now();
    let out = manage(&bed, "drain node n1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("draining"),
        "{}",
        text(&out)
    );
    // A drained node refuses new instances, with the reason.
    let refused = manage(&bed, "start service web node n1");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("node n1 is drained: it accepts no new instance"),
        "{}",
        text(&refused)
    );

    let moved = wait_until(Duration::from_secs(90), || {
        on(&bed.name, "web", "n2") == 2
            && on(&bed.name, "cache", "n2") == 1
            && running_services(&bed.name).iter().all(|(_, n)| n == "n2")
            && agents[0]
                .get_json("/gru/v1/node")
                .is_some_and(|v| v["drain"]["done"] == true)
    });
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.stop_counting();
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lowest_ready, samples) = sampler.join().unwrap();
    figure(test, "drain_lowest_ready_web", lowest_ready as f64);
    figure(test, "drain_seconds", took.as_secs_f64());
    figure(test, "drain_requests", sent as f64);
    figure(test, "drain_failed_requests", failures.len() as f64);
    assert!(
        moved.is_some(),
        "n1 not drained after {took:?}: {:?}\nn1's actions: {:#?}\nn2's actions: {:#?}\n{}",
        running_services(&bed.name),
        agents[0].actions(40),
        agents[1].actions(40),
        logs_tail(&agents, 20)
    );
    assert!(sent > 50, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during the drain: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        logs_tail(&agents, 80)
    );
    // Each replacement ready (2 s after its start) before its n1 instance stopped: never
    // fewer than 2 web instances in discovery.
    assert!(samples > 20, "only {samples} samples of the ready count");
    assert!(
        lowest_ready >= 2,
        "web's ready count fell to {lowest_ready} during the drain\n{}",
        logs_tail(&agents, 60)
    );
    // Never below min: web's 2 running throughout (each started on n2 before its n1
    // instance stopped), cache's one instance too (moved the same way), and never above
    // one more than before (one move per service at a time).
    events.assert_within("web during the drain", 2..=3, from_ns, |e| {
        e.service == "web"
    });
    events.assert_within("cache during the drain", 1..=2, from_ns, |e| {
        e.service == "cache"
    });

    // The node says so: list nodes, show node, events.
    let out = expect_code(
        &bed.endpoints(),
        &[
            "manage",
            "--output",
            "json",
            "-c",
            &format!("use {}; list nodes", bed.name),
        ],
        0,
    );
    let doc: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|d| d.get("nodes").is_some())
        .unwrap();
    let drain_of = |node: &str| {
        doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .map(|n| n["drain"].clone())
    };
    assert_eq!(drain_of("n1"), Some(serde_json::json!("drained")), "{doc}");
    assert_eq!(drain_of("n2"), Some(serde_json::json!("-")), "{doc}");
    let actions = agents[0].actions(50);
    assert!(
        actions
            .iter()
            .any(|a| a.action == "drain" && a.result.contains("drained: no instance left")),
        "{actions:?}"
    );

    // The drain survives a restart of n1's agent (kill -9, then join again once its lease
    // is gone); undrain takes it back.
    let [mut n1, n2] = agents;
    n1.kill9();
    let gone = wait_until(Duration::from_secs(15), || {
        bed.etcd
            .etcdctl(&[
                "get",
                "--print-value-only",
                &format!("/gru/{}/nodes/n1/config", bed.name),
            ])
            .trim()
            .is_empty()
    });
    assert!(gone.is_some(), "n1's records outlived its lease");
    let n1 = bed.spawn("n1");
    let view = n1.get_json("/gru/v1/node").unwrap();
    assert_eq!(view["drain"]["done"], true, "{view}");
    let out = manage(&bed, "undrain node n1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        n1.get_json("/gru/v1/node")
            .is_some_and(|v| v["drain"].is_null())
    );

    // Leave: refused for a node that is not drained; a drained one stops, its records and
    // its drain record go.
    let refused = manage(&bed, "leave node n2");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("node n2 is not drained"),
        "{}",
        text(&refused)
    );
    let out = manage(&bed, "drain node n1");
    assert!(out.status.success(), "{}", text(&out));
    let done = wait_until(Duration::from_secs(10), || {
        n1.get_json("/gru/v1/node")
            .is_some_and(|v| v["drain"]["done"] == true)
    });
    assert!(done.is_some(), "n1 (empty) not drained");
    let mut n1 = n1;
    // A name that is not a node's is bad usage, before anything is sent.
    expect_code(
        &bed.endpoints(),
        &["leave", &bed.name, "n1; stop agent all"],
        64,
    );
    // `gru leave <cluster> <node>`, the same as the shell's `leave node`.
    let out = support::run(&bed.endpoints(), &["leave", &bed.name, "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("left the cluster"), "{}", text(&out));
    let left = wait_until(Duration::from_secs(10), || {
        !n1.is_running()
            && bed
                .etcd
                .etcdctl(&[
                    "get",
                    "--prefix",
                    "--keys-only",
                    &format!("/gru/{}/nodes/n1/", bed.name),
                ])
                .trim()
                .is_empty()
    });
    assert!(left.is_some(), "n1 did not leave\n{}", n1.log_text());
    assert!(
        bed.etcd
            .etcdctl(&[
                "get",
                "--prefix",
                "--keys-only",
                &format!("/gru/{}/drains/", bed.name)
            ])
            .trim()
            .is_empty(),
        "a node that left kept its drain record"
    );
    assert!(n1.log_text().contains("left the cluster (lease revoked)"));
    // n2 kept everything.
    assert_eq!(on(&bed.name, "web", "n2"), 2);
    assert!(n2.healthy());
    assert!(
        bed.etcd
            .etcdctl(&[
                "get",
                "--prefix",
                "--keys-only",
                &format!("/gru/{}/drains/", bed.name)
            ])
            .trim()
            .is_empty(),
        "the drain record is left after undrain"
    );
}
