//! The agent's HTTP API over a real socket: every route, the secret on state-changing
//! routes, the command queue, the body cap, and a thousand random requests. No etcd or
//! Docker: the knowledge is filled by hand from the example configuration.
//!
//! The client is a few lines of raw HTTP/1.1 (`Connection: close`, read to the end), so the
//! tests see exactly the bytes the agent answers, including the ones a library would hide.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::config::{ClusterConfig, SourceDocument};
use gru_agent::http::{self, MAX_BODY_BYTES, MAX_PUSHED_METRICS_PER_SERVICE};
use gru_agent::mape::{Action, AnalyticValue, CandidateWeight, Decision, Millis, WindowSettings};
use gru_agent::runtime::usage::{InstanceUsage, NodeCapacity};
use gru_agent::runtime::{ActionRecord, AgentCommand, InstanceInfo, Shared, StartBackoff};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The agent's clock in these tests: fixed, so windows and warm-ups are predictable.
const NOW: Millis = Millis(1_000_000);
/// How long one request may take before the test fails rather than hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn clock() -> Millis {
    NOW
}

fn window_settings() -> WindowSettings {
    WindowSettings {
        span: Duration::from_secs(60),
        max_samples: 100,
        warmup: Duration::ZERO,
        warmup_samples: 1,
        max_metrics_per_instance: 16,
    }
}

/// `configs/example`, parsed as the agent would.
fn example_config() -> ClusterConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example");
    let mut docs = Vec::new();
    for dir in ["", "services", "analytics"] {
        let entries = std::fs::read_dir(root.join(dir)).expect("configs/example is readable");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|ext| ext == "json") {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("a UTF-8 name");
                let file = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                let text = std::fs::read_to_string(&path).expect("a readable document");
                docs.push(SourceDocument { file, text });
            }
        }
    }
    ClusterConfig::from_documents(&docs).expect("configs/example is valid")
}

fn instance(service: &str, name: &str, state: &str, port: u16) -> InstanceInfo {
    InstanceInfo {
        id: format!("c0ffee-{name}"),
        service: service.to_owned(),
        instance: name.to_owned(),
        state: state.to_owned(),
        address: Some(format!("10.1.2.3:{port}")),
        started_at: Millis(900_000),
        version: None,
        image: String::new(),
        ready: true,
        health: None,
        replaces: Vec::new(),
    }
}

fn decision(at: u64, scale_out_weight: f64) -> Decision {
    Decision {
        action: Action::ScaleOut {
            service: "backend".to_owned(),
            count: 1,
        },
        weights: vec![
            CandidateWeight {
                action: Action::None,
                weight: 1.0 - scale_out_weight,
                explanation: "1 - max(others)".into(),
                blocked_by: Default::default(),
                clamped: None,
            },
            CandidateWeight {
                action: Action::ScaleOut {
                    service: "backend".to_owned(),
                    count: 1,
                },
                weight: scale_out_weight,
                explanation: "cpu_load 0.90 > 0.75".into(),
                blocked_by: Default::default(),
                clamped: None,
            },
        ],
        draw: Some(0.25),
        reason: format!("decision at {at}"),
        dry_run: false,
        at: Millis(at),
    }
}

/// A `Shared` as the loop would leave it after a few ticks on the example application.
fn seeded_shared() -> Arc<Shared> {
    let shared = Arc::new(Shared::new(
        "demo",
        "node-1",
        "10.1.2.3",
        SECRET,
        window_settings(),
    ));
    {
        let mut k = shared.knowledge();
        k.config = Some(Arc::new(example_config()));
        k.config_status.revision = 17;
        k.active = true;
        k.base_services = vec!["cache".to_owned()];
        for info in [
            instance("backend", "backend-1", "running", 18090),
            instance("backend", "backend-2", "created", 18091),
            instance("frontend", "frontend-1", "running", 18080),
            instance("legacy", "legacy-1", "running", 18200),
        ] {
            k.instances.insert(info.id.clone(), info);
        }
        for (at, value) in [(999_000, 0.2), (999_500, 0.4)] {
            k.metrics
                .record("backend", "backend-1", "cpu_avg", Millis(at), value)
                .expect("a sample");
        }
        let mut backend = BTreeMap::new();
        backend.insert("cpu_load".to_owned(), AnalyticValue::Available(0.3));
        backend.insert(
            "resp_time_ratio".to_owned(),
            AnalyticValue::unavailable("no execution_time"),
        );
        k.analytics.insert("backend".to_owned(), backend);
        for (at, weight) in [(990_000, 0.1), (995_000, 0.5), (1_000_000, 0.9)] {
            k.record_decision(decision(at, weight));
        }
        for (at, result) in [(995_500, "ok"), (1_000_100, "failed: image missing")] {
            k.record_action(ActionRecord {
                at: Millis(at),
                action: "scale-out".to_owned(),
                service: "backend".to_owned(),
                instance: Some(format!("backend-{at}")),
                result: result.to_owned(),
                reason: None,
            });
        }
        k.start_backoffs.insert(
            "frontend".to_owned(),
            StartBackoff {
                failed_at: Millis(1_000_200),
                until: Millis(1_010_200),
                failures: 2,
                error: "pull of image r/frontend:2 failed: unauthorized".to_owned(),
            },
        );
        k.capacity = NodeCapacity {
            cpus: 4,
            memory_bytes: 8 << 30,
        };
        for (id, cores, bytes) in [
            ("c0ffee-backend-1", Some(0.5), 64 << 20),
            ("c0ffee-frontend-1", Some(1.5), 32 << 20),
            ("c0ffee-legacy-1", None, 16 << 20),
            // Not running: not counted.
            ("c0ffee-backend-2", Some(2.0), 1 << 30),
        ] {
            k.usage.insert(
                id.to_owned(),
                InstanceUsage {
                    cpu_cores: cores,
                    memory_bytes: bytes,
                },
            );
        }
    }
    shared
}

