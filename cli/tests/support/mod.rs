//! Drives the real `gru` binary for integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
        .stdin(Stdio::null());
    cmd
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
pub mod agents;
