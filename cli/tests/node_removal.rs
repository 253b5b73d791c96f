//! Nodes go, on the real engine and etcd, starting from load: a service scales out onto a
//! second node under load; the load goes, the service scales in, and the node left with
//! nothing drains itself, the remove-node hook gets its name, and the node leaves, with no
//! failed request from a discovery-fed load generator and every count within its bounds,
//! sampled every 100 ms.
//!
//! The setup makes it deterministic: web (MinInstances 1, MaxInstances 2) asks for 60 % of
//! the engine's memory, so a node holds one (each agent counts memory against its own
//! instances); n1's web is its base service (a node never scales its only base instance
//! in) and n1 also runs cache (not a base service), so n1 is never idle; the second web can
//! only go to n2, and only n2 can scale in, and then goes idle.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::agents::{Agent, logs_tail};
use support::cluster::Cluster;
use support::configs::{RESP_TIME_RATIO_ANALYTIC, TestConfig, nodes_config};
use support::docker::{CountSampler, docker, running_ids_of, running_services};
use support::load::Load;
use testkit::{Component, ContainerEvents, figure, require, require_workload_image, wait_until};

/// Scale-out and scale-in on `resp_time_ratio` (pushed stats), one step at a time.
const SCALE_BOTH_WAYS_POLICY: &str = r#"{
    "Scaleout": {"Enable": true, "Threshold": 0.6, "Analytics": ["resp_time_ratio"], "Step": 1},
    "Scalein": {"Enable": true, "Threshold": 0.3, "Analytics": ["resp_time_ratio"], "Step": 1},
    "Swap": {"Enable": false, "Threshold": 0.6},
    "CooldownOut": 1, "CooldownIn": 3
}"#;

/// Execution times pushed as load (800 ms against a 100 ms target) and as no load.
const OVERLOAD_MS: &str = "800";
const NO_LOAD_MS: &str = "10";

/// The remove-node hook: appends its call time (ms) and its `GRU_*` environment, then
/// `---`, to `calls`.
fn remove_node_hook(dir: &Path) -> (PathBuf, PathBuf) {
    let calls = dir.join("calls");
    let script = dir.join("remove-node.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ date +%s%3N; env | grep '^GRU_' | sort; echo ---; }} >> {}\n\
             echo removed $GRU_NODE\n",
            calls.display()
        ),
    )
    .unwrap();
    (script, calls)
}

/// The hook's calls: (epoch ms, `GRU_*` variables as `K=V` lines).
fn hook_calls(calls: &Path) -> Vec<(u64, Vec<String>)> {
    let text = std::fs::read_to_string(calls).unwrap_or_default();
    text.split("---\n")
        .filter(|c| !c.trim().is_empty())
        .map(|call| {
            let mut lines = call.lines();
            let at = lines.next().unwrap().trim().parse().unwrap();
            (at, lines.map(str::to_owned).collect())
        })
        .collect()
}

/// `config.json`: 1 s loops, TTL 3 s, the remove-node hook, `IdlePeriod` and any more
/// `Nodes` fields in `nodes_extra` (each followed by a comma).
fn agent_config(script: &Path, idle_period_secs: u64, nodes_extra: &str) -> String {
    nodes_config(&format!(
        r#""IdlePeriod": {idle_period_secs}, "Cooldown": 120, {nodes_extra}
         "RemoveNodeHook": {{"Command": ["/bin/sh", "{}"], "Timeout": 10}}"#,
        script.display()
    ))
}

