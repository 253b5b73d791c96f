//! `gru join <cluster>`: runs the agent in the foreground until SIGINT or SIGTERM.
//!
//! SIGTERM (what `systemctl stop|restart`, `docker stop` and upgrades send) stops the agent
//! keeping its lease for a restart; SIGINT (Ctrl-C at a terminal) leaves the cluster. After
//! `restart agent` the process executes its own binary again with the same arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use gru_agent::daemon::{self, JoinSettings, Stop};
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
    let tls = match (args.tls.tls_cert, args.tls.tls_key, args.tls.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(gru_agent::tls::TlsFiles { cert, key, ca }),
        _ => {
            // Through the log, so that `--log-format json` stays one JSON object a line.
            tracing::warn!(
                "TLS is off: the agent API and gossip travel in clear; turn it on with `gru tls ca create` and `gru tls cert create --node <name>`, then join with --tls-cert, --tls-key and --tls-ca"
            );
            None
        }
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
        state_dir: args
            .state_dir
            .map(|dir| std::path::absolute(&dir).unwrap_or(dir))
            .unwrap_or_else(gru_agent::kept_lease::default_state_dir),
        tls,
        tls_client_auth: match args.tls.tls_client_auth {
            crate::args::TlsClientAuth::Peers => gru_agent::tls::ClientAuth::Peers,
            crate::args::TlsClientAuth::All => gru_agent::tls::ClientAuth::All,
        },
    };
    if daemon::run(settings, shutdown_signal()).await? == Stop::Restart {
        return Err(exec_self());
    }
    Ok(())
}

/// Replaces this process by a new run of its own binary with the same arguments and
/// environment (same pid, so a supervisor or a shell that waits for it sees no exit).
/// The binary is read again from its path, so a replaced binary (an upgrade) is the one
/// that runs. Returns only if the exec failed.
fn exec_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return anyhow::anyhow!("restart: cannot find this program's path; start it again by hand");
    };
    // The kernel names a binary replaced on disk "<path> (deleted)": run the new one.
    let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    };
    tracing::info!(binary = %exe.display(), "restarting: executing the agent again");
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::anyhow!("restart: cannot execute {}: {err}", exe.display())
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
/// records behind), and returns a future that resolves on the first of them: SIGTERM keeps
/// the lease for a restart, SIGINT leaves.
fn shutdown_signal() -> impl std::future::Future<Output = Stop> {
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
            _ = term.recv() => {
                tracing::info!("SIGTERM received; stopping, the lease kept for a restart");
                Stop::KeepLease
            }
            _ = int.recv() => {
                tracing::info!("SIGINT received; leaving the cluster");
                Stop::Leave
            }
        }
    }
}
