//! The way to the agents: their HTTP API, with short deadlines, and a signature (operator
//! token or cluster key, `gru_agent::signing`) on the one route that changes anything.
//!
//! Every request has a connect timeout ([`CONNECT_TIMEOUT`]) and a deadline for the whole
//! exchange ([`REQUEST_TIMEOUT`]), so an agent that is dead, stopped or partitioned costs a
//! command a few seconds and a per-node error, never a hang. Requests to several nodes run
//! in parallel ([`for_each_node`]); each answer or error is kept with its node.

use std::future::Future;
use std::time::Duration;

use gru_agent::runtime::AgentCommand;
use gru_agent::signing::Signer;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

/// How long to wait for a TCP connection to an agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read from an agent (histories of 256 decisions fit many times over).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Idle pooled connections are dropped after this, so a restarted agent is met afresh.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one node's agent listens, as its node record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node: String,
    /// `host:port`.
    pub address: String,
    /// What its agent serves (its record's `Scheme`; `http` in records without one).
    pub scheme: common::config::Scheme,
}

/// Why a request to an agent gave no usable answer. The message names the address and
/// says what an operator would check.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unreachable at {address}: {why}")]
    Unreachable { address: String, why: String },
    #[error("no answer from {address} within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout { address: String },
    #[error("refused ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("unexpected answer from {address}: {why}")]
    BadAnswer { address: String, why: String },
}

/// An HTTP client for agents' APIs; cheap to clone (one connection pool). An agent that
/// publishes `https` is verified against the CA given (`--tls-ca`) and the node name of
/// the record it was reached by; without a CA it is refused with a clear error.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: gru_agent::tls::PeerClient,
}

impl Default for AgentClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentClient {
    pub fn new() -> AgentClient {
        AgentClient::with_tls(None)
    }

    /// A client verifying `https` agents with `tls` (the CA, and the operator's client
    /// certificate when one was given).
    pub fn with_tls(tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> AgentClient {
        AgentClient {
            http: gru_agent::tls::PeerClient::with_pool(
                tls,
                CONNECT_TIMEOUT,
                Some(POOL_IDLE_TIMEOUT),
                false,
            ),
        }
    }

    /// `GET /gru/v1/<path>` (with its query), parsed as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &NodeEndpoint,
        path: &str,
    ) -> Result<T, AgentError> {
        let body = self
            .exchange(endpoint, Method::GET, path, &[], None)
            .await?;
        serde_json::from_slice(&body).map_err(|err| AgentError::BadAnswer {
            address: endpoint.address.clone(),
            why: format!("{path} did not answer as expected: {err}"),
        })
    }

    /// `POST /gru/v1/commands`, signed by `signer` (a fresh nonce each time); `Ok` when the
    /// agent accepted it (it queues commands for its loop, which acts on them in order).
    pub async fn command(
        &self,
        endpoint: &NodeEndpoint,
        signer: &Signer,
        command: &AgentCommand,
    ) -> Result<(), AgentError> {
        let body = serde_json::to_vec(command).map_err(|err| AgentError::BadAnswer {
            address: endpoint.address.clone(),
            why: format!("cannot encode the command: {err}"),
        })?;
        let path = format!("{}/commands", gru_agent::http::API_PREFIX);
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let headers = signer.headers("POST", &path, &body, now, &nonce);
        self.exchange(endpoint, Method::POST, "commands", &headers, Some(body))
            .await
            .map(drop)
    }

    async fn exchange(
        &self,
        endpoint: &NodeEndpoint,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, AgentError> {
        let address = &endpoint.address;
        if endpoint.scheme == common::config::Scheme::Https && !self.http.tls() {
            return Err(AgentError::Unreachable {
                address: address.clone(),
                why: format!(
                    "node {} serves HTTPS: give the cluster's CA with --tls-ca or GRU_TLS_CA",
                    endpoint.node
                ),
            });
        }
        let uri = self
            .http
            .uri(
                &endpoint.node,
                endpoint.scheme,
                address,
                &format!("{}/{path}", gru_agent::http::API_PREFIX),
            )
            .map_err(|err| AgentError::Unreachable {
                address: address.clone(),
                why: err.to_string(),
            })?;
        let mut request = Request::builder().method(method).uri(&uri);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| AgentError::BadAnswer {
                address: address.clone(),
                why: format!("cannot build a request for {uri}: {err}"),
            })?;
        let exchange =
            async {
                let response = self.http.http.request(request).await.map_err(|err| {
                    AgentError::Unreachable {
                        address: address.clone(),
                        why: match gru_agent::tls::find_tls_error(&err) {
                            Some(tls) => format!(
                                "TLS with node {} refused: {}",
                                endpoint.node,
                                gru_agent::tls::describe(tls)
                            ),
                            None => cause_of(&err),
                        },
                    }
                })?;
                let status = response.status();
                let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|err| AgentError::BadAnswer {
                        address: address.clone(),
                        why: format!("reading the answer: {err}"),
                    })?
                    .to_bytes();
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(AgentError::Refused {
                        status,
                        message: error_message(&body),
                    })
                }
            };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::Timeout {
                address: address.clone(),
            }),
        }
    }
}

