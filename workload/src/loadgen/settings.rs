//! `gru-loadgen`'s settings, validated while parsing: a bad schedule or target is refused,
//! naming the flag, before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hyper::Uri;

use super::schedule::Schedule;
use super::targets::parse_target;

pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_INTERVAL_SECS: u64 = 1;

/// The command line as typed.
#[derive(Debug, Parser)]
#[command(
    name = "gru-loadgen",
    version,
    about = "Open-loop HTTP load: sends on a schedule of rates whatever the answers, prints \
             one line per second and a final key=value summary",
    after_help = "Latency percentiles are over successful (2xx) requests. \
                  Exit codes: 0 done · 1 runtime failure · 64 bad usage."
)]
#[command(group(clap::ArgGroup::new("targets").required(true).multiple(true)
    .args(["target", "targets_file"])))]
pub struct LoadgenArgs {
    /// Target URLs, comma-separated, used in turn (`host:port` means http://host:port/).
    #[arg(long, value_delimiter = ',', value_parser = parse_target)]
    pub target: Vec<Uri>,

    /// A file of more targets (commas or lines, `#` comments), re-read every second; it
    /// may be missing or empty at first.
    #[arg(long)]
    pub targets_file: Option<PathBuf>,

    /// Phases of RATE:DURATION (requests per second : 10s or 500ms), e.g. 20:10s,80:30s,0:5s.
    #[arg(long)]
    pub schedule: Schedule,

    /// Requests awaiting an answer at most; a request due beyond it is counted as dropped.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Time allowed for a whole request (connect, answer, body), in milliseconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// Seconds covered by each figures line: its counts and percentiles are over the
    /// interval, its rate is the schedule's mean rate over it.
    #[arg(long, default_value_t = DEFAULT_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_secs: u64,

    /// Also write one line per request to this file: `<sent_unix_ms> <latency_ms|err|drop>`.
    #[arg(long)]
    pub samples_file: Option<PathBuf>,
}

/// Validated, ready-to-use settings.
#[derive(Debug, Clone)]
pub struct LoadgenSettings {
    pub targets: Vec<Uri>,
    pub targets_file: Option<PathBuf>,
    pub schedule: Schedule,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub interval: Duration,
    pub samples_file: Option<PathBuf>,
}

impl From<LoadgenArgs> for LoadgenSettings {
    fn from(args: LoadgenArgs) -> Self {
        Self {
            targets: args.target,
            targets_file: args.targets_file,
            schedule: args.schedule,
            max_in_flight: args.max_in_flight as usize,
            timeout: Duration::from_millis(args.timeout_ms),
            interval: Duration::from_secs(args.interval_secs),
            samples_file: args.samples_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_command_line_parses() {
        let args = LoadgenArgs::try_parse_from([
            "gru-loadgen",
            "--target",
            "127.0.0.1:1,http://127.0.0.1:2/",
            "--schedule",
            "20:10s,0:500ms",
        ])
        .expect("valid");
        let settings = LoadgenSettings::from(args);
        assert_eq!(settings.targets.len(), 2);
        assert_eq!(settings.schedule.total(), Duration::from_millis(10_500));
        assert_eq!(settings.max_in_flight, 256);
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.interval, Duration::from_secs(1));
        assert_eq!(settings.samples_file, None);
    }

    #[test]
    fn bad_command_lines_name_the_flag() {
        for (argv, flag) in [
            (&["--schedule", "20:10s"][..], "--target"),
            (&["--target", "127.0.0.1:1"][..], "--schedule"),
            (
                &["--target", "https://x/", "--schedule", "1:1s"][..],
                "--target",
            ),
            (&["--target", "x:1", "--schedule", "fast"][..], "--schedule"),
            (
                &[
                    "--target",
                    "x:1",
                    "--schedule",
                    "1:1s",
                    "--max-in-flight",
                    "0",
                ][..],
                "--max-in-flight",
            ),
            (
                &[
                    "--target",
                    "x:1",
                    "--schedule",
                    "1:1s",
                    "--interval-secs",
                    "0",
                ][..],
                "--interval-secs",
            ),
        ] {
            let err = LoadgenArgs::try_parse_from(
                std::iter::once("gru-loadgen").chain(argv.iter().copied()),
            )
            .expect_err("invalid");
            assert!(err.to_string().contains(flag), "{argv:?}: {err}");
        }
    }

    #[test]
    fn a_targets_file_alone_is_enough() {
        let args = LoadgenArgs::try_parse_from([
            "gru-loadgen",
            "--targets-file",
            "/nonexistent/yet",
            "--schedule",
            "1:1s",
        ])
        .expect("valid");
        assert!(args.target.is_empty());
    }
}