/// An agent's API served on a free loopback port, stopped when dropped.
struct Api {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: Option<mpsc::Receiver<AgentCommand>>,
    cancel: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn start(shared: Arc<Shared>, queue: usize) -> Api {
        let (tx, rx) = mpsc::channel(queue);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let cancel = CancellationToken::new();
        let router = http::router(Arc::clone(&shared), tx, clock);
        let server = tokio::spawn(http::serve(listener, router, cancel.child_token()));
        Api {
            addr,
            shared,
            commands: Some(rx),
            cancel,
            server,
        }
    }

    async fn seeded() -> Api {
        Api::start(seeded_shared(), 4).await
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.addr, "GET", path, &[], None).await
    }

    async fn post(&self, path: &str, secret: Option<&str>, body: &[u8]) -> Reply {
        let auth = secret.map(|s| format!("Bearer {s}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        send(self.addr, "POST", path, &headers, Some(body)).await
    }

    fn commands(&mut self) -> &mut mpsc::Receiver<AgentCommand> {
        self.commands.as_mut().expect("the receiver is kept")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.server.abort();
    }
}

/// An HTTP answer as it came off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "status {} body is not JSON ({err}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` sentence of a JSON error reply.
    fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "an error is JSON: {self:?}"
        );
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error sentence in {self:?}"))
            .to_owned()
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    exchange(addr, &request)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}"))
}

/// Writes `request` as is and parses the answer; `None` when no status line came back.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Reply> {
    let io = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
        // The server may answer and close before reading everything (a body over the
        // limit): a failed write is fine, the answer is what counts.
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let mut buf = [0_u8; 8192];
        // Read until the end or a reset, keeping what arrived before it.
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            raw.extend_from_slice(&buf[..n]);
        }
        raw
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, io)
        .await
        .expect("the API answered in time");
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < end + 2 + size {
            break;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = raw.get(end + 4 + size..).unwrap_or_default();
    }
    body
}

fn close(actual: &Value, expected: f64) -> bool {
    actual.as_f64().is_some_and(|a| (a - expected).abs() < 1e-9)
}

#[tokio::test]
async fn healthz_reports_identity_and_version() {
    let api = Api::seeded().await;
    let reply = api.get("/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"status": "ok", "cluster": "demo", "node": "node-1", "version": env!("CARGO_PKG_VERSION")})
    );
}

/// Expected: a well-formed `?challenge=` gets a proof that only the cluster secret makes
/// (what another agent checks before it believes this node alive, see
/// `runtime::liveness`); a malformed one, or a query that does not parse, still gets the
/// plain answer, never an error (health checkers must not break on it).
#[tokio::test]
async fn healthz_proves_the_secret_for_a_challenge_and_never_fails_on_a_query() {
    use gru_agent::runtime::liveness::proof;
    let api = Api::seeded().await;
    let challenge = "8a1f0c2b9d3e4f5a6b7c8d9e0f1a2b3c";
    let reply = api.get(&format!("/healthz?challenge={challenge}")).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["node"], "node-1");
    let expected = proof(SECRET, challenge, "demo", "node-1");
    assert_eq!(body["proof"], expected.as_str());
    assert_ne!(
        expected,
        proof("another secret", challenge, "demo", "node-1")
    );
    assert_ne!(
        expected,
        proof(SECRET, "8a1f0c2b9d3e4f5a6b7c8d9e0f1a2b3d", "demo", "node-1")
    );
    for query in [
        "?challenge=short",
        "?challenge=%00%01",
        "?challenge=a&challenge=b",
        "?%zz",
        "?challenge",
    ] {
        let reply = api.get(&format!("/healthz{query}")).await;
        assert_eq!(reply.status, 200, "{query}");
        assert!(
            reply.json().get("proof").is_none(),
            "{query}: {}",
            reply.json()
        );
    }
}

#[tokio::test]
async fn node_reports_identity_config_and_instance_counts() {
    let api = Api::seeded().await;
    let reply = api.get("/gru/v1/node").await;
    assert_eq!(reply.status, 200);
    let mut node = reply.json();
    // When this agent process started (the wall clock, ms): `restart agent` waits for it
    // to change.
    let started = node
        .as_object_mut()
        .and_then(|n| n.remove("agent_started_at"))
        .and_then(|v| v.as_u64())
        .expect("agent_started_at");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    assert!(
        started <= now && now - started < 600_000,
        "{started} vs now {now}"
    );
    assert_eq!(
        node,
        json!({
            "cluster": "demo",
            "node": "node-1",
            "address": "10.1.2.3",
            "active": true,
            "base_services": ["cache"],
            "config": {"loaded": true, "revision": 17, "rejected": null},
            "instances": {
                "total": 4,
                "running": 3,
                "by_service": {
                    "backend": {"total": 2, "running": 1, "ready": 1},
                    "frontend": {"total": 1, "running": 1, "ready": 1},
                    "legacy": {"total": 1, "running": 1, "ready": 1},
                },
            },
            "start_failures": {
                "frontend": {
                    "failed_at": 1_000_200,
                    "failures": 2,
                    "error": "pull of image r/frontend:2 failed: unauthorized",
                    "backing_off_until": 1_010_200,
                },
            },
            "usage": {
                "cpus": 4,
                "memory_bytes": 8u64 << 30,
                "cpu_used_cores": 2.0,
                "cpu_used_fraction": 0.5,
                "memory_used_bytes": 112u64 << 20,
                // The example application pins no core.
                "free_cores": 4,
            },
            "drain": null,
            // Per instance the larger of use and reservation: backend max(64, 128 MiB),
            // frontend max(32, 64 MiB), legacy 16 MiB (no configuration, no reservation);
            // none is a base service here (cache runs nowhere), so all of it is movable.
            "demand": {
                "cpus": 4,
                "memory_bytes": 8u64 << 30,
                "cpu_cores": 2.0,
                "memory_demand_bytes": 208u64 << 20,
                "movable_cpu_cores": 2.0,
                "movable_memory_bytes": 208u64 << 20,
            },
        })
    );
}

