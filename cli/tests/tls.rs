//! TLS between agents (issue 15, part 1) on real agents and a real etcd, driven through
//! the real `gru` binary, with `curl` and `openssl` as outside clients.
//!
//! * `a_tls_cluster_gossips_and_refuses_peers_without_a_valid_certificate`: three agents
//!   with node certificates (two from `gru tls cert create`, one made with openssl from the
//!   same CA) gossip and answer `gru manage --tls-ca`; an agent with another CA's
//!   certificate and one without TLS get no exchange through, both ways, and the refusals
//!   are counted; a raw gossip request without a certificate, with a certificate of
//!   another node, of an unregistered node, of another CA or an expired one is refused
//!   (and a correct one, as the control, accepted); `gru manage` with a wrong CA fails
//!   naming the node and the reason; `gru join` with an expired certificate or one for
//!   another name exits 64; `gru join` without TLS warns.
//! * `tls_files_are_private_and_never_overwritten_without_force`: `gru tls ca create` and
//!   `cert create` (no etcd).
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gru_agent::gossip::wire;
use serde_json::Value;
use support::agents::Agent;
use support::cluster::Cluster;
use support::configs::{QUIET_POLICY, TestConfig};
use support::{epoch_ms, gru, openssl, text};
use testkit::{Component, figure, require, wait_until};

/// Gossip every second with up to 5 friends: each agent meets every other often.
const CONFIG: &str = r#"{"Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "greedy"},
    "Communication": {"LoopTimeInterval": 1, "MaxFriends": 5},
    "Discovery": {"TTL": 3}}"#;

/// How long gossip gets to show what is checked (a round a second).
const GOSSIP_WAIT: Duration = Duration::from_secs(30);

/// `gru tls ...` (no etcd needed), asserted to exit with `code`.
#[track_caller]
fn gru_tls(args: &[&str], code: i32) -> std::process::Output {
    let out = gru("http://127.0.0.1:1").args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "gru {args:?}\n{}",
        text(&out)
    );
    out
}

/// The PKI of the test: the cluster's CA (gru), another CA (openssl), and the files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca/ca.pem")
    }

    /// `<name>.pem`, `<name>-key.pem` by `gru tls cert create --node`.
    fn gru_node(&self, name: &str) {
        gru_tls(
            &[
                "tls",
                "cert",
                "create",
                "--node",
                name,
                "--ip",
                "127.0.0.1",
                "--ca-dir",
                self.path("ca").to_str().unwrap(),
                "--out",
                self.dir.path().to_str().unwrap(),
            ],
            0,
        );
    }

    /// `<file>.pem`, `<file>-key.pem` for node name `name`, made with openssl and signed by
    /// the CA `ca` (`ca.pem`/`ca-key.pem` in `ca_dir`), valid `days` (negative: expired).
    fn openssl_node(&self, file: &str, name: &str, ca_dir: &str, days: i32) {
        let dir = self.dir.path();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{file}-key.pem"),
                "-out",
                &format!("{file}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(
            dir.join(format!("{file}.ext")),
            format!(
                "subjectAltName=DNS:{name},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                &format!("{ca_dir}/ca.pem"),
                "-CAkey",
                &format!("{ca_dir}/ca-key.pem"),
                "-CAcreateserial",
                "-days",
                &days.to_string(),
                "-extfile",
                &format!("{file}.ext"),
                "-out",
                &format!("{file}.pem"),
            ],
        );
    }

    fn cert(&self, file: &str) -> (String, String) {
        (
            self.path(&format!("{file}.pem")).display().to_string(),
            self.path(&format!("{file}-key.pem")).display().to_string(),
        )
    }
}

fn make_pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    let dir = pki.dir.path();
    gru_tls(
        &[
            "tls",
            "ca",
            "create",
            "--dir",
            pki.path("ca").to_str().unwrap(),
        ],
        0,
    );
    // Another CA, made with openssl, for the agent and the clients that must be refused.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    openssl(
        &dir.join("other"),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "10",
            "-subj",
            "/CN=other CA",
        ],
    );
    for node in ["n1", "n2", "n9"] {
        pki.gru_node(node);
    }
    // n3: an operator-supplied certificate, made with openssl from the cluster's CA.
    let ca_dir = pki.path("ca").display().to_string();
    pki.openssl_node("n3", "n3", &ca_dir, 30);
    let other_dir = pki.path("other").display().to_string();
    pki.openssl_node("n4", "n4", &other_dir, 30);
    pki.openssl_node("expired", "n3", &ca_dir, -1);
    gru_tls(
        &[
            "tls",
            "cert",
            "create",
            "--client",
            "alice",
            "--ca-dir",
            &ca_dir,
            "--out",
            dir.to_str().unwrap(),
        ],
        0,
    );
    pki
}

