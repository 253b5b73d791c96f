//! The interactive shell on rustyline: prompt `gru(<cluster>)> `, Tab completion of
//! commands and of the cluster's node and service names, history kept across sessions in
//! `$GRU_HISTORY` (or `~/.gru_history`).
//!
//! rustyline blocks on the terminal, so each line is read on a blocking thread while the
//! runtime stays free; the session runs the line once it is read, each of its `;`-separated
//! commands in turn, as a script would.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rustyline::completion::{Completer, Pair};
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::complete::{Names, complete};
use super::print;
use super::script;
use super::session::{Session, Step};

/// Lines of history kept.
const HISTORY_LEN: usize = 1000;
/// The variable naming the history file.
pub const HISTORY_VAR: &str = "GRU_HISTORY";

/// Completion from the names the session last read.
struct ShellHelper {
    names: Arc<Mutex<Names>>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let before = line.get(..pos).unwrap_or(line);
        let (start, words) = complete(before, &names);
        let pairs = words
            .into_iter()
            .map(|word| Pair {
                replacement: format!("{word} "),
                display: word,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// `$GRU_HISTORY`, else `~/.gru_history`; `None` when neither can be named (no history
/// is kept then).
pub fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(HISTORY_VAR).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".gru_history"))
}

/// Runs the shell until `exit`, `quit` or Ctrl-D. Ctrl-C abandons the line being typed.
pub async fn interactive(session: &mut Session) -> anyhow::Result<()> {
    let config = Config::builder()
        .max_history_size(HISTORY_LEN)?
        .history_ignore_dups(true)?
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper {
        names: session.names(),
    }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing file is a first session; an unreadable one only costs the history.
        let _ = editor.load_history(path);
    }
    session.refresh_names().await;
    println!("gru manage: `help` lists the commands, Tab completes, Ctrl-D leaves");
    loop {
        let prompt = session.prompt();
        let (returned, line) = tokio::task::spawn_blocking(move || {
            let line = editor.readline(&prompt);
            (editor, line)
        })
        .await?;
        editor = returned;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        if let Some(path) = &history
            && let Err(err) = editor.save_history(path)
        {
            tracing::warn!(path = %path.display(), error = %err, "cannot save the shell's history");
        }
        // As in a script: `;` separates commands, so a trailing one (a Gru habit) is
        // harmless and `use c; list nodes` runs both.
        for command in script::commands(line) {
            match session.run_line(&command).await {
                Step::Exit => return Ok(()),
                Step::Done(outcome) => print(&outcome, session.format()),
            }
        }
    }
    Ok(())
}
