//! Probing the instances' health checks: one task per check of each running instance whose
//! service declares any, each probing at its own interval with its own timeout, so a slow
//! instance delays neither the loop nor the others. Results go through the pure state
//! machine (`crate::health::CheckState`); its state is written into the knowledge
//! (`Knowledge::health`, and the instance's `InstanceInfo::ready` and `health`), and a
//! change of state wakes the loop (`changed`), which moves the instance's record in or out
//! of discovery, or replaces it, at once rather than at its next tick.
//!
//! HTTP and TCP checks go to the instance's published address (the node's address and the
//! host port of the check's container port), as its clients would; an exec check runs its
//! command in the container through the engine (`Engine::exec`).
//!
//! Invariants: the probes of an instance stop when it is no longer running here, and its
//! health leaves the knowledge with it; when its service's checks changed they start over
//! from the state it had (a ready instance stays ready until the new check says otherwise). A
//! probe never outlives its timeout (an exec's command may, in the container: the engine
//! cannot kill it). One connection per HTTP probe, none kept: a probe tells whether a new
//! client would be served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::config::{CheckKind, HealthCheck, HealthChecks};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::autonomic::now;
use super::state::Shared;
use crate::docker::Engine;
use crate::health::{CheckRole, CheckState, CheckStatus, InstanceHealth, Thresholds};
use crate::mape::Millis;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What the probes of one instance need to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub container_id: String,
    pub service: String,
    pub instance: String,
    /// `host:port` each HTTP or TCP check goes to (its `Port`'s host port, else the
    /// `DiscoveryPort`'s), when that port is published.
    pub addresses: BTreeMap<CheckRole, String>,
    pub started_at: Millis,
    pub checks: HealthChecks,
}

/// The running probes, by container id.
#[derive(Debug)]
pub struct HealthProbes {
    running: BTreeMap<String, (ProbeTarget, Vec<JoinHandle<()>>)>,
    changed: Arc<Notify>,
    http: HttpClient,
}

impl HealthProbes {
    /// Probes that wake `changed` when an instance's health changes state.
    pub fn new(changed: Arc<Notify>) -> HealthProbes {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        HealthProbes {
            running: BTreeMap::new(),
            changed,
            http,
        }
    }

