//! Agents as `gru join` processes on this machine against a test etcd: how they are
//! started ([`AgentCommand`]), stopped and frozen, and what the tests read from their HTTP
//! API (actions, decisions) and their logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::{ChildGuard, EtcdCluster, free_port, http_get, http_request, wait_until};

use super::{gru, tail};

/// How long an agent may take from its spawn to its first answer on `/healthz`.
const AGENT_UP_TIMEOUT: Duration = Duration::from_secs(20);

/// One `gru join` process, killed when dropped; its stderr goes to `log`.
pub struct Agent {
    pub node: String,
    pub port: u16,
    pub guard: ChildGuard,
    pub log: PathBuf,
}

/// `gru [global...] join <cluster> --name <node> --port <free> --bind 127.0.0.1
/// --publish-ip 127.0.0.1 [--start]`, stderr in `<log_dir>/<node>-<port>.log`.
pub struct AgentCommand<'a> {
    endpoints: String,
    cluster: &'a str,
    node: &'a str,
    log: Option<PathBuf>,
    log_dir: &'a Path,
    start: bool,
    rust_log: &'a str,
    global: &'a [&'a str],
    envs: Vec<(&'a str, String)>,
}

impl<'a> AgentCommand<'a> {
    /// Started (`--start`), logging at info.
    pub fn new(endpoints: &str, cluster: &'a str, node: &'a str, log_dir: &'a Path) -> Self {
        AgentCommand {
            endpoints: endpoints.to_owned(),
            cluster,
            node,
            log: None,
            log_dir,
            start: true,
            rust_log: "info",
            global: &[],
            envs: Vec::new(),
        }
    }

    /// With `start` false the loop waits for a `start` command.
    pub fn start(mut self, start: bool) -> Self {
        self.start = start;
        self
    }

    /// The agent's `RUST_LOG` (e.g. `debug`, to check what it prints at its most talkative).
    pub fn rust_log(mut self, rust_log: &'a str) -> Self {
        self.rust_log = rust_log;
        self
    }

    /// Global options, before `join` (`--log-format json`).
    pub fn global(mut self, global: &'a [&'a str]) -> Self {
        self.global = global;
        self
    }

    /// An environment variable of the agent (`GRU_REGISTRY_AUTH_FILE`, say).
    pub fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.envs.push((key, value.into()));
        self
    }

    /// The log file, instead of one named after the node in the log directory.
    pub fn log_file(mut self, log: &Path) -> Self {
        self.log = Some(log.to_path_buf());
        self
    }

    /// Spawns the process and returns at once (see [`Agent::wait_up`]).
    pub fn launch(self) -> Agent {
        let port = free_port();
        let log = self.log.unwrap_or_else(|| {
            self.log_dir
                .join(format!("{node}-{port}.log", node = self.node))
        });
        let port_text = port.to_string();
        let mut args = vec![
            "join",
            self.cluster,
            "--name",
            self.node,
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--publish-ip",
            "127.0.0.1",
        ];
        if self.start {
            args.push("--start");
        }
        let child = gru(&self.endpoints)
            .env("RUST_LOG", self.rust_log)
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .args(self.global)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            node: self.node.to_owned(),
            port,
            guard: ChildGuard::new(child),
            log,
        }
    }

    /// Spawns the process and waits until it answers `/healthz`.
    pub fn spawn(self) -> Agent {
        let agent = self.launch();
        agent.wait_up();
        agent
    }
}

/// `gru join <cluster> --name <node> --start` on a free port, waited for until /healthz
/// answers.
pub fn spawn_agent(etcd: &EtcdCluster, cluster: &str, node: &str, log_dir: &Path) -> Agent {
    AgentCommand::new(&etcd.endpoints(), cluster, node, log_dir).spawn()
}

/// `gru join` against `endpoints`; with `start` false the loop waits for a `start` command.
pub fn spawn_agent_with(
    endpoints: &str,
    cluster: &str,
    node: &str,
    log_dir: &Path,
    start: bool,
) -> Agent {
    AgentCommand::new(endpoints, cluster, node, log_dir)
        .start(start)
        .spawn()
}

