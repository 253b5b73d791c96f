//! `gru-loadgen`: see [`gru_workload::loadgen`]. Figures on stdout, logs on stderr.

use std::process::ExitCode;

use gru_workload::cli;
use gru_workload::loadgen::{self, LoadgenArgs, LoadgenSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = LoadgenSettings::from(cli::parse_args::<LoadgenArgs>());
    cli::init_logging();
    loadgen::run(settings, std::io::stdout(), cli::shutdown_signal()).await;
    ExitCode::SUCCESS
}
