//! The agent configuration, `config.json`: how an agent reaches Docker, how often its loops
//! run, where metrics go and where instances are published for discovery.
//!
//! Every section and field may be left out; the defaults below are Gru's, so a Gru
//! `config.json` behaves as it did. `DryRun` is gru's addition.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::document::parse_document;
use super::leaf::{JsonLeaf, ValueError, check, keyword, serde_as_text};
use super::problem::{Findings, JsonPath, Problem};
use super::schema::{Field, Shape, field};

pub const DEFAULT_DOCKER_DAEMON_URL: &str = "unix:///var/run/docker.sock";
/// The engine's socket on the node, which Gru's `"default"` names.
pub const GRU_DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_DOCKER_DAEMON_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_AUTONOMIC_LOOP_SECS: u64 = 60;
pub const DEFAULT_PLANNER_STRATEGY: PlannerStrategy = PlannerStrategy::ProbCumulative;
pub const DEFAULT_COMMUNICATION_LOOP_SECS: u64 = 55;
pub const DEFAULT_MAX_FRIENDS: u32 = 5;
pub const DEFAULT_STORAGE_SERVICE: StorageService = StorageService::Internal;
pub const DEFAULT_METRIC_SERVICE: MetricService = MetricService::None;
/// Empty: instances are published under `/gru/<cluster>/discovery`.
pub const DEFAULT_DISCOVERY_APP_ROOT: &str = "";
pub const DEFAULT_DISCOVERY_TTL_SECS: u64 = 5;

/// `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentConfig {
    pub docker: DockerConfig,
    pub autonomic: AutonomicConfig,
    pub communication: CommunicationConfig,
    pub storage: StorageConfig,
    pub metric: MetricConfig,
    pub discovery: DiscoveryConfig,
    /// gru's addition: hooks that add and remove machines.
    #[serde(skip_serializing_if = "is_default_nodes")]
    pub nodes: super::hooks::NodesConfig,
}

fn is_default_nodes(nodes: &super::hooks::NodesConfig) -> bool {
    *nodes == super::hooks::NodesConfig::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerConfig {
    #[serde(rename = "DaemonUrl")]
    pub daemon_url: String,
    #[serde(rename = "DaemonTimeout")]
    pub daemon_timeout_secs: u64,
    /// gru's addition: a Docker `config.json` (as `docker login` writes it) on the agent's
    /// node whose `auths` give registry credentials to services without `Pull.Auth`.
    #[serde(rename = "RegistryAuthFile", skip_serializing_if = "Option::is_none")]
    pub registry_auth_file: Option<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            daemon_url: DEFAULT_DOCKER_DAEMON_URL.to_owned(),
            daemon_timeout_secs: DEFAULT_DOCKER_DAEMON_TIMEOUT_SECS,
            registry_auth_file: None,
        }
    }
}

/// The Docker engine `Docker.DaemonUrl` names. Gru's two forms are read as Gru meant them:
/// `"default"` is the node's own Unix socket, and `"local:PORT"` is this node's address
/// (`gru join --address`) on that port, which is how an agent running in a container
/// reaches the engine of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEndpoint {
    /// A Unix socket, by path: `unix:///var/run/docker.sock`, or Gru's `default`.
    Unix(String),
    /// An engine over HTTP: `http://host:port`, `https://...`, `tcp://host:port` or Gru's
    /// bare `host:port`, always kept as an `http(s)://` URL.
    Http(String),
    /// Gru's `local:PORT`: this node's address on that port.
    Local { port: u16 },
}

