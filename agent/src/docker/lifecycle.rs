//! Containers of gru on this engine: list them by label, start an instance (choosing its host
//! ports and cores), stop and remove.
//!
//! Starting first makes the image present as the service's `Pull` says (`pull.rs`): with
//! `Never`, a missing image fails at once with [`DockerError::ImageMissing`].
//! Host ports are chosen under the engine's allocation lock from every reservation visible
//! on the engine (gru's labels of any cluster and node, and the ports of every running
//! container); an agent sharing the engine can still take the same port in between, and the
//! engine then refuses the start: the container is removed, the port marked, and the next
//! free one tried, at most [`MAX_START_ATTEMPTS`] times.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, PortSummaryTypeEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use common::config::{CpuSet, ServiceDescriptor};

use super::cores::CoreAllocator;
use super::labels::{
    LABEL_CLUSTER, LABEL_CPUSET, LABEL_HOST_PORTS, LABEL_INSTANCE, LABEL_NODE, LABEL_REPLACES,
    LABEL_SERVICE, LABEL_VERSION,
};
use super::ports::{
    GuestPort, PortAllocator, Protocol, TakenPort, conflicting_port, is_port_conflict,
    parse_host_ports,
};
use super::spec::{ContainerSpec, Placement};
use super::{DockerError, Engine, bollard_timeout, message_of, status_of};

/// Starts tried per instance when host ports turn out to be taken by someone else.
pub const MAX_START_ATTEMPTS: u32 = 5;

/// The engine's state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

impl ContainerState {
    /// Whether the container holds (or is about to hold) its host ports and cores.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            ContainerState::Created
                | ContainerState::Running
                | ContainerState::Paused
                | ContainerState::Restarting
        )
    }

    fn from_summary(state: Option<ContainerSummaryStateEnum>) -> ContainerState {
        match state {
            Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
            Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
            Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
            Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
            Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
            Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::STOPPING) => {
                ContainerState::Exited
            }
            Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
            Some(ContainerSummaryStateEnum::EMPTY) | None => ContainerState::Unknown,
        }
    }
}

/// A container that carries gru's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedContainer {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub cluster: String,
    pub node: String,
    pub service: String,
    pub instance: String,
    pub state: ContainerState,
    pub created_at: SystemTime,
    /// Host port of each published container port, keyed `8080/tcp`: gru's label, or for a
    /// container without it, the ports the engine reports (running containers only).
    pub host_ports: BTreeMap<String, u16>,
    pub cpuset: Option<String>,
    /// The descriptor version it was made from (`LABEL_VERSION`); `None` for a container
    /// started before gru labelled versions.
    pub version: Option<String>,
    /// The image as the engine reports it.
    pub image: String,
    /// The instances it replaces, when a rollout step started it (`LABEL_REPLACES`).
    pub replaces: Vec<String>,
}

impl ManagedContainer {
    /// The host port published for a TCP container port.
    pub fn host_port(&self, guest: u16) -> Option<u16> {
        self.host_ports.get(&format!("{guest}/tcp")).copied()
    }
}

/// What to start: one instance of a service, for a node of a cluster.
#[derive(Debug, Clone, Copy)]
pub struct InstancePlan<'a> {
    pub service: &'a ServiceDescriptor,
    pub cluster: &'a str,
    pub node: &'a str,
    /// The instance id, e.g. from [`new_instance_id`](super::labels::new_instance_id).
    pub instance: &'a str,
    /// The host address published ports bind to ([`DEFAULT_BIND_IP`](super::DEFAULT_BIND_IP)
    /// for every interface).
    pub bind_ip: IpAddr,
    /// A Docker `config.json` whose `auths` serve pulls of services without `Pull.Auth`
    /// (the agent configuration's `Docker.RegistryAuthFile`).
    pub registry_auth_file: Option<&'a Path>,
    /// The old instances it replaces, for a rollout step's new instance (recorded as
    /// `LABEL_REPLACES`); empty otherwise.
    pub replaces: &'a [String],
}

