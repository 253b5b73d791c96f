//! The API's one error shape: a status and `{"error": "<sentence>"}`, whatever went wrong
//! (a bad body, a missing secret, an unknown route, a full command queue).
//!
//! axum's own rejections (a body over the limit, a query that does not parse, a path that is
//! not UTF-8) keep their status and their text but are answered in the same JSON shape, so a
//! client only ever parses one kind of error.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client is told to wait before retrying when the command queue is full.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A failed request, as the client will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra header that tells the client what to do next (`WWW-Authenticate`, `Retry-After`).
    hint: Option<(header::HeaderName, HeaderValue)>,
}

/// What a client sent, as echoed in an error: its first `max_chars` characters, and an
/// ellipsis if there was more. Enough to recognise it, never a flood.
pub fn shortened(text: &str, max_chars: usize) -> String {
    let mut shown: String = text.chars().take(max_chars).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            hint: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 401: no credentials were presented; the client is told which scheme to use.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError {
            hint: Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gru\""),
            )),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    /// 503 with `Retry-After`: the request was fine, the agent cannot take it now.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            hint: Some((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS))),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// One of axum's rejections, with its status and text kept.
    pub fn rejection(status: StatusCode, text: String) -> ApiError {
        ApiError::new(status, text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: &self.message,
        });
        match self.hint {
            Some(hint) => (self.status, [hint], body).into_response(),
            None => (self.status, body).into_response(),
        }
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),* $(,)?) => {
        $(impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> ApiError {
                ApiError::rejection(rejection.status(), rejection.body_text())
            }
        })*
    };
}

from_rejection!(
    axum::extract::rejection::BytesRejection,
    axum::extract::rejection::PathRejection,
    axum::extract::rejection::QueryRejection,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_text_is_shortened_on_character_boundaries() {
        assert_eq!(shortened("abc", 3), "abc");
        assert_eq!(shortened("abcd", 3), "abc…");
        assert_eq!(shortened("ééé", 2), "éé…");
        assert_eq!(shortened("", 0), "");
    }

    #[test]
    fn unauthenticated_names_the_scheme_and_unavailable_says_when_to_retry() {
        let response = ApiError::unauthenticated("no secret").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer realm=\"gru\""))
        );
        let response = ApiError::unavailable("full").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(RETRY_AFTER_SECS))
        );
        let response = ApiError::bad_request("bad").into_response();
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
    }
}
