//! `GRU_TEST_SKIP` skips a test and says so, except on CI (`CI=true`), where a test that
//! would skip fails. Checked on a real test binary: this one runs its own probe test in a
//! child process with the environment of each case.

use std::process::Command;

use testkit::{Component, require};

const PROBE: &str = "probe_that_needs_etcd";

/// Run by [`a_skip_is_printed_and_fails_on_ci`] in a child process, never on its own.
#[test]
#[ignore = "a probe: a_skip_is_printed_and_fails_on_ci runs it with its own environment"]
fn probe_that_needs_etcd() {
    if !require(PROBE, Component::Etcd) {
        return;
    }
    println!("PROBE RAN");
}

/// Runs the probe with `env` (and neither `CI`, `GRU_TEST_SKIP` nor `ETCD_BIN` inherited):
/// whether it passed, and what it printed.
fn probe(env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().expect("own test binary"));
    command
        .args([
            "--ignored",
            "--exact",
            PROBE,
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("CI")
        .env_remove("GRU_TEST_SKIP")
        .env_remove("ETCD_BIN");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run the probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_skip_is_printed_and_fails_on_ci() {
    // PATH without etcd: a directory that holds nothing.
    let empty = tempfile::tempdir().expect("temp dir");
    let no_etcd = empty.path().to_str().expect("utf-8 temp dir");
    // Any file stands for etcd (`require` looks for the binary, the probe does not run it),
    // so the case that runs does not depend on this machine's etcd.
    let own = std::env::current_exe().expect("own test binary");
    let some_etcd = own.to_str().expect("utf-8 path");
    for (env, passes, says) in [
        // Listed, not on CI: the skip is printed and the test passes without running.
        (
            vec![("GRU_TEST_SKIP", "etcd")],
            true,
            "SKIPPED probe_that_needs_etcd: GRU_TEST_SKIP lists etcd (this test did not run)",
        ),
        (
            vec![("GRU_TEST_SKIP", "docker,etcd"), ("CI", "false")],
            true,
            "SKIPPED probe_that_needs_etcd",
        ),
        // Listed, on CI: the test fails and says why.
        (
            vec![("GRU_TEST_SKIP", "etcd"), ("CI", "true")],
            false,
            "probe_that_needs_etcd would be skipped (GRU_TEST_SKIP=etcd lists etcd), but CI=true is set",
        ),
        // Listed and missing, on CI: the same.
        (
            vec![("GRU_TEST_SKIP", "etcd"), ("CI", "true"), ("PATH", no_etcd)],
            false,
            "but CI=true is set: on CI every test runs",
        ),
        // Missing and not listed: the test fails with how to get it, on CI or not.
        (
            vec![("CI", "true"), ("PATH", no_etcd)],
            false,
            "probe_that_needs_etcd needs etcd and it is not available",
        ),
        (
            vec![("PATH", no_etcd)],
            false,
            "probe_that_needs_etcd needs etcd and it is not available",
        ),
        // Something else listed, etcd present: the test runs.
        (
            vec![
                ("GRU_TEST_SKIP", "docker"),
                ("CI", "true"),
                ("ETCD_BIN", some_etcd),
            ],
            true,
            "PROBE RAN",
        ),
    ] {
        let (passed, text) = probe(&env);
        assert_eq!(passed, passes, "{env:?}: the probe printed:\n{text}");
        assert!(
            text.contains(says),
            "{env:?}: expected {says:?} in the probe's output:\n{text}"
        );
        if !passes || says.starts_with("SKIPPED") {
            assert!(
                !text.contains("PROBE RAN"),
                "{env:?}: the probe ran:\n{text}"
            );
        }
    }
}

/// Every skip goes through `testkit::skip_listed`: no other source file of the workspace
/// reads `GRU_TEST_SKIP` or prints a skip of its own (which CI=true would not turn into a
/// failure).
#[test]
fn no_test_reads_the_skip_list_itself() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let allowed = [
        root.join("testkit/src/skip.rs"),
        root.join("testkit/tests/skip_on_ci.rs"),
    ];
    let mut sources = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    assert!(sources.len() > 50, "found only {} sources", sources.len());
    let offenders: Vec<String> = sources
        .iter()
        .filter(|path| !allowed.contains(path))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.contains("var(\"GRU_TEST_SKIP\")") || text.contains("\"SKIPPED")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these read GRU_TEST_SKIP or print a skip themselves; call testkit::skip_listed \
         (or testkit::require) instead: {offenders:?}"
    );
}
