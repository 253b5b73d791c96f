//! The agent process that `gru join` runs in the foreground.
//!
//! Start-up is ordered so that nothing is announced before it can be served: settings are
//! checked, etcd and the Docker engine are reached, the HTTP port is bound, and only then
//! is the node registered (or, after a restart, re-attached to the lease its previous agent
//! kept: see [`crate::kept_lease`]). Shutdown is one cancellation token: the HTTP server
//! drains, the keep-alive stops, and then the lease is either revoked, so the node's keys
//! vanish at once ([`Stop::Leave`]), or kept for a restarted agent, so they stay and no
//! other agent repairs anything ([`Stop::KeepLease`], [`Stop::Restart`]).

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
use crate::kept_lease::{self, KeptLease};
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
    /// Where the agent leaves the note of the lease it keeps for its restart
    /// (`gru join --state-dir`; [`kept_lease::default_state_dir`] by default).
    pub state_dir: std::path::PathBuf,
    /// Serve HTTPS and speak to peers over mutual TLS with these files (`gru join
    /// --tls-cert --tls-key --tls-ca`); `None` is plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Which clients must present a certificate (`--tls-client-auth`).
    pub tls_client_auth: crate::tls::ClientAuth,
}

/// How the agent stops, and so what becomes of its lease and its records.
///
/// The shutdown future passed to [`run`] says what the operator asked for; [`lease_fate`]
/// turns that into what happens, and [`run`] returns it (the CLI executes the agent again
/// after [`Stop::Restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Leave the cluster: the lease is revoked, the node's records and its instances'
    /// discovery records vanish at once, and the other agents repair (SIGINT, `leave node`,
    /// SIGTERM to a drained node, a failure of the agent itself).
    Leave,
    /// Stop to come back (SIGTERM, as `systemctl restart` or an upgrade sends): the lease
    /// gets one last keep-alive and is kept for a full TTL; a restarted agent of the node
    /// re-attaches to it. If none comes back in time, the records vanish with the TTL and
    /// the other agents repair, as after `kill -9`.
    KeepLease,
    /// `restart agent`: as [`Stop::KeepLease`], and the process executes itself again.
    Restart,
}

