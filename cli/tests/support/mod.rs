//! The one harness of the integration tests: drives the real `gru` binary, and for the
//! multi-agent tests builds clusters on a real etcd and the Docker engine.
//!
//! * this file: `gru` commands, their output, broken-configuration fixtures, and text and
//!   time helpers (log tails, ANSI colours, RFC 3339 times);
//! * [`configs`]: configuration directories ([`configs::TestConfig`]) and shared documents;
//! * [`agents`]: `gru join` processes ([`agents::Agent`]) and their HTTP API;
//! * [`cluster`]: etcd, a pushed configuration and cleanup in one [`cluster::Cluster`];
//! * [`docker`]: the cluster's containers as the engine lists them;
//! * [`load`]: closed-loop HTTP load on a service.
#![allow(dead_code, clippy::unwrap_used)]

pub mod agents;
pub mod cluster;
pub mod configs;
pub mod docker;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root (configs/ and fixtures live there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `gru` with `ETCD_ADDR` set to `endpoints` and a quiet log.
pub fn gru(endpoints: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gru"));
    cmd.env("ETCD_ADDR", endpoints)
        .env_remove("ETCD_USER")
        .env_remove("ETCD_PASSWORD")
        .env("RUST_LOG", "warn")
        .env(gru_agent::kept_lease::STATE_DIR_VAR, test_state_dir())
        .stdin(Stdio::null());
    cmd
}

/// The agents' state directory (kept-lease notes) of this test binary: under the temp dir
/// and named after the process, so that no test run reads another's notes nor the
/// machine's real `/var/lib/gru`. A test that restarts agents gives its own
/// (`GRU_STATE_DIR` through `AgentCommand::env`).
pub fn test_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gru-test-state-{}", std::process::id()))
}

/// Runs `gru args...` to completion.
pub fn run(endpoints: &str, args: &[&str]) -> Output {
    gru(endpoints).args(args).output().expect("run gru")
}

pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts `gru args...` exits with `code` and returns its output.
#[track_caller]
pub fn expect_code(endpoints: &str, args: &[&str], code: i32) -> Output {
    let output = run(endpoints, args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "gru {args:?}\n{}",
        text(&output)
    );
    output
}

/// Copies a directory tree (configs are small).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One broken-document fixture: the example configuration with one file replaced.
pub struct BrokenCase {
    pub name: String,
    /// The fixture's document, relative to the configuration directory.
    pub document: PathBuf,
    /// What the error output must contain (names file and path).
    pub expect: String,
}

pub fn broken_cases() -> Vec<BrokenCase> {
    let dir = root().join("common/tests/fixtures/broken");
    let mut cases: Vec<BrokenCase> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|case| {
            let expect = std::fs::read_to_string(case.join("expect.txt")).unwrap();
            let document = find_document(&case, &case).expect("a document in the case");
            BrokenCase {
                name: case.file_name().unwrap().to_string_lossy().into_owned(),
                document,
                expect: expect.trim_end_matches('\n').to_owned(),
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn find_document(root: &Path, dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if let Some(found) = find_document(root, &path) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n != "expect.txt") {
            return Some(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    None
}

/// A temp copy of configs/example with the case's document overlaid.
pub fn broken_dir(case: &BrokenCase) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("configs/example"), dir.path());
    let source = root()
        .join("common/tests/fixtures/broken")
        .join(&case.name)
        .join(&case.document);
    let target = dir.path().join(&case.document);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(source, target).unwrap();
    dir
}

/// Runs `openssl args` in `dir` (the tests' own certificates), asserted to succeed.
#[track_caller]
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last `lines` lines of `text`, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `text` without its terminal colour sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Milliseconds since the epoch, now.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Milliseconds since the epoch of a UTC RFC 3339 time (`2026-12-04T02:22:33.123456789Z`,
/// as Docker and the agents' logs write it).
pub fn rfc3339_ms(text: &str) -> Option<u64> {
    let (date, time) = text.trim().split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (parts.next()??, parts.next()??, parts.next()??);
    let millis: i64 = format!("{:0<3}", &fraction[..fraction.len().min(3)])
        .parse()
        .ok()?;
    // Days from 1970-01-01 to the civil date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + millis).ok()
}

/// A gossip push from node `from` carrying one empty report of its own, sealed (not
/// signed): what the tests send agents by hand.
pub fn gossip_push(from: &str) -> Vec<u8> {
    use gru_agent::gossip::NodeReport;
    use gru_agent::gossip::wire::{self, Body, GossipMessage};
    wire::seal(&mut GossipMessage {
        from: from.into(),
        body: Body::Push {
            reports: vec![NodeReport {
                node: from.into(),
                version: 1,
                services: Default::default(),
            }],
            wants: Vec::new(),
        },
    })
}
