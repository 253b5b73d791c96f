//! The agent's HTTP API: Gru's routes under `/gru/v1`, answering JSON.
//!
//! ```text
//!   GET  /healthz[?challenge=C]                status, cluster, node, version      anyone
//!                                              (+ proof of the secret for C)
//!   GET  /metrics                              Prometheus text (crate::telemetry)  anyone
//!   GET  /gru/v1/node                          identity, active, config, counts    anyone
//!   GET  /gru/v1/services                      instances here, min/max             anyone
//!   GET  /gru/v1/stats[/services]              metric means, pushed means          anyone
//!   GET  /gru/v1/stats/services/{name}         one service's means: 200, 404       anyone
//!   GET  /gru/v1/stats/instances[/{id}]        each instance's own means           anyone
//!   GET  /gru/v1/stats/system                  base metrics over the whole node    anyone
//!   GET  /gru/v1/analytics[/services]          last analytic values                anyone
//!   GET  /gru/v1/analytics/services/{name}     one service's analytics: 200, 404   anyone
//!   GET  /gru/v1/analytics/system              the node's base metrics in [0, 1]   anyone
//!   GET  /gru/v1/policies                      newest decision's weights           anyone
//!   GET  /gru/v1/decisions?limit=N             decision history, newest first      anyone
//!   GET  /gru/v1/actions?limit=N               action history, newest first        anyone
//!   GET  /gru/v1/shared                        the summary friends would get       anyone
//!   GET  /gru/v1/history?since=MS&samples=B    15 min of samples and decisions     anyone
//!   GET  /gru/v1/cluster                       every node's instances, decisions   anyone
//!   GET  /gru/v1/sd                            Prometheus http_sd_configs targets  anyone
//!   POST /gru/v1/cluster/nodes/{node}/commands a command for that node             operator
//!   GET  /ui                                   the web console (ui.rs)             anyone
//!   POST /gru/v1/stats/user/{service}/{metric} push a value: 200, 400, 404, 429    operator
//!   POST /gru/v1/gossip                        a friend's view; answers with ours    HMAC
//!   GET  /gru/v1/gossip                        peers, cluster view, gossip counters
//!   POST /gru/v1/commands                      an AgentCommand, or Gru's           operator
//!                                              {Name, Target, Object}: 202, 400, 404, 503
//! ```
//!
//! The sub-routes of `stats` and `analytics` are Gru's, kept so that its users' scripts
//! and dashboards keep working; `gru_command.rs` reads Gru's command body.
//!
//! * `views.rs`: the read routes' JSON shapes, built from the knowledge by plain functions;
//! * `push.rs`: what a valid push is and how it lands in the knowledge (names, caps);
//! * `auth.rs`: who may change state ("operator" above): a request signed with an
//!   operator token of the operate role or with the cluster key (timestamp, nonce,
//!   signature; replays refused), or the deprecated `Authorization: Bearer <secret>`;
//! * `error.rs`: the one error shape, `{"error": "..."}`, also for axum's rejections;
//! * `routes.rs`: the handlers, thin, gluing the above to axum;
//! * `cluster.rs`: the whole cluster as any agent sees it (the nodes from etcd, each
//!   node's own read routes), commands passed on to a node, Prometheus service discovery;
//! * `ui.rs`: the web console, embedded in the binary.
//!
//! Reads need no credentials: they show what the agent would tell any friend, and health
//! checks and dashboards should not hold the cluster's key. Anything that changes the
//! agent's state requires an operator, whose headers are checked before the body is read
//! and whose signature once it is. Bodies are capped at
//! [`MAX_BODY_BYTES`] (413 beyond); unknown routes are 404 and wrong methods 405, in the
//! same JSON shape. No handler unwraps, indexes or does arithmetic that could panic on
//! what a client sends, and none waits: a full command queue is 503 with `Retry-After`.

mod auth;
mod cluster;
mod error;
mod gossip;
mod gru_command;
mod push;
mod routes;
mod ui;
mod views;

