//! Signed operator requests: what `gru manage` (or any client) sends on a state-changing
//! route, and how an agent checks it. Pure: no clock, no randomness, no I/O (the caller
//! passes the time and the nonce).
//!
//! A request is signed over [`canonical`]: the method, the path, a millisecond timestamp, a
//! random nonce and the SHA-256 of the body, so a signature cannot be moved to another
//! route, another body or another moment. Two signers exist:
//!
//! * an operator token ([`Signer::Token`]): an Ed25519 signature, checked against the
//!   public key in the token's record (`common::auth::TokenRecord`), header
//!   `x-gru-token: <name>`;
//! * the cluster key ([`Signer::ClusterKey`]): an HMAC-SHA256, header
//!   `x-gru-cluster-key: <on whose behalf>`. Agents use it to pass on a command an
//!   operator's token authorised (`POST /gru/v1/cluster/nodes/{node}/commands`), and
//!   operators holding etcd credentials may use it when they have no token.
//!
//! Both carry `x-gru-timestamp`, `x-gru-nonce` and `x-gru-signature`, the gossip wire's
//! headers, and the agent applies the gossip wire's freshness window and replay memory
//! (`crate::gossip::wire`).

use common::auth::OperatorToken;
use hmac::Mac;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

pub use crate::gossip::wire::{HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// Names the token that signed the request.
pub const HEADER_TOKEN: &str = "x-gru-token";
/// Says the request is signed with the cluster key, and on whose behalf.
pub const HEADER_CLUSTER_KEY: &str = "x-gru-cluster-key";
/// What `x-gru-cluster-key` says when an operator signs with the key itself.
pub const CLUSTER_KEY_SIGNER: &str = "cluster-key";

/// The bytes a signature covers: `who` is the value of `x-gru-token` or
/// `x-gru-cluster-key`, so the name recorded for a request cannot be changed on the way.
pub fn canonical(
    method: &str,
    path: &str,
    who: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("gru-request\n{method}\n{path}\n{who}\n{timestamp}\n{nonce}\n{body_hash}\n")
}

/// The token's key pair; a seed is any 32 bytes, so this cannot fail for a parsed token.
fn key_pair(token: &OperatorToken) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&token.seed)
        .unwrap_or_else(|_| unreachable!("any 32-byte seed is an Ed25519 key"))
}

/// The public key of a token, in hex: what its etcd record holds.
pub fn public_key(token: &OperatorToken) -> String {
    hex::encode(key_pair(token).public_key().as_ref())
}

/// Whether `signature` (hex) is the token's (public key in hex) over `message`.
pub fn token_signature_matches(public_key: &str, message: &str, signature: &str) -> bool {
    let (Ok(key), Ok(signature)) = (hex::decode(public_key), hex::decode(signature)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

/// Whether `signature` (hex) is an HMAC of `message` under one of `keys`.
pub fn cluster_key_signature_matches(keys: &[String], message: &str, signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    keys.iter().any(|key| {
        crate::gossip::wire::keyed_mac(key, &[message])
            .verify_slice(&signature)
            .is_ok()
    })
}

/// Who signs a client's requests.
#[derive(Clone)]
pub enum Signer {
    Token(OperatorToken),
    /// The cluster key, and the name recorded for the request.
    ClusterKey {
        key: String,
        on_behalf_of: String,
    },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Token(token) => write!(f, "Signer::Token({})", token.name),
            Signer::ClusterKey { on_behalf_of, .. } => {
                write!(f, "Signer::ClusterKey(<redacted>, for {on_behalf_of})")
            }
        }
    }
}

impl Signer {
    /// The name the agents record for this signer's requests.
    pub fn name(&self) -> &str {
        match self {
            Signer::Token(token) => &token.name,
            Signer::ClusterKey { on_behalf_of, .. } => on_behalf_of,
        }
    }

    /// The headers that sign a request of `method` to `path` with `body`, at `now_ms`
    /// with `nonce` (fresh for every request: a nonce is accepted once).
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let timestamp = now_ms.to_string();
        let message = canonical(method, path, self.name(), &timestamp, nonce, body);
        let (who, signature) = match self {
            Signer::Token(token) => (
                (HEADER_TOKEN, token.name.clone()),
                hex::encode(key_pair(token).sign(message.as_bytes()).as_ref()),
            ),
            Signer::ClusterKey { key, on_behalf_of } => (
                (HEADER_CLUSTER_KEY, on_behalf_of.clone()),
                hex::encode(
                    crate::gossip::wire::keyed_mac(key, &[&message])
                        .finalize()
                        .into_bytes(),
                ),
            ),
        };
        vec![
            who,
            (HEADER_TIMESTAMP, timestamp),
            (HEADER_NONCE, nonce.to_owned()),
            (HEADER_SIGNATURE, signature),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> OperatorToken {
        OperatorToken {
            name: "ops".into(),
            seed: [9; 32],
        }
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn a_token_signature_holds_for_its_request_only() {
        let headers = Signer::Token(token()).headers("POST", "/gru/v1/commands", b"{}", 5, "n1");
        assert_eq!(header(&headers, HEADER_TOKEN), "ops");
        let signature = header(&headers, HEADER_SIGNATURE);
        let key = public_key(&token());
        let signed = canonical("POST", "/gru/v1/commands", "ops", "5", "n1", b"{}");
        assert!(token_signature_matches(&key, &signed, signature));
        for other in [
            canonical("POST", "/gru/v1/stats/user/a/b", "ops", "5", "n1", b"{}"),
            canonical("POST", "/gru/v1/commands", "admin", "5", "n1", b"{}"),
            canonical("POST", "/gru/v1/commands", "ops", "6", "n1", b"{}"),
            canonical("POST", "/gru/v1/commands", "ops", "5", "n2", b"{}"),
            canonical("POST", "/gru/v1/commands", "ops", "5", "n1", b"{ }"),
        ] {
            assert!(!token_signature_matches(&key, &other, signature), "{other}");
        }
        let someone_else = OperatorToken {
            name: "ops".into(),
            seed: [8; 32],
        };
        assert!(!token_signature_matches(
            &public_key(&someone_else),
            &signed,
            signature
        ));
        assert!(!token_signature_matches(&key, &signed, "zz"));
    }

    #[test]
    fn a_cluster_key_signature_holds_under_any_accepted_key() {
        let signer = Signer::ClusterKey {
            key: "old".into(),
            on_behalf_of: "ops".into(),
        };
        let headers = signer.headers("POST", "/p", b"x", 1, "n");
        assert_eq!(header(&headers, HEADER_CLUSTER_KEY), "ops");
        let signature = header(&headers, HEADER_SIGNATURE);
        let signed = canonical("POST", "/p", "ops", "1", "n", b"x");
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(cluster_key_signature_matches(
            &keys(&["new", "old"]),
            &signed,
            signature
        ));
        assert!(!cluster_key_signature_matches(
            &keys(&["new"]),
            &signed,
            signature
        ));
        assert!(!format!("{signer:?}").contains("old"));
    }
}
