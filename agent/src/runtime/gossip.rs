//! The gossip rounds: every `Communication.LoopTimeInterval`, refresh this node's report,
//! pick at most `MaxFriends` random active peers, push the view to each (in parallel, each
//! with a timeout) and merge what they answer. Stale reports, and those of nodes whose etcd
//! records are gone, leave the view.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio_util::sync::CancellationToken;

use super::autonomic::now;
use super::state::Shared;
use crate::gossip::wire::{
    self, Credentials, GOSSIP_PATH, GossipMessage, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, MAX_MESSAGE_BYTES, MAX_REPORTS,
};

/// Time allowed for one exchange with a friend (connect, send, answer).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a node's report may go without a new version before it leaves the view:
/// several communication rounds, and never less than 10 s.
pub fn stale_after(communication_interval: Duration) -> Duration {
    (communication_interval * 5).max(Duration::from_secs(10))
}

/// Random nonce for a message.
fn nonce(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rand::RngExt::random(rng);
    hex::encode(bytes)
}

/// Runs gossip rounds until `cancel` fires.
pub async fn run(shared: Arc<Shared>, secret: String, seed: u64, cancel: CancellationToken) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let settings = {
            let knowledge = shared.knowledge();
            knowledge.config.as_ref().map(|c| {
                (
                    Duration::from_secs(c.agent.communication.loop_time_interval_secs.max(1)),
                    c.agent.communication.max_friends as usize,
                )
            })
        };
        // Until the configuration is loaded there is nothing to say: look again shortly.
        let Some((interval, max_friends)) = settings else {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        round(&shared, &client, &secret, &mut rng, interval, max_friends).await;
    }
}

/// One round: refresh, expire, choose friends, exchange.
pub async fn round(
    shared: &Arc<Shared>,
    client: &HttpClient,
    secret: &str,
    rng: &mut StdRng,
    interval: Duration,
    max_friends: usize,
) {
    let now = now();
    let (friends, body) = {
        let mut knowledge = shared.knowledge();
        knowledge.refresh_own_report(&shared.node, now);
        let peers = knowledge.peers.nodes.clone();
        let me = shared.node.clone();
        knowledge.view.expire(now, stale_after(interval), |node| {
            node != me && !peers.contains_key(node)
        });
        let candidates: Vec<(String, String, u16)> = peers
            .iter()
            .filter(|(name, peer)| **name != shared.node && peer.active && peer.port > 0)
            .map(|(name, peer)| (name.clone(), peer.address.clone(), peer.port))
            .collect();
        let friends: Vec<(String, String, u16)> =
            candidates.sample(rng, max_friends).cloned().collect();
        let mut message = GossipMessage {
            from: shared.node.clone(),
            reports: knowledge.view.reports(MAX_REPORTS),
        };
        knowledge.gossip.rounds += 1;
        shared.telemetry.metrics.gossip_round();
        (friends, wire::seal(&mut message))
    };
    let body = Bytes::from(body);
    let mut exchanges = tokio::task::JoinSet::new();
    for (name, address, port) in friends {
        let client = client.clone();
        let body = body.clone();
        let secret = secret.to_owned();
        let nonce = nonce(rng);
        exchanges.spawn(async move {
            let outcome = tokio::time::timeout(
                EXCHANGE_TIMEOUT,
                exchange(&client, &address, port, &secret, &nonce, body),
            )
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            (name, outcome)
        });
    }
    while let Some(joined) = exchanges.join_next().await {
        let Ok((friend, outcome)) = joined else {
            continue;
        };
        let mut knowledge = shared.knowledge();
        knowledge.gossip.sent += 1;
        // Answers are checked like requests, against the same replay memory: a signed
        // message, sent or answered, is accepted once.
        let outcome = outcome.and_then(|answer| {
            let knowledge = &mut *knowledge;
            wire::open(
                secret,
                answer.credentials(),
                &answer.body,
                super::autonomic::now(),
                &mut knowledge.gossip_replay,
            )
            .map_err(|r| format!("answer refused: {}", r.as_str()))
        });
        match outcome {
            Ok(reply) => {
                let own = shared.node.clone();
                let reports = reply.reports.into_iter().filter(|r| r.node != own);
                knowledge.view.merge_all(reports, now);
            }
            Err(err) => {
                knowledge.gossip.failed += 1;
                tracing::debug!(%friend, error = %err, "gossip exchange failed");
            }
        }
    }
}

/// A friend's answer as it came: its credentials and body, not yet opened.
#[derive(Debug)]
struct SignedAnswer {
    timestamp: Option<String>,
    nonce: Option<String>,
    signature: Option<String>,
    body: Bytes,
}

impl SignedAnswer {
    fn credentials(&self) -> Credentials<'_> {
        Credentials {
            timestamp: self.timestamp.as_deref(),
            nonce: self.nonce.as_deref(),
            signature: self.signature.as_deref(),
        }
    }
}

/// Sends one signed message and reads the answer (opened by the caller, against the
/// agent's replay memory).
async fn exchange(
    client: &HttpClient,
    address: &str,
    port: u16,
    secret: &str,
    nonce: &str,
    body: Bytes,
) -> Result<SignedAnswer, String> {
    let timestamp = now().0.to_string();
    let signature = wire::sign(secret, &timestamp, nonce, &body);
    let request = Request::post(format!("http://{address}:{port}{GOSSIP_PATH}"))
        .header("content-type", "application/json")
        .header(HEADER_TIMESTAMP, &timestamp)
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, signature)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (ts, reply_nonce, sig) = (
        header(HEADER_TIMESTAMP),
        header(HEADER_NONCE),
        header(HEADER_SIGNATURE),
    );
    let bytes = Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(SignedAnswer {
        timestamp: ts,
        nonce: reply_nonce,
        signature: sig,
        body: bytes,
    })
}
