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

/// Time allowed for one exchange with a friend (both legs: connect, send, answer, and the
/// attempts sent again).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for one attempt at a leg: a silent friend costs this, so that a second
/// attempt still fits in [`EXCHANGE_TIMEOUT`].
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

type HttpClient = crate::tls::PeerClient;

/// Random nonce for a message.
fn nonce(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rand::RngExt::random(rng);
    hex::encode(bytes)
}

/// Runs gossip rounds until `cancel` fires.
pub async fn run(shared: Arc<Shared>, seed: u64, cancel: CancellationToken) {
    // No connect timeout of its own: every attempt is bounded by ATTEMPT_TIMEOUT.
    let client: HttpClient = shared.peer_client(ATTEMPT_TIMEOUT);
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
        round(&shared, &client, &mut rng, interval, max_friends).await;
    }
}

/// One friend of a round: its name and where its agent listens.
#[derive(Debug, Clone)]
struct Friend {
    name: String,
    scheme: common::config::Scheme,
    /// `host:port`.
    authority: String,
}

/// One round: refresh, expire, choose friends, exchange.
pub async fn round(
    shared: &Arc<Shared>,
    client: &HttpClient,
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
                scheme: peer.scheme,
                authority: crate::http::authority(&peer.address, peer.port),
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
            secret: shared.signing_key(now),
            nonces: (0..2 * digest::LEG_ATTEMPTS).map(|_| nonce(rng)).collect(),
            buckets,
        };
        let digest = digest.clone();
        exchanges.spawn(async move {
            let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange.run(&friend, digest))
                .await
                .unwrap_or_else(|_| Err(Failure::Other("no answer in time".to_owned())));
            (friend.name, outcome)
        });
    }
    while let Some(joined) = exchanges.join_next().await {
        let Ok((friend, outcome)) = joined else {
            continue;
        };
        let mut knowledge = shared.knowledge();
        knowledge.gossip.sent += 1;
        match outcome {
            Ok(()) => {}
            Err(Failure::Tls(reason, err)) => {
                knowledge.gossip.failed += 1;
                *knowledge.gossip.tls_failed.entry(reason).or_insert(0) += 1;
                drop(knowledge);
                tracing::warn!(%friend, reason, error = %err, "gossip exchange refused by TLS");
            }
            Err(Failure::Other(err)) => {
                knowledge.gossip.failed += 1;
                tracing::debug!(%friend, error = %err, "gossip exchange failed");
            }
        }
    }
}

/// One digest exchange with a friend, as a task.
#[derive(Debug)]
struct Exchange {
    shared: Arc<Shared>,
    client: HttpClient,
    /// The cluster key this round signs with.
    secret: String,
    /// One per attempt: `digest::LEG_ATTEMPTS` for each leg.
    nonces: Vec<String>,
    /// Buckets of the digest sent.
    buckets: usize,
}

impl Exchange {
    /// Sends the digest; compares the friend's versions with the view; pushes what it
    /// lacks and asks for what it has newer (the second leg is skipped when there is
    /// nothing to say); merges what it answers.
    async fn run(self, friend: &Friend, digest: Bytes) -> Result<(), Failure> {
        let Some(answer) = self.leg(friend, 0, digest).await?.open_answer() else {
            return Err(Failure::Other(
                "a digest answered with something other than an answer".to_owned(),
            ));
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
            return Err(Failure::Other(
                "a push answered with something other than reports".to_owned(),
            ));
        };
        let own = &self.shared.node;
        self.shared
            .knowledge()
            .view
            .merge_all(reports.into_iter().filter(|r| r.node != *own), now());
        Ok(())
    }

    /// Sends one signed request and opens the answer (against the agent's replay memory:
    /// a signed message, sent or answered, is accepted once). A failed attempt is made
    /// again with the next nonce, up to `digest::LEG_ATTEMPTS` in all, unless the friend
    /// refused the request or its answer was refused.
    async fn leg(&self, friend: &Friend, leg: usize, body: Bytes) -> Result<Body, Failure> {
        let mut failure = String::new();
        for attempt in 0..digest::LEG_ATTEMPTS {
            if attempt > 0 {
                self.shared.knowledge().gossip.retried += 1;
            }
            let nonce = &self.nonces[leg * digest::LEG_ATTEMPTS + attempt];
            let sent = body.len() as u64;
            let answer = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                exchange(&self.client, friend, &self.secret, nonce, body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(Failed::Again("no answer in time".to_owned())));
            let answer = match answer {
                Ok(answer) => answer,
                Err(Failed::Again(reason)) => {
                    failure = reason;
                    continue;
                }
                Err(Failed::Refused(reason)) => return Err(Failure::Other(reason)),
                Err(Failed::Tls(reason, why)) => return Err(Failure::Tls(reason, why)),
            };
            let mut knowledge = self.shared.knowledge();
            let knowledge = &mut *knowledge;
            knowledge.gossip.bytes_sent += sent;
            knowledge.gossip.bytes_received += answer.body.len() as u64;
            let keys = self.shared.accepted_keys(now());
            let opened = wire::open(
                &keys,
                answer.credentials(),
                &answer.body,
                now(),
                &mut knowledge.gossip_replay,
            );
            if let Err(rejection) = &opened {
                // Counted with the requests refused, so that the stats show every message
                // this agent refused (a rotation must leave `bad_signature` at 0).
                *knowledge
                    .gossip
                    .rejected
                    .entry(rejection.as_str())
                    .or_insert(0) += 1;
            }
            return opened
                .map(|message| message.body)
                .map_err(|r| Failure::Other(format!("answer refused: {}", r.as_str())));
        }
        Err(Failure::Other(failure))
    }
}

