//! Rolling updates on the real engine and etcd, with three agents and a closed-loop load fed
//! by discovery: v1 → v2 replaces every instance with no failed request and never fewer
//! ready instances than before; a broken v3 is rolled back by itself, and `rollout status`
//! says why.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::agents::logs_tail;
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::docker::docker;
use support::load::Load;
use support::{expect_code, text};
use testkit::{Component, figure, require, require_workload_image, wait_until};

/// The workload image under per-test names, so that versions differ by image (what an
/// operator's new release does); the names go when the test ends.
struct Tags(Vec<String>);

impl Tags {
    fn new(cluster: &str, versions: &[&str]) -> Tags {
        let tags: Vec<String> = versions
            .iter()
            .map(|v| format!("gru-workload-{cluster}:{v}"))
            .collect();
        for tag in &tags {
            docker(&["tag", testkit::WORKLOAD_IMAGE, tag]);
        }
        Tags(tags)
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "--no-prune", tag])
                .output();
        }
    }
}

/// The web service at `image`, with a readiness check on the workload's `/ready`; `cmd`
/// replaces the workload's arguments (a broken release passes one it refuses, so it exits
/// at start); `ready_delay_ms` keeps it not ready that long (a release that never gets
/// ready).
fn web(image: &str, cmd: &str, ready_delay_ms: u64, range: (u16, u16)) -> String {
    format!(
        r#"{{
            "Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
            "MinInstances": 4,
            "Update": {{"Parallelism": 1, "ReadyTimeout": 15, "Monitor": 2}},
            "Health": {{"Readiness": {{"Http": "/ready", "Interval": 0.5, "FailureThreshold": 1}}}},
            "Configuration": {{
                "Memory": "64m", "StopTimeout": 5, "Cmd": [{cmd}],
                "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5", "SHUTDOWN_DELAY_MS": "1500",
                        "READY_DELAY_MS": "{ready_delay_ms}"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#,
        low = range.0,
        high = range.1
    )
}

/// `(image, version label, node label)` of every running container of `web`.
fn running_web(cluster: &str) -> Vec<(String, String, String)> {
    let out = docker(&[
        "ps",
        "--filter",
        &format!("label=org.gru.cluster={cluster}"),
        "--filter",
        "label=org.gru.service=web",
        "--filter",
        "status=running",
        "--format",
        r#"{{.Image}} {{.Label "org.gru.version"}} {{.Label "org.gru.node"}}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Samples the number of discovery records of `web` (the ready instances) every 100 ms
/// and keeps the lowest, until dropped.
struct ReadyFloor {
    stop: Arc<AtomicBool>,
    lowest: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadyFloor {
    fn start(endpoints: String, cluster: &str) -> ReadyFloor {
        let stop = Arc::new(AtomicBool::new(false));
        let lowest = Arc::new(AtomicUsize::new(usize::MAX));
        let samples = Arc::new(AtomicUsize::new(0));
        let prefix = format!("/gru/{cluster}/discovery/web/");
        let thread = {
            let (stop, lowest, samples) = (stop.clone(), lowest.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(keys) = testkit::etcdctl_at(
                        &endpoints,
                        &["get", "--prefix", "--keys-only", &prefix],
                    ) {
                        let count = keys.lines().filter(|l| !l.trim().is_empty()).count();
                        lowest.fetch_min(count, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        ReadyFloor {
            stop,
            lowest,
            samples,
            thread: Some(thread),
        }
    }

    /// The lowest count seen, and how many samples were taken.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            self.lowest.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

impl Drop for ReadyFloor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn version_of(descriptor: &str) -> String {
    common::config::parse_service("web.json", descriptor)
        .unwrap()
        .version()
}

fn rollout_status(bed: &Cluster) -> String {
    let out = expect_code(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; rollout status web", bed.name),
        ],
        0,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_rollout_replaces_every_instance_without_a_failed_request_and_a_broken_one_rolls_back() {
    let test =
        "a_rollout_replaces_every_instance_without_a_failed_request_and_a_broken_one_rolls_back";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let range = testkit::free_port_range(12);
    let config = TestConfig::bare(&config_for_agents(3), QUIET_POLICY);
    let bed_name_probe = testkit::ClusterContainers::unique("rollout");
    let tags = Tags::new(&bed_name_probe.cluster, &["v1", "v2", "v3"]);
    let (v1, v2, v3) = (
        web(&tags.0[0], "", 0, range),
        web(&tags.0[1], "", 0, range),
        web(&tags.0[2], r#""--no-such-flag""#, 0, range),
    );
    config.file("services/web.json", &v1);
    let bed = Cluster::on(testkit::EtcdCluster::start(), bed_name_probe, config);
    let events = testkit::ContainerEvents::start(&bed.name);
    let agents = bed.spawn_nodes(3);

    let four = wait_until(Duration::from_secs(40), || {
        running_web(&bed.name).len() == 4 && bed.registered("web").len() == 4
    });
    assert!(
        four.is_some(),
        "MinInstances 4 not reached: {:?}\n{}",
        running_web(&bed.name),
        logs_tail(&agents, 60)
    );
    let nodes: std::collections::BTreeSet<String> = running_web(&bed.name)
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    figure(test, "nodes_holding_v1", nodes.len() as f64);

    // v1 -> v2 under load.
    let load = Load::start(&bed.etcd, &bed.name, "web", 6);
    std::thread::sleep(Duration::from_secs(2));
    let floor = ReadyFloor::start(bed.endpoints(), &bed.name);
    bed.config.file("services/web.json", &v2);
    let pushed = expect_code(
        &bed.endpoints(),
        &["config", "push", &bed.name, bed.config.path()],
        0,
    );
    assert!(
        String::from_utf8_lossy(&pushed.stdout).contains("rolling out web"),
        "{}",
        text(&pushed)
    );
    let rolled = Instant::now();
    let v2_version = version_of(&v2);
    let done = wait_until(Duration::from_secs(150), || {
        let running = running_web(&bed.name);
        running.len() == 4
            && running
                .iter()
                .all(|(image, version, _)| *image == tags.0[1] && *version == v2_version)
    });
    let took = rolled.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.stop_counting();
    let (lowest, samples) = floor.finish();
    figure(test, "v1_to_v2_seconds", took.as_secs_f64());
    figure(test, "v1_to_v2_requests", sent as f64);
    figure(test, "v1_to_v2_failed_requests", failures.len() as f64);
    figure(test, "v1_to_v2_lowest_ready", lowest as f64);
    assert!(
        done.is_some(),
        "not every instance is on v2 after {took:?}: {:?}\n{}\n{}",
        running_web(&bed.name),
        rollout_status(&bed),
        logs_tail(&agents, 80)
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during the rollout: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        logs_tail(&agents, 80)
    );
    assert!(samples > 20, "only {samples} samples of the ready count");
    assert!(
        lowest >= 4,
        "the ready count fell to {lowest} during the rollout (4 before it)\n{}",
        logs_tail(&agents, 80)
    );
    let status = rollout_status(&bed);
    assert!(
        status.contains(&format!("instances: 4 of 4 on {v2_version}"))
            && status.contains("complete"),
        "{status}"
    );
    // One step at a time, cluster-wide: never more than the 4 and one new instance.
    events.assert_at_most("web during the rollout", 5, |e| e.service == "web");

    // A broken v3 (it exits at start) is rolled back to v2 by itself.
    let back = Back {
        bed: &bed,
        events: &events,
        agents: &agents,
        stored_image: &tags.0[1],
        version: &v2_version,
    };
    back.after_pushing(test, "v3", &v3, "exited before it was ready");
    // A v4 that never gets ready is rolled back when its ReadyTimeout (15 s) runs out.
    let v4 = web(&tags.0[2], "", 3_600_000, range);
    back.after_pushing(test, "v4", &v4, "was not ready within 15 s");
    drop(agents);
}

/// A rollback to a good version, as the test watches it.
struct Back<'a> {
    bed: &'a Cluster,
    events: &'a testkit::ContainerEvents,
    agents: &'a [support::agents::Agent],
    /// The good version's image, as its stored descriptor names it.
    stored_image: &'a str,
    /// The good version.
    version: &'a str,
}

impl Back<'_> {
    /// Pushes `broken` (called `name`), then checks that the good descriptor comes back by
    /// itself, every instance runs the good version after it, the ready count never fell
    /// below 4, never more than one instance was added, and `rollout status` says `why`.
    fn after_pushing(&self, test: &str, name: &str, broken: &str, why: &str) {
        let bed = self.bed;
        let floor = ReadyFloor::start(bed.endpoints(), &bed.name);
        bed.config.file("services/web.json", broken);
        expect_code(
            &bed.endpoints(),
            &["config", "push", &bed.name, bed.config.path()],
            0,
        );
        let pushed_at = Instant::now();
        let restored = wait_until(Duration::from_secs(90), || {
            let stored = bed.etcd.etcdctl(&[
                "get",
                "--print-value-only",
                &format!("/gru/{}/services/web", bed.name),
            ]);
            stored.contains(self.stored_image)
        });
        let took = pushed_at.elapsed();
        figure(
            test,
            &format!("{name}_rolled_back_seconds"),
            took.as_secs_f64(),
        );
        assert!(
            restored.is_some(),
            "the good descriptor was not put back {took:?} after {name}\n{}\n{}",
            rollout_status(bed),
            logs_tail(self.agents, 80)
        );
        // Nothing left on the broken version, and the good one everywhere.
        let settled = wait_until(Duration::from_secs(30), || {
            let running = running_web(&bed.name);
            running.len() == 4 && running.iter().all(|(_, v, _)| v == self.version)
        });
        let (lowest, _) = floor.finish();
        figure(test, &format!("{name}_lowest_ready"), lowest as f64);
        assert!(settled.is_some(), "{:?}", running_web(&bed.name));
        assert!(
            lowest >= 4,
            "the ready count fell to {lowest} while {name} failed"
        );
        self.events
            .assert_at_most(&format!("web while {name} failed"), 5, |e| {
                e.service == "web"
            });
        let status = rollout_status(bed);
        assert!(
            status.contains(&format!("rolled back from {}", version_of(broken)))
                && status.contains(why),
            "rollout status does not say why {name} rolled back:\n{status}"
        );
    }
}

/// `rollout <action> web` in a script; its stdout, stderr and exit code.
fn rollout_command(bed: &Cluster, action: &str) -> (Option<i32>, String) {
    let out = support::run(
        &bed.endpoints(),
        &[
            "manage",
            "-c",
            &format!("use {}; rollout {action} web", bed.name),
        ],
    );
    (out.status.code(), text(&out))
}

#[test]
fn an_operator_pauses_resumes_and_undoes_a_rollout() {
    let test = "an_operator_pauses_resumes_and_undoes_a_rollout";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let range = testkit::free_port_range(8);
    let config = TestConfig::bare(&config_for_agents(3), QUIET_POLICY);
    let containers = testkit::ClusterContainers::unique("undo");
    let tags = Tags::new(&containers.cluster, &["v1", "v2"]);
    let (v1, v2) = (web(&tags.0[0], "", 0, range), web(&tags.0[1], "", 0, range));
    let (v1_version, v2_version) = (version_of(&v1), version_of(&v2));
    // Three instances here, and a step every 4 s at the most (Delay): room to pause.
    let slow = |doc: &str| doc.replace(r#""Monitor": 2}"#, r#""Monitor": 2, "Delay": 4}"#);
    let slow_v2 = slow(&v2);
    assert_ne!(slow_v2, v2, "the delay was not written");
    // Going back to v1 stops before it starts (Update.Order): no room for a surge, say.
    let v1_stop_first = slow(&v1)
        .replace(r#""MinInstances": 4"#, r#""MinInstances": 3"#)
        .replace(r#""Delay": 4}"#, r#""Delay": 4, "Order": "stop-first"}"#);
    assert!(v1_stop_first.contains("stop-first"));
    config.file("services/web.json", &v1_stop_first);
    let bed = Cluster::on(testkit::EtcdCluster::start(), containers, config);
    let events = testkit::ContainerEvents::start(&bed.name);
    let agents = vec![bed.spawn("n1")];
    let on = |version: &str| {
        running_web(&bed.name)
            .iter()
            .filter(|(_, v, _)| v == version)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || on(&v1_version) == 3).is_some(),
        "{:?}\n{}",
        running_web(&bed.name),
        logs_tail(&agents, 40)
    );
    let (code, said) = rollout_command(&bed, "pause");
    assert_eq!(code, Some(1), "nothing to pause yet: {said}");
    assert!(said.contains("no rollout of web to pause"), "{said}");

    bed.config.file(
        "services/web.json",
        &slow_v2.replace(r#""MinInstances": 4"#, r#""MinInstances": 3"#),
    );
    expect_code(
        &bed.endpoints(),
        &["config", "push", &bed.name, bed.config.path()],
        0,
    );
    let (code, said) = rollout_command(&bed, "pause");
    assert_eq!(code, Some(0), "{said}");
    let at_pause = on(&v2_version);
    // A step under way finishes; none starts after it. Unpaused, a step takes about 8 s
    // here (start, ready, Monitor 2 s, the old one's 1.5 s drain, Delay 4 s), so 20 s would
    // see at least two more.
    std::thread::sleep(Duration::from_secs(20));
    let paused_on_v2 = on(&v2_version);
    assert!(
        paused_on_v2 <= at_pause + 1 && paused_on_v2 < 3,
        "the pause did not hold: {at_pause} on v2 at the pause, {paused_on_v2} 20 s later: {:?}",
        running_web(&bed.name)
    );
    let status = rollout_status(&bed);
    assert!(
        status.contains("paused") && status.contains("by an operator"),
        "{status}"
    );

    let (code, said) = rollout_command(&bed, "resume");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        wait_until(Duration::from_secs(60), || on(&v2_version) == 3
            && running_web(&bed.name).len() == 3)
        .is_some(),
        "not all on v2 after resume: {:?}\n{}",
        running_web(&bed.name),
        logs_tail(&agents, 40)
    );

    // Start-first to v2: one instance above the three at a time.
    let peak = events.service_timeline("web").peak().0;
    assert_eq!(peak, 4, "start-first surges by one");
    let undo_at = testkit::epoch_ns();
    let (code, said) = rollout_command(&bed, "undo");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("rolling back to {v1_version}")),
        "{said}"
    );
    assert!(
        wait_until(Duration::from_secs(60), || on(&v1_version) == 3
            && running_web(&bed.name).len() == 3)
        .is_some(),
        "not all back on v1 after undo: {:?}\n{}",
        running_web(&bed.name),
        logs_tail(&agents, 40)
    );
    let status = rollout_status(&bed);
    assert!(
        status.contains(&format!("rolling to {v1_version} from {v2_version}"))
            && status.contains("by undo"),
        "{status}"
    );
    // Stop-first back to v1: never above the three, one below while a step starts.
    let timeline = events.assert_within("web during the stop-first undo", 2..=3, undo_at, |e| {
        e.service == "web"
    });
    assert_eq!(
        timeline.low_between(undo_at, testkit::epoch_ns()),
        2,
        "stop-first stops first"
    );
    figure(test, "instances_on_v2_while_paused", paused_on_v2 as f64);
    drop(agents);
}

/// An agent killed with kill -9 in the middle of a step (its new instance started, the old
/// one not yet stopped) finishes that step after its restart, from the label its new
/// instance carries: the service ends with as many instances as before the rollout, all on
/// the new version, never more than one above it.
#[test]
fn an_agent_killed_mid_step_finishes_the_step_after_its_restart() {
    let test = "an_agent_killed_mid_step_finishes_the_step_after_its_restart";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let range = testkit::free_port_range(8);
    let config = TestConfig::bare(&config_for_agents(1), QUIET_POLICY);
    let containers = testkit::ClusterContainers::unique("midstep");
    let tags = Tags::new(&containers.cluster, &["v1", "v2"]);
    let two = |doc: String| doc.replace(r#""MinInstances": 4"#, r#""MinInstances": 2"#);
    let v1 = two(web(&tags.0[0], "", 0, range));
    // v2 is not ready for 6 s: the kill falls between its start and the old one's stop.
    let v2 = two(web(&tags.0[1], "", 6_000, range));
    let v2_version = version_of(&v2);
    config.file("services/web.json", &v1);
    let bed = Cluster::on(testkit::EtcdCluster::start(), containers, config);
    let events = testkit::ContainerEvents::start(&bed.name);
    let mut agent = bed.spawn("n1");
    let count = |version: &str| {
        running_web(&bed.name)
            .iter()
            .filter(|(_, v, _)| v == version)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || running_web(&bed.name).len()
            == 2)
        .is_some(),
        "MinInstances 2 not reached: {:?}\n{}",
        running_web(&bed.name),
        agent.log_text()
    );

    bed.config.file("services/web.json", &v2);
    expect_code(
        &bed.endpoints(),
        &["config", "push", &bed.name, bed.config.path()],
        0,
    );
    let started = wait_until(Duration::from_secs(20), || count(&v2_version) == 1);
    assert!(
        started.is_some(),
        "no v2 instance started: {:?}\n{}",
        running_web(&bed.name),
        agent.log_text()
    );
    agent.kill9();
    let killed_at = Instant::now();
    assert_eq!(
        running_web(&bed.name).len(),
        3,
        "the kill did not fall inside the step: {:?}",
        running_web(&bed.name)
    );
    let gone = wait_until(Duration::from_secs(15), || {
        bed.etcd
            .keys(&format!("/gru/{}/nodes/n1/", bed.name))
            .is_empty()
    });
    assert!(gone.is_some(), "the killed agent's lease did not expire");
    let agents = vec![bed.spawn("n1")];

    let done = wait_until(Duration::from_secs(90), || {
        count(&v2_version) == 2 && running_web(&bed.name).len() == 2
    });
    figure(
        test,
        "kill_to_all_on_v2_seconds",
        killed_at.elapsed().as_secs_f64(),
    );
    assert!(
        done.is_some(),
        "not 2 instances on v2 after the restart: {:?}\n{}",
        running_web(&bed.name),
        logs_tail(&agents, 60)
    );
    // It stays there: no step is left to add an instance.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        running_web(&bed.name).len(),
        2,
        "{:?}",
        running_web(&bed.name)
    );
    let resumed = agents[0]
        .actions(200)
        .into_iter()
        .any(|a| a.action == "rollout" && a.result.starts_with("step resumed"));
    assert!(
        resumed,
        "no resumed step in the actions\n{}",
        logs_tail(&agents, 60)
    );
    events.assert_at_most("web across the kill", 3, |e| e.service == "web");
    drop(agents);
}
