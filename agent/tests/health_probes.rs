//! Health checks against the real engine, with the `gru-workload:latest` image: a command
//! run in a container through the exec API (`Engine::exec`), and the agent's probes
//! (`runtime::health::HealthProbes`) passing and failing TCP, HTTP and exec checks, their
//! state written into the knowledge (`InstanceInfo::ready`, `health`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::config::{HealthCheck, HealthChecks, ServiceDescriptor, parse_service};
use gru_agent::docker::{self, DEFAULT_DOCKER_TIMEOUT, Engine, InstancePlan, StartedInstance};
use gru_agent::health::{CheckRole, CheckStatus};
use gru_agent::mape::WindowSettings;
use gru_agent::runtime::autonomic::now;
use gru_agent::runtime::health::{HealthProbes, ProbeTarget};
use gru_agent::runtime::{InstanceInfo, Shared};
use testkit::{ClusterContainers, figure, wait_until};
use tokio::sync::Notify;

const NODE: &str = "node-a";

async fn engine() -> Engine {
    docker::connect("", DEFAULT_DOCKER_TIMEOUT)
        .await
        .expect("connect to the Docker engine")
}

fn web_service(range: (u16, u16)) -> ServiceDescriptor {
    let text = format!(
        r#"{{"Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
            "Configuration": {{"Memory": "64m", "StopTimeout": 1,
                "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5"}},
                "Ports": {{"8080": "{}-{}"}}}}}}"#,
        range.0,
        range.1,
        image = testkit::WORKLOAD_IMAGE
    );
    parse_service("services/web.json", &text).expect("test service parses")
}

async fn start(engine: &Engine, cluster: &ClusterContainers) -> StartedInstance {
    let service = web_service(testkit::free_port_range(4));
    let instance = docker::new_instance_id();
    let plan = InstancePlan {
        service: &service,
        cluster: &cluster.cluster,
        node: NODE,
        instance: &instance,
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        registry_auth_file: None,
        replaces: &[],
    };
    engine
        .start_instance(&plan, &|_| None)
        .await
        .expect("the workload starts")
}