/// A running instance, as started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedInstance {
    pub id: String,
    pub name: String,
    /// Keyed `8080/tcp`.
    pub host_ports: BTreeMap<String, u16>,
    pub cpuset: Option<String>,
    /// 1 unless host ports had to be chosen again after conflicts.
    pub attempts: u32,
}

/// The agent's own environment, for [`Engine::start_instance`]'s empty `Env` values.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// What other containers on the engine hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reservations {
    ports: BTreeSet<TakenPort>,
    cpusets: Vec<CpuSet>,
}

/// The ports and cpus held on the engine: gru's labels of containers that hold resources
/// (a created container reserves before it binds), plus the published ports of every
/// container, gru's or not.
fn reservations(containers: &[ContainerSummary]) -> Reservations {
    let mut held = Reservations::default();
    for container in containers {
        let labels = container.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key));
        if ContainerState::from_summary(container.state).holds_resources() {
            if let Some(ports) = label(LABEL_HOST_PORTS) {
                for (guest, host) in parse_host_ports(ports) {
                    if let Some(guest) = GuestPort::parse(&guest) {
                        held.ports.insert((guest.protocol, host));
                    }
                }
            }
            if let Some(cpuset) = label(LABEL_CPUSET).and_then(|c| c.parse::<CpuSet>().ok()) {
                held.cpusets.push(cpuset);
            }
        }
        for (protocol, port) in published_ports(container) {
            held.ports.insert((protocol, port));
        }
    }
    held
}

fn published_ports(container: &ContainerSummary) -> impl Iterator<Item = (Protocol, u16)> + '_ {
    container.ports.iter().flatten().filter_map(|port| {
        let protocol = match port.typ {
            Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
            Some(PortSummaryTypeEnum::SCTP) => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        Some((protocol, port.public_port.filter(|p| *p != 0)?))
    })
}