pub use cluster::authority;
/// What the loop asks other agents with (`Nodes.IdleHeadroom`).
pub(crate) use cluster::{NodeAddress, PeerClient, node_views, peer_client};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::mape::Millis;
use crate::runtime::{AgentCommand, Shared};

pub use push::{MAX_METRIC_NAME_LEN, MAX_PUSHED_METRICS_PER_SERVICE, MAX_PUSHED_SERVICES};
pub use views::{DEFAULT_HISTORY_LIMIT, Health, MAX_HISTORY_LIMIT};

/// Where Gru's routes live.
pub const API_PREFIX: &str = "/gru/v1";
/// Largest request body accepted; a longer one is refused with 413 as soon as the limit is
/// passed, without reading the rest.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares: the agent's knowledge, the way to its loop, and its clock.
#[derive(Debug, Clone)]
struct ApiState {
    shared: Arc<Shared>,
    /// Bounded: a full queue is answered 503, never waited on.
    commands: mpsc::Sender<AgentCommand>,
    /// The wall clock in the daemon, a fixed one in tests; read once per request.
    clock: fn() -> Millis,
    /// Permits to read a gossip body (see `gossip::receive`).
    gossip_bodies: Arc<tokio::sync::Semaphore>,
    /// How this agent asks other agents (`cluster.rs`).
    peers: cluster::PeerClient,
    /// The latest cluster overview (`cluster::overview`).
    overview: cluster::OverviewCache,
    /// Nonces of signed operator requests (`auth.rs`).
    operator_replay: auth::OperatorReplay,
}

/// The API over `shared`. Commands go to the loop through `commands`; `clock` dates pushed
/// samples and the reading of windows.
pub fn router(
    shared: Arc<Shared>,
    commands: mpsc::Sender<AgentCommand>,
    clock: fn() -> Millis,
) -> Router {
    let peers = cluster::peer_client(&shared);
    let state = ApiState {
        shared,
        commands,
        clock,
        gossip_bodies: Arc::new(tokio::sync::Semaphore::new(
            crate::gossip::wire::MAX_CONCURRENT_BODIES,
        )),
        peers,
        overview: cluster::OverviewCache::default(),
        operator_replay: auth::OperatorReplay::default(),
    };
    let api = Router::new()
        .route("/node", get(routes::node))
        .route("/services", get(routes::services))
        .route("/stats", get(routes::stats))
        .route("/stats/services", get(routes::stats))
        .route("/stats/services/{name}", get(routes::service_stats))
        .route("/stats/instances", get(routes::instance_stats))
        .route("/stats/instances/{id}", get(routes::one_instance_stats))
        .route("/stats/system", get(routes::system_stats))
        .route("/stats/user/{service}/{metric}", post(routes::push_metric))
        .route("/analytics", get(routes::analytics))
        .route("/analytics/services", get(routes::analytics))
        .route("/analytics/services/{name}", get(routes::service_analytics))
        .route("/analytics/system", get(routes::system_analytics))
        .route("/policies", get(routes::policies))
        .route("/decisions", get(routes::decisions))
        .route("/actions", get(routes::actions))
        .route("/shared", get(routes::shared_summary))
        .route("/history", get(routes::history))
        .route("/cluster", get(cluster::overview))
        .route(
            "/cluster/nodes/{node}/commands",
            post(cluster::node_command),
        )
        .route("/sd", get(cluster::service_discovery))
        .route("/commands", post(routes::command))
        .route(
            "/gossip",
            post(gossip::receive)
                .layer(DefaultBodyLimit::max(
                    crate::gossip::wire::MAX_MESSAGE_BYTES,
                ))
                .get(gossip::overview),
        );
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(prometheus_metrics))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .nest(API_PREFIX, api)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `GET /metrics`: the agent's counters in Prometheus' text format.
async fn prometheus_metrics(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Response {
    crate::telemetry::metrics_response(&state.shared)
}

/// One debug line per request: method, path and status (never headers, which may hold the
/// secret).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), "http request");
    response
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
