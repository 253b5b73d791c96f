//! Exit codes (documented in `gru --help`) and the mapping from errors to them.

use gru_agent::daemon::AgentError;
use gru_agent::docker::DockerError;
use gru_agent::store::StoreError;

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
/// EX_USAGE: bad usage or invalid configuration.
pub const USAGE: u8 = 64;
/// EX_UNAVAILABLE: etcd or the Docker engine cannot be reached.
pub const UNAVAILABLE: u8 = 69;

/// An invalid configuration directory; the problems were already printed.
#[derive(Debug, thiserror::Error)]
#[error("{count} problem(s) in {dir}; nothing was written")]
pub struct InvalidConfig {
    pub dir: String,
    pub count: usize,
}

/// A usage error found after parsing (an invalid name, a missing directory...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Picks the exit code for an error by looking through its cause chain.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<InvalidConfig>() || cause.is::<Usage>() {
            return USAGE;
        }
        if cause.is::<common::keys::InvalidName>() {
            return USAGE;
        }
        if let Some(store) = cause.downcast_ref::<StoreError>() {
            return store_code(store);
        }
        // AgentError's variants are transparent: their own source is skipped by the chain.
        if let Some(agent) = cause.downcast_ref::<AgentError>() {
            match agent {
                AgentError::Store(store) => return store_code(store),
                AgentError::Docker(docker) => return docker_code(docker),
                AgentError::Name(_) | AgentError::Tls(_) => return USAGE,
                AgentError::Bind { .. } | AgentError::Http(_) => {}
            }
        }
    }
    FAILURE
}

fn store_code(err: &StoreError) -> u8 {
    match err {
        StoreError::Unavailable { .. } => UNAVAILABLE,
        StoreError::Settings(_) => USAGE,
        _ => FAILURE,
    }
}

/// An engine that cannot be reached or does not answer is "unavailable"; anything else the
/// engine refused (a missing image, no free port or core) is a runtime failure.
fn docker_code(err: &DockerError) -> u8 {
    match err {
        DockerError::Unreachable { .. } | DockerError::Timeout { .. } => UNAVAILABLE,
        DockerError::BadUrl { .. } => USAGE,
        _ => FAILURE,
    }
}
