//! The Docker adapter: the only module of gru that speaks the Engine API (through bollard,
//! and for the long-lived log streams directly: see `logs.rs`).
//!
//! * [`connect`], [`Engine`]: a connection with a negotiated API version and the configured
//!   per-call timeout; node resources.
//! * [`labels`]: the labels and names that mark gru's containers.
//! * [`spec`]: [`ContainerSpec`], the container of one instance, built purely from the
//!   service descriptor and the agent's [`Placement`].
//! * [`ports`], [`cores`]: [`PortAllocator`] and [`CoreAllocator`], pure choices of host
//!   ports and pinned cpus.
//! * `lifecycle.rs`: list, start (with allocation and port-conflict retries), stop, remove.
//! * [`pull`]: the image before a start, as the service's `Pull` says (policy, deadline,
//!   credentials from the descriptor or a Docker `config.json`, one pull per image at once).
//! * `exec.rs`: a command run in a container to its end (a health check's `Exec`).
//! * [`events`], [`stats`]: the lifecycle events and the resource fractions, pure;
//!   `monitor.rs` feeds them from the engine's streams into bounded channels.
//!
//! Every engine call is bounded by the configured timeout and fails with an error that names
//! the call and the container; a pull is bounded by its service's `Pull.Timeout`.
//!
//! Architecture invariant: bollard's types do not leave this module; callers see plain
//! values ([`ManagedContainer`], [`ContainerEvent`], [`StatsSample`]).

pub mod cores;
pub mod events;
mod exec;
pub mod labels;
mod lifecycle;
mod logs;
mod monitor;
pub mod ports;
pub mod pull;
pub mod spec;
pub mod stats;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use common::config::{DaemonEndpoint, GRU_DEFAULT_DOCKER_SOCKET};

pub use cores::{CoreAllocator, NoFreeCores};
pub use events::{ContainerEvent, EventKind};
pub use exec::{EXEC_OUTPUT_TAIL_BYTES, ExecOutcome};
pub use labels::{
    LABEL_CLUSTER, LABEL_CPUSET, LABEL_HOST_PORTS, LABEL_INSTANCE, LABEL_NODE, LABEL_SERVICE,
    container_name, new_instance_id,
};
pub use lifecycle::{
    ContainerState, InstancePlan, MAX_START_ATTEMPTS, ManagedContainer, StartedInstance,
    process_env,
};
pub use logs::{LOG_CHANNEL_CAPACITY, LogFollower, LogsEnd, MAX_LOG_LINE_BYTES};
pub use monitor::{EVENTS_CHANNEL_CAPACITY, STATS_CHANNEL_CAPACITY};
pub use ports::{PortAllocator, PortError, Protocol};
pub use spec::{ContainerSpec, DEFAULT_BIND_IP, Placement};
pub use stats::{CpuAllowance, StatsSample, cpu_fraction, mem_fraction};

/// Default timeout of one Engine API call, when the agent configuration does not say.
pub const DEFAULT_DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker.DaemonUrl {url:?} is not an engine address: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the Docker engine at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine at {url} gave no {what}")]
    Incomplete { url: String, what: &'static str },
    #[error("docker {call} of {target} timed out after {after:?}")]
    Timeout {
        call: &'static str,
        target: String,
        after: Duration,
    },
    #[error("docker {call} of {target} failed")]
    Call {
        call: &'static str,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "image {image} is not present on this engine and Pull.Policy is \"Never\"; build or \
         load it, or let gru pull it (Pull.Policy \"IfNotPresent\")"
    )]
    ImageMissing { image: String },
    #[error("pull of image {image} failed: {reason}")]
    PullFailed {
        image: String,
        reason: pull::PullFailure,
    },
    #[error("no host port for service {service}")]
    NoHostPort {
        service: String,
        #[source]
        source: PortError,
    },
    #[error("cannot pin service {service}")]
    NoFreeCores {
        service: String,
        #[source]
        source: NoFreeCores,
    },
    #[error(
        "service {service} did not start: its host ports were taken by others {attempts} times \
         (last tried {last_ports:?})"
    )]
    PortConflicts {
        service: String,
        attempts: u32,
        last_ports: Vec<u16>,
    },
}

