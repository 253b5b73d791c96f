//! `gru join <cluster>`: runs the agent in the foreground until SIGINT or SIGTERM.

use std::net::SocketAddr;

use gru_agent::daemon::{self, JoinSettings};
use gru_agent::store::EtcdSettings;

use crate::args::JoinArgs;
use crate::exit::Usage;

pub async fn run(etcd: EtcdSettings, args: JoinArgs) -> anyhow::Result<()> {
    let node = match args.name {
        Some(name) => name,
        None => host_name().ok_or_else(|| {
            Usage("cannot read this machine's host name; give the node a --name".into())
        })?,
    };
    let settings = JoinSettings {
        cluster: args.cluster,
        node,
        address: args.address,
        bind: SocketAddr::new(args.bind, args.port),
        publish_ip: args.publish_ip,
        start: args.start,
        etcd,
    };
    daemon::run(settings, shutdown_signal()).await?;
    Ok(())
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; leaving the cluster"),
        _ = int.recv() => tracing::info!("SIGINT received; leaving the cluster"),
    }
}
