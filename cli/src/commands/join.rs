//! `gru join <cluster>`: runs the agent in the foreground until SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

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
    let address = match args.address {
        Some(address) => address,
        None => {
            let (address, how) = if !args.bind.is_unspecified() {
                (args.bind.to_string(), "the address --bind listens on")
            } else {
                match default_route_address() {
                    Some(ip) => (
                        ip.to_string(),
                        "the address of the default route's interface",
                    ),
                    None => (
                        FALLBACK_ADDRESS.to_owned(),
                        "no default route, so only this machine can reach the agent",
                    ),
                }
            };
            // Through the log, so that `--log-format json` stays one JSON object a line.
            tracing::info!(%address, chosen_as = how, "announcing this address (give --address to choose another)");
            address
        }
    };
    let registry_auth_file = match args.registry_auth_file {
        Some(path) => {
            // Checked now, so that a typo is not found at the first pull; read at each pull.
            let absolute = std::path::absolute(&path).unwrap_or(path);
            if !absolute.is_file() {
                return Err(Usage(format!(
                    "--registry-auth-file {}: no such file (a Docker config.json, as `docker login` writes it)",
                    absolute.display()
                ))
                .into());
            }
            Some(absolute)
        }
        None => None,
    };
    let settings = JoinSettings {
        cluster: args.cluster,
        node,
        address,
        bind: SocketAddr::new(args.bind, args.port),
        publish_ip: args.publish_ip,
        start: args.start,
        signed_only: args.signed_only,
        registry_auth_file,
        etcd,
        // A fault-injection switch for tests, deliberately not a flag (see its doc).
        ask_nodes_in_doubt: std::env::var_os(daemon::NO_WITHHOLD_VAR).is_none_or(|v| v != "1"),
    };
    daemon::run(settings, shutdown_signal()).await?;
    Ok(())
}

/// The address a node without a default route announces.
const FALLBACK_ADDRESS: &str = "127.0.0.1";

/// This host's address on the interface of its default route: the source address the
/// kernel picks for a packet to an address no interface is on. Connecting a UDP socket
/// only chooses the route; nothing is sent. 198.51.100.1 is a documentation address
/// (TEST-NET-2, RFC 5737), so it is on no one's network.
fn default_route_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(198, 51, 100, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Installs the SIGINT and SIGTERM handlers at once (before anything is served: a signal
/// that comes while the agent starts must not kill it with the default action, leaving its
/// records behind), and returns a future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; leaving the cluster"),
            _ = int.recv() => tracing::info!("SIGINT received; leaving the cluster"),
        }
    }
}
