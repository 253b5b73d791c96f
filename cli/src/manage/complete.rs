//! Tab completion: which words fit where the cursor is, given the commands' grammar and the
//! cluster's names. Pure, so every position is table-tested; `editor.rs` only hands it the
//! line and the names it last read from etcd.

use super::grammar::{self, NodeSection};

/// The names completion offers, refreshed from etcd by the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub clusters: Vec<String>,
    pub nodes: Vec<String>,
    pub services: Vec<String>,
}

/// The completions of the last word of `before_cursor`: where that word starts, and the
/// candidates (sorted, each a whole word).
pub fn complete(before_cursor: &str, names: &Names) -> (usize, Vec<String>) {
    let start = before_cursor
        .rfind(char::is_whitespace)
        .map_or(0, |i| i + 1);
    let partial = &before_cursor[start..];
    let previous: Vec<&str> = before_cursor[..start].split_whitespace().collect();
    let mut candidates: Vec<String> = candidates(&previous, names)
        .into_iter()
        .filter(|c| c.starts_with(partial))
        .filter(|c| !repeats(&previous, c))
        .collect();
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Lists of names (nodes of `start agent`, services of `base-services`) do not offer a name
/// already given.
fn repeats(previous: &[&str], candidate: &str) -> bool {
    let list = matches!(
        previous,
        ["start" | "stop" | "restart", "agent", ..]
            | ["drain" | "undrain" | "leave", "node", ..]
            | ["set", "node", _, "base-services", ..]
    ) || matches!(previous, ["start" | "stop", "service", _, next, ..] if *next != "node");
    list && previous.contains(&candidate)
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| (*w).to_owned()).collect()
}

fn with_all(nodes: &[String]) -> Vec<String> {
    let mut all = nodes.to_vec();
    all.push("all".to_owned());
    all
}

fn candidates(previous: &[&str], names: &Names) -> Vec<String> {
    let nodes = || names.nodes.clone();
    let services = || names.services.clone();
    match previous {
        [] => grammar::verbs().map(str::to_owned).collect(),
        ["use"] => names.clusters.clone(),
        ["list"] => words(&["clusters", "nodes", "services"]),
        ["show"] => words(&["node", "service", "cluster"]),
        ["show", "node"] => with_all(&names.nodes),
        ["show", "node", _] => NodeSection::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        ["show", "service"] => services(),
        ["set"] => words(&["node"]),
        ["set", "node"] => with_all(&names.nodes),
        ["set", "node", _] => words(&["base-services", "cpumin", "cpumax"]),
        ["set", "node", _, "base-services", ..] => services(),
        ["start" | "stop"] => words(&["service", "agent"]),
        ["start" | "stop", "service"] => services(),
        ["start" | "stop", "service", _] => {
            let mut next = nodes();
            next.push("node".to_owned());
            next
        }
        ["start" | "stop", "service", _, "node"] => with_all(&names.nodes),
        ["start" | "stop", "service", _, "node", ..] => Vec::new(),
        ["start" | "stop", "service", _, _, ..] => nodes(),
        ["start" | "stop", "agent"] => with_all(&names.nodes),
        ["start" | "stop", "agent", rest @ ..] if !rest.contains(&"all") => nodes(),
        ["restart"] => words(&["agent"]),
        ["restart", "agent"] => with_all(&names.nodes),
        ["restart", "agent", rest @ ..] if !rest.contains(&"all") => nodes(),
        ["update"] => words(&["config", "agent", "policy", "services", "analytics", "all"]),
        ["status"] => words(&["--watch"]),
        ["why"] => nodes(),
        ["why", _] => services(),
        ["drain" | "undrain" | "leave"] => words(&["node"]),
        ["drain" | "undrain" | "leave", "node"] => with_all(&names.nodes),
        ["drain" | "undrain" | "leave", "node", rest @ ..] if !rest.contains(&"all") => nodes(),
        ["rollout"] => words(&["status", "pause", "resume", "undo"]),
        ["rollout", _] => services(),
        ["help"] => grammar::FAMILIES
            .iter()
            .map(|f| f.verb.to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            clusters: vec!["shop".into(), "staging".into()],
            nodes: vec!["north".into(), "south".into(), "west".into()],
            services: vec!["db".into(), "web".into(), "worker".into()],
        }
    }

    #[test]
    fn each_position_offers_what_fits_there() {
        let cases: &[(&str, usize, &[&str])] = &[
            (
                "",
                0,
                &[
                    "deploy", "drain", "events", "exit", "help", "leave", "list", "quit",
                    "restart", "rollout", "set", "show", "start", "status", "stop", "undeploy",
                    "undrain", "update", "use", "why",
                ],
            ),
            ("st", 0, &["start", "status", "stop"]),
            ("rollout p", 8, &["pause"]),
            ("rollout undo w", 13, &["web", "worker"]),
            ("use s", 4, &["shop", "staging"]),
            ("list n", 5, &["nodes"]),
            ("show node ", 10, &["all", "north", "south", "west"]),
            ("show node so", 10, &["south"]),
            ("show node south c", 16, &["config", "constraints"]),
            ("show service w", 13, &["web", "worker"]),
            ("set node all base-services web w", 31, &["worker"]),
            ("start service w", 14, &["web", "worker"]),
            (
                "start service web ",
                18,
                &["node", "north", "south", "west"],
            ),
            (
                "start service web node ",
                23,
                &["all", "north", "south", "west"],
            ),
            ("start service web node north ", 29, &[]),
            ("stop service web north ", 23, &["south", "west"]),
            ("start agent ", 12, &["all", "north", "south", "west"]),
            ("start agent north ", 18, &["south", "west"]),
            ("stop agent all ", 15, &[]),
            ("dr", 0, &["drain"]),
            ("undrain ", 8, &["node"]),
            ("drain node ", 11, &["all", "north", "south", "west"]),
            ("drain node north ", 17, &["south", "west"]),
            ("update p", 7, &["policy"]),
            ("status --", 7, &["--watch"]),
            ("why so", 4, &["south"]),
            ("why south we", 10, &["web"]),
            ("help st", 5, &["start", "status", "stop"]),
            ("deploy ", 7, &[]),
        ];
        for (line, start, expected) in cases {
            let (got_start, got) = complete(line, &names());
            assert_eq!(
                (got_start, got.as_slice()),
                (
                    *start,
                    &expected.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()[..]
                ),
                "{line:?}"
            );
        }
    }
}
