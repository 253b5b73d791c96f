//! The shell's language: what a line says, as a [`Command`] value, or why it says nothing.
//!
//! Parsing never touches etcd or an agent, so every form (and every mistake) is table-tested
//! below. A line is split on blanks; the first word picks the command family, whose usage
//! lines are printed when the rest does not fit. An unknown first word is answered with the
//! nearest known one.

use std::fmt;
use std::time::Duration;

pub use super::families::{FAMILIES, Family, family, verbs, write_usage};

/// Seconds between redraws of `status --watch` when none is given.
pub const DEFAULT_WATCH_SECS: u64 = 2;
/// Shortest redraw interval `status --watch` accepts (each redraw asks every agent).
pub const MIN_WATCH_SECS: u64 = 1;
/// Actions `events` shows when no count is given.
pub const DEFAULT_EVENTS: usize = 20;
/// Most actions `events` can show (each agent keeps 256).
pub const MAX_EVENTS: usize = 256;

/// Which nodes a command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Nodes(Vec<String>),
}

/// What `list` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListWhat {
    Clusters,
    Nodes,
    Services,
}

/// A part of a node's record for `show node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSection {
    Config,
    Constraints,
    Resources,
    Status,
}

impl NodeSection {
    pub const ALL: [NodeSection; 4] = [
        NodeSection::Config,
        NodeSection::Constraints,
        NodeSection::Resources,
        NodeSection::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeSection::Config => "config",
            NodeSection::Constraints => "constraints",
            NodeSection::Resources => "resources",
            NodeSection::Status => "status",
        }
    }
}

/// What `update` asks agents to reload. Agents reload their whole configuration whatever
/// the part (one read of the cluster's prefix), so the part is only echoed back; Gru's
/// forms are accepted so that operators' habits keep working (Gru's `update agent` is
/// `update config`: the agent configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePart {
    Config,
    Policy,
    Services,
    Analytics,
    All,
}

impl UpdatePart {
    /// The first name of a part is the one echoed back.
    const NAMES: [(&'static str, UpdatePart); 6] = [
        ("config", UpdatePart::Config),
        ("agent", UpdatePart::Config),
        ("policy", UpdatePart::Policy),
        ("services", UpdatePart::Services),
        ("analytics", UpdatePart::Analytics),
        ("all", UpdatePart::All),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, part)| *part == self)
            .map_or("all", |(name, _)| name)
    }
}

/// Gru's CPU bounds of a node, as `set node <n> cpumin|cpumax <v>` gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuBound {
    Min(f64),
    Max(f64),
}

impl CpuBound {
    pub fn name(self) -> &'static str {
        match self {
            CpuBound::Min(_) => "cpumin",
            CpuBound::Max(_) => "cpumax",
        }
    }

    pub fn value(self) -> f64 {
        match self {
            CpuBound::Min(value) | CpuBound::Max(value) => value,
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Use {
        cluster: String,
    },
    List(ListWhat),
    ShowNode {
        targets: Targets,
        section: Option<NodeSection>,
    },
    ShowService {
        service: String,
    },
    ShowCluster,
    Deploy,
    Undeploy,
    SetBaseServices {
        targets: Targets,
        services: Vec<String>,
    },
    SetNodeCpu {
        targets: Targets,
        bound: CpuBound,
    },
    StartService {
        service: String,
        targets: Targets,
    },
    StopService {
        service: String,
        targets: Targets,
    },
    StartAgent {
        targets: Targets,
    },
    StopAgent {
        targets: Targets,
    },
    /// `restart agent <n>...|all`: a rolling restart, one agent after another.
    RestartAgent {
        targets: Targets,
    },
    /// `leave node <n>...`: drained nodes leave the cluster.
    Leave {
        targets: Targets,
    },
    /// `drain node <n>...` (`drain: true`) or `undrain node <n>...`.
    Drain {
        targets: Targets,
        drain: bool,
    },
    Update {
        part: UpdatePart,
    },
    Status {
        watch: Option<Duration>,
    },
    Why {
        node: String,
        service: Option<String>,
    },
    Events {
        count: usize,
    },
    Rollout {
        action: RolloutAction,
        service: String,
    },
    Help {
        topic: Option<String>,
    },
    Exit,
}

/// What `rollout` does to a service's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Status,
    Pause,
    Resume,
    Undo,
}