/// A connected engine. Clones share the connection and the allocation lock, so an agent
/// connects once and hands out clones.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    url: String,
    timeout: Duration,
    /// Held from choosing host ports and cores until the container has started (or its
    /// start has failed), so two starts of this agent never pick the same port. Other
    /// agents on the same engine are not covered: their conflicts surface at start and are
    /// retried (see `lifecycle.rs`).
    allocation: Arc<tokio::sync::Mutex<()>>,
    /// One pull per image at a time (see `pull.rs`).
    pulls: Arc<pull::PullSlots>,
}

/// What the node offers to containers, from the engine's `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineResources {
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// Connects to the engine a configuration's `Docker.DaemonUrl` names, for the agent of the
/// node at `address` (see [`DaemonEndpoint`]; `DOCKER_HOST`, when set, wins as it does in
/// [`connect`]).
///
/// Gru's `local:PORT` is `address` on that port, which an agent in a container uses to
/// reach its host's engine. An agent that runs on the host itself usually finds nothing
/// listening there, since engines serve only their socket by default. Then, and only when
/// this node's default socket exists, it connects to that socket instead and says so in a
/// warning: the documented fallback that lets Gru's README configuration run unchanged.
pub async fn connect_configured(
    daemon_url: &str,
    address: &str,
    timeout: Duration,
) -> Result<Engine, DockerError> {
    if std::env::var("DOCKER_HOST").is_ok_and(|host| !host.is_empty()) {
        return connect(daemon_url, timeout).await;
    }
    let endpoint = DaemonEndpoint::parse(daemon_url).map_err(|reason| DockerError::BadUrl {
        url: daemon_url.to_owned(),
        reason: reason.to_string(),
    })?;
    let url = endpoint.url(address);
    let tried = connect(&url, timeout).await;
    let fallback = format!("unix://{GRU_DEFAULT_DOCKER_SOCKET}");
    match tried {
        Err(err @ (DockerError::Unreachable { .. } | DockerError::Timeout { .. }))
            if matches!(endpoint, DaemonEndpoint::Local { .. })
                && std::path::Path::new(GRU_DEFAULT_DOCKER_SOCKET).exists() =>
        {
            tracing::warn!(
                daemon_url,
                tried = %url,
                error = %err,
                using = %fallback,
                "no Docker engine answers at this node's address; using the node's socket \
                 (write DaemonUrl \"default\" to use the socket without trying, or make the \
                 engine listen on the address)"
            );
            connect(&fallback, timeout).await
        }
        other => other,
    }
}

/// Connects to the engine. `DOCKER_HOST`, when set, wins over `daemon_url` (as for the
/// docker CLI); `daemon_url` takes `unix:///path`, `tcp://host:port`, `http://host:port` or
/// Gru's bare `host:port`. The API version is negotiated down to what the engine speaks.
/// `timeout` bounds every later call of the returned [`Engine`].
pub async fn connect(daemon_url: &str, timeout: Duration) -> Result<Engine, DockerError> {
    let secs = bollard_timeout(timeout).as_secs();
    let (url, connected) = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => (host, Docker::connect_with_defaults()),
        _ => {
            let url = daemon_url.trim().to_owned();
            let connected = if let Some(path) = url.strip_prefix("unix://") {
                Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
            } else if url.is_empty() {
                Docker::connect_with_local_defaults()
            } else {
                let http = match url.split_once("://") {
                    Some(("tcp", rest)) => format!("http://{rest}"),
                    Some(_) => url.clone(),
                    None => format!("http://{url}"),
                };
                Docker::connect_with_http(&http, secs, bollard::API_DEFAULT_VERSION)
            };
            (url, connected)
        }
    };
    let unreachable = |source| DockerError::Unreachable {
        url: url.clone(),
        source,
    };
    // bollard's own request timeout only bounds the wait for response headers; keep it at
    // the configured value (the `DOCKER_HOST` path defaults to 2 minutes).
    let docker = connected
        .map_err(unreachable)?
        .with_timeout(Duration::from_secs(secs));
    let negotiated = tokio::time::timeout(timeout, docker.negotiate_version()).await;
    let docker = match negotiated {
        Ok(result) => result.map_err(unreachable)?,
        Err(_) => {
            return Err(DockerError::Timeout {
                call: "version negotiation",
                target: url,
                after: timeout,
            });
        }
    };
    Ok(Engine {
        docker,
        url,
        timeout,
        allocation: Arc::new(tokio::sync::Mutex::new(())),
        pulls: Arc::default(),
    })
}

