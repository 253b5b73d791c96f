//! The handlers: each takes what it needs from the request, holds the knowledge's lock only
//! while it copies or changes a few maps (no `.await` under it), and answers JSON.
//!
//! Extractors that can fail are taken as `Result`s so that every failure is answered in the
//! API's one error shape. Extraction order matters: [`Operator`] comes first on the
//! state-changing routes, so the secret is checked before the body is read.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;

use super::ApiState;
use super::auth::Operator;
use super::error::{ApiError, shortened};
use super::gru_command;
use super::push;
use super::views::{self, Health, HealthQuery, HistoryQuery};
use crate::mape::Millis;
use crate::runtime::AgentCommand;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Characters of a request's path echoed in a 404 or 405.
const SHOWN_PATH_CHARS: usize = 120;

/// Health checkers must always get their answer: a query that does not parse is a
/// request without a challenge.
/// `GET /healthz[?challenge=C]`. With TLS on, a challenge is answered with a proof only
/// for a peer: a client whose certificate is valid for a registered node's name.
pub async fn healthz(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<crate::tls::PeerCertificate>>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> Json<Health> {
    let challenge = query.ok().and_then(|Query(q)| q.challenge);
    let challenge = challenge.filter(|_| match state.shared.tls() {
        None => true,
        Some(_) => peer
            .and_then(|axum::Extension(peer)| peer.0)
            .is_some_and(|cert| {
                let knowledge = state.shared.knowledge();
                knowledge
                    .peers
                    .nodes
                    .keys()
                    .any(|node| crate::tls::cert_is_for_node(&cert, node))
            }),
    });
    Json(Health::of(&state.shared, challenge.as_deref()))
}

pub async fn node(State(state): State<ApiState>) -> Json<views::NodeView> {
    let view = views::node(&state.shared, &state.shared.knowledge());
    Json(view)
}

pub async fn services(State(state): State<ApiState>) -> Json<views::ServicesView> {
    let view = views::services(&state.shared.knowledge());
    Json(view)
}

pub async fn stats(State(state): State<ApiState>) -> Json<views::StatsView> {
    let now = (state.clock)();
    let view = views::stats(&mut state.shared.knowledge(), now);
    Json(view)
}

/// A path parameter, or the API's 400 when it does not parse.
fn one_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    Ok(path?.0)
}

pub async fn service_stats(
    State(state): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<views::ServiceStatsView> {
    let name = one_param(name)?;
    let now = (state.clock)();
    views::service_stats_of(&mut state.shared.knowledge(), &name, now)
        .map(Json)
        .ok_or_else(|| unknown_service(&name))
}

pub async fn instance_stats(State(state): State<ApiState>) -> Json<views::InstancesStatsView> {
    let now = (state.clock)();
    Json(views::instance_stats(&mut state.shared.knowledge(), now))
}

pub async fn one_instance_stats(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<views::OneInstanceStatsView> {
    let id = one_param(id)?;
    let now = (state.clock)();
    let found = views::instance_stats_of(&mut state.shared.knowledge(), &id, now);
    let (container, stats) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no instance {} on this node (give a container id, a prefix of at least {} \
             characters of one, or an instance id)",
            shortened(&id, SHOWN_PATH_CHARS),
            views::MIN_ID_PREFIX
        ))
    })?;
    Ok(Json(views::OneInstanceStatsView {
        at: now,
        id: container,
        stats,
    }))
}

pub async fn system_stats(State(state): State<ApiState>) -> Json<views::SystemStatsView> {
    let now = (state.clock)();
    Json(views::system_stats(&mut state.shared.knowledge(), now))
}

pub async fn service_analytics(
    State(state): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<views::ServiceAnalyticsView> {
    let name = one_param(name)?;
    views::service_analytics_of(&state.shared.knowledge(), &name)
        .map(Json)
        .ok_or_else(|| unknown_service(&name))
}

pub async fn system_analytics(State(state): State<ApiState>) -> Json<views::SystemAnalyticsView> {
    let now = (state.clock)();
    Json(views::system_analytics(&mut state.shared.knowledge(), now))
}

fn unknown_service(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "this agent knows no service {}",
        shortened(name, SHOWN_PATH_CHARS)
    ))
}

pub async fn analytics(State(state): State<ApiState>) -> Json<views::AnalyticsView> {
    let view = views::analytics(&state.shared.knowledge());
    Json(view)
}

pub async fn policies(State(state): State<ApiState>) -> Json<views::PoliciesView> {
    let view = views::policies(&state.shared.knowledge());
    Json(view)
}

