//! The original Gru README, used as a Gru user would (issue 16's acceptance): its four
//! documents pushed exactly as published (`configs/gru-readme/`), an agent joined with
//! Gru's flags (`-e`, `-n`, `-a`, `-p`, `-l`) and its `DaemonUrl: "local:2375"`, started
//! with Gru's command body, driven with Gru's shell commands and read through Gru's API
//! routes. Real etcd, the real Docker engine.
//!
//! `local:2375` is this node's address on port 2375. The engine here serves only its Unix
//! socket, so the first test puts a TCP endpoint for it on 127.0.0.1:2375 (a forwarder to
//! the socket, counting its connections), which is what `dockerd -H tcp://...` would give;
//! the second shows the documented fallback when nothing listens there.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{expect_code, gru, root, strip_ansi, text};
use testkit::{
    ChildGuard, Component, EtcdCluster, free_port, http_get, http_request, require, wait_until,
};

/// The cluster name of Gru's README.
const CLUSTER: &str = "myCluster";
/// The port of the README's `DaemonUrl`.
const GRU_README_DOCKER_PORT: u16 = 2375;
/// How long an agent may take to answer `/healthz`.
const AGENT_UP: Duration = Duration::from_secs(30);

/// The engine's Unix socket: `DOCKER_HOST`'s when it names one, else the default.
fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// A TCP endpoint for the engine: every connection to `listen` is relayed to the engine's
/// socket. Stops accepting when dropped.
struct EngineForwarder {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl EngineForwarder {
    fn start(listen: SocketAddr, socket: PathBuf) -> std::io::Result<EngineForwarder> {
        let listener = TcpListener::bind(listen)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(engine) = UnixStream::connect(&socket) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                relay(client, engine);
            }
        });
        Ok(EngineForwarder {
            addr: listen,
            connections,
            stop,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for EngineForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies both ways until each side closes.
fn relay(client: TcpStream, engine: UnixStream) {
    let (mut client_in, mut engine_in) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
    let (mut client_out, mut engine_out) = (client, engine);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut engine_out);
        let _ = engine_out.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut engine_in, &mut client_out);
        let _ = client_out.shutdown(Shutdown::Write);
    });
}

/// Whether a Docker engine answers `GET /_ping` at `addr`.
fn engine_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.ends_with("OK")
}

/// `gru create myCluster` and `gru config push myCluster configs/gru-readme`, with Gru's
/// `-e` flag.
fn push_the_readme(etcd: &EtcdCluster) {
    let e = etcd.endpoints();
    expect_code(&e, &["-e", &e, "create", CLUSTER], 0);
    let dir = root().join("configs/gru-readme");
    expect_code(
        &e,
        &[
            "--etcdserver",
            &e,
            "config",
            "push",
            CLUSTER,
            dir.to_str().unwrap(),
        ],
        0,
    );
}

/// `gru -l <level> join myCluster -e ... -n <node> -a <address> -p <port>`, as Gru's README
/// runs it: no `DOCKER_HOST` (the configuration's `DaemonUrl` decides) and no `RUST_LOG`
/// (the `-l` flag does). Its stderr goes to `log`.
fn gru_join(
    etcd: &EtcdCluster,
    node: &str,
    address: Option<&str>,
    port: u16,
    log: &Path,
    extra: &[&str],
) -> ChildGuard {
    let e = etcd.endpoints();
    let port = port.to_string();
    let mut args = vec![
        "-l", "debug", "join", CLUSTER, "-e", &e, "-n", node, "-p", &port,
    ];
    if let Some(address) = address {
        args.extend(["-a", address]);
    }
    args.extend(extra);
    let child = gru(&e)
        .env_remove("ETCD_ADDR")
        .env_remove("DOCKER_HOST")
        .env_remove("RUST_LOG")
        .env_remove("HostIP")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ChildGuard::new(child)
}

