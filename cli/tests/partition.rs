//! Network faults on the real Docker engine: agents and etcd members run as containers on
//! private networks, and `docker network disconnect` partitions the cluster.
//!
//! ```text
//!              shared network (a free 10.231.N.0/24, fixed addresses)
//!   side A:    etcd1 .11   etcd2 .12   node1 .21   node2 .22
//!   side B:    etcd3 .13   node3 .23   also on side B's own network, so that during the
//!                                      cut node3 still reaches etcd3: a member without quorum
//!   the cut:   etcd3 and node3 disconnected from the shared network
//!   the heal:  both connected again, at the same addresses
//! ```
//!
//! The agents (`gru:latest`, the Docker socket mounted) manage one service on the host's
//! engine; its containers carry the node's label, so the test counts each side's instances
//! there. Before the cut the service is at MinInstances on node3, then side A scales it
//! under a reported overload to MaxInstances (node3's loop is stopped meanwhile, so that it
//! holds less than max and has a step to want during the cut). During the cut, with the overload still reported on both
//! sides: node3 neither starts nor stops anything (every scaling step needs a claim in etcd
//! and its member has no quorum) and says why; side A, which sees node3's records expire,
//! scales back up to MaxInstances counting only its own nodes, never beyond; nobody
//! crashes. After the heal the cluster holds more than MaxInstances until the agents' ceiling
//! repair stops the surplus, one ledger claim per instance; the test measures how long that
//! takes, and that discovery lists exactly the running instances again.
#![allow(clippy::unwrap_used)]

mod partition_support;
mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gru_agent::store::DEFAULT_REQUEST_DEADLINE;
use partition_support::{Testbed, etcd_healthy, etcdctl, http};
use support::agents::ActionRecord;
use support::configs::{TestConfig, config_for_agents, scale_out_policy};
use support::{epoch_ms, strip_ansi};
use testkit::{ClusterContainers, Component, ContainerEvents, figure, require, skip_listed};

const MIN: usize = 1;
const MAX: usize = 3;
const LOOP_SECS: u64 = 1;
const TTL_SECS: u64 = 3;
const COOLDOWN_OUT_SECS: u64 = 3;
/// The agents' HTTP port, inside each agent's container.
const AGENT_PORT: u16 = 8080;
/// The cut lasts at least this long, and until the minority has refused a step and the
/// majority has scaled back to max; at most [`CUT_MAX`].
const CUT_MIN: Duration = Duration::from_secs(20);
const CUT_MAX: Duration = Duration::from_secs(75);
/// After the heal: node3 re-registers (its keep-alive backs off by less than a TTL), its
/// requests to etcd are answered again (one request deadline at worst), and the ceiling
/// repair stops the surplus, one instance per claim and loop (at most MAX of them); 5 s for
/// etcd3 to rejoin and the test's own polling.
const HEAL_BOUND: Duration =
    Duration::from_secs(TTL_SECS + DEFAULT_REQUEST_DEADLINE.as_secs() + MAX as u64 * LOOP_SECS + 5);
/// Milliseconds of execution time reported for the service: 8 × its 100 ms target.
const OVERLOAD: &str = "800";

/// The partition test needs Docker and etcdctl; a missing one fails the test with how to
/// get it, unless `GRU_TEST_SKIP` lists `partition` (or the component).
fn require_partition(test: &str) -> bool {
    !skip_listed(test, "partition")
        && [Component::Docker, Component::Etcdctl]
            .into_iter()
            .all(|component| require(test, component))
}

