//! etcd faults under running agents: real etcd members, the real Docker engine, real `gru
//! join` processes. Each test states what it expects, samples the agents and etcd while the
//! fault lasts, and prints its figures (the lines that start with `etcd fault:`), which
//! docs/reliability.md quotes.
//!
//! * one member of three killed (the leader): nothing is interrupted;
//! * the only member down for 30 s, killed then restarted on its data, or stopped
//!   (SIGSTOP) then resumed: agents keep their containers and their local guard, and
//!   resume when it returns (registering again when etcd revoked their leases);
//! * the leases of running nodes revoked under them (what a resumed stale leader may do):
//!   the node that kept its lease asks them before repairing and starts nothing;
//! * one member of three stopped (SIGSTOP) for 15 s, a follower or the leader: etcd is slow
//!   for the requests that land on it until the agents leave it out; leases hold (or, when
//!   the stale leader revokes them on resuming, are registered again), the loop goes on,
//!   claims still succeed.
//!
//! The agents run with `gru_agent::store=debug` (every etcd retry in their log) and a 3 s
//! TTL; `GRU_TEST_KEEP_LOGS=1` keeps their logs after the test and prints where.
//!
//! Every etcd member, agent and container is removed by a guard, also when a test fails;
//! a paused member is resumed by its guard before it is killed.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::agents::{Agent, logs_tail, spawn_nodes};
use support::cluster::{registered, secret};
use support::configs::{TestConfig, config_for_agents, scale_out_policy};
use support::docker::{docker, running_instances};
use support::epoch_ms;
use testkit::{
    ClusterContainers, Component, EtcdCluster, etcdctl_at, free_port_range, http_get, http_request,
    require, require_workload_image, wait_until,
};

/// The agents' lease TTL (`Discovery.TTL`).
const TTL_SECS: u32 = 3;
/// The agents' autonomic loop (`config_for_agents`).
const LOOP_SECS: u64 = 1;
/// How often the probe asks every agent and etcd.
const PROBE_PERIOD: Duration = Duration::from_millis(150);
/// Longest pause between two answers of an agent's /healthz that still counts as "answers
/// throughout": a few probe periods, for a loaded 2-core machine.
const HEALTH_GAP_MAX: Duration = Duration::from_millis(1500);
/// Milliseconds of execution time reported to make `web` overloaded (8 × its 100 ms target).
const OVERLOAD: &str = "800";
/// One scale-out step per cooldown: long enough that a test sees exactly one.
const COOLDOWN_OUT_SECS: u64 = 60;
/// The members' election timeout (`testkit` starts them with `--election-timeout 1000`):
/// a follower calls an election after a randomized 1–2 of these without a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest the agents' loop may stand still when the etcd leader of three is killed:
/// a loop, a new leader (within 2 election timeouts), and the store's longest pause between
/// two attempts of a request (`RETRY_MAX_BACKOFF`: the request that was waiting for the
/// leader is answered at its next attempt): 4 s with these settings, below the TTL + 2
/// loops (5 s) that docs/reliability.md promises for anything that needs the cluster to
/// notice a loss. A longer stall means a request waited for something else than the
/// election (an attempt's timeout on the dead member, a retry without its cap).
fn leader_kill_stall_bound() -> Duration {
    Duration::from_secs(LOOP_SECS) + 2 * ELECTION_TIMEOUT + gru_agent::store::RETRY_MAX_BACKOFF
}

/// `web` (MinInstances 2, MaxInstances 4) and `base` (no minimum: it runs only as a base
/// service), pushed to a fresh cluster.
fn push_config(etcd: &EtcdCluster, cluster: &str) -> TestConfig {
    let config = TestConfig::new(
        &config_for_agents(TTL_SECS),
        &scale_out_policy(COOLDOWN_OUT_SECS),
    );
    config.service(
        "web",
        r#""MinInstances": 2, "MaxInstances": 4,"#,
        free_port_range(10),
    );
    config.service(
        "base",
        r#""MinInstances": 0, "MaxInstances": 2,"#,
        free_port_range(6),
    );
    config.create_and_push(etcd, cluster);
    config
}

/// Where the agents' logs go: a temporary directory, kept (and its path printed) when
/// `GRU_TEST_KEEP_LOGS` is set.
fn agent_logs() -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix("gru-etcd-faults-")
        .tempdir()
        .unwrap();
    if std::env::var_os("GRU_TEST_KEEP_LOGS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("agents' logs kept in {}", dir.path().display());
    }
    dir
}

/// What a test keeps alive while its agents run.
struct Cluster {
    config: TestConfig,
    secret: String,
    logs_dir: tempfile::TempDir,
    agents: Vec<Agent>,
}

/// The configuration pushed and three agents (n1, n2, n3) joined, given every member,
/// logging the etcd adapter at debug.
fn three_agents(etcd: &EtcdCluster, cluster: &str) -> Cluster {
    let config = push_config(etcd, cluster);
    let secret = secret(etcd, cluster);
    let logs_dir = agent_logs();
    let agents = spawn_nodes(
        &etcd.endpoints(),
        cluster,
        3,
        logs_dir.path(),
        "info,gru_agent::store=debug",
    );
    Cluster {
        config,
        secret,
        logs_dir,
        agents,
    }
}