/// Why an exchange failed: TLS (a certificate refused on either side, or a peer this
/// agent will not speak plain http to), counted by reason; or anything else.
#[derive(Debug)]
enum Failure {
    Tls(&'static str, String),
    Other(String),
}

/// Why a request failed: worth sending again (no connection, no answer in time, a server
/// error), or not (the friend refused it: it would refuse it again).
#[derive(Debug)]
enum Failed {
    Again(String),
    Refused(String),
    /// Never sent again: a certificate does not change between attempts.
    Tls(&'static str, String),
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
    friend: &Friend,
    secret: &str,
    nonce: &str,
    body: Bytes,
) -> Result<SignedAnswer, Failed> {
    let timestamp = now().0.to_string();
    let signature = wire::sign(secret, &timestamp, nonce, &body);
    let uri = client
        .uri(&friend.name, friend.scheme, &friend.authority, GOSSIP_PATH)
        .map_err(|e| Failed::Tls("plain_http_peer", e.to_string()))?;
    let request = Request::post(uri)
        .header("content-type", CONTENT_TYPE)
        .header(HEADER_TIMESTAMP, &timestamp)
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, signature)
        .body(Full::new(body))
        .map_err(|e| Failed::Refused(e.to_string()))?;
    let response =
        client
            .http
            .request(request)
            .await
            .map_err(|e| match crate::tls::find_tls_error(&e) {
                Some(tls) => {
                    Failed::Tls(crate::tls::refusal_reason(tls), crate::tls::describe(tls))
                }
                None => Failed::Again(crate::tls::client_error(&e)),
            })?;
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
        .map_err(|e| Failed::Again(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let reason = format!("answered {status}: {}", String::from_utf8_lossy(&bytes));
        // A refusal (4xx: unauthenticated, stale, malformed, ...) would be made again; a
        // busy or failing friend (5xx) may answer the next attempt.
        return Err(if status.is_server_error() {
            Failed::Again(reason)
        } else {
            Failed::Refused(reason)
        });
    }
    Ok(SignedAnswer {
        timestamp: ts,
        nonce: reply_nonce,
        signature: sig,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::mape::WindowSettings;
    use crate::runtime::state::{GossipStats, Peer};

    /// A friend at a real loopback port that reads each request whole and answers it with
    /// `status`; returns its port and the requests it answered.
    async fn friend_answering(status: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0_u8; 4096];
                    // Headers, then as many body bytes as content-length says.
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&request).to_lowercase();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (port, requests)
    }

    async fn one_round_with(status: &'static str) -> (usize, GossipStats) {
        let (port, requests) = friend_answering(status).await;
        let window = WindowSettings {
            span: Duration::from_secs(10),
            max_samples: 100,
            warmup: Duration::ZERO,
            warmup_samples: 1,
            max_metrics_per_instance: 8,
        };
        let shared = Arc::new(Shared::new("c1", "n1", "127.0.0.1", "s3cret", window));
        shared.knowledge().peers.nodes.insert(
            "n2".to_owned(),
            Peer {
                address: "127.0.0.1".to_owned(),
                port,
                scheme: Default::default(),
                active: true,
                base_services: Vec::new(),
            },
        );
        let client: HttpClient = shared.peer_client(ATTEMPT_TIMEOUT);
        let mut rng = StdRng::seed_from_u64(1);
        round(&shared, &client, &mut rng, Duration::from_secs(1), 5).await;
        let stats = shared.knowledge().gossip.clone();
        (requests.load(Ordering::SeqCst), stats)
    }

    #[tokio::test]
    async fn a_failing_friend_is_asked_again_and_a_refusing_one_is_not() {
        // Busy (503): the digest is sent LEG_ATTEMPTS times, then the exchange fails.
        let (requests, stats) = one_round_with("503 Service Unavailable").await;
        assert_eq!(requests, digest::LEG_ATTEMPTS);
        assert_eq!(
            (stats.sent, stats.failed, stats.retried),
            (1, 1, digest::LEG_ATTEMPTS as u64 - 1)
        );
        // Refused (401): asking again would be refused again.
        let (requests, stats) = one_round_with("401 Unauthorized").await;
        assert_eq!(requests, 1);
        assert_eq!((stats.sent, stats.failed, stats.retried), (1, 1, 0));
    }
}