fn wait_up(port: u16, log: &Path) {
    let up = wait_until(AGENT_UP, || {
        http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
    });
    assert!(
        up.is_some(),
        "the agent on port {port} never answered /healthz; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn loops(port: u16) -> u64 {
    let (_, body) = http_get(port, "/metrics").unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("gru_loop_duration_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn etcd_value(etcd: &EtcdCluster, key: &str) -> Option<String> {
    etcd.dump(key)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// `gru manage -e ... -c "use myCluster; <script>"` with JSON output, one document per
/// command after `use`.
fn manage(etcd: &EtcdCluster, script: &str) -> Vec<Value> {
    let e = etcd.endpoints();
    let out = gru(&e)
        .args([
            "manage",
            "-e",
            &e,
            "--output",
            "json",
            "-c",
            &format!("use {CLUSTER}; {script}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{script}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .skip(1)
        .collect()
}

#[test]
fn the_gru_readme_runs_unchanged_with_local_daemon_url_gru_s_flags_commands_and_routes() {
    let test =
        "the_gru_readme_runs_unchanged_with_local_daemon_url_gru_s_flags_commands_and_routes";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let etcd = EtcdCluster::start();
    push_the_readme(&etcd);
    // The documents in etcd are the README's: DaemonUrl as written.
    let config = etcd_value(&etcd, &format!("/gru/{CLUSTER}/config")).expect("config pushed");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["Docker"]["DaemonUrl"], "local:2375", "{config}");

    // A TCP endpoint for the engine at this node's address, port 2375.
    let listen: SocketAddr = ([127, 0, 0, 1], GRU_README_DOCKER_PORT).into();
    let forwarder = match EngineForwarder::start(listen, engine_socket()) {
        Ok(forwarder) => Some(forwarder),
        Err(err) => {
            assert!(
                engine_answers(listen),
                "{listen} is taken ({err}) and no Docker engine answers there: free port \
                 {GRU_README_DOCKER_PORT} for this test"
            );
            eprintln!("{listen} already serves a Docker engine; the agent uses it");
            None
        }
    };

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("node1.log");
    let port = free_port();
    let _agent = gru_join(&etcd, "node1", Some("127.0.0.1"), port, &log, &[]);
    wait_up(port, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    if let Some(forwarder) = &forwarder {
        assert!(
            forwarder.connections() >= 1,
            "the agent did not reach the engine through local:2375; its log:\n{}",
            log_text()
        );
    }
    assert!(
        !log_text().contains("using the node's socket"),
        "the agent fell back although local:2375 answered:\n{}",
        log_text()
    );
    // -l debug shows gru's own debug lines.
    assert!(
        log_text().contains("DEBUG"),
        "no debug line with -l debug:\n{}",
        log_text()
    );

    // Gru's `start agent`, in Gru's command body, with the cluster's secret.
    let secret = etcd_value(&etcd, &format!("/gru/{CLUSTER}/secret")).expect("secret");
    let (status, body) = http_request(
        port,
        "POST",
        "/gru/v1/commands",
        Some(secret.trim()),
        Some(r#"{"Name":"start","Target":"agent","Object":null}"#),
    )
    .expect("the agent answers");
    assert_eq!(status, 202, "{body}");
    let active = wait_until(Duration::from_secs(10), || {
        etcd_value(&etcd, &format!("/gru/{CLUSTER}/nodes/node1/active")).as_deref() == Some("true")
    });
    assert!(
        active.is_some(),
        "start agent did not make node1 active:\n{}",
        log_text()
    );

    // The loop runs: its first tick at start, and its decisions name the README's service.
    let ticked = wait_until(Duration::from_secs(10), || loops(port) >= 1);
    assert!(ticked.is_some(), "no loop tick:\n{}", log_text());
    let decided = wait_until(Duration::from_secs(10), || {
        get_json(port, "/gru/v1/decisions?limit=5")
            .to_string()
            .contains("service1")
    });
    assert!(
        decided.is_some(),
        "no decision about service1: {}\n{}",
        get_json(port, "/gru/v1/decisions?limit=5"),
        log_text()
    );

    // Gru's shell: update agent, set node cpumin/cpumax, and show them.
    let docs = manage(
        &etcd,
        "update agent; set node node1 cpumin 0.2; set node node1 cpumax 0.9",
    );
    assert_eq!(docs.len(), 3, "{docs:?}");
    let constraints = wait_until(Duration::from_secs(10), || {
        etcd_value(&etcd, &format!("/gru/{CLUSTER}/nodes/node1/constraints"))
            .is_some_and(|c| c.contains("\"CpuMin\":0.2") && c.contains("\"CpuMax\":0.9"))
    });
    assert!(
        constraints.is_some(),
        "constraints: {:?}",
        etcd_value(&etcd, &format!("/gru/{CLUSTER}/nodes/node1/constraints"))
    );
    let shown = manage(&etcd, "show node node1 constraints");
    let shown = &shown[0]["nodes"]["node1"]["constraints"];
    assert_eq!(shown["CpuMin"], 0.2, "{shown}");
    assert_eq!(shown["CpuMax"], 0.9, "{shown}");

    // Gru's API routes.
    let service = get_json(port, "/gru/v1/analytics/services/service1");
    assert_eq!(service["service"], "service1", "{service}");
    let system = get_json(port, "/gru/v1/stats/system");
    assert_eq!(system["instances"], 0, "{system}");
    get_json(port, "/gru/v1/stats/instances");
    get_json(port, "/gru/v1/stats/services/service1");
    get_json(port, "/gru/v1/analytics/system");
}

#[test]
fn local_daemon_url_with_no_engine_at_the_address_falls_back_to_the_socket_and_says_so() {
    let test =
        "local_daemon_url_with_no_engine_at_the_address_falls_back_to_the_socket_and_says_so";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    // 127.0.0.3 is this machine too, and no engine listens on its port 2375.
    let address = "127.0.0.3";
    let target: SocketAddr = ([127, 0, 0, 3], GRU_README_DOCKER_PORT).into();
    assert!(
        TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_err(),
        "something listens on {target}; this test needs it free"
    );
    let etcd = EtcdCluster::start();
    push_the_readme(&etcd);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("node2.log");
    let port = free_port();
    let mut agent = gru_join(&etcd, "node2", Some(address), port, &log, &[]);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    if Path::new("/var/run/docker.sock").exists() {
        wait_up(port, &log);
        let log = log_text();
        assert!(
            log.contains(
                "no Docker engine answers at this node's address; using the node's socket"
            ) && log.contains("http://127.0.0.3:2375")
                && log.contains("unix:///var/run/docker.sock"),
            "no fallback warning naming both endpoints:\n{log}"
        );
    } else {
        // Without the node's socket there is nothing to fall back to: a clear failure.
        let status = agent.take().wait().unwrap();
        assert_eq!(status.code(), Some(69), "{}", log_text());
        assert!(
            log_text().contains("cannot reach the Docker engine at http://127.0.0.3:2375"),
            "{}",
            log_text()
        );
    }
}

/// This host's IPv4 address on the interface of its default route, as iproute2 tells it,
/// or `None` without a default route.
fn default_route_address() -> Option<String> {
    let route = Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .ok()?;
    let route = String::from_utf8_lossy(&route.stdout);
    let device = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)?
        .to_owned();
    let addr = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &device])
        .output()
        .ok()?;
    let addr = String::from_utf8_lossy(&addr.stdout);
    let cidr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_owned())
}

#[test]
fn join_without_an_address_announces_its_default_route_s_address_or_its_bind_address() {
    let test = "join_without_an_address_announces_its_default_route_s_address_or_its_bind_address";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let route = default_route_address().unwrap_or_else(|| "127.0.0.1".to_owned());
    let etcd = EtcdCluster::start();
    push_the_readme(&etcd);
    let logs = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 2] = [
        ("node3", &[], route.as_str()),
        ("node4", &["--bind", "127.0.0.1"], "127.0.0.1"),
    ];
    for (node, extra, expected) in cases {
        let log = logs.path().join(format!("{node}.log"));
        let port = free_port();
        let _agent = gru_join(&etcd, node, None, port, &log, extra);
        wait_up(port, &log);
        let log_text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
        let announced = log_text.lines().any(|l| {
            l.contains("announcing this address") && l.contains(&format!("address={expected} "))
        });
        assert!(
            announced,
            "{node}: expected the address {expected} to be announced:\n{log_text}"
        );
        let record =
            etcd_value(&etcd, &format!("/gru/{CLUSTER}/nodes/{node}/config")).expect("record");
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record["Address"], expected, "{node}: {record}");
    }
}