/// A POST's headers and body.
type Post<'a> = (&'a [(&'a str, String)], &'a [u8]);

/// `curl` to an agent over TLS, verifying it as `node` against `ca`, presenting `cert`
/// (cert, key) when given. Returns (exit code, HTTP status, body, TLS handshake seconds).
fn curl(
    port: u16,
    node: &str,
    ca: &Path,
    cert: Option<&(String, String)>,
    method_and_body: Option<Post<'_>>,
    path: &str,
) -> (i32, u16, String, f64) {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "10", "--resolve"])
        .arg(format!("{node}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(ca)
        .arg("-o")
        .arg(out_file.path())
        .args(["-w", "%{http_code} %{time_connect} %{time_appconnect}"]);
    if let Some((cert, key)) = cert {
        cmd.args(["--cert", cert, "--key", key]);
    }
    let body_file = tempfile::NamedTempFile::new().unwrap();
    if let Some((headers, body)) = method_and_body {
        std::fs::write(body_file.path(), body).unwrap();
        for (name, value) in headers {
            cmd.arg("-H").arg(format!("{name}: {value}"));
        }
        cmd.arg("-H")
            .arg(format!("content-type: {}", wire::CONTENT_TYPE))
            .arg("--data-binary")
            .arg(format!("@{}", body_file.path().display()));
    }
    let out = cmd
        .arg(format!("https://{node}:{port}{path}"))
        .output()
        .expect("curl (apt-get install curl)");
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = written.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let connect: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let appconnect: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let body = std::fs::read_to_string(out_file.path()).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        status,
        body,
        (appconnect - connect).max(0.0),
    )
}

/// `GET path` of a TLS agent as JSON (no client certificate: reads need none).
fn tls_json(agent: &Agent, ca: &Path, path: &str) -> Option<Value> {
    let (0, 200, body, _) = curl(agent.port, &agent.node, ca, None, None, path) else {
        return None;
    };
    serde_json::from_str(&body).ok()
}

/// The gossip stats of an agent (over TLS when `ca` is given).
fn gossip_stats(agent: &Agent, ca: Option<&Path>) -> Value {
    let view = match ca {
        Some(ca) => tls_json(agent, ca, "/gru/v1/gossip"),
        None => agent.get_json("/gru/v1/gossip"),
    };
    view.unwrap_or_default()
}

fn count(stats: &Value, field: &str) -> u64 {
    stats["stats"][field].as_u64().unwrap_or(0)
}

fn reason(stats: &Value, map: &str, reason: &str) -> u64 {
    stats["stats"][map][reason].as_u64().unwrap_or(0)
}

/// A push from `from`, signed with the cluster key now: (headers, body).
fn gossip_from(from: &str, key: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = support::gossip_push(from);
    let at = epoch_ms().to_string();
    let nonce = format!("{:032x}", rand::random::<u128>());
    let headers = vec![
        (wire::HEADER_TIMESTAMP, at.clone()),
        (wire::HEADER_NONCE, nonce.clone()),
        (wire::HEADER_SIGNATURE, wire::sign(key, &at, &nonce, &body)),
    ];
    (headers, body)
}

/// Starts `node` with the TLS files `cert` (and `ca`), waits until it answers over TLS.
fn spawn_tls(bed: &Cluster, node: &str, cert: &(String, String), ca: &Path) -> Agent {
    let agent = bed
        .agent(node)
        .env("GRU_TLS_CERT", cert.0.clone())
        .env("GRU_TLS_KEY", cert.1.clone())
        .env("GRU_TLS_CA", ca.display().to_string())
        .launch();
    let up = wait_until(Duration::from_secs(20), || {
        curl(agent.port, node, ca, None, None, "/healthz").1 == 200
    });
    assert!(
        up.is_some(),
        "{node} did not come up over TLS:\n{}",
        agent.log_text()
    );
    agent
}

