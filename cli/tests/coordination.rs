//! Several agents on the real Docker engine and a real etcd: leaderless invariants under a
//! shared overload, recovery of MinInstances when a node is lost, and gossip that refuses
//! anything not signed with the cluster secret.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gru_agent::gossip::wire;
use rand::{RngExt, SeedableRng};
use support::agents::Agent;
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents, scale_out_policy};
use support::docker::{docker, running_containers};
use support::epoch_ms;
use testkit::{
    Component, ContainerEvents, epoch_ns, http_get, require, require_workload_image, wait_until,
};

#[test]
fn five_agents_under_the_same_overload_keep_max_and_one_step_per_cooldown() {
    let test = "five_agents_under_the_same_overload_keep_max_and_one_step_per_cooldown";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const COOLDOWN_OUT_SECS: u64 = 4;
    const MAX: usize = 3;
    let config = TestConfig::new(&config_for_agents(3), &scale_out_policy(COOLDOWN_OUT_SECS));
    config.service(
        "web",
        &format!(r#""MinInstances": {}, "MaxInstances": {},"#, 1, MAX as u32),
        testkit::free_port_range(12),
    );
    let bed = Cluster::start("herd", config);
    let events = ContainerEvents::start(&bed.name);
    let agents: Vec<Agent> = bed.spawn_nodes(5);
    let floor = wait_until(Duration::from_secs(20), || {
        running_containers(&bed.containers).len() == 1
    });
    assert!(
        floor.is_some(),
        "MinInstances not reached: {:?}",
        running_containers(&bed.containers)
    );
    std::thread::sleep(Duration::from_secs(1));
    let overload_ns = epoch_ns();
    let (floor_peak, _) = events.service_timeline("web").peak_between(0, overload_ns);
    let started_lines: Vec<String> = agents
        .iter()
        .flat_map(|a| {
            a.log_text()
                .lines()
                .filter(|l| {
                    l.contains("instance started")
                        || l.contains("refused")
                        || l.contains("claiming")
                })
                .map(|l| format!("{}: {l}", a.node))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        floor_peak,
        1,
        "five agents restored MinInstances more than once:\n{}\n{}",
        events.service_timeline("web").render(events.started_ns),
        started_lines.join("\n")
    );

    // Every agent hears that web is overloaded (800 ms against a 100 ms target).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(16) {
        for agent in &agents {
            let _ = agent.push_stat(&bed.secret, "web", "execution_time", "800");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every start and death of web's containers, not samples: a fourth instance that ran
    // for a moment between two looks at `docker ps` fails the test too.
    let timeline = events.assert_at_most("web", MAX, |e| e.service == "web");
    let (peak, _) = timeline.peak_between(overload_ns, epoch_ns());
    assert_eq!(
        peak,
        MAX,
        "the overload did not scale web to its max:\n{}\n{}",
        timeline.render(events.started_ns),
        agents
            .iter()
            .flat_map(|a| {
                a.log_text()
                    .lines()
                    .filter(|l| !l.contains("decision"))
                    .map(|l| format!("{}: {l}", a.node))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    );

    let mut starts: Vec<u64> = running_containers(&bed.containers)
        .iter()
        .map(|(_, _, at)| *at)
        .collect();
    starts.sort_unstable();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    testkit::figure(
        test,
        "scale-out steps",
        format!(
            "5 agents, same overload: {} instances (max {MAX}), scale-out gaps {:?} ms (CooldownOut {COOLDOWN_OUT_SECS} s)",
            starts.len(),
            &gaps[1..]
        ),
    );
    // The first gap is from the MinInstances start; every scale-out step after it is at
    // least a cooldown apart (lease expiry is at whole-second granularity: 500 ms slack).
    for gap in &gaps[1..] {
        assert!(
            *gap + 500 >= COOLDOWN_OUT_SECS * 1000,
            "two scale-outs {gap} ms apart within one {COOLDOWN_OUT_SECS} s cooldown: {starts:?}"
        );
    }
    let (_, body) = http_get(agents[0].port, "/gru/v1/gossip").unwrap();
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        view["stats"]["rounds"].as_u64().unwrap() > 3,
        "no gossip rounds: {body}"
    );
    assert!(
        view["reports"].as_object().unwrap().len() >= 3,
        "n1 heard of too few nodes: {body}"
    );
    drop(agents);
}

#[test]
fn a_lost_node_s_instances_are_restored_to_min_within_ttl_and_two_loops() {
    let test = "a_lost_node_s_instances_are_restored_to_min_within_ttl_and_two_loops";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const TTL_SECS: u64 = 3;
    const LOOP_SECS: u64 = 1;
    const MIN: usize = 2;
    let config = TestConfig::new(&config_for_agents(TTL_SECS as u32), QUIET_POLICY);
    config.service(
        "web",
        &format!(r#""MinInstances": {}, "MaxInstances": {},"#, MIN, 4),
        testkit::free_port_range(12),
    );
    let bed = Cluster::start("lost", config);
    let events = ContainerEvents::start(&bed.name);
    let mut agents: Vec<Agent> = bed.spawn_nodes(3);
    assert!(
        wait_until(Duration::from_secs(20), || running_containers(
            &bed.containers
        )
        .len()
            == MIN)
        .is_some(),
        "MinInstances not reached: {:?}",
        running_containers(&bed.containers)
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = running_containers(&bed.containers);
    assert_eq!(before.len(), MIN, "MinInstances overshot: {before:?}");

    // Lose a node that runs an instance: its agent and its containers go at once.
    let victim = before[0].1.clone();
    let index = agents.iter().position(|a| a.node == victim).unwrap();
    let mut agent = agents.remove(index);
    let mut child = agent.guard.take();
    let killed_ns = epoch_ns();
    child.kill().unwrap();
    let ids: Vec<String> = before
        .iter()
        .filter(|c| c.1 == victim)
        .map(|c| c.0.clone())
        .collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    docker(&rm);
    child.wait().unwrap();

    let restored = wait_until(Duration::from_secs(30), || {
        let now = running_containers(&bed.containers);
        now.len() == MIN && now.iter().all(|c| c.1 != victim)
    });
    if restored.is_some() {
        // Two loops more: the survivors must not overshoot once they have restored it.
        std::thread::sleep(Duration::from_secs(2 * LOOP_SECS + 1));
    }
    let held_ns = epoch_ns();
    let web = events.service_timeline("web");
    let on_survivors = events.timeline(|e| e.service == "web" && e.node != victim);
    let history = || {
        format!(
            "web's containers, times from the kill:\n{}\n--- log of {}\n{}",
            web.render(killed_ns),
            agents[0].node,
            agents[0].log_text()
        )
    };
    // When the survivors' last missing instance started, as the engine saw it.
    let Some(restored) = on_survivors.first_reaching(killed_ns, MIN) else {
        panic!("MinInstances not restored on the survivors: {}", history());
    };
    let since_kill = Duration::from_nanos(restored.at_ns - killed_ns);
    let bound = Duration::from_secs(TTL_SECS + 2 * LOOP_SECS);
    testkit::figure(
        test,
        "MinInstances restored after the kill",
        format!(
            "node lost: MinInstances restored {:.2} s after the kill (bound TTL {TTL_SECS} s + 2 loops of {LOOP_SECS} s = {} s)",
            since_kill.as_secs_f64(),
            bound.as_secs()
        ),
    );
    assert!(
        since_kill <= bound,
        "MinInstances restored {since_kill:?} after the kill, bound TTL + 2 loops = {bound:?}: {}",
        history()
    );
    // Never above MinInstances, from before the first agent to now: every start and death.
    events.assert_at_most("web", MIN, |e| e.service == "web");
    assert_eq!(
        web.low_between(restored.at_ns, held_ns),
        MIN,
        "web fell below MinInstances again after it was restored: {}",
        history()
    );
    drop(agent);
}

#[test]
fn gossip_refuses_malformed_oversized_replayed_and_unauthenticated_messages() {
    let test = "gossip_refuses_malformed_oversized_replayed_and_unauthenticated_messages";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let config = TestConfig::new(&config_for_agents(5), QUIET_POLICY);
    config.service(
        "web",
        &format!(r#""MinInstances": {}, "MaxInstances": {},"#, 0, 2),
        testkit::free_port_range(4),
    );
    let bed = Cluster::start("fuzz", config);
    let agent = bed.spawn("n1");

    let nodes_in_view = || -> BTreeSet<String> {
        let (_, body) = http_get(agent.port, "/gru/v1/gossip").unwrap();
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        // This node's own report comes and goes with its rounds: only others matter here.
        view["reports"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|node| *node != "n1")
            .cloned()
            .collect()
    };
    let before = nodes_in_view();
    let valid_body = &wire::seal(&mut wire::GossipMessage {
        from: "intruder".into(),
        body: wire::Body::Push {
            reports: vec![gru_agent::gossip::NodeReport {
                node: "intruder".into(),
                version: 99,
                services: [(
                    "web".to_owned(),
                    gru_agent::gossip::ServiceReport {
                        instances: 50,
                        ..Default::default()
                    },
                )]
                .into(),
            }],
            wants: Vec::new(),
        },
    })[..];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let post = |headers: &[(&str, String)], body: &[u8]| -> u16 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = format!(
            "POST /gru/v1/gossip HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        use std::io::{Read, Write};
        let _ = stream.write_all(request.as_bytes());
        let _ = stream.write_all(body);
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let signed = |ts: u64, nonce: &str, body: &[u8], key: &str| -> Vec<(&'static str, String)> {
        vec![
            (wire::HEADER_TIMESTAMP, ts.to_string()),
            (wire::HEADER_NONCE, nonce.to_owned()),
            (
                wire::HEADER_SIGNATURE,
                wire::sign(key, &ts.to_string(), nonce, body),
            ),
        ]
    };

    let mut sent = 0u64;
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    let mut record = |status: u16| {
        *statuses.entry(status).or_insert(0) += 1;
    };
    // One genuine message, then its replays.
    let genuine = signed(
        epoch_ms(),
        "genuine-nonce",
        valid_body,
        "wrong-secret-first",
    );
    for i in 0..1_200u32 {
        let status = match i % 6 {
            // No credentials, random bytes.
            0 => {
                let len = rng.random_range(0..2_000);
                let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                post(&[], &body)
            }
            // Signed with the wrong key.
            1 => post(&genuine, valid_body),
            // Correct key, stale timestamp.
            2 => post(
                &signed(
                    epoch_ms() - 120_000,
                    &format!("stale-{i}"),
                    valid_body,
                    &bed.secret,
                ),
                valid_body,
            ),
            // Correct key, body that is not a message.
            3 => {
                let junk = format!("{{\"from\": {i}, \"reports\": \"nope\"}}");
                post(
                    &signed(
                        epoch_ms(),
                        &format!("junk-{i}"),
                        junk.as_bytes(),
                        &bed.secret,
                    ),
                    junk.as_bytes(),
                )
            }
            // Oversized.
            4 => {
                let huge = vec![b'x'; wire::MAX_MESSAGE_BYTES + 10];
                post(
                    &signed(epoch_ms(), &format!("huge-{i}"), &huge, &bed.secret),
                    &huge,
                )
            }
            // A validly signed message replayed (the first one is accepted below).
            _ => post(
                &signed(
                    epoch_ms(),
                    "replayed-nonce",
                    b"{\"from\":\"n9\",\"reports\":[{\"node\":\"../x\",\"version\":1}]}",
                    &bed.secret,
                ),
                b"{\"from\":\"n9\",\"reports\":[{\"node\":\"../x\",\"version\":1}]}",
            ),
        };
        assert!((400..500).contains(&status), "input {i} answered {status}");
        record(status);
        sent += 1;
    }
    testkit::figure(
        test,
        "gossip fuzz",
        format!("gossip fuzz: {sent} inputs refused, by status {statuses:?}"),
    );
    assert_eq!(
        http_get(agent.port, "/healthz").unwrap().0,
        200,
        "agent unhealthy"
    );
    let (_, body) = http_get(agent.port, "/gru/v1/gossip").unwrap();
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rejected: u64 = view["stats"]["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        rejected, sent,
        "refusals not all counted: {}",
        view["stats"]
    );
    for reason in [
        "unauthenticated",
        "bad_signature",
        "stale",
        "malformed",
        "too_large",
    ] {
        assert!(
            view["stats"]["rejected"][reason].as_u64().unwrap_or(0) > 0,
            "no {reason}: {}",
            view["stats"]
        );
    }
    assert_eq!(nodes_in_view(), before, "refused gossip changed the view");

    // The genuine article is accepted once, and its replay refused.
    let good = signed(epoch_ms(), "fresh-nonce", valid_body, &bed.secret);
    assert_eq!(post(&good, valid_body), 200);
    assert_eq!(post(&good, valid_body), 409, "a replay was accepted");
    assert!(
        nodes_in_view().contains("intruder"),
        "a valid message was not merged"
    );
    drop(agent);
    drop(bed);
}

#[test]
fn a_lost_node_s_base_service_is_re_homed_on_a_survivor() {
    let test = "a_lost_node_s_base_service_is_re_homed_on_a_survivor";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const TTL_SECS: u64 = 3;
    const LOOP_SECS: u64 = 1;
    let config = TestConfig::new(&config_for_agents(TTL_SECS as u32), QUIET_POLICY);
    config.service(
        "web",
        &format!(r#""MinInstances": {}, "MaxInstances": {},"#, 0, 2),
        testkit::free_port_range(8),
    );
    let bed = Cluster::start("rehome", config);
    let events = ContainerEvents::start(&bed.name);
    let mut first = bed.spawn("n1");
    let survivor = bed.spawn("n2");

    first.command(
        &bed.secret,
        r#"{"name": "set-base-services", "services": ["web"]}"#,
    );
    let placed = wait_until(Duration::from_secs(15), || {
        let now = running_containers(&bed.containers);
        now.len() == 1 && now[0].1 == "n1"
    });
    assert!(
        placed.is_some(),
        "base service not started on n1: {:?}",
        running_containers(&bed.containers)
    );
    // Let n2 see n1's constraints record through its watch.
    std::thread::sleep(Duration::from_secs(1));

    let mut child = first.guard.take();
    let killed_ns = epoch_ns();
    child.kill().unwrap();
    let ids: Vec<String> = running_containers(&bed.containers)
        .into_iter()
        .map(|c| c.0)
        .collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    docker(&rm);
    child.wait().unwrap();

    let rehomed = wait_until(Duration::from_secs(30), || {
        let now = running_containers(&bed.containers);
        now.len() == 1 && now[0].1 == "n2"
    });
    if rehomed.is_some() {
        // Two loops more: a second re-homing would show now.
        std::thread::sleep(Duration::from_secs(2 * LOOP_SECS + 1));
    }
    let held_ns = epoch_ns();
    let web = events.service_timeline("web");
    let history = || {
        format!(
            "web's containers, times from the kill:\n{}\n--- log of n2\n{}",
            web.render(killed_ns),
            survivor.log_text()
        )
    };
    let Some(rehomed) = events
        .timeline(|e| e.service == "web" && e.node == "n2")
        .first_reaching(killed_ns, 1)
        .cloned()
    else {
        panic!("n1's base service was not re-homed on n2: {}", history());
    };
    let since_kill = Duration::from_nanos(rehomed.at_ns - killed_ns);
    let bound = Duration::from_secs(TTL_SECS + 2 * LOOP_SECS);
    testkit::figure(
        test,
        "base service re-homed after the kill",
        format!(
            "node lost: its base service re-homed {:.2} s after the kill (bound TTL {TTL_SECS} s + 2 loops of {LOOP_SECS} s = {} s)",
            since_kill.as_secs_f64(),
            bound.as_secs()
        ),
    );
    assert!(
        since_kill <= bound,
        "re-homed {since_kill:?} after the kill, bound TTL + 2 loops = {bound:?}: {}",
        history()
    );
    // One base instance at a time, from n1's start to now: every start and death.
    events.assert_at_most("web", 1, |e| e.service == "web");
    assert_eq!(
        web.low_between(rehomed.at_ns, held_ns),
        1,
        "the re-homed instance did not stay: {}",
        history()
    );
    drop(first);
}
