//! What a command produced, as a value the session prints in the format asked for: text
//! (tables, one line per node) or one JSON document per command.
//!
//! Commands never print. They return an [`Outcome`]: its text, its JSON and its status. A
//! command that reached several nodes reports each node's result ([`NodeResults`]); it
//! fails when any node failed, and says which.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{Table, presets};
use serde_json::{Value, json};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// How a command ended, for the exit code of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    /// A refusal or an error at run time (etcd, an agent, a missing node): exit 1.
    Failed,
    /// The line was not a command, or its arguments did not fit: exit 64.
    Usage,
}

/// What one command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// For `--output text` (may be empty).
    pub text: String,
    /// For `--output json`.
    pub json: Value,
    /// One sentence for standard error when the command failed.
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(text: impl Into<String>, json: Value) -> Outcome {
        Outcome {
            status: Status::Ok,
            text: text.into(),
            json,
            error: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> Outcome {
        let error = error.into();
        Outcome {
            status: Status::Failed,
            text: String::new(),
            json: json!({ "error": error }),
            error: Some(error),
        }
    }

    pub fn usage(error: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Usage,
            ..Outcome::failed(error)
        }
    }

    /// Marks the outcome failed with `error`, keeping what it shows (partial results).
    pub fn with_failure(mut self, error: impl Into<String>) -> Outcome {
        let error = error.into();
        if let Value::Object(map) = &mut self.json {
            map.insert("error".to_owned(), Value::String(error.clone()));
        }
        self.status = self.status.max(Status::Failed);
        self.error = Some(error);
        self
    }
}

/// One node's result: what happened there, or why it failed, and how long it took
/// (`None` when nothing was sent to it).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    pub node: String,
    pub result: Result<String, String>,
    pub elapsed: Option<Duration>,
}

/// Each node's result of one command, in the order the nodes were named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeResults {
    pub results: Vec<NodeResult>,
}

impl NodeResults {
    pub fn push(&mut self, node: &str, result: Result<String, String>) {
        self.results.push(NodeResult {
            node: node.to_owned(),
            result,
            elapsed: None,
        });
    }

    pub fn failed_nodes(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| r.result.is_err())
            .map(|r| r.node.as_str())
            .collect()
    }

    /// `  n1: started` / `  n2: FAILED: unreachable at ...`, one line per node.
    pub fn text(&self) -> String {
        let width = self.results.iter().map(|r| r.node.len()).max().unwrap_or(0);
        let mut text = String::new();
        for NodeResult { node, result, .. } in &self.results {
            let _ = match result {
                Ok(detail) => writeln!(text, "  {node:width$}  {detail}"),
                Err(why) => writeln!(text, "  {node:width$}  FAILED: {why}"),
            };
        }
        text
    }

    pub fn json(&self) -> Value {
        Value::Array(
            self.results
                .iter()
                .map(|r| {
                    let elapsed_ms = r.elapsed.map(|e| u64::try_from(e.as_millis()).unwrap_or(u64::MAX));
                    match &r.result {
                        Ok(detail) => {
                            json!({"node": r.node, "ok": true, "detail": detail, "elapsed_ms": elapsed_ms})
                        }
                        Err(why) => json!({"node": r.node, "ok": false, "error": why, "elapsed_ms": elapsed_ms}),
                    }
                })
                .collect(),
        )
    }

    /// The outcome of an action on nodes: `heading`, then a line per node; failed when
    /// any node failed.
    pub fn outcome(self, command: &str, heading: &str) -> Outcome {
        let mut text = String::new();
        if !heading.is_empty() {
            text.push_str(heading);
            text.push('\n');
        }
        text.push_str(self.text().trim_end());
        let failed = self.failed_nodes();
        let json = json!({
            "command": command,
            "ok": failed.is_empty(),
            "nodes": self.json(),
        });
        let outcome = Outcome::ok(text, json);
        if failed.is_empty() {
            outcome
        } else {
            let error = format!(
                "{command}: {} of {} node(s) failed ({})",
                failed.len(),
                self.results.len(),
                failed.join(", ")
            );
            outcome.with_failure(error)
        }
    }
}

/// A table in the shell's one style.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(header.iter().copied());
    table
}

/// `64 MiB`, `3.9 GiB`: binary units, one decimal when it is not whole.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            let text = format!("{value:.1}");
            let text = text.strip_suffix(".0").unwrap_or(&text);
            return format!("{text} {unit}");
        }
    }
    format!("{bytes} B")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long ago `at` (ms since the epoch) was: `4 s ago`, `3 min ago`, `2 h ago`.
pub fn age(now_ms: u64, at_ms: u64) -> String {
    let secs = now_ms.saturating_sub(at_ms) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// A fraction as a percentage with no decimals: `0.354` → `35%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (64 << 20, "64 MiB"),
            ((3 << 30) + (900 << 20), "3.9 GiB"),
            (12 << 30, "12 GiB"),
            (2 << 40, "2 TiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn ages_read_in_the_largest_sensible_unit() {
        let cases = [
            (0, "0 s ago"),
            (4_500, "4 s ago"),
            (200_000, "3 min ago"),
            (7_300_000, "2 h ago"),
        ];
        for (ago, text) in cases {
            assert_eq!(age(10_000_000, 10_000_000 - ago), text, "{ago}");
        }
        assert_eq!(age(0, 5_000), "0 s ago", "a clock behind the agent's");
    }

    #[test]
    fn a_node_that_failed_fails_the_command_and_is_named() {
        let mut results = NodeResults::default();
        results.push("n1", Ok("started".into()));
        results.push(
            "node-two",
            Err("unreachable at 127.0.0.1:1: connection refused".into()),
        );
        let outcome = results.outcome("start agent", "");
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(
            outcome.text,
            "  n1        started\n  node-two  FAILED: unreachable at 127.0.0.1:1: connection refused"
        );
        assert_eq!(
            outcome.error.as_deref(),
            Some("start agent: 1 of 2 node(s) failed (node-two)")
        );
        assert_eq!(outcome.json["ok"], false);
        assert_eq!(outcome.json["nodes"][1]["node"], "node-two");
        assert_eq!(outcome.json["nodes"][0]["detail"], "started");

        let mut fine = NodeResults::default();
        fine.push("n1", Ok("stopped".into()));
        let outcome = fine.outcome("stop agent", "");
        assert_eq!(outcome.status, Status::Ok);
        assert_eq!(outcome.error, None);
    }

    #[test]
    fn usage_outranks_failure_outranks_ok() {
        assert!(Status::Usage > Status::Failed && Status::Failed > Status::Ok);
        let usage = Outcome::usage("bad").with_failure("worse");
        assert_eq!(usage.status, Status::Usage);
    }
}