/// Like [`spawn_agent_with`] (started), with the agent's log filtered by `rust_log`.
pub fn spawn_agent_with_log_filter(
    endpoints: &str,
    cluster: &str,
    node: &str,
    log_dir: &Path,
    rust_log: &str,
) -> Agent {
    AgentCommand::new(endpoints, cluster, node, log_dir)
        .rust_log(rust_log)
        .spawn()
}

impl Agent {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/healthz` answers 200, or fails the test with the agent's log.
    #[track_caller]
    pub fn wait_up(&self) {
        let up = wait_until(AGENT_UP_TIMEOUT, || self.healthy());
        assert!(
            up.is_some(),
            "agent {} did not come up:\n{}",
            self.node,
            self.log_text()
        );
    }

    /// `/healthz` answers 200.
    pub fn healthy(&self) -> bool {
        http_get(self.port, "/healthz").is_some_and(|(status, _)| status == 200)
    }

    /// The process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.guard.0.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// SIGKILL, now: no lease revoked, nothing cleaned up.
    pub fn kill9(&mut self) {
        let mut child = self.guard.take();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP: the process keeps its port (the kernel still accepts connections) but
    /// answers nothing. The guard's SIGKILL still ends it.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.guard.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `GET path` as JSON; `None` unless it answered 200 with a JSON document.
    pub fn get_json(&self, path: &str) -> Option<Value> {
        let (200, body) = http_get(self.port, path)? else {
            return None;
        };
        serde_json::from_str(&body).ok()
    }

    /// The newest `limit` action records (`GET /gru/v1/actions`), none when it did not
    /// answer.
    pub fn actions(&self, limit: usize) -> Vec<ActionRecord> {
        self.get_json(&format!("/gru/v1/actions?limit={limit}"))
            .map(|view| ActionRecord::all(&self.node, &view))
            .unwrap_or_default()
    }

    /// The newest `limit` planner decisions (`GET /gru/v1/decisions`), as JSON.
    pub fn decisions(&self, limit: usize) -> Vec<Value> {
        self.get_json(&format!("/gru/v1/decisions?limit={limit}"))
            .and_then(|view| view["decisions"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Pushes a user metric (`POST /gru/v1/stats/user/<service>/<metric>`): the answer.
    pub fn push_stat(
        &self,
        secret: &str,
        service: &str,
        metric: &str,
        value: &str,
    ) -> Option<(u16, String)> {
        http_request(
            self.port,
            "POST",
            &format!("/gru/v1/stats/user/{service}/{metric}"),
            Some(secret),
            Some(value),
        )
    }

    /// Sends an operator's command (`POST /gru/v1/commands`) and requires it accepted.
    #[track_caller]
    pub fn command(&self, secret: &str, body: &str) {
        let (status, text) = http_request(
            self.port,
            "POST",
            "/gru/v1/commands",
            Some(secret),
            Some(body),
        )
        .unwrap();
        assert_eq!(status, 202, "{text}");
    }
}

/// `n1` ... `n<count>`, started, each waited for until it answers.
pub fn spawn_nodes(
    endpoints: &str,
    cluster: &str,
    count: usize,
    log_dir: &Path,
    rust_log: &str,
) -> Vec<Agent> {
    (1..=count)
        .map(|i| {
            AgentCommand::new(endpoints, cluster, &format!("n{i}"), log_dir)
                .rust_log(rust_log)
                .spawn()
        })
        .collect()
}

/// Each agent's last `lines` lines of log, titled with its node: for failure messages.
pub fn logs_tail(agents: &[Agent], lines: usize) -> String {
    agents
        .iter()
        .map(|a| {
            format!(
                "--- {} (last {lines} lines)\n{}",
                a.node,
                tail(&a.log_text(), lines)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One record of an agent's action history (`GET /gru/v1/actions`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActionRecord {
    pub at_ms: u64,
    /// The agent that recorded it.
    pub node: String,
    pub action: String,
    pub service: String,
    pub instance: Option<String>,
    pub result: String,
}

impl ActionRecord {
    /// Every record of an `/gru/v1/actions` document, as recorded by `node`.
    pub fn all(node: &str, view: &Value) -> Vec<ActionRecord> {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        view["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| ActionRecord {
                at_ms: r["at"].as_u64().unwrap_or(0),
                node: node.to_owned(),
                action: text(&r["action"]),
                service: text(&r["service"]),
                instance: r["instance"].as_str().map(str::to_owned),
                result: text(&r["result"]),
            })
            .collect()
    }
}
