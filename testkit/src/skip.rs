//! Skipping a test explicitly: every skip of the workspace's tests goes through
//! [`skip_listed`], so that one rule holds everywhere. `GRU_TEST_SKIP` (comma-separated
//! names: `etcd`, `docker`, `victoria-metrics`, `compose`, ...) skips the tests that need
//! what it lists, and each skip is printed; on CI (`CI=true`) a test that would skip fails
//! instead, so a run that did not test something cannot pass for one that did.

/// The environment variable that lists what to skip.
pub const SKIP_ENV: &str = "GRU_TEST_SKIP";

/// What a test does about one component it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipVerdict {
    /// Not listed: the test goes on (and fails if the component is missing).
    Run,
    /// Listed, not on CI: the test prints the skip and returns.
    Skip,
    /// Listed, on CI: the test fails.
    FailOnCi,
}

/// The rule, from the values of `GRU_TEST_SKIP` and `CI` (pure).
pub fn verdict(skip_list: &str, ci: Option<&str>, name: &str) -> SkipVerdict {
    let listed = skip_list
        .split(',')
        .any(|s| s.trim().eq_ignore_ascii_case(name));
    match (listed, on_ci(ci)) {
        (false, _) => SkipVerdict::Run,
        (true, false) => SkipVerdict::Skip,
        (true, true) => SkipVerdict::FailOnCi,
    }
}

/// Whether a value of `CI` means a CI run (`true`, `1` or `yes`, as CI services set it).
pub fn on_ci(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| ["true", "1", "yes"].contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// Whether the test `test` must return at once because `GRU_TEST_SKIP` lists `name`;
/// then the skip is printed (`SKIPPED <test>: ...`). On CI (`CI=true`) a listed component
/// fails the test instead, with a message that says so.
pub fn skip_listed(test: &str, name: &str) -> bool {
    let skip_list = std::env::var(SKIP_ENV).unwrap_or_default();
    let ci = std::env::var("CI").ok();
    match verdict(&skip_list, ci.as_deref(), name) {
        SkipVerdict::Run => false,
        SkipVerdict::Skip => {
            eprintln!("SKIPPED {test}: {SKIP_ENV} lists {name} (this test did not run)");
            true
        }
        SkipVerdict::FailOnCi => panic!(
            "{test} would be skipped ({SKIP_ENV}={skip_list} lists {name}), but CI={} is set: \
             on CI every test runs; make {name} available, or unset {SKIP_ENV}",
            ci.unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_component_skips_except_on_ci() {
        use SkipVerdict::*;
        for (skip_list, ci, name, expected) in [
            ("", None, "etcd", Run),
            ("", Some("true"), "etcd", Run),
            ("docker", None, "etcd", Run),
            ("docker", Some("true"), "etcd", Run),
            ("etcd", None, "etcd", Skip),
            ("docker, ETCD", None, "etcd", Skip),
            ("etcd", Some("false"), "etcd", Skip),
            ("etcd", Some("0"), "etcd", Skip),
            ("etcd", Some(""), "etcd", Skip),
            ("etcd", Some("true"), "etcd", FailOnCi),
            ("etcd", Some("TRUE"), "etcd", FailOnCi),
            ("etcd", Some("1"), "etcd", FailOnCi),
            ("docker,etcd", Some("yes"), "etcd", FailOnCi),
            ("etcdctl", None, "etcd", Run),
        ] {
            assert_eq!(
                verdict(skip_list, ci, name),
                expected,
                "GRU_TEST_SKIP={skip_list:?} CI={ci:?} for {name}"
            );
        }
    }
}
