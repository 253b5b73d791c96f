//! Service descriptors, `services/<file>.json`: what to run (image, command, resources,
//! ports) and what the planner may do with it.
//!
//! Gru's fields are read as Gru wrote them (`"DiscoveryPort":"50000"`, `"cpunumber"` in lower
//! case, `Ports` as host port ranges). gru adds bounds on the number of instances and
//! `Attached` sidecar services; their defaults (0, unbounded, none) are Gru's behaviour.
//! `Pull` (issue 13, see [`super::pull`]) says when the image is pulled and with which
//! credentials; by default it is pulled when missing, anonymously.
//!
//! `Health` (readiness and liveness checks, see [`super::health`]) is gru's too; none by
//! default, as in Gru.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cpuset::CpuSet;
use super::document::parse_document;
use super::health::{HEALTH_FIELDS, HealthChecks, validate_health};
use super::leaf::{ValueError, check, check_optional, describe};
use super::memory::ByteSize;
use super::name::{check_name, check_no_empty_names};
use super::policy::{POLICY_FIELDS, ServicePolicy};
use super::port::{PortRange, check_container_port, check_optional_port};
use super::problem::{Findings, JsonPath, Problem};
use super::pull::{PULL_FIELDS, PullConfig, validate_pull};
use super::schema::{Field, Shape, field};
use super::volumes::{Volumes, check_volumes};

/// Not pinned: the agent does not choose CPUs for the container.
pub const DEFAULT_CPU_NUMBER: u32 = 0;
/// Seconds Docker waits after SIGTERM before killing a stopping container.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MIN_INSTANCES: u32 = 0;
/// `None`: no upper bound on the instances of a service in the cluster.
pub const DEFAULT_MAX_INSTANCES: Option<u32> = None;
/// The smallest memory limit the Docker engine accepts.
pub const DOCKER_MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// The range of CPU shares (a relative weight) the engine accepts; 0 leaves it unset.
pub const DOCKER_CPU_SHARES: std::ops::RangeInclusive<u64> = 2..=262_144;

/// `services/<file>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDescriptor {
    pub name: String,
    /// Gru's `Type`; read it through [`ServiceDescriptor::service_type`], which defaults to the name.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The container port at which instances are published for discovery.
    #[serde(
        with = "crate::config::port::optional_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub discovery_port: Option<u16>,
    pub analytics: Vec<String>,
    /// Values the analytics read by name, e.g. `MAX_RESP_TIME`; keys as written.
    pub constraints: BTreeMap<String, ConstraintValue>,
    pub configuration: ContainerConfig,
    /// gru's addition: instances the cluster keeps at least.
    pub min_instances: u32,
    /// gru's addition: instances the cluster never exceeds; `None` for no bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// gru's addition: services started and stopped with each instance of this one.
    pub attached: Vec<String>,
    /// gru's addition: the service's own policy; what it gives replaces the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<ServicePolicy>,
    /// gru's addition: how a change of `Image` or `Configuration` is rolled across the
    /// cluster ([`UpdateConfig`]).
    #[serde(skip_serializing_if = "UpdateConfig::is_default")]
    pub update: UpdateConfig,
    /// gru's addition: when the image is pulled, its deadline, the registry credentials.
    #[serde(skip_serializing_if = "PullConfig::is_default")]
    pub pull: PullConfig,
    /// gru's addition: readiness (in discovery or not) and liveness (replaced or not)
    /// checks; none by default (ready as soon as the container runs).
    #[serde(skip_serializing_if = "HealthChecks::is_empty")]
    pub health: HealthChecks,
}

impl ServiceDescriptor {
    /// Gru's service type (services of one type may be swapped); the name unless given.
    pub fn service_type(&self) -> &str {
        self.type_name.as_deref().unwrap_or(&self.name)
    }

