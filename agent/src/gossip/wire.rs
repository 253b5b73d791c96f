//! The gossip message and its protection.
//!
//! A message is `{from, body}` in postcard (a compact serde encoding: varints, no field
//! names), at most [`MAX_MESSAGE_BYTES`]. The body is one leg of a digest exchange
//! (`super::digest`): a request carries a [`Body::Digest`] or a [`Body::Push`], an answer a
//! [`Body::Answer`] or a [`Body::Reports`]. Every message is authenticated with
//! HMAC-SHA256 keyed by the cluster secret over the method, path, a millisecond timestamp,
//! a random nonce and the body; the receiver refuses a timestamp further than
//! [`FRESHNESS`] from its clock and a nonce it has already seen within that window, so a
//! captured message cannot be replayed. Every refusal has a reason, which the agent counts.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::codec;
use super::digest::{Answer, HOT_CAP, MAX_BUCKETS, Versions};
use super::view::NodeReport;
use crate::mape::Millis;

pub const GOSSIP_PATH: &str = "/gru/v1/gossip";
pub const HEADER_TIMESTAMP: &str = "x-gru-timestamp";
pub const HEADER_NONCE: &str = "x-gru-nonce";
pub const HEADER_SIGNATURE: &str = "x-gru-signature";
/// The media type of a gossip body.
pub const CONTENT_TYPE: &str = "application/x-gru-gossip";

/// Largest message body accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most reports in one message (a push or the wanted reports); a sender keeps the first
/// ones. Digest exchanges send only what the other side lacks, and an answer to a digest
/// lists at most `digest::DETAIL_CAP` versions, so this bounds a hostile or broken friend,
/// not a working exchange.
pub const MAX_REPORTS: usize = 4_096;
/// Most (node, version) entries in an answer to a digest, and most nodes wanted at once.
pub const MAX_VERSIONS: usize = 4_096;
/// Most services in one report, and metrics or analytics in one service report.
pub const MAX_SERVICES_PER_REPORT: usize = 256;
pub const MAX_VALUES_PER_SERVICE: usize = 64;
/// How far a message's timestamp may be from the receiver's clock.
pub const FRESHNESS: Duration = Duration::from_secs(30);
/// Nonces remembered (per agent); beyond it the oldest are forgotten first.
pub const REPLAY_MEMORY: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GossipMessage {
    pub from: String,
    pub body: Body,
}

/// One leg of a digest exchange (`super::digest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// Request: the asker's fingerprints, one per bucket (`ClusterView::digest`), as 4
    /// little-endian bytes each (a varint would take 5 for most of them), and its hot list:
    /// the reports themselves while they fit `digest::HOT_REPORT_BYTES`, else their
    /// versions (`digest::hot_message`).
    Digest {
        sums: Vec<[u8; 4]>,
        hot: VersionList,
        #[serde(with = "codec::reports")]
        reports: Vec<NodeReport>,
    },
    /// Answer to a digest (`digest::Answer`).
    Answer {
        #[serde(with = "codec::names")]
        wants: Vec<String>,
        hot: VersionList,
        buckets: Vec<u32>,
        versions: VersionList,
    },
    /// Request: the reports the friend wants or lacks, and the nodes whose reports the
    /// asker wants.
    Push {
        #[serde(with = "codec::reports")]
        reports: Vec<NodeReport>,
        #[serde(with = "codec::names")]
        wants: Vec<String>,
    },
    /// Answer to a push: the wanted reports.
    Reports(#[serde(with = "codec::reports")] Vec<NodeReport>),
}

/// (node, version) pairs in name order, each version written as its distance below the
/// list's highest (`base`), each name front-coded (`codec`): versions are milliseconds of
/// the nodes' clocks, so the distances of a list of recent versions take 2 or 3 bytes
/// where the versions take 6.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionList {
    pub base: u64,
    #[serde(with = "codec::distances")]
    pub below: Vec<(String, u64)>,
}

impl VersionList {
    pub fn new(entries: &[(String, u64)]) -> VersionList {
        let base = entries.iter().map(|(_, v)| *v).max().unwrap_or(0);
        let mut below: Vec<(String, u64)> =
            entries.iter().map(|(n, v)| (n.clone(), base - v)).collect();
        below.sort_unstable();
        VersionList { base, below }
    }

