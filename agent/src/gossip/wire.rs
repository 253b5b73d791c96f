//! The gossip message and its protection.
//!
//! A message is JSON `{"from": <node>, "reports": [NodeReport...]}`, at most
//! [`MAX_MESSAGE_BYTES`]. It is authenticated with HMAC-SHA256 keyed by the cluster secret
//! over the method, path, a millisecond timestamp, a random nonce and the body; the
//! receiver refuses a timestamp further than [`FRESHNESS`] from its clock and a nonce it
//! has already seen within that window, so a captured message cannot be replayed. Every
//! refusal has a reason, which the agent counts.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::view::NodeReport;
use crate::mape::Millis;

pub const GOSSIP_PATH: &str = "/gru/v1/gossip";
pub const HEADER_TIMESTAMP: &str = "x-gru-timestamp";
pub const HEADER_NONCE: &str = "x-gru-nonce";
pub const HEADER_SIGNATURE: &str = "x-gru-signature";

/// Largest message body accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most reports in one message (a sender sends its freshest ones). Full-state exchange
/// needs every node's report to travel: the simulator shows that a cap of 2,048 stops
/// convergence at 10,000 nodes (every node publishes each round), while one of 4,096 or
/// more converges in 5 rounds. Digests (send versions, pull only newer reports) would
/// shrink messages; until then the cap is sized for 10,000+ nodes.
pub const MAX_REPORTS: usize = 16_384;
/// Most services in one report, and metrics or analytics in one service report.
pub const MAX_SERVICES_PER_REPORT: usize = 256;
pub const MAX_VALUES_PER_SERVICE: usize = 64;
/// How far a message's timestamp may be from the receiver's clock.
pub const FRESHNESS: Duration = Duration::from_secs(30);
/// Nonces remembered (per agent); beyond it the oldest are forgotten first.
pub const REPLAY_MEMORY: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GossipMessage {
    pub from: String,
    pub reports: Vec<NodeReport>,
}

/// Why a message was refused; `as_str` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    Unauthenticated,
    BadSignature,
    Stale,
    Replayed,
    TooLarge,
    Malformed,
    /// Too many message bodies are being read at once (see [`MAX_CONCURRENT_BODIES`]).
    Busy,
}

/// Gossip bodies read at the same time by one agent: with [`MAX_MESSAGE_BYTES`] each, what
/// senders can make an agent hold before their signatures are checked.
pub const MAX_CONCURRENT_BODIES: usize = 8;

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::BadSignature => "bad_signature",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::Busy => "busy",
        }
    }

    /// The HTTP status the API answers with.
    pub fn status(self) -> u16 {
        match self {
            Rejection::Unauthenticated => 401,
            Rejection::BadSignature => 403,
            Rejection::Stale | Rejection::Replayed => 409,
            Rejection::TooLarge => 413,
            Rejection::Malformed => 400,
            Rejection::Busy => 503,
        }
    }
}

/// HMAC-SHA256 keyed with the cluster secret over `parts`, each followed by a newline (the
/// first parts name the method and path, so that one kind of message cannot pass for
/// another). Gossip signatures and liveness proofs (`runtime::liveness`) are made with it.
pub(crate) fn keyed_mac(secret: &str, parts: &[&str]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac
}

fn mac(secret: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = keyed_mac(secret, &["POST", GOSSIP_PATH, timestamp, nonce]);
    mac.update(body);
    mac
}

/// The signature header value for a message.
pub fn sign(secret: &str, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, nonce, body).finalize().into_bytes())
}

/// Remembers recent nonces, bounded.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<String>,
    order: VecDeque<(Millis, String)>,
}

impl ReplayGuard {
    /// Records `nonce` at `now`; false if it was already seen within the window.
    fn admit(&mut self, nonce: &str, now: Millis) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.since(*at) > FRESHNESS * 2 || self.order.len() >= REPLAY_MEMORY {
                if let Some((_, old)) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            } else {
                break;
            }
        }
        if self.seen.contains(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_owned());
        self.order.push_back((now, nonce.to_owned()));
        true
    }
}

/// The headers of a received message, as given (any may be missing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// What can be checked before the body is read: the credentials are all there, well
/// formed, and the timestamp is within [`FRESHNESS`] of `now`. A request that fails this is
/// refused without reading its body (up to [`MAX_MESSAGE_BYTES`]); [`open`] checks all of it
/// again, and the signature, once the body is in.
pub fn precheck(credentials: Credentials<'_>, now: Millis) -> Result<(), Rejection> {
    let (timestamp, _, _) = present(credentials)?;
    fresh(timestamp, now)
}

