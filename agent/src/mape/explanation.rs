//! How a candidate's weight came about, kept as the values it was weighed from and written
//! out as a sentence only when someone reads it.
//!
//! Why not text at once: every tick weighs every candidate (two per service, one per swap
//! pair), each over every value its rule names, and writing those numbers out was most of
//! a tick's time (100 services × 10 analytics: 2,000 values, 4,000 numbers formatted, per
//! tick). A decision keeps every candidate's explanation, but few are ever read (`gru
//! manage why`, the HTTP API). The sentence, when it is read, is the one the weighing
//! would have written at once: [`Explanation`] renders it on first read and keeps it, and
//! it compares, prints and serializes as that text.
//!
//! The values are kept compactly, not as the text's parts: the numbers, names (and the
//! reasons of values left out) one after the other in one buffer, one allocation.

use std::fmt::{self, Write as _};
use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::analyze::AnalyticValue;

/// How a weight came about: each value against its threshold, and the values left out
/// because they were unavailable. Reads as text (`Deref<Target = str>`, `Display`); equal
/// when the texts are.
#[derive(Clone, Default)]
pub struct Explanation {
    parts: Parts,
    /// Written before the parts: whose own policy applied.
    prefix: Option<String>,
    text: OnceLock<String>,
}

#[derive(Clone)]
enum Parts {
    Text(String),
    Rule(RuleTerms),
    Swap(SwapTerms),
}

impl Default for Parts {
    fn default() -> Parts {
        Parts::Text(String::new())
    }
}

/// Which of Gru's scale rules weighed the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Out,
    In,
}

/// The values of a weighing in one buffer (one allocation per explanation), each term as
/// written by [`Terms::push`]: a byte of flags saying which of its (up to two) numbers
/// follow and whether a reason does, the numbers, its name preceded by its length, then the
/// reason it was left out (only when it was), preceded by its length.
#[derive(Clone, Default)]
struct Terms {
    bytes: Vec<u8>,
}

/// A term's numbers: a rule's value, or a swap's running and candidate values; `None` for
/// one that is left out.
type Numbers = [Option<f64>; 2];

/// The flag of a term that has a reason (bits 0 and 1 say which numbers it has).
const HAS_REASON: u8 = 1 << 2;

impl Terms {
    fn with_capacity(values: usize) -> Terms {
        Terms {
            bytes: Vec::with_capacity(values * 32),
        }
    }

    /// Adds a value named `name`; `reason` writes why it was left out, if it was.
    fn push(&mut self, name: &str, numbers: Numbers, reason: impl FnOnce(&mut String)) {
        let mut why = String::new();
        reason(&mut why);
        let flags = u8::from(numbers[0].is_some())
            | (u8::from(numbers[1].is_some()) << 1)
            | if why.is_empty() { 0 } else { HAS_REASON };
        // The flags, the numbers and the name's length, written at once.
        let mut head = [0; 1 + 2 * 8 + 4];
        head[0] = flags;
        let mut at = 1;
        for number in numbers.into_iter().flatten() {
            head[at..at + 8].copy_from_slice(&number.to_le_bytes());
            at += 8;
        }
        let name = text_len(name);
        head[at..at + 4].copy_from_slice(&(name.len() as u32).to_le_bytes());
        at += 4;
        self.bytes.reserve(at + name.len());
        self.bytes.extend_from_slice(&head[..at]);
        self.bytes.extend_from_slice(name.as_bytes());
        if !why.is_empty() {
            let why = text_len(&why);
            self.bytes
                .extend_from_slice(&(why.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(why.as_bytes());
        }
    }

    /// Each term's name, reason and numbers, in the order they were pushed.
    fn iter(&self) -> impl Iterator<Item = (&str, &str, Numbers)> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (&flags, after) = rest.split_first()?;
            rest = after;
            let mut numbers = [None, None];
            for (slot, number) in numbers.iter_mut().enumerate() {
                if flags & (1 << slot) != 0 {
                    let (bytes, after) = rest.split_first_chunk::<8>()?;
                    *number = Some(f64::from_le_bytes(*bytes));
                    rest = after;
                }
            }
            let name = take_text(&mut rest)?;
            let reason = if flags & HAS_REASON != 0 {
                take_text(&mut rest)?
            } else {
                ""
            };
            Some((name, reason, numbers))
        })
    }
}

