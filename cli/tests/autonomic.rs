//! The agent's MAPE-K loop on the real Docker engine and a real etcd: scaling with load
//! inside [min, max], discovery records matching the running containers, adoption after a
//! kill -9, and swap.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::cluster::{Cluster, registered};
use support::configs::{CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY, TestConfig};
use support::docker::{docker, running_instances};
use support::load::Load;
use testkit::{
    ClusterContainers, Component, ContainerEvents, EtcdCluster, epoch_ns, figure, http_get,
    require, require_workload_image, wait_until,
};

/// Checks the invariants once: labels, and discovery records equal to the running
/// containers. Returns the count, or why the records differ (a transient state the caller
/// may look at again). The bounds are checked on every start and death the engine reports
/// ([`ContainerEvents`]), not here: a sample misses what runs between two samples.
fn check(
    etcd: &EtcdCluster,
    containers: &ClusterContainers,
    service: &str,
) -> Result<usize, String> {
    let instances = running_instances(containers, service);
    // One `docker ps` (an inspect per container would race with a container's removal).
    let labelled = docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("label=org.gru.cluster={}", containers.cluster),
        "--filter",
        "status=running",
        "--format",
        "{{.ID}} {{.Labels}}",
    ]);
    for line in labelled.lines().filter(|l| !l.is_empty()) {
        let (id, labels) = line.split_once(' ').unwrap_or((line, ""));
        let keys: BTreeSet<&str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        for label in [
            "org.gru.cluster",
            "org.gru.node",
            "org.gru.service",
            "org.gru.instance",
        ] {
            assert!(
                keys.contains(label),
                "container {id} lacks {label}: {labels}"
            );
        }
    }
    let records: BTreeSet<String> = registered(etcd, &containers.cluster, service)
        .into_iter()
        .map(|(instance, _)| instance)
        .collect();
    if records != instances {
        return Err(format!("records {records:?} != running {instances:?}"));
    }
    Ok(instances.len())
}