    /// What an instance of this descriptor runs, as 12 hex digits: a hash of `Image` and
    /// `Configuration` (their canonical JSON), the fields a container is created from. Two
    /// descriptors with the same version make interchangeable containers; a new version is
    /// rolled across the cluster (`Update`). Bounds, analytics, policy and the update
    /// settings themselves are read by the agents as they are and change no container.
    pub fn version(&self) -> String {
        use sha2::Digest;
        #[derive(Serialize)]
        struct Runs<'a> {
            image: &'a str,
            configuration: &'a ContainerConfig,
        }
        let runs = Runs {
            image: &self.image,
            configuration: &self.configuration,
        };
        // Serializing a struct of strings, numbers and ordered maps cannot fail.
        let json = serde_json::to_vec(&runs).unwrap_or_default();
        let digest = sha2::Sha256::digest(&json);
        hex::encode(&digest[..VERSION_BYTES])
    }
}

/// Bytes of the hash kept in a [`ServiceDescriptor::version`] (12 hex digits).
const VERSION_BYTES: usize = 6;

/// Instances replaced per rollout step unless `Update.Parallelism` says otherwise.
pub const DEFAULT_UPDATE_PARALLELISM: u32 = 1;
/// Seconds a new instance has to become ready before its step fails.
pub const DEFAULT_UPDATE_READY_TIMEOUT_SECS: u64 = 60;
/// Seconds a new instance must stay ready and running before the old ones are stopped.
pub const DEFAULT_UPDATE_MONITOR_SECS: u64 = 5;
/// Seconds between two steps of a rollout.
pub const DEFAULT_UPDATE_DELAY_SECS: u64 = 0;

/// What a failed rollout step does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureAction {
    /// Restore the previous descriptor (the cluster then rolls back to it).
    #[default]
    #[serde(rename = "rollback", alias = "Rollback")]
    Rollback,
    /// Stop where it is, the new instances of the failed step stopped, until an operator
    /// resumes or undoes it.
    #[serde(rename = "pause", alias = "Pause")]
    Pause,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
        }
    }
}

/// gru's `Update`: how a new version of a service (a changed `Image` or `Configuration`)
/// replaces the old one. Each step starts `Parallelism` new instances on one node, waits
/// until they are ready and have stayed so for `Monitor` seconds, then stops as many old
/// ones there: the ready count never drops below what it was. A step that is not ready
/// within `ReadyTimeout`, or whose instance exits, fails the rollout (`FailureAction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    pub parallelism: u32,
    #[serde(rename = "ReadyTimeout")]
    pub ready_timeout_secs: u64,
    #[serde(rename = "Monitor")]
    pub monitor_secs: u64,
    #[serde(rename = "Delay")]
    pub delay_secs: u64,
    pub failure_action: FailureAction,
    /// Whether a step starts its new instances before it stops the old ones (a surge of
    /// `Parallelism` above the count, none unavailable) or the other way round (no surge,
    /// `Parallelism` unavailable while the new ones start: for a node without room for more).
    pub order: UpdateOrder,
}

/// The order of a rollout step's starts and stops (Swarm's `--update-order`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOrder {
    #[default]
    #[serde(rename = "start-first")]
    StartFirst,
    #[serde(rename = "stop-first")]
    StopFirst,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: DEFAULT_UPDATE_PARALLELISM,
            ready_timeout_secs: DEFAULT_UPDATE_READY_TIMEOUT_SECS,
            monitor_secs: DEFAULT_UPDATE_MONITOR_SECS,
            delay_secs: DEFAULT_UPDATE_DELAY_SECS,
            failure_action: FailureAction::default(),
            order: UpdateOrder::default(),
        }
    }
}

impl UpdateConfig {
    fn is_default(&self) -> bool {
        *self == UpdateConfig::default()
    }
}

/// A constraint's value: a number, or a string for what the expressions compare as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConstraintValue {
    Number(serde_json::Number),
    Text(String),
}