/// The `{"error": "..."}` the agent answers with, or the body as text.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// hyper-util's errors say little at the top ("client error (Connect)"); the innermost
/// cause says what happened ("Connection refused (os error 111)").
fn cause_of(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let text = innermost.to_string();
    if text.is_empty() {
        err.to_string()
    } else {
        text
    }
}

/// One node's result of a parallel request, with how long it took.
#[derive(Debug)]
pub struct NodeAnswer<T> {
    pub node: String,
    pub result: Result<T, String>,
    pub elapsed: Duration,
}

/// Runs `task` for every endpoint in parallel and returns each node's result, in the
/// order of `endpoints`. Each task is bounded by the client's own deadlines.
pub async fn for_each_node<T, F, Fut>(endpoints: &[NodeEndpoint], task: F) -> Vec<NodeAnswer<T>>
where
    T: Send + 'static,
    F: Fn(NodeEndpoint) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let future = task(endpoint.clone());
        set.spawn(async move {
            let started = tokio::time::Instant::now();
            let result = future.await;
            (index, result, started.elapsed())
        });
    }
    let mut answers: Vec<Option<(Result<T, String>, Duration)>> =
        endpoints.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((index, result, elapsed)) => {
                if let Some(slot) = answers.get_mut(index) {
                    *slot = Some((result, elapsed));
                }
            }
            Err(err) => tracing::warn!(error = %err, "a request task ended abnormally"),
        }
    }
    endpoints
        .iter()
        .zip(answers)
        .map(|(endpoint, answer)| {
            let (result, elapsed) = answer.unwrap_or_else(|| {
                (
                    Err("the request task ended abnormally".to_owned()),
                    Duration::ZERO,
                )
            });
            NodeAnswer {
                node: endpoint.node.clone(),
                result,
                elapsed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_the_agents_sentence_or_text() {
        assert_eq!(
            error_message(br#"{"error":"unknown service x"}"#),
            "unknown service x"
        );
        assert_eq!(error_message(b"plain text"), "plain text");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_unreachable_node_at_once() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let endpoint = NodeEndpoint {
            node: "n1".into(),
            address: format!("127.0.0.1:{port}"),
            scheme: common::config::Scheme::Http,
        };
        let client = AgentClient::new();
        let started = std::time::Instant::now();
        let err = client
            .get::<serde_json::Value>(&endpoint, "node")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(
            started.elapsed() < CONNECT_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_silent_agent_times_out_within_the_request_deadline() {
        // Accepts connections (the kernel does) but never answers: a stopped process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = NodeEndpoint {
            node: "n1".into(),
            address: listener.local_addr().expect("addr").to_string(),
            scheme: common::config::Scheme::Http,
        };
        let client = AgentClient::new();
        let started = std::time::Instant::now();
        let results = for_each_node(std::slice::from_ref(&endpoint), |endpoint| {
            let client = client.clone();
            async move {
                client
                    .get::<serde_json::Value>(&endpoint, "node")
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        let elapsed = started.elapsed();
        assert_eq!(results.len(), 1);
        let err = results[0].result.as_ref().expect_err("no answer");
        assert!(
            results[0].elapsed >= REQUEST_TIMEOUT,
            "{:?}",
            results[0].elapsed
        );
        assert!(err.contains("no answer"), "{err}");
        assert!(
            elapsed >= REQUEST_TIMEOUT && elapsed < REQUEST_TIMEOUT + Duration::from_secs(1),
            "{elapsed:?}"
        );
        drop(listener);
    }
}
