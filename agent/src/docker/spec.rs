//! What to create for one instance of a service: a plain value built from the service
//! descriptor and the agent's choices, then turned into the engine's create request.
//!
//! Building is pure (the agent's environment is passed in as a function), so every rule of
//! the descriptor-to-container mapping is unit-tested without an engine.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding as BollardPortBinding};
use common::config::ServiceDescriptor;

use super::labels::{
    LABEL_CLUSTER, LABEL_CPUSET, LABEL_HOST_PORTS, LABEL_INSTANCE, LABEL_NODE, LABEL_SERVICE,
    LABEL_VERSION, container_name,
};
use super::ports::{GuestPort, format_host_ports};

/// Host address published ports bind to unless the agent says otherwise: every interface,
/// as `docker run -p H:C` does, so that instances are reachable from other nodes.
pub const DEFAULT_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Where an instance goes on this engine: what the agent chose for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Host port of each published container port, keyed in Docker's form (`8080/tcp`), as
    /// [`PortAllocator::allocate`](super::ports::PortAllocator::allocate) returns them.
    pub host_ports: BTreeMap<String, u16>,
    /// The cores chosen for `cpunumber`; ignored when the service names its `CpusetCpus`.
    pub cpuset: Option<String>,
    /// The host address published ports bind to.
    pub bind_ip: IpAddr,
}

impl Default for Placement {
    fn default() -> Placement {
        Placement {
            host_ports: BTreeMap::new(),
            cpuset: None,
            bind_ip: DEFAULT_BIND_IP,
        }
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    /// The container port, `8080/tcp`.
    pub guest: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// Everything the engine is told when creating an instance's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `gru-<cluster>-<node>-<service>-<short id>`.
    pub name: String,
    pub service: String,
    pub instance: String,
    pub image: String,
    /// Empty: the image's own command / entrypoint.
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    /// `KEY=value`, in the descriptor's key order.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub memory_bytes: Option<u64>,
    pub cpuset_cpus: Option<String>,
    /// Gru's `CpuShares`, the container's relative CPU weight; `None` for the default.
    pub cpu_shares: Option<u64>,
    /// Every container port of the service's `Ports`, `8080/tcp`.
    pub exposed_ports: Vec<String>,
    /// The container ports that have a host port in the placement.
    pub port_bindings: Vec<PortBinding>,
    /// Bind mounts, `host:container[:options]`, as `Volumes` lists them.
    pub binds: Vec<String>,
    /// Container paths given anonymous volumes, as Gru's object form of `Volumes` names
    /// them (removed with the container).
    pub mount_points: Vec<String>,
    pub links: Vec<String>,
    pub stop_timeout_secs: u64,
}

impl ContainerSpec {
    /// The container for instance `instance` of `service`, managed by `node` of `cluster`.
    ///
    /// * `Env` values that are empty are filled from the agent's environment
    ///   (`agent_env`), as Gru did; those still empty are passed empty (`KEY=`).
    /// * `cpuset_cpus` is the service's `CpusetCpus` if given, else the placement's cores.
    /// * A container port without a host port in the placement is exposed but not
    ///   published (the allocator gives every port one, so this only happens by hand).
    pub fn build(
        service: &ServiceDescriptor,
        cluster: &str,
        node: &str,
        instance: &str,
        placement: &Placement,
        agent_env: &impl Fn(&str) -> Option<String>,
    ) -> ContainerSpec {
        let config = &service.configuration;
        let env = config
            .env
            .iter()
            .map(|(key, value)| {
                let value = if value.is_empty() {
                    agent_env(key).unwrap_or_default()
                } else {
                    value.clone()
                };
                format!("{key}={value}")
            })
            .collect();
        let cpuset_cpus = config
            .cpuset_cpus
            .as_ref()
            .map(|set| set.as_str().to_owned())
            .or_else(|| placement.cpuset.clone())
            .filter(|set| !set.is_empty());
        let guests: Vec<GuestPort> = config
            .ports
            .keys()
            .filter_map(|k| GuestPort::parse(k))
            .collect();
        let port_bindings: Vec<PortBinding> = guests
            .iter()
            .filter_map(|guest| {
                let guest = guest.to_string();
                let host_port = *placement.host_ports.get(&guest)?;
                Some(PortBinding {
                    guest,
                    host_ip: placement.bind_ip,
                    host_port,
                })
            })
            .collect();
        let published: BTreeMap<String, u16> = port_bindings
            .iter()
            .map(|b| (b.guest.clone(), b.host_port))
            .collect();

        let mut labels = BTreeMap::from([
            (LABEL_CLUSTER.to_owned(), cluster.to_owned()),
            (LABEL_NODE.to_owned(), node.to_owned()),
            (LABEL_SERVICE.to_owned(), service.name.clone()),
            (LABEL_INSTANCE.to_owned(), instance.to_owned()),
            (LABEL_VERSION.to_owned(), service.version()),
        ]);
        if !published.is_empty() {
            labels.insert(LABEL_HOST_PORTS.to_owned(), format_host_ports(&published));
        }
        if let Some(cpuset) = &cpuset_cpus {
            labels.insert(LABEL_CPUSET.to_owned(), cpuset.clone());
        }

        ContainerSpec {
            name: container_name(cluster, node, &service.name, instance),
            service: service.name.clone(),
            instance: instance.to_owned(),
            image: service.image.clone(),
            cmd: config.cmd.clone(),
            entrypoint: config.entrypoint.clone(),
            env,
            labels,
            memory_bytes: config.memory.map(|m| m.bytes()),
            cpuset_cpus,
            cpu_shares: config.cpu_shares.filter(|shares| *shares != 0),
            exposed_ports: guests.iter().map(ToString::to_string).collect(),
            port_bindings,
            binds: config.volumes.binds().to_vec(),
            mount_points: config.volumes.mount_points(),
            links: config.links.clone(),
            stop_timeout_secs: config.stop_timeout_secs,
        }
    }

