//! A shell session: the cluster in use, etcd, the agents' client, and the dispatch of a
//! parsed line to the command that runs it.
//!
//! Every command on a cluster starts from one fresh read of the cluster's tree in etcd
//! ([`Ctx`]): nodes and where their agents listen, services, documents. Commands then ask
//! the agents what only they know (instances, load, decisions) or send them commands,
//! all nodes in parallel.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::auth::OperatorToken;
use common::keys::ClusterKeys;
use gru_agent::runtime::AgentCommand;
use gru_agent::signing::Signer;
use gru_agent::store::Store;
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::agent_client::{AgentClient, AgentError, NodeEndpoint, for_each_node};
use super::cluster_state::{ClusterState, Resolved, cluster_names};
use super::complete::Names;
use super::grammar::{self, Command, ListWhat};
use super::output::{Format, NodeResult, NodeResults, Outcome};
use super::{control, deploy, help, history, inspect, rollout, status};

/// What running a line led to.
#[derive(Debug)]
pub enum Step {
    Done(Outcome),
    Exit,
}

/// The cluster in use.
#[derive(Clone)]
pub struct InUse {
    pub keys: ClusterKeys,
    /// Signs commands to the cluster's agents; never printed (`Debug` redacts its key).
    signer: Signer,
}

impl std::fmt::Debug for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InUse")
            .field("keys", &self.keys)
            .field("signer", &self.signer)
            .finish()
    }
}

#[derive(Debug)]
pub struct Session {
    store: Store,
    /// The operator token commands are signed with (GRU_TOKEN, --token-file); without
    /// one, the cluster key from etcd.
    token: Option<OperatorToken>,
    client: AgentClient,
    in_use: Option<InUse>,
    format: Format,
    /// Shared with the line editor's completer.
    names: Arc<Mutex<Names>>,
}

impl Session {
    pub fn new(store: Store, format: Format) -> Session {
        Session {
            store,
            token: None,
            client: AgentClient::new(),
            in_use: None,
            format,
            names: Arc::default(),
        }
    }

    /// Reaches the agents with `client` (TLS: `gru manage --tls-ca`).
    pub fn with_client(mut self, client: AgentClient) -> Session {
        self.client = client;
        self
    }

