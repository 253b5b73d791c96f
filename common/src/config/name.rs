//! Names of services, analytics and nodes.
//!
//! A name becomes an etcd key segment (`/gru/<cluster>/services/<name>`) and part of container
//! names, so it must pass the key layout's own rule ([`crate::keys::check_name`]); checking it
//! here reports a bad name at push time, with its path, instead of when an agent first uses it.

use super::problem::{Findings, JsonPath};

/// Reports a missing or unusable name at `path`; `kind` says what it names ("service").
pub(crate) fn check_name(findings: &mut Findings, path: &str, kind: &'static str, name: &str) {
    if name.is_empty() {
        findings.required(path, name);
    } else if let Err(invalid) = crate::keys::check_name(kind, name) {
        findings.add(
            &JsonPath::fields(path),
            format!(
                "\"{name}\" is not a valid {kind} name: it {}",
                invalid.reason
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
