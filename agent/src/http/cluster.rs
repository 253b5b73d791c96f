//! What any agent can say about the whole cluster, the way `gru manage` gathers it: the
//! nodes from their etcd records (this agent's watch-fed copy, `runtime::peers`), and what
//! only each agent knows from that agent's own read routes (`/gru/v1/services`,
//! `/gru/v1/actions`, `/gru/v1/history`, `/gru/v1/node`), fetched in parallel with deadlines. The web
//! console (`ui.rs`) reads this; so can any script.
//!
//! ```text
//!   GET  /gru/v1/cluster                         nodes × their answers (1 s cache)   anyone
//!   POST /gru/v1/cluster/nodes/{node}/commands   a command, passed to that node      operator
//!   GET  /gru/v1/sd                              Prometheus http_sd_configs targets  anyone
//! ```
//!
//! Bounds: at most [`MAX_PARALLEL_NODES`] nodes asked at once, each answer read up to
//! [`MAX_ANSWER_BYTES`] within [`NODE_DEADLINE`]; a node that does not answer is reported
//! with why, never waited on past its deadline. Several consoles polling one agent share
//! one fan-out per [`OVERVIEW_CACHE`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use serde::Serialize;
use serde_json::Value;

use super::ApiState;
use super::auth::Operator;
use super::error::ApiError;
use crate::mape::Millis;

/// Time to connect to a node.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time for one node to answer all the routes asked of it.
pub const NODE_DEADLINE: Duration = Duration::from_secs(2);
/// Nodes asked at once.
pub const MAX_PARALLEL_NODES: usize = 16;
/// Largest answer read from a node's route.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// An overview younger than this is served again instead of asking every node.
pub const OVERVIEW_CACHE: Duration = Duration::from_secs(1);
/// Actions of each node in the overview.
pub const OVERVIEW_ACTIONS: usize = 20;

pub type PeerClient = crate::tls::PeerClient;

/// The client this agent asks other agents with (over TLS when the agent has it).
pub fn peer_client(shared: &crate::runtime::Shared) -> PeerClient {
    shared.peer_client(NODE_CONNECT_TIMEOUT)
}

/// The last overview and when it was made.
pub type OverviewCache = Arc<tokio::sync::Mutex<Option<(Millis, Arc<Overview>)>>>;

/// `GET /gru/v1/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub cluster: String,
    /// The node that gathered this overview.
    pub served_by: String,
    pub at: Millis,
    /// Every configured service with its bounds, from this agent's configuration.
    pub services: BTreeMap<String, ServiceBounds>,
    /// Every node with etcd records, by name.
    pub nodes: Vec<NodeOverview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceBounds {
    pub min_instances: u32,
    pub max_instances: Option<u32>,
    pub image: String,
}

/// One node: its records, and its own answers (or why there are none).
#[derive(Debug, Clone, Serialize)]
pub struct NodeOverview {
    pub node: String,
    pub address: String,
    pub port: u16,
    /// `https` when its agent serves TLS.
    #[serde(skip_serializing_if = "common::config::Scheme::is_http")]
    pub scheme: common::config::Scheme,
    /// Its `active` record: the loop acts (`start agent`) or only watches.
    pub active: bool,
    pub base_services: Vec<String>,
    /// Why its answers are missing, when they are.
    pub error: Option<String>,
    /// `GET /gru/v1/services` of that node.
    pub services: Option<Value>,
    /// `usage` of its `GET /gru/v1/node`: CPU and memory used, free cores.
    pub usage: Option<Value>,
    /// `drain` of its `GET /gru/v1/node`: present while drained (`done` once empty).
    pub drain: Option<Value>,
    /// `GET /gru/v1/actions?limit=20` of that node.
    pub actions: Option<Value>,
    /// The decisions of `GET /gru/v1/history?samples=false` of that node.
    pub decisions: Option<Value>,
}

