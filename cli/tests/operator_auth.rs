//! Operator tokens and key rotation on real agents and a real etcd (issue 15, parts 2
//! and 3), driven through the real `gru` binary: `gru token create|list|revoke`,
//! `gru manage` with GRU_TOKEN, `gru secret rotate`.
//!
//! * `tokens_are_refused_when_read_only_expired_revoked_or_replayed`: a read token cannot
//!   `start service`, an expired and a revoked token are refused, a replayed command is
//!   refused, and `events` records who sent each command.
//! * `a_key_rotation_under_gossip_refuses_nothing_and_then_only_the_new_key_is_accepted`:
//!   3 agents gossiping every second through a rotation, while they run 3 instances of a
//!   service under steady load from a discovery-fed load generator: no message refused for
//!   its signature, no exchange failed, no request failed; after the overlap, a message
//!   signed with the old key is refused (403).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use common::auth::OperatorToken;
use gru_agent::gossip::wire;
use gru_agent::signing::Signer;
use serde_json::Value;
use support::agents::Agent;
use support::cluster::{Cluster, secret};
use support::configs::{QUIET_POLICY, TestConfig, config_for_agents};
use support::load::Load;
use support::{epoch_ms, expect_code, gru, tail, text};
use testkit::{Component, figure, require, require_workload_image, wait_until};

/// Raw HTTP/1.0 POST with `headers`: (status, body).
fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let status = raw
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| raw.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// The headers of a request to `path` with `body`, signed now by `signer`.
fn signed(signer: &Signer, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let nonce = format!("{:032x}", rand::random::<u128>());
    signer.headers("POST", path, body, epoch_ms(), &nonce)
}

fn actions(agent: &Agent) -> Vec<Value> {
    agent
        .get_json("/gru/v1/actions?limit=100")
        .and_then(|v| v["actions"].as_array().cloned())
        .unwrap_or_default()
}

