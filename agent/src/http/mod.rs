//! The agent's HTTP API. For now: `GET /healthz`, which anyone may read. State-changing
//! routes (which will require the cluster secret) arrive with the MAPE-K loop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `/healthz` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub cluster: String,
    pub node: String,
    pub version: &'static str,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(Arc::new(health))
}

async fn healthz(State(health): State<Arc<Health>>) -> Json<Health> {
    Json((*health).clone())
}

/// Serves `router` on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// The address actually bound (useful with port 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