/// `host:port`, bracketing an IPv6 address.
pub fn authority(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Where a node's agent is: its name (what its certificate must be valid for), scheme
/// and `host:port`.
#[derive(Debug, Clone)]
pub struct NodeAddress {
    pub node: String,
    pub scheme: common::config::Scheme,
    pub authority: String,
}

impl NodeAddress {
    pub fn of(node: &str, peer: &crate::runtime::state::Peer) -> NodeAddress {
        NodeAddress {
            node: node.to_owned(),
            scheme: peer.scheme,
            authority: authority(&peer.address, peer.port),
        }
    }
}

/// One GET of `path` on the agent at `to`, as JSON.
async fn get_json(client: &PeerClient, to: &NodeAddress, path: &str) -> Result<Value, String> {
    let (status, body) = client
        .get(&to.node, to.scheme, &to.authority, path, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{path} answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{path}: not JSON: {e}"))
}

/// Every node's `GET /gru/v1/node`, asked in parallel, each within [`NODE_DEADLINE`]:
/// `(node, answer or why none)`.
pub async fn node_views(
    client: &PeerClient,
    nodes: Vec<NodeAddress>,
) -> Vec<(String, Result<Value, String>)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL_NODES));
    let mut asks = tokio::task::JoinSet::new();
    for to in nodes {
        let client = client.clone();
        let permits = Arc::clone(&permits);
        asks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let answer =
                tokio::time::timeout(NODE_DEADLINE, get_json(&client, &to, "/gru/v1/node"))
                    .await
                    .unwrap_or_else(|_| Err(format!("{} did not answer in time", to.authority)));
            (to.node, answer)
        });
    }
    asks.join_all().await
}

/// A node's four answers (services, actions, decisions, node view), within [`NODE_DEADLINE`].
async fn ask_node(client: PeerClient, mut node: NodeOverview) -> NodeOverview {
    let to = NodeAddress {
        node: node.node.clone(),
        scheme: node.scheme,
        authority: authority(&node.address, node.port),
    };
    let authority = &to.authority;
    let actions_path = format!("/gru/v1/actions?limit={OVERVIEW_ACTIONS}");
    let asked = tokio::time::timeout(NODE_DEADLINE, async {
        tokio::try_join!(
            get_json(&client, &to, "/gru/v1/services"),
            get_json(&client, &to, &actions_path),
            get_json(&client, &to, "/gru/v1/history?samples=false"),
            get_json(&client, &to, "/gru/v1/node"),
        )
    })
    .await;
    match asked {
        Ok(Ok((services, actions, history, view))) => {
            node.services = Some(services);
            node.usage = view.get("usage").cloned();
            node.drain = view.get("drain").cloned().filter(|d| !d.is_null());
            node.actions = Some(actions);
            node.decisions = history.get("decisions").cloned();
        }
        Ok(Err(err)) => node.error = Some(format!("{authority}: {err}")),
        Err(_) => {
            node.error = Some(format!(
                "{authority} did not answer within {} ms",
                NODE_DEADLINE.as_millis()
            ));
        }
    }
    node
}

/// Gathers the overview: the nodes this agent knows, each asked in parallel (at most
/// [`MAX_PARALLEL_NODES`] at once).
async fn gather(state: &ApiState, now: Millis) -> Overview {
    let (nodes, services) = {
        let knowledge = state.shared.knowledge();
        let nodes: Vec<NodeOverview> = knowledge
            .peers
            .nodes
            .iter()
            .map(|(name, peer)| NodeOverview {
                node: name.clone(),
                address: peer.address.clone(),
                port: peer.port,
                scheme: peer.scheme,
                active: peer.active,
                base_services: peer.base_services.clone(),
                error: None,
                services: None,
                usage: None,
                drain: None,
                actions: None,
                decisions: None,
            })
            .collect();
        let services = knowledge
            .config
            .iter()
            .flat_map(|config| config.services.values())
            .map(|descriptor| {
                (
                    descriptor.name.clone(),
                    ServiceBounds {
                        min_instances: descriptor.min_instances,
                        max_instances: descriptor.max_instances,
                        image: descriptor.image.clone(),
                    },
                )
            })
            .collect();
        (nodes, services)
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL_NODES));
    let mut asks = tokio::task::JoinSet::new();
    for (index, node) in nodes.into_iter().enumerate() {
        let client = state.peers.clone();
        let permits = Arc::clone(&permits);
        asks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, ask_node(client, node).await)
        });
    }
    let mut answered: Vec<(usize, NodeOverview)> = asks.join_all().await.into_iter().collect();
    answered.sort_by_key(|(index, _)| *index);
    Overview {
        cluster: state.shared.cluster.clone(),
        served_by: state.shared.node.clone(),
        at: now,
        services,
        nodes: answered.into_iter().map(|(_, node)| node).collect(),
    }
}

/// `GET /gru/v1/cluster`: the cached overview while it is younger than [`OVERVIEW_CACHE`],
/// else a new one (concurrent requests wait for the same one).
pub async fn overview(State(state): State<ApiState>) -> Json<Overview> {
    let mut cache = state.overview.lock().await;
    let now = (state.clock)();
    if let Some((at, overview)) = cache.as_ref()
        && now >= *at
        && now.since(*at) < OVERVIEW_CACHE
    {
        return Json(Overview::clone(overview));
    }
    let fresh = Arc::new(gather(&state, now).await);
    *cache = Some((now, Arc::clone(&fresh)));
    Json(Overview::clone(&fresh))
}

