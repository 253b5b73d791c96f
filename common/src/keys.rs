//! The etcd key layout, in one place.
//!
//! ```text
//! /gru/<cluster>/uuid                          cluster id (gru create)
//! /gru/<cluster>/secret                        cluster key: authenticates agents to each other
//! /gru/<cluster>/key-rotation                  the rotation under way (common::auth::KeyRotation)
//! /gru/<cluster>/tokens/<name>                 an operator token's public key, role, expiry
//!                                              (common::auth::TokenRecord)
//! /gru/<cluster>/config                        agent configuration (canonical JSON)
//! /gru/<cluster>/policy                        policy configuration
//! /gru/<cluster>/services/<service>            service descriptor
//! /gru/<cluster>/analytics/<analytic>          analytic
//! /gru/<cluster>/nodes/<node>/config           NodeConfig     } all four under the
//! /gru/<cluster>/nodes/<node>/constraints      NodeConstraints} agent's one lease
//! /gru/<cluster>/nodes/<node>/resources        NodeResources  }
//! /gru/<cluster>/nodes/<node>/active           "true" | "false"
//! /gru/<cluster>/scaling/<service>/<part>      the service's scaling ledger (leaderless
//!                                              coordination: out-cooldown, in-cooldown, intent,
//!                                              last-claim, target)
//! /gru/<cluster>/rollouts/<service>            the service's rollout record (common::rollout)
//! /gru/<cluster>/starting/<service>/<instance> host:port of an instance not (or no longer)
//!                                              ready: counted, not in discovery (agent's lease)
//! <AppRoot>/<service>/<instance>               host:port of a ready instance (agent's lease)
//! ```
//!
//! Every function here returns a full key; nothing else in gru formats a key by hand, so
//! the tests at the bottom pin the whole tree.

use std::fmt;

/// Root of every cluster's tree.
pub const ROOT: &str = "/gru/";

/// Why a cluster, node or service name cannot be used as a key segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?} {reason}")]
pub struct InvalidName {
    pub kind: &'static str,
    pub name: String,
    pub reason: &'static str,
}