impl DaemonEndpoint {
    /// Reads a `DaemonUrl`, or says how to write it.
    pub fn parse(text: &str) -> Result<DaemonEndpoint, ValueError> {
        const FORMS: &str = "write \"default\" (this node's socket), \"local:2375\" (this node's address on port 2375), \"unix:///path\", \"tcp://host:port\" or \"host:port\"";
        let text = text.trim();
        let port_of = |port: &str| match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(
                ValueError::new(format!("\"{text}\": \"{port}\" is not a port (1 to 65535)"))
                    .with_hint(FORMS),
            ),
        };
        if text.eq_ignore_ascii_case("default") {
            return Ok(DaemonEndpoint::Unix(GRU_DEFAULT_DOCKER_SOCKET.to_owned()));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            return match scheme.as_str() {
                "unix" if rest.starts_with('/') => Ok(DaemonEndpoint::Unix(rest.to_owned())),
                "unix" => Err(
                    ValueError::new(format!("\"{text}\" names no absolute socket path"))
                        .with_hint(FORMS),
                ),
                "tcp" | "http" | "https" if !rest.is_empty() && !rest.starts_with('/') => {
                    let scheme = if scheme == "https" { "https" } else { "http" };
                    Ok(DaemonEndpoint::Http(format!("{scheme}://{rest}")))
                }
                "tcp" | "http" | "https" => {
                    Err(ValueError::new(format!("\"{text}\" names no host")).with_hint(FORMS))
                }
                _ => Err(ValueError::new(format!(
                    "\"{text}\": the engine is not reached over \"{scheme}\""
                ))
                .with_hint(FORMS)),
            };
        }
        match text.rsplit_once(':') {
            Some((host, port)) if host.eq_ignore_ascii_case("local") => Ok(DaemonEndpoint::Local {
                port: port_of(port)?,
            }),
            Some((host, port)) if !host.is_empty() => {
                port_of(port)?;
                Ok(DaemonEndpoint::Http(format!("http://{host}:{port}")))
            }
            _ => Err(
                ValueError::new(format!("\"{text}\" is not a Docker engine address"))
                    .with_hint(FORMS),
            ),
        }
    }

    /// The URL to connect to; `local` is this node's `address`.
    pub fn url(&self, address: &str) -> String {
        match self {
            DaemonEndpoint::Unix(path) => format!("unix://{path}"),
            DaemonEndpoint::Http(url) => url.clone(),
            DaemonEndpoint::Local { port } if address.contains(':') => {
                format!("http://[{address}]:{port}")
            }
            DaemonEndpoint::Local { port } => format!("http://{address}:{port}"),
        }
    }
}

/// The MAPE-K loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutonomicConfig {
    #[serde(rename = "LoopTimeInterval")]
    pub loop_time_interval_secs: u64,
    #[serde(rename = "PlannerStrategy")]
    pub planner_strategy: PlannerStrategy,
    #[serde(rename = "EnableLogReading")]
    pub enable_log_reading: bool,
    /// gru's addition: decide and record every decision, but never act on it.
    #[serde(rename = "DryRun")]
    pub dry_run: bool,
}

impl Default for AutonomicConfig {
    fn default() -> Self {
        AutonomicConfig {
            loop_time_interval_secs: DEFAULT_AUTONOMIC_LOOP_SECS,
            planner_strategy: DEFAULT_PLANNER_STRATEGY,
            enable_log_reading: false,
            dry_run: false,
        }
    }
}

/// The exchange of summaries with friends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommunicationConfig {
    #[serde(rename = "LoopTimeInterval")]
    pub loop_time_interval_secs: u64,
    #[serde(rename = "MaxFriends")]
    pub max_friends: u32,
}