/// Waits until web runs at MinInstances (2) with its discovery records, then 2 s more.
fn wait_for_min(etcd: &EtcdCluster, containers: &ClusterContainers, agents: &[Agent]) {
    let at_min = wait_until(Duration::from_secs(30), || {
        running_instances(containers, "web").len() == 2
            && discovery_matches(etcd, containers, "web")
    });
    assert!(
        at_min.is_some(),
        "web never reached MinInstances:\n{}",
        logs(agents)
    );
    std::thread::sleep(Duration::from_secs(2));
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Every agent's log, for failure messages.
fn logs(agents: &[Agent]) -> String {
    logs_tail(agents, 40)
}

/// Lines of the agents' logs that contain `needle`, prefixed with the node.
fn log_lines(agents: &[Agent], needle: &str) -> Vec<String> {
    agents
        .iter()
        .flat_map(|a| {
            a.log_text()
                .lines()
                .filter(|l| l.contains(needle))
                .map(|l| format!("{}: {l}", a.node))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts that every agent process is still running.
fn assert_alive(agents: &mut [Agent]) {
    for agent in agents.iter_mut() {
        let status = agent.guard.0.as_mut().unwrap().try_wait().unwrap();
        assert!(
            status.is_none(),
            "agent {} exited ({status:?}):\n{}",
            agent.node,
            agent.log_text()
        );
    }
}

/// The four records of each node, as etcd keys.
fn node_keys(cluster: &str, nodes: &[&str]) -> BTreeSet<String> {
    nodes
        .iter()
        .flat_map(|n| {
            ["config", "constraints", "resources", "active"]
                .map(|f| format!("/gru/{cluster}/nodes/{n}/{f}"))
        })
        .collect()
}

/// Each node record's lease (key → lease id, read with etcdctl): equal before and after a
/// fault means no node lost its lease and registered again.
fn node_leases(endpoints: &str, cluster: &str) -> BTreeMap<String, u64> {
    testkit::key_leases(endpoints, &format!("/gru/{cluster}/nodes/"))
        .into_iter()
        .collect()
}

/// Running instances of `service` and its discovery records agree (same instance ids).
fn discovery_matches(etcd: &EtcdCluster, c: &ClusterContainers, service: &str) -> bool {
    let records: BTreeSet<String> = registered(etcd, &c.cluster, service)
        .into_iter()
        .map(|(instance, _)| instance)
        .collect();
    records == running_instances(c, service)
}

/// Ids of the cluster's running containers.
fn running_ids(c: &ClusterContainers) -> BTreeSet<String> {
    c.ids(Some("status=running")).into_iter().collect()
}

/// Reports `web` overloaded to every agent every 300 ms until `web` runs `target` instances;
/// how long that took, or `None` after `timeout`.
fn overload_until(
    agents: &[Agent],
    secret: &str,
    containers: &ClusterContainers,
    target: usize,
    timeout: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        for agent in agents {
            let _ = agent.push_stat(secret, "web", "execution_time", OVERLOAD);
        }
        if running_instances(containers, "web").len() >= target {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

/// The newest `action` of `service` with result `ok` among all agents since `since_ms`:
/// (node, epoch ms).
fn action_since(
    agents: &[Agent],
    action: &str,
    service: &str,
    since_ms: u64,
) -> Option<(String, u64)> {
    agents
        .iter()
        .flat_map(|a| a.actions(50))
        .filter(|r| {
            r.action == action && r.service == service && r.result == "ok" && r.at_ms >= since_ms
        })
        .map(|r| (r.node, r.at_ms))
        .max_by_key(|(_, at)| *at)
}

/// The agent's completed autonomic ticks (`gru_loop_duration_seconds_count` on /metrics).
fn loop_count(port: u16) -> Option<u64> {
    let (status, body) = http_get(port, "/metrics")?;
    if status != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix("gru_loop_duration_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// What the probe saw of the agents at one moment.
#[derive(Debug, Clone)]
struct AgentSample {
    at: Instant,
    /// Per agent: /healthz answered 200.
    healthy: Vec<bool>,
    /// Per agent: completed ticks, when /metrics answered.
    loops: Vec<Option<u64>>,
}

/// What the probe read from etcd at one moment: the keys under `/gru/<cluster>/`, when
/// etcd answered.
#[derive(Debug, Clone)]
struct EtcdSample {
    at: Instant,
    keys: Option<BTreeSet<String>>,
}

/// Two threads: one samples every agent (/healthz, /metrics), the other etcd (every key of
/// the cluster, through `endpoints`), each every [`PROBE_PERIOD`] until finished (an etcd
/// that does not answer slows only the second).
struct Probe {
    stop: Arc<AtomicBool>,
    agents: Option<JoinHandle<Vec<AgentSample>>>,
    etcd: Option<JoinHandle<Vec<EtcdSample>>>,
}

impl Probe {
    fn start(ports: Vec<u16>, endpoints: String, cluster: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let agents = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let healthy = ports
                        .iter()
                        .map(|p| http_get(*p, "/healthz").is_some_and(|(s, _)| s == 200))
                        .collect();
                    let loops = ports.iter().map(|p| loop_count(*p)).collect();
                    samples.push(AgentSample { at, healthy, loops });
                    std::thread::sleep(PROBE_PERIOD.saturating_sub(at.elapsed()));
                }
                samples
            })
        };
        let etcd = {
            let stop = stop.clone();
            let prefix = format!("/gru/{cluster}/");
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let keys = etcdctl_at(&endpoints, &["get", "--prefix", "--keys-only", &prefix])
                        .ok()
                        .map(|out| {
                            out.lines()
                                .filter(|l| !l.is_empty())
                                .map(str::to_owned)
                                .collect()
                        });
                    samples.push(EtcdSample { at, keys });
                    std::thread::sleep(PROBE_PERIOD.saturating_sub(at.elapsed()));
                }
                samples
            })
        };
        Probe {
            stop,
            agents: Some(agents),
            etcd: Some(etcd),
        }
    }

    fn finish(mut self) -> (Vec<AgentSample>, Vec<EtcdSample>) {
        self.stop.store(true, Ordering::Relaxed);
        (
            self.agents.take().unwrap().join().unwrap(),
            self.etcd.take().unwrap().join().unwrap(),
        )
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The longest time between two moments at which the thing checked was fine (counted from
/// the first moment to the last): how long it was missing at worst.
fn longest_gap(points: impl IntoIterator<Item = (Instant, bool)>) -> Duration {
    let mut points = points.into_iter().peekable();
    let Some(&(first, _)) = points.peek() else {
        return Duration::ZERO;
    };
    let (mut last_ok, mut end) = (first, first);
    let mut longest = Duration::ZERO;
    for (at, ok) in points {
        end = at;
        if ok {
            longest = longest.max(at - last_ok);
            last_ok = at;
        }
    }
    longest.max(end - last_ok)
}

/// The longest time from a read that found something missing to the next read that found
/// it complete (or to the last read).
fn longest_missing(reads: impl IntoIterator<Item = (Instant, bool)>) -> Duration {
    let mut since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    let mut end = None;
    for (at, complete) in reads {
        end = Some(at);
        match (complete, since) {
            (false, None) => since = Some(at),
            (true, Some(from)) => {
                longest = longest.max(at - from);
                since = None;
            }
            _ => {}
        }
    }
    match (since, end) {
        (Some(from), Some(end)) => longest.max(end - from),
        _ => longest,
    }
}

/// The longest time agent `i`'s tick count stood still.
fn longest_loop_stall(samples: &[AgentSample], i: usize) -> Duration {
    let mut last: Option<(u64, Instant)> = None;
    let mut longest = Duration::ZERO;
    for sample in samples {
        let Some(count) = sample.loops[i] else {
            continue;
        };
        match last {
            Some((seen, since)) if count == seen => longest = longest.max(sample.at - since),
            _ => last = Some((count, sample.at)),
        }
    }
    longest
}

/// The longest /healthz gap of each agent.
fn healthz_gaps(samples: &[AgentSample], agents: usize) -> Vec<Duration> {
    (0..agents)
        .map(|i| longest_gap(samples.iter().map(|s| (s.at, s.healthy[i]))))
        .collect()
}

/// Ticks agent `i` completed between the first and the last sample in `range`.
fn ticks_during(samples: &[AgentSample], i: usize, from: Instant, to: Instant) -> u64 {
    let within: Vec<u64> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .filter_map(|s| s.loops[i])
        .collect();
    match (within.first(), within.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    }
}

/// Expected: with three members and all three endpoints given to the agents, killing the
/// leader (SIGKILL) interrupts nothing. While a new leader is elected and after, every
/// agent's /healthz answers (no gap above [`HEALTH_GAP_MAX`]), no agent's loop stands still
/// longer than [`leader_kill_stall_bound`] (4 s), no node's records leave etcd
/// (each keeps the lease it had: no re-registration), the running containers are the same,
/// and a scale-out claimed through the ledger after the kill succeeds: exactly one step.
#[test]
fn killing_the_etcd_leader_of_three_interrupts_nothing_and_claims_still_succeed() {
    let test = "killing_the_etcd_leader_of_three_interrupts_nothing_and_claims_still_succeed";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let containers = ClusterContainers::unique("etcd-leader");
    let cluster = containers.cluster.clone();
    let mut etcd = EtcdCluster::start_members(3);
    let Cluster {
        config: _config,
        secret,
        logs_dir: _logs_dir,
        mut agents,
    } = three_agents(&etcd, &cluster);
    wait_for_min(&etcd, &containers, &agents);
    let before = running_ids(&containers);
    assert_eq!(before.len(), 2, "MinInstances overshot: {before:?}");
    let web_before = running_instances(&containers, "web");
    let leases_before = node_leases(&etcd.serving_endpoints(), &cluster);
    assert_eq!(leases_before.len(), 12, "{leases_before:?}");

    let leader = etcd.leader().expect("a leader");
    let survivors = etcd.endpoints_except(leader);
    let probe = Probe::start(
        agents.iter().map(|a| a.port).collect(),
        survivors.clone(),
        &cluster,
    );
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = Instant::now();
    let killed_ms = epoch_ms();
    etcd.members[leader].kill();
    let elected = wait_until(Duration::from_secs(10), || etcd.leader().is_some());
    // Let the agents run on two members for a while before asking them to claim.
    std::thread::sleep(Duration::from_secs(4));
    let claim_asked = killed_at.elapsed();
    let scaled = overload_until(&agents, &secret, &containers, 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let (samples, reads) = probe.finish();

    let expected_nodes = node_keys(&cluster, &["n1", "n2", "n3"]);
    let discovery_prefix = format!("/gru/{cluster}/discovery/web/");
    let read = reads.iter().filter(|s| s.keys.is_some()).count();
    let vanished: Vec<String> = reads
        .iter()
        .filter_map(|s| {
            let keys = s.keys.as_ref()?;
            let missing_nodes: Vec<&String> = expected_nodes.difference(keys).collect();
            let missing_web: Vec<&String> = web_before
                .iter()
                .filter(|i| !keys.contains(&format!("{discovery_prefix}{i}")))
                .collect();
            (!missing_nodes.is_empty() || !missing_web.is_empty()).then(|| {
                format!(
                    "{} after the kill: missing {missing_nodes:?} {missing_web:?}",
                    secs(s.at.saturating_duration_since(killed_at))
                )
            })
        })
        .collect();
    let health_gaps = healthz_gaps(&samples, agents.len());
    let etcd_gap = longest_gap(reads.iter().map(|s| (s.at, s.keys.is_some())));
    let stalls: Vec<Duration> = (0..agents.len())
        .map(|i| longest_loop_stall(&samples, i))
        .collect();
    let claim = action_since(&agents, "scale-out", "web", killed_ms);
    testkit::figure(
        test,
        "leader killed",
        format!(
            "etcd fault: leader m{leader} of 3 killed: new leader after {}; {} agent samples, {read} etcd reads, longest /healthz gap {} (per agent {:?}), longest etcd read gap {}, longest loop stall {}, records vanished in {} samples; scale-out asked {} after the kill, instance running {} later, claimed by {:?}",
            elected.map_or("never".into(), secs),
            samples.len(),
            secs(*health_gaps.iter().max().unwrap()),
            health_gaps
                .iter()
                .map(|d| d.as_millis())
                .collect::<Vec<_>>(),
            secs(etcd_gap),
            secs(*stalls.iter().max().unwrap()),
            vanished.len(),
            secs(claim_asked),
            scaled.map_or("never".into(), secs),
            claim
                .as_ref()
                .map(|(node, at)| format!("{node} at +{} ms", at - killed_ms)),
        ),
    );

    assert!(elected.is_some(), "the two survivors elected no leader");
    let bound = leader_kill_stall_bound();
    assert!(
        bound < Duration::from_secs(u64::from(TTL_SECS) + 2 * LOOP_SECS),
        "the stall bound {bound:?} is looser than TTL + 2 loops"
    );
    for (agent, stall) in agents.iter().zip(&stalls) {
        assert!(
            *stall <= bound,
            "{}'s loop stood still for {} after the leader was killed (bound {}: a loop, a new \
             leader, one retry backoff):\n{}",
            agent.node,
            secs(*stall),
            secs(bound),
            logs_tail(std::slice::from_ref(agent), 40)
        );
    }
    assert!(
        vanished.is_empty(),
        "records left etcd while a member was down:\n{}\n{}",
        vanished.join("\n"),
        logs(&agents)
    );
    for (agent, gap) in agents.iter().zip(&health_gaps) {
        assert!(
            *gap <= HEALTH_GAP_MAX,
            "{}'s /healthz did not answer for {gap:?}",
            agent.node
        );
    }
    assert!(
        scaled.is_some(),
        "no scale-out after the kill:\n{}",
        logs(&agents)
    );
    assert!(
        claim.is_some(),
        "the scale-out is not among the agents' actions"
    );
    let after = running_ids(&containers);
    assert!(
        before.is_subset(&after),
        "containers that ran before the kill are gone: before {before:?}, after {after:?}"
    );
    assert_eq!(
        running_instances(&containers, "web").len(),
        3,
        "more than one scale-out step in one cooldown"
    );
    assert!(
        wait_until(Duration::from_secs(5), || discovery_matches(
            &etcd,
            &containers,
            "web"
        ))
        .is_some(),
        "discovery does not list exactly the running instances"
    );
    assert_eq!(
        node_leases(&survivors, &cluster),
        leases_before,
        "a node's lease changed (it registered again):\n{}",
        log_lines(&agents, "lease").join("\n")
    );
    assert_alive(&mut agents);
}

/// How the only etcd member is taken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGKILL, then started again on its data directory and port: connections are
    /// refused at once; the leases survive (etcd extends them when it starts).
    Killed,
    /// SIGSTOP, then SIGCONT: connections are accepted and nothing answers, so every request
    /// waits for its timeout; when it resumes, etcd revokes every lease whose TTL ran out
    /// while it was stopped, and the agents must register again.
    Stopped,
}

/// How long a base service's container removed during an outage may stay away: the TTL
/// (after which an agent's keep-alive tells its store that etcd is unreachable, and the
/// requests under way give up) plus a few loops whose etcd requests each fail within 1 s.
const GUARD_BOUND: Duration = Duration::from_secs(10);

/// How long after etcd returned the node and discovery records may still differ from the
/// running containers: a keep-alive retry (at most 2 s apart), a registration, one loop.
const RESUME_BOUND: Duration = Duration::from_secs(5);

/// Expected: with the only etcd member killed for 30 s and then restarted on its data (the
/// harsher "down": connections are refused, every request fails at once), the agents do
/// not exit and their /healthz answers throughout; every container keeps running (same
/// ids); a base service's container removed with `docker rm -f` during the outage (at 3 s,
/// about when the agents find etcd unreachable, and at 17 s) is started again by its agent
/// without etcd (the local guard), once, within [`GUARD_BOUND`] each time; when etcd
/// returns, the node and discovery records equal the running containers within
/// [`RESUME_BOUND`] (the old base instance's record removed, the new one published), and a
/// scale-out claim succeeds: exactly one step, no duplicate and no lost instance.
#[test]
fn etcd_killed_for_30_s_agents_keep_containers_and_guards_and_resume() {
    let test = "etcd_killed_for_30_s_agents_keep_containers_and_guards_and_resume";
    etcd_down_for_30_s(test, Outage::Killed);
}

/// Expected: as when killed, with the only member stopped (SIGSTOP) for 30 s instead:
/// requests hang rather than fail, and when etcd resumes it revokes the agents' leases
/// (their TTL ran out while it was stopped). The agents keep their containers and their
/// local guard during the outage, then register again under new leases and publish their
/// instances again: records equal the running containers within [`RESUME_BOUND`].
#[test]
fn etcd_stopped_for_30_s_agents_keep_containers_and_register_again() {
    let test = "etcd_stopped_for_30_s_agents_keep_containers_and_register_again";
    etcd_down_for_30_s(test, Outage::Stopped);
}

fn etcd_down_for_30_s(test: &str, outage: Outage) {
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const OUTAGE: Duration = Duration::from_secs(30);
    let containers = ClusterContainers::unique(match outage {
        Outage::Killed => "etcd-killed",
        Outage::Stopped => "etcd-stopped",
    });
    let cluster = containers.cluster.clone();
    let mut etcd = EtcdCluster::start();
    let Cluster {
        config: _config,
        secret,
        logs_dir: _logs_dir,
        mut agents,
    } = three_agents(&etcd, &cluster);
    let (status, body) = http_request(
        agents[0].port,
        "POST",
        "/gru/v1/commands",
        Some(&secret),
        Some(r#"{"name": "set-base-services", "services": ["base"]}"#),
    )
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let ready = wait_until(Duration::from_secs(30), || {
        running_instances(&containers, "web").len() == 2
            && running_instances(&containers, "base").len() == 1
            && discovery_matches(&etcd, &containers, "web")
            && discovery_matches(&etcd, &containers, "base")
    });
    assert!(
        ready.is_some(),
        "web at MinInstances and base on n1 not reached:\n{}",
        logs(&agents)
    );
    std::thread::sleep(Duration::from_secs(2));
    let web_before = running_instances(&containers, "web");
    let base_before = containers.ids(Some("label=org.gru.service=base"));
    assert_eq!(base_before.len(), 1, "{base_before:?}");
    let before = running_ids(&containers);
    assert_eq!(before.len(), 3, "{before:?}");
    let leases_before = node_leases(&etcd.endpoints(), &cluster);

    let probe = Probe::start(
        agents.iter().map(|a| a.port).collect(),
        etcd.endpoints(),
        &cluster,
    );
    std::thread::sleep(Duration::from_secs(1));
    let down_at = Instant::now();
    let paused = match outage {
        Outage::Killed => {
            etcd.members[0].kill();
            None
        }
        Outage::Stopped => Some(etcd.members[0].pause()),
    };

    // The local guard: n1's base service, removed behind its back, comes back without etcd;
    // once early in the outage, while the agents' requests still wait for the full deadline,
    // and once later, when they know that etcd is unreachable.
    let mut guards = Vec::new();
    let mut base_during = Vec::new();
    for removal in [Duration::from_secs(3), Duration::from_secs(17)] {
        std::thread::sleep(removal.saturating_sub(down_at.elapsed()));
        let Some(id) = containers
            .ids(Some("label=org.gru.service=base"))
            .into_iter()
            .next()
        else {
            break;
        };
        docker(&["rm", "-f", &id]);
        let removed_at = down_at.elapsed();
        let back = wait_until(OUTAGE.saturating_sub(down_at.elapsed()), || {
            running_instances(&containers, "base").len() == 1
        });
        guards.push((removed_at, back));
        base_during.push(containers.ids(Some("label=org.gru.service=base")));
    }
    let web_during = running_instances(&containers, "web");
    std::thread::sleep(OUTAGE.saturating_sub(down_at.elapsed()));
    assert_alive(&mut agents);
    let web_end_of_outage = running_instances(&containers, "web");
    let base_end_of_outage = running_instances(&containers, "base");

    let restart = match paused {
        Some(paused) => {
            paused.resume();
            Duration::ZERO
        }
        None => etcd.members[0].restart(),
    };
    let back_at = Instant::now();
    let expected_nodes = node_keys(&cluster, &["n1", "n2", "n3"]);
    let expected_discovery: BTreeSet<String> = web_before
        .iter()
        .map(|i| format!("/gru/{cluster}/discovery/web/{i}"))
        .chain(
            base_end_of_outage
                .iter()
                .map(|i| format!("/gru/{cluster}/discovery/base/{i}")),
        )
        .collect();
    let discovery_prefix = format!("/gru/{cluster}/discovery/");
    let complete = |keys: &BTreeSet<String>| {
        let discovery: BTreeSet<String> = keys
            .iter()
            .filter(|k| k.starts_with(&discovery_prefix))
            .cloned()
            .collect();
        expected_nodes.is_subset(keys) && discovery == expected_discovery
    };
    // A resumed etcd revokes the expired leases a moment after it answers: look past that.
    std::thread::sleep(Duration::from_secs(2));
    let converged = wait_until(Duration::from_secs(30), || {
        let keys: BTreeSet<String> = etcd.keys(&format!("/gru/{cluster}/")).into_iter().collect();
        complete(&keys)
    });
    // Every agent registered again under a new lease: until a TTL and two loops have
    // passed, the others are nodes in doubt, and a scale-out is withheld (its cooldown does
    // not start: the planner takes the decision back). The step is asked for once that
    // grace is over.
    std::thread::sleep(Duration::from_secs(u64::from(TTL_SECS) + 2));
    let claim_from = Instant::now();
    let claim_ms = epoch_ms();
    let scaled = overload_until(&agents, &secret, &containers, 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let (samples, reads) = probe.finish();

    // From which moment on every read between etcd's return and the claim was complete.
    let after_back: Vec<&EtcdSample> = reads
        .iter()
        .filter(|s| s.at >= back_at && s.at < claim_from && s.keys.is_some())
        .collect();
    let stable_from = after_back
        .iter()
        .rposition(|s| !s.keys.as_ref().is_some_and(complete))
        .map_or(0, |i| i + 1);
    let records_back = after_back.get(stable_from).map(|s| s.at - back_at);
    let incomplete_after_back = after_back
        .iter()
        .filter(|s| !s.keys.as_ref().is_some_and(complete))
        .count();
    let during: Vec<&AgentSample> = samples
        .iter()
        .filter(|s| s.at >= down_at && s.at < back_at)
        .collect();
    let unhealthy = during
        .iter()
        .filter(|s| s.healthy.iter().any(|h| !h))
        .count();
    let health_gaps = healthz_gaps(&samples, agents.len());
    let ticks: Vec<u64> = (0..agents.len())
        .map(|i| ticks_during(&samples, i, down_at, back_at))
        .collect();
    let claim = action_since(&agents, "scale-out", "web", claim_ms);
    let leases_after = node_leases(&etcd.endpoints(), &cluster);
    let registered_again = log_lines(&agents, "registered again");
    testkit::figure(
        test,
        "only member down",
        format!(
            "etcd fault: the only member {outage:?} for {}: {} agent samples during the outage, {unhealthy} with an agent unhealthy, longest /healthz gap {}; web containers unchanged: {}; base container removed at {} (local guard, no etcd); ticks during the outage per agent {ticks:?} (loop {LOOP_SECS} s); etcd answering {}; node and discovery records equal to the containers {} after etcd returned ({incomplete_after_back} incomplete reads before; checked again at {}); leases kept: {}, nodes that registered again: {}; scale-out claimed {} after it was asked, by {:?}",
            secs(back_at - down_at),
            during.len(),
            secs(*health_gaps.iter().max().unwrap()),
            web_end_of_outage == web_before,
            guards
                .iter()
                .map(|(at, back)| format!(
                    "+{} running again {} later",
                    secs(*at),
                    back.map_or("never".into(), secs)
                ))
                .collect::<Vec<_>>()
                .join(", "),
            match outage {
                Outage::Killed => format!("{} after the restart began", secs(restart)),
                Outage::Stopped => "at once after SIGCONT".to_owned(),
            },
            records_back.map_or("never".into(), secs),
            converged.map_or("never".into(), |d| secs(d + Duration::from_secs(2))),
            leases_after == leases_before,
            registered_again.len(),
            scaled.map_or("never".into(), secs),
            claim.as_ref().map(|(node, _)| node),
        ),
    );

    assert_alive(&mut agents);
    for (agent, gap) in agents.iter().zip(&health_gaps) {
        assert!(
            *gap <= HEALTH_GAP_MAX,
            "{}'s /healthz did not answer for {gap:?}",
            agent.node
        );
    }
    assert_eq!(
        web_during, web_before,
        "web's containers changed during the outage"
    );
    assert_eq!(
        web_end_of_outage, web_before,
        "web's containers changed during the outage"
    );
    assert!(
        guards.len() == 2
            && guards
                .iter()
                .all(|(_, back)| back.is_some_and(|d| d <= GUARD_BOUND)),
        "the base service was not restarted within {GUARD_BOUND:?} while etcd was down: {guards:?}\n{}",
        logs(&agents)
    );
    assert!(
        base_during.iter().all(|ids| ids.len() == 1),
        "base duplicated: {base_during:?}"
    );
    assert_eq!(
        base_end_of_outage.len(),
        1,
        "base duplicated: {base_end_of_outage:?}"
    );
    assert!(
        converged.is_some(),
        "records did not come back to the running containers after etcd returned: nodes {:?}, web {:?} vs {:?}, base {:?} vs {:?}\n{}",
        etcd.keys(&format!("/gru/{cluster}/nodes/")),
        registered(&etcd, &cluster, "web"),
        running_instances(&containers, "web"),
        registered(&etcd, &cluster, "base"),
        running_instances(&containers, "base"),
        logs(&agents)
    );
    assert!(
        records_back.is_some_and(|d| d <= RESUME_BOUND),
        "records equal to the containers {records_back:?} after etcd returned (bound {RESUME_BOUND:?})"
    );
    assert!(
        scaled.is_some(),
        "no scale-out after etcd returned:\n{}",
        logs(&agents)
    );
    assert!(
        claim.is_some(),
        "the scale-out is not among the agents' actions"
    );
    assert_eq!(
        running_instances(&containers, "web").len(),
        3,
        "more than one step"
    );
    assert_eq!(
        running_instances(&containers, "base"),
        base_end_of_outage,
        "base changed after etcd returned"
    );
    assert!(
        wait_until(Duration::from_secs(5), || discovery_matches(
            &etcd,
            &containers,
            "web"
        ) && discovery_matches(
            &etcd,
            &containers,
            "base"
        ))
        .is_some(),
        "discovery does not list exactly the running instances"
    );
    let panics = log_lines(&agents, "panicked");
    assert!(panics.is_empty(), "{panics:?}");
}

/// Which member of three a test stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Follower,
    Leader,
}

/// Expected: with three members, stopping a follower (SIGSTOP) for 15 s makes etcd slow for
/// the agents, not unavailable: requests and keep-alives that land on it hang until their
/// attempt's timeout, then the agents leave it out (keep-alive on the next member, the
/// store's probe) and go on. Every node keeps its lease and its records, /healthz answers
/// throughout, every agent's loop keeps ticking (at least 5 ticks of 1 s in 15 s; the
/// longest stall is printed), and a scale-out claimed while the member is stopped succeeds
/// through the other two. After SIGCONT the member catches up and discovery equals the
/// running containers.
#[test]
fn a_stopped_etcd_follower_slows_the_agents_but_leases_hold_and_claims_succeed() {
    let test = "a_stopped_etcd_follower_slows_the_agents_but_leases_hold_and_claims_succeed";
    stop_one_member_of_three(test, Stopped::Follower);
}

/// Expected: as with a follower, while the leader is stopped (SIGSTOP, 15 s): a new leader
/// is elected, /healthz answers, the loop keeps ticking and a claim succeeds. When the old
/// leader resumes, etcd before 3.4.28 / 3.5.11 lets it revoke every lease it believes has
/// expired (etcd-io/etcd#15247, fixed by #16822): the nodes' records vanish although their
/// keep-alives went to the new leader. The agents must then register again and publish
/// their instances again: node and discovery records are back within [`RECOVERY_BOUND`] of
/// the resume, with the same containers (no duplicate, none lost).
#[test]
fn a_stopped_etcd_leader_slows_the_agents_and_they_recover_if_it_revokes_their_leases() {
    let test = "a_stopped_etcd_leader_slows_the_agents_and_they_recover_if_it_revokes_their_leases";
    stop_one_member_of_three(test, Stopped::Leader);
}

/// Expected: when etcd revokes the leases of the nodes that run `web` while another node
/// keeps its own (what a resumed stale leader does, see the test above, made deterministic
/// here with `etcdctl lease revoke`), their records vanish though they run on. The node
/// that kept its lease must not take that for lost instances: before a MinInstances repair
/// it asks the nodes whose records vanished, they answer, and it starts nothing: its
/// action history records the repair of `web` as withheld, naming those nodes (the keeper
/// sees the records missing only when one of its ticks falls before they are back, so the
/// revocation is repeated, at most 10 times, until it has). The others register again and
/// republish: `web` keeps the same two containers, also after the grace (TTL + 2 loops)
/// has run out. With `GRU_TEST_NO_WITHHOLD=1` (the agents do not ask) the test fails.
#[test]
fn leases_revoked_under_running_agents_make_no_one_start_a_second_instance() {
    let test = "leases_revoked_under_running_agents_make_no_one_start_a_second_instance";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    let containers = ClusterContainers::unique("etcd-revoked");
    let cluster = containers.cluster.clone();
    let etcd = EtcdCluster::start();
    let events = testkit::ContainerEvents::start(&cluster);
    let Cluster {
        config: _config,
        secret: _secret,
        logs_dir: _logs_dir,
        mut agents,
    } = three_agents(&etcd, &cluster);
    wait_for_min(&etcd, &containers, &agents);
    let before = running_ids(&containers);
    let web_before = running_instances(&containers, "web");
    let running_web: BTreeSet<String> = containers
        .ids(Some("label=org.gru.service=web"))
        .iter()
        .map(|id| {
            docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"org.gru.node\"}}",
                id,
            ])
            .trim()
            .to_owned()
        })
        .collect();
    let keeper = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| !running_web.contains(*n))
        .expect("MinInstances 2 on three nodes leaves one node without web");
    let keeper_agent = agents.iter().find(|a| a.node == keeper).unwrap();
    let expected_nodes = node_keys(&cluster, &["n1", "n2", "n3"]);

    // The keeper sees the records missing only if one of its ticks falls before the others
    // republish (most of the time, not always): revoke again, at most ROUNDS times, until it
    // has withheld a repair. Every round must start nothing. The records are back within
    // 0.8-1.0 s and the keeper ticks every second, so a round misses now and then: a CI run
    // on a loaded machine (2026-12-07) missed 3 in a row; locally the first round hits.
    const ROUNDS: usize = 10;
    // From the first revocation on, not even for a moment may a web container start or die.
    let revoked_ns = testkit::epoch_ns();
    let mut rounds = Vec::new();
    let mut withheld = Vec::new();
    for round in 1..=ROUNDS {
        let leases: BTreeSet<u64> = running_web
            .iter()
            .map(|node| {
                let key = format!("/gru/{cluster}/nodes/{node}/config");
                let out = etcdctl_at(&etcd.endpoints(), &["get", &key, "-w", "json"]).unwrap();
                let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
                doc["kvs"][0]["lease"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(leases.len(), running_web.len(), "one lease per node");
        let revoked_at = Instant::now();
        let revoked_ms = epoch_ms();
        for lease in &leases {
            etcdctl_at(
                &etcd.endpoints(),
                &["lease", "revoke", &format!("{lease:x}")],
            )
            .unwrap();
        }
        let back = wait_until(Duration::from_secs(15), || {
            let nodes: BTreeSet<String> = etcd
                .keys(&format!("/gru/{cluster}/nodes/"))
                .into_iter()
                .collect();
            nodes == expected_nodes && discovery_matches(&etcd, &containers, "web")
        });
        // Past the keeper's grace for the nodes that came back (TTL + 2 loops), and a loop
        // more.
        std::thread::sleep(Duration::from_secs(u64::from(TTL_SECS) + 3 * LOOP_SECS));
        let web_after = running_instances(&containers, "web");
        // The repair the keeper withheld, as its action history records it (the same event
        // is its `withheld:` log line): a MinInstances repair of web, naming the nodes that
        // answered, that is, the nodes whose leases were revoked.
        let withheld_now: Vec<String> = keeper_agent
            .actions(100)
            .into_iter()
            .filter(|r| {
                r.action == "min-instances"
                    && r.service == "web"
                    && r.at_ms >= revoked_ms
                    && r.result.starts_with("withheld:")
                    && running_web.iter().all(|n| r.result.contains(n.as_str()))
            })
            .map(|r| r.result)
            .collect();
        println!(
            "etcd fault: round {round}: leases of {} node(s) running web ({running_web:?}) revoked, {keeper} kept its own: records and discovery back after {}; {keeper} withheld {} MinInstances repair(s) because the nodes answered; web before {}, after {} (same containers: {})",
            leases.len(),
            back.map_or("never".into(), secs),
            withheld_now.len(),
            web_before.len(),
            web_after.len(),
            web_after == web_before,
        );
        assert!(
            back.is_some(),
            "round {round}: node and discovery records did not come back:\n{}",
            logs(&agents)
        );
        assert_eq!(
            web_after,
            web_before,
            "round {round}: web's instances changed {:?} after the revocation; {keeper}'s actions: {:#?}\n{}",
            revoked_at.elapsed(),
            keeper_agent.actions(20),
            logs(&agents)
        );
        rounds.push(back);
        let done = !withheld_now.is_empty();
        withheld.extend(withheld_now);
        if done {
            break;
        }
    }
    let registered_again = log_lines(&agents, "registered again");
    testkit::figure(
        test,
        "leases revoked",
        format!(
            "etcd fault: leases revoked under running agents: {} round(s), {} repair(s) withheld by {keeper}, first: {:?}; nodes that registered again: {}; web kept the same {} containers",
            rounds.len(),
            withheld.len(),
            withheld.first(),
            registered_again.len(),
            web_before.len(),
        ),
    );
    let switch = gru_agent::daemon::NO_WITHHOLD_VAR;
    let switched_off = std::env::var_os(switch).is_some_and(|v| v == "1");
    assert!(
        !withheld.is_empty(),
        "{keeper} never withheld a MinInstances repair of web for {running_web:?} in {} revocation(s){}; its actions: {:#?}\n--- {keeper}, the keeper (last 60 lines)\n{}\n{}",
        rounds.len(),
        if switched_off {
            format!(" ({switch}=1: the agents do not ask)")
        } else {
            String::new()
        },
        keeper_agent.actions(20),
        // The keeper's own log first: the output CI keeps is cut short.
        support::tail(&keeper_agent.log_text(), 60),
        logs(&agents)
    );
    assert!(
        registered_again.len() >= running_web.len() * rounds.len(),
        "the nodes whose lease was revoked did not register again:\n{}",
        logs(&agents)
    );
    assert!(before.is_subset(&running_ids(&containers)));
    // Not even for a moment: no container of web started or died from the revocation on.
    let web = events.service_timeline("web");
    assert!(
        web.changes.iter().all(|c| c.at_ns <= revoked_ns),
        "web's containers changed after the revocation (times from it):\n{}\n{}",
        web.render(revoked_ns),
        logs(&agents)
    );
    assert_alive(&mut agents);
}

/// After a stopped leader resumed: how long node or discovery records may be missing.
const RECOVERY_BOUND: Duration = Duration::from_secs(3);

fn stop_one_member_of_three(test: &str, which: Stopped) {
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    const PAUSE: Duration = Duration::from_secs(15);
    let containers = ClusterContainers::unique(match which {
        Stopped::Follower => "etcd-follower",
        Stopped::Leader => "etcd-stale-leader",
    });
    let cluster = containers.cluster.clone();
    let etcd = EtcdCluster::start_members(3);
    let Cluster {
        config: _config,
        secret,
        logs_dir: _logs_dir,
        mut agents,
    } = three_agents(&etcd, &cluster);
    wait_for_min(&etcd, &containers, &agents);
    let before = running_ids(&containers);
    let web_before = running_instances(&containers, "web");
    let leases_before = node_leases(&etcd.serving_endpoints(), &cluster);
    assert_eq!(leases_before.len(), 12, "{leases_before:?}");

    let leader = etcd.leader().expect("a leader");
    let victim = match which {
        Stopped::Leader => leader,
        Stopped::Follower => (leader + 1) % 3,
    };
    let others = etcd.endpoints_except(victim);
    let probe = Probe::start(
        agents.iter().map(|a| a.port).collect(),
        others.clone(),
        &cluster,
    );
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = Instant::now();
    let paused_ms = epoch_ms();
    let paused = etcd.members[victim].pause();
    std::thread::sleep(Duration::from_secs(3));
    let asked = paused_at.elapsed();
    let scaled = overload_until(&agents, &secret, &containers, 3, PAUSE - asked);
    let claim = action_since(&agents, "scale-out", "web", paused_ms);
    let scaled_while_paused =
        scaled.is_some() && paused_at.elapsed() < PAUSE + Duration::from_millis(500);
    std::thread::sleep(PAUSE.saturating_sub(paused_at.elapsed()));
    let resumed_at = Instant::now();
    paused.resume();
    let expected_nodes = node_keys(&cluster, &["n1", "n2", "n3"]);
    let caught_up = wait_until(Duration::from_secs(15), || {
        let member = etcd.members[victim].client_url();
        let prefix = format!("/gru/{cluster}/");
        let theirs = etcdctl_at(&others, &["get", "--prefix", "--keys-only", &prefix]);
        let its = etcdctl_at(
            &member,
            &["get", "--prefix", "--keys-only", "--consistency=s", &prefix],
        );
        matches!((theirs, its), (Ok(a), Ok(b)) if a == b)
    });
    // A stale leader's revocations land a moment after the resume: look past them.
    std::thread::sleep(Duration::from_secs(2));
    let converged = wait_until(Duration::from_secs(15), || {
        let nodes: BTreeSet<String> = etcd
            .keys(&format!("/gru/{cluster}/nodes/"))
            .into_iter()
            .collect();
        nodes == expected_nodes && discovery_matches(&etcd, &containers, "web")
    });
    std::thread::sleep(Duration::from_secs(1));
    let (samples, reads) = probe.finish();

    let discovery_prefix = format!("/gru/{cluster}/discovery/web/");
    let complete = |keys: &BTreeSet<String>| {
        expected_nodes.is_subset(keys)
            && web_before
                .iter()
                .all(|i| keys.contains(&format!("{discovery_prefix}{i}")))
    };
    let vanished = reads
        .iter()
        .filter(|s| s.keys.as_ref().is_some_and(|k| !complete(k)))
        .count();
    let missing_for = longest_missing(
        reads
            .iter()
            .filter_map(|s| Some((s.at, complete(s.keys.as_ref()?)))),
    );
    let health_gaps = healthz_gaps(&samples, agents.len());
    let stalls: Vec<Duration> = (0..agents.len())
        .map(|i| longest_loop_stall(&samples, i))
        .collect();
    let ticks: Vec<u64> = (0..agents.len())
        .map(|i| ticks_during(&samples, i, paused_at, resumed_at))
        .collect();
    let leases_after = node_leases(&etcd.serving_endpoints(), &cluster);
    let registered_again = log_lines(&agents, "registered again");
    testkit::figure(
        test,
        "member stopped",
        format!(
            "etcd fault: {which:?} m{victim} of 3 stopped (SIGSTOP) {}: longest /healthz gap {}, ticks during the pause per agent {ticks:?} (loop {LOOP_SECS} s), longest loop stall {} (per agent {:?} ms); scale-out asked {} into the pause, instance running {} later, claimed by {:?}; after SIGCONT the member caught up in {}, records and discovery equal to the containers {} after the resume + 2 s; node or discovery records missing in {vanished} reads (for {} at most), leases kept: {}, nodes that registered again: {}",
            secs(resumed_at - paused_at),
            secs(*health_gaps.iter().max().unwrap()),
            secs(*stalls.iter().max().unwrap()),
            stalls.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
            secs(asked),
            scaled.map_or("never".into(), secs),
            claim
                .as_ref()
                .map(|(node, at)| format!("{node} at +{} ms", at - paused_ms)),
            caught_up.map_or("never".into(), secs),
            converged.map_or("never".into(), secs),
            secs(missing_for),
            leases_after == leases_before,
            registered_again.len(),
        ),
    );

    for (agent, gap) in agents.iter().zip(&health_gaps) {
        assert!(
            *gap <= HEALTH_GAP_MAX,
            "{}'s /healthz did not answer for {gap:?}",
            agent.node
        );
    }
    for (agent, n) in agents.iter().zip(&ticks) {
        assert!(
            *n >= 5,
            "{}'s loop ticked {n} times in {PAUSE:?}:\n{}",
            agent.node,
            agent.log_text()
        );
    }
    assert!(
        scaled_while_paused,
        "no scale-out while the member was stopped:\n{}",
        logs(&agents)
    );
    assert!(
        claim.is_some(),
        "the scale-out is not among the agents' actions"
    );
    assert!(caught_up.is_some(), "the resumed member did not catch up");
    assert!(
        converged.is_some(),
        "node and discovery records do not match the running containers:\n{}",
        logs(&agents)
    );
    match which {
        Stopped::Follower => {
            assert_eq!(
                vanished,
                0,
                "records left etcd while a follower was stopped:\n{}",
                logs(&agents)
            );
            assert_eq!(
                leases_after,
                leases_before,
                "a node's lease changed (it registered again):\n{}",
                registered_again.join("\n")
            );
        }
        Stopped::Leader => assert!(
            missing_for <= RECOVERY_BOUND,
            "records were missing for {missing_for:?} (bound {RECOVERY_BOUND:?}):\n{}",
            logs(&agents)
        ),
    }
    let after = running_ids(&containers);
    assert!(
        before.is_subset(&after),
        "containers lost: before {before:?}, after {after:?}"
    );
    assert_eq!(
        running_instances(&containers, "web").len(),
        3,
        "more than one step"
    );
    assert!(web_before.is_subset(&running_instances(&containers, "web")));
    assert_alive(&mut agents);
}
