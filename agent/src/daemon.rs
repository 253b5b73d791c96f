//! The agent process that `gru join` runs in the foreground.
//!
//! Start-up is ordered so that nothing is announced before it can be served: settings are
//! checked, etcd and the Docker engine are reached, the HTTP port is bound, and only then
//! is the node registered. Shutdown is one cancellation token: the HTTP server drains, the
//! keep-alive stops, and the lease is revoked so the node's keys vanish at once.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::config::{AgentConfig, NodeConfig, NodeConstraints, NodeResources, parse_agent_config};
use common::keys::{ClusterKeys, InvalidName, check_name};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::docker::{self, DockerError};
use crate::http;
use crate::mape::WindowSettings;
use crate::membership::{Membership, NodeRecords};
use crate::runtime::autonomic::now;
use crate::runtime::{AgentCommand, Autonomic, AutonomicParts, COMMAND_QUEUE_LEN, Shared};
use crate::store::{EtcdSettings, Store, StoreError, WatchEvent};

/// Port of the agent's HTTP API when `--port` is not given.
pub const DEFAULT_AGENT_PORT: u16 = 8080;
/// How long the HTTP server may take to finish in-flight requests at shutdown.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Fault injection, for tests only: set to `1`, the agent never asks the nodes in doubt
/// before a start (`JoinSettings::ask_nodes_in_doubt` false), so no start is withheld for
/// a node whose records etcd lost while it runs. It exists so that a test can show that
/// its check of the withheld repair fails without the check. The agent warns at start-up
/// while it is set; never set it on a real cluster.
pub const NO_WITHHOLD_VAR: &str = "GRU_TEST_NO_WITHHOLD";

