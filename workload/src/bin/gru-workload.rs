//! `gru-workload`: see [`gru_workload::server`]. Configured by flags or environment
//! variables (`gru-workload --help`); report lines on stdout, logs on stderr.

use std::process::ExitCode;

use anyhow::Context;
use gru_workload::cli;
use gru_workload::server::{self, ServerArgs, ServerSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = ServerSettings::from(cli::parse_args::<ServerArgs>());
    cli::init_logging();
    match serve(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::report_failure(&err),
    }
}

async fn serve(settings: ServerSettings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    // Ends with the runtime, when `main` returns.
    tokio::spawn(server::noise::print_malformed(
        settings.malformed_lines_per_sec,
        settings.service.clone(),
        std::io::stdout(),
    ));
    server::run(
        listener,
        settings,
        std::io::stdout(),
        cli::shutdown_signal(),
    )
    .await
    .context("serving")
}
