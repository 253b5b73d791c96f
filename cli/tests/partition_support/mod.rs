//! Docker plumbing for the partition test: two bridge networks, containers that carry the
//! test's label, HTTP to a container's address, etcdctl. [`Testbed`] removes everything it
//! created when it drops, also when the test panics (after printing the agents' logs).
//!
//! Plain `docker` commands, so the test controls the topology and can cut it: a container
//! disconnected from a network loses its interface there, and Docker's isolation rules
//! drop what it then sends towards that network's addresses through another one.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::ClusterContainers;

use crate::support::strip_ansi;

/// Label on every container and network the test creates; its value is the run's name.
pub const TEST_LABEL: &str = "org.gru.test.partition";
/// Where the shared network's /24 is taken from (a free one is picked at random): outside
/// Docker's default pools (172.17-31.0.0/16, 192.168.0.0/16) so automatic networks of
/// other tests do not collide with it.
const SUBNET_PREFIX: &str = "10.231";
/// How long one HTTP request to a container may take, connect and answer each.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// `docker args...`, its output whatever the status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the docker CLI")
}

/// `docker args...`, which must succeed; its standard output.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One HTTP/1.0 request to `addr` with an optional bearer token and body: `(status, body)`,
/// or `None` if nothing answered within [`HTTP_TIMEOUT`].
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    testkit::http_request_to(addr, HTTP_TIMEOUT, method, path, bearer, body)
}

/// `etcdctl --endpoints=... args...` (API v3) with short timeouts: its standard output, or
/// `None` if it failed.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Option<String> {
    let mut all = vec!["--command-timeout=3s", "--dial-timeout=2s"];
    all.extend_from_slice(args);
    testkit::etcdctl_at(endpoints, &all).ok()
}

/// Whether the etcd member at `ip` says its cluster is healthy (it has a leader and
/// answers a linearizable read).
pub fn etcd_healthy(ip: Ipv4Addr) -> bool {
    http(
        SocketAddr::new(IpAddr::V4(ip), 2379),
        "GET",
        "/health",
        None,
        None,
    )
    .is_some_and(|(status, body)| status == 200 && body.contains("\"health\":\"true\""))
}

/// A running managed container, from its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    pub node: String,
    pub instance: String,
}

/// The networks and containers of one run of the test.
#[derive(Debug)]
pub struct Testbed {
    /// Prefix of every name the run creates (`gru-part-<pid>`).
    pub run: String,
    /// The shared network, on which both sides meet, and its /24 (`10.231.N`).
    pub shared: String,
    pub shared_prefix: String,
    /// Side B's own network: the minority's members reach each other here during the cut.
    pub side_b: String,
    /// Containers whose logs a failure shows (etcd members are left out).
    pub logged: Vec<String>,
    // Dropped after `drop` has removed the agents, so nothing starts what it removes.
    pub managed: ClusterContainers,
}

impl Testbed {
    /// Creates the two networks: the shared one on a free /24 of [`SUBNET_PREFIX`] (fixed
    /// addresses, so a container reconnected after the cut gets its own back), side B's
    /// wherever Docker puts it.
    pub fn new(managed: ClusterContainers) -> Testbed {
        let run = format!("gru-part-{}", std::process::id());
        let mut bed = Testbed {
            shared: format!("{run}-shared"),
            side_b: format!("{run}-side-b"),
            shared_prefix: String::new(),
            run,
            logged: Vec::new(),
            managed,
        };
        let label = format!("{TEST_LABEL}={}", bed.run);
        let mut refusals = Vec::new();
        for _ in 0..32 {
            let prefix = format!("{SUBNET_PREFIX}.{}", rand::random::<u8>());
            let subnet = format!("{prefix}.0/24");
            let out = docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--label",
                &label,
                &bed.shared,
            ]);
            if out.status.success() {
                bed.shared_prefix = prefix;
                break;
            }
            refusals.push(format!(
                "{subnet}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        assert!(
            !bed.shared_prefix.is_empty(),
            "no free /24 in {SUBNET_PREFIX}.0.0/16 for the shared network:\n{}",
            refusals.join("\n")
        );
        docker_ok(&["network", "create", "--label", &label, &bed.side_b]);
        bed
    }

    /// The fixed address `host` (2..=254) on the shared network.
    pub fn shared_ip(&self, host: u8) -> Ipv4Addr {
        format!("{}.{host}", self.shared_prefix).parse().unwrap()
    }

    /// Creates (not starts) a container on the shared network at `ip`, labelled with the
    /// run; returns its name. `docker_args` go before the image, `command` after it.
    pub fn create(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        docker_args: &[&str],
        image: &str,
        command: &[&str],
    ) -> String {
        let name = format!("{}-{name}", self.run);
        let label = format!("{TEST_LABEL}={}", self.run);
        let ip = ip.to_string();
        let mut args = vec![
            "create",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            &self.shared,
            "--ip",
            &ip,
        ];
        args.extend_from_slice(docker_args);
        args.push(image);
        args.extend_from_slice(command);
        docker_ok(&args);
        if !name.contains("etcd") {
            self.logged.push(name.clone());
        }
        name
    }

