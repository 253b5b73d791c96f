//! Issue 13, pulls: an agent whose node lacks a service's image pulls it from a real
//! registry (`testkit::Registry`, basic auth) with the descriptor's credentials and starts
//! the service; with a wrong password the pull fails clearly, the service is backed off
//! (the failed attempts' spacing grows), and neither password appears in the agent's log,
//! its HTTP views, or the `gru` CLI's output.
//!
//! `gru-workload:latest` is pushed under a tag unique to the test, and that registry-named
//! tag removed from the engine, so the agent's node does not have it; the registry's drop
//! removes the tag again after the agent pulled it.

mod support;

use std::time::Duration;

use support::agents::{ActionRecord, Agent};
use support::cluster::Cluster;
use support::configs::{CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY, TestConfig};
use support::docker::inspect_existing;
use support::{expect_code, run, text};
use testkit::{Component, Registry, figure, require, require_workload_image, wait_until};

const USER: &str = "gru-puller";
const RIGHT_PASSWORD: &str = "right-c0ffee-5150";
const WRONG_PASSWORD: &str = "wrong-dead-beef-77";

fn ready(test: &str) -> bool {
    require(test, Component::Etcd)
        && require(test, Component::Registry)
        && require_workload_image(test)
}

/// A workload service on `image`, kept at one instance (a repair claims each start), with
/// `Pull.Auth` of `password`.
fn pulled_service(image: &str, password: &str, range: (u16, u16)) -> String {
    service_with_pull(
        image,
        &format!(
            r#"{{"Policy": "IfNotPresent", "Timeout": 60,
                 "Auth": {{"Username": "{USER}", "Password": "{password}"}}}}"#
        ),
        range,
    )
}

/// A workload service on `image` kept at one instance, with `pull` as its `Pull`.
fn service_with_pull(image: &str, pull: &str, (low, high): (u16, u16)) -> String {
    format!(
        r#"{{
            "Name": "web", "Image": "{image}", "DiscoveryPort": "8080",
            "MinInstances": 1,
            "Pull": {pull},
            "Configuration": {{
                "Memory": "64m", "StopTimeout": 2,
                "Env": {{"SERVICE_NAME": "web", "SERVICE_TIME_MS": "5"}},
                "Ports": {{"8080": "{low}-{high}"}}
            }}
        }}"#
    )
}