#[tokio::test]
async fn services_list_each_configured_service_with_its_instances_and_bounds() {
    let api = Api::seeded().await;
    let body = api.get("/gru/v1/services").await.json();
    let services = body["services"].as_object().expect("services by name");
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        ["backend", "cache", "frontend"],
        "every configured service, and only those"
    );
    assert_eq!(body["services"]["backend"]["min_instances"], 1);
    assert_eq!(body["services"]["backend"]["max_instances"], 4);
    assert_eq!(body["services"]["backend"]["running"], 1);
    assert_eq!(
        body["services"]["backend"]["instances"][0],
        json!({
            "id": "c0ffee-backend-1",
            "service": "backend",
            "instance": "backend-1",
            "state": "running",
            "address": "10.1.2.3:18090",
            "started_at": 900_000,
            "ready": true,
            "condition": "ready",
            // The seeded instance carries no version label.
            "version": null,
        })
    );
    // The service's version: what a rollout compares each instance's label with.
    assert_eq!(
        body["services"]["backend"]["version"],
        json!(example_config().services["backend"].version())
    );
    assert_eq!(
        body["services"]["backend"]["instances"][1]["state"],
        "created"
    );
    assert_eq!(body["services"]["cache"]["instances"], json!([]));
    assert_eq!(body["services"]["cache"]["base_service"], true);
    assert_eq!(body["services"]["cache"]["max_instances"], 2);
    assert_eq!(body["unconfigured_instances"][0]["instance"], "legacy-1");
}

#[tokio::test]
async fn stats_show_instance_means_at_the_agents_clock() {
    let api = Api::seeded().await;
    let body = api.get("/gru/v1/stats").await.json();
    assert_eq!(body["at"], NOW.0);
    let cpu = &body["services"]["backend"]["metrics"]["cpu_avg"];
    assert!(close(&cpu["mean"], 0.3), "{cpu}");
    assert_eq!(cpu["instances"], 1);
    assert_eq!(
        body["services"]["cache"],
        json!({"metrics": {}, "pushed": {}})
    );
}

#[tokio::test]
async fn analytics_show_values_and_why_others_are_unavailable() {
    let api = Api::seeded().await;
    let body = api.get("/gru/v1/analytics").await.json();
    assert_eq!(
        body,
        json!({"services": {"backend": {
            "cpu_load": 0.3,
            "resp_time_ratio": {"unavailable": "no execution_time"},
        }}})
    );
}

#[tokio::test]
async fn policies_show_the_newest_decisions_weights() {
    let api = Api::seeded().await;
    let body = api.get("/gru/v1/policies").await.json();
    assert_eq!(body["decided_at"], 1_000_000);
    assert_eq!(
        body["chosen"],
        json!({"kind": "scale-out", "service": "backend", "count": 1})
    );
    let weights = body["weights"].as_array().expect("weights");
    assert_eq!(weights.len(), 2);
    assert_eq!(weights[1]["action"]["kind"], "scale-out");
    assert!(close(&weights[1]["weight"], 0.9), "{}", weights[1]);
    assert_eq!(weights[1]["explanation"], "cpu_load 0.90 > 0.75");
}

#[tokio::test]
async fn histories_are_newest_first_and_limited() {
    let api = Api::seeded().await;
    {
        let mut k = api.shared.knowledge();
        for at in 0..300 {
            k.record_decision(decision(2_000_000 + at, 0.5));
        }
    }
    let body = api.get("/gru/v1/decisions").await.json();
    let at: Vec<u64> = body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d["at"].as_u64())
        .collect();
    assert_eq!(at.len(), 20, "default limit");
    assert_eq!(at[0], 2_000_299, "newest first");
    assert!(at.windows(2).all(|w| w[0] > w[1]), "{at:?}");
    assert_eq!(body["total"], 256, "the history is bounded");

    let cases = [
        ("?limit=3", 3),
        ("?limit=0", 0),
        ("?limit=100000", 256),
        ("?limit=256&x=1", 256),
    ];
    for (query, expected) in cases {
        let body = api.get(&format!("/gru/v1/decisions{query}")).await.json();
        assert_eq!(
            body["decisions"].as_array().map(Vec::len),
            Some(expected),
            "{query}"
        );
    }
    for query in ["?limit=-1", "?limit=ten", "?limit=1.5"] {
        let reply = api.get(&format!("/gru/v1/decisions{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(!reply.error().is_empty());
    }

    let body = api.get("/gru/v1/actions?limit=1").await.json();
    assert_eq!(body["total"], 2);
    assert_eq!(
        body["actions"],
        json!([{
            "at": 1_000_100,
            "action": "scale-out",
            "service": "backend",
            "instance": "backend-1000100",
            "result": "failed: image missing",
        }])
    );
    assert_eq!(api.get("/gru/v1/actions?limit=x").await.status, 400);
}

#[tokio::test]
async fn shared_summarises_each_service_as_friends_would_see_it() {
    let api = Api::seeded().await;
    let body = api.get("/gru/v1/shared").await.json();
    assert_eq!(body["cluster"], "demo");
    assert_eq!(body["node"], "node-1");
    assert_eq!(body["at"], NOW.0);
    let backend = &body["services"]["backend"];
    assert_eq!(backend["instances"], 1, "running instances only");
    assert!(close(&backend["metrics"]["cpu_avg"], 0.3), "{backend}");
    assert_eq!(backend["analytics"]["cpu_load"], 0.3);
    assert_eq!(
        backend["analytics"]["resp_time_ratio"],
        json!({"unavailable": "no execution_time"})
    );
    assert_eq!(
        body["services"]["cache"],
        json!({"instances": 0, "ready": 0, "metrics": {}, "analytics": {}})
    );
}

#[tokio::test]
async fn reads_without_a_configuration_are_empty_not_errors() {
    let shared = Arc::new(Shared::new(
        "demo",
        "node-1",
        "10.1.2.3",
        SECRET,
        window_settings(),
    ));
    let api = Api::start(shared, 4).await;
    let expected = [
        (
            "/gru/v1/services",
            json!({"services": {}, "unconfigured_instances": []}),
        ),
        ("/gru/v1/stats", json!({"at": NOW.0, "services": {}})),
        ("/gru/v1/analytics", json!({"services": {}})),
        (
            "/gru/v1/policies",
            json!({"decided_at": null, "chosen": null, "weights": []}),
        ),
        ("/gru/v1/decisions", json!({"total": 0, "decisions": []})),
        ("/gru/v1/actions", json!({"total": 0, "actions": []})),
        (
            "/gru/v1/shared",
            json!({"cluster": "demo", "node": "node-1", "at": NOW.0, "services": {}}),
        ),
    ];
    for (path, body) in expected {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json(), body, "{path}");
    }
    let node = api.get("/gru/v1/node").await.json();
    assert_eq!(
        node["config"],
        json!({"loaded": false, "revision": 0, "rejected": null})
    );
    assert_eq!(node["active"], false);
}

