//! `POST /gru/v1/gossip`: one leg of a friend's digest exchange (`crate::gossip::digest`).
//! A digest is answered with this agent's versions in the buckets that differ; a push is
//! merged and answered with the reports it wants. Both directions are signed with the
//! cluster secret (see `crate::gossip::wire`); every refusal is counted by reason in the
//! agent's gossip stats and answered with a 4xx, and leaves the view as it was.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::gossip::digest::{DETAIL_CAP, HOT_CAP, REPORT_BYTES_CAP};
use crate::gossip::wire::{
    self, CONTENT_TYPE, Credentials, GossipMessage, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, Rejection,
};

/// Refuses what can be refused from the headers alone (missing, malformed or stale
/// credentials) before reading the body, and reads at most
/// [`wire::MAX_CONCURRENT_BODIES`] bodies at once: unauthenticated senders cannot make the
/// agent hold more than that many messages of [`wire::MAX_MESSAGE_BYTES`].
pub async fn receive(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<crate::tls::PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // With TLS on, gossip is for peers only: a node certificate first (before the body is
    // read), then, once the message names its sender, a certificate valid for that name.
    let peer = peer.and_then(|axum::Extension(peer)| peer.0);
    if state.shared.tls().is_some() && peer.is_none() {
        return refuse_peer(&state, "no_client_certificate", None);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let credentials = Credentials {
        timestamp: header(HEADER_TIMESTAMP),
        nonce: header(HEADER_NONCE),
        signature: header(HEADER_SIGNATURE),
    };
    if let Err(rejection) = wire::precheck(credentials, (state.clock)()) {
        return refuse(&state, rejection);
    }
    let Ok(_permit) = state.gossip_bodies.try_acquire() else {
        return refuse(&state, Rejection::Busy);
    };
    let Ok(bytes) = axum::body::to_bytes(body, wire::MAX_MESSAGE_BYTES).await else {
        return refuse(&state, Rejection::TooLarge);
    };
    let now = (state.clock)();
    let shared = &state.shared;
    let mut knowledge = shared.knowledge();
    let keys = shared.accepted_keys(now);
    let opened = wire::open(
        &keys,
        credentials,
        &bytes,
        now,
        &mut knowledge.gossip_replay,
    );
    drop(knowledge);
    let message = match opened {
        Ok(message) => message,
        Err(rejection) => return refuse(&state, rejection),
    };
    if let Some(cert) = &peer {
        let sender = &message.from;
        if !crate::tls::cert_is_for_node(cert, sender) {
            return refuse_peer(&state, "certificate_not_for_sender", Some(sender));
        }
        if !state.shared.knowledge().peers.nodes.contains_key(sender) {
            return refuse_peer(&state, "sender_not_registered", Some(sender));
        }
    }
    let mut knowledge = shared.knowledge();
    let answer = match message.body {
        digest @ wire::Body::Digest { .. } => {
            let Some((theirs, their_hot, reports)) = digest.open_digest() else {
                drop(knowledge);
                return refuse(&state, Rejection::Malformed);
            };
            // The hot reports it carries are merged first: the answer is about the rest.
            let reports = reports.into_iter().filter(|r| r.node != shared.node);
            knowledge.view.merge_all(reports, now);
            let start = rand::random_range(0..theirs.len().max(1));
            let own_hot = knowledge
                .view
                .heard_since(knowledge.gossip_hot_since, HOT_CAP);
            let knowledge = &mut *knowledge;
            let answer = knowledge.view.answer(
                &theirs,
                &their_hot,
                own_hot,
                &shared.node,
                &knowledge.gossip_asked,
                start,
                DETAIL_CAP,
            );
            knowledge.gossip_asked.extend(answer.wants.iter().cloned());
            wire::Body::answer(&answer)
        }
        wire::Body::Push { reports, wants } => {
            let reports = reports.into_iter().filter(|r| r.node != shared.node);
            knowledge.view.merge_all(reports, now);
            let wanted = knowledge.view.wanted(&wants);
            wire::Body::Reports(wire::within(wanted, REPORT_BYTES_CAP))
        }
        wire::Body::Answer { .. } | wire::Body::Reports(_) => {
            drop(knowledge);
            return refuse(&state, Rejection::Malformed);
        }
    };
    knowledge.gossip.received += 1;
    knowledge.gossip.bytes_received += bytes.len() as u64;
    let mut reply = GossipMessage {
        from: shared.node.clone(),
        body: answer,
    };
    drop(knowledge);
    let body = wire::seal(&mut reply);
    shared.knowledge().gossip.bytes_sent += body.len() as u64;
    let timestamp = now.0.to_string();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let signature = wire::sign(&shared.signing_key(now), &timestamp, &nonce, &body);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (HEADER_TIMESTAMP, timestamp),
        (HEADER_NONCE, nonce),
        (HEADER_SIGNATURE, signature),
        ("content-type", CONTENT_TYPE.to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// Counts the refusal by reason and answers it with its status.
fn refuse(state: &ApiState, rejection: Rejection) -> Response {
    *state
        .shared
        .knowledge()
        .gossip
        .rejected
        .entry(rejection.as_str())
        .or_insert(0) += 1;
    let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let error = serde_json::json!({ "error": format!("gossip refused: {}", rejection.as_str()) });
    (status, Json(error)).into_response()
}

/// Refuses a request from a client that is not a registered peer with a certificate for
/// its name (TLS on): counted with the other refusals, logged with the claimed sender.
fn refuse_peer(state: &ApiState, reason: &'static str, sender: Option<&str>) -> Response {
    *state
        .shared
        .knowledge()
        .gossip
        .rejected
        .entry(reason)
        .or_insert(0) += 1;
    tracing::warn!(
        reason,
        sender = sender.unwrap_or("-"),
        "gossip refused: the client is not a registered peer with a certificate for its name"
    );
    let error = serde_json::json!({
        "error": format!(
            "gossip refused: {reason} (peers must present a node certificate of the cluster's \
             CA valid for the node they speak for: `gru tls cert create --node NAME`)"
        )
    });
    (StatusCode::FORBIDDEN, Json(error)).into_response()
}

/// `GET /gru/v1/gossip`: what this agent knows of its peers and the cluster view, and its
/// gossip counters (rounds, exchanges, refusals by reason).
pub async fn overview(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let knowledge = state.shared.knowledge();
    let reports: serde_json::Map<String, serde_json::Value> = knowledge
        .view
        .reports(usize::MAX)
        .into_iter()
        .map(|r| {
            (
                r.node.clone(),
                serde_json::json!({ "version": r.version, "services": r.services }),
            )
        })
        .collect();
    let services: serde_json::Map<String, serde_json::Value> = knowledge
        .view
        .services()
        .into_iter()
        .map(|s| {
            let view = knowledge.view.service(&s);
            (s, serde_json::to_value(view).unwrap_or_default())
        })
        .collect();
    let mut stats = serde_json::to_value(&knowledge.gossip).unwrap_or_default();
    if state.shared.tls().is_some() {
        stats["tls_refused"] = serde_json::json!(state.shared.tls_refusals.snapshot());
    }
    Json(serde_json::json!({
        "node": state.shared.node,
        "stats": stats,
        "peers": knowledge.peers.nodes,
        "reports": reports,
        "services": services,
    }))
}
