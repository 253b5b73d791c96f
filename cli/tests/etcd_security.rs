//! etcd over TLS with client certificates, and with user/password, against an etcd started
//! with certificates this test generates (openssl); and no secret in the agent's output.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{gru, openssl, root};
use testkit::{ChildGuard, Component, EtcdCluster, free_port, http_get, require, wait_until};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all v3.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.cnf"),
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=gru-test-ca",
        ],
    );
    for (name, ext) in [("server", "server.cnf"), ("client", "client.cnf")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=gru-{name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                ext,
            ],
        );
    }
}

#[test]
fn tls_with_client_certificates_works_and_is_required() {
    let test = "tls_with_client_certificates_works_and_is_required";
    if !require(test, Component::Etcd) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let child = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
        .current_dir(d)
        .args(["--name", "tls", "--data-dir", "data"])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--initial-cluster", &format!("tls=http://127.0.0.1:{peer}")])
        .args(["--cert-file", "server.pem", "--key-file", "server.key"])
        .args(["--client-cert-auth", "--trusted-ca-file", "ca.pem"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _etcd = ChildGuard::new(child);
    let ca = d.join("ca.pem");
    let cert = d.join("client.pem");
    let key = d.join("client.key");
    let with_certs = |args: &[&str]| {
        gru(&url)
            .arg("--etcd-ca")
            .arg(&ca)
            .arg("--etcd-cert")
            .arg(&cert)
            .arg("--etcd-key")
            .arg(&key)
            .args(args)
            .output()
            .unwrap()
    };
    let created = wait_until(Duration::from_secs(20), || {
        with_certs(&["create", "secure"]).status.success()
    });
    assert!(
        created.is_some(),
        "create over TLS with a client certificate failed"
    );
    let pushed = with_certs(&[
        "config",
        "push",
        "secure",
        root().join("configs/example").to_str().unwrap(),
    ]);
    assert!(pushed.status.success(), "{}", support::text(&pushed));
    let got = with_certs(&["config", "get", "secure", "services"]);
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("frontend"),
        "{}",
        support::text(&got)
    );

    // Without a client certificate the server refuses the connection.
    let refused = gru(&url)
        .arg("--etcd-ca")
        .arg(&ca)
        .args(["config", "get", "secure"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a client without a certificate was let in"
    );
    // Half a key pair is a usage error, said before connecting.
    let half = gru(&url)
        .arg("--etcd-cert")
        .arg(&cert)
        .args(["config", "get", "secure"])
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(64), "{}", support::text(&half));
}

#[test]
fn user_and_password_authenticate_and_never_show() {
    let test = "user_and_password_authenticate_and_never_show";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    const PASSWORD: &str = "pw-7f3a9c-not-for-logs";
    let etcd = EtcdCluster::start();
    etcd.etcdctl(&["user", "add", &format!("root:{PASSWORD}")]);
    etcd.etcdctl(&["auth", "enable"]);
    let e = etcd.endpoints();
    let as_root = |args: &[&str]| {
        gru(&e)
            .env("ETCD_USER", "root")
            .env("ETCD_PASSWORD", PASSWORD)
            .args(args)
            .output()
            .unwrap()
    };
    let created = as_root(&["create", "locked"]);
    assert!(created.status.success(), "{}", support::text(&created));
    let anonymous = gru(&e).args(["config", "get", "locked"]).output().unwrap();
    assert!(
        !anonymous.status.success(),
        "an anonymous client read the cluster"
    );
    let wrong = gru(&e)
        .env("ETCD_USER", "root")
        .env("ETCD_PASSWORD", "wrong-password")
        .args(["config", "get", "locked"])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(
        !support::text(&wrong).contains("wrong-password"),
        "the password was printed"
    );

    // A joined agent, logging at debug, never prints the password or the cluster secret.
    let pushed = as_root(&[
        "config",
        "push",
        "locked",
        root().join("configs/example").to_str().unwrap(),
    ]);
    assert!(pushed.status.success(), "{}", support::text(&pushed));
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = gru(&e)
        .env("ETCD_USER", "root")
        .env("ETCD_PASSWORD", PASSWORD)
        .env("RUST_LOG", "debug")
        .args([
            "join",
            "locked",
            "--name",
            "n1",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let agent = ChildGuard::new(child);
    let up = wait_until(Duration::from_secs(20), || {
        http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    assert!(up.is_some(), "agent did not join with user/password");
    std::thread::sleep(Duration::from_secs(2));
    drop(agent);
    let secret = etcd.etcdctl(&[
        "--user",
        &format!("root:{PASSWORD}"),
        "get",
        "--print-value-only",
        "/gru/locked/secret",
    ]);
    let output = std::fs::read_to_string(log.path()).unwrap();
    assert!(!output.is_empty(), "the agent logged nothing at debug");
    assert!(
        !output.contains(PASSWORD),
        "the etcd password is in the agent's log"
    );
    assert!(
        !output.contains(secret.trim()),
        "the cluster secret is in the agent's log"
    );
}
