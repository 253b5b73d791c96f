//! Host ports for published container ports: which one an instance takes, chosen without I/O.
//!
//! The engine-facing side (`lifecycle.rs`) gathers the ports in use on the engine, asks
//! [`PortAllocator`] for the lowest free port of each range, and if the start still fails
//! because someone outside its view holds the port (another agent on the same engine, a
//! host process), marks that port and asks again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use common::config::PortRange;

/// The transport of a published port; ports of different protocols do not collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn parse(text: &str) -> Option<Protocol> {
        match text {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// A port inside the container, with its protocol: the service's `Ports` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPort {
    pub port: u16,
    pub protocol: Protocol,
}

impl GuestPort {
    /// Reads `"8080"` (tcp), `"8080/tcp"`, `"8080/udp"` or `"8080/sctp"`.
    pub fn parse(key: &str) -> Option<GuestPort> {
        let (port, protocol) = match key.split_once('/') {
            Some((port, protocol)) => (port, Protocol::parse(protocol)?),
            None => (key, Protocol::Tcp),
        };
        let port = port.parse().ok().filter(|p| *p != 0)?;
        Some(GuestPort { port, protocol })
    }
}

/// Docker's form, `8080/tcp`: the key of every host-port map in this module.
impl fmt::Display for GuestPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// A host port that is not available: bound, reserved by a container, or seen to fail.
pub type TakenPort = (Protocol, u16);

/// Why no host port could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("container port key \"{key}\" is not a port such as \"8080\" or \"8080/udp\"")]
    BadGuestPort { key: String },
    #[error("every host port in {range} for container port {guest} is taken")]
    RangeFull { guest: GuestPort, range: PortRange },
}

/// Picks, for each container port, the lowest host port of its range that is not taken.
#[derive(Debug, Clone, Default)]
pub struct PortAllocator {
    taken: BTreeSet<TakenPort>,
}

impl PortAllocator {
    pub fn new(taken: impl IntoIterator<Item = TakenPort>) -> PortAllocator {
        PortAllocator {
            taken: taken.into_iter().collect(),
        }
    }

    /// Marks a port that turned out to be unavailable (a start failed on it).
    pub fn mark_taken(&mut self, port: TakenPort) {
        self.taken.insert(port);
    }

    pub fn is_taken(&self, port: TakenPort) -> bool {
        self.taken.contains(&port)
    }

    /// One host port per entry of `ports` (a service's `Ports`), keyed by the container port
    /// in Docker's form (`8080/tcp`). Two container ports whose ranges overlap get different
    /// host ports. Fails, naming the port, when a range has no free port left.
    pub fn allocate(
        &self,
        ports: &BTreeMap<String, PortRange>,
    ) -> Result<BTreeMap<String, u16>, PortError> {
        let mut chosen = BTreeMap::new();
        let mut taken_now = BTreeSet::new();
        for (key, range) in ports {
            let guest = GuestPort::parse(key)
                .ok_or_else(|| PortError::BadGuestPort { key: key.clone() })?;
            let free = range.ports().find(|port| {
                let candidate = (guest.protocol, *port);
                !self.taken.contains(&candidate) && !taken_now.contains(&candidate)
            });
            let port = free.ok_or(PortError::RangeFull {
                guest,
                range: *range,
            })?;
            taken_now.insert((guest.protocol, port));
            chosen.insert(guest.to_string(), port);
        }
        Ok(chosen)
    }
}

