//! Who may change an agent's state: a signed request (an operator token, or the cluster
//! key), or the deprecated `Authorization: Bearer <cluster secret>`.
//!
//! A handler that changes anything takes an [`Operator`] as its first argument; axum runs
//! that extractor before it reads the body, so what the headers alone can refuse is
//! refused without the agent reading what was sent: no credentials (401), an unknown,
//! revoked or expired token (403), a token of the `read` role (403), a timestamp outside
//! the gossip wire's freshness window (409). Once the body is in, the handler calls
//! [`Operator::verify`]: the signature over method, path, signer, timestamp, nonce and
//! body (403), then the nonce, remembered for the freshness window (409 for a replay), as
//! the gossip wire does (`crate::gossip::wire`, whose checks are reused here).
//!
//! Revocation and expiry take effect at once on each agent: token records are read from
//! the agent's copy, which its etcd watch keeps current (a revoked token is refused as
//! soon as the watch delivers the deletion, in milliseconds), and expiry is compared with
//! the agent's clock on every request.
//!
//! The bearer form is what Gru's clients, the web console and applications pushing
//! metrics send; it names no operator and is not replay-proof (the secret itself travels),
//! so it is recorded as [`BEARER_SIGNER`]. Presented values are compared in constant time
//! and never logged or echoed.

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::ApiState;
use super::error::ApiError;
use crate::gossip::wire::{self, Credentials, Rejection, ReplayGuard};
use crate::mape::Millis;
use crate::signing::{self, HEADER_CLUSTER_KEY, HEADER_TOKEN};

/// The name recorded for a request authenticated with the bearer cluster secret.
pub const BEARER_SIGNER: &str = "cluster-secret";

/// Nonces of signed operator requests seen within the freshness window (one per agent).
pub type OperatorReplay = Arc<Mutex<ReplayGuard>>;

/// A request whose headers checked out; [`Operator::verify`] checks its body's signature.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Who it is recorded as: the token's name, the name a cluster-key signer gave, or
    /// [`BEARER_SIGNER`].
    pub name: String,
    proof: Proof,
    method: String,
    path: String,
}

#[derive(Debug, Clone)]
enum Proof {
    Token { public_key: String, signed: Signed },
    ClusterKey(Signed),
    Bearer,
}

#[derive(Debug, Clone)]
struct Signed {
    timestamp: String,
    nonce: String,
    signature: String,
}

/// Why a request is not allowed to change anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials at all (or in a scheme the agent does not know): 401.
    Missing,
    /// A bearer value that is not the cluster secret: 403.
    WrongSecret,
    /// A bearer secret, to an agent that accepts signed requests only: 401.
    BearerRefused,
    /// No token of that name (never created, or revoked): 403.
    UnknownToken(String),
    /// The token expired at that time (ms): 403.
    Expired(String, u64),
    /// A read token on a route that changes state: 403.
    ReadOnly(String),
    /// The signed headers' check failed (stale, replayed, bad signature, malformed).
    Signature(Rejection),
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> ApiError {
        let forbidden = |text: String| ApiError::new(StatusCode::FORBIDDEN, text);
        match failure {
            AuthFailure::Missing => ApiError::unauthenticated(
                "this route changes the agent's state: sign the request with an operator \
                 token (`gru token create`; headers x-gru-token, x-gru-timestamp, x-gru-nonce, \
                 x-gru-signature) or send the cluster secret as `Authorization: Bearer <secret>`",
            ),
            AuthFailure::WrongSecret => {
                forbidden("the presented secret is not the cluster's".into())
            }
            AuthFailure::BearerRefused => ApiError::unauthenticated(
                "this agent accepts signed requests only (gru join --signed-only): sign the \
                 request with an operator token (`gru token create`), not the bearer secret",
            ),
            AuthFailure::UnknownToken(name) => forbidden(format!(
                "no token named {} in this cluster (revoked, or never created: see `gru token list`)",
                super::error::shortened(&name, 128)
            )),
            AuthFailure::Expired(name, at) => forbidden(format!(
                "token {name} expired at {at} ms since the epoch (create another with `gru token create`)"
            )),
            AuthFailure::ReadOnly(name) => forbidden(format!(
                "token {name} has the read role: it may call read routes only, and this request \
                 changes state (use a token created with --role operate)"
            )),
            AuthFailure::Signature(rejection) => {
                let status =
                    StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::FORBIDDEN);
                let text = match rejection {
                    Rejection::Stale => {
                        "the request's timestamp is too far from the agent's clock \
                                         (more than 30 s): sign it again, or check the clocks"
                            .to_owned()
                    }
                    Rejection::Replayed => {
                        "this request was already received (its nonce was seen): a replay is \
                         refused; sign each request with a fresh nonce"
                            .to_owned()
                    }
                    Rejection::BadSignature => {
                        "the request's signature does not match (wrong token or key, or the \
                         request was changed on the way)"
                            .to_owned()
                    }
                    Rejection::Unauthenticated => {
                        "a signed request needs x-gru-timestamp, x-gru-nonce and x-gru-signature"
                            .to_owned()
                    }
                    other => format!("the request's credentials are {}", other.as_str()),
                };
                ApiError::new(status, text)
            }
        }
    }
}

