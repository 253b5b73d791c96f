//! The Docker adapter against the real engine, with the `gru-workload:latest` image (built
//! by `scripts/build-images.sh` when missing).
//!
//! Each test works in a cluster of its own (`test-<pid>-<n>`) and holds a guard that removes
//! every container of that cluster when the test ends, also when it panics. Host ports come
//! from a range checked free when the test starts; published ports bind 127.0.0.1 only.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::config::{ServiceDescriptor, parse_service};
use gru_agent::docker::{
    self, ContainerState, DEFAULT_DOCKER_TIMEOUT, DockerError, Engine, EventKind, InstancePlan,
    StartedInstance, new_instance_id,
};
use testkit::{figure, http_get, wait_until};

const IMAGE: &str = "gru-workload:latest";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The label the guard also sweeps: containers a test starts around gru (foreign ones).
const TEST_LABEL: &str = "org.gru.test-cluster";
const NODE: &str = "node-a";
/// How long a started workload may take to answer `/healthz`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an expected event may take to arrive.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Harness

/// Checks the engine is there and the image is built (building it once per test binary).
fn ready(test: &str) -> bool {
    testkit::require_workload_image(test)
}

fn docker_cli(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// A cluster name of its own for one test; every container labelled with it (or with
/// [`TEST_LABEL`] = it) is removed on drop.
struct ClusterGuard {
    name: String,
}

impl ClusterGuard {
    fn new() -> ClusterGuard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let guard = ClusterGuard { name };
        guard.sweep(); // leftovers of a killed run that had the same pid
        guard
    }

    fn sweep(&self) {
        for label in [docker::LABEL_CLUSTER, TEST_LABEL] {
            let filter = format!("label={label}={}", self.name);
            let listed = docker_cli(&["ps", "-aq", "--filter", &filter]);
            let ids = text(&listed.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = docker_cli(&args);
            }
        }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.sweep();
    }
}

async fn engine() -> Engine {
    docker::connect("", DEFAULT_DOCKER_TIMEOUT)
        .await
        .expect("connect to the Docker engine")
}

fn web_service(name: &str, (low, high): (u16, u16), extra_config: &str) -> ServiceDescriptor {
    let text = format!(
        r#"{{
            "Name": "{name}",
            "Image": "{IMAGE}",
            "DiscoveryPort": "8080",
            // the workload's own settings
            "Configuration": {{
                "Memory": "64m",
                "StopTimeout": 2,
                "Env": {{ "SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "5" }},
                "Ports": {{ "8080": "{low}-{high}" }}
                {extra_config}
            }}
        }}"#
    );
    parse_service(&format!("services/{name}.json"), &text)
        .unwrap_or_else(|problems| panic!("test service does not parse: {problems:?}"))
}

fn no_env(_: &str) -> Option<String> {
    None
}

async fn start(
    engine: &Engine,
    cluster: &ClusterGuard,
    service: &ServiceDescriptor,
) -> Result<StartedInstance, DockerError> {
    let instance = new_instance_id();
    let plan = InstancePlan {
        service,
        cluster: &cluster.name,
        node: NODE,
        instance: &instance,
        bind_ip: LOCALHOST,
        registry_auth_file: None,
        replaces: &[],
    };
    engine.start_instance(&plan, &no_env).await
}