/// The three credentials, all there and of sane length: (timestamp, nonce, signature).
fn present(credentials: Credentials<'_>) -> Result<(&str, &str, &str), Rejection> {
    let (Some(timestamp), Some(nonce), Some(signature)) = (
        credentials.timestamp,
        credentials.nonce,
        credentials.signature,
    ) else {
        return Err(Rejection::Unauthenticated);
    };
    if nonce.is_empty() || nonce.len() > 64 || timestamp.len() > 20 {
        return Err(Rejection::Malformed);
    }
    Ok((timestamp, nonce, signature))
}

/// A timestamp (ms since the epoch) within [`FRESHNESS`] of `now`.
fn fresh(timestamp: &str, now: Millis) -> Result<(), Rejection> {
    let sent: u64 = timestamp.parse().map_err(|_| Rejection::Malformed)?;
    if Duration::from_millis(now.0.abs_diff(sent)) > FRESHNESS {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// Checks a received message completely: size, authentication, freshness, replay, shape.
/// The signature is checked before the nonce is remembered, so forged messages cannot
/// fill the replay memory.
pub fn open(
    secret: &str,
    credentials: Credentials<'_>,
    body: &[u8],
    now: Millis,
    replay: &mut ReplayGuard,
) -> Result<GossipMessage, Rejection> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::TooLarge);
    }
    let (timestamp, nonce, signature) = present(credentials)?;
    let signature = hex::decode(signature).map_err(|_| Rejection::BadSignature)?;
    mac(secret, timestamp, nonce, body)
        .verify_slice(&signature)
        .map_err(|_| Rejection::BadSignature)?;
    fresh(timestamp, now)?;
    if !replay.admit(nonce, now) {
        return Err(Rejection::Replayed);
    }
    let message: GossipMessage = serde_json::from_slice(body).map_err(|_| Rejection::Malformed)?;
    check_shape(&message)?;
    Ok(message)
}

fn check_shape(message: &GossipMessage) -> Result<(), Rejection> {
    let name_ok = |n: &str| common::keys::check_name("node", n).is_ok();
    if !name_ok(&message.from) || message.reports.len() > MAX_REPORTS {
        return Err(Rejection::Malformed);
    }
    for report in &message.reports {
        if !name_ok(&report.node) || report.services.len() > MAX_SERVICES_PER_REPORT {
            return Err(Rejection::Malformed);
        }
        for (service, values) in &report.services {
            let finite = values
                .metrics
                .values()
                .chain(values.analytics.values())
                .all(|v| v.is_finite());
            if !name_ok(service)
                || !finite
                || values.metrics.len() > MAX_VALUES_PER_SERVICE
                || values.analytics.len() > MAX_VALUES_PER_SERVICE
            {
                return Err(Rejection::Malformed);
            }
        }
    }
    Ok(())
}