/// The managed view of a listed container; `None` if it lacks the cluster label.
fn managed_from_summary(container: &ContainerSummary) -> Option<ManagedContainer> {
    let labels = container.labels.as_ref()?;
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let cluster = labels.get(LABEL_CLUSTER)?.clone();
    let host_ports = match labels.get(LABEL_HOST_PORTS) {
        Some(text) => parse_host_ports(text),
        None => container
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                let protocol = match port.typ {
                    Some(PortSummaryTypeEnum::UDP) => "udp",
                    Some(PortSummaryTypeEnum::SCTP) => "sctp",
                    _ => "tcp",
                };
                let host = port.public_port.filter(|p| *p != 0)?;
                Some((format!("{}/{protocol}", port.private_port), host))
            })
            .collect(),
    };
    let created = u64::try_from(container.created.unwrap_or(0)).unwrap_or(0);
    Some(ManagedContainer {
        id: container.id.clone()?,
        name: container
            .names
            .iter()
            .flatten()
            .next()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        cluster,
        node: label(LABEL_NODE),
        service: label(LABEL_SERVICE),
        instance: label(LABEL_INSTANCE),
        state: ContainerState::from_summary(container.state),
        created_at: UNIX_EPOCH + Duration::from_secs(created),
        host_ports,
        cpuset: labels.get(LABEL_CPUSET).cloned(),
        version: labels.get(LABEL_VERSION).cloned(),
        image: container.image.clone().unwrap_or_default(),
        replaces: labels
            .get(LABEL_REPLACES)
            .map(|list| {
                list.split(',')
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// How a start attempt ended, short of success.
enum StartFailure {
    /// The engine could not bind a host port; `message` is its explanation.
    PortConflict {
        message: String,
    },
    Fatal(DockerError),
}

impl Engine {
    /// gru's containers of `cluster` in every state, of one node or (`None`) of all nodes
    /// sharing this engine.
    pub async fn list_managed(
        &self,
        cluster: &str,
        node: Option<&str>,
    ) -> Result<Vec<ManagedContainer>, DockerError> {
        let mut labels = vec![format!("{LABEL_CLUSTER}={cluster}")];
        if let Some(node) = node {
            labels.push(format!("{LABEL_NODE}={node}"));
        }
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let target = format!("containers of cluster {cluster}");
        let listed = self
            .call("list", &target, self.docker.list_containers(Some(options)))
            .await?;
        Ok(listed.iter().filter_map(managed_from_summary).collect())
    }

    /// The cpusets gru's containers hold on this engine (any node, any cluster; created or
    /// running): the cores a pinned start can no longer take, as the start's allocation
    /// counts them.
    pub async fn held_cpusets(&self) -> Result<Vec<CpuSet>, DockerError> {
        let filters = HashMap::from([("label", vec![LABEL_CPUSET.to_owned()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .call(
                "list",
                "pinned containers",
                self.docker.list_containers(Some(options)),
            )
            .await?;
        Ok(reservations(&listed).cpusets)
    }

    /// Whether `image` is present on this engine (never pulls).
    pub async fn image_present(&self, image: &str) -> Result<bool, DockerError> {
        let target = format!("image {image}");
        match self
            .timed(
                "image inspect",
                &target,
                self.timeout,
                self.docker.inspect_image(image),
            )
            .await?
        {
            Ok(_) => Ok(true),
            Err(error) if status_of(&error) == Some(404) => Ok(false),
            Err(source) => Err(DockerError::Call {
                call: "image inspect",
                target,
                source,
            }),
        }
    }

    /// Creates and starts one instance: makes the image present as `Pull` says, chooses host
    /// ports and cores under the allocation lock, and retries with other ports when the
    /// engine reports a port taken by someone else. A failed attempt's container is removed.
    ///
    /// If this future is dropped midway, a container may be left `created`; it keeps its
    /// reservation until removed, and [`Engine::list_managed`] reports it.
    pub async fn start_instance(
        &self,
        plan: &InstancePlan<'_>,
        agent_env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<StartedInstance, DockerError> {
        let service = plan.service;
        self.ensure_image(&service.image, &service.pull, plan.registry_auth_file)
            .await?;
        let config = &service.configuration;
        let pinned_by_agent = config.cpuset_cpus.is_none() && config.cpu_number > 0;
        let engine_cpus = if pinned_by_agent {
            self.resources().await?.cpus
        } else {
            0
        };

        let _allocating = self.allocation.lock().await;
        let mut conflicts: BTreeSet<TakenPort> = BTreeSet::new();
        let mut last_ports = Vec::new();
        for attempt in 1..=MAX_START_ATTEMPTS {
            let everything = ListContainersOptionsBuilder::new().all(true).build();
            let listed = self
                .call(
                    "list",
                    "all containers",
                    self.docker.list_containers(Some(everything)),
                )
                .await?;
            let held = reservations(&listed);
            let ports = PortAllocator::new(held.ports.iter().chain(&conflicts).copied());
            let host_ports =
                ports
                    .allocate(&config.ports)
                    .map_err(|source| DockerError::NoHostPort {
                        service: service.name.clone(),
                        source,
                    })?;
            let cpuset = if pinned_by_agent {
                CoreAllocator::new(engine_cpus, &held.cpusets)
                    .allocate(config.cpu_number)
                    .map_err(|source| DockerError::NoFreeCores {
                        service: service.name.clone(),
                        source,
                    })?
            } else {
                None
            };
            let placement = Placement {
                host_ports,
                cpuset,
                bind_ip: plan.bind_ip,
            };
            let mut spec = ContainerSpec::build(
                service,
                plan.cluster,
                plan.node,
                plan.instance,
                &placement,
                &|key: &str| agent_env(key),
            );
            if !plan.replaces.is_empty() {
                spec.labels
                    .insert(LABEL_REPLACES.to_owned(), plan.replaces.join(","));
            }
            match self.create_and_start(&spec).await {
                Ok(id) => {
                    return Ok(StartedInstance {
                        id,
                        name: spec.name.clone(),
                        host_ports: spec.host_ports(),
                        cpuset: spec.cpuset_cpus.clone(),
                        attempts: attempt,
                    });
                }
                Err(StartFailure::Fatal(error)) => return Err(error),
                Err(StartFailure::PortConflict { message }) => {
                    let bound: Vec<(Protocol, u16)> = spec
                        .port_bindings
                        .iter()
                        .map(|b| {
                            let guest = GuestPort::parse(&b.guest);
                            (guest.map_or(Protocol::Tcp, |g| g.protocol), b.host_port)
                        })
                        .collect();
                    last_ports = bound.iter().map(|(_, port)| *port).collect();
                    // Mark the port the engine names; if it names none of ours, all of them.
                    match conflicting_port(&message, last_ports.iter().copied()) {
                        Some(port) => conflicts.extend(bound.iter().filter(|(_, p)| *p == port)),
                        None => conflicts.extend(bound.iter().copied()),
                    }
                    tracing::warn!(
                        service = %service.name,
                        attempt,
                        ports = ?last_ports,
                        reason = %message,
                        "host port taken by another holder; retrying with the next free one"
                    );
                }
            }
        }
        Err(DockerError::PortConflicts {
            service: service.name.clone(),
            attempts: MAX_START_ATTEMPTS,
            last_ports,
        })
    }

    /// One attempt: create the container, start it; on a failed start, remove it again.
    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String, StartFailure> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .timed(
                "create",
                &spec.name,
                self.timeout,
                self.docker
                    .create_container(Some(options), spec.to_create_body()),
            )
            .await
            .map_err(StartFailure::Fatal)?;
        let id = match created {
            Ok(response) => response.id,
            // The image went away since it was checked.
            Err(error) if status_of(&error) == Some(404) => {
                return Err(StartFailure::Fatal(DockerError::ImageMissing {
                    image: spec.image.clone(),
                }));
            }
            Err(source) => {
                return Err(StartFailure::Fatal(DockerError::Call {
                    call: "create",
                    target: spec.name.clone(),
                    source,
                }));
            }
        };
        let started = self
            .timed(
                "start",
                &spec.name,
                self.timeout,
                self.docker.start_container(&id, None),
            )
            .await;
        let failure = match started {
            Ok(Ok(())) => return Ok(id),
            Ok(Err(error)) if is_port_conflict(message_of(&error)) => StartFailure::PortConflict {
                message: message_of(&error).to_owned(),
            },
            Ok(Err(source)) => StartFailure::Fatal(DockerError::Call {
                call: "start",
                target: spec.name.clone(),
                source,
            }),
            Err(timeout) => StartFailure::Fatal(timeout),
        };
        if let Err(error) = self.remove_instance(&id).await {
            tracing::warn!(container = %spec.name, error = %error, "could not remove a container that failed to start");
        }
        Err(failure)
    }

    /// Stops a container: SIGTERM (or the image's stop signal), then SIGKILL after
    /// `grace`. The call is bounded by the engine timeout plus `grace`. A container that is
    /// already stopped or gone counts as stopped.
    pub async fn stop_instance(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let limit = self.timeout + grace;
        // bollard's own header timeout must also allow for the grace period.
        let docker = self.docker.clone().with_timeout(bollard_timeout(limit));
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        match self
            .timed("stop", id, limit, docker.stop_container(id, Some(options)))
            .await?
        {
            Ok(()) => Ok(()),
            Err(error) if status_of(&error) == Some(404) => Ok(()),
            Err(source) => Err(DockerError::Call {
                call: "stop",
                target: id.to_owned(),
                source,
            }),
        }
    }

    /// Removes a container, running or not, with its anonymous volumes. Idempotent: a
    /// container that does not exist, or whose removal is already under way, counts as
    /// removed.
    pub async fn remove_instance(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .timed(
                "remove",
                id,
                self.timeout,
                self.docker.remove_container(id, Some(options)),
            )
            .await?
        {
            Ok(()) => Ok(()),
            Err(error) if status_of(&error) == Some(404) => Ok(()),
            Err(error)
                if status_of(&error) == Some(409)
                    && message_of(&error).contains("already in progress") =>
            {
                Ok(())
            }
            Err(source) => Err(DockerError::Call {
                call: "remove",
                target: id.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::PortSummary;

    use super::*;

    fn summary(
        state: ContainerSummaryStateEnum,
        labels: &[(&str, &str)],
        published: &[(u16, u16)],
    ) -> ContainerSummary {
        ContainerSummary {
            id: Some("abc".to_owned()),
            names: Some(vec!["/gru-c-n-web-0123".to_owned()]),
            created: Some(1_700_000_000),
            state: Some(state),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ports: Some(
                published
                    .iter()
                    .map(|(private, public)| PortSummary {
                        ip: Some("0.0.0.0".to_owned()),
                        private_port: *private,
                        public_port: Some(*public),
                        typ: Some(PortSummaryTypeEnum::TCP),
                    })
                    .collect(),
            ),
            ..ContainerSummary::default()
        }
    }

    const GRU_LABELS: [(&str, &str); 6] = [
        ("org.gru.cluster", "c"),
        ("org.gru.node", "n"),
        ("org.gru.service", "web"),
        ("org.gru.instance", "0123"),
        ("org.gru.host-ports", "8080/tcp=50001"),
        ("org.gru.cpuset", "1"),
    ];

    #[test]
    fn listed_container_is_read_from_its_labels() {
        let listed = summary(ContainerSummaryStateEnum::CREATED, &GRU_LABELS, &[]);
        let managed = managed_from_summary(&listed).expect("managed");
        assert_eq!(managed.name, "gru-c-n-web-0123");
        assert_eq!(
            (
                managed.cluster.as_str(),
                managed.node.as_str(),
                managed.service.as_str()
            ),
            ("c", "n", "web")
        );
        assert_eq!(managed.instance, "0123");
        assert_eq!(managed.state, ContainerState::Created);
        assert_eq!(managed.host_port(8080), Some(50001));
        assert_eq!(managed.cpuset.as_deref(), Some("1"));
        assert_eq!(
            managed.created_at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn container_without_ports_label_reports_published_ports() {
        let listed = summary(
            ContainerSummaryStateEnum::RUNNING,
            &[("org.gru.cluster", "c")],
            &[(8080, 50007)],
        );
        let managed = managed_from_summary(&listed).expect("managed");
        assert_eq!(managed.host_port(8080), Some(50007));
        assert_eq!(managed.cpuset, None);
    }

    #[test]
    fn container_without_cluster_label_is_not_managed() {
        let foreign = summary(ContainerSummaryStateEnum::RUNNING, &[], &[(80, 50000)]);
        assert_eq!(managed_from_summary(&foreign), None);
    }

    #[test]
    fn reservations_count_labels_of_live_containers_and_every_published_port() {
        let listed = [
            summary(ContainerSummaryStateEnum::CREATED, &GRU_LABELS, &[]),
            summary(
                ContainerSummaryStateEnum::EXITED,
                &[
                    ("org.gru.host-ports", "8080/tcp=50002"),
                    ("org.gru.cpuset", "0"),
                ],
                &[],
            ),
            summary(ContainerSummaryStateEnum::RUNNING, &[], &[(80, 50003)]),
        ];
        let held = reservations(&listed);
        assert_eq!(
            held.ports,
            BTreeSet::from([(Protocol::Tcp, 50001), (Protocol::Tcp, 50003)])
        );
        let cpus: Vec<&[u32]> = held.cpusets.iter().map(CpuSet::cpus).collect();
        assert_eq!(cpus, [&[1][..]]);
    }

    #[test]
    fn states_that_hold_resources() {
        let cases = [
            (ContainerSummaryStateEnum::CREATED, true),
            (ContainerSummaryStateEnum::RUNNING, true),
            (ContainerSummaryStateEnum::PAUSED, true),
            (ContainerSummaryStateEnum::RESTARTING, true),
            (ContainerSummaryStateEnum::REMOVING, false),
            (ContainerSummaryStateEnum::EXITED, false),
            (ContainerSummaryStateEnum::DEAD, false),
        ];
        for (state, holds) in cases {
            assert_eq!(
                ContainerState::from_summary(Some(state)).holds_resources(),
                holds,
                "{state}"
            );
        }
    }
}
