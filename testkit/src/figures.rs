//! Figures: what a test measured (durations, counts, memory, ...), printed with the test's
//! output and appended to one file for the whole run, which `scripts/test.sh` empties when
//! it starts and prints when it ends (also when a test failed).
//!
//! The file is `GRU_FIGURES` when set, else `test-figures.txt` in cargo's target
//! directory. Each figure is one line, `<test>: <key>: <value>`, written with one
//! `write` on a file opened with `O_APPEND`: lines from tests running in parallel, in one
//! process or several, never interleave.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that names the figures file.
pub const FIGURES_ENV: &str = "GRU_FIGURES";

/// The figures file's name when `GRU_FIGURES` is not set (in cargo's target directory).
pub const DEFAULT_FIGURES_FILE: &str = "test-figures.txt";

/// Prints `figure: <test>: <key>: <value>` and appends `<test>: <key>: <value>` to the
/// figures file. A line break in `value` becomes ` | `, so a figure stays one line. A file
/// that cannot be written is reported on stderr and does not fail the test: the figure
/// is in the test's output anyway.
pub fn figure(test: &str, key: &str, value: impl Display) {
    let line = figure_line(test, key, &value.to_string());
    println!("figure: {line}");
    let path = figures_path();
    if let Err(error) = append_line(&path, &line) {
        eprintln!(
            "cannot append a figure to {} ({FIGURES_ENV}): {error}",
            path.display()
        );
    }
}

/// Where [`figure`] appends: `GRU_FIGURES`, else `test-figures.txt` in the target
/// directory ([`target_dir`]), else one in the temporary directory.
pub fn figures_path() -> PathBuf {
    if let Some(path) = std::env::var_os(FIGURES_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    target_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join(DEFAULT_FIGURES_FILE)
}

/// Cargo's target directory of this run, found from the test binary's path
/// (`<target>/<profile>/deps/<test>`), so that it is right whatever `CARGO_TARGET_DIR`
/// says (a relative one would be read against the package directory, not the workspace).
pub fn target_dir() -> Option<PathBuf> {
    std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
    })
}

/// One figure as its line in the file (without the newline).
fn figure_line(test: &str, key: &str, value: &str) -> String {
    let one_line = |text: &str| text.trim().lines().collect::<Vec<_>>().join(" | ");
    format!("{}: {}: {}", one_line(test), one_line(key), one_line(value))
}

/// Appends `line` and a newline to `path` in one `write` on an `O_APPEND` file, which
/// the kernel applies whole, at the end of the file, whatever other writers do.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let record = format!("{line}\n");
    let written = file.write(record.as_bytes())?;
    if written == record.len() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "short write: {written} of {} bytes",
            record.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_one_line_whatever_its_value_holds() {
        for (value, line) in [
            ("12 ms", "t: k: 12 ms"),
            ("a\nb\n", "t: k: a | b"),
            ("  padded  ", "t: k: padded"),
            ("", "t: k: "),
        ] {
            assert_eq!(figure_line("t", "k", value), line, "{value:?}");
        }
    }

    #[test]
    fn parallel_writers_append_whole_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("figures.txt");
        const WRITERS: usize = 8;
        const LINES: usize = 200;
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let path = &path;
                scope.spawn(move || {
                    // Long lines, so that a write split in two would show.
                    let padding = "x".repeat(300);
                    for n in 0..LINES {
                        let line = figure_line(&format!("w{writer}"), &n.to_string(), &padding);
                        append_line(path, &line).expect("append");
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).expect("read figures");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), WRITERS * LINES);
        for line in &lines {
            let fields: Vec<&str> = line.split(": ").collect();
            assert_eq!(fields.len(), 3, "{line}");
            assert!(fields[0].starts_with('w'), "{line}");
            assert_eq!(fields[2].len(), 300, "{line}");
        }
        for writer in 0..WRITERS {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("w{writer}: ")))
                .map(|rest| {
                    rest.split(": ")
                        .next()
                        .and_then(|n| n.parse().ok())
                        .expect("n")
                })
                .collect();
            assert_eq!(mine, (0..LINES).collect::<Vec<_>>(), "writer {writer}");
        }
    }
}