    /// Signs the agents' commands with `token` from now on (the next `use`).
    pub fn with_token(mut self, token: Option<OperatorToken>) -> Session {
        self.token = token;
        self
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// `gru(<cluster>)> `, or `gru> ` before `use`.
    pub fn prompt(&self) -> String {
        match &self.in_use {
            Some(in_use) => format!("gru({})> ", in_use.keys.cluster()),
            None => "gru> ".to_owned(),
        }
    }

    pub fn names(&self) -> Arc<Mutex<Names>> {
        self.names.clone()
    }

    /// Parses and runs one line (not blank).
    pub async fn run_line(&mut self, line: &str) -> Step {
        match grammar::parse(line) {
            Ok(Command::Exit) => Step::Exit,
            Ok(command) => Step::Done(self.execute(command).await),
            Err(err) => Step::Done(Outcome::usage(err.to_string())),
        }
    }

    async fn execute(&mut self, command: Command) -> Outcome {
        // Commands about the session itself; every other one works on the cluster in use.
        match command {
            Command::Use { cluster } => return self.use_cluster(&cluster).await,
            Command::Help { topic } => return help::help(topic.as_deref()),
            Command::List(ListWhat::Clusters) => return self.list_clusters().await,
            Command::Status { watch: Some(every) } => return status::watch(self, every).await,
            Command::Exit => return Outcome::ok("", json!({})),
            _ => {}
        }
        let ctx = match self.ctx().await {
            Ok(ctx) => ctx,
            Err(outcome) => return outcome,
        };
        match command {
            Command::List(ListWhat::Nodes) => inspect::list_nodes(&ctx).await,
            Command::List(ListWhat::Services) => inspect::list_services(&ctx).await,
            Command::ShowNode { targets, section } => {
                inspect::show_node(&ctx, &targets, section).await
            }
            Command::ShowService { service } => inspect::show_service(&ctx, &service).await,
            Command::ShowCluster => inspect::show_cluster(&ctx),
            Command::Deploy => deploy::deploy(&ctx).await,
            Command::Undeploy => deploy::undeploy(&ctx).await,
            Command::SetBaseServices { targets, services } => {
                control::set_base_services(&ctx, &targets, &services).await
            }
            Command::SetNodeCpu { targets, bound } => {
                control::set_node_cpu(&ctx, &targets, bound).await
            }
            Command::StartService { service, targets } => {
                control::start_service(&ctx, &service, &targets).await
            }
            Command::StopService { service, targets } => {
                control::stop_service(&ctx, &service, &targets).await
            }
            Command::StartAgent { targets } => control::agents(&ctx, &targets, true).await,
            Command::StopAgent { targets } => control::agents(&ctx, &targets, false).await,
            Command::Drain { targets, drain } => control::drain(&ctx, &targets, drain).await,
            Command::Leave { targets } => control::leave(&ctx, &targets).await,
            Command::RestartAgent { targets } => super::restart::restart(&ctx, &targets).await,
            Command::Update { part } => control::update(&ctx, part).await,
            Command::Status { watch: None } => status::status(&ctx).await,
            Command::Why { node, service } => history::why(&ctx, &node, service.as_deref()).await,
            Command::Events { count } => history::events(&ctx, count).await,
            Command::Rollout { action, service } => rollout::rollout(&ctx, action, &service).await,
            // Answered above, without the cluster.
            Command::Use { .. }
            | Command::Help { .. }
            | Command::List(ListWhat::Clusters)
            | Command::Status { watch: Some(_) }
            | Command::Exit => Outcome::ok("", json!({})),
        }
    }

    /// The cluster in use with its state read afresh, or the outcome to report instead.
    pub async fn ctx(&self) -> Result<Ctx<'_>, Outcome> {
        let Some(in_use) = &self.in_use else {
            return Err(Outcome::failed(
                "no cluster in use: `use <cluster>` first (or start with --cluster)",
            ));
        };
        let state = ClusterState::read(&self.store, &in_use.keys)
            .await
            .map_err(|err| {
                Outcome::failed(format!(
                    "cannot read cluster {}: {}",
                    in_use.keys.cluster(),
                    chain(&err)
                ))
            })?;
        if state.id.is_none() {
            return Err(Outcome::failed(format!(
                "cluster {} no longer exists (its id is gone from etcd)",
                in_use.keys.cluster()
            )));
        }
        // Every command's fresh read also keeps completion current (nodes come and go).
        {
            let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            names.nodes = state.node_names();
            names.services = state.service_names();
        }
        Ok(Ctx {
            keys: &in_use.keys,
            store: &self.store,
            agents: Agents {
                client: self.client.clone(),
                signer: Arc::new(in_use.signer.clone()),
            },
            state,
        })
    }

