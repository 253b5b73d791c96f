//! `gru`: the one operator binary. This file only parses arguments, sets up logging, runs
//! the chosen command and turns its outcome into an exit code (see `exit.rs`).

mod args;
mod commands;
mod exit;
mod manage;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, LogFormat};

/// mimalloc rather than glibc's malloc: under the agent's load glibc kept freed memory in
/// one arena per worker thread, 2.6 times the live heap, and that grew four to five times
/// as much; mimalloc returns the pages it no longer uses (docs/reliability.md, "Where the
/// memory went"). Built without its transparent huge pages (feature `no_thp`), and `main`
/// turns them off for the process: with them, a 2 MiB page backs each of its regions the
/// agent touches, and its resident memory doubled.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // See ALLOCATOR: where the system gives huge pages to every process (THP `always`),
    // this keeps them from the allocator's regions. Nothing to do if it cannot.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}

fn init_logging(cli: &Cli) {
    // The agent logs its life at info; one-shot commands only speak up for problems.
    let default = match (cli.log_level, &cli.command) {
        (Some(level), _) => level.directive(),
        (None, Command::Join(_)) => "info",
        (None, _) => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