impl ConstraintValue {
    /// The value as a number, if it is one (a number written as a string counts).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ConstraintValue::Number(number) => number.as_f64(),
            ConstraintValue::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// How each container of the service is created; Gru's `Configuration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    /// CPUs the agent pins each container to; 0 for no pinning.
    #[serde(rename = "cpunumber")]
    pub cpu_number: u32,
    /// Memory limit; `None` for none.
    #[serde(
        with = "crate::config::leaf::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<ByteSize>,
    /// CPUs the container may use, when not chosen by the agent.
    #[serde(
        with = "crate::config::leaf::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpuset_cpus: Option<CpuSet>,
    /// Gru's `CpuShares`: the containers' CPU weight relative to others on the node (the
    /// engine's default is 1024); `None` or 0 leaves the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    #[serde(rename = "StopTimeout")]
    pub stop_timeout_secs: u64,
    /// Keys as written; an empty value is filled from the agent's environment.
    pub env: BTreeMap<String, String>,
    /// Container port (`"8080"`, `"8080/udp"`) to the host ports an instance may take.
    pub ports: BTreeMap<String, PortRange>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub volumes: Volumes,
    pub links: Vec<String>,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            cpu_number: DEFAULT_CPU_NUMBER,
            memory: None,
            cpuset_cpus: None,
            cpu_shares: None,
            stop_timeout_secs: DEFAULT_STOP_TIMEOUT_SECS,
            env: BTreeMap::new(),
            ports: BTreeMap::new(),
            cmd: Vec::new(),
            entrypoint: Vec::new(),
            volumes: Volumes::default(),
            links: Vec::new(),
        }
    }
}

fn check_constraint(value: &Value) -> Result<(), ValueError> {
    match value {
        Value::Number(_) | Value::String(_) => Ok(()),
        other => Err(ValueError::new(format!(
            "expected a number or a string, found {}",
            describe(other)
        ))),
    }
}

fn check_env_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() || name.contains('=') {
        return Err(ValueError::new(format!(
            "\"{name}\" is not an environment variable name"
        )));
    }
    Ok(())
}

const CONTAINER_FIELDS: &[Field] = &[
    field("cpunumber", Shape::Any),
    field("Memory", Shape::Leaf(check_optional::<ByteSize>)),
    field("CpusetCpus", Shape::Leaf(check_optional::<CpuSet>)),
    field("CpuShares", Shape::Any),
    field("StopTimeout", Shape::Any),
    field(
        "Env",
        Shape::Map {
            key: Some(check_env_name),
            value: &Shape::Any,
        },
    ),
    field(
        "Ports",
        Shape::Map {
            key: Some(check_container_port),
            value: &Shape::Leaf(check::<PortRange>),
        },
    ),
    field("Cmd", Shape::Any),
    field("Entrypoint", Shape::Any),
    field("Volumes", Shape::Leaf(check_volumes)),
    field("Links", Shape::Any),
];
const SERVICE_FIELDS: &[Field] = &[
    field("Name", Shape::Any),
    field("Type", Shape::Any),
    field("Image", Shape::Any),
    field("Remote", Shape::Any),
    field("DiscoveryPort", Shape::Leaf(check_optional_port)),
    field("Analytics", Shape::Any),
    field(
        "Constraints",
        Shape::Map {
            key: None,
            value: &Shape::Leaf(check_constraint),
        },
    ),
    field("Configuration", Shape::Object(CONTAINER_FIELDS)),
    field("MinInstances", Shape::Any),
    field("MaxInstances", Shape::Any),
    field("Attached", Shape::Any),
    field("Policy", Shape::Object(POLICY_FIELDS)),
    field("Update", Shape::Object(UPDATE_FIELDS)),
    field("Pull", Shape::Object(PULL_FIELDS)),
    field("Health", Shape::Object(HEALTH_FIELDS)),
];
const UPDATE_FIELDS: &[Field] = &[
    field("Parallelism", Shape::Any),
    field("ReadyTimeout", Shape::Any),
    field("Monitor", Shape::Any),
    field("Delay", Shape::Any),
    field("FailureAction", Shape::Leaf(check_failure_action)),
    field("Order", Shape::Leaf(check_order)),
];

fn check_order(value: &Value) -> Result<(), ValueError> {
    match value.as_str() {
        Some("start-first" | "stop-first") => Ok(()),
        _ => Err(ValueError::new(format!(
            "expected \"start-first\" or \"stop-first\", found {}",
            describe(value)
        ))
        .with_hint("\"start-first\" (the default) never has fewer instances ready than before")),
    }
}

