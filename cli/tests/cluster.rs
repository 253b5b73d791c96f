//! `gru create` and `gru config push|get` against a real etcd.
#![allow(clippy::unwrap_used)]

mod support;

use support::{broken_cases, broken_dir, expect_code, root};
use testkit::{Component, EtcdCluster, require};

#[test]
fn create_twice_fails_without_force_and_force_starts_over() {
    if !require(
        "create_twice_fails_without_force_and_force_starts_over",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();
    let out = expect_code(&e, &["create", "c1"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("c1"), "{stdout}");
    let id1 = etcd.etcdctl(&["get", "--print-value-only", "/gru/c1/uuid"]);
    assert!(
        stdout.contains(id1.trim()),
        "printed id differs from etcd's: {stdout} vs {id1}"
    );
    let secret1 = etcd.etcdctl(&["get", "--print-value-only", "/gru/c1/secret"]);
    assert_eq!(secret1.trim().len(), 64);
    assert!(
        !stdout.contains(secret1.trim()),
        "create printed the secret"
    );

    let again = expect_code(&e, &["create", "c1"], 1);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        etcd.etcdctl(&["get", "--print-value-only", "/gru/c1/uuid"]),
        id1,
        "refusal changed the id"
    );

    expect_code(
        &e,
        &[
            "config",
            "push",
            "c1",
            root().join("configs/example").to_str().unwrap(),
        ],
        0,
    );
    expect_code(&e, &["create", "c1", "--force"], 0);
    let id2 = etcd.etcdctl(&["get", "--print-value-only", "/gru/c1/uuid"]);
    assert_ne!(id1, id2, "--force kept the old id");
    assert_eq!(
        etcd.keys("/gru/c1/"),
        vec!["/gru/c1/secret", "/gru/c1/uuid"],
        "--force kept old documents"
    );
}

#[test]
fn push_writes_every_document_and_get_reads_them_back() {
    if !require(
        "push_writes_every_document_and_get_reads_them_back",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();
    let example = root().join("configs/example");
    expect_code(&e, &["create", "shop"], 0);
    expect_code(
        &e,
        &["config", "push", "shop", example.to_str().unwrap()],
        0,
    );

    let keys = etcd.keys("/gru/shop/");
    for expected in ["/gru/shop/config", "/gru/shop/policy"] {
        assert!(
            keys.contains(&expected.to_owned()),
            "{expected} missing from {keys:?}"
        );
    }
    let services: Vec<_> = std::fs::read_dir(example.join("services"))
        .unwrap()
        .collect();
    let analytics: Vec<_> = std::fs::read_dir(example.join("analytics"))
        .unwrap()
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("/gru/shop/services/"))
            .count(),
        services.len()
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("/gru/shop/analytics/"))
            .count(),
        analytics.len()
    );

    // Each stored document is canonical JSON that re-validates.
    let out = expect_code(&e, &["config", "get", "shop"], 0);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(all["config"].is_object(), "{all}");
    assert!(all["policy"]["Scaleout"].is_object(), "{all}");
    assert_eq!(all["services"].as_object().unwrap().len(), services.len());
    let out = expect_code(&e, &["config", "get", "shop", "services"], 0);
    let only: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only, all["services"]);

    // Round trip: what get prints validates again.
    let back = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(back.path().join("services")).unwrap();
    std::fs::create_dir_all(back.path().join("analytics")).unwrap();
    std::fs::write(back.path().join("config.json"), all["config"].to_string()).unwrap();
    std::fs::write(back.path().join("policy.json"), all["policy"].to_string()).unwrap();
    for (kind, map) in [
        ("services", &all["services"]),
        ("analytics", &all["analytics"]),
    ] {
        for (name, doc) in map.as_object().unwrap() {
            std::fs::write(
                back.path().join(kind).join(format!("{name}.json")),
                doc.to_string(),
            )
            .unwrap();
        }
    }
    expect_code(
        &e,
        &["config", "validate", back.path().to_str().unwrap()],
        0,
    );
}

#[test]
fn push_of_any_broken_directory_leaves_etcd_unchanged() {
    if !require(
        "push_of_any_broken_directory_leaves_etcd_unchanged",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();
    expect_code(&e, &["create", "c"], 0);
    expect_code(
        &e,
        &[
            "config",
            "push",
            "c",
            root().join("configs/gru-readme").to_str().unwrap(),
        ],
        0,
    );
    let before = etcd.dump("/gru/");
    for case in broken_cases() {
        let dir = broken_dir(&case);
        let out = expect_code(
            &e,
            &["config", "push", "c", dir.path().to_str().unwrap()],
            64,
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&case.expect),
            "case {}: {}",
            case.name,
            support::text(&out)
        );
        assert_eq!(
            etcd.dump("/gru/"),
            before,
            "case {} changed etcd",
            case.name
        );
    }
}

#[test]
fn push_to_a_missing_cluster_writes_nothing() {
    if !require("push_to_a_missing_cluster_writes_nothing", Component::Etcd) {
        return;
    }
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();
    let out = expect_code(
        &e,
        &[
            "config",
            "push",
            "ghost",
            root().join("configs/example").to_str().unwrap(),
        ],
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        support::text(&out)
    );
    assert!(etcd.keys("/gru/").is_empty(), "{:?}", etcd.keys("/gru/"));
    expect_code(&e, &["config", "get", "ghost"], 1);
}

#[test]
fn push_removes_services_no_longer_in_the_directory() {
    if !require(
        "push_removes_services_no_longer_in_the_directory",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let e = etcd.endpoints();
    expect_code(&e, &["create", "c"], 0);
    expect_code(
        &e,
        &[
            "config",
            "push",
            "c",
            root().join("configs/example").to_str().unwrap(),
        ],
        0,
    );
    expect_code(
        &e,
        &[
            "config",
            "push",
            "c",
            root().join("configs/gru-readme").to_str().unwrap(),
        ],
        0,
    );
    let services: Vec<String> = etcd.keys("/gru/c/services/").into_iter().collect();
    assert_eq!(services, vec!["/gru/c/services/service1"]);
}