#[test]
fn a_tls_cluster_gossips_and_refuses_peers_without_a_valid_certificate() {
    let test = "a_tls_cluster_gossips_and_refuses_peers_without_a_valid_certificate";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let pki = make_pki();
    let ca = pki.ca();
    let other_ca = pki.path("other/ca.pem");
    let bed = Cluster::start("tls", TestConfig::new(CONFIG, QUIET_POLICY));

    // A certificate for another name, or an expired one: the agent does not start.
    for (cert, node, why) in [("n1", "n5", "n5"), ("expired", "n3", "expired")] {
        let (cert, key) = pki.cert(cert);
        let out = gru(&bed.endpoints())
            .args([
                "join",
                &bed.name,
                "--name",
                node,
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert", &cert, "--tls-key", &key, "--tls-ca"])
            .arg(&ca)
            .output()
            .unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(64), "{shown}");
        assert!(
            shown.contains(why) && shown.contains("gru tls cert create"),
            "{shown}"
        );
    }

    let good: Vec<Agent> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|node| spawn_tls(&bed, node, &pki.cert(node), &ca))
        .collect();
    // The scheme is published where peers and manage find the address.
    let record = bed.etcd.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("/gru/{}/nodes/n3/config", bed.name),
    ]);
    assert!(record.contains(r#""Scheme":"https""#), "{record}");

    // Gossip among the three (n3's certificate is openssl's): exchanges succeed.
    let exchanged = wait_until(GOSSIP_WAIT, || {
        good.iter().all(|agent| {
            let stats = gossip_stats(agent, Some(&ca));
            count(&stats, "sent") >= count(&stats, "failed") + 3
                && stats["reports"].as_object().is_some_and(|r| r.len() == 3)
        })
    });
    assert!(
        exchanged.is_some(),
        "no gossip over TLS: {:?}\n{}",
        good.iter()
            .map(|a| gossip_stats(a, Some(&ca)))
            .collect::<Vec<_>>(),
        support::agents::logs_tail(&good, 20)
    );
    let handshakes: Vec<f64> = (0..10)
        .map(|_| curl(good[0].port, "n1", &ca, None, None, "/healthz").3)
        .collect();
    figure(
        test,
        "tls_handshake_ms_mean_of_10",
        format!("{:.2}", handshakes.iter().sum::<f64>() / 10.0 * 1000.0),
    );

    // gru manage verifies the agents against the CA and lists them.
    let manage = |ca: &Path| {
        gru(&bed.endpoints())
            .args(["manage", "--tls-ca"])
            .arg(ca)
            .args(["-c", &format!("use {}; list nodes", bed.name)])
            .output()
            .unwrap()
    };
    let listed = manage(&ca);
    let shown = text(&listed);
    assert_eq!(listed.status.code(), Some(0), "{shown}");
    for node in ["n1", "n2", "n3"] {
        assert!(shown.contains(node), "{shown}");
    }
    assert!(!shown.contains("TLS"), "{shown}");
    // With another CA: a clear error naming the node and the reason.
    let refused = manage(&other_ca);
    let shown = text(&refused);
    assert!(
        shown.contains("TLS with node n1 refused")
            && shown.contains("not signed by this cluster's CA"),
        "{shown}"
    );
    // Without a CA: the agents serve HTTPS, says the error.
    let plain = gru(&bed.endpoints())
        .args(["manage", "-c", &format!("use {}; list nodes", bed.name)])
        .env_remove("GRU_TLS_CA")
        .output()
        .unwrap();
    assert!(text(&plain).contains("serves HTTPS"), "{}", text(&plain));

    // A fourth node with another CA's certificate (its own CA trusted) and a fifth without
    // TLS: neither gets an exchange through, and neither do the three with them.
    let n4 = spawn_tls(&bed, "n4", &pki.cert("n4"), &other_ca);
    let n6 = bed.agent("n6").spawn();
    assert!(
        n6.log_text().contains("TLS is off") && n6.log_text().contains("--tls-cert"),
        "no warning without TLS:\n{}",
        n6.log_text()
    );
    let before: Vec<(u64, u64)> = good
        .iter()
        .map(|a| {
            let stats = gossip_stats(a, Some(&ca));
            (count(&stats, "sent"), count(&stats, "failed"))
        })
        .collect();
    let refused_both_ways = wait_until(GOSSIP_WAIT, || {
        let n4_stats = gossip_stats(&n4, Some(&other_ca));
        let n6_stats = gossip_stats(&n6, None);
        let tried = count(&n4_stats, "sent") >= 3 && count(&n6_stats, "sent") >= 3;
        let good_stats: Vec<Value> = good.iter().map(|a| gossip_stats(a, Some(&ca))).collect();
        let sum = |map: &str, r: &str| good_stats.iter().map(|s| reason(s, map, r)).sum::<u64>();
        tried && sum("tls_failed", "unknown_ca") >= 2 && sum("tls_failed", "plain_http_peer") >= 2
    });
    let n4_stats = gossip_stats(&n4, Some(&other_ca));
    let n6_stats = gossip_stats(&n6, None);
    let good_stats: Vec<Value> = good.iter().map(|a| gossip_stats(a, Some(&ca))).collect();
    assert!(
        refused_both_ways.is_some(),
        "n4 {n4_stats}\nn6 {n6_stats}\ngood {good_stats:?}"
    );
    for (name, stats) in [("n4", &n4_stats), ("n6", &n6_stats)] {
        assert_eq!(
            count(stats, "sent"),
            count(stats, "failed"),
            "{name} got an exchange through: {stats}"
        );
        let reports = stats["reports"].as_object().cloned().unwrap_or_default();
        assert!(
            reports.keys().all(|node| node == name),
            "{name} learned of others: {stats}"
        );
        figure(
            test,
            &format!("{name}_gossip_exchanges_failed"),
            count(stats, "failed"),
        );
    }
    assert!(
        reason(&n4_stats, "tls_failed", "unknown_ca") > 0,
        "{n4_stats}"
    );
    for (agent, (stats, (sent_before, failed_before))) in
        good.iter().zip(good_stats.iter().zip(&before))
    {
        let reports = stats["reports"].as_object().cloned().unwrap_or_default();
        assert!(
            !reports.contains_key("n4") && !reports.contains_key("n6"),
            "{} took a report from a refused node: {stats}",
            agent.node
        );
        let ok = count(stats, "sent") - count(stats, "failed");
        assert!(
            ok > sent_before - failed_before,
            "{}: no exchange succeeded with the bad nodes about: {stats}",
            agent.node
        );
        figure(test, &format!("{}_gossip_exchanges_ok", agent.node), ok);
        figure(
            test,
            &format!("{}_gossip_exchanges_failed", agent.node),
            count(stats, "failed"),
        );
        figure(
            test,
            &format!("{}_tls_failed", agent.node),
            &stats["stats"]["tls_failed"],
        );
    }

    // The peer route itself, asked by an outside client: only a registered node's
    // certificate, valid for the sender the message names, gets in.
    let key = &bed.secret;
    let n1 = &good[0];
    let post = |from: &str, cert: Option<&(String, String)>| {
        let (headers, body) = gossip_from(from, key);
        curl(
            n1.port,
            "n1",
            &ca,
            cert,
            Some((&headers, &body)),
            wire::GOSSIP_PATH,
        )
    };
    let n2_cert = pki.cert("n2");
    let (code, status, body, _) = post("n2", Some(&n2_cert));
    assert_eq!((code, status), (0, 200), "the control was refused: {body}");
    let cases = [
        ("no certificate", "n2", None, "no_client_certificate"),
        (
            "n2's certificate, sent as n5",
            "n5",
            Some(pki.cert("n2")),
            "certificate_not_for_sender",
        ),
        (
            "an unregistered node's",
            "n9",
            Some(pki.cert("n9")),
            "sender_not_registered",
        ),
        (
            "an operator's",
            "n2",
            Some(pki.cert("alice")),
            "certificate_not_for_sender",
        ),
    ];
    for (case, from, cert, why) in &cases {
        let rejected_before = reason(&gossip_stats(n1, Some(&ca)), "rejected", why);
        let (code, status, body, _) = post(from, cert.as_ref());
        assert_eq!((code, status), (0, 403), "{case}: {body}");
        assert!(body.contains(why), "{case}: {body}");
        let rejected = reason(&gossip_stats(n1, Some(&ca)), "rejected", why);
        assert_eq!(rejected, rejected_before + 1, "{case}: not counted");
    }
    for (case, cert, why) in [
        ("another CA's certificate", pki.cert("n4"), "unknown_ca"),
        (
            "an expired certificate",
            pki.cert("expired"),
            "certificate_expired",
        ),
    ] {
        let refused_before = reason(&gossip_stats(n1, Some(&ca)), "tls_refused", why);
        let (code, status, body, _) = post("n3", Some(&cert));
        assert!(code != 0 && status == 0, "{case}: {code} {status} {body}");
        // The server counts once the handshake ends on its side, maybe after curl's.
        let counted = wait_until(Duration::from_secs(5), || {
            reason(&gossip_stats(n1, Some(&ca)), "tls_refused", why) > refused_before
        });
        let refused = reason(&gossip_stats(n1, Some(&ca)), "tls_refused", why);
        assert!(counted.is_some(), "{case}: not counted");
        assert_eq!(
            refused,
            refused_before + 1,
            "{case}: counted more than once"
        );
    }
    let n1_stats = gossip_stats(n1, Some(&ca));
    figure(
        test,
        "n1_tls_handshakes_refused",
        &n1_stats["stats"]["tls_refused"],
    );
    figure(test, "n1_gossip_rejected", &n1_stats["stats"]["rejected"]);
    // A command signed with the cluster key needs a certificate; with the operator's, it
    // is accepted.
    let command = br#"{"Name": "stop", "Target": "agent"}"#;
    let signer = gru_agent::signing::Signer::ClusterKey {
        key: key.clone(),
        on_behalf_of: "ops".into(),
    };
    let signed = |body: &[u8]| {
        let nonce = format!("{:032x}", rand::random::<u128>());
        signer.headers("POST", "/gru/v1/commands", body, epoch_ms(), &nonce)
    };
    let (_, status, body, _) = curl(
        n1.port,
        "n1",
        &ca,
        None,
        Some((&signed(command), command)),
        "/gru/v1/commands",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    let alice = pki.cert("alice");
    let (_, status, body, _) = curl(
        n1.port,
        "n1",
        &ca,
        Some(&alice),
        Some((&signed(command), command)),
        "/gru/v1/commands",
    );
    assert_eq!(status, 202, "{body}");

    // Passed on by n1 to n3 over mutual TLS (n3's certificate checked for its name).
    let path = "/gru/v1/cluster/nodes/n3/commands";
    let signed_for = |body: &[u8]| {
        let nonce = format!("{:032x}", rand::random::<u128>());
        signer.headers("POST", path, body, epoch_ms(), &nonce)
    };
    let (_, status, body, _) = curl(
        n1.port,
        "n1",
        &ca,
        Some(&alice),
        Some((&signed_for(command), command)),
        path,
    );
    assert_eq!(status, 202, "passed on to n3: {body}");
    // The whole cluster as n1 gathers it: the three answer over TLS, the other CA's does not.
    let overview = tls_json(n1, &ca, "/gru/v1/cluster").unwrap();
    for node in overview["nodes"].as_array().unwrap() {
        let (name, error) = (node["node"].as_str().unwrap(), &node["error"]);
        match name {
            "n1" | "n2" | "n3" => assert!(error.is_null(), "{node}"),
            "n4" => assert!(error.as_str().unwrap().contains("TLS"), "{node}"),
            _ => {}
        }
    }
    // A liveness challenge gets a proof for a peer's certificate only.
    let challenge = "/healthz?challenge=0123456789abcdef0123456789abcdef";
    for (cert, proven) in [(Some(&n2_cert), true), (Some(&alice), false), (None, false)] {
        let (_, status, body, _) = curl(n1.port, "n1", &ca, cert, None, challenge);
        assert_eq!(status, 200, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["proof"].is_string(), proven, "{body}");
    }
    drop((n4, n6, good));
}

#[test]
fn tls_files_are_private_and_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = ca_dir.to_str().unwrap();
    gru_tls(&["tls", "ca", "create", "--dir", ca], 0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    let key_before = std::fs::read(ca_dir.join("ca-key.pem")).unwrap();
    let again = gru_tls(&["tls", "ca", "create", "--dir", ca], 1);
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(
        std::fs::read(ca_dir.join("ca-key.pem")).unwrap(),
        key_before
    );
    gru_tls(&["tls", "ca", "create", "--dir", ca, "--force"], 0);
    assert_ne!(
        std::fs::read(ca_dir.join("ca-key.pem")).unwrap(),
        key_before
    );

    let out = dir.path().to_str().unwrap();
    let node = [
        "tls",
        "cert",
        "create",
        "--node",
        "n1",
        "--ip",
        "10.0.0.1",
        "--dns",
        "n1.example",
    ];
    let node: Vec<&str> = node
        .into_iter()
        .chain(["--ca-dir", ca, "--out", out])
        .collect();
    gru_tls(&node, 0);
    assert_eq!(mode(&dir.path().join("n1-key.pem")), 0o600);
    gru_tls(&node, 1);
    // The certificate names the node, its address and its other name.
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("n1.pem"))
        .output()
        .expect("openssl");
    let shown = String::from_utf8_lossy(&shown.stdout);
    for want in [
        "DNS:n1",
        "DNS:n1.example",
        "IP Address:10.0.0.1",
        "TLS Web Client Authentication",
    ] {
        assert!(shown.contains(want), "{want} missing:\n{shown}");
    }
    // Neither --node nor --client: a usage error.
    gru_tls(&["tls", "cert", "create", "--ca-dir", ca], 64);
}