/// Checks that `name` is usable as one segment of a key: non-empty, at most 128 bytes,
/// made of ASCII letters, digits, `-`, `_` and `.` (so it is also a valid Docker
/// container-name fragment and label value), and not `.` or `..`.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), InvalidName> {
    let fail = |reason| {
        Err(InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("is empty");
    }
    if name.len() > 128 {
        return fail("is longer than 128 bytes");
    }
    if name == "." || name == ".." {
        return fail("is a path component");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return fail("may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// The keys of one cluster. Construct it once with a checked name, then ask it for keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    cluster: String,
}

impl ClusterKeys {
    pub fn new(cluster: &str) -> Result<Self, InvalidName> {
        check_name("cluster", cluster)?;
        Ok(Self {
            cluster: cluster.to_owned(),
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `/gru/<cluster>/`: every key of the cluster starts with it.
    pub fn prefix(&self) -> String {
        format!("{ROOT}{}/", self.cluster)
    }

    pub fn uuid(&self) -> String {
        format!("{}uuid", self.prefix())
    }

    pub fn secret(&self) -> String {
        format!("{}secret", self.prefix())
    }

    /// `/gru/<cluster>/key-rotation`: the previous cluster key and the overlap window.
    pub fn key_rotation(&self) -> String {
        format!("{}key-rotation", self.prefix())
    }

    /// `/gru/<cluster>/tokens/`: every operator token of the cluster.
    pub fn tokens_prefix(&self) -> String {
        format!("{}tokens/", self.prefix())
    }

    /// `/gru/<cluster>/tokens/<name>`: one token's record (never the token).
    pub fn token(&self, name: &str) -> String {
        format!("{}{name}", self.tokens_prefix())
    }

    pub fn config(&self) -> String {
        format!("{}config", self.prefix())
    }

    pub fn policy(&self) -> String {
        format!("{}policy", self.prefix())
    }

    pub fn services_prefix(&self) -> String {
        format!("{}services/", self.prefix())
    }

    pub fn service(&self, service: &str) -> String {
        format!("{}{service}", self.services_prefix())
    }

    pub fn analytics_prefix(&self) -> String {
        format!("{}analytics/", self.prefix())
    }

    pub fn analytic(&self, analytic: &str) -> String {
        format!("{}{analytic}", self.analytics_prefix())
    }

    pub fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.prefix())
    }

    /// `/gru/<cluster>/nodes/<node>/`: all of one node's keys.
    pub fn node_prefix(&self, node: &str) -> String {
        format!("{}{node}/", self.nodes_prefix())
    }

    pub fn node(&self, node: &str, field: NodeField) -> String {
        format!("{}{field}", self.node_prefix(node))
    }

    /// `/gru/<cluster>/scaling/`: every service's scaling ledger (what an agent watches to
    /// learn of target-tracking decisions).
    pub fn scaling_root(&self) -> String {
        format!("{}scaling/", self.prefix())
    }

    /// The service and part of a ledger key, if `key` is one.
    pub fn parse_scaling_key<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        key.strip_prefix(&self.scaling_root())?
            .split_once('/')
            .filter(|(service, part)| !service.is_empty() && !part.contains('/'))
    }

    /// `/gru/<cluster>/scaling/<service>/`: the service's scaling ledger.
    pub fn scaling_prefix(&self, service: &str) -> String {
        format!("{}scaling/{service}/", self.prefix())
    }

    pub fn scaling(&self, service: &str, part: LedgerPart) -> String {
        format!("{}{}", self.scaling_prefix(service), part.as_str())
    }

    /// `/gru/<cluster>/rollouts/`: every service's rollout record.
    pub fn rollouts_prefix(&self) -> String {
        format!("{}rollouts/", self.prefix())
    }

    /// `/gru/<cluster>/rollouts/<service>`: the rollout toward the service's descriptor.
    pub fn rollout(&self, service: &str) -> String {
        format!("{}{service}", self.rollouts_prefix())
    }

    /// `/gru/<cluster>/node-scaling/add-node`: the cluster's last add-node call, while its
    /// cooldown lasts (lease: `Nodes.Cooldown`): created by the one agent that claims it.
    pub fn add_node_claim(&self) -> String {
        format!("{}node-scaling/add-node", self.prefix())
    }

    /// `/gru/<cluster>/node-scaling/remove-node`: the cluster's last idle node removal,
    /// while its cooldown lasts (lease: `Nodes.Cooldown`), created by the node it removes.
    pub fn remove_node_claim(&self) -> String {
        format!("{}node-scaling/remove-node", self.prefix())
    }

    /// `/gru/<cluster>/drains/`: the nodes being drained.
    pub fn drains_prefix(&self) -> String {
        format!("{}drains/", self.prefix())
    }

    /// `/gru/<cluster>/drains/<node>`: the node's drain (no lease: it survives the agent's
    /// restart), written by the node's own agent on `drain node`, deleted on `undrain node`
    /// and when the node leaves.
    pub fn drain(&self, node: &str) -> String {
        format!("{}{node}", self.drains_prefix())
    }

    /// Splits a key under [`Self::nodes_prefix`] into node name and field; `None` for any
    /// other key (including unknown fields, so a newer writer cannot confuse an older reader).
    pub fn parse_node_key<'k>(&self, key: &'k str) -> Option<(&'k str, NodeField)> {
        let rest = key.strip_prefix(&self.nodes_prefix())?;
        let (node, field) = rest.split_once('/')?;
        let field = NodeField::ALL.into_iter().find(|f| f.as_str() == field)?;
        (!node.is_empty()).then_some((node, field))
    }

    /// The discovery root: `Discovery.AppRoot` normalised to one leading `/` and no trailing
    /// `/`, or `/gru/<cluster>/discovery` when it is empty.
    pub fn discovery_root(&self, app_root: &str) -> String {
        let trimmed = app_root.trim().trim_matches('/');
        if trimmed.is_empty() {
            format!("{}discovery", self.prefix())
        } else {
            format!("/{trimmed}")
        }
    }

    /// `<AppRoot>/<service>/`: every running instance of `service`.
    pub fn discovery_service_prefix(&self, app_root: &str, service: &str) -> String {
        format!("{}/{service}/", self.discovery_root(app_root))
    }

    /// `<AppRoot>/<service>/<instance>` = `host:port`.
    pub fn discovery_instance(&self, app_root: &str, service: &str, instance: &str) -> String {
        format!(
            "{}{instance}",
            self.discovery_service_prefix(app_root, service)
        )
    }
}

impl ClusterKeys {
    /// `/gru/<cluster>/starting/`: the instances that run but are not ready (their readiness
    /// check has not passed yet, or fails now). Counted with the discovery records, never
    /// served: discovery's readers see only ready instances.
    pub fn starting_root(&self) -> String {
        format!("{}starting/", self.prefix())
    }

    /// `/gru/<cluster>/starting/<service>/<instance>` = `host:port`.
    pub fn starting_instance(&self, service: &str, instance: &str) -> String {
        format!("{}{service}/{instance}", self.starting_root())
    }
}

/// The four records a node keeps under its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeField {
    Config,
    Constraints,
    Resources,
    Active,
}