fn check_failure_action(value: &Value) -> Result<(), ValueError> {
    match value.as_str() {
        Some("rollback" | "Rollback" | "pause" | "Pause") => Ok(()),
        _ => Err(ValueError::new(format!(
            "expected \"rollback\" or \"pause\", found {}",
            describe(value)
        ))
        .with_hint("\"rollback\" restores the previous descriptor when a step fails")),
    }
}

/// Parses and validates a service descriptor (`services/<file>.json`).
pub fn parse_service(file: &str, text: &str) -> Result<ServiceDescriptor, Vec<Problem>> {
    parse_document(file, text, SERVICE_FIELDS, validate)
}

fn validate(service: &ServiceDescriptor, findings: &mut Findings) {
    check_name(findings, "Name", "service", &service.name);
    if let Some(type_name) = &service.type_name {
        check_name(findings, "Type", "service type", type_name);
    }
    findings.required("Image", &service.image);
    check_no_empty_names(findings, &JsonPath::fields("Analytics"), &service.analytics);
    check_no_empty_names(findings, &JsonPath::fields("Attached"), &service.attached);
    for (index, attached) in service.attached.iter().enumerate() {
        if *attached == service.name {
            findings.add(
                &JsonPath::fields("Attached").index(index),
                format!("\"{attached}\" is this service: a service cannot be attached to itself"),
            );
        }
    }
    match service.max_instances {
        Some(0) => findings.add_with_hint(
            &JsonPath::fields("MaxInstances"),
            "must be at least 1, found 0",
            Some("leave MaxInstances out for no upper bound".to_owned()),
        ),
        Some(max) if service.min_instances > max => findings.add(
            &JsonPath::fields("MinInstances"),
            format!("{} is above MaxInstances {max}", service.min_instances),
        ),
        _ => {}
    }
    validate_container(&service.configuration, findings);
    if service.update.parallelism == 0 {
        findings.add_with_hint(
            &JsonPath::fields("Update.Parallelism"),
            "must be at least 1, found 0",
            Some("instances replaced per step; leave it out for 1".to_owned()),
        );
    }
    if service.update.ready_timeout_secs == 0 {
        findings.add_with_hint(
            &JsonPath::fields("Update.ReadyTimeout"),
            "must be at least 1 second, found 0",
            Some(format!(
                "seconds a new instance has to become ready; leave it out for {DEFAULT_UPDATE_READY_TIMEOUT_SECS}"
            )),
        );
    }
    validate_pull(&service.pull, &service.image, findings);
    let ports = &service.configuration.ports;
    validate_health(
        &service.health,
        service.discovery_port,
        |port| ports.contains_key(&port.to_string()) || ports.contains_key(&format!("{port}/tcp")),
        findings,
    );
}

fn validate_container(container: &ContainerConfig, findings: &mut Findings) {
    if let Some(shares) = container
        .cpu_shares
        .filter(|s| *s != 0 && !DOCKER_CPU_SHARES.contains(s))
    {
        findings.add_with_hint(
            &JsonPath::fields("Configuration.CpuShares"),
            format!(
                "{shares} is outside the engine's range {} to {}",
                DOCKER_CPU_SHARES.start(),
                DOCKER_CPU_SHARES.end()
            ),
            Some("1024 is the engine's default weight; leave CpuShares out or 0 for it".to_owned()),
        );
    }
    if let Some(memory) = container
        .memory
        .filter(|m| m.bytes() < DOCKER_MIN_MEMORY_BYTES)
    {
        findings.add(
            &JsonPath::fields("Configuration.Memory"),
            format!(
                "\"{memory}\" is below the engine's minimum of {}",
                ByteSize::from_bytes(DOCKER_MIN_MEMORY_BYTES)
            ),
        );
    }
    if let Some(cpuset) = &container.cpuset_cpus {
        let count = cpuset.cpus().len();
        if container.cpu_number != 0 && usize::try_from(container.cpu_number) != Ok(count) {
            findings.add_with_hint(
                &JsonPath::fields("Configuration.cpunumber"),
                format!(
                    "{} does not match CpusetCpus \"{cpuset}\", which names {count} cpus",
                    container.cpu_number
                ),
                Some("set one of cpunumber and CpusetCpus".to_owned()),
            );
        }
    }
}
