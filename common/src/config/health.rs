//! A service's health checks, `"Health": {"Readiness": <check>, "Liveness": <check>}` in its
//! descriptor: gru's addition (Gru had none).
//!
//! A check is one kind, `{"Http": "/ready"}` (a GET of that path on the instance's published
//! address; 2xx and 3xx pass), `{"Tcp": true}` (a TCP connect to it) or `{"Exec": ["/bin",
//! "arg"]}` (a command run in the container; exit 0 passes), with its timing: `Port` (a
//! container port, default the service's `DiscoveryPort`), `Interval`, `Timeout` and
//! `InitialDelay` in seconds (fractions allowed: `0.5` is 500 ms), `SuccessThreshold` and
//! `FailureThreshold` (consecutive results that change the state).
//!
//! Readiness decides whether an instance is in discovery (until it first passes it is
//! starting, counted but not published); liveness whether it is replaced. Both are optional:
//! a service without a readiness check is ready as soon as its container runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::port::check_optional_port;
use super::problem::{Findings, JsonPath};
use super::schema::{Field, Shape, field};

/// Seconds between two probes of one instance.
pub const DEFAULT_CHECK_INTERVAL_SECS: f64 = 5.0;
/// Seconds one probe may take before it counts as failed (or the interval, if shorter).
pub const DEFAULT_CHECK_TIMEOUT_SECS: f64 = 1.0;
/// Seconds after an instance starts before its first probe.
pub const DEFAULT_CHECK_INITIAL_DELAY_SECS: f64 = 0.0;
/// Consecutive passes that make a failing instance pass again.
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// Consecutive failures that make a passing instance fail.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// The shortest interval accepted: probing more often is load, not information.
pub const MIN_CHECK_INTERVAL_SECS: f64 = 0.1;
/// The longest interval, timeout or initial delay accepted (a day).
pub const MAX_CHECK_SECS: f64 = 86_400.0;

/// `"Health"`: the service's checks, each optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthChecks {
    /// Whether an instance may be in discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<HealthCheck>,
    /// Whether an instance is replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<HealthCheck>,
}

impl HealthChecks {
    pub fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none()
    }
}

/// One check, as written (times in seconds); read its kind through [`HealthCheck::kind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// The path of an HTTP GET, e.g. `/ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A TCP connect.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// A command run in the container; exit status 0 passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// The container port an HTTP or TCP check goes to; `None`: the `DiscoveryPort`.
    #[serde(
        with = "crate::config::port::optional_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u16>,
    #[serde(rename = "Interval")]
    pub interval_secs: f64,
    /// `None`: [`DEFAULT_CHECK_TIMEOUT_SECS`], or the interval if that is shorter.
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(rename = "InitialDelay")]
    pub initial_delay_secs: f64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            http: None,
            tcp: false,
            exec: None,
            port: None,
            interval_secs: DEFAULT_CHECK_INTERVAL_SECS,
            timeout_secs: None,
            initial_delay_secs: DEFAULT_CHECK_INITIAL_DELAY_SECS,
            success_threshold: DEFAULT_SUCCESS_THRESHOLD,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
        }
    }
}

/// What a check does, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// GET of this path at the instance's published address.
    Http(String),
    /// A TCP connect to the instance's published address.
    Tcp,
    /// This command, run in the container.
    Exec(Vec<String>),
}

impl CheckKind {
    /// Whether the check goes to the instance's published address (a port is needed).
    pub fn needs_port(&self) -> bool {
        !matches!(self, CheckKind::Exec(_))
    }
}

impl HealthCheck {
    /// The check's kind; `None` unless exactly one is given (validation refuses that).
    pub fn kind(&self) -> Option<CheckKind> {
        match (&self.http, self.tcp, &self.exec) {
            (Some(path), false, None) => Some(CheckKind::Http(path.clone())),
            (None, true, None) => Some(CheckKind::Tcp),
            (None, false, Some(command)) => Some(CheckKind::Exec(command.clone())),
            _ => None,
        }
    }

    /// The container port an HTTP or TCP check goes to: its own `Port`, else the service's
    /// `DiscoveryPort`.
    pub fn port_or(&self, discovery_port: Option<u16>) -> Option<u16> {
        self.port.or(discovery_port)
    }

    pub fn interval(&self) -> Duration {
        secs(self.interval_secs)
    }

    pub fn timeout(&self) -> Duration {
        secs(self.timeout_secs_or_default())
    }

    fn timeout_secs_or_default(&self) -> f64 {
        self.timeout_secs
            .unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS.min(self.interval_secs))
    }

    pub fn initial_delay(&self) -> Duration {
        secs(self.initial_delay_secs)
    }
}

/// A validated number of seconds as a duration (clamped, so a value that slipped past
/// validation cannot panic).
fn secs(value: f64) -> Duration {
    if value.is_finite() {
        Duration::from_secs_f64(value.clamp(0.0, MAX_CHECK_SECS))
    } else {
        Duration::ZERO
    }
}

