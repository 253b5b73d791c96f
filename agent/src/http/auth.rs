//! The cluster secret on state-changing routes: `Authorization: Bearer <secret>`.
//!
//! A handler that changes anything takes an [`Operator`] as its first argument; axum runs
//! that extractor before it reads the body, so an unauthenticated client gets 401 or 403
//! without the agent parsing what it sent. No credentials (or credentials in another
//! scheme) is 401; a bearer token that is not the secret is 403. The presented value is
//! compared in constant time by `Shared::secret_matches` and never logged or echoed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::ApiState;
use super::error::ApiError;

/// Proof that the request carried the cluster secret.
#[derive(Debug, Clone, Copy)]
pub struct Operator(());

/// Why a request is not allowed to change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not a bearer token: 401.
    Missing,
    /// A bearer token that is not the cluster secret: 403.
    Wrong,
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> ApiError {
        match failure {
            AuthFailure::Missing => ApiError::unauthenticated(
                "this route changes the agent's state: send the cluster secret as \
                 `Authorization: Bearer <secret>`",
            ),
            AuthFailure::Wrong => ApiError::new(
                StatusCode::FORBIDDEN,
                "the presented secret is not the cluster's",
            ),
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

/// Checks the request's credentials with `matches` (the secret comparison).
pub fn authorize(headers: &HeaderMap, matches: impl Fn(&str) -> bool) -> Result<(), AuthFailure> {
    let token = bearer_token(headers).ok_or(AuthFailure::Missing)?;
    if matches(token) {
        Ok(())
    } else {
        Err(AuthFailure::Wrong)
    }
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match authorize(&parts.headers, |token| state.shared.secret_matches(token)) {
            Ok(()) => Ok(Operator(())),
            Err(failure) => {
                // The path says what was attempted; the presented value stays out of logs.
                tracing::debug!(
                    method = %parts.method,
                    path = parts.uri.path(),
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

    fn headers(authorization: Option<&[u8]>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).expect("a header value"),
            );
        }
        headers
    }

    #[test]
    fn credentials_are_missing_wrong_or_right() {
        let secret = |token: &str| token == "s3cret";
        type Case<'a> = (Option<&'a [u8]>, Result<(), AuthFailure>);
        let cases: &[Case<'_>] = &[
            (None, Err(AuthFailure::Missing)),
            (Some(b""), Err(AuthFailure::Missing)),
            (Some(b"s3cret"), Err(AuthFailure::Missing)),
            (Some(b"Basic czNjcmV0"), Err(AuthFailure::Missing)),
            (Some(b"Bearer"), Err(AuthFailure::Missing)),
            (Some(b"Bearer   "), Err(AuthFailure::Missing)),
            (Some(b"Bearer \xff\xfe"), Err(AuthFailure::Missing)),
            (Some(b"Bearer wrong"), Err(AuthFailure::Wrong)),
            (Some(b"Bearer s3cret x"), Err(AuthFailure::Wrong)),
            (Some(b"Bearer s3cret"), Ok(())),
            (Some(b"bearer s3cret"), Ok(())),
            (Some(b"BEARER  s3cret "), Ok(())),
        ];
        for (value, expected) in cases {
            let shown = value.map(String::from_utf8_lossy);
            assert_eq!(
                authorize(&headers(*value), secret),
                *expected,
                "Authorization: {shown:?}"
            );
        }
    }

    #[test]
    fn missing_is_401_and_wrong_is_403() {
        assert_eq!(
            ApiError::from(AuthFailure::Missing).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::from(AuthFailure::Wrong).status,
            StatusCode::FORBIDDEN
        );
    }
}
