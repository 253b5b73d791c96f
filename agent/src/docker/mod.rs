//! The Docker adapter: the only module of gru that speaks the Engine API (through bollard).
//!
//! For now it connects (negotiating the API version with the engine) and reads the node's
//! resources; the container lifecycle, events and stats streams come with the MAPE-K loop.

use std::time::Duration;

use bollard::Docker;

/// Default timeout of one Engine API call, when the agent configuration does not say.
pub const DEFAULT_DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine at {url} gave no {what}")]
    Incomplete { url: String, what: &'static str },
}

/// A connected engine and the address it was reached at (for messages).
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: Docker,
    pub url: String,
}

/// What the node offers to containers, from the engine's `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineResources {
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// Connects to the engine. `DOCKER_HOST`, when set, wins over `daemon_url` (as for the
/// docker CLI); `daemon_url` takes `unix:///path`, `tcp://host:port`, `http://host:port` or
/// Gru's bare `host:port`. The API version is negotiated down to what the engine speaks.
pub async fn connect(daemon_url: &str, timeout: Duration) -> Result<Engine, DockerError> {
    let secs = timeout.as_secs().max(1);
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
    let docker = connected.map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    Ok(Engine { docker, url })
}

impl Engine {
    /// CPU count and total memory the engine reports for this node.
    pub async fn resources(&self) -> Result<EngineResources, DockerError> {
        let info = self.docker.info().await.map_err(|source| DockerError::Unreachable {
            url: self.url.clone(),
            source,
        })?;
        let incomplete = |what| DockerError::Incomplete {
            url: self.url.clone(),
            what,
        };
        let cpus = info.ncpu.filter(|n| *n > 0).ok_or_else(|| incomplete("CPU count"))?;
        let memory = info.mem_total.filter(|m| *m > 0).ok_or_else(|| incomplete("memory size"))?;
        Ok(EngineResources {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            memory_bytes: u64::try_from(memory).unwrap_or(0),
        })
    }
}