/// The value of the host-ports label: `8080/tcp=50000,9090/udp=50001`.
pub fn format_host_ports(host_ports: &BTreeMap<String, u16>) -> String {
    host_ports
        .iter()
        .map(|(guest, host)| format!("{guest}={host}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the host-ports label back; entries that do not parse are skipped (the label may
/// have been written by hand or by another version).
pub fn parse_host_ports(label: &str) -> BTreeMap<String, u16> {
    label
        .split(',')
        .filter_map(|entry| {
            let (guest, host) = entry.split_once('=')?;
            let guest = GuestPort::parse(guest.trim())?;
            let host = host.trim().parse().ok().filter(|p| *p != 0)?;
            Some((guest.to_string(), host))
        })
        .collect()
}

/// Whether the engine refused to start a container because a host port is unavailable.
/// Docker 20.10 says "port is already allocated" when another container holds it and
/// "address already in use" when the userland proxy cannot bind it.
pub fn is_port_conflict(message: &str) -> bool {
    message.contains("port is already allocated") || message.contains("address already in use")
}

/// Which of `candidates` a port-conflict message names (`Bind for 0.0.0.0:50000 failed`,
/// `listen tcp4 127.0.0.1:50000: bind: ...`); `None` if the message names none of them.
pub fn conflicting_port(message: &str, candidates: impl IntoIterator<Item = u16>) -> Option<u16> {
    candidates.into_iter().find(|port| {
        let needle = format!(":{port}");
        message.match_indices(&needle).any(|(at, _)| {
            !message[at + needle.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(low: u16, high: u16) -> PortRange {
        PortRange::new(low, high).expect("valid range")
    }

    fn ports(entries: &[(&str, PortRange)]) -> BTreeMap<String, PortRange> {
        entries.iter().map(|(k, r)| ((*k).to_owned(), *r)).collect()
    }

    #[test]
    fn guest_ports_parse_with_tcp_by_default() {
        let cases = [
            ("8080", Some("8080/tcp")),
            ("8080/tcp", Some("8080/tcp")),
            ("53/udp", Some("53/udp")),
            ("9/sctp", Some("9/sctp")),
            ("0", None),
            ("80/icmp", None),
            ("http", None),
            ("70000", None),
        ];
        for (key, expected) in cases {
            let parsed = GuestPort::parse(key).map(|g| g.to_string());
            assert_eq!(parsed.as_deref(), expected, "{key}");
        }
    }

    #[test]
    fn lowest_free_port_of_the_range_is_chosen() {
        let allocator = PortAllocator::new([(Protocol::Tcp, 50000), (Protocol::Tcp, 50002)]);
        let chosen = allocator
            .allocate(&ports(&[("8080", range(50000, 50004))]))
            .expect("a port is free");
        assert_eq!(chosen, BTreeMap::from([("8080/tcp".to_owned(), 50001)]));
    }

    #[test]
    fn a_port_taken_for_udp_is_free_for_tcp() {
        let allocator = PortAllocator::new([(Protocol::Udp, 50000)]);
        let chosen = allocator
            .allocate(&ports(&[
                ("8080", range(50000, 50001)),
                ("53/udp", range(50000, 50001)),
            ]))
            .expect("ports are free");
        assert_eq!(chosen["8080/tcp"], 50000);
        assert_eq!(chosen["53/udp"], 50001);
    }

    #[test]
    fn overlapping_ranges_of_one_service_get_different_ports() {
        let chosen = PortAllocator::default()
            .allocate(&ports(&[
                ("8080", range(50000, 50001)),
                ("8081", range(50000, 50001)),
            ]))
            .expect("two ports are free");
        assert_eq!(chosen["8080/tcp"], 50000);
        assert_eq!(chosen["8081/tcp"], 50001);
    }

    #[test]
    fn a_full_range_names_the_container_port_and_range() {
        let allocator = PortAllocator::new([(Protocol::Tcp, 50000), (Protocol::Tcp, 50001)]);
        let error = allocator
            .allocate(&ports(&[("8080", range(50000, 50001))]))
            .expect_err("the range is full");
        assert_eq!(
            error.to_string(),
            "every host port in 50000-50001 for container port 8080/tcp is taken"
        );
    }

    #[test]
    fn a_marked_port_is_skipped_next_time() {
        let mut allocator = PortAllocator::default();
        let wanted = ports(&[("8080", range(50000, 50009))]);
        assert_eq!(
            allocator.allocate(&wanted).expect("free")["8080/tcp"],
            50000
        );
        allocator.mark_taken((Protocol::Tcp, 50000));
        assert_eq!(
            allocator.allocate(&wanted).expect("free")["8080/tcp"],
            50001
        );
    }

    #[test]
    fn host_ports_label_round_trips_and_skips_garbage() {
        let map = BTreeMap::from([("8080/tcp".to_owned(), 50000), ("53/udp".to_owned(), 50001)]);
        let label = format_host_ports(&map);
        assert_eq!(label, "53/udp=50001,8080/tcp=50000");
        assert_eq!(parse_host_ports(&label), map);
        assert_eq!(
            parse_host_ports("8080=50000,x=1,9090/tcp=0,7070/tcp=abc"),
            BTreeMap::from([("8080/tcp".to_owned(), 50000)])
        );
        assert!(parse_host_ports("").is_empty());
    }

    #[test]
    fn conflict_messages_of_docker_20_10_name_the_port() {
        let allocated = "driver failed programming external connectivity on endpoint gru-c-n-s-1 \
             (abc): Bind for 127.0.0.1:50001 failed: port is already allocated";
        let in_use = "driver failed programming external connectivity on endpoint x (abc): \
             Error starting userland proxy: listen tcp4 0.0.0.0:50010: bind: address already in use";
        assert!(is_port_conflict(allocated));
        assert!(is_port_conflict(in_use));
        assert!(!is_port_conflict("OCI runtime create failed: no such file"));
        assert_eq!(conflicting_port(allocated, [50000, 50001]), Some(50001));
        assert_eq!(conflicting_port(in_use, [5001, 50010]), Some(50010));
        // 5001 is a prefix of 50010: only a whole number counts.
        assert_eq!(conflicting_port(in_use, [5001]), None);
    }
}
