//! The CPUs a container may run on, in Docker's `--cpuset-cpus` syntax: `"0-1,3"`.
//!
//! Checked here so a typo is reported by `gru config validate` rather than by the Docker
//! engine on some node, at the first scale-out, long after the push.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::leaf::{JsonLeaf, ValueError, describe, serde_as_text};

/// The highest CPU index accepted (Linux supports at most 8192 CPUs).
pub const MAX_CPU_INDEX: u32 = 8191;

/// A validated cpu set, kept as written (that is what Docker takes) with its CPUs listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet {
    text: String,
    cpus: Vec<u32>,
}

const CPUSET_HINT: &str = "write cpu numbers and ranges separated by commas, e.g. \"0-1,3\"";

impl CpuSet {
    /// The set as written, e.g. `"0-1,3"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The CPUs of the set, ascending, each once.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }
}

impl FromStr for CpuSet {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<CpuSet, ValueError> {
        let malformed =
            || ValueError::new(format!("\"{text}\" is not a cpu set")).with_hint(CPUSET_HINT);
        let mut cpus = Vec::new();
        for item in text.split(',') {
            let (first, last) = item.split_once('-').unwrap_or((item, item));
            let first = cpu_index(first).ok_or_else(malformed)?;
            let last = cpu_index(last).ok_or_else(malformed)?;
            if first > last {
                return Err(ValueError::new(format!(
                    "\"{text}\" is not a cpu set: \"{item}\" is reversed"
                ))
                .with_hint(format!("write the lower cpu first: \"{last}-{first}\"")));
            }
            cpus.extend(first..=last);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuSet {
            text: text.to_owned(),
            cpus,
        })
    }
}

fn cpu_index(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|cpu| *cpu <= MAX_CPU_INDEX)
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonLeaf for CpuSet {
    fn from_json(value: &Value) -> Result<CpuSet, ValueError> {
        match value {
            Value::String(text) => text.parse(),
            // `"CpusetCpus": 0` is a natural way to write "cpu 0 only".
            Value::Number(number) if number.is_u64() => number.to_string().parse(),
            other => Err(ValueError::new(format!(
                "expected a cpu set such as \"0-1,3\", found {}",
                describe(other)
            ))),
        }
    }
}

serde_as_text!(CpuSet);