/// The bearer token of `headers`, if they carry one. The scheme is case-insensitive
/// (RFC 7235); surrounding blanks are not part of the token.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What the agent knows to check a request's headers with.
pub struct Authority<'a> {
    pub token: &'a dyn Fn(&str) -> Option<common::auth::TokenRecord>,
    pub secret_matches: &'a dyn Fn(&str) -> bool,
    /// Refuse the bearer secret altogether.
    pub signed_only: bool,
    pub now: Millis,
}

/// Checks what the headers alone can show (see the module doc).
pub fn authorize(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    authority: &Authority<'_>,
) -> Result<Operator, AuthFailure> {
    let signed = || -> Result<Signed, AuthFailure> {
        let credentials = Credentials {
            timestamp: header_text(headers, wire::HEADER_TIMESTAMP),
            nonce: header_text(headers, wire::HEADER_NONCE),
            signature: header_text(headers, wire::HEADER_SIGNATURE),
        };
        let (timestamp, nonce, signature) =
            wire::present(credentials).map_err(AuthFailure::Signature)?;
        wire::fresh(timestamp, authority.now).map_err(AuthFailure::Signature)?;
        Ok(Signed {
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            signature: signature.to_owned(),
        })
    };
    let operator = |name: &str, proof| Operator {
        name: name.to_owned(),
        proof,
        method: method.to_owned(),
        path: path.to_owned(),
    };
    if let Some(name) = header_text(headers, HEADER_TOKEN) {
        let record = (authority.token)(name)
            .filter(|_| common::keys::check_name("token", name).is_ok())
            .ok_or_else(|| AuthFailure::UnknownToken(name.to_owned()))?;
        if let Some(at) = record
            .expires
            .filter(|_| record.expired_at(authority.now.0))
        {
            return Err(AuthFailure::Expired(name.to_owned(), at));
        }
        if !record.role.may_change() {
            return Err(AuthFailure::ReadOnly(name.to_owned()));
        }
        let signed = signed()?;
        return Ok(operator(
            name,
            Proof::Token {
                public_key: record.public_key,
                signed,
            },
        ));
    }
    if let Some(name) = header_text(headers, HEADER_CLUSTER_KEY) {
        if common::keys::check_name("signer", name).is_err() {
            return Err(AuthFailure::Signature(Rejection::Malformed));
        }
        return Ok(operator(name, Proof::ClusterKey(signed()?)));
    }
    let secret = bearer_token(headers).ok_or(AuthFailure::Missing)?;
    if authority.signed_only {
        return Err(AuthFailure::BearerRefused);
    }
    if (authority.secret_matches)(secret) {
        Ok(operator(BEARER_SIGNER, Proof::Bearer))
    } else {
        Err(AuthFailure::WrongSecret)
    }
}