impl Engine {
    /// The address the engine was reached at, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound on each engine call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// CPU count and total memory the engine reports for this node.
    pub async fn resources(&self) -> Result<EngineResources, DockerError> {
        let info = self
            .timed("info", &self.url, self.timeout, self.docker.info())
            .await?
            .map_err(|source| DockerError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let incomplete = |what| DockerError::Incomplete {
            url: self.url.clone(),
            what,
        };
        let cpus = info
            .ncpu
            .filter(|n| *n > 0)
            .ok_or_else(|| incomplete("CPU count"))?;
        let memory = info
            .mem_total
            .filter(|m| *m > 0)
            .ok_or_else(|| incomplete("memory size"))?;
        Ok(EngineResources {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            memory_bytes: u64::try_from(memory).unwrap_or(0),
        })
    }

    /// Runs one engine call under `limit`. The outer `Result` is the deadline (bollard's own
    /// header timeout counts as one too); the inner one is the engine's answer, left to the
    /// caller because some answers (404, 409) are not failures for it.
    async fn timed<T>(
        &self,
        call: &'static str,
        target: &str,
        limit: Duration,
        request: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Result<T, bollard::errors::Error>, DockerError> {
        let timed_out = || DockerError::Timeout {
            call,
            target: target.to_owned(),
            after: limit,
        };
        match tokio::time::timeout(limit, request).await {
            Err(_) | Ok(Err(bollard::errors::Error::RequestTimeoutError)) => Err(timed_out()),
            Ok(answer) => Ok(answer),
        }
    }

    /// [`Engine::timed`] for calls whose every error is a failure.
    async fn call<T>(
        &self,
        call: &'static str,
        target: &str,
        request: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.timed(call, target, self.timeout, request)
            .await?
            .map_err(|source| DockerError::Call {
                call,
                target: target.to_owned(),
                source,
            })
    }
}

/// bollard's own request timeout (whole seconds, and 0 would fail every call at once) for
/// a call bounded by `limit`: rounded up, so that gru's deadline is the one that fires.
fn bollard_timeout(limit: Duration) -> Duration {
    let secs = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// The engine's HTTP status, when it answered with an error.
fn status_of(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's error message, when it answered with an error.
fn message_of(error: &bollard::errors::Error) -> &str {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine at an address that accepts connections and never answers.
    pub(super) async fn silent_engine(timeout: Duration) -> Engine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let url = format!("http://{address}");
        let docker = Docker::connect_with_http(&url, 60, bollard::API_DEFAULT_VERSION)
            .expect("a lazy client");
        Engine {
            docker,
            url,
            timeout,
            allocation: Arc::new(tokio::sync::Mutex::new(())),
            pulls: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_naming_the_call_and_container() {
        let engine = silent_engine(Duration::from_millis(200)).await;
        let cases = [
            (
                engine.remove_instance("abc").await,
                "docker remove of abc timed out after 200ms",
            ),
            (
                engine.stop_instance("abc", Duration::ZERO).await,
                "docker stop of abc timed out after 200ms",
            ),
            (
                engine.image_present("img:1").await.map(|_| ()),
                "docker image inspect of image img:1 timed out after 200ms",
            ),
        ];
        for (result, expected) in cases {
            let error = result.expect_err("no answer");
            assert!(matches!(error, DockerError::Timeout { .. }), "{error:?}");
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn bollard_timeout_rounds_up_to_whole_seconds() {
        let cases = [(0, 1), (200, 1), (1000, 1), (1500, 2), (10_000, 10)];
        for (millis, secs) in cases {
            let rounded = bollard_timeout(Duration::from_millis(millis));
            assert_eq!(rounded, Duration::from_secs(secs), "{millis} ms");
        }
    }
}
