//! The gossip rounds: every `Communication.LoopTimeInterval`, refresh this node's report,
//! pick at most `MaxFriends` random active peers and run a digest exchange with each (in
//! parallel, each with a timeout; `crate::gossip::digest`): send the view's fingerprints,
//! get the friend's versions where they differ, push what the friend lacks and take what
//! it has newer. Stale reports, and those of nodes whose etcd records are gone, leave the
//! view.

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
use crate::gossip::digest;
use crate::gossip::wire::{
    self, Body, CONTENT_TYPE, Credentials, GOSSIP_PATH, GossipMessage, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_MESSAGE_BYTES,
};
use crate::mape::Millis;

/// Time allowed for one exchange with a friend (both legs: connect, send, answer).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

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

/// One friend of a round: its name and where its agent listens.
#[derive(Debug, Clone)]
struct Friend {
    name: String,
    address: String,
    port: u16,
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
    let (friends, digest, buckets) = {
        let mut knowledge = shared.knowledge();
        let cluster = knowledge.peers.nodes.len();
        knowledge.report_heartbeat = digest::heartbeat(interval, cluster);
        knowledge.refresh_own_report(&shared.node, now);
        let me = shared.node.clone();
        let knowledge = &mut *knowledge;
        let peers = &knowledge.peers.nodes;
        knowledge
            .view
            .expire(now, digest::stale_after(interval, cluster), |node| {
                node != me && !peers.contains_key(node)
            });
        let candidates: Vec<Friend> = peers
            .iter()
            .filter(|(name, peer)| **name != shared.node && peer.active && peer.port > 0)
            .map(|(name, peer)| Friend {
                name: name.clone(),
                address: peer.address.clone(),
                port: peer.port,
            })
            .collect();
        let friends: Vec<Friend> = candidates.sample(rng, max_friends).cloned().collect();
        let buckets = digest::bucket_count(knowledge.view.len().max(cluster));
        knowledge.gossip_hot_since = knowledge
            .gossip_round_at
            .unwrap_or(Millis(now.0.saturating_sub(interval.as_millis() as u64)));
        knowledge.gossip_round_at = Some(now);
        knowledge.gossip_asked.clear();
        let hot = knowledge
            .view
            .heard_since(knowledge.gossip_hot_since, digest::HOT_CAP);
        let mut message = GossipMessage {
            from: shared.node.clone(),
            body: {
                let (versions, reports) = knowledge.view.hot_message(hot);
                Body::digest(&knowledge.view.digest(buckets), &versions, reports)
            },
        };
        knowledge.gossip.rounds += 1;
        shared.telemetry.metrics.gossip_round();
        (friends, Bytes::from(wire::seal(&mut message)), buckets)
    };
    let mut exchanges = tokio::task::JoinSet::new();
    for friend in friends {
        let exchange = Exchange {
            shared: Arc::clone(shared),
            client: client.clone(),
            secret: secret.to_owned(),
            nonces: [nonce(rng), nonce(rng)],
            buckets,
        };
        let digest = digest.clone();
        exchanges.spawn(async move {
            let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange.run(&friend, digest))
                .await
                .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            (friend.name, outcome)
        });
    }
    while let Some(joined) = exchanges.join_next().await {
        let Ok((friend, outcome)) = joined else {
            continue;
        };
        let mut knowledge = shared.knowledge();
        knowledge.gossip.sent += 1;
        if let Err(err) = outcome {
            knowledge.gossip.failed += 1;
            tracing::debug!(%friend, error = %err, "gossip exchange failed");
        }
    }
}

/// One digest exchange with a friend, as a task.
#[derive(Debug)]
struct Exchange {
    shared: Arc<Shared>,
    client: HttpClient,
    secret: String,
    /// One per leg.
    nonces: [String; 2],
    /// Buckets of the digest sent.
    buckets: usize,
}

impl Exchange {
    /// Sends the digest; compares the friend's versions with the view; pushes what it
    /// lacks and asks for what it has newer (the second leg is skipped when there is
    /// nothing to say); merges what it answers.
    async fn run(self, friend: &Friend, digest: Bytes) -> Result<(), String> {
        let Some(answer) = self.leg(friend, 0, digest).await?.open_answer() else {
            return Err("a digest answered with something other than an answer".to_owned());
        };
        let push = {
            let mut knowledge = self.shared.knowledge();
            let knowledge = &mut *knowledge;
            let reconciled = knowledge.view.reconcile(
                &answer,
                self.buckets,
                &self.shared.node,
                &knowledge.gossip_asked,
            );
            if reconciled.is_empty() {
                return Ok(());
            }
            knowledge
                .gossip_asked
                .extend(reconciled.wants.iter().cloned());
            let mut message = GossipMessage {
                from: self.shared.node.clone(),
                body: Body::Push {
                    reports: wire::within(reconciled.push, digest::REPORT_BYTES_CAP),
                    wants: reconciled.wants,
                },
            };
            Bytes::from(wire::seal(&mut message))
        };
        let Body::Reports(reports) = self.leg(friend, 1, push).await? else {
            return Err("a push answered with something other than reports".to_owned());
        };
        let own = &self.shared.node;
        self.shared
            .knowledge()
            .view
            .merge_all(reports.into_iter().filter(|r| r.node != *own), now());
        Ok(())
    }

    /// Sends one signed request and opens the answer (against the agent's replay memory:
    /// a signed message, sent or answered, is accepted once).
    async fn leg(&self, friend: &Friend, leg: usize, body: Bytes) -> Result<Body, String> {
        let sent = body.len() as u64;
        let answer = exchange(
            &self.client,
            &friend.address,
            friend.port,
            &self.secret,
            &self.nonces[leg],
            body,
        )
        .await?;
        let mut knowledge = self.shared.knowledge();
        let knowledge = &mut *knowledge;
        knowledge.gossip.bytes_sent += sent;
        knowledge.gossip.bytes_received += answer.body.len() as u64;
        wire::open(
            &self.secret,
            answer.credentials(),
            &answer.body,
            now(),
            &mut knowledge.gossip_replay,
        )
        .map(|message| message.body)
        .map_err(|r| format!("answer refused: {}", r.as_str()))
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
        .header("content-type", CONTENT_TYPE)
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
