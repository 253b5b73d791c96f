//! `gru manage`: the operator's shell over a cluster, interactive or scripted.
//!
//! A line becomes a [`grammar::Command`] (pure parsing), the [`session::Session`] runs it
//! against etcd and the cluster's agents, and the command returns an
//! [`output::Outcome`] (text, JSON, status) that is printed here. Nothing below prints.
//!
//! * `grammar.rs`: the commands, parsing and "did you mean"; `families.rs`: each
//!   command's usage lines and help, one table for the parser, `help` and completion;
//! * `script.rs`: `-c` and standard-input scripts split into lines;
//! * `session.rs`: the cluster in use, dispatch, and [`session::Ctx`], a command's fresh
//!   view of the cluster and its agents;
//! * `cluster_state.rs`: the cluster's tree in etcd, parsed (nodes, services, documents);
//! * `agent_client.rs`: the agents' HTTP API with short deadlines, in parallel;
//! * `agent_views.rs`: the JSON the agents answer;
//! * `inspect.rs` (list, show), `deploy.rs` (deploy, undeploy), `control.rs` (base services,
//!   start/stop service and agent, update), `status.rs` (status, --watch), `history.rs`
//!   (why, events), `help.rs`: the command groups;
//! * `placement.rs`: where deploy puts each service (pure);
//! * `output.rs`: outcomes, per-node results, tables and units;
//! * `complete.rs` (pure) and `editor.rs`: Tab completion and the rustyline shell;
//! * `terminal.rs`: the `q` key of `status --watch`.

mod agent_client;
mod agent_views;
mod cluster_state;
mod complete;
mod control;
mod deploy;
mod editor;
mod families;
mod grammar;
mod help;
mod history;
mod inspect;
pub(crate) mod output;
mod placement;
mod restart;
mod rollout;
mod script;
mod session;
mod status;
mod terminal;

pub use agent_client::AgentClient;
pub use editor::interactive;
pub use output::{Format, Status};
pub use session::{Session, Step};

use std::io::Write as _;

use output::Outcome;

/// Prints an outcome in `format`: text or one JSON document on standard output, the error
/// (if any) on standard error.
pub fn print(outcome: &Outcome, format: Format) {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            if !outcome.text.is_empty() {
                let _ = writeln!(out, "{}", outcome.text);
            }
        }
        Format::Json => {
            let _ = writeln!(out, "{}", outcome.json);
        }
    }
    let _ = out.flush();
    if let Some(error) = &outcome.error {
        eprintln!("error: {error}");
    }
}

/// How a script went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub commands: usize,
    pub failed: usize,
    pub usage: usize,
}

impl Summary {
    pub fn record(&mut self, status: Status) {
        self.commands += 1;
        match status {
            Status::Ok => {}
            Status::Failed => self.failed += 1,
            Status::Usage => self.usage += 1,
        }
    }
}

/// Runs a script: every command, in order, even after one failed (`exit` ends it). In
/// text output each command is echoed after the prompt, as in a transcript.
pub async fn run_script(session: &mut Session, script: &str) -> Summary {
    let mut summary = Summary::default();
    for line in script::commands(script) {
        if session.format() == Format::Text {
            println!("{}{line}", session.prompt());
        }
        match session.run_line(&line).await {
            Step::Exit => break,
            Step::Done(outcome) => {
                summary.record(outcome.status);
                print(&outcome, session.format());
            }
        }
    }
    summary
}