impl Default for CommunicationConfig {
    fn default() -> Self {
        CommunicationConfig {
            loop_time_interval_secs: DEFAULT_COMMUNICATION_LOOP_SECS,
            max_friends: DEFAULT_MAX_FRIENDS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StorageConfig {
    pub storage_service: StorageService,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            storage_service: DEFAULT_STORAGE_SERVICE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MetricConfig {
    pub metric_service: MetricService,
    pub configuration: MetricConfiguration,
}

impl Default for MetricConfig {
    fn default() -> Self {
        MetricConfig {
            metric_service: DEFAULT_METRIC_SERVICE,
            configuration: MetricConfiguration::default(),
        }
    }
}

/// Where metrics are written. `Url`, `Org`, `Bucket` and `Token` are InfluxDB 2's; Gru's
/// InfluxDB 1 fields are still read, and `DbName` serves as the bucket when `Bucket` is unset.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MetricConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl MetricConfiguration {
    /// The bucket to write to: `Bucket`, or else Gru's `DbName`.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket
            .as_deref()
            .or(self.db_name.as_deref())
            .filter(|name| !name.is_empty())
    }
}

/// Written by hand so that a logged configuration never shows a token or a password.
impl fmt::Debug for MetricConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("MetricConfiguration")
            .field("url", &self.url)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &redacted(&self.token))
            .field("db_name", &self.db_name)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryConfig {
    /// Where instances are published; empty means `/gru/<cluster>/discovery`.
    #[serde(rename = "AppRoot")]
    pub app_root: String,
    /// Lifetime of the published records, renewed while the agent lives.
    #[serde(rename = "TTL")]
    pub ttl_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            app_root: DEFAULT_DISCOVERY_APP_ROOT.to_owned(),
            ttl_secs: DEFAULT_DISCOVERY_TTL_SECS,
        }
    }
}

/// How the planner turns action weights into a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlannerStrategy {
    /// Roulette over the weights of all actions.
    ProbCumulative,
    /// Gru's: draw against the difference between the best and the no-action weight.
    ProbDelta,
    /// Deterministic: the heaviest action. Gru's test strategy `dummy` did the same (the
    /// heaviest action, none when every weight is 0), so `"dummy"` is read as `greedy`.
    Greedy,
}

impl PlannerStrategy {
    /// The first name of a variant is the one written back.
    const NAMES: [(&'static str, PlannerStrategy); 4] = [
        ("probcumulative", PlannerStrategy::ProbCumulative),
        ("probdelta", PlannerStrategy::ProbDelta),
        ("greedy", PlannerStrategy::Greedy),
        ("dummy", PlannerStrategy::Greedy),
    ];
}

/// Where metrics are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricService {
    /// Written `""`: metrics stay inside the agents.
    None,
    InfluxDb,
}

impl MetricService {
    /// Gru's `"noservice"` (its exporter that exported nothing) is `""`. The first name of
    /// a variant is the one written back.
    const NAMES: [(&'static str, MetricService); 3] = [
        ("", MetricService::None),
        ("noservice", MetricService::None),
        ("influxdb", MetricService::InfluxDb),
    ];
}

/// Where agents keep their shared records; only Gru's `internal` (etcd) exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageService {
    Internal,
}

impl StorageService {
    /// Gru had only `internal` and fell back to it for any other name, `"noservice"`
    /// included; gru reads `"noservice"` as `internal` too (other names are refused).
    const NAMES: [(&'static str, StorageService); 2] = [
        ("internal", StorageService::Internal),
        ("noservice", StorageService::Internal),
    ];
}

/// `Display` (the canonical name), `JsonLeaf` (any case) and serde for a keyword enum.
macro_rules! keyword_enum {
    ($type:ty, $what:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (name, _) = <$type>::NAMES
                    .iter()
                    .find(|(_, value)| value == self)
                    .expect("every variant is named");
                f.write_str(name)
            }
        }

        impl JsonLeaf for $type {
            fn from_json(value: &Value) -> Result<Self, ValueError> {
                keyword(value, $what, &<$type>::NAMES)
            }
        }

        serde_as_text!($type);
    };
}

keyword_enum!(PlannerStrategy, "planner strategy");
keyword_enum!(MetricService, "metric service");
keyword_enum!(StorageService, "storage service");

/// The schema walk's check of `DaemonUrl`.
fn check_daemon_url(value: &Value) -> Result<(), ValueError> {
    match value {
        Value::String(text) if text.trim().is_empty() => Ok(()),
        Value::String(text) => DaemonEndpoint::parse(text).map(|_| ()),
        _ => Ok(()),
    }
}