    /// The pairs, or `None` if a distance goes below version 0.
    pub fn entries(&self) -> Option<Vec<(String, u64)>> {
        self.below
            .iter()
            .map(|(n, below)| Some((n.clone(), self.base.checked_sub(*below)?)))
            .collect()
    }

    /// Bytes on the wire of the list of these pairs (node name, version).
    pub fn len_of<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> usize {
        codec::versions_len(entries)
    }
}

impl Body {
    /// A digest request of these fingerprints and hot list (versions, or the reports).
    pub fn digest(sums: &[u32], hot: &[(String, u64)], reports: Vec<NodeReport>) -> Body {
        Body::Digest {
            sums: sums.iter().map(|s| s.to_le_bytes()).collect(),
            hot: VersionList::new(hot),
            reports,
        }
    }

    /// The fingerprints, hot list and hot reports of a digest request; the hot list holds
    /// the versions it lists and those of the reports it carries.
    pub fn open_digest(self) -> Option<(Vec<u32>, Versions, Vec<NodeReport>)> {
        match self {
            Body::Digest { sums, hot, reports } => {
                let mut versions = hot.entries()?;
                versions.extend(reports.iter().map(|r| (r.node.clone(), r.version)));
                let sums = sums.iter().map(|s| u32::from_le_bytes(*s)).collect();
                Some((sums, versions, reports))
            }
            _ => None,
        }
    }

    /// The body of an answer (its lists in name order, as they are written).
    pub fn answer(answer: &Answer) -> Body {
        let mut wants = answer.wants.clone();
        wants.sort_unstable();
        Body::Answer {
            wants,
            hot: VersionList::new(&answer.hot),
            buckets: answer.buckets.clone(),
            versions: VersionList::new(&answer.versions),
        }
    }

    /// The answer this body is, if it is one.
    pub fn open_answer(self) -> Option<Answer> {
        match self {
            Body::Answer {
                wants,
                hot,
                buckets,
                versions,
            } => Some(Answer {
                wants,
                hot: hot.entries()?,
                buckets,
                versions: versions.entries()?,
            }),
            _ => None,
        }
    }

    /// Whether this body is a request (what `POST /gru/v1/gossip` takes).
    pub fn is_request(&self) -> bool {
        matches!(self, Body::Digest { .. } | Body::Push { .. })
    }