impl Operator {
    /// Checks the signature over `body` (with the cluster keys `keys` accepts for a
    /// cluster-key signer), then remembers the nonce in `replay`: a request is accepted once.
    pub fn verify_with(
        &self,
        body: &[u8],
        keys: &[String],
        now: Millis,
        replay: &Mutex<ReplayGuard>,
    ) -> Result<(), AuthFailure> {
        let signed = match &self.proof {
            Proof::Bearer => return Ok(()),
            Proof::Token { signed, .. } | Proof::ClusterKey(signed) => signed,
        };
        let message = signing::canonical(
            &self.method,
            &self.path,
            &self.name,
            &signed.timestamp,
            &signed.nonce,
            body,
        );
        let matches = match &self.proof {
            Proof::Token { public_key, .. } => {
                signing::token_signature_matches(public_key, &message, &signed.signature)
            }
            _ => signing::cluster_key_signature_matches(keys, &message, &signed.signature),
        };
        if !matches {
            return Err(AuthFailure::Signature(Rejection::BadSignature));
        }
        let mut replay = replay.lock().unwrap_or_else(|p| p.into_inner());
        if !replay.admit(&signed.nonce, now) {
            return Err(AuthFailure::Signature(Rejection::Replayed));
        }
        Ok(())
    }

    /// [`Operator::verify_with`] with the agent's keys, clock and replay memory.
    pub(super) fn verify(&self, state: &ApiState, body: &[u8]) -> Result<(), ApiError> {
        let now = (state.clock)();
        let keys = state.shared.accepted_keys(now);
        self.verify_with(body, &keys, now, &state.operator_replay)
            .map_err(|failure| {
                tracing::debug!(path = %self.path, signer = %self.name, ?failure, "refused a signed request");
                failure.into()
            })
    }
}