/// `text`, cut to what a length of 32 bits can say (on a character boundary).
fn text_len(text: &str) -> &str {
    let mut end = text.len().min(u32::MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The text [`Terms::push`] wrote at the start of `rest`, which moves past it.
fn take_text<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let (len, after) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let text = after.get(..len)?;
    *rest = &after[len..];
    std::str::from_utf8(text).ok()
}

/// A scale rule's values (`None` for one left out) against its threshold.
#[derive(Clone)]
struct RuleTerms {
    direction: Direction,
    threshold: f64,
    terms: Terms,
}

/// A swap's values: the running service's and the candidate's (`None` for one left out).
#[derive(Clone)]
struct SwapTerms {
    running: String,
    candidate: String,
    terms: Terms,
}

/// Writes why `value` is left out: its reason, or the number that is not one.
fn write_why_unavailable(value: &AnalyticValue, out: &mut String) {
    match value {
        AnalyticValue::Unavailable { reason } => out.push_str(reason),
        AnalyticValue::Available(v) => {
            let _ = write!(out, "{v} is not a number");
        }
    }
}

impl Explanation {
    /// The weighing of `values` by a scale rule with `threshold`.
    pub(super) fn rule<'a>(
        direction: Direction,
        threshold: f64,
        values: impl ExactSizeIterator<Item = (&'a str, &'a AnalyticValue)>,
    ) -> Explanation {
        let mut terms = Terms::with_capacity(values.len());
        for (name, value) in values {
            let v = value.value();
            terms.push(name, [v, None], |out| {
                if v.is_none() {
                    write_why_unavailable(value, out);
                }
            });
        }
        Explanation::of(Parts::Rule(RuleTerms {
            direction,
            threshold,
            terms,
        }))
    }

    /// The weighing of swapping `running` for `candidate` over `values` (a name, the
    /// running service's value, the candidate's).
    pub(super) fn swap<'a>(
        running: &str,
        candidate: &str,
        values: impl ExactSizeIterator<Item = (&'a str, &'a AnalyticValue, &'a AnalyticValue)>,
    ) -> Explanation {
        let mut terms = Terms::with_capacity(values.len());
        for (name, r, c) in values {
            let (vr, vc) = (r.value(), c.value());
            terms.push(name, [vr, vc], |out| match (vr, vc) {
                (Some(_), Some(_)) => {}
                (None, _) => write_why_unavailable(r, out),
                (Some(_), None) => write_why_unavailable(c, out),
            });
        }
        Explanation::of(Parts::Swap(SwapTerms {
            running: running.to_owned(),
            candidate: candidate.to_owned(),
            terms,
        }))
    }

    /// The same explanation, said to come from `service`'s own policy.
    pub(super) fn of_own_policy(self, service: &str) -> Explanation {
        let prefix = match self.prefix {
            None => format!("{service}'s own policy: "),
            Some(inner) => format!("{service}'s own policy: {inner}"),
        };
        Explanation {
            prefix: Some(prefix),
            parts: self.parts,
            text: OnceLock::new(),
        }
    }

    fn of(parts: Parts) -> Explanation {
        Explanation {
            parts,
            prefix: None,
            text: OnceLock::new(),
        }
    }

    /// The sentence.
    pub fn as_str(&self) -> &str {
        if let (Parts::Text(text), None) = (&self.parts, &self.prefix) {
            return text;
        }
        self.text.get_or_init(|| {
            let mut text = self.prefix.clone().unwrap_or_default();
            self.parts.write(&mut text);
            text
        })
    }
}

impl Parts {
    fn write(&self, out: &mut String) {
        match self {
            Parts::Text(text) => out.push_str(text),
            Parts::Rule(rule) => rule.write(out),
            Parts::Swap(swap) => swap.write(out),
        }
    }
}