    /// `use <cluster>`: checks it exists, and that the token is one of its own (or, without
    /// a token, reads its key).
    pub async fn use_cluster(&mut self, cluster: &str) -> Outcome {
        let keys = match ClusterKeys::new(cluster) {
            Ok(keys) => keys,
            Err(err) => return Outcome::usage(err.to_string()),
        };
        if let Err(err) = self.store.cluster_id(&keys).await {
            let mut message = chain(&err);
            if let Ok(entries) = self.store.get_prefix(common::keys::ROOT).await {
                let known = cluster_names(&entries);
                if let Some(near) = grammar::nearest(cluster, known.iter().map(String::as_str)) {
                    message.push_str(&format!("; did you mean {near}?"));
                }
            }
            return Outcome::failed(message);
        }
        let signer = match &self.token {
            Some(token) => {
                if let Ok(None) = self.store.get(&keys.token(&token.name)).await {
                    eprintln!(
                        "warning: cluster {cluster} has no token named {}: its agents will \
                         refuse commands (see `gru token list {cluster}`)",
                        token.name
                    );
                }
                Signer::Token(token.clone())
            }
            None => match self.store.get(&keys.secret()).await {
                Ok(Some(entry)) => {
                    eprintln!(
                        "warning: no operator token (GRU_TOKEN or --token-file): commands are \
                         signed with cluster {cluster}'s key read from etcd and recorded as \
                         `{}`; create a token with `gru token create {cluster} --role operate`",
                        gru_agent::signing::CLUSTER_KEY_SIGNER
                    );
                    Signer::ClusterKey {
                        key: entry.value,
                        on_behalf_of: gru_agent::signing::CLUSTER_KEY_SIGNER.to_owned(),
                    }
                }
                Ok(None) => {
                    return Outcome::failed(format!(
                        "cluster {cluster} has no key in etcd and no operator token was given, so its agents cannot be commanded; recreate it with `gru create {cluster} --force`"
                    ));
                }
                Err(err) => return Outcome::failed(chain(&err)),
            },
        };
        self.in_use = Some(InUse { keys, signer });
        self.refresh_names().await;
        Outcome::ok(
            format!("using cluster {cluster}"),
            json!({ "cluster": cluster }),
        )
    }

    async fn list_clusters(&self) -> Outcome {
        match self.store.get_prefix(common::keys::ROOT).await {
            Ok(entries) => {
                let names = cluster_names(&entries);
                self.names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clusters = names.clone();
                let current = self.in_use.as_ref().map(|u| u.keys.cluster().to_owned());
                let text = if names.is_empty() {
                    "no cluster in etcd (create one with `gru create <cluster>`)".to_owned()
                } else {
                    names
                        .iter()
                        .map(|n| {
                            if Some(n) == current.as_ref() {
                                format!("{n} (in use)")
                            } else {
                                n.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Outcome::ok(text, json!({ "clusters": names, "in_use": current }))
            }
            Err(err) => Outcome::failed(format!("cannot list clusters: {}", chain(&err))),
        }
    }

    /// Reloads every name completion offers (clusters, and the nodes and services of the
    /// cluster in use): at the start and on `use`. Commands on the cluster refresh nodes
    /// and services from the state they read anyway. A failure keeps the old names:
    /// completion is a convenience and must not get in the way.
    pub async fn refresh_names(&self) {
        let mut names = Names::default();
        if let Ok(entries) = self.store.get_prefix(common::keys::ROOT).await {
            names.clusters = cluster_names(&entries);
            if let Some(in_use) = &self.in_use {
                let prefix = in_use.keys.prefix();
                let mine: Vec<_> = entries
                    .into_iter()
                    .filter(|e| e.key.starts_with(&prefix))
                    .collect();
                let state = ClusterState::from_entries(&in_use.keys, &mine);
                names.nodes = state.node_names();
                names.services = state.service_names();
            }
            *self.names.lock().unwrap_or_else(PoisonError::into_inner) = names;
        }
    }
}

/// A command's view of the cluster in use: its state as just read, and the way to its
/// agents.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub keys: &'a ClusterKeys,
    /// For the commands that write etcd themselves (`rollout`).
    pub store: &'a Store,
    pub agents: Agents,
    pub state: ClusterState,
}

impl Ctx<'_> {
    pub fn cluster(&self) -> &str {
        self.keys.cluster()
    }

    /// Every live node, for reads that cover the cluster.
    pub fn all_nodes(&self) -> Resolved {
        self.state
            .resolve(&grammar::Targets::All)
            .unwrap_or_default()
    }

    /// `GET /gru/v1/<path>` on each node of `nodes`, in parallel; nodes whose records do
    /// not say where their agent is come back as failures.
    pub async fn get_each<T>(
        &self,
        nodes: &Resolved,
        path: &str,
    ) -> Vec<(String, Result<T, String>)>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let path = path.to_owned();
        let agents = self.agents.clone();
        let answers = for_each_node(&nodes.endpoints, move |endpoint: NodeEndpoint| {
            let agents = agents.clone();
            let path = path.clone();
            async move { agents.get::<T>(&endpoint, &path).await }
        })
        .await;
        let mut results: Vec<(String, Result<T, String>)> =
            answers.into_iter().map(|a| (a.node, a.result)).collect();
        results.extend(
            nodes
                .broken
                .iter()
                .map(|(n, why)| (n.clone(), Err(why.clone()))),
        );
        results
    }

    /// Runs `task` on each node of `nodes` in parallel (it gets the node's endpoint and a
    /// handle on the agents), and reports each node's result in the order they were named.
    pub async fn on_each<F, Fut>(&self, nodes: &Resolved, task: F) -> NodeResults
    where
        F: Fn(NodeEndpoint, Agents) -> Fut,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let agents = self.agents.clone();
        let answers =
            for_each_node(&nodes.endpoints, |endpoint| task(endpoint, agents.clone())).await;
        let mut results = NodeResults {
            results: answers
                .into_iter()
                .map(|a| NodeResult {
                    node: a.node,
                    result: a.result,
                    elapsed: Some(a.elapsed),
                })
                .collect(),
        };
        for (node, why) in &nodes.broken {
            results.push(node, Err(why.clone()));
        }
        results
    }
}