impl RolloutAction {
    pub const ALL: [RolloutAction; 4] = [
        RolloutAction::Status,
        RolloutAction::Pause,
        RolloutAction::Resume,
        RolloutAction::Undo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutAction::Status => "status",
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Undo => "undo",
        }
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The first word is no command.
    Unknown {
        word: String,
        suggestion: Option<&'static str>,
    },
    /// The command is known but its arguments do not fit.
    Usage {
        family: &'static Family,
        problem: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown { word, suggestion } => {
                write!(f, "unknown command `{word}`")?;
                if let Some(suggestion) = suggestion {
                    write!(f, "; did you mean `{suggestion}`?")?;
                }
                write!(f, " (`help` lists the commands)")
            }
            ParseError::Usage { family, problem } => {
                write!(f, "{}: {problem}", family.verb)?;
                write_usage(f, family)
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// How similar (0 to 1) a word must be to a known one to be suggested.
const MIN_SIMILARITY: f64 = 0.5;

/// The known word nearest to `wanted`, if it is close enough to be a typo of it.
pub fn nearest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = wanted.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in known {
        let score = strsim::normalized_damerau_levenshtein(&wanted, &candidate.to_lowercase());
        let prefix = candidate.starts_with(&wanted) && !wanted.is_empty();
        let score = if prefix { score.max(0.9) } else { score };
        if score >= MIN_SIMILARITY && best.is_none_or(|(top, _)| score > top) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Splits a line into words (blanks separate; names never hold blanks).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Parses one line (already known not to be blank).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let words = words(line);
    let Some((&verb, rest)) = words.split_first() else {
        return Err(ParseError::Unknown {
            word: String::new(),
            suggestion: None,
        });
    };
    let verb_lower = verb.to_lowercase();
    let Some(family) = family(&verb_lower) else {
        return Err(ParseError::Unknown {
            word: verb.to_owned(),
            suggestion: nearest(verb, verbs()),
        });
    };
    parse_rest(family.verb, rest).map_err(|problem| ParseError::Usage { family, problem })
}

/// A command, or what is wrong with its arguments (the caller adds the usage lines).
type Parsed = Result<Command, String>;

/// Parses the words after the verb of a known family.
fn parse_rest(verb: &str, rest: &[&str]) -> Parsed {
    match verb {
        "use" => match rest {
            [cluster] => Ok(Command::Use {
                cluster: (*cluster).to_owned(),
            }),
            [] => Err("which cluster?".into()),
            _ => Err(too_many(&rest[1..])),
        },
        "list" => match rest {
            [what] => match *what {
                "clusters" => Ok(Command::List(ListWhat::Clusters)),
                "nodes" => Ok(Command::List(ListWhat::Nodes)),
                "services" => Ok(Command::List(ListWhat::Services)),
                other => Err(expected(
                    "clusters, nodes or services",
                    other,
                    &["clusters", "nodes", "services"],
                )),
            },
            [] => Err("list what: clusters, nodes or services?".into()),
            _ => Err(too_many(&rest[1..])),
        },
        "show" => parse_show(rest),
        "deploy" => no_args(rest, Command::Deploy),
        "undeploy" => no_args(rest, Command::Undeploy),
        "set" => parse_set(rest),
        "start" | "stop" => parse_start_stop(verb == "start", rest),
        "update" => match rest {
            [] => Ok(Command::Update {
                part: UpdatePart::All,
            }),
            [part] => UpdatePart::NAMES
                .iter()
                .find(|(name, _)| name == part)
                .map(|(_, part)| Command::Update { part: *part })
                .ok_or_else(|| {
                    let names: Vec<&str> = UpdatePart::NAMES.iter().map(|(n, _)| *n).collect();
                    expected(
                        "config (or agent), policy, services, analytics or all",
                        part,
                        &names,
                    )
                }),
            _ => Err(too_many(&rest[1..])),
        },
        "restart" => match rest {
            ["agent", nodes @ ..] if !nodes.is_empty() => Ok(Command::RestartAgent {
                targets: targets(nodes)?,
            }),
            ["agent"] => Err("which agents (node names, or all)?".into()),
            [] => Err("restart what? `agent <node>...|all`".into()),
            [other, ..] => Err(expected("agent", other, &["agent"])),
        },
        "leave" => match rest {
            ["node", nodes @ ..] if !nodes.is_empty() => Ok(Command::Leave {
                targets: targets(nodes)?,
            }),
            ["node"] => Err("which nodes (names, or all)?".into()),
            [] => Err("leave what? `node <name>`".into()),
            [other, ..] => Err(expected("node", other, &["node"])),
        },
        "drain" | "undrain" => match rest {
            ["node", nodes @ ..] if !nodes.is_empty() => Ok(Command::Drain {
                targets: targets(nodes)?,
                drain: verb == "drain",
            }),
            ["node"] => Err("which nodes (names, or all)?".into()),
            [] => Err("drain what? `node <name>`".into()),
            [other, ..] => Err(expected("node", other, &["node"])),
        },
        "status" => parse_status(rest),
        "why" => match rest {
            [node] => Ok(Command::Why {
                node: (*node).to_owned(),
                service: None,
            }),
            [node, service] => Ok(Command::Why {
                node: (*node).to_owned(),
                service: Some((*service).to_owned()),
            }),
            [] => Err("which node?".into()),
            _ => Err(too_many(&rest[2..])),
        },
        "events" => match rest {
            [] => Ok(Command::Events {
                count: DEFAULT_EVENTS,
            }),
            [count] => match count.parse::<usize>() {
                Ok(count) if (1..=MAX_EVENTS).contains(&count) => Ok(Command::Events { count }),
                _ => Err(format!(
                    "the count must be a number from 1 to {MAX_EVENTS}, not `{count}`"
                )),
            },
            _ => Err(too_many(&rest[1..])),
        },
        "rollout" => match rest {
            [] => Err("status, pause, resume or undo?".into()),
            [action, rest @ ..] => {
                let wanted = action.to_lowercase();
                let Some(action) = RolloutAction::ALL
                    .into_iter()
                    .find(|a| a.as_str() == wanted)
                else {
                    let names: Vec<&str> = RolloutAction::ALL.iter().map(|a| a.as_str()).collect();
                    return Err(expected("status, pause, resume or undo", action, &names));
                };
                match rest {
                    [service] => Ok(Command::Rollout {
                        action,
                        service: (*service).to_owned(),
                    }),
                    [] => Err("which service?".into()),
                    _ => Err(too_many(&rest[1..])),
                }
            }
        },
        "help" => match rest {
            [] => Ok(Command::Help { topic: None }),
            [topic, ..] => Ok(Command::Help {
                topic: Some((*topic).to_lowercase()),
            }),
        },
        _ => no_args(rest, Command::Exit),
    }
}

fn no_args(rest: &[&str], command: Command) -> Parsed {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(too_many(rest))
    }
}

fn too_many(extra: &[&str]) -> String {
    format!("unexpected `{}`", extra.join(" "))
}

fn expected(what: &str, found: &str, known: &[&str]) -> String {
    match nearest(found, known.iter().copied()) {
        Some(near) => format!("expected {what}, found `{found}`; did you mean `{near}`?"),
        None => format!("expected {what}, found `{found}`"),
    }
}

fn parse_show(rest: &[&str]) -> Parsed {
    match rest {
        ["node", target] => Ok(Command::ShowNode {
            targets: one_target(target),
            section: None,
        }),
        ["node", target, section] => {
            let found = NodeSection::ALL.iter().find(|s| s.as_str() == *section);
            match found {
                Some(section) => Ok(Command::ShowNode {
                    targets: one_target(target),
                    section: Some(*section),
                }),
                None => Err(expected(
                    "config, constraints, resources or status",
                    section,
                    &NodeSection::ALL.map(NodeSection::as_str),
                )),
            }
        }
        ["node"] => Err("which node (or all)?".into()),
        ["node", _, _, extra @ ..] => Err(too_many(extra)),
        ["service", service] => Ok(Command::ShowService {
            service: (*service).to_owned(),
        }),
        ["service"] => Err("which service?".into()),
        ["service", _, extra @ ..] => Err(too_many(extra)),
        ["cluster"] => Ok(Command::ShowCluster),
        ["cluster", extra @ ..] => Err(too_many(extra)),
        [] => Err("show what: node, service or cluster?".into()),
        [other, ..] => Err(expected(
            "node, service or cluster",
            other,
            &["node", "service", "cluster"],
        )),
    }
}

fn one_target(word: &str) -> Targets {
    if word == "all" {
        Targets::All
    } else {
        Targets::Nodes(vec![word.to_owned()])
    }
}

/// `<node>...|all`: `all` alone, or node names (repeats removed, order kept).
fn targets(words: &[&str]) -> Result<Targets, String> {
    match words {
        [] => Err("which nodes (names, or all)?".into()),
        ["all"] => Ok(Targets::All),
        _ if words.contains(&"all") => Err("`all` stands alone: name nodes, or say all".into()),
        _ => {
            let mut nodes: Vec<String> = Vec::new();
            for word in words {
                if !nodes.iter().any(|n| n == word) {
                    nodes.push((*word).to_owned());
                }
            }
            Ok(Targets::Nodes(nodes))
        }
    }
}

fn parse_set(rest: &[&str]) -> Parsed {
    match rest {
        ["node", target, "base-services", services @ ..] => {
            let mut unique: Vec<String> = Vec::new();
            for service in services {
                if !unique.iter().any(|s| s == service) {
                    unique.push((*service).to_owned());
                }
            }
            Ok(Command::SetBaseServices {
                targets: one_target(target),
                services: unique,
            })
        }
        ["node", target, bound @ ("cpumin" | "cpumax"), value] => {
            let value = match value.parse::<f64>() {
                Ok(value) if (0.0..=1.0).contains(&value) => value,
                _ => {
                    return Err(format!(
                        "{bound} is a fraction of the node's CPU from 0.0 to 1.0, not `{value}`"
                    ));
                }
            };
            let bound = if *bound == "cpumin" {
                CpuBound::Min(value)
            } else {
                CpuBound::Max(value)
            };
            Ok(Command::SetNodeCpu {
                targets: one_target(target),
                bound,
            })
        }
        ["node", _, bound @ ("cpumin" | "cpumax")] => Err(format!("{bound} to what (0.0 to 1.0)?")),
        ["node", _, "cpumin" | "cpumax", _, extra @ ..] => Err(too_many(extra)),
        ["node", _, other, ..] => Err(expected(
            "base-services, cpumin or cpumax",
            other,
            &["base-services", "cpumin", "cpumax"],
        )),
        ["node", _] => Err("set what: base-services, cpumin or cpumax?".into()),
        ["node"] => Err("which node (or all)?".into()),
        [] => Err("set what: node?".into()),
        [other, ..] => Err(expected("node", other, &["node"])),
    }
}

fn parse_start_stop(start: bool, rest: &[&str]) -> Parsed {
    match rest {
        ["service", service, "node", target] => {
            let targets = one_target(target);
            Ok(service_command(start, service, targets))
        }
        ["service", _, "node"] => Err("which node (or all)?".into()),
        ["service", _, "node", _, extra @ ..] => Err(too_many(extra)),
        // Gru's form: the nodes follow the service.
        ["service", service, nodes @ ..] if !nodes.is_empty() => {
            Ok(service_command(start, service, targets(nodes)?))
        }
        ["service", _] => Err("on which nodes? add `node <node|all>`".into()),
        ["service"] => Err("which service?".into()),
        ["agent", nodes @ ..] => {
            let targets = targets(nodes)?;
            Ok(if start {
                Command::StartAgent { targets }
            } else {
                Command::StopAgent { targets }
            })
        }
        [] => Err("what: service or agent?".into()),
        [other, ..] => Err(expected("service or agent", other, &["service", "agent"])),
    }
}

fn service_command(start: bool, service: &str, targets: Targets) -> Command {
    let service = service.to_owned();
    if start {
        Command::StartService { service, targets }
    } else {
        Command::StopService { service, targets }
    }
}

fn parse_status(rest: &[&str]) -> Parsed {
    let seconds = |word: &str| match word.parse::<u64>() {
        Ok(secs) if secs >= MIN_WATCH_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "the interval must be a whole number of seconds, at least {MIN_WATCH_SECS}, not `{word}`"
        )),
    };
    match rest {
        [] => Ok(Command::Status { watch: None }),
        ["--watch" | "-w" | "watch"] => Ok(Command::Status {
            watch: Some(Duration::from_secs(DEFAULT_WATCH_SECS)),
        }),
        ["--watch" | "-w" | "watch", secs] => Ok(Command::Status {
            watch: Some(seconds(secs)?),
        }),
        ["--watch" | "-w" | "watch", _, extra @ ..] => Err(too_many(extra)),
        [other, ..] => Err(expected("--watch", other, &["--watch"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Targets {
        Targets::Nodes(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn every_form_parses_to_its_command() {
        let s = |v: &str| v.to_owned();
        let cases: Vec<(&str, Command)> = vec![
            ("use shop", Command::Use { cluster: s("shop") }),
            ("list clusters", Command::List(ListWhat::Clusters)),
            ("list nodes", Command::List(ListWhat::Nodes)),
            ("  list   services ", Command::List(ListWhat::Services)),
            (
                "show node n1",
                Command::ShowNode {
                    targets: nodes(&["n1"]),
                    section: None,
                },
            ),
            (
                "show node all resources",
                Command::ShowNode {
                    targets: Targets::All,
                    section: Some(NodeSection::Resources),
                },
            ),
            (
                "show service web",
                Command::ShowService { service: s("web") },
            ),
            ("show cluster", Command::ShowCluster),
            ("deploy", Command::Deploy),
            ("undeploy", Command::Undeploy),
            (
                "set node n1 base-services web db web",
                Command::SetBaseServices {
                    targets: nodes(&["n1"]),
                    services: vec![s("web"), s("db")],
                },
            ),
            (
                "set node all base-services",
                Command::SetBaseServices {
                    targets: Targets::All,
                    services: vec![],
                },
            ),
            (
                "start service web node all",
                Command::StartService {
                    service: s("web"),
                    targets: Targets::All,
                },
            ),
            (
                "start service web node n2",
                Command::StartService {
                    service: s("web"),
                    targets: nodes(&["n2"]),
                },
            ),
            (
                "start service web n1 n3 n1",
                Command::StartService {
                    service: s("web"),
                    targets: nodes(&["n1", "n3"]),
                },
            ),
            (
                "stop service web node n1",
                Command::StopService {
                    service: s("web"),
                    targets: nodes(&["n1"]),
                },
            ),
            (
                "stop service web n2",
                Command::StopService {
                    service: s("web"),
                    targets: nodes(&["n2"]),
                },
            ),
            (
                "start agent all",
                Command::StartAgent {
                    targets: Targets::All,
                },
            ),
            (
                "start agent n1 n2",
                Command::StartAgent {
                    targets: nodes(&["n1", "n2"]),
                },
            ),
            (
                "stop agent n3",
                Command::StopAgent {
                    targets: nodes(&["n3"]),
                },
            ),
            (
                "restart agent all",
                Command::RestartAgent {
                    targets: Targets::All,
                },
            ),
            (
                "restart agent n1 n3",
                Command::RestartAgent {
                    targets: nodes(&["n1", "n3"]),
                },
            ),
            (
                "update",
                Command::Update {
                    part: UpdatePart::All,
                },
            ),
            (
                "update policy",
                Command::Update {
                    part: UpdatePart::Policy,
                },
            ),
            // Gru's `update agent` reloads the agent configuration.
            (
                "update agent",
                Command::Update {
                    part: UpdatePart::Config,
                },
            ),
            (
                "set node n1 cpumin 0.2",
                Command::SetNodeCpu {
                    targets: nodes(&["n1"]),
                    bound: CpuBound::Min(0.2),
                },
            ),
            (
                "set node all cpumax 1",
                Command::SetNodeCpu {
                    targets: Targets::All,
                    bound: CpuBound::Max(1.0),
                },
            ),
            ("status", Command::Status { watch: None }),
            (
                "status --watch",
                Command::Status {
                    watch: Some(Duration::from_secs(DEFAULT_WATCH_SECS)),
                },
            ),
            (
                "status --watch 5",
                Command::Status {
                    watch: Some(Duration::from_secs(5)),
                },
            ),
            (
                "why n1",
                Command::Why {
                    node: s("n1"),
                    service: None,
                },
            ),
            (
                "why n1 web",
                Command::Why {
                    node: s("n1"),
                    service: Some(s("web")),
                },
            ),
            (
                "events",
                Command::Events {
                    count: DEFAULT_EVENTS,
                },
            ),
            ("events 5", Command::Events { count: 5 }),
            (
                "rollout status web",
                Command::Rollout {
                    action: RolloutAction::Status,
                    service: "web".into(),
                },
            ),
            (
                "rollout UNDO web",
                Command::Rollout {
                    action: RolloutAction::Undo,
                    service: "web".into(),
                },
            ),
            (
                "drain node n2",
                Command::Drain {
                    targets: nodes(&["n2"]),
                    drain: true,
                },
            ),
            (
                "undrain node n2 n3 n2",
                Command::Drain {
                    targets: nodes(&["n2", "n3"]),
                    drain: false,
                },
            ),
            (
                "drain node all",
                Command::Drain {
                    targets: Targets::All,
                    drain: true,
                },
            ),
            (
                "leave node n2",
                Command::Leave {
                    targets: nodes(&["n2"]),
                },
            ),
            ("help", Command::Help { topic: None }),
            (
                "help Start",
                Command::Help {
                    topic: Some(s("start")),
                },
            ),
            ("exit", Command::Exit),
            ("quit", Command::Exit),
            ("LIST nodes", Command::List(ListWhat::Nodes)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn an_unknown_command_suggests_the_nearest() {
        let cases = [
            ("lsit nodes", Some("list")),
            ("deplyo", Some("deploy")),
            ("stats", Some("status")),
            ("evnets", Some("events")),
            ("sh node n1", Some("show")),
            ("frobnicate", None),
        ];
        for (line, suggestion) in cases {
            match parse(line) {
                Err(ParseError::Unknown {
                    suggestion: got, ..
                }) => {
                    assert_eq!(got, suggestion, "{line:?}")
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
        let message = parse("lsit nodes").expect_err("unknown").to_string();
        assert_eq!(
            message,
            "unknown command `lsit`; did you mean `list`? (`help` lists the commands)"
        );
    }

    #[test]
    fn wrong_arguments_give_the_commands_usage() {
        let cases = [
            ("use", "use: which cluster?"),
            ("use a b", "use: unexpected `b`"),
            ("list nods", "did you mean `nodes`?"),
            ("show nod n1", "did you mean `node`?"),
            ("show node n1 config extra", "unexpected `extra`"),
            ("show node n1 stats", "did you mean `status`?"),
            ("deploy now", "deploy: unexpected `now`"),
            ("drain", "drain: drain what? `node <name>`"),
            ("leave n1", "leave: expected node, found `n1`"),
            ("drain node", "drain: which nodes (names, or all)?"),
            ("drain nod n1", "did you mean `node`?"),
            ("undrain node n1 all", "`all` stands alone"),
            (
                "set node n1 base-service web",
                "did you mean `base-services`?",
            ),
            ("start service", "start: which service?"),
            ("start service web", "add `node <node|all>`"),
            ("start service web node", "which node (or all)?"),
            ("start agent", "which nodes"),
            ("start agent n1 all", "`all` stands alone"),
            ("stop servce web n1", "did you mean `service`?"),
            ("update polcy", "did you mean `policy`?"),
            ("update agnet", "did you mean `agent`?"),
            ("set node n1 cpumin 1.5", "from 0.0 to 1.0, not `1.5`"),
            ("set node n1 cpumax high", "not `high`"),
            ("set node n1 cpumax", "cpumax to what"),
            ("set node n1 cpumin 0.2 0.3", "unexpected `0.3`"),
            ("set node n1 cpumn 0.2", "did you mean `cpumin`?"),
            ("status --watch 0", "at least 1"),
            ("status --watch x", "not `x`"),
            ("why", "which node?"),
            ("why n1 web extra", "unexpected `extra`"),
            ("events 0", "from 1 to 256"),
            ("rollout", "status, pause, resume or undo?"),
            ("rollout stauts web", "did you mean `status`?"),
            ("rollout undo", "which service?"),
            ("rollout pause web now", "unexpected `now`"),
            ("events lots", "not `lots`"),
            ("exit now", "unexpected `now`"),
        ];
        for (line, needle) in cases {
            let err = parse(line).expect_err(line);
            assert!(matches!(err, ParseError::Usage { .. }), "{line:?}: {err:?}");
            let message = err.to_string();
            assert!(message.contains(needle), "{line:?}: {message}");
            assert!(
                message.contains("\nusage: "),
                "{line:?} lacks its usage: {message}"
            );
        }
        let message = parse("start servic web n1").expect_err("typo").to_string();
        assert!(
            message.contains("usage: start service <service> node <node|all>"),
            "{message}"
        );
        assert!(message.contains("start agent <node>...|all"), "{message}");
    }
}
