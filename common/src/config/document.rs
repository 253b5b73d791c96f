//! One document, from text to a validated value, in four stages that each add problems:
//!
//! 1. strip comments and parse JSON (a syntax error ends it here: there is nothing to walk);
//! 2. walk the value against the document's schema ([`super::schema`]): canonical key
//!    spelling, unknown keys, leaf syntax;
//! 3. deserialize into the typed model; a value of the wrong type is reported with its path,
//!    removed, and deserialization tried again, so every wrong type is found in one run;
//! 4. the document's own checks (ranges, required fields, expressions), except at paths an
//!    earlier stage already blamed.

use serde::de::DeserializeOwned;

use super::jsonc::parse_jsonc;
use super::problem::{Findings, JsonPath, Problem};
use super::schema::{Field, Shape, canonicalize, path_from_serde, remove_at};

/// The largest document accepted, in bytes. Gru's documents are a few hundred bytes; the
/// bound keeps a document written into etcd around the CLI from costing every agent time
/// and memory, and keeps the problem messages that quote its values short.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A bound on deserialization retries; each one removes a value, so it is never reached by a
/// document of a sensible size.
const MAX_TYPE_ERRORS: usize = 256;

/// Parses and validates one document whose top level is an object with `fields`.
pub(crate) fn parse_document<T: DeserializeOwned>(
    file: &str,
    text: &str,
    fields: &'static [Field],
    validate: impl FnOnce(&T, &mut Findings),
) -> Result<T, Vec<Problem>> {
    let mut findings = Findings::new(file);
    let root = JsonPath::root();
    if text.len() > MAX_DOCUMENT_BYTES {
        findings.add(
            &root,
            format!(
                "is {} bytes, more than the {MAX_DOCUMENT_BYTES} a document may hold",
                text.len()
            ),
        );
        return Err(findings.into_problems());
    }
    let value = match parse_jsonc(text) {
        Ok(value) => value,
        Err(message) => {
            findings.add(&root, message);
            return Err(findings.into_problems());
        }
    };
    let shape = Shape::Object(fields);
    let Some(mut value) = canonicalize(value, &shape, &root, &mut findings) else {
        return Err(findings.into_problems());
    };
    let Some(typed) = deserialize_reporting_all::<T>(&mut value, &shape, &mut findings) else {
        return Err(findings.into_problems());
    };
    let mut checks = Findings::new(file);
    validate(&typed, &mut checks);
    findings.merge_later(checks);
    if findings.is_empty() {
        Ok(typed)
    } else {
        Err(findings.into_problems())
    }
}

fn deserialize_reporting_all<T: DeserializeOwned>(
    value: &mut serde_json::Value,
    shape: &Shape,
    findings: &mut Findings,
) -> Option<T> {
    for _ in 0..MAX_TYPE_ERRORS {
        match serde_path_to_error::deserialize::<_, T>(&*value) {
            Ok(typed) => return Some(typed),
            Err(error) => {
                let path = path_from_serde(error.path(), shape);
                findings.add(&path, in_json_words(&error.inner().to_string()));
                if !remove_at(value, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// serde names Rust types (`expected u64`); an operator wrote JSON, so say it in JSON's words.
fn in_json_words(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected f64", "expected a number"),
        ("expected u64", "expected a whole number, 0 or more"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
    ];
    WORDS
        .iter()
        .find_map(|(rust, json)| {
            message
                .strip_suffix(rust)
                .map(|start| format!("{start}{json}"))
        })
        .unwrap_or_else(|| message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_over_the_size_bound_is_refused_unread() {
        let validate = |_: &serde_json::Value, _: &mut Findings| {};
        let fields: &[Field] = &[];
        let at_bound = format!("{{}}{}", " ".repeat(MAX_DOCUMENT_BYTES - 2));
        assert!(parse_document("config.json", &at_bound, fields, validate).is_ok());
        let over = format!("{{}}{}", " ".repeat(MAX_DOCUMENT_BYTES - 1));
        let problems =
            parse_document("config.json", &over, fields, validate).expect_err("too large");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("65537 bytes"),
            "{}",
            problems[0]
        );
    }
}