impl NodeField {
    pub const ALL: [NodeField; 4] = [
        NodeField::Config,
        NodeField::Constraints,
        NodeField::Resources,
        NodeField::Active,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeField::Config => "config",
            NodeField::Constraints => "constraints",
            NodeField::Resources => "resources",
            NodeField::Active => "active",
        }
    }
}

impl fmt::Display for NodeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The records of a service's scaling ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerPart {
    /// Present while scale-out cools down (lease TTL = CooldownOut).
    OutCooldown,
    /// Present while scale-in cools down (lease TTL = CooldownIn).
    InCooldown,
    /// The last claim, until its instances settle.
    Intent,
    /// The last claim, kept (no lease): every claim compares its revision, so a claim made
    /// after another agent read the ledger fails that agent's claim even once its intent
    /// has expired.
    LastClaim,
    /// The standing target-tracking decision, while agents fill it (lease TTL = the fill
    /// window).
    Target,
    /// A rollout step under way: its node replaces instances (lease TTL = the step's
    /// longest run); no scaling step and no other rollout step is claimed meanwhile.
    RolloutStep,
}

impl LedgerPart {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerPart::OutCooldown => "out-cooldown",
            LedgerPart::InCooldown => "in-cooldown",
            LedgerPart::Intent => "intent",
            LedgerPart::LastClaim => "last-claim",
            LedgerPart::Target => "target",
            LedgerPart::RolloutStep => "rollout-step",
        }
    }
}

