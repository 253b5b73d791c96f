//! The binaries' edge: argument parsing mapped to the project's exit codes, logging to
//! stderr (stdout carries the report lines), and the shutdown signal.
//!
//! Exit codes: 0 ok · 1 runtime failure (e.g. the port cannot be bound) · 64 bad usage.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// A runtime failure, such as a port that cannot be bound.
pub const EXIT_FAILURE: u8 = 1;
/// EX_USAGE: an invalid flag or environment variable.
pub const EXIT_USAGE: u8 = 64;

/// Parses the command line (and the environment fallbacks) into `T`. `--help` and
/// `--version` print and exit 0; anything invalid prints clap's message, which names the
/// flag, and exits [`EXIT_USAGE`] rather than clap's default 2.
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            };
            // If even printing fails there is nowhere left to say so.
            let _ = err.print();
            std::process::exit(i32::from(code));
        }
    }
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`), with colours
/// only on a terminal so that `docker logs` stays plain.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves on the first SIGTERM (`docker stop`) or SIGINT (Ctrl-C).
///
/// A process that runs as PID 1 in a container gets no default action for these signals,
/// so handling them here is what makes the container stop at once instead of after
/// Docker's grace period.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(err) => {
            tracing::warn!("cannot listen for SIGTERM ({err}); only SIGINT stops this process");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("SIGINT received");
        }
    }
}

/// Prints an error with its whole cause chain and picks the exit code for it.
pub fn report_failure(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(EXIT_FAILURE)
}