/// Runs `check` and tolerates a difference between records and containers only while the
/// agent is catching up (it must be gone within 3 s).
fn check_settled(etcd: &EtcdCluster, containers: &ClusterContainers, service: &str) -> usize {
    let started = Instant::now();
    loop {
        match check(etcd, containers, service) {
            Ok(count) => return count,
            Err(why) if started.elapsed() > Duration::from_secs(3) => {
                panic!("discovery records do not match the containers: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

const SCALE_POLICY: &str = r#"{
    "Scaleout": {"Enable": true, "Threshold": 0.6, "Analytics": ["resp_time_ratio", "cpu_load"], "Period": 2, "Step": 1},
    "Scalein":  {"Enable": true, "Threshold": 0.3, "Analytics": ["resp_time_ratio", "cpu_load"], "Period": 4, "Step": 1},
    "Swap":     {"Enable": false, "Threshold": 0.6},
    "CooldownOut": 3,
    "CooldownIn": 4
}"#;

#[test]
fn one_agent_scales_out_under_load_and_back_to_min_within_bounds() {
    let test = "one_agent_scales_out_under_load_and_back_to_min_within_bounds";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, SCALE_POLICY);
    config.service(
        "web",
        r#""MinInstances": 1, "MaxInstances": 4,"#,
        testkit::free_port_range(8),
    );
    let bed = Cluster::start("scale", config);
    let events = ContainerEvents::start(&bed.name);
    let agent = bed.spawn("n1");
    let bounds = (1, 4);

    let at_min = wait_until(Duration::from_secs(20), || {
        running_instances(&bed.containers, "web").len() == 1
    });
    assert!(
        at_min.is_some(),
        "MinInstances not started:\n{}",
        agent.log_text()
    );
    check_settled(&bed.etcd, &bed.containers, "web");

    let load = Load::start(&bed.etcd, &bed.name, "web", 12);
    let started = Instant::now();
    let mut peak = 1;
    while started.elapsed() < Duration::from_secs(60) && peak < 3 {
        peak = peak.max(check_settled(&bed.etcd, &bed.containers, "web"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let scaled_after = started.elapsed();
    let requests = load.stop();
    assert!(
        peak >= 3,
        "load did not scale web out (peak {peak}, {requests} requests):\n{}",
        agent.log_text()
    );
    figure(
        test,
        "scale-out under load",
        format!(
            "1 -> {peak} instances in {:.1} s ({requests} requests)",
            scaled_after.as_secs_f64()
        ),
    );

    let calm = Instant::now();
    let mut count = peak;
    while calm.elapsed() < Duration::from_secs(90) && count > 1 {
        count = check_settled(&bed.etcd, &bed.containers, "web");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        count,
        1,
        "web did not come back to MinInstances:\n{}",
        agent.log_text()
    );
    figure(
        test,
        "scale-in after the load stopped",
        format!(
            "{peak} -> 1 instance in {:.1} s",
            calm.elapsed().as_secs_f64()
        ),
    );
    // It stays at min: the floor holds and scale-in is blocked by MinInstances.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(check_settled(&bed.etcd, &bed.containers, "web"), 1);
    // Within [min, max] from the first instance on, at every start and death (the checks
    // above sample every 500 ms).
    let floor_ns = events
        .service_timeline("web")
        .first_reaching(0, bounds.0)
        .map_or(0, |c| c.at_ns);
    events.assert_within("web", bounds.0..=bounds.1, floor_ns, |e| e.service == "web");
    let (status, body) =
        http_get(agent.port, "/gru/v1/decisions?limit=5").unwrap_or((0, String::new()));
    if status == 200 {
        assert!(
            body.contains("MinInstances"),
            "latest decisions do not say why nothing scales in: {body}"
        );
    }
    drop(agent);
}

#[test]
fn killed_agent_adopts_its_containers_on_restart() {
    let test = "killed_agent_adopts_its_containers_on_restart";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, SCALE_POLICY);
    config.service(
        "web",
        r#""MinInstances": 2, "MaxInstances": 3,"#,
        testkit::free_port_range(6),
    );
    let bed = Cluster::start("adopt", config);
    let cluster = &bed.name;
    let events = ContainerEvents::start(&bed.name);
    let mut agent = bed.spawn("n1");

    assert!(
        wait_until(Duration::from_secs(20), || running_instances(
            &bed.containers,
            "web"
        )
        .len()
            == 2)
        .is_some(),
        "MinInstances not started:\n{}",
        agent.log_text()
    );
    check_settled(&bed.etcd, &bed.containers, "web");
    // MinInstances 2, MaxInstances 3: from the floor to the kill, at every start and death.
    let floor_ns = events
        .service_timeline("web")
        .first_reaching(0, 2)
        .map_or(0, |c| c.at_ns);
    events.assert_within("web", 2..=3, floor_ns, |e| e.service == "web");
    let before_ns = epoch_ns();
    let before: BTreeSet<String> = bed
        .containers
        .ids(Some("status=running"))
        .into_iter()
        .collect();

    // kill -9: nobody cleans up; the containers keep serving.
    agent.kill9();
    let gone = wait_until(Duration::from_secs(10), || {
        bed.etcd
            .keys(&format!("/gru/{cluster}/nodes/n1/"))
            .is_empty()
    });
    assert!(gone.is_some(), "the dead agent's lease did not expire");
    assert_eq!(
        bed.containers
            .ids(Some("status=running"))
            .into_iter()
            .collect::<BTreeSet<_>>(),
        before,
        "containers changed while the agent was dead"
    );

    let restarted = Instant::now();
    let agent = bed.spawn("n1");
    let adopted = wait_until(Duration::from_secs(15), || {
        registered(&bed.etcd, &bed.name, "web").len() == 2
    });
    assert!(
        adopted.is_some(),
        "restarted agent did not publish its instances:\n{}",
        agent.log_text()
    );
    figure(
        test,
        "instances adopted and published after the restart",
        format!("{:.1} s", restarted.elapsed().as_secs_f64()),
    );
    // A few loops later: the same containers, no duplicates, none lost.
    std::thread::sleep(Duration::from_secs(4));
    let after: BTreeSet<String> = bed
        .containers
        .ids(Some("status=running"))
        .into_iter()
        .collect();
    assert_eq!(
        after,
        before,
        "adoption started or lost containers:\n{}",
        agent.log_text()
    );
    assert_eq!(check_settled(&bed.etcd, &bed.containers, "web"), 2);
    assert!(
        bed.containers.ids(Some("status=exited")).is_empty(),
        "exited containers left behind"
    );
    // Not even for a moment: no web container started or died from the kill to now.
    let web = events.service_timeline("web");
    assert!(
        web.changes.iter().all(|c| c.at_ns <= before_ns),
        "a container of web started or died while the agent was dead or adopting \
         (times from the kill -9):\n{}\n{}",
        web.render(before_ns),
        agent.log_text()
    );
}

#[test]
fn swap_replaces_the_idle_service_with_the_overloaded_one_when_only_one_fits() {
    let test = "swap_replaces_the_idle_service_with_the_overloaded_one_when_only_one_fits";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    // Both services pin every core of the engine: the node has room for one instance.
    let cores = docker(&["info", "--format", "{{.NCPU}}"]).trim().to_owned();
    let config = TestConfig::new(
        CONFIG_ONE_SECOND_LOOPS,
        r#"{
            "Scaleout": {"Enable": true, "Threshold": 0.6, "Analytics": ["resp_time_ratio"]},
            "Scalein":  {"Enable": false, "Threshold": 0.3},
            "Swap":     {"Enable": true, "Threshold": 0.5, "Analytics": ["resp_time_ratio"]}
        }"#,
    );
    for name in ["idle", "busy"] {
        config.service(
            name,
            "\"MinInstances\": 0, \"MaxInstances\": 1,",
            testkit::free_port_range(3),
        );
        let path = config.dir.path().join(format!("services/{name}.json"));
        let doc = std::fs::read_to_string(&path).unwrap().replace(
            "\"Memory\": \"64m\"",
            &format!("\"Memory\": \"64m\", \"cpunumber\": {cores}"),
        );
        let doc = doc.replace(
            "[\"resp_time_ratio\", \"cpu_load\"]",
            "[\"resp_time_ratio\"]",
        );
        std::fs::write(path, doc).unwrap();
    }
    let bed = Cluster::start("swap", config);
    let events = ContainerEvents::start(&bed.name);
    let agent = bed.spawn("n1");

    agent.command(
        &bed.secret,
        r#"{"name": "start-service", "service": "idle"}"#,
    );
    assert!(
        wait_until(Duration::from_secs(15), || running_instances(
            &bed.containers,
            "idle"
        )
        .len()
            == 1)
        .is_some(),
        "idle was not started:\n{}",
        agent.log_text()
    );

    // idle answers in 10 ms, busy (no instance anywhere) is reported at 500 ms.
    let started = Instant::now();
    let swapped = wait_until(Duration::from_secs(30), || {
        for (service, ms) in [("idle", "10"), ("busy", "500")] {
            let (status, body) = agent
                .push_stat(&bed.secret, service, "execution_time", ms)
                .unwrap();
            assert!(
                (200..300).contains(&status),
                "push refused: {status} {body}"
            );
        }
        running_instances(&bed.containers, "busy").len() == 1
            && running_instances(&bed.containers, "idle").is_empty()
    });
    assert!(
        swapped.is_some(),
        "no swap within 30 s:\n{}",
        agent.log_text()
    );
    figure(
        test,
        "idle replaced by busy after the load was reported",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    check_settled(&bed.etcd, &bed.containers, "busy");
    check_settled(&bed.etcd, &bed.containers, "idle");
    // MaxInstances 1 of each, at every start and death.
    for service in ["busy", "idle"] {
        events.assert_at_most(service, 1, |e| e.service == service);
    }
    let (_, decisions) = http_get(agent.port, "/gru/v1/decisions?limit=50").unwrap();
    assert!(
        decisions.contains("swap"),
        "no swap decision recorded: {decisions}"
    );
}

/// The agent's lease, read from its node record.
fn node_lease(etcd: &EtcdCluster, cluster: &str, node: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&etcd.etcdctl(&[
        "get",
        &format!("/gru/{cluster}/nodes/{node}/config"),
        "-w",
        "json",
    ]))
    .unwrap();
    format!("{:x}", json["kvs"][0]["lease"].as_i64().unwrap())
}

#[test]
fn a_base_service_is_started_and_restarted_when_it_dies() {
    let test = "a_base_service_is_started_and_restarted_when_it_dies";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.service("web", r#""MinInstances": 0,"#, testkit::free_port_range(4));
    let bed = Cluster::start("base", config);
    let cluster = &bed.name;
    let events = ContainerEvents::start(&bed.name);
    let agent = bed.spawn("n1");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        running_instances(&bed.containers, "web").is_empty(),
        "web started without being a base service"
    );

    // What `set node n1 base-services web` writes: the node's constraints, under its lease.
    let lease = node_lease(&bed.etcd, &bed.name, "n1");
    bed.etcd.etcdctl(&[
        "put",
        &format!("--lease={lease}"),
        &format!("/gru/{cluster}/nodes/n1/constraints"),
        r#"{"BaseServices":["web"]}"#,
    ]);
    assert!(
        wait_until(Duration::from_secs(15), || running_instances(
            &bed.containers,
            "web"
        )
        .len()
            == 1)
        .is_some(),
        "base service not started:\n{}",
        agent.log_text()
    );
    let first = bed.containers.ids(Some("status=running"));
    docker(&["rm", "-f", &first[0]]);
    let killed = Instant::now();
    let back = wait_until(Duration::from_secs(15), || {
        let now = bed.containers.ids(Some("status=running"));
        now.len() == 1 && now != first
    });
    assert!(
        back.is_some(),
        "dead base service not restarted:\n{}",
        agent.log_text()
    );
    figure(
        test,
        "base service restarted after its container was removed",
        format!("{:.1} s", killed.elapsed().as_secs_f64()),
    );
    check_settled(&bed.etcd, &bed.containers, "web");
    // One base instance at a time, also while it was restarted: every start and death.
    events.assert_at_most("web", 1, |e| e.service == "web");

    // The agent's own command writes the same record (what `gru manage` uses).
    agent.command(
        &bed.secret,
        r#"{"name": "set-base-services", "services": []}"#,
    );
    let cleared = wait_until(Duration::from_secs(10), || {
        bed.etcd
            .etcdctl(&[
                "get",
                "--print-value-only",
                &format!("/gru/{cluster}/nodes/n1/constraints"),
            ])
            .contains(r#""BaseServices":[]"#)
    });
    assert!(
        cleared.is_some(),
        "constraints record not rewritten:\n{}",
        agent.log_text()
    );
    assert_eq!(
        node_lease(&bed.etcd, &bed.name, "n1"),
        lease,
        "constraints written outside the node's lease"
    );
}

#[test]
fn attached_sidecars_start_and_stop_with_their_instance() {
    let test = "attached_sidecars_start_and_stop_with_their_instance";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.service(
        "web",
        r#""Attached": ["shipper"],"#,
        testkit::free_port_range(4),
    );
    config.service("shipper", "", testkit::free_port_range(4));
    let bed = Cluster::start("sidecar", config);
    let agent = bed.spawn("n1");

    let command = |body: &str| agent.command(&bed.secret, body);
    command(r#"{"name": "start-service", "service": "web"}"#);
    let both = wait_until(Duration::from_secs(15), || {
        running_instances(&bed.containers, "web").len() == 1
            && running_instances(&bed.containers, "shipper").len() == 1
    });
    assert!(
        both.is_some(),
        "web and its sidecar did not start:\n{}",
        agent.log_text()
    );
    let web = running_instances(&bed.containers, "web")
        .into_iter()
        .next()
        .unwrap();
    let shipper = running_instances(&bed.containers, "shipper")
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(
        shipper,
        format!("{web}-shipper"),
        "the sidecar does not name its instance"
    );

    command(r#"{"name": "stop-service", "service": "web"}"#);
    let gone = wait_until(Duration::from_secs(15), || {
        bed.containers.ids(Some("status=running")).is_empty()
    });
    assert!(
        gone.is_some(),
        "the sidecar outlived its instance:\n{}",
        agent.log_text()
    );
}

#[test]
fn a_missing_image_is_reported_and_backed_off_not_retried_in_a_loop() {
    let test = "a_missing_image_is_reported_and_backed_off_not_retried_in_a_loop";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    // Pull.Policy "Never": the start fails at once on the missing image (a pull is
    // `image_pull.rs`'s matter).
    config.service(
        "ghost",
        r#""MinInstances": 1, "Pull": {"Policy": "Never"},"#,
        testkit::free_port_range(4),
    );
    let path = config.dir.path().join("services/ghost.json");
    let doc = std::fs::read_to_string(&path)
        .unwrap()
        .replace(testkit::WORKLOAD_IMAGE, "gru-test-no-such-image:never");
    std::fs::write(path, doc).unwrap();
    let bed = Cluster::start("noimage", config);
    let agent = bed.spawn("n1");

    std::thread::sleep(Duration::from_secs(8));
    let (status, body) = http_get(agent.port, "/gru/v1/actions?limit=100").unwrap();
    assert_eq!(status, 200, "{body}");
    let actions: serde_json::Value = serde_json::from_str(&body).unwrap();
    let attempts: Vec<&serde_json::Value> = actions["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["result"]
                .as_str()
                .is_some_and(|r| r.starts_with("failed"))
        })
        .collect();
    assert!(!attempts.is_empty(), "no failed start recorded: {body}");
    assert!(
        attempts[0]["result"]
            .as_str()
            .unwrap()
            .contains("not present on this engine"),
        "the failure does not say the image is missing: {body}"
    );
    // 8 s with a 5 s then 10 s backoff: at most two attempts, not one per loop (8).
    assert!(
        attempts.len() <= 2,
        "{} start attempts in 8 s: {body}",
        attempts.len()
    );
    assert_eq!(
        http_get(agent.port, "/healthz").unwrap().0,
        200,
        "agent unhealthy"
    );
    assert!(
        bed.containers.ids(None).is_empty(),
        "a container was created for a missing image"
    );
}

#[test]
fn instances_above_max_are_brought_back_under_it() {
    let test = "instances_above_max_are_brought_back_under_it";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 0, "MaxInstances": 1,"#,
        testkit::free_port_range(4),
    );
    let bed = Cluster::start("ceiling", config);
    // Join without --start: operator commands go past the planner, as both sides of a
    // partition would.
    let agent = bed.agent("n1").start(false).spawn();
    let command = |body: &str| agent.command(&bed.secret, body);
    command(r#"{"name": "start-service", "service": "web"}"#);
    command(r#"{"name": "start-service", "service": "web"}"#);
    let two = wait_until(Duration::from_secs(15), || {
        running_instances(&bed.containers, "web").len() == 2
    });
    assert!(
        two.is_some(),
        "two instances were not started:\n{}",
        agent.log_text()
    );

    command(r#"{"name": "start"}"#);
    let started = Instant::now();
    let back = wait_until(Duration::from_secs(15), || {
        running_instances(&bed.containers, "web").len() == 1
    });
    assert!(
        back.is_some(),
        "not brought back under max:\n{}",
        agent.log_text()
    );
    figure(
        test,
        "above max, 2 -> 1 instance after the loop started",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        check_settled(&bed.etcd, &bed.containers, "web"),
        1,
        "stopped more than needed"
    );
}