/// Returns the part of `key` after `prefix` if it is one non-empty segment (no `/`), as
/// for `/gru/c/services/<name>`.
pub fn leaf_name<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ClusterKeys {
        ClusterKeys::new("myCluster").expect("valid name")
    }

    #[test]
    fn cluster_keys_match_the_documented_tree() {
        let k = keys();
        let table = [
            (k.prefix(), "/gru/myCluster/"),
            (k.uuid(), "/gru/myCluster/uuid"),
            (k.secret(), "/gru/myCluster/secret"),
            (k.key_rotation(), "/gru/myCluster/key-rotation"),
            (k.tokens_prefix(), "/gru/myCluster/tokens/"),
            (k.token("ops"), "/gru/myCluster/tokens/ops"),
            (k.config(), "/gru/myCluster/config"),
            (k.policy(), "/gru/myCluster/policy"),
            (k.services_prefix(), "/gru/myCluster/services/"),
            (k.service("web"), "/gru/myCluster/services/web"),
            (k.analytics_prefix(), "/gru/myCluster/analytics/"),
            (
                k.analytic("resp_time_ratio"),
                "/gru/myCluster/analytics/resp_time_ratio",
            ),
            (k.nodes_prefix(), "/gru/myCluster/nodes/"),
            (k.node_prefix("node1"), "/gru/myCluster/nodes/node1/"),
            (
                k.node("node1", NodeField::Config),
                "/gru/myCluster/nodes/node1/config",
            ),
            (
                k.node("node1", NodeField::Constraints),
                "/gru/myCluster/nodes/node1/constraints",
            ),
            (
                k.node("node1", NodeField::Resources),
                "/gru/myCluster/nodes/node1/resources",
            ),
            (
                k.node("node1", NodeField::Active),
                "/gru/myCluster/nodes/node1/active",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn discovery_keys_normalise_app_root() {
        let k = keys();
        let table = [
            ("app/shop/services", "/app/shop/services/web/i1"),
            ("/app/shop/services/", "/app/shop/services/web/i1"),
            ("  ", "/gru/myCluster/discovery/web/i1"),
            ("", "/gru/myCluster/discovery/web/i1"),
        ];
        for (root, want) in table {
            assert_eq!(
                k.discovery_instance(root, "web", "i1"),
                want,
                "root {root:?}"
            );
        }
        assert_eq!(k.discovery_service_prefix("app/x", "db"), "/app/x/db/");
    }

    #[test]
    fn starting_records_sit_beside_the_ledgers_whatever_the_app_root() {
        let k = keys();
        assert_eq!(k.starting_root(), "/gru/myCluster/starting/");
        assert_eq!(
            k.starting_instance("web", "i1"),
            "/gru/myCluster/starting/web/i1"
        );
    }

    #[test]
    fn node_keys_parse_back_and_reject_others() {
        let k = keys();
        for field in NodeField::ALL {
            let key = k.node("n-1", field);
            assert_eq!(k.parse_node_key(&key), Some(("n-1", field)));
        }
        for other in [
            "/gru/myCluster/nodes/n1",
            "/gru/myCluster/nodes/n1/unknown",
            "/gru/myCluster/nodes//config",
            "/gru/other/nodes/n1/config",
            "/gru/myCluster/services/web",
        ] {
            assert_eq!(k.parse_node_key(other), None, "{other}");
        }
    }

    #[test]
    fn leaf_name_takes_one_segment() {
        assert_eq!(
            leaf_name("/gru/c/services/", "/gru/c/services/web"),
            Some("web")
        );
        assert_eq!(leaf_name("/gru/c/services/", "/gru/c/services/"), None);
        assert_eq!(leaf_name("/gru/c/services/", "/gru/c/services/a/b"), None);
        assert_eq!(leaf_name("/gru/c/services/", "/gru/d/services/web"), None);
    }

    #[test]
    fn names_that_would_break_the_tree_are_rejected() {
        for bad in ["", "a/b", "..", ".", "has space", "naïve", &"x".repeat(129)] {
            assert!(check_name("node", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["n1", "node-1", "my_cluster", "svc.v2", "A"] {
            assert!(check_name("node", good).is_ok(), "{good:?} rejected");
        }
        let err = check_name("cluster", "a/b").expect_err("slash");
        assert_eq!(
            err.to_string(),
            "cluster name \"a/b\" may only hold ASCII letters, digits, '-', '_' and '.'"
        );
    }

    #[test]
    fn ledger_keys_parse_back_to_service_and_part() {
        let keys = ClusterKeys::new("shop").expect("valid");
        assert_eq!(keys.scaling_root(), "/gru/shop/scaling/");
        let target = keys.scaling("web", LedgerPart::Target);
        assert_eq!(target, "/gru/shop/scaling/web/target");
        assert_eq!(keys.parse_scaling_key(&target), Some(("web", "target")));
        assert_eq!(keys.parse_scaling_key("/gru/shop/scaling/web"), None);
        assert_eq!(
            keys.parse_scaling_key("/gru/other/scaling/web/target"),
            None
        );
        assert_eq!(keys.parse_scaling_key("/gru/shop/scaling/web/a/b"), None);
        assert_eq!(
            keys.scaling("web", LedgerPart::RolloutStep),
            "/gru/shop/scaling/web/rollout-step"
        );
    }

    #[test]
    fn rollout_records_sit_beside_the_services() {
        let keys = ClusterKeys::new("shop").expect("valid");
        assert_eq!(keys.rollout("web"), "/gru/shop/rollouts/web");
        assert_eq!(keys.drain("n1"), "/gru/shop/drains/n1");
        assert_eq!(keys.add_node_claim(), "/gru/shop/node-scaling/add-node");
        assert_eq!(
            keys.remove_node_claim(),
            "/gru/shop/node-scaling/remove-node"
        );
        assert_eq!(
            leaf_name(&keys.rollouts_prefix(), &keys.rollout("web")),
            Some("web")
        );
    }
}
