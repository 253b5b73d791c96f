//! `gru config validate`: offline, against the shipped examples and the broken fixtures.
#![allow(clippy::unwrap_used)]

mod support;

use support::{broken_cases, broken_dir, expect_code, root};

const NO_ETCD: &str = "http://127.0.0.1:1";

#[test]
fn original_gru_readme_documents_are_accepted_unchanged() {
    let dir = root().join("configs/gru-readme");
    let out = expect_code(NO_ETCD, &["config", "validate", dir.to_str().unwrap()], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn example_application_is_valid() {
    let dir = root().join("configs/example");
    expect_code(NO_ETCD, &["config", "validate", dir.to_str().unwrap()], 0);
}

#[test]
fn every_broken_fixture_is_rejected_with_usage_code_and_its_path() {
    let cases = broken_cases();
    assert!(cases.len() >= 15, "only {} broken fixtures", cases.len());
    for case in &cases {
        let dir = broken_dir(case);
        let out = expect_code(
            NO_ETCD,
            &["config", "validate", dir.path().to_str().unwrap()],
            64,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&case.expect),
            "case {}: stderr does not contain {:?}:\n{stderr}",
            case.name,
            case.expect
        );
        assert!(
            stderr.contains("nothing was written"),
            "case {}: {stderr}",
            case.name
        );
    }
}

#[test]
fn missing_directory_is_a_usage_error() {
    let out = expect_code(NO_ETCD, &["config", "validate", "/nonexistent/gru"], 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

#[test]
fn bad_usage_exits_64_and_help_exits_0_listing_exit_codes() {
    expect_code(NO_ETCD, &["create"], 64);
    expect_code(NO_ETCD, &["frobnicate"], 64);
    let help = expect_code(NO_ETCD, &["--help"], 0);
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in ["Exit codes", "64", "69", "ETCD_ADDR"] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn help_never_shows_the_etcd_password() {
    let out = support::gru(NO_ETCD)
        .env("ETCD_PASSWORD", "s3cr3t-value")
        .args(["join", "--help"])
        .output()
        .unwrap();
    let all = support::text(&out);
    assert!(!all.contains("s3cr3t-value"), "{all}");
}

#[test]
fn unreachable_etcd_exits_69() {
    let out = expect_code(NO_ETCD, &["create", "c1"], 69);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}