/// With TLS on, a request proven by the cluster key alone (what every peer holds, and
/// anyone who can read etcd) must also come with a certificate from the cluster's CA,
/// checked in the handshake; an operator token identifies a person and stands alone.
fn needs_certificate(shared: &crate::runtime::Shared, operator: &Operator, parts: &Parts) -> bool {
    let by_cluster_key = matches!(operator.proof, Proof::ClusterKey(_) | Proof::Bearer);
    let certified = parts
        .extensions
        .get::<crate::tls::PeerCertificate>()
        .is_some_and(|peer| peer.0.is_some());
    shared.tls().is_some() && by_cluster_key && !certified
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let now = (state.clock)();
        let shared = &state.shared;
        let authority = Authority {
            token: &|name| shared.token(name),
            secret_matches: &|presented| shared.secret_matches(presented, now),
            signed_only: shared.signed_only(),
            now,
        };
        // The path as the client sent it: inside the nested `/gru/v1` router `parts.uri`
        // lacks the prefix, and the signature covers the whole path.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |uri| uri.path().to_owned());
        match authorize(&parts.headers, parts.method.as_str(), &path, &authority) {
            Ok(operator) if needs_certificate(shared, &operator, parts) => {
                tracing::warn!(
                    method = %parts.method,
                    %path,
                    signer = %operator.name,
                    "refused: the cluster key without a client certificate, on an agent with TLS"
                );
                Err(ApiError::unauthenticated(
                    "this agent serves TLS: the cluster key (signature or bearer secret) is \
                     accepted only with a client certificate from the cluster's CA (a peer's \
                     node certificate, or an operator's: `gru tls cert create --client NAME`, \
                     then `gru manage --tls-cert --tls-key`); or sign with an operator token \
                     (`gru token create`, GRU_TOKEN)",
                ))
            }
            Ok(operator) => Ok(operator),
            Err(failure) => {
                // The path says what was attempted; the presented value stays out of logs.
                tracing::debug!(
                    method = %parts.method,
                    %path,
                    ?failure,
                    "refused a state-changing request"
                );
                Err(failure.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use common::auth::{OperatorToken, Role, TokenRecord};
    use signing::Signer;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                HeaderValue::from_bytes(value).expect("a header value"),
            );
        }
        headers
    }

    fn bearer(value: Option<&[u8]>) -> HeaderMap {
        headers(
            &value
                .map(|v| ("authorization", v))
                .into_iter()
                .collect::<Vec<_>>(),
        )
    }

    fn token(name: &str, seed: u8) -> OperatorToken {
        OperatorToken {
            name: name.into(),
            seed: [seed; 32],
        }
    }

    fn record(token: &OperatorToken, role: Role, expires: Option<u64>) -> TokenRecord {
        TokenRecord {
            public_key: signing::public_key(token),
            role,
            created: 0,
            expires,
        }
    }

    /// Tokens: ops (operate), viewer (read), old (operate, expired at 50_000).
    fn lookup(name: &str) -> Option<TokenRecord> {
        match name {
            "ops" => Some(record(&token("ops", 1), Role::Operate, None)),
            "viewer" => Some(record(&token("viewer", 2), Role::Read, None)),
            "old" => Some(record(&token("old", 3), Role::Operate, Some(50_000))),
            _ => None,
        }
    }

    fn check(headers: &HeaderMap, now: u64) -> Result<Operator, AuthFailure> {
        check_with(headers, now, false)
    }

    fn check_with(
        headers: &HeaderMap,
        now: u64,
        signed_only: bool,
    ) -> Result<Operator, AuthFailure> {
        let authority = Authority {
            token: &lookup,
            secret_matches: &|token| token == "s3cret",
            signed_only,
            now: Millis(now),
        };
        authorize(headers, "POST", "/gru/v1/commands", &authority)
    }

    #[test]
    fn a_signed_only_agent_refuses_the_bearer_secret_and_takes_a_token() {
        let right = bearer(Some(b"Bearer s3cret"));
        assert_eq!(
            check_with(&right, 0, true).map(|o| o.name),
            Err(AuthFailure::BearerRefused)
        );
        let signed = signed_by(&Signer::Token(token("ops", 1)), 0, "s", b"{}");
        assert_eq!(
            check_with(&signed, 0, true).map(|o| o.name),
            Ok("ops".into())
        );
        assert_eq!(
            ApiError::from(AuthFailure::BearerRefused).status,
            StatusCode::UNAUTHORIZED
        );
    }

    fn signed_by(signer: &Signer, at: u64, nonce: &str, body: &[u8]) -> HeaderMap {
        let pairs = signer.headers("POST", "/gru/v1/commands", body, at, nonce);
        let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        headers(&pairs)
    }

    #[test]
    fn bearer_credentials_are_missing_wrong_or_right() {
        type Case<'a> = (Option<&'a [u8]>, Result<(), AuthFailure>);
        let cases: &[Case<'_>] = &[
            (None, Err(AuthFailure::Missing)),
            (Some(b""), Err(AuthFailure::Missing)),
            (Some(b"s3cret"), Err(AuthFailure::Missing)),
            (Some(b"Basic czNjcmV0"), Err(AuthFailure::Missing)),
            (Some(b"Bearer"), Err(AuthFailure::Missing)),
            (Some(b"Bearer   "), Err(AuthFailure::Missing)),
            (Some(b"Bearer \xff\xfe"), Err(AuthFailure::Missing)),
            (Some(b"Bearer wrong"), Err(AuthFailure::WrongSecret)),
            (Some(b"Bearer s3cret x"), Err(AuthFailure::WrongSecret)),
            (Some(b"Bearer s3cret"), Ok(())),
            (Some(b"bearer s3cret"), Ok(())),
            (Some(b"BEARER  s3cret "), Ok(())),
        ];
        for (value, expected) in cases {
            let shown = value.map(String::from_utf8_lossy);
            let got = check(&bearer(*value), 0).map(|op| assert_eq!(op.name, BEARER_SIGNER));
            assert_eq!(got, *expected, "Authorization: {shown:?}");
        }
    }

    #[test]
    fn a_token_request_is_checked_by_name_role_expiry_time_signature_and_nonce() {
        let now = 40_000;
        let body = br#"{"name":"stop"}"#;
        let replay = Mutex::new(ReplayGuard::default());
        let verify = |headers: &HeaderMap, body: &[u8]| {
            check(headers, now)?.verify_with(body, &[], Millis(now), &replay)
        };
        let ops = Signer::Token(token("ops", 1));
        let good = signed_by(&ops, now, "n1", body);
        assert_eq!(verify(&good, body), Ok(()));
        assert_eq!(check(&good, now).map(|o| o.name), Ok("ops".to_owned()));
        assert_eq!(
            verify(&good, body),
            Err(AuthFailure::Signature(Rejection::Replayed)),
            "the same request again"
        );
        let cases: Vec<(HeaderMap, &[u8], AuthFailure)> = vec![
            (
                signed_by(&ops, now, "n2", body),
                br#"{"name":"start"}"#,
                AuthFailure::Signature(Rejection::BadSignature),
            ),
            (
                signed_by(&Signer::Token(token("ops", 9)), now, "n3", body),
                body,
                AuthFailure::Signature(Rejection::BadSignature),
            ),
            (
                signed_by(&ops, now - 31_000, "n4", body),
                body,
                AuthFailure::Signature(Rejection::Stale),
            ),
            (
                signed_by(&Signer::Token(token("viewer", 2)), now, "n5", body),
                body,
                AuthFailure::ReadOnly("viewer".into()),
            ),
            (
                signed_by(&Signer::Token(token("gone", 4)), now, "n6", body),
                body,
                AuthFailure::UnknownToken("gone".into()),
            ),
            (
                headers(&[("x-gru-token", b"ops")]),
                body,
                AuthFailure::Signature(Rejection::Unauthenticated),
            ),
        ];
        for (i, (headers, body, failure)) in cases.into_iter().enumerate() {
            assert_eq!(verify(&headers, body), Err(failure), "case {i}");
        }
        let old = signed_by(&Signer::Token(token("old", 3)), 49_999, "n7", body);
        assert!(check(&old, 49_999).is_ok());
        assert_eq!(
            check(&old, 50_000).map(|o| o.name),
            Err(AuthFailure::Expired("old".into(), 50_000))
        );
    }

    #[test]
    fn a_cluster_key_request_holds_under_an_accepted_key_and_names_its_signer() {
        let replay = Mutex::new(ReplayGuard::default());
        let signer = Signer::ClusterKey {
            key: "old".into(),
            on_behalf_of: "ops".into(),
        };
        let request = signed_by(&signer, 1_000, "k1", b"{}");
        let operator = check(&request, 1_000).expect("headers");
        assert_eq!(operator.name, "ops");
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            operator.verify_with(b"{}", &keys(&["new"]), Millis(1_000), &replay),
            Err(AuthFailure::Signature(Rejection::BadSignature))
        );
        assert_eq!(
            operator.verify_with(b"{}", &keys(&["new", "old"]), Millis(1_000), &replay),
            Ok(())
        );
    }

    #[test]
    fn missing_is_401_the_rest_403_or_409() {
        let status = |f: AuthFailure| ApiError::from(f).status;
        assert_eq!(status(AuthFailure::Missing), StatusCode::UNAUTHORIZED);
        assert_eq!(status(AuthFailure::WrongSecret), StatusCode::FORBIDDEN);
        assert_eq!(
            status(AuthFailure::ReadOnly("v".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(AuthFailure::Signature(Rejection::Replayed)),
            StatusCode::CONFLICT
        );
        let text = ApiError::from(AuthFailure::ReadOnly("viewer".into())).message;
        assert!(
            text.contains("read role") && text.contains("viewer"),
            "{text}"
        );
    }
}