    pub fn start(&self, container: &str) {
        docker_ok(&["start", container]);
    }

    /// Attaches `container` to side B's network (it gets an address there when it starts).
    pub fn join_side_b(&self, container: &str) {
        docker_ok(&["network", "connect", &self.side_b, container]);
    }

    /// The address of a started `container` on side B's network.
    pub fn side_b_ip(&self, container: &str) -> Ipv4Addr {
        self.address(container, &self.side_b)
            .unwrap_or_else(|| panic!("{container} has no address on {}", self.side_b))
    }

    /// The container's address on `network`, if it is attached to it.
    pub fn address(&self, container: &str, network: &str) -> Option<Ipv4Addr> {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        );
        docker_ok(&["inspect", "--format", &format, container])
            .trim()
            .parse()
            .ok()
    }

    /// Cuts `container` off the shared network.
    pub fn disconnect(&self, container: &str) {
        docker_ok(&["network", "disconnect", &self.shared, container]);
    }

    /// Puts `container` back on the shared network at its old address.
    pub fn reconnect(&self, container: &str, ip: Ipv4Addr) {
        docker_ok(&[
            "network",
            "connect",
            "--ip",
            &ip.to_string(),
            &self.shared,
            container,
        ]);
    }

    /// Whether each of `containers` is running, and how often Docker restarted it.
    pub fn states(&self, containers: &[&str]) -> BTreeMap<String, (bool, u64)> {
        let mut args = vec![
            "inspect",
            "--format",
            "{{.Name}} {{.State.Running}} {{.RestartCount}}",
        ];
        args.extend_from_slice(containers);
        docker_ok(&args)
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next()?.trim_start_matches('/').to_owned();
                let running = words.next()? == "true";
                let restarts = words.next()?.parse().ok()?;
                Some((name, (running, restarts)))
            })
            .collect()
    }

    /// Running containers of the managed cluster, from their labels.
    pub fn instances(&self) -> Vec<Instance> {
        let filter = format!("label=org.gru.cluster={}", self.managed.cluster);
        let mut instances: Vec<Instance> = docker_ok(&[
            "ps",
            "--filter",
            &filter,
            "--filter",
            "status=running",
            "--format",
            "{{.Label \"org.gru.node\"}} {{.Label \"org.gru.instance\"}}",
        ])
        .lines()
        .filter_map(|line| {
            let (node, instance) = line.split_once(' ')?;
            Some(Instance {
                node: node.to_owned(),
                instance: instance.to_owned(),
            })
        })
        .collect();
        instances.sort();
        instances
    }

    /// The last `lines` lines a container wrote (both streams).
    pub fn logs(&self, container: &str, lines: usize) -> String {
        let out = docker(&["logs", "--tail", &lines.to_string(), container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Every logged container's last lines but its per-tick decisions and debug lines,
    /// titled: what a failure message shows (the whole logs are kept on failure).
    pub fn diagnostics(&self) -> String {
        self.logged
            .iter()
            .map(|name| {
                let logs = strip_ansi(&self.logs(name, 400));
                let lines: Vec<&str> = logs
                    .lines()
                    .filter(|l| !l.contains(": decision action=") && !l.contains(" DEBUG "))
                    .collect();
                format!(
                    "--- {name}\n{}\n",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect()
    }

    fn labelled(&self, kind: &str) -> Vec<String> {
        let filter = format!("label={TEST_LABEL}={}", self.run);
        docker(&[kind, "ls", "-q", "--filter", &filter])
            .stdout
            .split(|b| *b == b'\n')
            .map(|l| String::from_utf8_lossy(l).trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the test failed; the agents' logs end with:\n{}",
                self.diagnostics()
            );
            // Whole logs survive the containers, for what the tails do not show.
            for name in &self.logged {
                let path = std::env::temp_dir().join(format!("{name}.log"));
                if std::fs::write(&path, strip_ansi(&self.logs(name, 100_000))).is_ok() {
                    eprintln!("{name}'s whole log: {}", path.display());
                }
            }
        }
        // Agents first (they would restart what is removed under them), etcd with them.
        let filter = format!("label={TEST_LABEL}={}", self.run);
        let ids: Vec<String> =
            String::from_utf8_lossy(&docker(&["ps", "-aq", "--filter", &filter]).stdout)
                .lines()
                .map(str::to_owned)
                .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
        for network in self.labelled("network") {
            let out = docker(&["network", "rm", &network]);
            if !out.status.success() {
                eprintln!(
                    "cannot remove network {network}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // `managed` drops next: the instances the agents started go with it.
    }
}
