//! Asks other agents directly whether they run: `GET /healthz`, in parallel, each with a
//! short timeout. The second witness when etcd says a node is gone: an agent that answers
//! as itself, in this cluster, was not lost; etcd lost its lease (see `super::peers`).

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Time allowed for one node to answer (connect, request, answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A `/healthz` answer is a few hundred bytes; anything longer is not an agent's.
const MAX_ANSWER_BYTES: usize = 4096;

/// The part of `/healthz` that identifies the agent.
#[derive(Debug, Deserialize)]
struct Identity {
    cluster: String,
    node: String,
}

#[derive(Debug, Clone)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Prober {
    fn default() -> Prober {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_TIMEOUT));
        Prober {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Prober {
    /// The nodes among `candidates` (name, address, port) that answer their `/healthz` as
    /// that node of `cluster` within [`PROBE_TIMEOUT`].
    pub async fn answering(
        &self,
        cluster: &str,
        candidates: impl IntoIterator<Item = (String, String, u16)>,
    ) -> Vec<String> {
        let mut probes = tokio::task::JoinSet::new();
        for (node, address, port) in candidates {
            let client = self.client.clone();
            let cluster = cluster.to_owned();
            probes.spawn(async move {
                let answered = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    identity(&client, &address, port),
                )
                .await;
                match answered {
                    Ok(Ok(who)) if who.cluster == cluster && who.node == node => Some(node),
                    Ok(Ok(who)) => {
                        tracing::debug!(%node, %address, port, answered = ?who, "another agent answers there");
                        None
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%node, %address, port, error = %err, "no answer");
                        None
                    }
                    Err(_) => None,
                }
            });
        }
        let mut answering: Vec<String> = probes.join_all().await.into_iter().flatten().collect();
        answering.sort();
        answering
    }
}

async fn identity(
    client: &Client<HttpConnector, Empty<Bytes>>,
    address: &str,
    port: u16,
) -> Result<Identity, String> {
    let request = Request::get(format!("http://{address}:{port}/healthz"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one fixed `/healthz` answer on a loopback port.
    async fn agent_answering(body: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app =
            axum::Router::new().route("/healthz", axum::routing::get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn only_the_node_itself_in_this_cluster_counts_as_answering() {
        let n1 = agent_answering(r#"{"status":"ok","cluster":"c","node":"n1"}"#).await;
        let other_cluster = agent_answering(r#"{"status":"ok","cluster":"d","node":"n2"}"#).await;
        let not_an_agent = agent_answering("hello").await;
        // A port nothing listens on: bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let candidates = [
            ("n1", n1),
            ("n2", other_cluster),
            ("n3", not_an_agent),
            ("n4", closed),
            // Port of n1, name of another node: a different agent answers there.
            ("n5", n1),
        ]
        .map(|(node, port)| (node.to_owned(), "127.0.0.1".to_owned(), port));
        let answering = Prober::default().answering("c", candidates).await;
        assert_eq!(answering, ["n1"]);
    }
}
