//! The command families: each first word, its usage lines and what it does. One table
//! serves the parser's usage errors, `help`, and completion, so they cannot drift apart.

use std::fmt;

/// A command family: its first word, its usage lines and what it does.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub verb: &'static str,
    pub usage: &'static [&'static str],
    pub summary: &'static str,
    pub details: &'static str,
}

/// Every command, in the order `help` lists them.
pub const FAMILIES: &[Family] = &[
    Family {
        verb: "use",
        usage: &["use <cluster>"],
        summary: "work on a cluster (the prompt shows it)",
        details: "Checks that the cluster exists and reads its secret, which authenticates \
                  the commands sent to its agents.",
    },
    Family {
        verb: "list",
        usage: &["list clusters|nodes|services"],
        summary: "the clusters in etcd, or the cluster's nodes or services, as a table",
        details: "nodes: name, address, active, cpus, memory, instances (asked from each agent). \
                  services: image, bounds, resources, where each is a base service, instances.",
    },
    Family {
        verb: "show",
        usage: &[
            "show node <node|all> [config|constraints|resources|status]",
            "show service <service>",
            "show cluster",
        ],
        summary: "one node's records and status, one service, or the cluster's configuration",
        details: "A node's config, constraints and resources come from etcd; its status (loop \
                  active, configuration in use, instances) from its agent.",
    },
    Family {
        verb: "deploy",
        usage: &["deploy"],
        summary: "place one instance of every service on a node with room for it",
        details: "Spreads the services over the nodes (fewest instances first, then most free \
                  room), counting each service's cpunumber and Memory against the nodes' \
                  resources and what they already run, then makes each placed service a base \
                  service of its node. The whole placement is computed first: if the nodes \
                  cannot hold every service, nothing changes and the shortfall is shown. \
                  Services that are already a base service somewhere are left where they are.",
    },
    Family {
        verb: "undeploy",
        usage: &["undeploy"],
        summary: "clear every node's base services and stop every instance",
        details: "With a node's loop active, MinInstances may start instances again.",
    },
    Family {
        verb: "set",
        usage: &[
            "set node <node|all> base-services [<service>...]",
            "set node <node|all> cpumin|cpumax <0.0-1.0>",
        ],
        summary: "replace the base services of nodes (none clears them), or record CPU bounds",
        details: "A base service is kept running on its node, one instance, whether or not the \
                  node's loop is active. The agent records it under its own lease. cpumin and \
                  cpumax are Gru's CPU bounds of a node, shown by `show node <n> constraints`; \
                  as in Gru, they are a record for operators and no decision reads them.",
    },
    Family {
        verb: "start",
        usage: &[
            "start service <service> node <node|all>",
            "start service <service> <node>...",
            "start agent <node>...|all",
        ],
        summary: "start one instance of a service on nodes, or start agents' loops",
        details: "start service waits (up to 10 s) for each agent to say how the start went. \
                  start agent makes nodes active: their loops scale services with the policy.",
    },
    Family {
        verb: "stop",
        usage: &[
            "stop service <service> node <node|all>",
            "stop service <service> <node>...",
            "stop agent <node>...|all",
        ],
        summary: "stop one instance of a service on nodes, or stop agents' loops",
        details: "stop service also removes the service from the node's base services (or it \
                  would be started again). stop agent stops the loop; containers keep running \
                  and base services are still kept.",
    },
    Family {
        verb: "drain",
        usage: &["drain node <node>...|all"],
        summary: "take nodes out of service: their instances move to other nodes",
        details: "A drained node accepts no new instance (no scale-out, fill or repair lands \
                  there; start service and base services are refused). Its instances are \
                  started on other nodes before each is stopped there, one per service at a \
                  time, through the scaling ledger; base services move too. `show node <n>` \
                  says when the drain is done; then `gru leave` (or SIGTERM) removes the \
                  node. The drain survives the agent's restart.",
    },
    Family {
        verb: "leave",
        usage: &["leave node <node>...|all"],
        summary: "drained nodes leave the cluster: their agents stop and revoke their leases",
        details: "Refused for a node that is not drained, or still moving its instances. \
                  Sending the agent SIGTERM once it is drained does the same.",
    },
    Family {
        verb: "restart",
        usage: &["restart agent <node>...|all"],
        summary: "rolling restart: each agent in turn restarts, keeping its lease and containers",
        details: "One agent after another: the agent executes its own binary again (an \
                  upgraded binary at the same path is the one that runs), takes its lease back \
                  and adopts its containers, so nothing is started or stopped and no other \
                  agent repairs. The shell waits (up to 30 s) for each to answer as a new \
                  process with its instances adopted before the next; one that does not come \
                  back stops the rolling restart. Agents under systemd: \
                  `systemctl restart gru-agent` on each node does the same.",
    },
    Family {
        verb: "undrain",
        usage: &["undrain node <node>...|all"],
        summary: "take drained nodes back into service",
        details: "The node accepts instances again; what already moved stays where it is.",
    },
    Family {
        verb: "update",
        usage: &["update [config|agent|policy|services|analytics|all]"],
        summary: "have every agent reload its configuration from etcd now",
        details: "Agents watch etcd and reload by themselves; this forces it (after a write \
                  around `gru config push`, or to check that every agent answers). Gru's \
                  `update agent` is `update config`.",
    },
    Family {
        verb: "status",
        usage: &["status [--watch [<seconds>]]"],
        summary: "services × nodes: instances and current load",
        details: "Each cell: running instances (and how many are ready, when not all are: the \
                  others are starting or fail their readiness check, so they are not in \
                  discovery), mean CPU and the analytics the node computes. \
                  --watch redraws every few seconds (default 2) until Ctrl-C or q.",
    },
    Family {
        verb: "why",
        usage: &["why <node> [<service>]"],
        summary: "a node's latest decisions: action, weights, draw and reason",
        details: "With a service, only the decisions and candidates that concern it.",
    },
    Family {
        verb: "events",
        usage: &["events [<count>]"],
        summary: "executed actions of every node, newest first",
        details: "Scale-outs, scale-ins, swaps, base-service and command starts and stops, with \
                  their results; merged from every agent's history.",
    },
    Family {
        verb: "rollout",
        usage: &["rollout status|pause|resume|undo <service>"],
        summary: "a service's rolling update: where it stands, pause, resume, or undo it",
        details: "`gru config push` starts a rollout when a service's image or configuration \
                  changes: agents replace their instances one claimed step at a time, new \
                  ones ready before old ones stop. status: the version rolled out, the one it \
                  replaces, instances on each, the step under way, and why it rolled back or \
                  halted. pause: no new step starts (one under way finishes). resume: go on \
                  after a pause or a halt. undo: put the previous descriptor back (the cluster \
                  rolls to it like to any new version).",
    },
    Family {
        verb: "help",
        usage: &["help [<command>]"],
        summary: "this list, or one command's usage",
        details: "",
    },
    Family {
        verb: "exit",
        usage: &["exit", "quit"],
        summary: "leave the shell (Ctrl-D too)",
        details: "",
    },
];

/// The family of `verb` (`quit` is `exit`).
pub fn family(verb: &str) -> Option<&'static Family> {
    let verb = if verb == "quit" { "exit" } else { verb };
    FAMILIES.iter().find(|f| f.verb == verb)
}

/// Every first word the shell understands.
pub fn verbs() -> impl Iterator<Item = &'static str> {
    FAMILIES
        .iter()
        .map(|f| f.verb)
        .chain(std::iter::once("quit"))
}

/// `usage: ...` lines of a family, one per form.
pub fn write_usage(f: &mut impl fmt::Write, family: &Family) -> fmt::Result {
    for (i, usage) in family.usage.iter().enumerate() {
        let lead = if i == 0 { "usage:" } else { "      " };
        write!(f, "\n{lead} {usage}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_usage_and_summary() {
        for family in FAMILIES {
            assert!(!family.usage.is_empty(), "{}", family.verb);
            assert!(!family.summary.is_empty(), "{}", family.verb);
            for usage in family.usage {
                let first = usage.split_whitespace().next().unwrap_or_default();
                assert!(
                    first == family.verb || (family.verb == "exit" && first == "quit"),
                    "{usage} is not a form of {}",
                    family.verb
                );
            }
        }
    }
}