/// How long a node's sequence of commands may keep retrying a full command queue.
const QUEUE_FULL_BUDGET: Duration = Duration::from_secs(30);
/// Pause before sending again to an agent whose queue was full (its `Retry-After`).
const QUEUE_FULL_PAUSE: Duration = Duration::from_secs(1);

/// The agents of the cluster in use: the HTTP client and the signer. Cheap to clone into
/// the tasks that talk to several nodes at once.
#[derive(Clone, Debug)]
pub struct Agents {
    client: AgentClient,
    signer: Arc<Signer>,
}

impl Agents {
    /// `GET /gru/v1/<path>`, the error as a sentence.
    pub async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &NodeEndpoint,
        path: &str,
    ) -> Result<T, String> {
        self.client
            .get::<T>(endpoint, path)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `commands` to one agent, in order (its loop takes them in that order). A full
    /// queue (503) is tried again after a pause, for at most [`QUEUE_FULL_BUDGET`].
    pub async fn send(
        &self,
        endpoint: &NodeEndpoint,
        commands: &[AgentCommand],
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        for command in commands {
            loop {
                match self.client.command(endpoint, &self.signer, command).await {
                    Ok(()) => break,
                    Err(AgentError::Refused { status, .. })
                        if status == StatusCode::SERVICE_UNAVAILABLE
                            && started.elapsed() < QUEUE_FULL_BUDGET =>
                    {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err(err) => return Err(err.to_string()),
                }
            }
        }
        Ok(())
    }
}

/// An error and its causes on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let signer = Signer::ClusterKey {
            key: "0123abcd-the-secret".into(),
            on_behalf_of: "cluster-key".into(),
        };
        let in_use = InUse {
            keys: ClusterKeys::new("shop").expect("name"),
            signer: signer.clone(),
        };
        let agents = Agents {
            client: AgentClient::new(),
            signer: Arc::new(signer),
        };
        for shown in [format!("{in_use:?}"), format!("{agents:?}")] {
            assert!(!shown.contains("0123abcd"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let token = Signer::Token(OperatorToken {
            name: "ops".into(),
            seed: [0xab; 32],
        });
        let shown = format!("{token:?}");
        assert!(!shown.contains("abab") && shown.contains("ops"), "{shown}");
        {}
    }

    #[test]
    fn causes_are_chained_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner failed")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner failed")]
        struct Inner;
        assert_eq!(chain(&Outer(Inner)), "outer: inner failed");
    }
}
