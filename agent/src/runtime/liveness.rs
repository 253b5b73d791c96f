//! Asks other agents directly whether they run: `GET /healthz?challenge=…`, in parallel,
//! each with a short timeout. The second witness when etcd says a node is gone: an agent
//! that answers as itself, in this cluster, with a proof made from the fresh challenge and
//! the cluster secret, was not lost; etcd lost its lease (see `super::peers`). Without the
//! proof anything listening on a lost node's address could hold a repair back.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::gossip::wire::keyed_mac;

/// Time allowed for one node to answer (connect, request, answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A `/healthz` answer is a few hundred bytes; anything longer is not an agent's.
const MAX_ANSWER_BYTES: usize = 4096;
/// Bounds of a challenge's length; its characters are ASCII letters and digits.
const CHALLENGE_CHARS: std::ops::RangeInclusive<usize> = 16..=128;

/// Whether `challenge` is one an agent answers with a proof.
pub fn challenge_is_valid(challenge: &str) -> bool {
    CHALLENGE_CHARS.contains(&challenge.len())
        && challenge.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn proof_mac(secret: &str, challenge: &str, cluster: &str, node: &str) -> Hmac<Sha256> {
    keyed_mac(secret, &["GET", "/healthz", challenge, cluster, node])
}

/// What an agent holding `secret` answers to `challenge` as `node` of `cluster` (hex
/// HMAC-SHA256; distinct from gossip signatures, which cover another method and path).
pub fn proof(secret: &str, challenge: &str, cluster: &str, node: &str) -> String {
    hex::encode(
        proof_mac(secret, challenge, cluster, node)
            .finalize()
            .into_bytes(),
    )
}

/// Constant-time check of a presented proof.
fn proof_matches(secret: &str, challenge: &str, cluster: &str, node: &str, proof: &str) -> bool {
    hex::decode(proof).is_ok_and(|bytes| {
        proof_mac(secret, challenge, cluster, node)
            .verify_slice(&bytes)
            .is_ok()
    })
}

/// The part of `/healthz` that identifies the agent.
#[derive(Debug, Deserialize)]
struct Identity {
    cluster: String,
    node: String,
    #[serde(default)]
    proof: Option<String>,
}

#[derive(Clone)]
pub struct Prober {
    /// Over TLS when the agent has it: the answer must then come from a server whose
    /// certificate is valid for the node asked (a TLS agent asks every peer over https,
    /// as it gossips: a node in doubt has no record left to say its scheme).
    client: crate::tls::PeerClient,
    /// The cluster keys a proof may be made with, read at each probe (a rotation's overlap
    /// accepts two).
    keys: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober for a cluster whose secret is `secret` (never logged).
    pub fn new(secret: &str) -> Prober {
        let secret = secret.to_owned();
        Prober::with_keys(
            Arc::new(move || vec![secret.clone()]),
            crate::tls::PeerClient::new(None, PROBE_TIMEOUT),
        )
    }

    /// A prober that accepts the keys `shared` accepts at the time of each probe.
    pub fn following(shared: Arc<crate::runtime::Shared>) -> Prober {
        let client = shared.peer_client(PROBE_TIMEOUT);
        Prober::with_keys(
            Arc::new(move || shared.accepted_keys(crate::runtime::autonomic::now())),
            client,
        )
    }

    fn with_keys(
        keys: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
        client: crate::tls::PeerClient,
    ) -> Prober {
        Prober { client, keys }
    }

    /// The nodes among `candidates` (name, address, port) that answer their `/healthz` as
    /// that node of `cluster`, with a valid proof for a fresh challenge, within
    /// [`PROBE_TIMEOUT`].
    pub async fn answering(
        &self,
        cluster: &str,
        candidates: impl IntoIterator<Item = (String, String, u16)>,
    ) -> Vec<String> {
        let mut probes = tokio::task::JoinSet::new();
        for (node, address, port) in candidates {
            let client = self.client.clone();
            let cluster = cluster.to_owned();
            let keys = (self.keys)();
            let challenge = new_challenge();
            probes.spawn(async move {
                let answered = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    identity(&client, &node, &address, port, &challenge),
                )
                .await;
                match answered {
                    Ok(Ok(who)) if who.cluster == cluster && who.node == node => {
                        let proven = who.proof.as_deref().is_some_and(|p| {
                            keys.iter()
                                .any(|key| proof_matches(key, &challenge, &cluster, &node, p))
                        });
                        if !proven {
                            tracing::warn!(%node, %address, port, "an answer names the node but does not prove the cluster secret: not counted as alive");
                        }
                        proven.then_some(node)
                    }
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

/// 16 random bytes, in hex.
fn new_challenge() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

async fn identity(
    client: &crate::tls::PeerClient,
    node: &str,
    address: &str,
    port: u16,
    challenge: &str,
) -> Result<Identity, String> {
    let scheme = if client.tls() {
        common::config::Scheme::Https
    } else {
        common::config::Scheme::Http
    };
    let (status, body) = client
        .get(
            node,
            scheme,
            &crate::http::authority(address, port),
            &format!("/healthz?challenge={challenge}"),
            MAX_ANSWER_BYTES,
        )
        .await?;
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::extract::Query;

    use super::*;

    /// Serves `/healthz` on a loopback port as an agent `node` of `cluster` holding
    /// `secret` would (a proof for a valid challenge); `secret: None` answers without one.
    async fn agent_answering(
        cluster: &'static str,
        node: &'static str,
        secret: Option<&'static str>,
    ) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app = axum::Router::new().route(
            "/healthz",
            axum::routing::get(move |Query(q): Query<HashMap<String, String>>| async move {
                let proof = q
                    .get("challenge")
                    .filter(|c| challenge_is_valid(c))
                    .zip(secret)
                    .map(|(c, secret)| proof(secret, c, cluster, node));
                serde_json::json!({"status": "ok", "cluster": cluster, "node": node, "proof": proof})
                    .to_string()
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    /// Serves one fixed `/healthz` answer on a loopback port.
    async fn fixed_answer(body: String) -> u16 {
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
    async fn only_the_node_itself_in_this_cluster_proving_the_secret_counts_as_answering() {
        let n1 = agent_answering("c", "n1", Some("s3cret")).await;
        let other_cluster = agent_answering("d", "n2", Some("s3cret")).await;
        let wrong_secret = agent_answering("c", "n6", Some("guess")).await;
        let no_proof = agent_answering("c", "n7", None).await;
        // A recorded genuine answer, replayed: its proof is for another challenge.
        let challenge = "0123456789abcdef0123456789abcdef";
        let recorded = serde_json::json!({"status": "ok", "cluster": "c", "node": "n8",
            "proof": proof("s3cret", challenge, "c", "n8")});
        let replayed = fixed_answer(recorded.to_string()).await;
        let not_an_agent = fixed_answer("hello".to_owned()).await;
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
            ("n6", wrong_secret),
            ("n7", no_proof),
            ("n8", replayed),
        ]
        .map(|(node, port)| (node.to_owned(), "127.0.0.1".to_owned(), port));
        let answering = Prober::new("s3cret").answering("c", candidates).await;
        assert_eq!(answering, ["n1"]);
    }

    #[test]
    fn challenges_are_bounded_letters_and_digits_and_proofs_bind_every_part() {
        assert!(challenge_is_valid(&new_challenge()));
        assert!(!challenge_is_valid("short"));
        assert!(!challenge_is_valid(&"a".repeat(129)));
        assert!(!challenge_is_valid("0123456789abcdef&x=0123456789"));
        let p = proof("s", "0123456789abcdef", "c", "n");
        assert!(proof_matches("s", "0123456789abcdef", "c", "n", &p));
        for (secret, challenge, cluster, node) in [
            ("t", "0123456789abcdef", "c", "n"),
            ("s", "0123456789abcdee", "c", "n"),
            ("s", "0123456789abcdef", "d", "n"),
            ("s", "0123456789abcdef", "c", "m"),
        ] {
            assert!(!proof_matches(secret, challenge, cluster, node, &p));
        }
        assert!(!proof_matches("s", "0123456789abcdef", "c", "n", "not hex"));
    }
}