/// Everything an operator can read of the cluster, joined: the agent's log, its HTTP
/// views, `gru config get` and `gru manage show service` (text and JSON).
fn everything_shown(cluster: &Cluster, agent: &Agent) -> String {
    let mut shown = agent.log_text();
    for path in [
        "/gru/v1/node",
        "/gru/v1/services",
        "/gru/v1/actions",
        "/gru/v1/decisions",
        "/gru/v1/policies",
        "/gru/v1/history",
        "/gru/v1/cluster",
    ] {
        if let Some(view) = agent.get_json(path) {
            shown.push_str(&view.to_string());
        }
    }
    let e = cluster.endpoints();
    let config = expect_code(&e, &["config", "get", &cluster.name], 0);
    shown.push_str(&text(&config));
    let script = format!(
        "use {}; show service web; list services; show node n1",
        cluster.name
    );
    for format in ["text", "json"] {
        let out = run(&e, &["manage", "--output", format, "-c", &script]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        shown.push_str(&text(&out));
    }
    shown
}

fn assert_no_password(shown: &str) {
    for password in [RIGHT_PASSWORD, WRONG_PASSWORD] {
        assert!(
            !shown.contains(password),
            "the password {password} was shown:\n{}",
            shown
                .lines()
                .filter(|l| l.contains(password))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_node_without_the_image_pulls_it_with_credentials_and_starts_the_service() {
    let test = "a_node_without_the_image_pulls_it_with_credentials_and_starts_the_service";
    if !ready(test) {
        return;
    }
    let registry = Registry::start(USER, RIGHT_PASSWORD);
    let tag = format!("pull-ok-{}", std::process::id());
    let image = registry.push(testkit::WORKLOAD_IMAGE, "gru-workload", &tag);
    registry.forget_image(&image);
    assert!(
        !Registry::engine_has(&image),
        "{image} is still on the engine"
    );

    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.file(
        "services/web.json",
        &pulled_service(&image, RIGHT_PASSWORD, testkit::free_port_range(4)),
    );
    let cluster = Cluster::start("pull-ok", config);
    let agent = cluster.spawn("n1");

    let took = wait_until(Duration::from_secs(90), || {
        cluster.registered("web").len() == 1
    });
    assert!(
        took.is_some(),
        "no instance of web came up: actions {:?}\n{}",
        agent.actions(20),
        support::tail(&agent.log_text(), 40)
    );
    figure(
        test,
        "from join to the pulled instance in discovery",
        format!("{:?}", took.unwrap_or_default()),
    );
    assert!(Registry::engine_has(&image), "the engine lacks {image}");
    let (_, address) = &cluster.registered("web")[0];
    let port: u16 = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{address} names no port"));
    assert!(
        wait_until(Duration::from_secs(15), || testkit::http_get(
            port, "/healthz"
        )
        .is_some_and(|(s, _)| s == 200))
        .is_some(),
        "the pulled workload does not answer at {address}"
    );
    let started: Vec<ActionRecord> = agent
        .actions(50)
        .into_iter()
        .filter(|a| a.service == "web")
        .collect();
    assert!(
        started.iter().any(|a| a.result == "ok"),
        "no start recorded: {started:?}"
    );
    let log = agent.log_text();
    assert!(log.contains("pulling image"), "{}", support::tail(&log, 40));
    assert!(log.contains("pulled image"), "{}", support::tail(&log, 40));
    // The registry saw the pull with the user, and nobody else's.
    assert!(registry.log().contains(USER), "{}", registry.log());
    assert_no_password(&everything_shown(&cluster, &agent));
    assert!(
        cluster.containers.ids(None).len() == 1,
        "one container: {:?}",
        cluster.containers.ids(None)
    );
}

#[test]
fn a_wrong_password_fails_clearly_is_backed_off_and_never_shown() {
    let test = "a_wrong_password_fails_clearly_is_backed_off_and_never_shown";
    if !ready(test) {
        return;
    }
    let registry = Registry::start(USER, RIGHT_PASSWORD);
    let tag = format!("pull-wrong-{}", std::process::id());
    let image = registry.push(testkit::WORKLOAD_IMAGE, "gru-workload", &tag);
    registry.forget_image(&image);

    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.file(
        "services/web.json",
        &pulled_service(&image, WRONG_PASSWORD, testkit::free_port_range(4)),
    );
    let cluster = Cluster::start("pull-wrong", config);
    let agent = cluster.spawn("n1");

    // Backoff 5 s, then 10 s: the third attempt comes some 15 s after the first.
    let failures = || -> Vec<ActionRecord> {
        let mut failed: Vec<ActionRecord> = agent
            .actions(200)
            .into_iter()
            .filter(|a| a.service == "web" && a.result.starts_with("failed:"))
            .collect();
        failed.sort();
        failed
    };
    let seen = wait_until(Duration::from_secs(60), || failures().len() >= 3);
    let failed = failures();
    assert!(
        seen.is_some(),
        "fewer than 3 failed starts: {failed:?}\n{}",
        support::tail(&agent.log_text(), 40)
    );
    for record in &failed {
        assert!(
            record.result.starts_with(&format!(
                "failed: pull of image {image} failed: unauthorized"
            )),
            "{record:?}"
        );
    }
    // Backed off: each wait between attempts longer than the one before.
    let gaps: Vec<u64> = failed.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
    figure(test, "gaps between failed pulls (ms)", format!("{gaps:?}"));
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "attempts are not spaced out more and more: {gaps:?} ({failed:?})"
    );
    // While it backs off the node claims no start of web (its room for web is 0), so no
    // claimed start is skipped for the backoff: a node that can pull would take the claim.
    let skipped: Vec<ActionRecord> = agent
        .actions(200)
        .into_iter()
        .filter(|a| a.service == "web" && a.result.starts_with("skipped"))
        .collect();
    assert!(
        skipped.is_empty(),
        "claims made while backing off: {skipped:?}"
    );
    // Nothing started, and the node says why.
    assert!(cluster.registered("web").is_empty());
    assert!(!Registry::engine_has(&image));
    let node = agent.get_json("/gru/v1/node").expect("node view");
    let status = &node["start_failures"]["web"];
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("unauthorized")),
        "{node}"
    );
    assert!(status["failures"].as_u64().unwrap_or(0) >= 3, "{node}");
    assert!(
        status["backing_off_until"].as_u64() > status["failed_at"].as_u64(),
        "{node}"
    );
    // `gru manage show node` says it too.
    let script = format!("use {}; show node n1 status", cluster.name);
    let shown = run(&cluster.endpoints(), &["manage", "-c", &script]);
    let shown = text(&shown);
    assert!(
        shown.contains("web: ")
            && shown.contains("failed start(s) in a row, the last: pull of image"),
        "{shown}"
    );
    assert_no_password(&everything_shown(&cluster, &agent));
}

#[test]
fn a_node_that_cannot_pull_leaves_the_start_to_one_that_can() {
    let test = "a_node_that_cannot_pull_leaves_the_start_to_one_that_can";
    if !ready(test) {
        return;
    }
    let registry = Registry::start(USER, RIGHT_PASSWORD);
    let tag = format!("pull-placed-{}", std::process::id());
    let image = registry.push(testkit::WORKLOAD_IMAGE, "gru-workload", &tag);
    registry.forget_image(&image);
    // No Pull.Auth: a node pulls with its own `--registry-auth-file`, or anonymously.
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    config.file(
        "services/web.json",
        &service_with_pull(&image, r#"{"Timeout": 60}"#, testkit::free_port_range(4)),
    );
    let cluster = Cluster::start("pull-placed", config);

    // n1 has no credentials: its repair's pull is refused, and it backs off.
    let n1 = cluster.spawn("n1");
    let failed_on_n1 = || {
        n1.actions(100)
            .into_iter()
            .filter(|a| a.service == "web" && a.result.starts_with("failed:"))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !failed_on_n1().is_empty()).is_some(),
        "n1 did not try: {:?}\n{}",
        n1.actions(20),
        support::tail(&n1.log_text(), 30)
    );
    // n2 can pull (its node's Docker config.json, as `docker login` wrote it).
    let n2 = cluster
        .agent("n2")
        .env(
            "GRU_REGISTRY_AUTH_FILE",
            registry.login_config().display().to_string(),
        )
        .spawn();
    let placed = wait_until(Duration::from_secs(60), || {
        cluster.registered("web").len() == 1
    });
    assert!(
        placed.is_some(),
        "web did not come up: n1 {:?}, n2 {:?}\n{}",
        n1.actions(20),
        n2.actions(20),
        support::tail(&format!("{}\n--- n2\n{}", n1.log_text(), n2.log_text()), 60)
    );
    let ids = cluster.containers.ids(None);
    let nodes = inspect_existing("{{index .Config.Labels \"org.gru.node\"}}", &ids);
    assert_eq!(nodes, ["n2"], "the start went to the node that can pull");
    for failed in failed_on_n1() {
        assert!(failed.result.contains("unauthorized"), "{failed:?}");
    }
    // n1 neither started web nor claimed a start it then skipped for its backoff (its
    // record of each pull it began aside).
    let n1_web: Vec<ActionRecord> = n1
        .actions(100)
        .into_iter()
        .filter(|a| {
            a.service == "web" && !(a.action == "pull" && a.result.starts_with("pulling image"))
        })
        .collect();
    assert!(
        n1_web.iter().all(|a| a.result.starts_with("failed:")),
        "n1 started web or claimed a start while backing off: {n1_web:?}"
    );
    // n2 says where its credentials came from (the file), never what they are.
    let log = support::strip_ansi(&n2.log_text());
    let auth_file = registry.login_config().display().to_string();
    assert!(
        log.contains(&auth_file) && log.contains("pulled image"),
        "{}",
        support::tail(&log, 30)
    );
    assert!(!log.contains(RIGHT_PASSWORD) && !n1.log_text().contains(RIGHT_PASSWORD));
}

#[test]
fn join_refuses_a_registry_auth_file_that_does_not_exist() {
    // Checked before anything else: no etcd is needed to be told.
    let out = run(
        "http://127.0.0.1:1",
        &[
            "join",
            "c",
            "--name",
            "n1",
            "--registry-auth-file",
            "/nonexistent/config.json",
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--registry-auth-file /nonexistent/config.json: no such file"),
        "{}",
        text(&out)
    );
}

/// A pull that hangs (a "registry" that accepts connections and never answers) does not
/// hold the agent's loop: it runs beside it. Meanwhile the node has no room for the stuck
/// service, another service's instance is started, and the planner decides every loop;
/// when the pull's `Timeout` runs out the service is backed off with the reason.
#[test]
fn a_hanging_pull_holds_neither_the_loop_nor_other_services() {
    let test = "a_hanging_pull_holds_neither_the_loop_nor_other_services";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    // Accepts, and keeps every connection open without a byte.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let stuck_image = format!("127.0.0.1:{port}/never-answers:{}", std::process::id());
    let config = TestConfig::new(CONFIG_ONE_SECOND_LOOPS, QUIET_POLICY);
    let stuck = service_with_pull(
        &stuck_image,
        r#"{"Timeout": 12}"#,
        testkit::free_port_range(4),
    )
    .replace(r#""Name": "web""#, r#""Name": "stuck""#);
    config.file("services/stuck.json", &stuck);
    let cluster = Cluster::start("pull-hang", config);
    let agent = cluster.spawn("n1");
    let pulling = wait_until(Duration::from_secs(20), || {
        agent
            .actions(50)
            .iter()
            .any(|a| a.service == "stuck" && a.result.starts_with("pulling image"))
    });
    assert!(
        pulling.is_some(),
        "no pull began: {:?}\n{}",
        agent.actions(20),
        support::tail(&agent.log_text(), 30)
    );
    let pull_began = testkit::epoch_ns() / 1_000_000;
    // Another service, pushed while the pull hangs, is started all the same.
    cluster
        .config
        .service("web", r#""MinInstances": 1,"#, testkit::free_port_range(4));
    expect_code(
        &cluster.endpoints(),
        &["config", "push", &cluster.name, cluster.config.path()],
        0,
    );
    let web = wait_until(Duration::from_secs(15), || {
        cluster.registered("web").len() == 1
    });
    let failed = wait_until(Duration::from_secs(30), || {
        agent
            .actions(100)
            .iter()
            .any(|a| a.service == "stuck" && a.result.starts_with("failed:"))
    });
    let failed_at = agent
        .actions(100)
        .into_iter()
        .find(|a| a.service == "stuck" && a.result.starts_with("failed:"))
        .map(|a| a.at_ms);
    let decided = agent
        .decisions(256)
        .iter()
        .filter(|d| {
            d["at"]
                .as_u64()
                .is_some_and(|at| at > pull_began && failed_at.is_none_or(|end| at < end))
        })
        .count();
    figure(
        test,
        "web in discovery after the push, while the pull hung (s)",
        web.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    figure(test, "decisions while the pull hung", decided as f64);
    assert!(
        web.is_some(),
        "web did not start while the pull hung\n{}",
        support::tail(&agent.log_text(), 40)
    );
    assert!(
        failed.is_some(),
        "the hanging pull was not timed out: {:?}",
        agent.actions(20)
    );
    // 12 s of pull with 1 s loops: the planner went on deciding.
    assert!(
        decided >= 6,
        "{decided} decisions while the pull hung\n{}",
        support::tail(&agent.log_text(), 40)
    );
    assert!(
        cluster.registered("stuck").is_empty() && agent.healthy(),
        "stuck started, or the agent is unwell"
    );
}
