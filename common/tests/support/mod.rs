//! Reading configuration directories from disk for the tests; the library itself never
//! touches the file system.

use std::fs;
use std::path::{Path, PathBuf};

use common::config::{Problem, SourceDocument};

/// `configs/<name>` at the root of the workspace.
pub fn configs_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name)
}

/// `common/tests/fixtures/broken`.
pub fn broken_cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken")
}

/// Every file under `dir`, named by its path relative to `dir` with `/` separators.
pub fn load_dir(dir: &Path) -> Vec<SourceDocument> {
    let mut documents = Vec::new();
    collect(dir, dir, &mut documents);
    documents.sort_by(|a, b| a.file.cmp(&b.file));
    documents
}

fn collect(root: &Path, dir: &Path, documents: &mut Vec<SourceDocument>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(root, &path, documents);
            continue;
        }
        let relative = path.strip_prefix(root).expect("path under root");
        let file = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        documents.push(SourceDocument { file, text });
    }
}

/// Replaces the document with the same file name, or adds it.
pub fn overlay(documents: &mut Vec<SourceDocument>, document: SourceDocument) {
    match documents.iter_mut().find(|d| d.file == document.file) {
        Some(existing) => *existing = document,
        None => documents.push(document),
    }
}

/// All problems, one per line, as `gru config validate` prints them.
pub fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