/// Everything `gru join` needs, already validated by the CLI.
#[derive(Debug)]
pub struct JoinSettings {
    pub cluster: String,
    pub node: String,
    /// Address other agents and operators use to reach this agent.
    pub address: String,
    /// Address the HTTP API binds to (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Host address the instances' published ports bind to.
    pub publish_ip: IpAddr,
    /// Start the autonomic loop at once instead of waiting for a `start` command.
    pub start: bool,
    /// Refuse the deprecated bearer secret on state-changing routes (`gru join --signed-only`).
    pub signed_only: bool,
    /// This node's Docker config.json for pulls (`gru join --registry-auth-file`); wins over
    /// the configuration's `Docker.RegistryAuthFile`.
    pub registry_auth_file: Option<std::path::PathBuf>,
    pub etcd: EtcdSettings,
    /// Before a start that the discovery count calls for, ask the nodes whose records
    /// vanished whether they still run (`runtime::autonomic::withheld`). Always true but
    /// under the test switch [`NO_WITHHOLD_VAR`].
    pub ask_nodes_in_doubt: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP API stopped")]
    Http(#[source] std::io::Error),
}

/// Reads the cluster's agent configuration from etcd. A missing document means defaults; an
/// invalid one is reported once and replaced by defaults (there is no last good one yet).
pub async fn load_agent_config(
    store: &Store,
    keys: &ClusterKeys,
) -> Result<AgentConfig, StoreError> {
    let Some(entry) = store.get(&keys.config()).await? else {
        tracing::warn!(
            cluster = keys.cluster(),
            "no agent configuration pushed yet; using defaults"
        );
        return Ok(AgentConfig::default());
    };
    match parse_agent_config(&entry.key, &entry.value) {
        Ok(config) => Ok(config),
        Err(problems) => {
            for problem in &problems {
                tracing::error!(%problem, "invalid agent configuration in etcd; using defaults");
            }
            Ok(AgentConfig::default())
        }
    }
}

/// Runs the agent until `shutdown` resolves. Returns once the lease is revoked.
pub async fn run(
    settings: JoinSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    check_name("node", &settings.node)?;
    let keys = ClusterKeys::new(&settings.cluster)?;
    let store = Store::connect(&settings.etcd).await?;
    let cluster_id = store.cluster_id(&keys).await?;
    let secret = store
        .get(&keys.secret())
        .await?
        .map(|e| e.value)
        .ok_or_else(|| StoreError::ClusterMissing {
            cluster: settings.cluster.clone(),
        })?;
    let config = load_agent_config(&store, &keys).await?;

    let engine = docker::connect_configured(
        &config.docker.daemon_url,
        &settings.address,
        Duration::from_secs(config.docker.daemon_timeout_secs),
    )
    .await?;
    let resources = engine.resources().await?;

    let listener = TcpListener::bind(settings.bind)
        .await
        .map_err(|source| AgentError::Bind {
            addr: settings.bind,
            source,
        })?;
    let bound = http::local_addr(&listener).unwrap_or(settings.bind);

    let records = NodeRecords {
        config: NodeConfig {
            name: settings.node.clone(),
            address: settings.address.clone(),
            port: bound.port(),
        },
        constraints: NodeConstraints::default(),
        resources: NodeResources {
            total_cpus: resources.cpus,
            total_memory_bytes: resources.memory_bytes,
        },
        active: false,
    };
    let membership = Membership::register(
        store.clone(),
        keys.clone(),
        &settings.node,
        config.discovery.ttl_secs as i64,
        records,
    )
    .await?;
    tracing::info!(
        cluster = %settings.cluster,
        %cluster_id,
        node = %settings.node,
        http = %bound,
        lease = membership.lease_id(),
        ttl_secs = membership.ttl_secs(),
        cpus = resources.cpus,
        memory_bytes = resources.memory_bytes,
        "joined"
    );
    // Machine-readable line for scripts and tests: where the agent listens.
    println!(
        "gru agent {} joined cluster {} (http://{bound})",
        settings.node, settings.cluster
    );

    if !settings.ask_nodes_in_doubt {
        tracing::warn!(
            "{NO_WITHHOLD_VAR}=1 (fault injection for tests): starts are never withheld for \
             nodes whose records etcd lost; do not run a real cluster like this"
        );
    }
    let cancel = CancellationToken::new();
    let shared = Arc::new(Shared::new(
        &settings.cluster,
        &settings.node,
        &settings.address,
        &secret,
        WindowSettings::for_loop_interval(Duration::from_secs(
            config.autonomic.loop_time_interval_secs.max(1),
        )),
    ));
    crate::runtime::credentials::load(&store, &keys, &shared).await?;
    shared.set_signed_only(settings.signed_only);
    // A drain outlives the agent: a restarted agent goes on draining (or stays drained).
    match store.get(&keys.drain(&settings.node)).await {
        Ok(Some(entry)) => {
            match serde_json::from_str::<crate::runtime::DrainRecord>(&entry.value) {
                Ok(record) => {
                    tracing::info!(
                        done = record.done,
                        "this node is drained (undrain node {} to take it back)",
                        settings.node
                    );
                    shared.knowledge().drain = Some(record);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable drain record; the node is not drained")
                }
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read this node's drain record"),
    }
    shared.knowledge().capacity = crate::runtime::usage::NodeCapacity {
        cpus: resources.cpus,
        memory_bytes: resources.memory_bytes,
    };
    let sink = crate::telemetry::start_sink(
        &shared,
        &config.metric,
        crate::telemetry::NodeFacts {
            cpus: resources.cpus,
            memory_bytes: resources.memory_bytes,
        },
        cancel.child_token(),
    );
    let (command_tx, command_rx) = tokio::sync::mpsc::channel::<AgentCommand>(COMMAND_QUEUE_LEN);
    let reload = Arc::new(tokio::sync::Notify::new());
    // Peers first (one read), then a watch keeps them and the configuration current.
    match store.get_prefix(&keys.nodes_prefix()).await {
        Ok(entries) => {
            let mut knowledge = shared.knowledge();
            for entry in entries {
                knowledge
                    .peers
                    .apply(&keys, &entry.key, Some(&entry.value), now());
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the cluster's nodes; peers will come from the watch")
        }
    }
    let mut watch = store.watch_prefix(&keys.prefix(), cancel.child_token());
    let watch_task = {
        let reload = reload.clone();
        let shared = shared.clone();
        let keys = keys.clone();
        let store = store.clone();
        tokio::spawn(async move {
            while let Some(event) = watch.recv().await {
                match event {
                    WatchEvent::Resynced => {
                        // Changes may have been missed: read the peers again, reload.
                        if let Err(err) =
                            crate::runtime::credentials::load(&store, &keys, &shared).await
                        {
                            tracing::warn!(error = %err, "cannot read the cluster key and tokens again");
                        }
                        if let Ok(entries) = store.get_prefix(&keys.nodes_prefix()).await {
                            // Nodes that vanished while the watch was down were lost too.
                            shared.knowledge().peers.resync(
                                &keys,
                                entries.iter().map(|e| (e.key.as_str(), e.value.as_str())),
                                now(),
                            );
                        }
                        reload.notify_one();
                    }
                    WatchEvent::Changed(changes) => {
                        let mut documents_changed = false;
                        {
                            let mut knowledge = shared.knowledge();
                            for (key, value) in &changes {
                                let own_constraints =
                                    keys.parse_node_key(key).is_some_and(|(node, field)| {
                                        node == shared.node
                                            && field == common::keys::NodeField::Constraints
                                    });
                                if crate::runtime::credentials::apply(
                                    &shared,
                                    &keys,
                                    key,
                                    value.as_deref(),
                                ) {
                                    continue;
                                }
                                knowledge.peers.apply(&keys, key, value.as_deref(), now());
                                documents_changed |= own_constraints
                                    || *key == keys.config()
                                    || *key == keys.policy()
                                    || key.starts_with(&keys.services_prefix())
                                    || key.starts_with(&keys.analytics_prefix());
                            }
                        }
                        if documents_changed {
                            reload.notify_one();
                        }
                    }
                }
            }
        })
    };
    let gossip_task = tokio::spawn(crate::runtime::gossip::run(
        shared.clone(),
        rand::random(),
        cancel.child_token(),
    ));
    let mut autonomic = Autonomic::new(AutonomicParts {
        shared: shared.clone(),
        store: store.clone(),
        keys: keys.clone(),
        engine: engine.clone(),
        resources,
        bind_ip: settings.publish_ip,
        lease: membership.subscribe_lease(),
        app_root: config.discovery.app_root.clone(),
        seed: rand::random(),
        node_records: membership.records(),
        ask_nodes_in_doubt: settings.ask_nodes_in_doubt,
        registry_auth_file: settings.registry_auth_file.clone(),
    });
    if settings.start {
        autonomic.set_active(true).await;
    }
    let loop_task = tokio::spawn(autonomic.run(command_rx, reload, cancel.child_token()));
    let router = http::router(shared.clone(), command_tx, crate::runtime::autonomic::now);
    let mut server = tokio::spawn(http::serve(listener, router, cancel.child_token()));
    let keepalive = membership.keep_alive(cancel.child_token());
    tokio::pin!(keepalive);
    tokio::pin!(shutdown);

    let outcome = tokio::select! {
        () = &mut shutdown => Ok(()),
        () = shared.leave.cancelled() => Ok(()),
        () = &mut keepalive => Ok(()),
        served = &mut server => Err(AgentError::Http(match served {
            Ok(Err(err)) => err,
            Ok(Ok(())) => std::io::Error::other("server returned"),
            Err(join) => std::io::Error::other(join.to_string()),
        })),
    };
    cancel.cancel();
    let _ = loop_task.await;
    crate::telemetry::finish_sink(sink).await;
    watch_task.abort();
    gossip_task.abort();
    let resigned = membership.resign().await;
    if tokio::time::timeout(HTTP_DRAIN_DEADLINE, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?HTTP_DRAIN_DEADLINE, "HTTP API did not drain in time; stopping it");
        server.abort();
    }
    match &resigned {
        Ok(()) => tracing::info!(node = %settings.node, "left the cluster (lease revoked)"),
        Err(err) => {
            tracing::warn!(node = %settings.node, error = %err, "could not revoke the lease; keys expire with the TTL")
        }
    }
    outcome?;
    resigned.map_err(AgentError::from)
}
