//! Names of services, analytics and nodes.
//!
//! A name becomes an etcd key segment (`/gru/<cluster>/services/<name>`) and part of container
//! names, so it is restricted to what both accept: a `/` would split the key, a space would
//! be refused by Docker long after the configuration was pushed.

use super::problem::{Findings, JsonPath};

/// Letters, digits, `_`, `.` and `-`, starting with a letter or a digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Reports a missing or malformed name at `path`.
pub(crate) fn check_name(findings: &mut Findings, path: &str, name: &str) {
    if name.is_empty() {
        findings.required(path, name);
    } else if !is_valid_name(name) {
        findings.add_with_hint(
            &JsonPath::fields(path),
            format!("\"{name}\" is not a valid name"),
            Some(
                "use letters, digits, \"_\", \".\" and \"-\", starting with a letter or a digit"
                    .to_owned(),
            ),
        );
    }
}

/// Reports each empty entry of a list of names at `list[i]`.
pub(crate) fn check_no_empty_names(findings: &mut Findings, list: &JsonPath, names: &[String]) {
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() {
            findings.add(&list.index(index), "is an empty name");
        }
    }
}