const CHECK_FIELDS: &[Field] = &[
    field("Http", Shape::Any),
    field("Tcp", Shape::Any),
    field("Exec", Shape::Any),
    field("Port", Shape::Leaf(check_optional_port)),
    field("Interval", Shape::Any),
    field("Timeout", Shape::Any),
    field("InitialDelay", Shape::Any),
    field("SuccessThreshold", Shape::Any),
    field("FailureThreshold", Shape::Any),
];

pub(crate) const HEALTH_FIELDS: &[Field] = &[
    field("Readiness", Shape::Object(CHECK_FIELDS)),
    field("Liveness", Shape::Object(CHECK_FIELDS)),
];

/// Checks `Health` against the service it belongs to: `discovery_port` (the default port)
/// and `published` (whether a container port has a host port, i.e. is in `Ports`).
pub(crate) fn validate_health(
    health: &HealthChecks,
    discovery_port: Option<u16>,
    published: impl Fn(u16) -> bool,
    findings: &mut Findings,
) {
    for (name, check) in [
        ("Readiness", &health.readiness),
        ("Liveness", &health.liveness),
    ] {
        if let Some(check) = check {
            let path = JsonPath::fields("Health").field(name);
            validate_check(check, discovery_port, &published, &path, findings);
        }
    }
}

fn validate_check(
    check: &HealthCheck,
    discovery_port: Option<u16>,
    published: &impl Fn(u16) -> bool,
    path: &JsonPath,
    findings: &mut Findings,
) {
    let given: Vec<&str> = [
        check.http.as_ref().map(|_| "Http"),
        check.tcp.then_some("Tcp"),
        check.exec.as_ref().map(|_| "Exec"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [] => findings.add_with_hint(
            path,
            "names no check: give one of Http, Tcp and Exec",
            Some(
                "e.g. {\"Http\": \"/ready\"}, {\"Tcp\": true} or {\"Exec\": [\"/bin/check\"]}"
                    .to_owned(),
            ),
        ),
        [_] => {}
        several => findings.add_with_hint(
            path,
            format!("gives {}: a check is one of them", several.join(" and ")),
            Some("keep one; a service has one Readiness and one Liveness check".to_owned()),
        ),
    }
    if let Some(http) = &check.http
        && !http.starts_with('/')
    {
        findings.add_with_hint(
            &path.field("Http"),
            format!("{http:?} is not a path"),
            Some("write the path of the GET, starting with '/', e.g. \"/ready\"".to_owned()),
        );
    }
    if let Some(exec) = &check.exec
        && exec.first().is_none_or(|program| program.is_empty())
    {
        findings.add_with_hint(
            &path.field("Exec"),
            "names no command",
            Some(
                "write the program and its arguments, e.g. [\"/bin/check\", \"--ready\"]"
                    .to_owned(),
            ),
        );
    }
    if check.kind().is_some_and(|kind| kind.needs_port()) {
        match check.port_or(discovery_port) {
            None => findings.add_with_hint(
                path,
                "has no port to probe",
                Some("set its Port, or the service's DiscoveryPort".to_owned()),
            ),
            Some(port) if !published(port) => findings.add_with_hint(
                &path.field(if check.port.is_some() { "Port" } else { "Http" }),
                format!("container port {port} is not published"),
                Some(format!(
                    "an HTTP or TCP check goes to the instance's host port: add \"{port}\" to Configuration.Ports"
                )),
            ),
            Some(_) => {}
        }
    }
    let interval = check.interval_secs;
    for (name, value, min) in [
        ("Interval", interval, MIN_CHECK_INTERVAL_SECS),
        (
            "Timeout",
            check.timeout_secs_or_default(),
            f64::MIN_POSITIVE,
        ),
        ("InitialDelay", check.initial_delay_secs, 0.0),
    ] {
        if !(min..=MAX_CHECK_SECS).contains(&value) {
            let bound = if min == 0.0 {
                "at least 0".to_owned()
            } else if min == MIN_CHECK_INTERVAL_SECS {
                format!("at least {MIN_CHECK_INTERVAL_SECS}")
            } else {
                "above 0".to_owned()
            };
            findings.add_with_hint(
                &path.field(name),
                format!("{value} s is out of range: must be {bound} and at most {MAX_CHECK_SECS}"),
                Some("seconds; fractions are allowed, e.g. 0.5 for 500 ms".to_owned()),
            );
        }
    }
    if let Some(timeout) = check.timeout_secs.filter(|t| *t > interval)
        && (MIN_CHECK_INTERVAL_SECS..=MAX_CHECK_SECS).contains(&interval)
    {
        findings.add_with_hint(
            &path.field("Timeout"),
            format!("{timeout} s is longer than the Interval of {interval} s"),
            Some(
                "a probe must end before the next one is due: lower Timeout or raise Interval"
                    .to_owned(),
            ),
        );
    }
    for (name, value) in [
        ("SuccessThreshold", check.success_threshold),
        ("FailureThreshold", check.failure_threshold),
    ] {
        if value == 0 {
            findings.add_with_hint(
                &path.field(name),
                "must be at least 1, found 0",
                Some("the number of consecutive results that change the state".to_owned()),
            );
        }
    }
}