    /// The reports it carries.
    pub fn reports(&self) -> &[NodeReport] {
        match self {
            Body::Digest { reports, .. } | Body::Push { reports, .. } | Body::Reports(reports) => {
                reports
            }
            Body::Answer { .. } => &[],
        }
    }
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
    pub(crate) fn admit(&mut self, nonce: &str, now: Millis) -> bool {
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
pub(crate) fn present(credentials: Credentials<'_>) -> Result<(&str, &str, &str), Rejection> {
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
pub(crate) fn fresh(timestamp: &str, now: Millis) -> Result<(), Rejection> {
    let sent: u64 = timestamp.parse().map_err(|_| Rejection::Malformed)?;
    if Duration::from_millis(now.0.abs_diff(sent)) > FRESHNESS {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// Checks a received message completely: size, authentication (under one of `keys`),
/// freshness, replay, shape.
/// The signature is checked before the nonce is remembered, so forged messages cannot
/// fill the replay memory.
pub fn open(
    keys: &[String],
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
    // Any of the accepted keys (two during a rotation's overlap).
    if !keys.iter().any(|key| {
        mac(key, timestamp, nonce, body)
            .verify_slice(&signature)
            .is_ok()
    }) {
        return Err(Rejection::BadSignature);
    }
    fresh(timestamp, now)?;
    if !replay.admit(nonce, now) {
        return Err(Rejection::Replayed);
    }
    let message = decode(body)?;
    check_shape(&message)?;
    Ok(message)
}

/// Decodes a body (whose signature was checked): the whole body is one message.
pub fn decode(body: &[u8]) -> Result<GossipMessage, Rejection> {
    match postcard::take_from_bytes::<GossipMessage>(body) {
        Ok((message, [])) => Ok(message),
        _ => Err(Rejection::Malformed),
    }
}

fn check_shape(message: &GossipMessage) -> Result<(), Rejection> {
    let name_ok = |n: &str| common::keys::check_name("node", n).is_ok();
    if !name_ok(&message.from) || message.body.reports().len() > MAX_REPORTS {
        return Err(Rejection::Malformed);
    }
    let list_ok = |list: &VersionList, cap: usize| {
        list.below.len() <= cap
            && list.entries().is_some()
            && list.below.iter().all(|(node, _)| name_ok(node))
    };
    let names_ok =
        |names: &[String]| names.len() <= MAX_VERSIONS && names.iter().all(|node| name_ok(node));
    let shape_ok = match &message.body {
        Body::Digest { sums, hot, .. } => {
            !sums.is_empty() && sums.len() <= MAX_BUCKETS && list_ok(hot, HOT_CAP)
        }
        Body::Answer {
            wants,
            hot,
            buckets,
            versions,
        } => {
            names_ok(wants)
                && list_ok(hot, HOT_CAP)
                && buckets.len() <= MAX_BUCKETS
                && list_ok(versions, MAX_VERSIONS)
        }
        Body::Push { wants, .. } => names_ok(wants),
        Body::Reports(_) => true,
    };
    if !shape_ok {
        return Err(Rejection::Malformed);
    }
    for report in message.body.reports() {
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

/// Serialises `message`, keeping the first reports (and versions, and wants) that fit the
/// caps: at most [`MAX_REPORTS`] reports and [`MAX_VERSIONS`] entries, and a quarter fewer
/// reports at a time until the body fits [`MAX_MESSAGE_BYTES`]. Its lists are left in the
/// order they were written in (`codec`: names and reports in name order), as the receiver
/// decodes them.
pub fn seal(message: &mut GossipMessage) -> Vec<u8> {
    match &mut message.body {
        Body::Digest { sums, hot, reports } => {
            sums.truncate(MAX_BUCKETS);
            hot.below.truncate(HOT_CAP);
            reports.truncate(MAX_REPORTS);
        }
        Body::Answer {
            wants,
            hot,
            versions,
            ..
        } => {
            wants.truncate(MAX_VERSIONS);
            hot.below.truncate(HOT_CAP);
            versions.below.truncate(MAX_VERSIONS);
        }
        Body::Push { reports, wants } => {
            reports.truncate(MAX_REPORTS);
            wants.truncate(MAX_VERSIONS);
        }
        Body::Reports(reports) => reports.truncate(MAX_REPORTS),
    }
    loop {
        let body = postcard::to_allocvec(message).unwrap_or_default();
        let reports = match &mut message.body {
            Body::Digest { reports, .. } | Body::Push { reports, .. } | Body::Reports(reports) => {
                reports
            }
            Body::Answer { wants, .. } => {
                wants.sort_unstable();
                return body;
            }
        };
        if body.len() <= MAX_MESSAGE_BYTES || reports.is_empty() {
            // The message as it went: its lists in the order they are written in.
            reports.sort_unstable_by(|a, b| a.node.cmp(&b.node));
            if let Body::Push { wants, .. } = &mut message.body {
                wants.sort_unstable();
            }
            return body;
        }
        let keep = reports.len() * 3 / 4;
        reports.truncate(keep);
    }
}

/// Bytes of a postcard varint holding `value`.
pub fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Bytes of a string on the wire.
pub fn string_len(text: &str) -> usize {
    varint_len(text.len() as u64) + text.len()
}

/// The first of `reports` whose bytes on the wire add up to at most `cap` (the first one
/// always, so that a report larger than the cap still travels).
pub fn within(mut reports: Vec<NodeReport>, cap: usize) -> Vec<NodeReport> {
    let keep = kept_within(reports.iter().map(report_len), cap);
    reports.truncate(keep);
    reports
}

/// How many of a list's first items [`within`] keeps, given their bytes (`lens`, in
/// order): those that add up to at most `cap`, the first one always.
pub fn kept_within(lens: impl IntoIterator<Item = usize>, cap: usize) -> usize {
    let (mut total, mut kept) = (0, 0);
    for len in lens {
        total += len;
        if total > cap && kept > 0 {
            break;
        }
        kept += 1;
    }
    kept
}

/// Bytes of one report alone, in postcard with its names written out: the unit of the
/// report caps (`digest::HOT_REPORT_BYTES`, `digest::REPORT_BYTES_CAP`, [`within`]). In a
/// list it takes less (`codec::reports_len_of`).
pub fn report_len(report: &NodeReport) -> usize {
    postcard::to_allocvec(report).map_or(0, |bytes| bytes.len())
}

/// Bytes of a message from `from` whose body is of the kind `kind` (0 digest, 1 answer,
/// 2 push, 3 reports) and whose fields take `fields` bytes. What the simulator counts
/// without building messages; `sizes_add_up_to_the_encoded_length` pins it to the
/// encoder.
pub fn message_len(from: &str, kind: u8, fields: usize) -> usize {
    string_len(from) + varint_len(u64::from(kind)) + fields
}

/// Bytes of a list of `entries` items that take `bytes` together.
pub fn list_len(entries: usize, bytes: usize) -> usize {
    varint_len(entries as u64) + bytes
}

/// Bytes of a fingerprint on the wire.
pub const FINGERPRINT_LEN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const SECRET: &str = "0123456789abcdef";

    fn keys() -> Vec<String> {
        vec![SECRET.to_owned()]
    }

    fn message() -> GossipMessage {
        GossipMessage {
            from: "n1".into(),
            body: Body::Reports(vec![NodeReport {
                node: "n1".into(),
                version: 3,
                services: BTreeMap::from([("web".into(), Default::default())]),
            }]),
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
            &keys(),
            credentials(&parts),
            &body,
            Millis(10_500),
            &mut replay,
        )
        .expect("opens");
        assert_eq!(opened, message());
        assert_eq!(
            open(
                &keys(),
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
            open(&keys(), Credentials::default(), &body, now, &mut replay),
            Err(Rejection::Unauthenticated)
        );
        let wrong = (
            now.0.to_string(),
            "n".to_owned(),
            sign("other", &now.0.to_string(), "n", &body),
        );
        assert_eq!(
            open(&keys(), credentials(&wrong), &body, now, &mut replay),
            Err(Rejection::BadSignature)
        );
        let stale = signed(&body, now.0 - 31_000, "s");
        assert_eq!(
            open(&keys(), credentials(&stale), &body, now, &mut replay),
            Err(Rejection::Stale)
        );
        let good = signed(&body, now.0, "t");
        let mut tampered = body.clone();
        tampered[2] ^= 1;
        assert_eq!(
            open(&keys(), credentials(&good), &tampered, now, &mut replay),
            Err(Rejection::BadSignature)
        );
        let junk = signed(b"{not gossip", now.0, "j");
        assert_eq!(
            open(
                &keys(),
                credentials(&junk),
                b"{not gossip",
                now,
                &mut replay
            ),
            Err(Rejection::Malformed)
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            open(&keys(), credentials(&good), &huge, now, &mut replay),
            Err(Rejection::TooLarge)
        );
    }

    fn first_report(m: &mut GossipMessage) -> &mut NodeReport {
        match &mut m.body {
            Body::Reports(reports) => &mut reports[0],
            _ => unreachable!("message() holds reports"),
        }
    }

    #[test]
    fn bad_names_values_and_bodies_are_malformed() {
        let now = Millis(1_000);
        let mut replay = ReplayGuard::default();
        let cases: [fn(&mut GossipMessage); 8] = [
            |m| m.from = "../etc".into(),
            |m| first_report(m).node = String::new(),
            |m| {
                if let Some(s) = first_report(m).services.get_mut("web") {
                    s.metrics.insert("cpu".into(), f64::INFINITY);
                }
            },
            |m| m.body = Body::digest(&[], &[], Vec::new()),
            |m| m.body = Body::digest(&[0; MAX_BUCKETS + 1], &[], Vec::new()),
            |m| {
                m.body = Body::answer(&Answer {
                    versions: vec![("a b".into(), 1)],
                    ..Answer::default()
                })
            },
            |m| {
                // A distance below version 0.
                m.body = Body::Digest {
                    sums: vec![[0; 4]],
                    hot: VersionList {
                        base: 3,
                        below: vec![("a".into(), 4)],
                    },
                    reports: Vec::new(),
                }
            },
            |m| {
                m.body = Body::Push {
                    reports: Vec::new(),
                    wants: vec!["../x".into()],
                }
            },
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut m = message();
            mutate(&mut m);
            // Encoded as is: `seal` would truncate what is too long.
            let body = postcard::to_allocvec(&m).unwrap_or_default();
            let parts = signed(&body, now.0, &format!("m{i}"));
            assert_eq!(
                open(&keys(), credentials(&parts), &body, now, &mut replay),
                Err(Rejection::Malformed),
                "case {i}"
            );
        }
        // Trailing bytes after a whole message are refused too.
        let mut body = seal(&mut message());
        body.push(0);
        let parts = signed(&body, now.0, "trailing");
        assert_eq!(
            open(&keys(), credentials(&parts), &body, now, &mut replay),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn sealing_keeps_the_first_reports_that_fit() {
        let mut big = GossipMessage {
            from: "n1".into(),
            body: Body::Reports(
                (0..20_000)
                    .map(|i| NodeReport {
                        node: format!("node-{i}"),
                        version: 1,
                        services: BTreeMap::from([("web".into(), Default::default())]),
                    })
                    .collect(),
            ),
        };
        let body = seal(&mut big);
        assert!(body.len() <= MAX_MESSAGE_BYTES);
        let reports = big.body.reports();
        assert!(!reports.is_empty() && reports.len() <= MAX_REPORTS);
        assert_eq!(reports[0].node, "node-0", "the first reports are kept");
        assert_eq!(
            decode(&body).map(|m| m.body.reports().len()),
            Ok(MAX_REPORTS)
        );
    }

    #[test]
    fn sizes_add_up_to_the_encoded_length() {
        let report = |i: u64| NodeReport {
            node: format!("n{i:06}"),
            version: 1_800_000_000_000 + i,
            services: BTreeMap::from([(
                "web".into(),
                crate::gossip::ServiceReport {
                    instances: 2,
                    metrics: BTreeMap::from([("cpu_avg".into(), 0.25)]),
                    analytics: BTreeMap::from([("load".into(), 0.5 + i as f64)]),
                },
            )]),
        };
        // Out of name order: the wire writes them in name order.
        let reports: Vec<NodeReport> = (0..300).rev().map(report).collect();
        let wants: Vec<String> = (0..40).rev().map(|i| format!("n{i:06}")).collect();
        let versions: Vec<(String, u64)> = (0..200)
            .map(|i| (format!("n{i:06}"), 1_800_000_000_000 + i))
            .collect();
        let sums: Vec<u32> = (0..512_u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let reports_len = codec::reports_len_of(&reports);
        let wants_len = codec::names_len(wants.iter().map(String::as_str));
        let list = |entries: &[(String, u64)]| {
            VersionList::len_of(entries.iter().map(|(n, v)| (n.as_str(), *v)))
        };
        let hot = versions[..30].to_vec();
        let answer = Answer {
            wants: wants.clone(),
            hot: hot.clone(),
            buckets: (0..100).collect(),
            versions: versions.clone(),
        };
        let cases = [
            (
                Body::digest(&sums, &hot, Vec::new()),
                message_len(
                    "n000001",
                    0,
                    list_len(512, 512 * FINGERPRINT_LEN) + list(&hot) + codec::reports_len_of(&[]),
                ),
            ),
            (
                Body::digest(&sums, &[], reports[..20].to_vec()),
                message_len(
                    "n000001",
                    0,
                    list_len(512, 512 * FINGERPRINT_LEN)
                        + list(&[])
                        + codec::reports_len_of(&reports[..20]),
                ),
            ),
            (
                Body::answer(&answer),
                message_len(
                    "n000001",
                    1,
                    wants_len + list(&hot) + list_len(100, 100) + list(&versions),
                ),
            ),
            (
                Body::Push {
                    reports: reports.clone(),
                    wants: wants.clone(),
                },
                message_len("n000001", 2, reports_len + wants_len),
            ),
            (
                Body::Reports(reports.clone()),
                message_len("n000001", 3, reports_len),
            ),
        ];
        for (body, expected) in cases {
            let mut message = GossipMessage {
                from: "n000001".into(),
                body,
            };
            let sealed = seal(&mut message);
            assert_eq!(sealed.len(), expected, "{:?}", message.body);
            assert_eq!(decode(&sealed).map(|m| m.body), Ok(message.body));
        }
        let opened = Body::answer(&answer).open_answer();
        let mut sorted = answer;
        sorted.wants.sort();
        assert_eq!(opened, Some(sorted), "versions survive the distances");
        assert_eq!((varint_len(0), varint_len(127), varint_len(128)), (1, 1, 2));
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