    /// The host port of each published container port, keyed `8080/tcp`.
    pub fn host_ports(&self) -> BTreeMap<String, u16> {
        self.port_bindings
            .iter()
            .map(|b| (b.guest.clone(), b.host_port))
            .collect()
    }

    /// The engine's create request. No restart policy: the agent decides what runs.
    pub(super) fn to_create_body(&self) -> ContainerCreateBody {
        let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        let mut port_map: HashMap<String, Option<Vec<BollardPortBinding>>> = HashMap::new();
        for binding in &self.port_bindings {
            port_map
                .entry(binding.guest.clone())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(BollardPortBinding {
                    host_ip: Some(binding.host_ip.to_string()),
                    host_port: Some(binding.host_port.to_string()),
                });
        }
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: non_empty(&self.cmd),
            entrypoint: non_empty(&self.entrypoint),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone().into_iter().collect()),
            exposed_ports: non_empty(&self.exposed_ports),
            volumes: non_empty(&self.mount_points),
            stop_timeout: Some(i64::try_from(self.stop_timeout_secs).unwrap_or(i64::MAX)),
            host_config: Some(HostConfig {
                memory: self
                    .memory_bytes
                    .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
                cpuset_cpus: self.cpuset_cpus.clone(),
                cpu_shares: self
                    .cpu_shares
                    .map(|shares| i64::try_from(shares).unwrap_or(i64::MAX)),
                port_bindings: (!port_map.is_empty()).then_some(port_map),
                binds: non_empty(&self.binds),
                links: non_empty(&self.links),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use common::config::parse_service;

    use super::*;

    const WEB: &str = r#"{
        "Name": "web",
        "Image": "gru-workload:latest",
        "Configuration": {
            "Memory": "64m",
            "StopTimeout": 3,
            "Env": { "SERVICE_NAME": "web", "HostIP": "", "UNSET": "" },
            "Ports": { "8080": "50000-50009", "53/udp": "50000-50009" },
            "Cmd": ["--flag"],
            "Entrypoint": ["/gru-workload"],
            "Volumes": ["/srv/data:/data:ro"],
            "Links": ["db:db"]
        }
    }"#;

    fn service(text: &str) -> ServiceDescriptor {
        parse_service("services/web.json", text).expect("valid service")
    }

    fn agent_env(key: &str) -> Option<String> {
        (key == "HostIP").then(|| "10.0.0.7".to_owned())
    }

    fn placement() -> Placement {
        Placement {
            host_ports: BTreeMap::from([
                ("8080/tcp".to_owned(), 50003),
                ("53/udp".to_owned(), 50004),
            ]),
            cpuset: Some("1".to_owned()),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    fn build(service: &ServiceDescriptor, placement: &Placement) -> ContainerSpec {
        ContainerSpec::build(
            service,
            "prod",
            "node-1",
            "0123456789abcdef",
            placement,
            &agent_env,
        )
    }

    #[test]
    fn descriptor_fields_reach_the_spec() {
        let spec = build(&service(WEB), &placement());
        assert_eq!(spec.name, "gru-prod-node-1-web-0123456789ab");
        assert_eq!(spec.image, "gru-workload:latest");
        assert_eq!(spec.cmd, ["--flag"]);
        assert_eq!(spec.entrypoint, ["/gru-workload"]);
        assert_eq!(spec.memory_bytes, Some(64 << 20));
        assert_eq!(spec.binds, ["/srv/data:/data:ro"]);
        assert_eq!(spec.links, ["db:db"]);
        assert_eq!(spec.stop_timeout_secs, 3);
    }

    #[test]
    fn empty_env_values_come_from_the_agent_or_stay_empty() {
        let spec = build(&service(WEB), &placement());
        assert_eq!(spec.env, ["HostIP=10.0.0.7", "SERVICE_NAME=web", "UNSET="]);
    }

    #[test]
    fn labels_name_cluster_node_service_instance_version_and_reservations() {
        let web = service(WEB);
        let version = web.version();
        let spec = build(&web, &placement());
        let expected = [
            ("org.gru.cluster", "prod"),
            ("org.gru.cpuset", "1"),
            ("org.gru.host-ports", "53/udp=50004,8080/tcp=50003"),
            ("org.gru.instance", "0123456789abcdef"),
            ("org.gru.node", "node-1"),
            ("org.gru.service", "web"),
            ("org.gru.version", version.as_str()),
        ];
        let labels: Vec<(&str, &str)> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn ports_bind_the_chosen_host_ports_on_the_given_address() {
        let spec = build(&service(WEB), &placement());
        assert_eq!(spec.exposed_ports, ["53/udp", "8080/tcp"]);
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            spec.port_bindings,
            [
                PortBinding {
                    guest: "53/udp".to_owned(),
                    host_ip: localhost,
                    host_port: 50004
                },
                PortBinding {
                    guest: "8080/tcp".to_owned(),
                    host_ip: localhost,
                    host_port: 50003
                },
            ]
        );
    }

    #[test]
    fn bind_address_defaults_to_every_interface() {
        let placement = Placement {
            host_ports: BTreeMap::from([("8080/tcp".to_owned(), 50000)]),
            ..Placement::default()
        };
        let spec = build(&service(WEB), &placement);
        let body = spec.to_create_body();
        let bindings = body
            .host_config
            .and_then(|h| h.port_bindings)
            .expect("bindings");
        let binding = bindings["8080/tcp"].as_ref().expect("8080 published");
        assert_eq!(binding[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(binding[0].host_port.as_deref(), Some("50000"));
        // 53/udp has no host port in this placement: exposed, not published.
        assert!(!bindings.contains_key("53/udp"));
    }

    #[test]
    fn service_cpuset_wins_over_the_chosen_cores() {
        let pinned =
            service(r#"{"Name": "web", "Image": "i", "Configuration": {"CpusetCpus": "0-1"}}"#);
        assert_eq!(
            build(&pinned, &placement()).cpuset_cpus.as_deref(),
            Some("0-1")
        );
        let free = service(r#"{"Name": "web", "Image": "i"}"#);
        assert_eq!(build(&free, &placement()).cpuset_cpus.as_deref(), Some("1"));
        let unpinned = Placement::default();
        let spec = build(&free, &unpinned);
        assert_eq!(spec.cpuset_cpus, None);
        assert!(!spec.labels.contains_key(LABEL_CPUSET));
        assert!(!spec.labels.contains_key(LABEL_HOST_PORTS));
    }

    #[test]
    fn create_body_carries_the_spec() {
        let body = build(&service(WEB), &placement()).to_create_body();
        assert_eq!(body.image.as_deref(), Some("gru-workload:latest"));
        assert_eq!(body.cmd, Some(vec!["--flag".to_owned()]));
        assert_eq!(body.stop_timeout, Some(3));
        assert_eq!(
            body.exposed_ports,
            Some(vec!["53/udp".to_owned(), "8080/tcp".to_owned()])
        );
        let labels = body.labels.expect("labels");
        assert_eq!(
            labels.get("org.gru.service").map(String::as_str),
            Some("web")
        );
        let host = body.host_config.expect("host config");
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.cpuset_cpus.as_deref(), Some("1"));
        assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".to_owned()]));
        assert_eq!(host.links, Some(vec!["db:db".to_owned()]));
        assert_eq!(host.restart_policy, None);
    }

    #[test]
    fn gru_s_cpu_shares_and_volume_object_reach_the_create_body() {
        let gru = service(
            r#"{"Name": "web", "Image": "i",
                "Configuration": {"cpushares": 512, "Volumes": {"/data": {}, "/cache": {}}}}"#,
        );
        let body = build(&gru, &Placement::default()).to_create_body();
        assert_eq!(
            body.volumes,
            Some(vec!["/cache".to_owned(), "/data".to_owned()])
        );
        let host = body.host_config.expect("host config");
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.binds, None);
        let defaults = build(
            &service(r#"{"Name": "web", "Image": "i", "Configuration": {"CpuShares": 0}}"#),
            &Placement::default(),
        )
        .to_create_body();
        assert_eq!(defaults.volumes, None);
        assert_eq!(defaults.host_config.and_then(|h| h.cpu_shares), None);
    }

    #[test]
    fn empty_cmd_and_entrypoint_leave_the_image_defaults() {
        let body = build(
            &service(r#"{"Name": "web", "Image": "i"}"#),
            &Placement::default(),
        )
        .to_create_body();
        assert_eq!(body.cmd, None);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.host_config.and_then(|h| h.port_bindings), None);
    }
}