#[tokio::test]
async fn state_changing_routes_require_the_cluster_secret() {
    let api = Api::seeded().await;
    let wrong = "0f1e2d3c4b5a69788796a5b4c3d2e1f1";
    let routes: [(&str, &[u8], u16); 2] = [
        ("/gru/v1/stats/user/backend/queue_len", b"3", 200),
        ("/gru/v1/commands", br#"{"name":"update"}"#, 202),
    ];
    for (path, body, ok) in routes {
        let missing = api.post(path, None, body).await;
        assert_eq!(missing.status, 401, "{path} without a secret");
        assert!(
            missing.error().contains("Authorization: Bearer"),
            "{missing:?}"
        );
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer realm=\"gru\"")
        );

        let reply = send(
            api.addr,
            "POST",
            path,
            &[("Authorization", format!("Basic {SECRET}").as_str())],
            Some(body),
        )
        .await;
        assert_eq!(reply.status, 401, "{path} with another scheme");

        let forbidden = api.post(path, Some(wrong), body).await;
        assert_eq!(forbidden.status, 403, "{path} with a wrong secret");
        let text = String::from_utf8_lossy(&forbidden.body).into_owned();
        assert!(
            !text.contains(wrong),
            "the presented value is echoed: {text}"
        );
        assert!(!forbidden.error().is_empty());

        let reply = api.post(path, Some(SECRET), body).await;
        assert_eq!(reply.status, ok, "{path} with the secret: {reply:?}");
    }
    // Refused requests changed nothing; the accepted ones did once each.
    assert_eq!(
        api.shared.knowledge().pushed["backend"]["queue_len"].len(),
        1
    );
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_their_body_is_read() {
    let api = Api::seeded().await;
    let oversized = vec![b'1'; MAX_BODY_BYTES + 1];
    let reply = api.post("/gru/v1/commands", None, &oversized).await;
    assert_eq!(reply.status, 401, "auth is checked before the body");
    let reply = api
        .post("/gru/v1/stats/user/backend/m", Some("nope"), b"not json")
        .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn pushed_metrics_are_visible_in_stats_and_the_summary() {
    let api = Api::seeded().await;
    let pushes: [(&str, &[u8]); 3] = [
        ("/gru/v1/stats/user/backend/queue_len", b"4"),
        (
            "/gru/v1/stats/user/backend/queue_len",
            br#"{"value": 8, "unit": "req"}"#,
        ),
        ("/gru/v1/stats/user/frontend/execution_time", b"120.5"),
    ];
    for (path, body) in pushes {
        let reply = api.post(path, Some(SECRET), body).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
    }
    let reply = api
        .post("/gru/v1/stats/user/backend/queue_len", Some(SECRET), b"2")
        .await;
    assert_eq!(
        reply.json(),
        json!({"service": "backend", "metric": "queue_len", "value": 2.0, "at": NOW.0})
    );

    let stats = api.get("/gru/v1/stats").await.json();
    assert_eq!(
        stats["services"]["backend"]["pushed"]["queue_len"],
        json!({"mean": 14.0 / 3.0, "samples": 3})
    );
    assert_eq!(
        stats["services"]["frontend"]["pushed"]["execution_time"],
        json!({"mean": 120.5, "samples": 1})
    );
    let shared = api.get("/gru/v1/shared").await.json();
    assert_eq!(
        shared["services"]["frontend"]["metrics"]["execution_time"],
        120.5
    );
    assert!(close(
        &shared["services"]["backend"]["metrics"]["queue_len"],
        14.0 / 3.0
    ));
}

#[tokio::test]
async fn bad_pushes_are_refused_with_the_right_status() {
    let api = Api::seeded().await;
    let too_long = "m".repeat(65);
    let cases: Vec<(String, &[u8], u16)> = vec![
        ("/gru/v1/stats/user/nosuch/m".to_owned(), b"1", 404),
        (
            "/gru/v1/stats/user/backend/bad%20name".to_owned(),
            b"1",
            400,
        ),
        ("/gru/v1/stats/user/backend/a%2Fb".to_owned(), b"1", 400),
        ("/gru/v1/stats/user/backend/%FF".to_owned(), b"1", 400),
        (format!("/gru/v1/stats/user/backend/{too_long}"), b"1", 400),
        ("/gru/v1/stats/user/../m".to_owned(), b"1", 400),
        ("/gru/v1/stats/user/backend/m".to_owned(), b"\"1\"", 400),
        (
            "/gru/v1/stats/user/backend/m".to_owned(),
            b"{\"value\": null}",
            400,
        ),
        ("/gru/v1/stats/user/backend/m".to_owned(), b"1e999", 400),
        ("/gru/v1/stats/user/backend/m".to_owned(), b"", 400),
        ("/gru/v1/stats/user/backend/m".to_owned(), b"{", 400),
        ("/gru/v1/stats/user/backend".to_owned(), b"1", 404),
    ];
    for (path, body, status) in &cases {
        let reply = api.post(path, Some(SECRET), body).await;
        assert_eq!(
            reply.status,
            *status,
            "{path} {:?}: {reply:?}",
            String::from_utf8_lossy(body)
        );
        assert!(!reply.error().is_empty());
    }
    assert!(
        api.shared.knowledge().pushed.is_empty(),
        "nothing refused was recorded"
    );

    for i in 0..MAX_PUSHED_METRICS_PER_SERVICE {
        let reply = api
            .post(
                &format!("/gru/v1/stats/user/cache/m{i}"),
                Some(SECRET),
                b"1",
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let reply = api
        .post("/gru/v1/stats/user/cache/one_more", Some(SECRET), b"1")
        .await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(reply.error().contains("one too many"));
    let reply = api
        .post("/gru/v1/stats/user/cache/m0", Some(SECRET), b"2")
        .await;
    assert_eq!(reply.status, 200, "a known metric still records");
}

#[tokio::test]
async fn commands_are_delivered_to_the_loop() {
    let mut api = Api::seeded().await;
    let cases: [(&[u8], AgentCommand); 3] = [
        (br#"{"name":"start"}"#, AgentCommand::Start),
        (
            br#"{"name":"start-service","service":"backend"}"#,
            AgentCommand::StartService {
                service: "backend".to_owned(),
            },
        ),
        (
            br#"{"name":"stop-service","service":"cache"}"#,
            AgentCommand::StopService {
                service: "cache".to_owned(),
            },
        ),
    ];
    for (body, command) in cases {
        let reply = api.post("/gru/v1/commands", Some(SECRET), body).await;
        assert_eq!(reply.status, 202, "{reply:?}");
        let echoed: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(reply.json(), json!({"accepted": echoed}));
        assert_eq!(api.commands().try_recv().ok(), Some(command));
    }
}

#[tokio::test]
async fn gru_s_command_form_is_delivered_as_the_command_it_names() {
    let mut api = Api::seeded().await;
    let cases: [(&[u8], AgentCommand); 5] = [
        (
            br#"{"Name":"start","Target":"agent","Object":null}"#,
            AgentCommand::Start,
        ),
        (
            br#"{"name":"start","target":"service","object":"backend"}"#,
            AgentCommand::StartService {
                service: "backend".to_owned(),
            },
        ),
        (
            br#"{"Name":"update","Target":"agent","Object":"demo"}"#,
            AgentCommand::Update,
        ),
        (
            br#"{"Name":"update","Target":"node-base-services","Object":["cache"]}"#,
            AgentCommand::SetBaseServices {
                services: vec!["cache".to_owned()],
            },
        ),
        (
            br#"{"Name":"update","Target":"node-cpumin","Object":0.25}"#,
            AgentCommand::SetNodeCpu {
                cpumin: Some(0.25),
                cpumax: None,
            },
        ),
    ];
    for (body, command) in cases {
        let reply = api.post("/gru/v1/commands", Some(SECRET), body).await;
        assert_eq!(reply.status, 202, "{reply:?}");
        assert_eq!(
            reply.json()["accepted"],
            serde_json::to_value(&command).expect("serializes")
        );
        assert_eq!(api.commands().try_recv().ok(), Some(command));
    }
    let refused: [(&[u8], u16, &str); 5] = [
        (
            br#"{"Name":"start","Target":"service","Object":"nosuch"}"#,
            404,
            "nosuch",
        ),
        (
            br#"{"Name":"update","Target":"agent","Object":"other"}"#,
            400,
            "cluster \"demo\", not \"other\"",
        ),
        (
            br#"{"Name":"update","Target":"node-cpumax","Object":2}"#,
            400,
            "0.0 to 1.0",
        ),
        (
            br#"{"Name":"reboot","Target":"agent"}"#,
            400,
            "start, stop and update",
        ),
        (br#"{"name":"set-node-cpu","cpumin":-1}"#, 400, "0.0 to 1.0"),
    ];
    for (body, status, why) in refused {
        let reply = api.post("/gru/v1/commands", Some(SECRET), body).await;
        assert_eq!(reply.status, status, "{reply:?}");
        assert!(reply.error().contains(why), "{reply:?}");
    }
    assert!(
        api.commands().try_recv().is_err(),
        "nothing refused was queued"
    );
    // Gru's form changes state too: it needs the secret.
    let reply = api
        .post(
            "/gru/v1/commands",
            None,
            br#"{"Name":"start","Target":"agent"}"#,
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
}

#[tokio::test]
async fn gru_s_stats_and_analytics_sub_routes_answer() {
    let api = Api::seeded().await;
    // Per service: the same shape as /stats, all or one.
    let all = api.get("/gru/v1/stats/services").await.json();
    assert_eq!(all, api.get("/gru/v1/stats").await.json());
    let backend = api.get("/gru/v1/stats/services/backend").await.json();
    assert_eq!(backend["service"], "backend");
    assert!(
        close(&backend["metrics"]["cpu_avg"]["mean"], 0.3),
        "{backend}"
    );
    let reply = api.get("/gru/v1/stats/services/nosuch").await;
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("nosuch"), "{reply:?}");

    // Per instance, keyed by container id; one by id, by instance id, or by prefix.
    let instances = api.get("/gru/v1/stats/instances").await.json();
    let one = &instances["instances"]["c0ffee-backend-1"];
    assert_eq!(one["service"], "backend");
    assert!(close(&one["metrics"]["cpu_avg"], 0.3), "{instances}");
    assert_eq!(
        instances["instances"]["c0ffee-frontend-1"]["metrics"],
        json!({})
    );
    for (id, container) in [
        ("c0ffee-backend-1", "c0ffee-backend-1"),
        ("backend-1", "c0ffee-backend-1"),
        ("c0ffee-fronte", "c0ffee-frontend-1"),
    ] {
        let reply = api.get(&format!("/gru/v1/stats/instances/{id}")).await;
        assert_eq!(reply.status, 200, "{id}: {reply:?}");
        assert_eq!(reply.json()["id"], container, "{id}");
    }
    // Too short a prefix, an ambiguous one, and an unknown id name nothing.
    for id in ["c0ffee", "c0ffee-backen", "nosuch"] {
        let reply = api.get(&format!("/gru/v1/stats/instances/{id}")).await;
        assert_eq!(reply.status, 404, "{id}: {reply:?}");
    }

    // The node as a whole.
    let system = api.get("/gru/v1/stats/system").await.json();
    assert_eq!(system["instances"], 4);
    assert!(close(&system["metrics"]["cpu_avg"], 0.3), "{system}");
    assert!(system["metrics"].get("mem_avg").is_none(), "{system}");
    let system = api.get("/gru/v1/analytics/system").await.json();
    assert!(close(&system["analytics"]["cpu_avg"], 0.3), "{system}");

    // Analytics per service.
    assert_eq!(
        api.get("/gru/v1/analytics/services").await.json(),
        api.get("/gru/v1/analytics").await.json()
    );
    let backend = api.get("/gru/v1/analytics/services/backend").await.json();
    assert_eq!(backend["analytics"]["cpu_load"], 0.3);
    let cache = api.get("/gru/v1/analytics/services/cache").await.json();
    assert_eq!(cache["analytics"], json!({}));
    assert_eq!(
        api.get("/gru/v1/analytics/services/nosuch").await.status,
        404
    );
}

#[tokio::test]
async fn bad_commands_are_400_or_404_and_never_queued() {
    let mut api = Api::seeded().await;
    let cases: [(&[u8], u16); 7] = [
        (br#"{"name":"reboot"}"#, 400),
        (br#"{"name":"start-service"}"#, 400),
        (br#"{"service":"backend"}"#, 400),
        (b"start", 400),
        (b"", 400),
        (br#"{"name":"start-service","service":"nosuch"}"#, 404),
        (br#"{"name":"stop-service","service":"../etc"}"#, 400),
    ];
    for (body, status) in cases {
        let reply = api.post("/gru/v1/commands", Some(SECRET), body).await;
        assert_eq!(
            reply.status,
            status,
            "{:?}: {reply:?}",
            String::from_utf8_lossy(body)
        );
        assert!(!reply.error().is_empty());
    }
    assert!(api.commands().try_recv().is_err(), "nothing was queued");
}

#[tokio::test]
async fn a_full_or_closed_command_queue_is_503() {
    let mut api = Api::start(seeded_shared(), 1).await;
    let body = br#"{"name":"update"}"#;
    assert_eq!(
        api.post("/gru/v1/commands", Some(SECRET), body)
            .await
            .status,
        202
    );
    let full = api.post("/gru/v1/commands", Some(SECRET), body).await;
    assert_eq!(full.status, 503);
    assert_eq!(full.header("retry-after"), Some("1"));
    assert!(full.error().contains("waiting"), "{full:?}");

    assert_eq!(api.commands().try_recv().ok(), Some(AgentCommand::Update));
    assert_eq!(
        api.post("/gru/v1/commands", Some(SECRET), body)
            .await
            .status,
        202
    );

    api.commands = None;
    let closed = api.post("/gru/v1/commands", Some(SECRET), body).await;
    assert_eq!(closed.status, 503);
    assert!(closed.error().contains("not taking commands"), "{closed:?}");
}

#[tokio::test]
async fn bodies_over_the_cap_are_413() {
    let api = Api::seeded().await;
    let mut at_cap = vec![b' '; MAX_BODY_BYTES];
    at_cap[0] = b'1';
    let reply = api
        .post("/gru/v1/stats/user/backend/m", Some(SECRET), &at_cap)
        .await;
    assert_eq!(reply.status, 200, "a body of exactly the cap is read");

    let over = vec![b' '; MAX_BODY_BYTES + 1];
    for path in ["/gru/v1/commands", "/gru/v1/stats/user/backend/m"] {
        let reply = api.post(path, Some(SECRET), &over).await;
        assert_eq!(reply.status, 413, "{path}");
        assert!(!reply.error().is_empty());
    }

    // Without a Content-Length the cap applies as the chunks arrive.
    let mut request = format!(
        "POST /gru/v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..(MAX_BODY_BYTES / 4096 + 2) {
        request.extend_from_slice(b"1000\r\n");
        request.extend_from_slice(&[b' '; 4096]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(api.addr, &request).await.expect("an answer");
    assert_eq!(reply.status, 413);
    assert_eq!(api.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let api = Api::seeded().await;
    for path in [
        "/",
        "/gru/v1",
        "/gru/v1/",
        "/gru/v2/node",
        "/gru/v1/node/extra",
        "/gru/v1/stats/user/a/b/c",
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.error().contains("no route"), "{path}: {reply:?}");
    }
    let reply = send(api.addr, "DELETE", "/gru/v1/node", &[], None).await;
    assert_eq!(reply.status, 405);
    assert!(reply.error().contains("DELETE"), "{reply:?}");
    let reply = api.get("/gru/v1/commands").await;
    assert_eq!(reply.status, 405);
    let reply = api.post("/gru/v1/node", Some(SECRET), b"{}").await;
    assert_eq!(reply.status, 405);
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
const SEGMENTS: [&str; 22] = [
    "gru",
    "v1",
    "node",
    "services",
    "stats",
    "user",
    "analytics",
    "policies",
    "decisions",
    "actions",
    "shared",
    "commands",
    "healthz",
    "backend",
    "cache",
    "queue_len",
    "..",
    ".",
    "%00",
    "%ff%fe",
    "%2F",
    "",
];
const COMMANDS: [&str; 6] = [
    r#"{"name":"start"}"#,
    r#"{"name":"stop"}"#,
    r#"{"name":"update"}"#,
    r#"{"name":"start-service","service":"backend"}"#,
    r#"{"Name":"start","Target":"service","Object":"backend"}"#,
    r#"{"Name":"update","Target":"node-cpumax","Object":7}"#,
];
const BODIES: [&str; 16] = [
    "1",
    "-0.0",
    "1e308",
    "1e999",
    "{\"value\": 1}",
    "{\"value\": \"x\"}",
    "{\"name\":\"start\"}",
    "{\"name\":\"start-service\",\"service\":\"backend\"}",
    "{\"name\":\"stop-service\",\"service\":\"\"}",
    "{\"name\":null}",
    "[]",
    "null",
    "\"\u{0}\"",
    "{\"a\":",
    "99999999999999999999999999999999999999",
    "\u{feff}1",
];

/// The API's own routes, with placeholders filled at random, so that a good share of the
/// requests reach the handlers rather than the router's 404.
const ROUTES: [&str; 17] = [
    "/healthz",
    "/gru/v1/node",
    "/gru/v1/services",
    "/gru/v1/stats",
    "/gru/v1/stats/services/{}",
    "/gru/v1/stats/instances/{}",
    "/gru/v1/stats/system",
    "/gru/v1/analytics/services/{}",
    "/gru/v1/analytics",
    "/gru/v1/policies",
    "/gru/v1/decisions",
    "/gru/v1/actions",
    "/gru/v1/shared",
    // Twice each: the state-changing routes have the most to check.
    "/gru/v1/commands",
    "/gru/v1/commands",
    "/gru/v1/stats/user/{}/{}",
    "/gru/v1/stats/user/{}/{}",
];

/// RFC 3986 `pchar`s plus `/`, `?` and `%`.
const TARGET_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%";

fn random_segment(rng: &mut StdRng) -> String {
    if rng.random_bool(0.7) {
        return SEGMENTS[rng.random_range(0..SEGMENTS.len())].to_owned();
    }
    // Mostly characters a request target may hold (stray percent signs included), so the
    // request reaches the router; now and then any printable ASCII, which hyper refuses.
    let any_printable = rng.random_bool(0.05);
    (0..rng.random_range(0..200))
        .map(|_| {
            if any_printable {
                char::from(rng.random_range(0x21_u8..0x7f))
            } else {
                char::from(TARGET_CHARS[rng.random_range(0..TARGET_CHARS.len())])
            }
        })
        .filter(|c| *c != '#')
        .collect()
}

/// A method and a request target: half the time one of the API's routes with its
/// placeholders filled at random (with the method it takes, mostly), otherwise anything.
fn random_target(rng: &mut StdRng) -> (&'static str, String) {
    let any_method = METHODS[rng.random_range(0..METHODS.len())];
    if rng.random_bool(0.5) {
        let route = ROUTES[rng.random_range(0..ROUTES.len())];
        let mut path = route.replacen("{}", &random_segment(rng), 1);
        path = path.replacen("{}", &random_segment(rng), 1);
        if rng.random_bool(0.2) {
            path.push_str(&format!("?limit={}", rng.random_range(-5_i64..1_000_000)));
        }
        let method = match (
            rng.random_bool(0.8),
            route.starts_with("/gru/v1/stats/user") || route.ends_with("commands"),
        ) {
            (true, true) => "POST",
            (true, false) => "GET",
            (false, _) => any_method,
        };
        return (method, path);
    }
    let mut path = String::new();
    if rng.random_bool(0.8) {
        path.push_str("/gru/v1");
    }
    for _ in 0..rng.random_range(0..5) {
        path.push('/');
        path.push_str(&random_segment(rng));
    }
    if path.is_empty() || rng.random_bool(0.1) {
        path.push('/');
    }
    if rng.random_bool(0.2) {
        path.push_str(&format!("?limit={}", rng.random_range(-5_i64..1_000_000)));
    }
    (any_method, path)
}

fn random_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => BODIES[rng.random_range(0..BODIES.len())]
            .as_bytes()
            .to_vec(),
        1 => (0..rng.random_range(0..512))
            .map(|_| rng.random::<u8>())
            .collect(),
        2 => {
            // Deep nesting: the parser must refuse it, not overflow its stack.
            let depth = rng.random_range(1..5000);
            let mut body = "[".repeat(depth).into_bytes();
            body.extend(std::iter::repeat_n(b']', depth));
            body
        }
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_thousand_random_requests_get_no_server_error() {
    let mut api = Api::start(seeded_shared(), 2).await;
    let mut rng = StdRng::seed_from_u64(0x0067_7275) /* "gru" */;
    let mut statuses = BTreeMap::new();
    for i in 0..1000 {
        if i == 500 {
            // The loop takes its commands once, halfway: both 202 and 503 come up.
            while api.commands().try_recv().is_ok() {}
        }
        let (method, path) = random_target(&mut rng);
        let auth = match rng.random_range(0..3) {
            0 => None,
            1 => Some(format!("Bearer {SECRET}")),
            _ => Some("Bearer wrong".to_owned()),
        };
        let body = if path.ends_with("/commands") && rng.random_bool(0.5) {
            COMMANDS[rng.random_range(0..COMMANDS.len())]
                .as_bytes()
                .to_vec()
        } else {
            random_body(&mut rng)
        };
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: gru\r\nConnection: close\r\n");
        if let Some(auth) = &auth {
            request.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if rng.random_bool(0.5) {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut request = request.into_bytes();
        request.extend_from_slice(&body);

        let reply = exchange(api.addr, &request)
            .await
            .unwrap_or_else(|| panic!("request {i} ({method} {path}) got no answer"));
        assert!(
            reply.status < 500 || reply.status == 503,
            "request {i}: {method} {path} with {:?} → {reply:?}",
            String::from_utf8_lossy(&body)
        );
        // Every error the API writes is JSON; only hyper's own refusal of a request
        // it cannot parse comes back empty.
        if reply.status >= 400 && !reply.body.is_empty() {
            reply.error();
        }
        if !(reply.status == 400 && reply.body.is_empty()) {
            *statuses.entry(reply.status).or_insert(0_u32) += 1;
        }
    }
    // The mix reached the handlers (hyper's own refusals are not counted), not only the
    // router's 404.
    for status in [200, 202, 400, 401, 403, 404, 405, 503] {
        assert!(
            statuses.contains_key(&status),
            "no {status} in {statuses:?}"
        );
    }
    assert_eq!(
        api.get("/healthz").await.status,
        200,
        "the server still answers"
    );
}

/// `node` as a peer of `api`'s agent, registered at `port` on loopback.
fn add_peer(api: &Api, node: &str, port: u16, active: bool) {
    api.shared.knowledge().peers.nodes.insert(
        node.to_owned(),
        gru_agent::runtime::state::Peer {
            address: "127.0.0.1".to_owned(),
            port,
            scheme: Default::default(),
            active,
            base_services: vec!["cache".to_owned()],
        },
    );
}

#[tokio::test]
async fn the_console_is_served_and_loads_nothing_from_elsewhere() {
    let api = Api::seeded().await;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        let text = String::from_utf8(reply.body).expect("UTF-8");
        // The only absolute URL an asset may hold is SVG's namespace: no CDN, no font
        // service, no tracker (the browser may have no internet).
        let elsewhere: Vec<&str> = text
            .match_indices("http")
            .map(|(i, _)| &text[i..text.len().min(i + 40)])
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .filter(|url| !url.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{path} loads from elsewhere: {elsewhere:?}"
        );
    }
    let index = api.get("/ui").await;
    let policy = index.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = String::from_utf8_lossy(&index.body);
    assert!(html.contains("src=\"/ui/app.js\"") && html.contains("href=\"/ui/app.css\""));
}

#[tokio::test]
async fn service_discovery_lists_every_registered_node_with_its_labels() {
    let api = Api::seeded().await;
    assert_eq!(api.get("/gru/v1/sd").await.json(), json!([]));
    add_peer(&api, "node-1", 8080, true);
    add_peer(&api, "node-2", 8081, false);
    let groups = api.get("/gru/v1/sd").await.json();
    assert_eq!(
        groups,
        json!([
            {"targets": ["127.0.0.1:8080"],
             "labels": {"cluster": "demo", "node": "node-1", "__metrics_path__": "/metrics"}},
            {"targets": ["127.0.0.1:8081"],
             "labels": {"cluster": "demo", "node": "node-2", "__metrics_path__": "/metrics"}},
        ]),
        "an inactive node's agent still serves /metrics: it is a target"
    );
}

#[tokio::test]
async fn the_cluster_overview_asks_every_node_and_says_why_one_is_silent() {
    let api = Api::seeded().await;
    add_peer(&api, "node-1", api.addr.port(), true);
    // Nothing listens there: the node is listed, with why it has no answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    drop(silent);
    add_peer(&api, "node-2", silent_port, false);
    let overview = api.get("/gru/v1/cluster").await.json();
    assert_eq!(overview["cluster"], "demo");
    assert_eq!(overview["served_by"], "node-1");
    assert!(overview["services"]["frontend"]["min_instances"].is_u64());
    let nodes = overview["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    let (one, two) = (&nodes[0], &nodes[1]);
    assert_eq!(one["node"], "node-1");
    assert_eq!(one["error"], Value::Null, "{one}");
    assert_eq!(
        one["services"]["services"]["backend"]["instances"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "node-1's own /gru/v1/services: {one}"
    );
    assert!(one["actions"]["actions"].is_array(), "{one}");
    assert!(one["decisions"].is_array(), "{one}");
    assert_eq!(two["node"], "node-2");
    assert_eq!(two["active"], false);
    assert!(
        two["error"]
            .as_str()
            .is_some_and(|e| e.contains(&silent_port.to_string())),
        "{two}"
    );
    assert_eq!(two["services"], Value::Null);
}

#[tokio::test]
async fn commands_through_the_cluster_route_need_the_secret_and_reach_the_node() {
    let mut api = Api::seeded().await;
    add_peer(&api, "node-1", api.addr.port(), true);
    let path = "/gru/v1/cluster/nodes/node-1/commands";
    let body = br#"{"name":"start-service","service":"backend"}"#;
    assert_eq!(api.post(path, None, body).await.status, 401);
    let wrong = "0f1e2d3c4b5a69788796a5b4c3d2e1f1";
    assert_eq!(api.post(path, Some(wrong), body).await.status, 403);
    assert!(
        api.commands().try_recv().is_err(),
        "refused commands reach no node"
    );
    let unknown = api
        .post("/gru/v1/cluster/nodes/node-9/commands", Some(SECRET), body)
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    // The node's own answer comes back: a service it does not know is its 404.
    let refused = api
        .post(
            path,
            Some(SECRET),
            br#"{"name":"start-service","service":"nope"}"#,
        )
        .await;
    assert_eq!(refused.status, 404, "{refused:?}");
    let accepted = api.post(path, Some(SECRET), body).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    assert_eq!(
        api.commands().try_recv().ok(),
        Some(AgentCommand::StartService {
            service: "backend".to_owned()
        })
    );
}

#[tokio::test]
async fn history_holds_acting_decisions_and_answers_what_is_newer() {
    let api = Api::seeded().await;
    let everything = api.get("/gru/v1/history").await.json();
    assert_eq!(everything["span_ms"], 900_000);
    let marks = everything["decisions"]
        .as_array()
        .expect("decisions")
        .clone();
    assert!(
        marks.len() >= 2,
        "the seeded scale-outs are marks: {marks:?}"
    );
    assert!(
        marks.iter().all(|d| d["action"]["kind"] != "none"),
        "no-action decisions are not marks: {marks:?}"
    );
    let newest = {
        let k = api.shared.knowledge();
        k.decisions
            .iter()
            .filter(|d| !d.action.is_none())
            .map(|d| d.at)
            .max()
    };
    let Millis(newest) = newest.expect("seeded scale-outs");
    let after = api
        .get(&format!("/gru/v1/history?since={}", newest - 1))
        .await
        .json();
    assert_eq!(after["decisions"].as_array().map(Vec::len), Some(1));
    let after = api
        .get(&format!("/gru/v1/history?since={newest}&samples=false"))
        .await
        .json();
    assert_eq!(after["decisions"], json!([]));
    assert_eq!(after["samples"], json!([]));
    let bad = api.get("/gru/v1/history?since=yesterday").await;
    assert_eq!(bad.status, 400, "{bad:?}");
}