/// The commands `agent` recorded as accepted from `by`.
fn commands_by(agent: &Agent, by: &str) -> Vec<String> {
    actions(agent)
        .iter()
        .filter(|a| a["reason"].as_str() == Some(&format!("by {by}")))
        .map(|a| a["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `gru token create <cluster> --role <role> [--ttl] --name <name>`: the token printed.
fn create_token(bed: &Cluster, role: &str, name: &str, ttl: Option<&str>) -> OperatorToken {
    let mut args = vec!["token", "create", &bed.name, "--role", role, "--name", name];
    if let Some(ttl) = ttl {
        args.extend(["--ttl", ttl]);
    }
    let output = expect_code(&bed.endpoints(), &args, 0);
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(
        printed.lines().count(),
        1,
        "stdout is the token alone: {printed}"
    );
    OperatorToken::parse(&printed).unwrap()
}

/// `gru manage --cluster <c> -c <script>` with `token` in GRU_TOKEN (none: unset).
fn manage(bed: &Cluster, token: Option<&OperatorToken>, script: &str) -> std::process::Output {
    let mut command = gru(&bed.endpoints());
    command.args(["manage", "--cluster", &bed.name, "-c", script]);
    match token {
        Some(token) => command.env("GRU_TOKEN", token.encode()),
        None => command.env_remove("GRU_TOKEN"),
    };
    command.output().unwrap()
}

#[test]
fn tokens_are_refused_when_read_only_expired_revoked_or_replayed() {
    let test = "tokens_are_refused_when_read_only_expired_revoked_or_replayed";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let config = TestConfig::new(&config_for_agents(3), QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 0, "MaxInstances": 2,"#,
        testkit::free_port_range(2),
    );
    let bed = Cluster::start("tokens", config);
    let agent = bed.spawn("n1");
    let port = agent.port;

    let ops = create_token(&bed, "operate", "ops", None);
    let viewer = create_token(&bed, "read", "viewer", None);
    let brief = create_token(&bed, "operate", "brief", Some("3s"));
    let brief_made = Instant::now();

    // `token list` names them, with their roles, and never shows a token.
    let listed = expect_code(&bed.endpoints(), &["token", "list", &bed.name], 0);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for (name, role) in [("ops", "operate"), ("viewer", "read"), ("brief", "operate")] {
        assert!(
            listed.lines().any(|l| l.contains(name) && l.contains(role)),
            "{listed}"
        );
    }
    for token in [&ops, &viewer, &brief] {
        let seed = token.encode();
        let seed = seed.rsplit(':').next().unwrap();
        assert!(!listed.contains(&seed[..16]), "a token shows in the list");
    }
    // A second token of the same name is refused: it would replace the first one's key.
    let again = gru(&bed.endpoints())
        .args([
            "token", "create", &bed.name, "--role", "read", "--name", "ops",
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // A read token cannot start a service: the agent refuses it, saying why.
    let refused = manage(&bed, Some(&viewer), "start service web node n1");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("read role"),
        "the refusal does not say why: {}",
        text(&refused)
    );
    // It may read.
    let read = manage(&bed, Some(&viewer), "list nodes; events");
    assert_eq!(read.status.code(), Some(0), "{}", text(&read));

    // An operate token may change things; the agent records who did.
    let stopped = manage(&bed, Some(&ops), "stop agent n1");
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped));
    assert!(
        !String::from_utf8_lossy(&stopped.stderr).contains("no operator token"),
        "{}",
        text(&stopped)
    );
    assert!(
        commands_by(&agent, "ops").contains(&"command stop".to_owned()),
        "{:?}",
        actions(&agent)
    );
    let events = manage(&bed, Some(&viewer), "events 10");
    assert!(
        text(&events).contains("by ops"),
        "`events` does not show who sent the command: {}",
        text(&events)
    );

    // A signed command is accepted once; the same request again is a replay.
    let body = br#"{"name":"start"}"#;
    let headers = signed(&Signer::Token(ops.clone()), "/gru/v1/commands", body);
    let first = post(port, "/gru/v1/commands", &headers, body);
    assert_eq!(first.0, 202, "{first:?}");
    let replayed = post(port, "/gru/v1/commands", &headers, body);
    assert_eq!(
        replayed.0, 409,
        "a replayed command was not refused: {replayed:?}"
    );
    assert!(replayed.1.contains("already received"), "{replayed:?}");
    // Signed for one body, sent with another: refused.
    let other = signed(&Signer::Token(ops.clone()), "/gru/v1/commands", body);
    let (status, answer) = post(port, "/gru/v1/commands", &other, br#"{"name":"stop"}"#);
    assert_eq!(status, 403, "{answer}");
    // The console's route passes the command on, in the operator's name.
    let relay_path = "/gru/v1/cluster/nodes/n1/commands";
    let relayed = post(
        port,
        relay_path,
        &signed(&Signer::Token(ops.clone()), relay_path, body),
        body,
    );
    assert_eq!(relayed.0, 202, "{relayed:?}");
    let by_ops = commands_by(&agent, "ops");
    assert_eq!(
        by_ops.iter().filter(|a| *a == "command start").count(),
        2,
        "the direct and the relayed start, each recorded once as sent by ops: {by_ops:?}"
    );

    // An agent joined with --signed-only (GRU_SIGNED_ONLY) refuses the bearer secret and
    // takes a signed request.
    let strict = bed.agent("n2").env("GRU_SIGNED_ONLY", "true").spawn();
    let bearer = vec![("Authorization", format!("Bearer {}", bed.secret))];
    let (status, answer) = post(strict.port, "/gru/v1/commands", &bearer, body);
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("signed requests only"), "{answer}");
    assert_eq!(
        post(port, "/gru/v1/commands", &bearer, body).0,
        202,
        "n1 takes it"
    );
    let (status, answer) = post(
        strict.port,
        "/gru/v1/commands",
        &signed(&Signer::Token(ops.clone()), "/gru/v1/commands", body),
        body,
    );
    assert_eq!(status, 202, "{answer}");
    drop(strict);

    // The short-lived token works until it expires, then is refused.
    let brief_body = br#"{"name":"update"}"#;
    if brief_made.elapsed() < Duration::from_secs(2) {
        let early = post(
            port,
            "/gru/v1/commands",
            &signed(
                &Signer::Token(brief.clone()),
                "/gru/v1/commands",
                brief_body,
            ),
            brief_body,
        );
        assert_eq!(early.0, 202, "{early:?}");
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(brief_made.elapsed()));
    std::thread::sleep(Duration::from_millis(200));
    let expired = post(
        port,
        "/gru/v1/commands",
        &signed(
            &Signer::Token(brief.clone()),
            "/gru/v1/commands",
            brief_body,
        ),
        brief_body,
    );
    assert_eq!(expired.0, 403, "an expired token was accepted: {expired:?}");
    assert!(expired.1.contains("expired"), "{expired:?}");

    // A revoked token is refused as soon as the agent's watch delivers the deletion.
    expect_code(&bed.endpoints(), &["token", "revoke", &bed.name, "ops"], 0);
    let revoked_at = Instant::now();
    let refused_after = loop {
        let (status, answer) = post(
            port,
            "/gru/v1/commands",
            &signed(&Signer::Token(ops.clone()), "/gru/v1/commands", brief_body),
            brief_body,
        );
        if status == 403 {
            assert!(answer.contains("no token named ops"), "{answer}");
            break revoked_at.elapsed();
        }
        assert_eq!(status, 202, "{answer}");
        // Generous: the watch delivers in milliseconds; 5 s is a broken watch.
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "a revoked token was still accepted after 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    figure(
        test,
        "revoked_token_refused_after_ms",
        refused_after.as_secs_f64() * 1000.0,
    );
    let gone = manage(&bed, Some(&ops), "stop agent n1");
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(
        text(&gone).contains("no token named ops"),
        "{}",
        text(&gone)
    );

    // Without a token, `gru manage` signs with the cluster key from etcd and says so.
    let keyed = manage(&bed, None, "stop agent n1");
    assert_eq!(keyed.status.code(), Some(0), "{}", text(&keyed));
    assert!(
        String::from_utf8_lossy(&keyed.stderr).contains("no operator token"),
        "{}",
        text(&keyed)
    );
    assert!(
        commands_by(&agent, "cluster-key").contains(&"command stop".to_owned()),
        "{:?}",
        actions(&agent)
    );
    // A token that does not parse is a usage error that names where it came from.
    let mut broken = gru(&bed.endpoints());
    broken
        .args(["manage", "--cluster", &bed.name, "-c", "list nodes"])
        .env("GRU_TOKEN", "not-a-token");
    let broken = broken.output().unwrap();
    assert_eq!(broken.status.code(), Some(64), "{}", text(&broken));
    assert!(text(&broken).contains("GRU_TOKEN"), "{}", text(&broken));
    drop(agent);
}

/// `POST /gru/v1/gossip` of a fresh message signed with `key`: the status.
fn gossip_with(port: u16, key: &str) -> u16 {
    let body = support::gossip_push("n9");
    let at = epoch_ms().to_string();
    let nonce = format!("{:032x}", rand::random::<u128>());
    let headers = vec![
        (wire::HEADER_TIMESTAMP, at.clone()),
        (wire::HEADER_NONCE, nonce.clone()),
        (wire::HEADER_SIGNATURE, wire::sign(key, &at, &nonce, &body)),
    ];
    post(port, wire::GOSSIP_PATH, &headers, &body).0
}

/// (exchanges sent, exchanges failed, messages refused for a bad signature) of an agent.
fn gossip_counts(agent: &Agent) -> (u64, u64, u64) {
    let stats = agent
        .get_json("/gru/v1/gossip")
        .map(|v| v["stats"].clone())
        .unwrap_or_default();
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    (
        n(&stats["sent"]),
        n(&stats["failed"]),
        n(&stats["rejected"]["bad_signature"]),
    )
}

#[test]
fn a_key_rotation_under_gossip_refuses_nothing_and_then_only_the_new_key_is_accepted() {
    let test = "a_key_rotation_under_gossip_refuses_nothing_and_then_only_the_new_key_is_accepted";
    if !require(test, Component::Etcd) || !require_workload_image(test) {
        return;
    }
    // The load: 3 instances of web (no scaling: the quiet policy) serving 4 closed-loop
    // clients, from before the rotation until after its overlap.
    let config = TestConfig::new(&config_for_agents(3), QUIET_POLICY);
    config.service(
        "web",
        r#""MinInstances": 3, "MaxInstances": 3,"#,
        testkit::free_port_range(6),
    );
    let bed = Cluster::start("rotate", config);
    let agents = bed.spawn_nodes(3);
    let serving = wait_until(Duration::from_secs(60), || bed.registered("web").len() == 3);
    assert!(serving.is_some(), "web never had 3 instances registered");
    // Without a readiness check a record is published as the container starts, before the
    // workload listens: give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    let load = Load::start(&bed.etcd, &bed.name, "web", 4);
    // Gossip runs: every agent has exchanged with a friend.
    let deadline = Instant::now() + Duration::from_secs(30);
    while agents.iter().any(|a| gossip_counts(a).0 < 3) {
        assert!(Instant::now() < deadline, "the agents do not gossip");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before: Vec<_> = agents.iter().map(gossip_counts).collect();
    let old = bed.secret.clone();

    let overlap = Duration::from_secs(15);
    let rotated = expect_code(
        &bed.endpoints(),
        &["secret", "rotate", &bed.name, "--overlap", "15s"],
        0,
    );
    let rotated_at = Instant::now();
    let new = secret(&bed.etcd, &bed.name);
    assert_ne!(new, old, "{}", text(&rotated));
    // A second rotation during the overlap is refused: it would drop a key in use.
    let again = gru(&bed.endpoints())
        .args(["secret", "rotate", &bed.name, "--overlap", "15s"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // During the overlap both keys are accepted, by every agent.
    std::thread::sleep(Duration::from_millis(500));
    for agent in &agents {
        assert_eq!(
            gossip_with(agent.port, &old),
            200,
            "{}: old key",
            agent.node
        );
        assert_eq!(
            gossip_with(agent.port, &new),
            200,
            "{}: new key",
            agent.node
        );
    }
    // Past the overlap (and a margin for the agents' clocks and a last round).
    std::thread::sleep((overlap + Duration::from_secs(3)).saturating_sub(rotated_at.elapsed()));
    let after: Vec<_> = agents.iter().map(gossip_counts).collect();
    let (requests, failed) = load.stop_counting();
    figure(test, "requests_during_rotation", requests as f64);
    figure(test, "failed_requests_during_rotation", failed.len() as f64);
    assert!(requests > 100, "the load sent only {requests} requests");
    assert!(
        failed.is_empty(),
        "{} of {requests} requests failed during the rotation: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    let mut exchanges = 0;
    for ((agent, b), a) in agents.iter().zip(&before).zip(&after) {
        exchanges += a.0 - b.0;
        assert!(
            a.0 > b.0 + 5,
            "{}: gossip stalled ({b:?} → {a:?})",
            agent.node
        );
        assert_eq!(
            a.2 - b.2,
            0,
            "{}: messages refused for their signature during the rotation\n{}",
            agent.node,
            tail(&agent.log_text(), 30)
        );
        assert_eq!(
            a.1 - b.1,
            0,
            "{}: gossip exchanges failed during the rotation\n{}",
            agent.node,
            tail(&agent.log_text(), 30)
        );
    }
    figure(test, "gossip_exchanges_during_rotation", exchanges as f64);
    figure(test, "refused_bad_signature_during_rotation", 0.0);

    // After the overlap only the new key: the old one is refused, as a bearer too.
    for agent in &agents {
        assert_eq!(
            gossip_with(agent.port, &old),
            403,
            "{}: old key",
            agent.node
        );
        assert_eq!(
            gossip_with(agent.port, &new),
            200,
            "{}: new key",
            agent.node
        );
    }
    let bearer = |key: &str| vec![("Authorization", format!("Bearer {key}"))];
    let body = br#"{"name":"update"}"#;
    assert_eq!(
        post(agents[0].port, "/gru/v1/commands", &bearer(&old), body).0,
        403
    );
    assert_eq!(
        post(agents[0].port, "/gru/v1/commands", &bearer(&new), body).0,
        202
    );
    // Gossip goes on with the new key.
    let settled: Vec<_> = agents.iter().map(gossip_counts).collect();
    std::thread::sleep(Duration::from_secs(4));
    for ((agent, s), now) in agents
        .iter()
        .zip(&settled)
        .zip(agents.iter().map(gossip_counts))
    {
        assert!(now.0 > s.0, "{}: no gossip after the overlap", agent.node);
        assert_eq!(
            now.1, s.1,
            "{}: exchanges failed after the overlap",
            agent.node
        );
    }
    drop(agents);
}