fn inspect(id: &str, format: &str) -> String {
    let out = docker_cli(&["inspect", "--format", format, id]);
    assert!(
        out.status.success(),
        "docker inspect {id}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn host_port(started: &StartedInstance) -> u16 {
    *started
        .host_ports
        .get("8080/tcp")
        .expect("8080/tcp is published")
}

fn wait_healthy(port: u16) -> Duration {
    wait_until(HEALTHY_TIMEOUT, || {
        http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
    })
    .unwrap_or_else(|| panic!("/healthz on 127.0.0.1:{port} did not answer in {HEALTHY_TIMEOUT:?}"))
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_instance_runs_labelled_in_its_port_range_with_its_memory_limit() {
    let test = "started_instance_runs_labelled_in_its_port_range_with_its_memory_limit";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let range = testkit::free_port_range(5);
    let service = web_service("web", range, "");

    let clock = Instant::now();
    let started = start(&engine, &cluster, &service)
        .await
        .expect("instance starts");
    let start_time = clock.elapsed();
    let port = host_port(&started);
    let healthy_after = wait_healthy(port);
    figure(test, "start_instance", format!("{start_time:?}"));
    figure(
        test,
        "/healthz answered after the start",
        format!("{healthy_after:?}"),
    );

    assert_eq!(started.attempts, 1);
    assert_eq!(port, range.0, "the lowest free port of {range:?}");
    assert_eq!(inspect(&started.id, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect(&started.id, "{{.HostConfig.Memory}}"),
        (64 << 20).to_string()
    );
    assert_eq!(
        inspect(
            &started.id,
            "{{(index (index .HostConfig.PortBindings \"8080/tcp\") 0).HostIp}}"
        ),
        "127.0.0.1"
    );
    let labels: serde_json::Value =
        serde_json::from_str(&inspect(&started.id, "{{json .Config.Labels}}"))
            .expect("labels json");
    assert_eq!(labels["org.gru.cluster"], cluster.name.as_str());
    assert_eq!(labels["org.gru.node"], NODE);
    assert_eq!(labels["org.gru.service"], "web");
    assert!(
        labels["org.gru.instance"]
            .as_str()
            .is_some_and(|i| i.len() == 32)
    );
    assert_eq!(
        inspect(&started.id, "{{.Name}}"),
        format!("/{}", started.name)
    );
    assert!(
        started
            .name
            .starts_with(&format!("gru-{}-{NODE}-web-", cluster.name))
    );

    // list_managed finds it by its labels, for the node and for the whole cluster.
    let listed = engine
        .list_managed(&cluster.name, Some(NODE))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let managed = &listed[0];
    assert_eq!(
        (managed.id.as_str(), managed.service.as_str()),
        (started.id.as_str(), "web")
    );
    assert_eq!(managed.state, ContainerState::Running);
    assert_eq!(managed.host_port(8080), Some(port));
    assert!(
        SystemTime::now()
            .duration_since(managed.created_at)
            .expect("created in the past")
            < Duration::from_secs(120)
    );
    assert_eq!(
        engine
            .list_managed(&cluster.name, None)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        engine
            .list_managed(&cluster.name, Some("other-node"))
            .await
            .expect("list")
            .is_empty()
    );

    // Stop, then remove; removing again is fine.
    engine
        .stop_instance(&started.id, Duration::from_secs(2))
        .await
        .expect("stop");
    assert_eq!(inspect(&started.id, "{{.State.Status}}"), "exited");
    let listed = engine
        .list_managed(&cluster.name, None)
        .await
        .expect("list");
    assert_eq!(listed[0].state, ContainerState::Exited);
    engine.remove_instance(&started.id).await.expect("remove");
    assert!(
        engine
            .list_managed(&cluster.name, None)
            .await
            .expect("list")
            .is_empty()
    );
    engine
        .remove_instance(&started.id)
        .await
        .expect("removing a removed container is ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_get_different_host_ports() {
    if !ready("two_instances_get_different_host_ports") {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let range = testkit::free_port_range(5);
    let service = web_service("web", range, "");

    let first = start(&engine, &cluster, &service)
        .await
        .expect("first starts");
    let second = start(&engine, &cluster, &service)
        .await
        .expect("second starts");
    assert_eq!(
        (host_port(&first), host_port(&second)),
        (range.0, range.0 + 1)
    );
    wait_healthy(host_port(&first));
    wait_healthy(host_port(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_held_by_a_foreign_container_is_skipped() {
    if !ready("port_held_by_a_foreign_container_is_skipped") {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let range = testkit::free_port_range(5);
    let label = format!("{TEST_LABEL}={}", cluster.name);
    let publish = format!("127.0.0.1:{}:8080", range.0);
    let foreign = docker_cli(&["run", "-d", "--label", &label, "-p", &publish, IMAGE]);
    assert!(
        foreign.status.success(),
        "docker run: {}",
        text(&foreign.stderr)
    );

    let started = start(&engine, &cluster, &web_service("web", range, ""))
        .await
        .expect("starts");
    assert_eq!(host_port(&started), range.0 + 1);
    assert_eq!(
        started.attempts, 1,
        "the foreign container's port is seen before starting"
    );
    wait_healthy(host_port(&started));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_held_outside_docker_is_retried_with_the_next_one() {
    if !ready("port_held_outside_docker_is_retried_with_the_next_one") {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let range = testkit::free_port_range(5);
    // A host process the engine knows nothing about holds the lowest port.
    let _holder = TcpListener::bind(("127.0.0.1", range.0)).expect("hold the lowest port");

    let started = start(&engine, &cluster, &web_service("web", range, ""))
        .await
        .expect("starts");
    assert_eq!(host_port(&started), range.0 + 1);
    assert_eq!(started.attempts, 2, "one failed start, then the next port");
    let listed = engine
        .list_managed(&cluster.name, None)
        .await
        .expect("list");
    assert_eq!(
        listed.len(),
        1,
        "the failed attempt's container is removed: {listed:?}"
    );
    wait_healthy(host_port(&started));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sharing_an_engine_start_at_once_on_distinct_ports() {
    let test = "agents_sharing_an_engine_start_at_once_on_distinct_ports";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    // Two connections: two agents, each with its own allocation lock.
    let (agent_a, agent_b) = (engine().await, engine().await);
    let range = testkit::free_port_range(6);
    let service = web_service("web", range, "");

    let (a, b, c) = tokio::join!(
        start(&agent_a, &cluster, &service),
        start(&agent_b, &cluster, &service),
        start(&agent_b, &cluster, &service),
    );
    let started = [
        a.expect("a starts"),
        b.expect("b starts"),
        c.expect("c starts"),
    ];
    let ports: BTreeSet<u16> = started.iter().map(host_port).collect();
    let attempts: Vec<u32> = started.iter().map(|s| s.attempts).collect();
    figure(
        test,
        "concurrent starts",
        format!("attempts {attempts:?}, ports {ports:?}"),
    );
    assert_eq!(ports.len(), 3, "distinct ports: {ports:?}");
    assert!(
        ports.iter().all(|p| (range.0..=range.1).contains(p)),
        "{ports:?} in {range:?}"
    );
    let listed = engine_list(&agent_a, &cluster).await;
    assert_eq!(listed, 3, "failed attempts leave no container");
    for instance in &started {
        wait_healthy(host_port(instance));
    }
}

async fn engine_list(engine: &Engine, cluster: &ClusterGuard) -> usize {
    engine
        .list_managed(&cluster.name, None)
        .await
        .expect("list")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_start_and_die_of_a_stopped_instance() {
    let test = "events_report_start_and_die_of_a_stopped_instance";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let other = ClusterGuard::new();
    let engine = engine().await;
    let mut events = engine.events(&cluster.name).await.expect("subscribe");

    // An instance of another cluster must not show up.
    let noise = start(
        &engine,
        &other,
        &web_service("noise", testkit::free_port_range(2), ""),
    )
    .await
    .expect("noise");
    let started = start(
        &engine,
        &cluster,
        &web_service("web", testkit::free_port_range(2), ""),
    )
    .await
    .expect("starts");

    let started_event = next_event(&mut events).await;
    let start_latency = SystemTime::now()
        .duration_since(started_event.at)
        .unwrap_or_default();
    assert_eq!(started_event.id, started.id);
    assert_eq!(started_event.kind, EventKind::Start);
    assert_eq!(
        (started_event.service.as_str(), started_event.node.as_str()),
        ("web", NODE)
    );

    wait_healthy(host_port(&started));
    // Stop in the background: the die event arrives while the stop call is still finishing.
    let stopping = {
        let (engine, id) = (engine.clone(), started.id.clone());
        tokio::spawn(async move { engine.stop_instance(&id, Duration::from_secs(5)).await })
    };
    let died = next_event(&mut events).await;
    let die_latency = SystemTime::now()
        .duration_since(died.at)
        .unwrap_or_default();
    stopping.await.expect("stop task").expect("stop");
    assert_eq!(died.id, started.id);
    assert_eq!(
        died.kind,
        EventKind::Die { exit_code: Some(0) },
        "SIGTERM drains and exits 0"
    );

    engine.remove_instance(&started.id).await.expect("remove");
    let destroyed = next_event(&mut events).await;
    assert_eq!(
        (destroyed.id.as_str(), destroyed.kind),
        (started.id.as_str(), EventKind::Destroy)
    );
    figure(
        test,
        "event latency, engine timestamp to receipt",
        format!("start {start_latency:?}, die {die_latency:?}"),
    );

    engine
        .remove_instance(&noise.id)
        .await
        .expect("remove noise");
    let quiet = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(quiet.is_err(), "no event of another cluster: {quiet:?}");
}

async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<docker::ContainerEvent>,
) -> docker::ContainerEvent {
    tokio::time::timeout(EVENT_TIMEOUT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT:?}"))
        .expect("the events stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_give_cpu_and_memory_fractions_in_range() {
    let test = "stats_give_cpu_and_memory_fractions_in_range";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let started = start(
        &engine,
        &cluster,
        &web_service("web", testkit::free_port_range(2), ""),
    )
    .await
    .expect("starts");
    let port = host_port(&started);
    wait_healthy(port);
    // Some work, so the CPU counter moves.
    std::thread::spawn(move || {
        for _ in 0..20 {
            let _ = http_get(port, "/");
        }
    });

    let mut samples = engine.stats(&started.id).await.expect("stats");
    let mut seen = 0;
    let (cpu, mem) = loop {
        let sample = tokio::time::timeout(Duration::from_secs(15), samples.recv())
            .await
            .expect("a sample within 15 s")
            .expect("the stream is open")
            .expect("a sample, not an error");
        seen += 1;
        if let (Some(cpu), Some(mem)) = (sample.cpu_fraction(), sample.mem_fraction()) {
            break (cpu, mem);
        }
        assert!(seen < 10, "no sample with both fractions after {seen}");
    };
    figure(
        test,
        "fractions",
        format!("cpu {cpu:.4}, memory {mem:.4} of 64 MiB"),
    );
    assert!((0.0..=1.0).contains(&cpu), "cpu {cpu}");
    assert!(mem > 0.0 && mem <= 1.0, "mem {mem}");

    // The stream ends once the container stops.
    engine
        .stop_instance(&started.id, Duration::from_secs(2))
        .await
        .expect("stop");
    let clock = Instant::now();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(15), samples.recv()).await;
        match item {
            Ok(None) => break,
            Ok(Some(other)) => eprintln!("after stop: {other:?}"),
            Err(_) => panic!("the stats stream did not end after the container stopped"),
        }
    }
    figure(
        test,
        "stats stream ended after the stop returned",
        format!("{:?}", clock.elapsed()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_with_pull_policy_never_fails_fast_without_a_pull() {
    let test = "missing_image_with_pull_policy_never_fails_fast_without_a_pull";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let mut service = web_service("web", testkit::free_port_range(2), "");
    let image = format!("gru-absent-{}:latest", std::process::id());
    service.image = image.clone();
    service.pull.policy = common::config::PullPolicy::Never;

    let clock = Instant::now();
    let error = start(&engine, &cluster, &service)
        .await
        .expect_err("no such image");
    let took = clock.elapsed();
    figure(
        test,
        "missing image reported",
        format!("{took:?} (timeout {DEFAULT_DOCKER_TIMEOUT:?})"),
    );
    assert!(
        matches!(&error, DockerError::ImageMissing { image: missing } if *missing == image),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "image {image} is not present on this engine and Pull.Policy is \"Never\"; build or \
             load it, or let gru pull it (Pull.Policy \"IfNotPresent\")"
        )
    );
    assert!(took < DEFAULT_DOCKER_TIMEOUT / 5, "took {took:?}");
    assert!(!engine.image_present(&image).await.expect("inspect"));
    assert!(engine.image_present(IMAGE).await.expect("inspect"));
    assert!(
        engine
            .list_managed(&cluster.name, None)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_or_removing_a_gone_container_is_ok() {
    if !ready("stopping_or_removing_a_gone_container_is_ok") {
        return;
    }
    let engine = engine().await;
    let gone = format!("gru-never-existed-{}", std::process::id());
    engine
        .remove_instance(&gone)
        .await
        .expect("remove of a gone container");
    engine
        .stop_instance(&gone, Duration::from_secs(1))
        .await
        .expect("stop of a gone container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_instances_take_free_cores_and_fail_when_none_is_left() {
    if !ready("pinned_instances_take_free_cores_and_fail_when_none_is_left") {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let cpus = engine.resources().await.expect("resources").cpus;
    let service = web_service(
        "pinned",
        testkit::free_port_range(u16::try_from(cpus).unwrap_or(8) + 2),
        r#", "cpunumber": 1"#,
    );

    let mut cores = BTreeSet::new();
    for _ in 0..cpus {
        let started = start(&engine, &cluster, &service)
            .await
            .expect("a core is free");
        let cpuset = started.cpuset.clone().expect("pinned");
        assert_eq!(inspect(&started.id, "{{.HostConfig.CpusetCpus}}"), cpuset);
        cores.insert(cpuset);
    }
    assert_eq!(
        cores.len(),
        usize::try_from(cpus).unwrap_or(0),
        "each on its own core: {cores:?}"
    );
    let error = start(&engine, &cluster, &service)
        .await
        .expect_err("every core is taken");
    assert!(
        matches!(error, DockerError::NoFreeCores { .. }),
        "{error:?}"
    );
    eprintln!(
        "refused as expected: {error}: {}",
        std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert_eq!(
        engine_list(&engine, &cluster).await,
        usize::try_from(cpus).unwrap_or(0),
        "nothing started"
    );
}

/// The agent reads stats one container at a time (`stats_once`): memory comes with the
/// first reading, CPU from two readings of the same container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_once_gives_memory_at_once_and_cpu_from_two_readings() {
    let test = "stats_once_gives_memory_at_once_and_cpu_from_two_readings";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let started = start(
        &engine,
        &cluster,
        &web_service("web", testkit::free_port_range(2), ""),
    )
    .await
    .expect("starts");
    let (id, allowance) = engine.cpu_allowance(&started.id).await.expect("inspect");
    assert_eq!(id, started.id);
    let clock = Instant::now();
    let first = engine
        .stats_once(&id, allowance)
        .await
        .expect("a reading")
        .expect("the container runs");
    let took = clock.elapsed();
    assert_eq!(first.cpu.previous, None, "one reading has no previous one");
    assert_eq!(first.cpu_fraction(), None);
    let mem = first.mem_fraction().expect("a memory fraction");
    assert!(mem > 0.0 && mem <= 1.0, "mem {mem}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = engine
        .stats_once(&id, allowance)
        .await
        .expect("a reading")
        .expect("the container runs");
    assert!(
        second.cpu.system_ns > first.cpu.system_ns,
        "the counters move"
    );
    second.cpu.previous = Some((first.cpu.container_ns, first.cpu.system_ns));
    let cpu = second
        .cpu_fraction()
        .expect("a CPU fraction from two readings");
    assert!((0.0..=1.0).contains(&cpu), "cpu {cpu}");
    figure(
        test,
        "one reading",
        format!("{took:?}; cpu {cpu:.4}, memory {mem:.4} of 64 MiB"),
    );

    engine
        .stop_instance(&started.id, Duration::from_secs(2))
        .await
        .expect("stop");
    let stopped = engine.stats_once(&id, allowance).await;
    assert!(
        matches!(stopped, Ok(None)),
        "a stopped container has no reading: {stopped:?}"
    );
}

/// The agent's stats poller (`runtime::monitor::poll_stats`) records `cpu_avg` and
/// `mem_avg` of every running instance, and wakes the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_poller_feeds_cpu_and_memory_of_every_running_container() {
    use gru_agent::mape::WindowSettings;
    use gru_agent::runtime::autonomic::now;
    use gru_agent::runtime::monitor::{CPU_METRIC, MEM_METRIC, poll_stats};
    use gru_agent::runtime::{InstanceInfo, Shared};

    let test = "the_stats_poller_feeds_cpu_and_memory_of_every_running_container";
    if !ready(test) {
        return;
    }
    let cluster = ClusterGuard::new();
    let engine = engine().await;
    let window = WindowSettings {
        span: Duration::from_secs(10),
        max_samples: 64,
        warmup: Duration::ZERO,
        warmup_samples: 1,
        max_metrics_per_instance: 8,
    };
    let shared = std::sync::Arc::new(Shared::new(&cluster.name, NODE, "127.0.0.1", "s", window));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let started = start(
            &engine,
            &cluster,
            &web_service("web", testkit::free_port_range(2), ""),
        )
        .await
        .expect("starts");
        instances.push(started);
    }
    {
        let mut knowledge = shared.knowledge();
        for started in &instances {
            knowledge
                .metrics
                .instance_started("web", &started.name, now());
            knowledge.instances.insert(
                started.id.clone(),
                InstanceInfo {
                    id: started.id.clone(),
                    service: "web".to_owned(),
                    instance: started.name.clone(),
                    state: "running".to_owned(),
                    address: None,
                    started_at: now(),
                    version: None,
                    image: String::new(),
                    ready: true,
                    health: None,
                    replaces: Vec::new(),
                },
            );
        }
    }
    let clock = Instant::now();
    let poller = poll_stats(engine.clone(), shared.clone());
    tokio::time::timeout(Duration::from_secs(15), shared.fresh_metrics.notified())
        .await
        .expect("the poller wakes the loop within 15 s");
    let fed = |shared: &Shared| {
        let mut knowledge = shared.knowledge();
        instances
            .iter()
            .map(|started| {
                let means = knowledge
                    .metrics
                    .instance_means("web", &started.name, now());
                (
                    means.get(CPU_METRIC).copied(),
                    means.get(MEM_METRIC).copied(),
                )
            })
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let values = loop {
        let values = fed(&shared);
        if values
            .iter()
            .all(|(cpu, mem)| cpu.is_some() && mem.is_some())
        {
            break values;
        }
        assert!(
            Instant::now() < deadline,
            "after 15 s not every instance has cpu_avg and mem_avg: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    poller.abort();
    figure(
        test,
        "cpu and memory of 3 containers",
        format!("after {:?}: {values:?}", clock.elapsed()),
    );
    for (cpu, mem) in values {
        let (cpu, mem) = (cpu.unwrap_or(-1.0), mem.unwrap_or(-1.0));
        assert!((0.0..=1.0).contains(&cpu), "cpu {cpu}");
        assert!(mem > 0.0 && mem <= 1.0, "mem {mem}");
    }
}
