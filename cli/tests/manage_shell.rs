//! The interactive `gru manage` driven through a real pseudo-terminal (rexpect): Tab
//! completes a node name and a service name from the cluster, Up recalls earlier lines
//! (also from a previous session, through the history file), `help` answers, `;` separates
//! commands (a trailing one is harmless).
#![allow(clippy::unwrap_used)]

mod manage_support;
mod support;

use std::process::Command;

use manage_support::{ServiceSpec, TestCluster};
use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};
use testkit::{Component, require};

/// How long any expected output may take to appear.
const EXPECT_TIMEOUT_MS: u64 = 20_000;
/// The Up arrow as a terminal sends it.
const UP: &str = "\x1b[A";

fn shell(c: &TestCluster, history: &std::path::Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gru"));
    cmd.env("ETCD_ADDR", c.etcd.endpoints())
        .env("GRU_HISTORY", history)
        .env("TERM", "xterm")
        .env("RUST_LOG", "warn")
        .env_remove("ETCD_USER")
        .env_remove("ETCD_PASSWORD")
        .args(["manage", "--cluster", &c.cluster]);
    let options = Options::new()
        .timeout_ms(Some(EXPECT_TIMEOUT_MS))
        .strip_ansi_escape_codes(true);
    spawn_with_options(cmd, options).unwrap()
}

#[test]
fn the_shell_completes_names_recalls_history_and_helps() {
    let test = "the_shell_completes_names_recalls_history_and_helps";
    if !require(test, Component::Etcd) || !require(test, Component::Docker) {
        return;
    }
    let c = TestCluster::start(
        "shell",
        &["north", "south", "west"],
        &[ServiceSpec::new("web"), ServiceSpec::new("db")],
    );
    let home = tempfile::tempdir().unwrap();
    let history = home.path().join("history");
    let prompt = format!("gru({})> ", c.cluster);

    let mut p = shell(&c, &history);
    p.exp_string(&format!("using cluster {}", c.cluster))
        .unwrap();
    p.exp_string(&prompt).unwrap();

    // help: every command with a line of summary.
    p.send_line("help").unwrap();
    p.exp_string("commands (`help <command>` for its usage):")
        .unwrap();
    p.exp_string("why").unwrap();
    p.exp_string(&prompt).unwrap();
    p.send_line("help deploy").unwrap();
    p.exp_string("usage: deploy").unwrap();
    p.exp_string(&prompt).unwrap();

    // Tab completes the node name, then the service name, from etcd.
    p.send("why so").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("why south ").unwrap();
    p.send("we").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("why south web ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("south has taken no decision about web")
        .unwrap();
    p.exp_string(&prompt).unwrap();

    // A trailing `;`, as Gru's users type it, is only a separator; two commands on one
    // line both run.
    p.send_line("list nodes;").unwrap();
    p.exp_string(" north ").unwrap();
    p.exp_string(&prompt).unwrap();
    p.send_line("help use; help deploy").unwrap();
    p.exp_string("usage: use").unwrap();
    p.exp_string("usage: deploy").unwrap();
    p.exp_string(&prompt).unwrap();

    // Up recalls the previous line, which runs again.
    p.send_line("list nodes").unwrap();
    p.exp_string("north").unwrap();
    p.exp_string(&prompt).unwrap();
    p.send(UP).unwrap();
    p.flush().unwrap();
    p.exp_string("list nodes").unwrap();
    p.send_line("").unwrap();
    // (rexpect reads bytes as Latin-1, so the table's box drawing is matched around.)
    p.exp_string(" north ").unwrap();
    p.exp_string("127.0.0.1:").unwrap();
    p.exp_string(&prompt).unwrap();

    // A typo gets the nearest command, and the shell goes on.
    p.send_line("lsit nodes").unwrap();
    p.exp_string("did you mean `list`?").unwrap();
    p.exp_string(&prompt).unwrap();
    p.send_line("exit").unwrap();
    p.exp_eof().unwrap();

    let saved = std::fs::read_to_string(&history).unwrap();
    for line in ["help", "why south web", "list nodes", "exit"] {
        assert!(
            saved.lines().any(|l| l == line),
            "{line:?} not in the history file:\n{saved}"
        );
    }

    // A new session recalls the last one's lines from the history file.
    let mut p = shell(&c, &history);
    p.exp_string(&prompt).unwrap();
    p.send(UP).unwrap();
    p.send(UP).unwrap();
    p.send(UP).unwrap();
    p.flush().unwrap();
    p.exp_string("list nodes").unwrap();
    p.send_line("").unwrap();
    // (rexpect reads bytes as Latin-1, so the table's box drawing is matched around.)
    p.exp_string(" north ").unwrap();
    p.exp_string("127.0.0.1:").unwrap();
    p.exp_string(&prompt).unwrap();
    // Ctrl-D leaves too.
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}