fn address(started: &StartedInstance) -> String {
    let port = started.host_ports.get("8080/tcp").expect("8080 published");
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_command_in_the_container_and_reports_its_exit_status() {
    let test = "exec_runs_a_command_in_the_container_and_reports_its_exit_status";
    if !testkit::require_workload_image(test) {
        return;
    }
    let cluster = ClusterContainers::unique("exec");
    let engine = engine().await;
    let started = start(&engine, &cluster).await;
    let limit = Duration::from_secs(5);

    let clock = std::time::Instant::now();
    let ok = engine
        .exec(
            &started.id,
            &["/gru-workload".into(), "--version".into()],
            limit,
        )
        .await
        .expect("exec runs");
    figure(
        test,
        "exec of `gru-workload --version`",
        format!("{} ms", clock.elapsed().as_millis()),
    );
    assert_eq!(ok.exit_code, Some(0), "{ok:?}");
    assert!(ok.output_tail.contains("gru-workload"), "{ok:?}");

    let bad = engine
        .exec(
            &started.id,
            &["/gru-workload".into(), "--no-such-flag".into()],
            limit,
        )
        .await
        .expect("exec runs");
    assert!(
        bad.exit_code.is_some_and(|code| code != 0),
        "a usage error must exit non-zero: {bad:?}"
    );
    assert!(bad.output_tail.contains("--no-such-flag"), "{bad:?}");

    let missing = engine
        .exec(&started.id, &["/no/such/program".into()], limit)
        .await;
    assert!(
        missing.as_ref().is_err() || missing.as_ref().is_ok_and(|o| o.exit_code != Some(0)),
        "a missing program cannot pass: {missing:?}"
    );

    engine.remove_instance(&started.id).await.expect("removed");
    let gone = engine
        .exec(
            &started.id,
            &["/gru-workload".into(), "--version".into()],
            limit,
        )
        .await;
    let error = gone.expect_err("no exec in a removed container");
    assert!(error.to_string().contains("exec"), "{error}");
}

fn check(kind: &str) -> HealthCheck {
    let mut check = HealthCheck {
        interval_secs: 0.2,
        timeout_secs: Some(0.2),
        failure_threshold: 1,
        ..HealthCheck::default()
    };
    match kind {
        "tcp" => check.tcp = true,
        "http-ready" => check.http = Some("/ready".into()),
        // An exec goes through the engine (create, start, inspect): on a loaded machine it
        // takes longer than 200 ms, and a timeout would stand for the exit status the test
        // reads.
        "exec-ok" => {
            check.exec = Some(vec!["/gru-workload".into(), "--version".into()]);
            check.timeout_secs = Some(3.0);
        }
        "exec-fail" => {
            check.exec = Some(vec!["/gru-workload".into(), "--no-such-flag".into()]);
            check.timeout_secs = Some(3.0);
        }
        other => panic!("no check {other}"),
    }
    check
}

/// The same address for both checks.
fn both(address: &str) -> BTreeMap<CheckRole, String> {
    [CheckRole::Readiness, CheckRole::Liveness]
        .into_iter()
        .map(|role| (role, address.to_owned()))
        .collect()
}

fn info(started: &StartedInstance) -> InstanceInfo {
    InstanceInfo {
        id: started.id.clone(),
        service: "web".into(),
        instance: started.name.clone(),
        state: "running".into(),
        address: Some(address(started)),
        started_at: now(),
        version: None,
        image: String::new(),
        ready: false,
        health: None,
        replaces: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_pass_and_fail_tcp_http_and_exec_checks_on_real_containers() {
    let test = "probes_pass_and_fail_tcp_http_and_exec_checks_on_real_containers";
    if !testkit::require_workload_image(test) {
        return;
    }
    let cluster = ClusterContainers::unique("probes");
    let engine = engine().await;
    let healthy = start(&engine, &cluster).await;
    let failing = start(&engine, &cluster).await;
    let window = WindowSettings::for_loop_interval(Duration::from_secs(1));
    let shared = Arc::new(Shared::new(
        &cluster.cluster,
        NODE,
        "127.0.0.1",
        "s",
        window,
    ));
    {
        let mut knowledge = shared.knowledge();
        for started in [&healthy, &failing] {
            knowledge
                .instances
                .insert(started.id.clone(), info(started));
        }
    }
    // A port nothing listens on: the failing instance's TCP check goes there.
    let closed = format!("127.0.0.1:{}", testkit::free_port());
    let targets = vec![
        ProbeTarget {
            container_id: healthy.id.clone(),
            service: "web".into(),
            instance: healthy.name.clone(),
            addresses: both(&address(&healthy)),
            started_at: now(),
            checks: HealthChecks {
                readiness: Some(check("tcp")),
                liveness: Some(check("exec-ok")),
            },
        },
        ProbeTarget {
            container_id: failing.id.clone(),
            service: "web".into(),
            instance: failing.name.clone(),
            addresses: both(&closed),
            started_at: now(),
            checks: HealthChecks {
                readiness: Some(check("tcp")),
                liveness: Some(check("exec-fail")),
            },
        },
    ];
    let changed = Arc::new(Notify::new());
    let mut probes = HealthProbes::new(changed.clone());
    probes.follow(targets, &engine, &shared);

    let status = |id: &str| {
        let knowledge = shared.knowledge();
        let health = knowledge.health.get(id).cloned().unwrap_or_default();
        (
            health.readiness.map(|c| c.status),
            health.liveness.map(|c| c.status),
        )
    };
    let settled = wait_until(Duration::from_secs(20), || {
        status(&healthy.id) == (Some(CheckStatus::Passing), Some(CheckStatus::Passing))
            && status(&failing.id) == (Some(CheckStatus::Failing), Some(CheckStatus::Failing))
    });
    assert!(
        settled.is_some(),
        "healthy {:?}, failing {:?}: {:#?}",
        status(&healthy.id),
        status(&failing.id),
        shared.knowledge().health
    );
    figure(
        test,
        "checks settled",
        format!(
            "{} ms for TCP and exec checks at 200 ms intervals on two containers",
            settled.unwrap().as_millis()
        ),
    );
    {
        let knowledge = shared.knowledge();
        assert!(knowledge.instances[&healthy.id].ready);
        assert!(!knowledge.instances[&failing.id].ready);
        let failing_health = knowledge.instances[&failing.id].health.clone().unwrap();
        assert!(failing_health.dead());
        let tcp_error = failing_health.readiness.unwrap().last_error.unwrap();
        assert!(tcp_error.contains(&closed), "{tcp_error}");
        let exec_error = failing_health.liveness.unwrap().last_error.unwrap();
        assert!(exec_error.starts_with("exit status "), "{exec_error}");
    }
    // The probes woke their listener when states changed.
    tokio::time::timeout(Duration::from_secs(1), changed.notified())
        .await
        .expect("a change of state wakes the loop");

    // An HTTP check follows the workload's readiness switch; a gone instance's health
    // leaves the knowledge with its probes.
    let mut http = HealthChecks {
        readiness: Some(check("http-ready")),
        liveness: None,
    };
    if let Some(readiness) = http.readiness.as_mut() {
        readiness.success_threshold = 2;
    }
    let target = ProbeTarget {
        container_id: healthy.id.clone(),
        service: "web".into(),
        instance: healthy.name.clone(),
        addresses: both(&address(&healthy)),
        started_at: now(),
        checks: http,
    };
    probes.follow(vec![target], &engine, &shared);
    assert!(
        !shared.knowledge().health.contains_key(&failing.id),
        "the health of an instance no longer probed is forgotten"
    );
    let passing = wait_until(Duration::from_secs(20), || {
        status(&healthy.id) == (Some(CheckStatus::Passing), None)
    });
    assert!(passing.is_some(), "{:?}", status(&healthy.id));
    let addr: std::net::SocketAddr = address(&healthy).parse().unwrap();
    let off = testkit::http_request_to(
        addr,
        Duration::from_secs(2),
        "POST",
        "/ready?value=false",
        None,
        None,
    );
    assert_eq!(off.map(|(s, _)| s), Some(503));
    let failed = wait_until(Duration::from_secs(10), || {
        status(&healthy.id).0 == Some(CheckStatus::Failing)
    });
    assert!(failed.is_some(), "{:?}", status(&healthy.id));
    let error = shared.knowledge().health[&healthy.id]
        .readiness
        .clone()
        .and_then(|c| c.last_error)
        .unwrap_or_default();
    assert_eq!(error, "GET /ready: HTTP 503");
    probes.stop_all();
}