const DOCKER_FIELDS: &[Field] = &[
    field("DaemonUrl", Shape::Leaf(check_daemon_url)),
    field("DaemonTimeout", Shape::Any),
    field("RegistryAuthFile", Shape::Any),
];
const AUTONOMIC_FIELDS: &[Field] = &[
    field("LoopTimeInterval", Shape::Any),
    field("PlannerStrategy", Shape::Leaf(check::<PlannerStrategy>)),
    field("EnableLogReading", Shape::Any),
    field("DryRun", Shape::Any),
];
const COMMUNICATION_FIELDS: &[Field] = &[
    field("LoopTimeInterval", Shape::Any),
    field("MaxFriends", Shape::Any),
];
const STORAGE_FIELDS: &[Field] = &[field(
    "StorageService",
    Shape::Leaf(check::<StorageService>),
)];
const METRIC_CONFIGURATION_FIELDS: &[Field] = &[
    field("Url", Shape::Any),
    field("Org", Shape::Any),
    field("Bucket", Shape::Any),
    field("Token", Shape::Any),
    field("DbName", Shape::Any),
    field("Username", Shape::Any),
    field("Password", Shape::Any),
];
const METRIC_FIELDS: &[Field] = &[
    field("MetricService", Shape::Leaf(check::<MetricService>)),
    field("Configuration", Shape::Object(METRIC_CONFIGURATION_FIELDS)),
];
const DISCOVERY_FIELDS: &[Field] = &[field("AppRoot", Shape::Any), field("TTL", Shape::Any)];
const AGENT_FIELDS: &[Field] = &[
    field("Docker", Shape::Object(DOCKER_FIELDS)),
    field("Autonomic", Shape::Object(AUTONOMIC_FIELDS)),
    field("Communication", Shape::Object(COMMUNICATION_FIELDS)),
    field("Storage", Shape::Object(STORAGE_FIELDS)),
    field("Metric", Shape::Object(METRIC_FIELDS)),
    field("Discovery", Shape::Object(DISCOVERY_FIELDS)),
    field("Nodes", Shape::Object(super::hooks::NODES_FIELDS)),
];

/// Parses and validates an agent configuration (`config.json`).
pub fn parse_agent_config(file: &str, text: &str) -> Result<AgentConfig, Vec<Problem>> {
    parse_document(file, text, AGENT_FIELDS, validate)
}

fn validate(config: &AgentConfig, findings: &mut Findings) {
    findings.required("Docker.DaemonUrl", &config.docker.daemon_url);
    findings.at_least("Docker.DaemonTimeout", config.docker.daemon_timeout_secs, 1);
    if let Some(path) = &config.docker.registry_auth_file
        && !path.starts_with('/')
    {
        findings.add_with_hint(
            &JsonPath::fields("Docker.RegistryAuthFile"),
            format!("{path:?} is not an absolute path"),
            Some("agents run from any directory: write the whole path, e.g. \"/root/.docker/config.json\"".to_owned()),
        );
    }
    findings.at_least(
        "Autonomic.LoopTimeInterval",
        config.autonomic.loop_time_interval_secs,
        1,
    );
    findings.at_least(
        "Communication.LoopTimeInterval",
        config.communication.loop_time_interval_secs,
        1,
    );
    findings.at_least(
        "Communication.MaxFriends",
        config.communication.max_friends.into(),
        1,
    );
    findings.at_least("Discovery.TTL", config.discovery.ttl_secs, 1);
    super::hooks::validate(&config.nodes, findings);

    let metric = &config.metric;
    if metric.metric_service == MetricService::InfluxDb {
        let configuration = &metric.configuration;
        if configuration.url.as_deref().unwrap_or_default().is_empty() {
            findings.add(
                &JsonPath::fields("Metric.Configuration.Url"),
                "is required when MetricService is \"influxdb\"",
            );
        }
        if configuration.bucket().is_none() {
            findings.add_with_hint(
                &JsonPath::fields("Metric.Configuration.Bucket"),
                "is required when MetricService is \"influxdb\"",
                Some("set Bucket, or Gru's DbName".to_owned()),
            );
        }
    }
}