/// A workload service with a lame-duck delay (a stop leaves discovery before the process
/// goes) and a readiness check (a start enters discovery once it answers), `memory` each,
/// scaled on `resp_time_ratio`.
fn service(name: &str, min: u32, max: u32, memory: &str, range: (u16, u16)) -> String {
    format!(
        r#"{{
            "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
            "Analytics": ["resp_time_ratio"], "Constraints": {{"MAX_RESP_TIME": 100}},
            "MinInstances": {min}, "MaxInstances": {max},
            "Health": {{"Readiness": {{"Http": "/ready", "Interval": 0.5, "FailureThreshold": 1, "SuccessThreshold": 1}}}},
            "Configuration": {{
                "Memory": "{memory}", "StopTimeout": 3,
                "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5", "SHUTDOWN_DELAY_MS": "1500"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#,
        image = testkit::WORKLOAD_IMAGE,
        low = range.0,
        high = range.1
    )
}

/// `percent` % of the engine's memory, as a Docker memory size.
fn engine_memory_share(percent: u64) -> String {
    let engine_memory: u64 = docker(&["info", "--format", "{{.MemTotal}}"])
        .trim()
        .parse()
        .unwrap();
    format!("{}m", engine_memory / 100 * percent / (1 << 20))
}

/// 60 % of the engine's memory: one instance fills a node.
fn node_filling_memory() -> String {
    engine_memory_share(60)
}

fn on(cluster: &str, service: &str, node: &str) -> usize {
    running_services(cluster)
        .iter()
        .filter(|(s, n)| s == service && n == node)
        .count()
}

/// The cluster of these tests: web (1..=2, one per node) and cache (1..=1) on n1, web
/// being n1's base service, and `more` services `(name, min, max)` of 64 MiB; `config` is
/// `config.json`. The container events are recorded from before n1 starts (a count
/// replayed from them starts at 0).
fn start_cluster(
    tag: &str,
    config: &str,
    more: &[(&str, u32, u32)],
) -> (Cluster, ContainerEvents, Agent) {
    let test_config = TestConfig::bare(config, SCALE_BOTH_WAYS_POLICY);
    test_config.file("analytics/resp_time_ratio.json", RESP_TIME_RATIO_ANALYTIC);
    test_config.file(
        "services/web.json",
        &service(
            "web",
            1,
            2,
            &node_filling_memory(),
            testkit::free_port_range(6),
        ),
    );
    test_config.file(
        "services/cache.json",
        &service("cache", 1, 1, "64m", testkit::free_port_range(4)),
    );
    for (name, min, max) in more {
        test_config.file(
            &format!("services/{name}.json"),
            &service(name, *min, *max, "64m", testkit::free_port_range(4)),
        );
    }
    let bed = Cluster::start(tag, test_config);
    let events = ContainerEvents::start(&bed.name);
    // n1's loop starts once web runs there as its base service: a floor repair racing the
    // base service's start could start two.
    let n1 = bed.agent("n1").start(false).spawn();
    let out = support::run(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; set node n1 base-services web", bed.name),
        ],
    );
    assert!(out.status.success(), "{}", support::text(&out));
    let based = wait_until(Duration::from_secs(30), || on(&bed.name, "web", "n1") == 1);
    assert!(based.is_some(), "{}", support::tail(&n1.log_text(), 40));
    n1.command(&bed.secret, r#"{"name": "start"}"#);
    let placed = wait_until(Duration::from_secs(40), || {
        on(&bed.name, "web", "n1") == 1
            && on(&bed.name, "cache", "n1") == 1
            && bed.registered("web").len() == 1
    });
    assert!(
        placed.is_some(),
        "n1 does not hold web and cache: {:?}\n{}",
        running_services(&bed.name),
        logs_tail(std::slice::from_ref(&n1), 60)
    );
    (bed, events, n1)
}

/// Pushes `value` as web's execution time to every agent still answering.
fn push_load(bed: &Cluster, agents: &[&Agent], value: &str) {
    for agent in agents {
        let _ = agent.push_stat(&bed.secret, "web", "execution_time", value);
    }
}

/// Overloads web until n2 holds the second instance (in discovery), then 3 s more; the
/// seconds from n2's join to its instance being ready.
fn scale_out_onto_n2(bed: &Cluster, n1: &Agent, n2: &Agent) -> f64 {
    let started = Instant::now();
    let mut landed = None;
    while started.elapsed() < Duration::from_secs(40) {
        push_load(bed, &[n1, n2], OVERLOAD_MS);
        if landed.is_none() && on(&bed.name, "web", "n2") == 1 && bed.registered("web").len() == 2 {
            landed = Some(started.elapsed());
        }
        if landed.is_some_and(|at| started.elapsed() > at + Duration::from_secs(3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let Some(landed) = landed else {
        panic!(
            "web did not scale out onto n2: {:?}\nn1:\n{}\nn2:\n{}",
            running_services(&bed.name),
            support::tail(&n1.log_text(), 40),
            support::tail(&n2.log_text(), 40)
        );
    };
    landed.as_secs_f64()
}

/// `/gru/<cluster>/drains/<node>`'s value ("" when absent).
fn drain_record(bed: &Cluster, node: &str) -> String {
    testkit::etcdctl_at(
        &bed.endpoints(),
        &[
            "get",
            "--print-value-only",
            &format!("/gru/{}/drains/{node}", bed.name),
        ],
    )
    .unwrap_or_default()
    .trim()
    .to_owned()
}

/// Keys under `/gru/<cluster>/nodes/<node>/` (its records, under its lease).
fn node_keys(bed: &Cluster, node: &str) -> usize {
    testkit::etcdctl_at(
        &bed.endpoints(),
        &[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/gru/{}/nodes/{node}/", bed.name),
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// From the moment the load is removed: when (seconds) web left n2, n2's drain was done,
/// the hook ran and n2's process exited.
#[derive(Debug, Default)]
struct Removal {
    scaled_in: Option<f64>,
    drained: Option<f64>,
    hooked: Option<f64>,
    left: Option<f64>,
}

/// Pushes `value` (no load) and watches n2 until it exits or `limit` passes.
fn watch_removal(
    bed: &Cluster,
    n1: &Agent,
    n2: &mut Agent,
    calls: &Path,
    value: &str,
    limit: Duration,
) -> Removal {
    let started = Instant::now();
    let removed_at_ms = support::epoch_ms();
    let mut seen = Removal::default();
    let mut last_push = None::<Instant>;
    while started.elapsed() < limit && seen.left.is_none() {
        if last_push.is_none_or(|at| at.elapsed() >= Duration::from_millis(300)) {
            push_load(bed, &[n1, n2], value);
            last_push = Some(Instant::now());
        }
        let at = started.elapsed().as_secs_f64();
        if seen.scaled_in.is_none() && on(&bed.name, "web", "n2") == 0 {
            seen.scaled_in = Some(at);
        }
        if seen.drained.is_none() && drain_record(bed, "n2").contains("\"done\":true") {
            seen.drained = Some(at);
        }
        if seen.hooked.is_none()
            && let Some((ms, _)) = hook_calls(calls).first()
        {
            seen.hooked = Some(ms.saturating_sub(removed_at_ms) as f64 / 1000.0);
        }
        if !n2.is_running() {
            seen.left = Some(at);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

#[test]
fn load_removed_the_scaled_in_node_goes_idle_is_drained_and_removed_with_no_failed_request() {
    let test =
        "load_removed_the_scaled_in_node_goes_idle_is_drained_and_removed_with_no_failed_request";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let (script, calls) = remove_node_hook(hook_dir.path());
    // IdlePeriod 8 s: n2 starts the scaled instance within a few seconds of joining (the
    // load is on before it joins), so it is not idle before the load goes.
    let (bed, events, n1) = start_cluster("loadgone", &agent_config(&script, 8, ""), &[]);
    let base_web = running_ids_of(&bed.name, "web");
    let sampler = CountSampler::start(&bed.name, &[("web", 1, 2), ("cache", 1, 1)]);
    let load = Load::start(&bed.etcd, &bed.name, "web", 4);
    let from_ns = testkit::epoch_ns();

    // Load: n1 is full (its memory), so the scale-out waits for n2, which takes it.
    push_load(&bed, &[&n1], OVERLOAD_MS);
    let mut n2 = bed.spawn("n2");
    let scaled_out = scale_out_onto_n2(&bed, &n1, &n2);
    figure(test, "n2_join_to_scaled_instance_ready_seconds", scaled_out);

    // The load goes: web scales in on n2 (n1's only web is its base service), n2 idles,
    // drains itself, the hook gets its name, and n2 leaves.
    let removal = watch_removal(
        &bed,
        &n1,
        &mut n2,
        &calls,
        NO_LOAD_MS,
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.stop_counting();
    let counts = sampler.finish();
    for (key, value) in [
        ("load_removed_to_scaled_in_seconds", removal.scaled_in),
        ("load_removed_to_drained_seconds", removal.drained),
        ("load_removed_to_hook_seconds", removal.hooked),
        ("load_removed_to_left_seconds", removal.left),
    ] {
        if let Some(value) = value {
            figure(test, key, value);
        }
    }
    figure(test, "requests", sent);
    figure(test, "failed_requests", failures.len());
    figure(test, "count_samples", counts.samples);
    let agents = [n1];
    assert!(
        removal.left.is_some(),
        "n2 did not leave: {removal:?}, {:?}\nn2:\n{}\n{}",
        running_services(&bed.name),
        support::tail(&n2.log_text(), 60),
        logs_tail(&agents, 30)
    );
    // In order: scaled in, drained, hook, left.
    let (scaled_in, drained, hooked, left) = (
        removal.scaled_in.unwrap(),
        removal.drained.unwrap_or(f64::NAN),
        removal.hooked.unwrap_or(f64::NAN),
        removal.left.unwrap(),
    );
    // `drained` is polled (etcdctl, every 100 ms or so), `hooked` is the hook's own clock:
    // the drain is done a tick before the hook, but the poll may see it a little late.
    assert!(
        scaled_in <= drained && drained <= hooked + 1.0 && hooked <= left,
        "out of order: {removal:?}"
    );
    let calls = hook_calls(&calls);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let env = &calls[0].1;
    for wanted in [
        format!("GRU_CLUSTER={}", bed.name),
        "GRU_HOOK=remove-node".to_owned(),
        "GRU_NODE=n2".to_owned(),
    ] {
        assert!(env.contains(&wanted), "{wanted} not in {env:?}");
    }
    assert!(
        env.iter().any(|l| l.starts_with("GRU_REASON=idle")),
        "{env:?}"
    );
    assert!(
        n2.log_text().contains("left the cluster (lease revoked)"),
        "{}",
        n2.log_text()
    );
    assert_eq!(node_keys(&bed, "n2"), 0, "n2's records outlived its leave");
    assert!(
        drain_record(&bed, "n2").is_empty(),
        "n2 left its drain record"
    );
    // No failed request, through the scale-in and the removal.
    assert!(sent > 100, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Counts within bounds at every sample and every event; nothing lost: n1's web is the
    // one it started with, and cache never moved.
    assert!(counts.samples > 100, "{counts:?}");
    assert!(counts.violations.is_empty(), "{:?}", counts.violations);
    events.assert_within("web from the load to n2's leave", 1..=2, from_ns, |e| {
        e.service == "web"
    });
    events.assert_within("cache from the load to n2's leave", 1..=1, from_ns, |e| {
        e.service == "cache"
    });
    assert_eq!(running_ids_of(&bed.name, "web"), base_web);
    assert!(agents[0].healthy());
}

#[test]
fn an_idle_node_killed_mid_drain_and_restarted_still_calls_the_remove_node_hook_once_and_leaves() {
    let test = "an_idle_node_killed_mid_drain_and_restarted_still_calls_the_remove_node_hook_once_and_leaves";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let (script, calls) = remove_node_hook(hook_dir.path());
    let (bed, events, n1) = start_cluster(
        "idlerestart",
        &agent_config(&script, 3, ""),
        &[("extra", 0, 2)],
    );
    // n2 runs only its base service, extra: it is idle, and its drain has extra to move
    // (started on n1, ready, then stopped on n2: seconds, in which n2 is killed).
    let n2 = bed.spawn("n2");
    let out = support::run(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; set node n2 base-services extra", bed.name),
        ],
    );
    assert!(out.status.success(), "{}", support::text(&out));
    let mut n2 = n2;
    let draining = wait_until(Duration::from_secs(40), || {
        let record = drain_record(&bed, "n2");
        record.contains("\"remove\":true") && record.contains("\"done\":false")
    });
    assert!(
        draining.is_some(),
        "n2 did not drain itself: {:?}\n{}",
        running_services(&bed.name),
        support::tail(&n2.log_text(), 40)
    );
    let extra_on_n2 = on(&bed.name, "extra", "n2");
    n2.kill9();
    figure(test, "extra_on_n2_when_killed", extra_on_n2);
    // Its records go with its lease (TTL 3 s); the drain record stays (no lease).
    let expired = wait_until(Duration::from_secs(15), || node_keys(&bed, "n2") == 0);
    assert!(expired.is_some(), "n2's records outlived its lease");
    assert!(drain_record(&bed, "n2").contains("\"remove\":true"));
    assert!(
        hook_calls(&calls).is_empty(),
        "the hook ran before the drain was done"
    );

    let restarted = Instant::now();
    let mut n2 = bed.spawn("n2");
    let left = wait_until(Duration::from_secs(60), || !n2.is_running());
    figure(
        test,
        "restart_to_left_seconds",
        restarted.elapsed().as_secs_f64(),
    );
    let log = n2.log_text();
    assert!(
        left.is_some(),
        "the restarted n2 did not leave: {:?}\n{}",
        running_services(&bed.name),
        support::tail(&log, 60)
    );
    assert!(
        log.contains("the remove-node hook follows the drain"),
        "{}",
        support::tail(&log, 60)
    );
    let calls = hook_calls(&calls);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].1.contains(&"GRU_NODE=n2".to_owned()), "{calls:?}");
    assert!(log.contains("left the cluster (lease revoked)"));
    assert!(
        drain_record(&bed, "n2").is_empty(),
        "n2 left its drain record"
    );
    // extra moved to n1 and nothing of n2 is left running; n1 kept web and cache.
    let settled = wait_until(Duration::from_secs(10), || {
        let now = running_services(&bed.name);
        now.iter().all(|(_, n)| n == "n1") && now.iter().filter(|(s, _)| s == "extra").count() == 1
    });
    assert!(settled.is_some(), "{:?}", running_services(&bed.name));
    events.assert_at_most("web", 2, |e| e.service == "web");
    events.assert_at_most("cache", 1, |e| e.service == "cache");
    assert!(n1.healthy());
}

#[test]
fn idle_headroom_removes_a_node_whose_instances_fit_elsewhere_and_keeps_it_when_they_do_not() {
    let test =
        "idle_headroom_removes_a_node_whose_instances_fit_elsewhere_and_keeps_it_when_they_do_not";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let hook_dir = tempfile::tempdir().unwrap();
    let (script, calls) = remove_node_hook(hook_dir.path());
    // Reservations, in shares of the engine's memory (each node counts the engine's):
    // web 10 % (MinInstances 2: no scale-in can take n2's), cache 20 %. n1 holds web (its
    // base service) and cache; n2 holds the second web. n2's web moved onto n1 makes
    // 10 + 20 + 10 = 40 % of n1: over a 30 % headroom, under a 50 % one. n1 moves more
    // (cache, 20 %) than n2 (10 %): it is never the one to go.
    let test_config = TestConfig::bare(
        &agent_config(&script, 3, r#""IdleHeadroom": 0.3,"#),
        support::configs::QUIET_POLICY,
    );
    test_config.file("analytics/resp_time_ratio.json", RESP_TIME_RATIO_ANALYTIC);
    test_config.file(
        "services/web.json",
        &service(
            "web",
            2,
            3,
            &engine_memory_share(10),
            testkit::free_port_range(6),
        ),
    );
    test_config.file(
        "services/cache.json",
        &service(
            "cache",
            1,
            1,
            &engine_memory_share(20),
            testkit::free_port_range(4),
        ),
    );
    let bed = Cluster::start("headroom", test_config);
    let events = ContainerEvents::start(&bed.name);
    // n1, its loop off: web as its base service, cache by an operator's start; then n2
    // repairs web's floor (the second web); then n1's loop starts.
    let n1 = bed.agent("n1").start(false).spawn();
    let out = support::run(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; set node n1 base-services web", bed.name),
        ],
    );
    assert!(out.status.success(), "{}", support::text(&out));
    let based = wait_until(Duration::from_secs(30), || on(&bed.name, "web", "n1") == 1);
    assert!(based.is_some(), "{}", support::tail(&n1.log_text(), 40));
    n1.command(
        &bed.secret,
        r#"{"name": "start-service", "service": "cache"}"#,
    );
    let cached = wait_until(Duration::from_secs(30), || {
        on(&bed.name, "cache", "n1") == 1
    });
    assert!(cached.is_some(), "{}", support::tail(&n1.log_text(), 40));
    let mut n2 = bed.spawn("n2");
    let placed = wait_until(Duration::from_secs(30), || {
        on(&bed.name, "web", "n2") == 1 && bed.registered("web").len() == 2
    });
    assert!(
        placed.is_some(),
        "{:?}\n{}",
        running_services(&bed.name),
        support::tail(&n2.log_text(), 40)
    );
    n1.command(&bed.secret, r#"{"name": "start"}"#);
    let sampler = CountSampler::start(&bed.name, &[("web", 2, 3), ("cache", 1, 1)]);
    let load = Load::start(&bed.etcd, &bed.name, "web", 4);
    let from_ns = testkit::epoch_ns();

    // IdleHeadroom 0.3: n2's web does not fit (40 % ≥ 30 %): n2 stays, for 4 idle periods.
    std::thread::sleep(Duration::from_secs(12));
    let demand = n2.get_json("/gru/v1/node").unwrap()["demand"].clone();
    figure(
        test,
        "n2_movable_memory_share_percent",
        demand["movable_memory_bytes"].as_f64().unwrap_or(0.0)
            / demand["memory_bytes"].as_f64().unwrap_or(1.0)
            * 100.0,
    );
    assert!(n2.is_running(), "{}", support::tail(&n2.log_text(), 40));
    assert!(drain_record(&bed, "n2").is_empty(), "n2 drained under 0.3");
    assert!(drain_record(&bed, "n1").is_empty(), "n1 drained under 0.3");
    assert!(hook_calls(&calls).is_empty());
    assert_eq!(on(&bed.name, "web", "n2"), 1);

    // IdleHeadroom 0.5: it fits (40 % < 50 %): n2 drains (its web started on n1 first),
    // the hook gets its name, and n2 leaves.
    bed.config.file(
        "config.json",
        &agent_config(&script, 3, r#""IdleHeadroom": 0.5,"#),
    );
    support::expect_code(
        &bed.endpoints(),
        &["config", "push", &bed.name, bed.config.path()],
        0,
    );
    let pushed = Instant::now();
    let left = wait_until(Duration::from_secs(60), || !n2.is_running());
    figure(
        test,
        "headroom_raised_to_left_seconds",
        pushed.elapsed().as_secs_f64(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.stop_counting();
    let counts = sampler.finish();
    figure(test, "requests", sent);
    figure(test, "failed_requests", failures.len());
    assert!(
        left.is_some(),
        "n2 did not leave under 0.5: {:?}\n{}",
        running_services(&bed.name),
        support::tail(&n2.log_text(), 60)
    );
    let calls = hook_calls(&calls);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].1.contains(&"GRU_NODE=n2".to_owned()), "{calls:?}");
    assert!(
        calls[0]
            .1
            .iter()
            .any(|l| l.starts_with("GRU_REASON=idle: drained")),
        "{calls:?}"
    );
    assert!(
        n2.log_text().contains("fit on the other nodes under 50 %"),
        "{}",
        support::tail(&n2.log_text(), 60)
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(counts.violations.is_empty(), "{:?}", counts.violations);
    events.assert_within("web while n2 drained and left", 2..=3, from_ns, |e| {
        e.service == "web"
    });
    let settled = wait_until(Duration::from_secs(10), || {
        let now = running_services(&bed.name);
        now.iter().all(|(_, n)| n == "n1") && now.iter().filter(|(s, _)| s == "web").count() == 2
    });
    assert!(settled.is_some(), "{:?}", running_services(&bed.name));
    assert!(n1.healthy());
}