/// Builds the images the test runs with the project's script (idempotent: quick when
/// nothing changed).
fn build_images(test: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let started = Instant::now();
    let out = Command::new(root.join("scripts/build-images.sh"))
        .args(["gru", "etcd", "workload"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/build-images.sh gru etcd workload failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    figure(
        test,
        "images built",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
}

/// One agent: its node name, container, address on the shared network, and where the test
/// reaches its HTTP API (side B's network for node3, so it answers during the cut).
#[derive(Debug)]
struct Agent {
    node: String,
    container: String,
    ip: Ipv4Addr,
    probe: SocketAddr,
}

impl Agent {
    fn healthy(&self) -> bool {
        http(self.probe, "GET", "/healthz", None, None).is_some_and(|(s, _)| s == 200)
    }

    /// Sends an operator's command (`start`, `stop`, ...) and requires it accepted.
    fn command(&self, secret: &str, name: &str) {
        let body = format!(r#"{{"name": "{name}"}}"#);
        let answer = http(
            self.probe,
            "POST",
            "/gru/v1/commands",
            Some(secret),
            Some(&body),
        );
        assert!(
            answer.as_ref().is_some_and(|(s, _)| *s == 202),
            "{} refused the command {name}: {answer:?}",
            self.node
        );
    }

    fn report_overload(&self, secret: &str) -> Option<u16> {
        http(
            self.probe,
            "POST",
            "/gru/v1/stats/user/web/execution_time",
            Some(secret),
            Some(OVERLOAD),
        )
        .map(|(status, _)| status)
    }

    /// The agent's action history: (at in ms since the epoch, action, result).
    fn actions(&self) -> Vec<(u64, String, String)> {
        let Some((200, body)) = http(self.probe, "GET", "/gru/v1/actions?limit=256", None, None)
        else {
            return Vec::new();
        };
        let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        ActionRecord::all(&self.node, &view)
            .into_iter()
            .map(|a| (a.at_ms, a.action, a.result))
            .collect()
    }
}

/// What etcd says about the cluster, read through side A's members.
struct Tree {
    endpoints: String,
    cluster: String,
}

impl Tree {
    fn keys(&self, prefix: &str) -> Option<Vec<String>> {
        etcdctl(&self.endpoints, &["get", "--prefix", "--keys-only", prefix]).map(|text| {
            text.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// Nodes with a live registration.
    fn nodes(&self) -> Option<BTreeSet<String>> {
        let prefix = format!("/gru/{}/nodes/", self.cluster);
        self.keys(&prefix).map(|keys| {
            keys.iter()
                .filter_map(|k| k.strip_prefix(&prefix)?.split('/').next())
                .map(str::to_owned)
                .collect()
        })
    }

    /// Instances of web listed in discovery.
    fn discovery(&self) -> Option<BTreeSet<String>> {
        let prefix = format!("/gru/{}/discovery/web/", self.cluster);
        self.keys(&prefix).map(|keys| {
            keys.iter()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(str::to_owned)
                .collect()
        })
    }
}

#[test]
fn a_partition_keeps_max_on_each_side_the_minority_takes_no_step_and_the_heal_converges() {
    let test =
        "a_partition_keeps_max_on_each_side_the_minority_takes_no_step_and_the_heal_converges";
    if !require_partition(test) {
        return;
    }
    build_images(test);
    let started = Instant::now();
    let mut bed = Testbed::new(ClusterContainers::unique("part"));
    let cluster = bed.managed.cluster.clone();

    // Three etcd members on the shared network; etcd3 also on side B's.
    let etcd_ips: Vec<Ipv4Addr> = (11..=13).map(|h| bed.shared_ip(h)).collect();
    let initial_cluster = etcd_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("etcd{}=http://{ip}:2380", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let token = bed.run.clone();
    let mut etcd_containers = Vec::new();
    for (i, ip) in etcd_ips.iter().enumerate() {
        let name = format!("etcd{}", i + 1);
        let client = format!("http://{ip}:2379");
        let peer = format!("http://{ip}:2380");
        let container = bed.create(
            &name,
            *ip,
            &["--tmpfs", "/data"],
            "gru-etcd:latest",
            &[
                "--name",
                &name,
                "--data-dir",
                "/data/etcd",
                "--listen-client-urls",
                "http://0.0.0.0:2379",
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                "http://0.0.0.0:2380",
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                &token,
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ],
        );
        etcd_containers.push(container);
    }
    bed.join_side_b(&etcd_containers[2]);
    for container in &etcd_containers {
        bed.start(container);
    }
    let etcd3_side_b = bed.side_b_ip(&etcd_containers[2]);
    let up = testkit::wait_until(Duration::from_secs(30), || {
        etcd_ips.iter().all(|ip| etcd_healthy(*ip))
    });
    assert!(
        up.is_some(),
        "the etcd members did not become healthy:\n{}",
        bed.logs(&etcd_containers[0], 30)
    );

    // The cluster and its configuration, pushed from the host.
    let all_members = etcd_ips
        .iter()
        .map(|ip| format!("http://{ip}:2379"))
        .collect::<Vec<_>>()
        .join(",");
    let tree = Tree {
        endpoints: format!("http://{}:2379,http://{}:2379", etcd_ips[0], etcd_ips[1]),
        cluster: cluster.clone(),
    };
    // config_for_agents: 1 s loops (LOOP_SECS).
    let config = TestConfig::new(
        &config_for_agents(TTL_SECS as u32),
        &scale_out_policy(COOLDOWN_OUT_SECS),
    );
    config.service(
        "web",
        &format!(r#""MinInstances": {MIN}, "MaxInstances": {MAX},"#),
        testkit::free_port_range(12),
    );
    for args in [
        vec!["create", &cluster],
        vec!["config", "push", &cluster, config.path()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gru"))
            .env("ETCD_ADDR", &all_members)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gru {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secret = etcdctl(
        &tree.endpoints,
        &[
            "get",
            "--print-value-only",
            &format!("/gru/{cluster}/secret"),
        ],
    )
    .unwrap()
    .trim()
    .to_owned();

    // The agents, node3 first so that MinInstances lands on side B (it must have
    // something to lose and something it could be tempted to add to).
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let mount = format!("{socket}:/var/run/docker.sock");
    let mut agents: Vec<Agent> = Vec::new();
    let spawn = |bed: &mut Testbed, i: u8| {
        let node = format!("node{i}");
        let ip = bed.shared_ip(20 + i);
        // node3 reaches etcd3 on side B's network first: during the cut that is the member
        // it can still talk to, and which cannot give it a quorum.
        let endpoints = if i == 3 {
            format!(
                "http://{etcd3_side_b}:2379,http://{}:2379,http://{}:2379",
                etcd_ips[0], etcd_ips[1]
            )
        } else {
            all_members.clone()
        };
        let env_etcd = format!("ETCD_ADDR={endpoints}");
        let address = ip.to_string();
        let port = AGENT_PORT.to_string();
        let container = bed.create(
            &node,
            ip,
            &[
                "-v",
                &mount,
                "-e",
                &env_etcd,
                "-e",
                "RUST_LOG=info,gru_agent::store=debug",
            ],
            "gru:latest",
            &[
                "join",
                &cluster,
                "--name",
                &node,
                "--port",
                &port,
                "--address",
                &address,
                "--publish-ip",
                "127.0.0.1",
                "--start",
            ],
        );
        if i == 3 {
            bed.join_side_b(&container);
        }
        bed.start(&container);
        let probe_ip = if i == 3 {
            bed.side_b_ip(&container)
        } else {
            ip
        };
        let agent = Agent {
            node,
            container,
            ip,
            probe: SocketAddr::new(IpAddr::V4(probe_ip), AGENT_PORT),
        };
        let up = testkit::wait_until(Duration::from_secs(30), || agent.healthy());
        assert!(
            up.is_some(),
            "agent {} did not come up:\n{}",
            agent.node,
            bed.logs(&agent.container, 40)
        );
        agent
    };
    // Every start and death of the managed containers, from before the first agent: the
    // bounds of each phase are checked on them, not on samples 300 ms apart.
    let events = ContainerEvents::start(&cluster);
    let node3 = spawn(&mut bed, 3);
    let floor = testkit::wait_until(Duration::from_secs(30), || bed.instances().len() == MIN);
    assert!(
        floor.is_some(),
        "MinInstances not reached on node3: {:?}\n{}",
        bed.instances(),
        bed.diagnostics()
    );
    agents.push(spawn(&mut bed, 1));
    agents.push(spawn(&mut bed, 2));
    agents.push(node3);
    let containers: Vec<String> = etcd_containers
        .iter()
        .chain(agents.iter().map(|a| &a.container))
        .cloned()
        .collect();
    let container_refs: Vec<&str> = containers.iter().map(String::as_str).collect();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        bed.instances().len(),
        MIN,
        "MinInstances overshot when side A joined: {:?}",
        bed.instances()
    );
    figure(
        test,
        "up: 3 etcd members and 3 agents in containers",
        format!(
            "{:.1} s (MinInstances {MIN} on node3)",
            started.elapsed().as_secs_f64()
        ),
    );

    // Every agent hears that web is overloaded: it scales out to max, never beyond. node3's
    // loop is off meanwhile (`stop agent node3`; its instance keeps running), so that side A
    // takes the steps and node3, holding less than max, has a step to want during the cut.
    agents[2].command(&secret, "stop");
    let overload = |agents: &[Agent]| {
        for agent in agents {
            let _ = agent.report_overload(&secret);
        }
    };
    let load_started = Instant::now();
    let mut at_max = None;
    while load_started.elapsed() < Duration::from_secs(60) {
        overload(&agents);
        let now = bed.instances().len();
        let listed = tree.discovery().map_or(0, |d| d.len());
        if now == MAX && listed == MAX {
            at_max = Some(load_started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let at_max = at_max.unwrap_or_else(|| {
        panic!(
            "the overload did not scale web to {MAX}: {:?}\n{}",
            bed.instances(),
            bed.diagnostics()
        )
    });
    agents[2].command(&secret, "start");
    // Let the last claim's intent expire: nothing is in flight when the network goes.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        overload(&agents);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Never above max from the first agent to now.
    events.assert_at_most("web before the cut", MAX, |_| true);
    let before = bed.instances();
    let side_b_before = before.iter().filter(|i| i.node == "node3").count();
    assert_eq!(side_b_before, MIN, "node3's loop was off: {before:?}");
    figure(
        test,
        "before the cut",
        format!(
            "scaled {MIN} -> {MAX} in {:.1} s; node3 holds {side_b_before}, side A {}",
            at_max.as_secs_f64(),
            MAX - side_b_before
        ),
    );

    // The cut: side B (etcd3, node3) leaves the shared network.
    bed.disconnect(&etcd_containers[2]);
    bed.disconnect(&agents[2].container);
    let cut_at = Instant::now();
    let cut_ms = epoch_ms();
    let cut_ns = testkit::epoch_ns();
    let cut_unix = (cut_ms / 1000).to_string();
    let mut side_a_peak = 0;
    let mut side_a_at_max = None;
    let mut node3_expired = None;
    let mut refusal: Option<(Duration, String)> = None;
    let mut etcd3_without_quorum = false;
    let mut last_slow_check: Option<Instant> = None;
    loop {
        let elapsed = cut_at.elapsed();
        overload(&agents);
        let now = bed.instances();
        let side_a = now.iter().filter(|i| i.node != "node3").count();
        let side_b = now.len() - side_a;
        assert_eq!(
            side_b,
            side_b_before,
            "node3 changed its instances without etcd ({:.1} s into the cut): {now:?}\n{}",
            elapsed.as_secs_f64(),
            bed.logs(&agents[2].container, 40)
        );
        side_a_peak = side_a_peak.max(side_a);
        if side_a == MAX && side_a_at_max.is_none() {
            side_a_at_max = Some(elapsed);
        }
        for (name, (running, restarts)) in bed.states(&container_refs) {
            assert!(running && restarts == 0, "{name} is down during the cut");
        }
        for agent in &agents {
            assert!(
                agent.healthy(),
                "agent {} does not answer /healthz during the cut",
                agent.node
            );
        }
        if last_slow_check.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            last_slow_check = Some(Instant::now());
            if node3_expired.is_none() && tree.nodes().is_some_and(|nodes| !nodes.contains("node3"))
            {
                node3_expired = Some(elapsed);
            }
            if elapsed > Duration::from_secs(3) && !etcd3_without_quorum {
                etcd3_without_quorum = !etcd_healthy(etcd3_side_b);
            }
            for (at, action, result) in agents[2].actions() {
                if at < cut_ms {
                    continue;
                }
                assert!(
                    !result.starts_with("ok"),
                    "node3 acted without etcd during the cut: {action} {result}"
                );
                if refusal.is_none() && result.starts_with("refused: cannot") {
                    refusal = Some((elapsed, format!("{action}: {result}")));
                }
            }
        }
        let done = elapsed >= CUT_MIN && refusal.is_some() && side_a_at_max.is_some();
        if done || elapsed >= CUT_MAX {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut_lasted = cut_at.elapsed();
    // Side A never above max during the cut, and node3 neither started nor stopped anything,
    // not even for a moment: every start and death from the cut to now.
    events.assert_within("web on side A during the cut", 0..=MAX, cut_ns, |e| {
        e.node != "node3"
    });
    let on_node3 = events.timeline(|e| e.node == "node3");
    assert!(
        on_node3.changes.iter().all(|c| c.at_ns <= cut_ns),
        "node3 started or stopped a container during the cut (times from the cut):\n{}",
        on_node3.render(cut_ns)
    );
    let node3_log = strip_ansi(&String::from_utf8_lossy(
        &partition_support::docker(&["logs", "--since", &cut_unix, &agents[2].container]).stderr,
    ));
    assert!(
        etcd3_without_quorum,
        "etcd3 still reported a healthy cluster while cut off: the partition did not cut"
    );
    let node3_expired = node3_expired
        .unwrap_or_else(|| panic!("node3's records did not expire on side A during the cut"));
    let (refused_after, refused) = refusal.unwrap_or_else(|| {
        panic!(
            "node3 recorded no refused step in {:.0} s of cut (it should want to scale out and fail to claim):\n{}",
            cut_lasted.as_secs_f64(),
            bed.logs(&agents[2].container, 60)
        )
    });
    assert!(
        node3_log.contains("etcd is unreachable"),
        "node3's log does not say etcd is unreachable:\n{node3_log}"
    );
    let side_a_at_max = side_a_at_max.unwrap_or_else(|| {
        panic!(
            "side A did not scale back to {MAX} during the cut (peak {side_a_peak}):\n{}",
            bed.diagnostics()
        )
    });
    figure(
        test,
        "partition",
        format!(
            "{:.0} s: side B claims 0 (node3 kept {side_b_before}, first refusal after {:.1} s: {refused}); \
             node3's records expired on side A after {:.1} s; side A max {side_a_peak} (at MaxInstances {MAX} after {:.1} s)",
            cut_lasted.as_secs_f64(),
            refused_after.as_secs_f64(),
            node3_expired.as_secs_f64(),
            side_a_at_max.as_secs_f64()
        ),
    );

    // The heal: both sides count each other's instances again, and the surplus goes.
    let running_instances = |bed: &Testbed| -> BTreeSet<String> {
        bed.instances().into_iter().map(|i| i.instance).collect()
    };
    let at_heal = running_instances(&bed).len();
    bed.reconnect(&etcd_containers[2], etcd_ips[2]);
    bed.reconnect(&agents[2].container, agents[2].ip);
    let healed_at = Instant::now();
    let heal_ms = epoch_ms();
    let heal_ns = testkit::epoch_ns();
    let mut peak_total = 0;
    let mut within_max = None;
    let mut converged = None;
    while healed_at.elapsed() < HEAL_BOUND + Duration::from_secs(30) {
        overload(&agents);
        let running = running_instances(&bed);
        peak_total = peak_total.max(running.len());
        let within = (MIN..=MAX).contains(&running.len());
        if within && within_max.is_none() {
            within_max = Some(healed_at.elapsed());
        }
        for (name, (up, restarts)) in bed.states(&container_refs) {
            assert!(up && restarts == 0, "{name} is down after the heal");
        }
        let consistent = within
            && tree.discovery().as_ref() == Some(&running)
            && tree.nodes().is_some_and(|n| n.len() == 3)
            && etcd_healthy(etcd_ips[2]);
        if consistent {
            converged = Some(healed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let converged = converged.unwrap_or_else(|| {
        panic!(
            "no convergence {:.0} s after the heal: running {:?}, discovery {:?}, nodes {:?}\n{}",
            healed_at.elapsed().as_secs_f64(),
            bed.instances(),
            tree.discovery(),
            tree.nodes(),
            bed.diagnostics()
        )
    });
    let within_max = within_max.unwrap();
    // The surplus only goes: nobody starts an instance while the cluster is above max (a
    // claim from a count that misses the other side's instances would), at every start.
    events.assert_within("web after the heal", 0..=at_heal.max(MAX), heal_ns, |_| {
        true
    });
    // And it stays within [min, max] under the same overload.
    let converged_ns = testkit::epoch_ns();
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(4) {
        overload(&agents);
        std::thread::sleep(Duration::from_millis(300));
    }
    events.assert_within("web after converging", MIN..=MAX, converged_ns, |_| true);
    let ceiling_stops = agents
        .iter()
        .flat_map(Agent::actions)
        .filter(|(at, action, result)| {
            *at >= heal_ms && action == "max-instances" && result == "ok"
        })
        .count();
    figure(
        test,
        "healed",
        format!(
            "{peak_total} instances at peak, within [{MIN}, {MAX}] after {:.1} s ({ceiling_stops} ceiling stops), \
             converged (discovery = running, node3 listed, etcd3 healthy) after {:.1} s (bound {} s)",
            within_max.as_secs_f64(),
            converged.as_secs_f64(),
            HEAL_BOUND.as_secs(),
        ),
    );
    figure(
        test,
        "whole test",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
    assert!(
        converged <= HEAL_BOUND,
        "converged {converged:?} after the heal, bound {HEAL_BOUND:?}"
    );
}