pub async fn decisions(
    State(state): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<views::DecisionsView> {
    let Query(query) = query?;
    let view = views::decisions(&state.shared.knowledge(), query);
    Ok(Json(view))
}

pub async fn actions(
    State(state): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<views::ActionsView> {
    let Query(query) = query?;
    let view = views::actions(&state.shared.knowledge(), query);
    Ok(Json(view))
}

pub async fn shared_summary(State(state): State<ApiState>) -> Json<views::SharedView> {
    let now = (state.clock)();
    let view = views::shared_summary(&state.shared, &mut state.shared.knowledge(), now);
    Json(view)
}

/// `?since=MS&samples=false` of `GET /gru/v1/history`.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct HistoryRange {
    /// Only what is newer than this (milliseconds since the epoch).
    pub since: Option<u64>,
    /// `false`: the decisions only (what the cluster overview asks every node for).
    pub samples: Option<bool>,
}

pub async fn history(
    State(state): State<ApiState>,
    query: Result<Query<HistoryRange>, QueryRejection>,
) -> ApiResult<crate::runtime::history::HistoryView> {
    let Query(range) = query?;
    let mut view = state
        .shared
        .knowledge()
        .history
        .since(range.since.map(Millis));
    if range.samples == Some(false) {
        view.samples.clear();
    }
    Ok(Json(view))
}

/// The answer to an accepted push.
#[derive(Debug, Serialize)]
pub struct Recorded {
    pub service: String,
    pub metric: String,
    pub value: f64,
    pub at: Millis,
}

pub async fn push_metric(
    State(state): State<ApiState>,
    operator: Operator,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Recorded> {
    let body = body?;
    operator.verify(&state, &body)?;
    let Path((service, metric)) = path?;
    push::check_service_name(&service)?;
    push::check_metric_name(&metric)?;
    let value = push::parse_value(&body)?;
    let at = (state.clock)();
    push::record(&mut state.shared.knowledge(), &service, &metric, value, at)?;
    state.shared.fresh_metrics.notify_one();
    tracing::trace!(%service, %metric, value, "pushed metric recorded");
    Ok(Json(Recorded {
        service,
        metric,
        value,
        at,
    }))
}

/// The answer to an accepted command.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: AgentCommand,
}

pub async fn command(
    State(state): State<ApiState>,
    operator: Operator,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = body?;
    operator.verify(&state, &body)?;
    let not_a_command =
        |err: String| ApiError::bad_request(format!("the body is not a command: {err}"));
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| not_a_command(err.to_string()))?;
    let command: AgentCommand = if gru_command::is_gru_form(&value) {
        gru_command::translate(&value, &state.shared.cluster).map_err(not_a_command)?
    } else {
        serde_json::from_value(value).map_err(|err| not_a_command(err.to_string()))?
    };
    let named: &[String] = match &command {
        AgentCommand::StartService { service } | AgentCommand::StopService { service } => {
            std::slice::from_ref(service)
        }
        AgentCommand::SetBaseServices { services } => services,
        AgentCommand::SetNodeCpu { cpumin, cpumax } => {
            for bound in [cpumin, cpumax].into_iter().flatten() {
                gru_command::check_cpu_bound(*bound).map_err(not_a_command)?;
            }
            &[]
        }
        AgentCommand::Start
        | AgentCommand::Stop
        | AgentCommand::Update
        | AgentCommand::Drain
        | AgentCommand::Undrain
        | AgentCommand::Leave
        | AgentCommand::Restart => &[],
    };
    if command == AgentCommand::Leave
        && !state
            .shared
            .knowledge()
            .drain
            .as_ref()
            .is_some_and(|d| d.done)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::runtime::autonomic::not_drained(&state.shared.node),
        ));
    }
    let adds_instances = match &command {
        AgentCommand::StartService { .. } => true,
        AgentCommand::SetBaseServices { services } => !services.is_empty(),
        _ => false,
    };
    if adds_instances && state.shared.knowledge().drain.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::runtime::autonomic::drained_refusal(&state.shared.node),
        ));
    }
    for service in named {
        push::check_service_name(service)?;
        push::check_service_known(&state.shared.knowledge(), service)?;
    }
    match state.commands.try_send(command.clone()) {
        Ok(()) => {
            tracing::info!(?command, by = %operator.name, "command accepted");
            let at = (state.clock)();
            state
                .shared
                .knowledge()
                .record_action(command_record(&command, &operator.name, at));
            Ok((StatusCode::ACCEPTED, Json(Accepted { accepted: command })))
        }
        Err(TrySendError::Full(_)) => Err(ApiError::unavailable(format!(
            "the agent already has {} commands waiting; retry shortly",
            state.commands.max_capacity()
        ))),
        Err(TrySendError::Closed(_)) => Err(ApiError::unavailable(
            "the agent's loop is not taking commands (it is shutting down or has stopped)",
        )),
    }
}

/// An accepted command as `events` shows it: `command <name>`, the service it names, and
/// who sent it (the token's name, or how it was authenticated).
fn command_record(command: &AgentCommand, by: &str, at: Millis) -> crate::runtime::ActionRecord {
    let value = serde_json::to_value(command).unwrap_or_default();
    let name = value["name"].as_str().unwrap_or("command").to_owned();
    let service = match command {
        AgentCommand::StartService { service } | AgentCommand::StopService { service } => {
            service.clone()
        }
        AgentCommand::SetBaseServices { services } => services.join(","),
        _ => "-".to_owned(),
    };
    crate::runtime::ActionRecord {
        at,
        action: format!("command {name}"),
        service,
        instance: None,
        result: "accepted".to_owned(),
        reason: Some(format!("by {by}")),
    }
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}",
        shortened(uri.path(), SHOWN_PATH_CHARS)
    ))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}",
            shortened(uri.path(), SHOWN_PATH_CHARS)
        ),
    )
}