impl RuleTerms {
    /// `name v relation threshold` for each value, then `name left out: why` for each value
    /// left out, joined by ", "; "no value available: " first when every value was left out.
    fn write(&self, out: &mut String) {
        let threshold = self.threshold;
        if self.terms.iter().all(|(_, _, [value, _])| value.is_none()) {
            out.push_str("no value available: ");
        }
        let mut separator = Separator::default();
        for (name, _, [value, _]) in self.terms.iter() {
            let Some(v) = value else { continue };
            let relation = match self.direction {
                Direction::Out if v > threshold => ">",
                Direction::Out => "<=",
                Direction::In if v < threshold => "<",
                Direction::In => ">=",
            };
            separator.write(out);
            let _ = write!(out, "{name} {v:.2} {relation} {threshold}");
        }
        for (name, why, [value, _]) in self.terms.iter() {
            if value.is_none() {
                separator.write(out);
                let _ = write!(out, "{name} left out: {why}");
            }
        }
    }
}

impl SwapTerms {
    /// `name running vr, candidate vc` for each value both have, then `name of whose left
    /// out: why` for the others, joined by ", "; "no value to compare: " first when there
    /// is no value both have.
    fn write(&self, out: &mut String) {
        let (running, candidate) = (&self.running, &self.candidate);
        let compared = |[r, c]: Numbers| r.is_some() && c.is_some();
        if !self.terms.iter().any(|(_, _, numbers)| compared(numbers)) {
            out.push_str("no value to compare: ");
        }
        let mut separator = Separator::default();
        for (name, _, numbers) in self.terms.iter() {
            if let [Some(vr), Some(vc)] = numbers {
                separator.write(out);
                let _ = write!(out, "{name} {running} {vr:.2}, {candidate} {vc:.2}");
            }
        }
        for (name, why, numbers) in self.terms.iter() {
            if compared(numbers) {
                continue;
            }
            let whose = if numbers[0].is_none() {
                running
            } else {
                candidate
            };
            separator.write(out);
            let _ = write!(out, "{name} of {whose} left out: {why}");
        }
    }
}

/// ", " before every part but the first.
#[derive(Default)]
struct Separator {
    started: bool,
}

impl Separator {
    fn write(&mut self, out: &mut String) {
        if self.started {
            out.push_str(", ");
        }
        self.started = true;
    }
}

impl From<String> for Explanation {
    fn from(text: String) -> Explanation {
        Explanation::of(Parts::Text(text))
    }
}

impl From<&str> for Explanation {
    fn from(text: &str) -> Explanation {
        Explanation::from(text.to_owned())
    }
}

impl Deref for Explanation {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Explanation {
    fn eq(&self, other: &Explanation) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for Explanation {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Explanation {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Explanation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Explanation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Explanation, D::Error> {
        String::deserialize(deserializer).map(Explanation::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_explanation_names_values_then_those_left_out() {
        let (high, low) = (AnalyticValue::Available(0.9), AnalyticValue::Available(0.5));
        let missing = AnalyticValue::unavailable("no sample");
        let nan = AnalyticValue::Available(f64::NAN);
        let values = [("a", &missing), ("b", &high), ("c", &nan), ("d", &low)];
        let out = Explanation::rule(Direction::Out, 0.75, values.into_iter());
        assert_eq!(
            out,
            "b 0.90 > 0.75, d 0.50 <= 0.75, a left out: no sample, c left out: NaN is not a number"
        );
        let none = Explanation::rule(Direction::In, 0.35, [("a", &missing)].into_iter());
        assert_eq!(none, "no value available: a left out: no sample");
        let own = none.clone().of_own_policy("web");
        assert_eq!(
            own.to_string(),
            "web's own policy: no value available: a left out: no sample"
        );
    }

    #[test]
    fn an_explanation_serializes_as_its_text_and_reads_back_equal() {
        let value = AnalyticValue::Available(0.2);
        let missing = AnalyticValue::unavailable("gone");
        let swap = Explanation::swap(
            "web",
            "batch",
            [("cpu_avg", &value, &value), ("x", &value, &missing)].into_iter(),
        );
        let json = serde_json::to_string(&swap).expect("serializes");
        assert_eq!(
            json,
            r#""cpu_avg web 0.20, batch 0.20, x of batch left out: gone""#
        );
        let back: Explanation = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, swap);
        assert_eq!(format!("{back:?}"), format!("{:?}", swap.as_str()));
    }
}