/// What becomes of the lease when the operator asked for `requested`: a drained node that
/// gets SIGTERM leaves (it has nothing left to keep, and stopping a node once drained must
/// remove it); an explicit `restart agent` restarts even a drained node (its drain record
/// outlives the agent, so the new one goes on draining).
pub fn lease_fate(requested: Stop, drained: bool) -> Stop {
    match requested {
        Stop::KeepLease if drained => Stop::Leave,
        other => other,
    }
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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

/// Runs the agent until `shutdown` resolves (with what the operator asked for) or an operator
/// command stops it. Returns how it stopped, once the lease is revoked or kept.
pub async fn run(
    settings: JoinSettings,
    shutdown: impl Future<Output = Stop>,
) -> Result<Stop, AgentError> {
    check_name("node", &settings.node)?;
    // Checked before anything else: a certificate the peers would refuse stops the start.
    let tls = match &settings.tls {
        Some(files) => Some(Arc::new(crate::tls::AgentTls::load(
            files,
            &settings.node,
            settings.tls_client_auth,
        )?)),
        None => None,
    };
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

    let scheme = if tls.is_some() {
        common::config::Scheme::Https
    } else {
        common::config::Scheme::Http
    };
    let records = NodeRecords {
        config: NodeConfig {
            name: settings.node.clone(),
            address: settings.address.clone(),
            port: bound.port(),
            scheme,
        },
        constraints: NodeConstraints::default(),
        resources: NodeResources {
            total_cpus: resources.cpus,
            total_memory_bytes: resources.memory_bytes,
        },
        active: false,
    };
    let membership = join_or_reattach(
        &store,
        &keys,
        &settings,
        &cluster_id,
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
        "gru agent {} joined cluster {} ({}://{bound})",
        settings.node, settings.cluster, scheme
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
    if let Some(tls) = &tls {
        shared.set_tls(Arc::clone(tls));
    }
    crate::runtime::credentials::load(&store, &keys, &shared).await?;
    shared.set_signed_only(settings.signed_only);
    // A drain outlives the agent: a restarted agent goes on draining (or stays drained).
    match store.get(&keys.drain(&settings.node)).await {
        Ok(Some(entry)) => {
            match serde_json::from_str::<crate::runtime::DrainRecord>(&entry.value) {
                Ok(record) => {
                    tracing::info!(
                        done = record.done,
                        remove = record.remove,
                        "this node is drained (undrain node {} to take it back){}",
                        settings.node,
                        if record.remove {
                            "; it was idle: the remove-node hook follows the drain"
                        } else {
                            ""
                        }
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
    // A restarted agent that took its lease back is as active as its predecessor was.
    let was_active = membership
        .records()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .active;
    if settings.start || was_active {
        autonomic.set_active(true).await;
    }
    let loop_task = tokio::spawn(autonomic.run(command_rx, reload, cancel.child_token()));
    let router = http::router(shared.clone(), command_tx, crate::runtime::autonomic::now);
    let mut server = match &tls {
        Some(tls) => tokio::spawn(crate::tls::serve_tls(
            listener,
            router,
            Arc::clone(&tls.server),
            shared.tls_refusals.clone(),
            cancel.child_token(),
        )),
        None => tokio::spawn(http::serve(listener, router, cancel.child_token())),
    };
    let keepalive = membership.keep_alive(cancel.child_token());
    tokio::pin!(keepalive);
    tokio::pin!(shutdown);

    let outcome = tokio::select! {
        stop = &mut shutdown => Ok(stop),
        () = shared.leave.cancelled() => Ok(Stop::Leave),
        () = shared.restart.cancelled() => Ok(Stop::Restart),
        () = &mut keepalive => Ok(Stop::Leave),
        served = &mut server => Err(AgentError::Http(match served {
            Ok(Err(err)) => err,
            Ok(Ok(())) => std::io::Error::other("server returned"),
            Err(join) => std::io::Error::other(join.to_string()),
        })),
    };
    let drained = shared.knowledge().drain.is_some();
    let fate = match &outcome {
        Ok(requested) => lease_fate(*requested, drained),
        Err(_) => Stop::Leave,
    };
    cancel.cancel();
    let _ = loop_task.await;
    crate::telemetry::finish_sink(sink).await;
    watch_task.abort();
    gossip_task.abort();
    if fate != Stop::Leave {
        // The successor gets the lease's whole TTL from the last step of this one, so the
        // HTTP drain comes first.
        drain_http(&mut server).await;
        keep_for_successor(&membership, &settings, &cluster_id).await;
        outcome?;
        return Ok(fate);
    }
    kept_lease::forget(&settings.state_dir, &settings.cluster, &settings.node);
    let resigned = membership.resign().await;
    drain_http(&mut server).await;
    match &resigned {
        Ok(()) => tracing::info!(node = %settings.node, "left the cluster (lease revoked)"),
        Err(err) => {
            tracing::warn!(node = %settings.node, error = %err, "could not revoke the lease; keys expire with the TTL")
        }
    }
    outcome?;
    resigned.map_err(AgentError::from)?;
    Ok(Stop::Leave)
}

/// Waits for the HTTP server to finish its requests, at most [`HTTP_DRAIN_DEADLINE`].
async fn drain_http(server: &mut tokio::task::JoinHandle<std::io::Result<()>>) {
    if tokio::time::timeout(HTTP_DRAIN_DEADLINE, &mut *server)
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?HTTP_DRAIN_DEADLINE, "HTTP API did not drain in time; stopping it");
        server.abort();
    }
}

/// Re-attaches to the lease the node's previous agent kept, if its note is here and etcd
/// still has the lease with the node's records under it; else registers as usual.
async fn join_or_reattach(
    store: &Store,
    keys: &ClusterKeys,
    settings: &JoinSettings,
    cluster_id: &str,
    ttl_secs: i64,
    records: NodeRecords,
) -> Result<Membership, AgentError> {
    let note = kept_lease::take(
        &settings.state_dir,
        cluster_id,
        &settings.cluster,
        &settings.node,
    );
    if let Some(note) = note {
        let away_ms = now().0.saturating_sub(note.stopped_at_ms);
        match Membership::reattach(
            store.clone(),
            keys.clone(),
            &settings.node,
            ttl_secs,
            records.clone(),
            note.lease,
        )
        .await
        {
            Ok(Some(membership)) => {
                tracing::info!(
                    lease = note.lease,
                    away_ms,
                    "re-attached to the lease kept by this node's previous agent: its records and containers stay"
                );
                return Ok(membership);
            }
            Ok(None) => tracing::warn!(
                lease = note.lease,
                away_ms,
                "the lease kept by this node's previous agent is gone (the restart took longer than its TTL?); registering as a new node"
            ),
            Err(err) => tracing::warn!(
                lease = note.lease,
                error = %err,
                "cannot re-attach to the kept lease; registering as a new node"
            ),
        }
    }
    Ok(Membership::register(
        store.clone(),
        keys.clone(),
        &settings.node,
        ttl_secs,
        records,
    )
    .await?)
}

/// Gives the lease a full TTL and leaves its note for the next agent of this node.
async fn keep_for_successor(membership: &Membership, settings: &JoinSettings, cluster_id: &str) {
    let ttl = match membership.refresh().await {
        Ok(ttl) => ttl,
        Err(err) => {
            tracing::warn!(error = %err, "cannot refresh the lease before stopping; a restart must come back sooner");
            0
        }
    };
    let note = KeptLease {
        cluster_id: cluster_id.to_owned(),
        cluster: settings.cluster.clone(),
        node: settings.node.clone(),
        lease: membership.lease_id(),
        stopped_at_ms: now().0,
    };
    match kept_lease::save(&settings.state_dir, &note) {
        Ok(path) => tracing::info!(
            node = %settings.node,
            lease = note.lease,
            ttl_secs = ttl,
            note = %path.display(),
            "stopped; lease kept: an agent of this node started within the TTL takes back its records and containers, else they expire and other agents repair"
        ),
        Err(err) => tracing::warn!(
            node = %settings.node,
            error = %err,
            dir = %settings.state_dir.display(),
            "stopped; cannot write the kept-lease note, so a restarted agent registers anew (give a writable --state-dir)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_node_leaves_on_sigterm_and_others_keep_what_was_asked() {
        let cases = [
            // (asked, drained, fate)
            (Stop::Leave, false, Stop::Leave),
            (Stop::Leave, true, Stop::Leave),
            (Stop::KeepLease, false, Stop::KeepLease),
            (Stop::KeepLease, true, Stop::Leave),
            (Stop::Restart, false, Stop::Restart),
            (Stop::Restart, true, Stop::Restart),
        ];
        for (asked, drained, fate) in cases {
            assert_eq!(
                lease_fate(asked, drained),
                fate,
                "{asked:?} drained={drained}"
            );
        }
    }
}
