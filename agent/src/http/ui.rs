//! The web console at `/ui`: one page, its script and its style sheet, written by hand
//! (no build step, no Node.js toolchain) and embedded in the binary with `include_str!`,
//! so every agent serves it and a browser without internet access shows it.
//!
//! The page only reads this agent's JSON routes: `GET /gru/v1/cluster` (the nodes, their
//! instances, decisions and actions, gathered from every agent), `GET /gru/v1/history`
//! (this agent's 15 minutes of samples, for the charts), and sends operators' commands
//! through `POST /gru/v1/cluster/nodes/{node}/commands` with the cluster secret the
//! operator types in (kept in the tab's session storage only). It polls every 2 s.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Assets change only with the binary; a short cache keeps a rolling upgrade visible.
const CACHE_CONTROL: &str = "no-cache";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, CACHE_CONTROL),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui` and `GET /ui/`.
pub async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    // The page loads nothing from elsewhere: say so, so that nothing else can be injected.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        ),
    );
    response
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
