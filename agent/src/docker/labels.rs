//! How gru marks the containers it manages: labels, names and instance ids.
//!
//! Labels are what let a restarted agent adopt its containers, and let several agents that
//! share one engine see each other's reservations: everything the adapter needs to know
//! about a container it did not start in this process is written on the container itself.

/// The cluster a container belongs to.
pub const LABEL_CLUSTER: &str = "org.gru.cluster";
/// The node (agent) that manages the container.
pub const LABEL_NODE: &str = "org.gru.node";
/// The service the container is an instance of.
pub const LABEL_SERVICE: &str = "org.gru.service";
/// The instance id (see [`new_instance_id`]).
pub const LABEL_INSTANCE: &str = "org.gru.instance";
/// The host ports gru chose, `8080/tcp=50000,9090/udp=50001`: a reservation visible to every
/// agent on the engine from the moment the container is created, before it binds anything.
pub const LABEL_HOST_PORTS: &str = "org.gru.host-ports";
/// The cpus the container is pinned to, in `--cpuset-cpus` syntax (absent when not pinned);
/// listing containers does not return their cpuset, so it is recorded here.
pub const LABEL_CPUSET: &str = "org.gru.cpuset";

/// The version of the service descriptor the container was made from
/// (`ServiceDescriptor::version`): a rollout replaces the instances whose version is not
/// the current descriptor's.
pub const LABEL_VERSION: &str = "org.gru.version";

/// The instances a rollout step's new instance replaces, comma-separated: an agent that
/// restarts mid-step finds on the engine which old instances to stop once it is ready
/// (`tick::rollout::interrupted`).
pub const LABEL_REPLACES: &str = "org.gru.replaces";

/// Characters of the instance id kept in a container name, as Docker's short ids.
pub const SHORT_ID_LEN: usize = 12;

/// A fresh instance id: 32 lowercase hex digits (a v4 UUID without dashes).
pub fn new_instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `gru-<cluster>-<node>-<service>-<short id>`. Cluster, node and service names are checked
/// by `common::keys::check_name` (ASCII letters, digits, `-`, `_`, `.`), which Docker
/// accepts in names; any other character of the instance id is dropped so the name stays
/// valid whatever the caller passes.
pub fn container_name(cluster: &str, node: &str, service: &str, instance: &str) -> String {
    let short: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(SHORT_ID_LEN)
        .collect();
    format!("gru-{cluster}-{node}-{service}-{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_name_keeps_twelve_characters_of_the_instance() {
        let name = container_name("prod", "node-1", "web", "0123456789abcdef0123");
        assert_eq!(name, "gru-prod-node-1-web-0123456789ab");
    }

    #[test]
    fn container_name_drops_characters_docker_rejects() {
        assert_eq!(container_name("c", "n", "s", "a/b c:d"), "gru-c-n-s-abcd");
    }

    #[test]
    fn instance_ids_are_hex_and_distinct() {
        let (a, b) = (new_instance_id(), new_instance_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