/// Serialises `message`, dropping the stalest reports until it fits the size cap (the
/// reports are expected freshest first).
pub fn seal(message: &mut GossipMessage) -> Vec<u8> {
    message.reports.truncate(MAX_REPORTS);
    loop {
        let body = serde_json::to_vec(message).unwrap_or_default();
        if body.len() <= MAX_MESSAGE_BYTES || message.reports.is_empty() {
            return body;
        }
        let keep = message.reports.len() * 3 / 4;
        message.reports.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const SECRET: &str = "0123456789abcdef";

    fn message() -> GossipMessage {
        GossipMessage {
            from: "n1".into(),
            reports: vec![NodeReport {
                node: "n1".into(),
                version: 3,
                services: BTreeMap::from([("web".into(), Default::default())]),
            }],
        }
    }

    fn signed(body: &[u8], ts: u64, nonce: &str) -> (String, String, String) {
        let ts = ts.to_string();
        let sig = sign(SECRET, &ts, nonce, body);
        (ts, nonce.to_owned(), sig)
    }

    fn credentials<'a>(parts: &'a (String, String, String)) -> Credentials<'a> {
        Credentials {
            timestamp: Some(&parts.0),
            nonce: Some(&parts.1),
            signature: Some(&parts.2),
        }
    }

    #[test]
    fn the_precheck_refuses_from_the_headers_alone_what_open_would_refuse() {
        let parts = signed(b"{}", 100_000, "abc");
        assert_eq!(precheck(credentials(&parts), Millis(100_500)), Ok(()));
        let missing = Credentials {
            signature: None,
            ..credentials(&parts)
        };
        assert_eq!(
            precheck(missing, Millis(100_500)),
            Err(Rejection::Unauthenticated)
        );
        let late = Millis(100_000 + FRESHNESS.as_millis() as u64 + 1);
        assert_eq!(precheck(credentials(&parts), late), Err(Rejection::Stale));
        let text = ("soon".to_owned(), "abc".to_owned(), parts.2.clone());
        assert_eq!(
            precheck(credentials(&text), Millis(100_500)),
            Err(Rejection::Malformed)
        );
        // The signature is not checked before the body is in: open does it.
        let forged = (parts.0.clone(), parts.1.clone(), "00".repeat(32));
        assert_eq!(precheck(credentials(&forged), Millis(100_500)), Ok(()));
    }

    #[test]
    fn a_signed_fresh_message_opens_once_and_its_replay_is_refused() {
        let body = seal(&mut message());
        let parts = signed(&body, 10_000, "abc");
        let mut replay = ReplayGuard::default();
        let opened = open(
            SECRET,
            credentials(&parts),
            &body,
            Millis(10_500),
            &mut replay,
        )
        .expect("opens");
        assert_eq!(opened, message());
        assert_eq!(
            open(
                SECRET,
                credentials(&parts),
                &body,
                Millis(10_600),
                &mut replay
            ),
            Err(Rejection::Replayed)
        );
    }

    #[test]
    fn missing_wrong_stale_and_tampered_credentials_are_refused() {
        let body = seal(&mut message());
        let mut replay = ReplayGuard::default();
        let now = Millis(100_000);
        assert_eq!(
            open(SECRET, Credentials::default(), &body, now, &mut replay),
            Err(Rejection::Unauthenticated)
        );
        let wrong = (
            now.0.to_string(),
            "n".to_owned(),
            sign("other", &now.0.to_string(), "n", &body),
        );
        assert_eq!(
            open(SECRET, credentials(&wrong), &body, now, &mut replay),
            Err(Rejection::BadSignature)
        );
        let stale = signed(&body, now.0 - 31_000, "s");
        assert_eq!(
            open(SECRET, credentials(&stale), &body, now, &mut replay),
            Err(Rejection::Stale)
        );
        let good = signed(&body, now.0, "t");
        let mut tampered = body.clone();
        tampered[2] ^= 1;
        assert_eq!(
            open(SECRET, credentials(&good), &tampered, now, &mut replay),
            Err(Rejection::BadSignature)
        );
        let junk = signed(b"{not json", now.0, "j");
        assert_eq!(
            open(SECRET, credentials(&junk), b"{not json", now, &mut replay),
            Err(Rejection::Malformed)
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            open(SECRET, credentials(&good), &huge, now, &mut replay),
            Err(Rejection::TooLarge)
        );
    }

    #[test]
    fn bad_names_and_values_are_malformed() {
        let now = Millis(1_000);
        let mut replay = ReplayGuard::default();
        for (i, mutate) in [
            |m: &mut GossipMessage| m.from = "../etc".into(),
            |m: &mut GossipMessage| m.reports[0].node = String::new(),
            |m: &mut GossipMessage| {
                if let Some(s) = m.reports[0].services.get_mut("web") {
                    s.metrics.insert("cpu".into(), f64::INFINITY);
                }
            },
        ]
        .iter()
        .enumerate()
        {
            let mut m = message();
            mutate(&mut m);
            // Infinity does not survive JSON; write the body by hand for that case.
            let body = serde_json::to_vec(&m).unwrap_or_default();
            let parts = signed(&body, now.0, &format!("m{i}"));
            assert_eq!(
                open(SECRET, credentials(&parts), &body, now, &mut replay),
                Err(Rejection::Malformed),
                "case {i}"
            );
        }
    }

    #[test]
    fn sealing_drops_the_stalest_reports_to_fit() {
        let mut big = GossipMessage {
            from: "n1".into(),
            reports: (0..20_000)
                .map(|i| NodeReport {
                    node: format!("node-{i}"),
                    version: 1,
                    services: BTreeMap::from([("web".into(), Default::default())]),
                })
                .collect(),
        };
        let body = seal(&mut big);
        assert!(body.len() <= MAX_MESSAGE_BYTES);
        assert!(!big.reports.is_empty() && big.reports.len() <= MAX_REPORTS);
        assert_eq!(big.reports[0].node, "node-0", "freshest reports kept first");
    }

    #[test]
    fn the_replay_memory_is_bounded() {
        let mut guard = ReplayGuard::default();
        for i in 0..(REPLAY_MEMORY + 10) {
            assert!(guard.admit(&format!("n{i}"), Millis(0)));
        }
        assert!(guard.seen.len() <= REPLAY_MEMORY);
        assert_eq!(guard.seen.len(), guard.order.len());
    }
}
