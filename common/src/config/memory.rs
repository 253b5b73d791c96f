//! Memory sizes as Docker and Gru wrote them: `"512m"`, `"1g"`, `"256MiB"`, `"1.5g"`, or a
//! plain number of bytes. Units are binary (k = 1024), as in Docker's `--memory`.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::leaf::{JsonLeaf, ValueError, describe, serde_as_text};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Binary units, largest last; `Display` picks the largest that divides the size exactly.
const UNITS: [(char, u64); 5] = [
    ('k', 1 << 10),
    ('m', 1 << 20),
    ('g', 1 << 30),
    ('t', 1 << 40),
    ('p', 1 << 50),
];

const MEMORY_HINT: &str = "write a number of bytes or a size such as \"512m\" or \"1g\"";

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> ByteSize {
        ByteSize(bytes)
    }

    pub const fn bytes(&self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<ByteSize, ValueError> {
        let malformed =
            || ValueError::new(format!("\"{text}\" is not a memory size")).with_hint(MEMORY_HINT);
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(number_end);
        // "1.5" but neither ".5" nor "5." (which Rust would read, and Docker would not).
        let well_formed =
            digits.starts_with(|c: char| c.is_ascii_digit()) && !digits.ends_with('.');
        let number: f64 = match digits.parse() {
            Ok(number) if well_formed => number,
            _ => return Err(malformed()),
        };
        let multiplier =
            unit_multiplier(unit.strip_prefix(' ').unwrap_or(unit)).ok_or_else(malformed)?;
        let bytes = number * multiplier as f64;
        if bytes > u64::MAX as f64 {
            return Err(ValueError::new(format!(
                "\"{text}\" is too large a memory size"
            )));
        }
        // Fractions of a byte are dropped, as Docker does.
        Ok(ByteSize(bytes as u64))
    }
}

/// `""`, `"b"`, and for each unit u: `"u"`, `"ub"`, `"uib"`, in any case.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    let mut chars = unit.chars();
    let letter = chars.next()?;
    let (_, multiplier) = UNITS.iter().find(|(name, _)| *name == letter)?;
    matches!(chars.as_str(), "" | "b" | "ib").then_some(*multiplier)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `is_multiple_of` would need Rust 1.87; the workspace supports 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        let exact = UNITS
            .iter()
            .rev()
            .find(|(_, size)| self.0 != 0 && self.0 % size == 0);
        match exact {
            Some((unit, size)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}", self.0),
        }
    }
}

impl JsonLeaf for ByteSize {
    fn from_json(value: &Value) -> Result<ByteSize, ValueError> {
        match value {
            Value::String(text) => text.parse(),
            Value::Number(number) => number.as_u64().map(ByteSize).ok_or_else(|| {
                ValueError::new(format!("{number} is not a number of bytes")).with_hint(MEMORY_HINT)
            }),
            other => Err(ValueError::new(format!(
                "expected a memory size such as \"512m\", found {}",
                describe(other)
            ))),
        }
    }
}

serde_as_text!(ByteSize);