/// `POST /gru/v1/cluster/nodes/{node}/commands`: the operator is checked here first, then
/// the body goes to that node's `POST /gru/v1/commands`, signed with the cluster key on
/// the operator's behalf, and its answer comes back as it is.
pub async fn node_command(
    State(state): State<ApiState>,
    operator: Operator,
    node: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(node) = node?;
    let body = body?;
    operator.verify(&state, &body)?;
    let peer = state.shared.knowledge().peers.nodes.get(&node).cloned();
    let peer = peer.ok_or_else(|| {
        ApiError::not_found(format!(
            "no node {} in the cluster's records",
            super::error::shortened(&node, 120)
        ))
    })?;
    let to = NodeAddress::of(&node, &peer);
    let authority = to.authority.clone();
    // Passed on signed with the cluster key, on behalf of whoever this agent authenticated,
    // so the node records the operator's name and refuses a replay of what it receives.
    let now = (state.clock)();
    let relay = crate::signing::Signer::ClusterKey {
        key: state.shared.signing_key(now),
        on_behalf_of: operator.name.clone(),
    };
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let uri = state
        .peers
        .uri(&node, to.scheme, &authority, "/gru/v1/commands")
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let mut request = Request::post(uri).header("content-type", "application/json");
    for (name, value) in relay.headers("POST", "/gru/v1/commands", &body, now.0, &nonce) {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let unreachable = |why: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("node {node} ({authority}): {why}"),
        )
    };
    let response = tokio::time::timeout(NODE_DEADLINE, async {
        let response = state
            .peers
            .http
            .request(request)
            .await
            .map_err(|e| crate::tls::client_error(&e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| unreachable(format!("no answer within {} ms", NODE_DEADLINE.as_millis())))?
    .map_err(unreachable)?;
    let (status, body) = response;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// One target group of Prometheus' HTTP service discovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The target groups of every node with etcd records (one per node, so each has its
/// `node` label): its agent's `/metrics` at the address it registered.
pub fn target_groups(
    cluster: &str,
    nodes: &BTreeMap<String, crate::runtime::state::Peer>,
) -> Vec<TargetGroup> {
    nodes
        .iter()
        .filter(|(_, peer)| !peer.address.is_empty() && peer.port != 0)
        .map(|(name, peer)| {
            let mut labels = BTreeMap::from([
                ("cluster".to_owned(), cluster.to_owned()),
                ("node".to_owned(), name.clone()),
                ("__metrics_path__".to_owned(), "/metrics".to_owned()),
            ]);
            // Prometheus then scrapes over TLS (its tls_config names the cluster's CA).
            if !peer.scheme.is_http() {
                labels.insert("__scheme__".to_owned(), peer.scheme.to_string());
            }
            TargetGroup {
                targets: vec![authority(&peer.address, peer.port)],
                labels,
            }
        })
        .collect()
}

/// `GET /gru/v1/sd`: Prometheus `http_sd_configs` (a JSON list of target groups).
pub async fn service_discovery(State(state): State<ApiState>) -> Json<Vec<TargetGroup>> {
    let groups = target_groups(&state.shared.cluster, &state.shared.knowledge().peers.nodes);
    Json(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::state::Peer;

    #[test]
    fn every_registered_node_is_one_target_group_with_its_labels() {
        let peer = |address: &str, port| Peer {
            address: address.into(),
            port,
            scheme: Default::default(),
            active: true,
            base_services: vec![],
        };
        let nodes = BTreeMap::from([
            ("n1".to_owned(), peer("10.0.0.1", 8080)),
            ("n2".to_owned(), peer("fd00::2", 8081)),
            ("half".to_owned(), peer("", 0)),
        ]);
        let groups = target_groups("shop", &nodes);
        assert_eq!(groups.len(), 2, "a node without an address is no target");
        assert_eq!(groups[0].targets, vec!["10.0.0.1:8080"]);
        assert_eq!(groups[0].labels["node"], "n1");
        assert_eq!(groups[0].labels["cluster"], "shop");
        assert_eq!(groups[1].targets, vec!["[fd00::2]:8081"]);
        let json = serde_json::to_value(&groups).expect("serializes");
        assert_eq!(json[0]["labels"]["__metrics_path__"], "/metrics");
    }
}
