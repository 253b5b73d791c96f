//! The configuration model: Gru's four JSON documents and gru's node records, read as Gru read
//! them and validated before anything is written.
//!
//! Compatibility: keys are matched ignoring case (as Go's encoding/json did), keys of user maps
//! (`Env`, `Ports`, `Constraints`) are kept as written, `//` and `/* */` comments are accepted,
//! and every field gru adds is optional with a default that reproduces Gru's behaviour.
//! Output is canonical: Gru's spelling of every key, re-readable by the same parser.
//!
//! Validation reports every [`Problem`] at once, each with its file and JSON path.
//!
//! * [`agent`]: `config.json`, the agent configuration;
//! * [`policy`]: `policy.json`, thresholds, periods, steps and cooldowns;
//! * [`service`]: `services/<file>.json`, service descriptors; [`pull`]: their `Pull` (policy,
//!   deadline, registry credentials as a [`Secret`]);
//! * [`service`]: `services/<file>.json`, service descriptors; [`health`]: their checks;
//! * [`analytic`]: `analytics/<file>.json`, expressions over metrics and constraints;
//! * [`node`]: node records written by `gru join`;
//! * [`cluster`]: all documents of a cluster, checked against each other;
//! * value types with a syntax of their own: [`PortRange`], [`ByteSize`], [`CpuSet`];
//! * machinery: comments (`jsonc`), the schema walk (`schema`), the per-document pipeline
//!   (`document`), problems and paths (`problem`), name checks and suggestions.
//!
//! Architecture invariant: this module does no I/O; callers read files or etcd and hand over
//! text.

pub mod agent;
pub mod analytic;
pub mod cluster;
mod cpuset;
mod document;
pub mod health;
pub mod hooks;
mod jsonc;
mod leaf;
mod memory;
mod name;
pub mod node;
pub mod policy;
mod port;
mod problem;
pub mod pull;
mod schema;
pub mod service;
mod suggest;
mod volumes;

pub use agent::{
    AgentConfig, AutonomicConfig, CommunicationConfig, DEFAULT_AUTONOMIC_LOOP_SECS,
    DEFAULT_COMMUNICATION_LOOP_SECS, DEFAULT_DISCOVERY_APP_ROOT, DEFAULT_DISCOVERY_TTL_SECS,
    DEFAULT_DOCKER_DAEMON_TIMEOUT_SECS, DEFAULT_DOCKER_DAEMON_URL, DEFAULT_MAX_FRIENDS,
    DEFAULT_METRIC_SERVICE, DEFAULT_PLANNER_STRATEGY, DEFAULT_STORAGE_SERVICE, DaemonEndpoint,
    DiscoveryConfig, DockerConfig, GRU_DEFAULT_DOCKER_SOCKET, MetricConfig, MetricConfiguration,
    MetricService, PlannerStrategy, StorageConfig, StorageService, parse_agent_config,
};
pub use analytic::{Analytic, BASE_METRICS, base_metric, parse_analytic};
pub use cluster::{
    ANALYTICS_DIR, CONFIG_FILE, ClusterConfig, DocumentKey, POLICY_FILE, SERVICES_DIR,
    SourceDocument,
};
pub use cpuset::{CpuSet, MAX_CPU_INDEX};
pub use health::{CheckKind, HealthCheck, HealthChecks};
pub use leaf::ValueError;
pub use memory::ByteSize;
pub use node::{
    NodeConfig, NodeConstraints, NodeResources, Scheme, parse_node_config, parse_node_constraints,
    parse_node_resources,
};
pub use policy::{
    DEFAULT_COOLDOWN_IN_SECS, DEFAULT_COOLDOWN_OUT_SECS, DEFAULT_MAX_GROWTH_PERCENT,
    DEFAULT_PERIOD_SECS, DEFAULT_SCALEIN_STABILIZATION_SECS, DEFAULT_SCALEIN_THRESHOLD,
    DEFAULT_SCALEOUT_THRESHOLD, DEFAULT_STEP_INSTANCES, DEFAULT_SWAP_THRESHOLD, PolicyConfig,
    PolicyRule, RuleMode, ServicePolicy, Smoothing, parse_policy,
};
pub use port::PortRange;
pub use problem::Problem;
pub use pull::{
    DEFAULT_PULL_POLICY, DEFAULT_PULL_TIMEOUT_SECS, PullConfig, PullPolicy, REDACTED, RegistryAuth,
    Secret, redact_service_json,
};
pub use service::{
    ConstraintValue, ContainerConfig, DEFAULT_CPU_NUMBER, DEFAULT_MAX_INSTANCES,
    DEFAULT_MIN_INSTANCES, DEFAULT_STOP_TIMEOUT_SECS, DOCKER_CPU_SHARES, DOCKER_MIN_MEMORY_BYTES,
    ServiceDescriptor, parse_service,
};
pub use volumes::Volumes;