    /// Makes the running probes exactly those of `targets` (the running instances whose
    /// services declare checks): starts the new ones, stops those of instances gone (and
    /// forgets their health), and starts over those whose checks or address changed.
    pub fn follow(&mut self, targets: Vec<ProbeTarget>, engine: &Engine, shared: &Arc<Shared>) {
        let mut wanted: BTreeMap<String, ProbeTarget> = targets
            .into_iter()
            .map(|t| (t.container_id.clone(), t))
            .collect();
        self.running.retain(|id, (target, tasks)| {
            let keep = wanted.get(id) == Some(target) && tasks.iter().all(|t| !t.is_finished());
            if keep {
                wanted.remove(id);
            } else {
                tasks.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        {
            // The health of instances no longer probed goes; that of instances whose
            // probes start over (their checks changed) stays, and their new probes start
            // from it, so a changed check does not take a ready instance out of discovery.
            let mut knowledge = shared.knowledge();
            let running = &self.running;
            knowledge
                .health
                .retain(|id, _| running.contains_key(id) || wanted.contains_key(id));
            for (id, target) in &wanted {
                if let Some(health) = knowledge.health.get_mut(id) {
                    if target.checks.readiness.is_none() {
                        health.readiness = None;
                    }
                    if target.checks.liveness.is_none() {
                        health.liveness = None;
                    }
                }
            }
        }
        for (id, target) in wanted {
            let mut tasks = Vec::new();
            for (role, check) in [
                (CheckRole::Readiness, &target.checks.readiness),
                (CheckRole::Liveness, &target.checks.liveness),
            ] {
                let Some(check) = check.clone() else { continue };
                let Some(kind) = check.kind() else { continue };
                let probe = Probe {
                    role,
                    kind,
                    check,
                    target: target.clone(),
                    engine: engine.clone(),
                    http: self.http.clone(),
                };
                let span = tracing::info_span!("health", service = %target.service, instance = %target.instance, check = role.as_str());
                tasks.push(tokio::spawn(
                    probe
                        .run(shared.clone(), self.changed.clone())
                        .instrument(span),
                ));
            }
            self.running.insert(id, (target, tasks));
        }
    }

    /// Stops every probe.
    pub fn stop_all(&mut self) {
        for (_, (_, tasks)) in std::mem::take(&mut self.running) {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

impl Drop for HealthProbes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One check of one instance.
#[derive(Debug)]
struct Probe {
    role: CheckRole,
    kind: CheckKind,
    check: HealthCheck,
    target: ProbeTarget,
    engine: Engine,
    http: HttpClient,
}

impl Probe {
    /// Probes every interval (the first after the initial delay, counted from the
    /// container's start), forever; the caller aborts it.
    async fn run(self, shared: Arc<Shared>, changed: Arc<Notify>) {
        let thresholds = Thresholds::of(&self.check);
        let has_readiness = self.target.checks.readiness.is_some();
        let mut state = shared
            .knowledge()
            .health
            .get(&self.target.container_id)
            .and_then(|health| health.check(self.role).cloned())
            .unwrap_or_else(|| CheckState::new(now()));
        self.store(&shared, &state, has_readiness);
        let waited = Duration::from_millis(now().0.saturating_sub(self.target.started_at.0));
        tokio::time::sleep(self.check.initial_delay().saturating_sub(waited)).await;
        let mut ticks = tokio::time::interval(self.check.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = self.probe_once().await;
            let failed = result.as_ref().err().cloned();
            if let Some(status) = state.observe(result, thresholds, now()) {
                match status {
                    CheckStatus::Passing => tracing::info!("check passes"),
                    _ => {
                        tracing::warn!(
                            error = failed.as_deref().unwrap_or(""),
                            failures = state.failures,
                            "check fails"
                        )
                    }
                }
                self.store(&shared, &state, has_readiness);
                changed.notify_one();
            } else {
                self.store(&shared, &state, has_readiness);
            }
        }
    }

    /// Writes the check's state into the knowledge, and the instance's readiness with it.
    fn store(&self, shared: &Shared, state: &CheckState, has_readiness: bool) {
        let mut knowledge = shared.knowledge();
        let health = knowledge
            .health
            .entry(self.target.container_id.clone())
            .or_default();
        *health.check_mut(self.role) = Some(state.clone());
        let health = health.clone();
        if let Some(info) = knowledge.instances.get_mut(&self.target.container_id) {
            info.ready = health.ready(has_readiness);
            info.health = Some(health);
        }
    }

    /// One probe, within the check's timeout: `Err` says why it failed.
    async fn probe_once(&self) -> Result<(), String> {
        let timeout = self.check.timeout();
        let probe = async {
            match &self.kind {
                CheckKind::Http(path) => self.http_get(path).await,
                CheckKind::Tcp => self.tcp_connect().await,
                CheckKind::Exec(command) => self.exec(command, timeout).await,
            }
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    fn address(&self) -> Result<&str, String> {
        self.target
            .addresses
            .get(&self.role)
            .map(String::as_str)
            .ok_or_else(|| "the checked port is not published".to_owned())
    }

    async fn http_get(&self, path: &str) -> Result<(), String> {
        let uri: hyper::Uri = format!("http://{}{path}", self.address()?)
            .parse()
            .map_err(|e| format!("bad probe address: {e}"))?;
        let response = self
            .http
            .get(uri)
            .await
            .map_err(|e| format!("GET {path}: {}", error_chain(&e)))?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {path}: HTTP {}", status.as_u16()))
        }
    }

    async fn tcp_connect(&self) -> Result<(), String> {
        let address = self.address()?;
        tokio::net::TcpStream::connect(address)
            .await
            .map(drop)
            .map_err(|e| format!("connect to {address}: {e}"))
    }

    async fn exec(&self, command: &[String], timeout: Duration) -> Result<(), String> {
        let outcome = self
            .engine
            .exec(&self.target.container_id, command, timeout)
            .await
            .map_err(|e| error_chain(&e))?;
        match outcome.exit_code {
            Some(0) => Ok(()),
            code => {
                let code = code.map_or("unknown".to_owned(), |c| c.to_string());
                if outcome.output_tail.is_empty() {
                    Err(format!("exit status {code}"))
                } else {
                    Err(format!("exit status {code}: {}", outcome.output_tail))
                }
            }
        }
    }
}

/// An error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Copies an instance's current health (from `Knowledge::health`) into what the loop
/// builds of it: whether it is ready, and its checks' states.
pub fn health_of(
    health: &BTreeMap<String, InstanceHealth>,
    container_id: &str,
    checks: Option<&HealthChecks>,
) -> (bool, Option<InstanceHealth>) {
    let Some(checks) = checks.filter(|c| !c.is_empty()) else {
        return (true, None);
    };
    let has_readiness = checks.readiness.is_some();
    let current = health
        .get(container_id)
        .cloned()
        .unwrap_or_else(|| InstanceHealth {
            readiness: checks.readiness.as_ref().map(|_| CheckState::new(now())),
            liveness: checks.liveness.as_ref().map(|_| CheckState::new(now())),
        });
    (current.ready(has_readiness), Some(current))
}
