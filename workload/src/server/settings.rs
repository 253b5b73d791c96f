//! `gru-workload`'s settings: flags with environment fallbacks (the way a container is
//! configured), validated while parsing so that a bad value is refused, naming the flag,
//! before any port is bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_SERVICE: &str = "workload";
pub const DEFAULT_SERVICE_TIME_MS: u64 = 20;
pub const DEFAULT_WAIT_MS: u64 = 0;
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 0;
pub const DEFAULT_CONCURRENCY: u32 = 1;
pub const DEFAULT_QUEUE: u32 = 1000;
pub const DEFAULT_REPORT_INTERVAL_SECS: u64 = 1;
pub const DEFAULT_MALFORMED_LINES_PER_SEC: u32 = 0;
pub const DEFAULT_READY_DELAY_MS: u64 = 0;

/// The command line as typed (or as the environment filled it in).
#[derive(Debug, Parser)]
#[command(
    name = "gru-workload",
    version,
    about = "An HTTP service for gru to manage: `GET /` burns CPU, `GET /healthz` answers at once, \
             `GET /ready` answers 200 or 503 (READY_DELAY_MS after start, `POST /ready?value=false|true`); \
             the mean response time is printed to stdout as gru:<service>:execution_time:<ms>:ms",
    after_help = "Exit codes: 0 stopped by SIGTERM/SIGINT · 1 runtime failure · 64 bad usage."
)]
pub struct ServerArgs {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Address to listen on (0.0.0.0 in a container; tests use 127.0.0.1).
    #[arg(long, env = "BIND", default_value_t = DEFAULT_BIND)]
    pub bind: IpAddr,

    /// Service name used in the report lines (no ':' or whitespace).
    #[arg(long = "service", env = "SERVICE_NAME", default_value = DEFAULT_SERVICE,
          value_parser = parse_service_name)]
    pub service: String,

    /// CPU-busy work per request, in milliseconds on an idle core.
    #[arg(long, env = "SERVICE_TIME_MS", default_value_t = DEFAULT_SERVICE_TIME_MS)]
    pub service_time_ms: u64,

    /// Time a request holds its worker without using CPU, in milliseconds, before its CPU
    /// work: a call to a downstream service, say. An instance's capacity is then
    /// CONCURRENCY / (SERVICE_TIME_MS + WAIT_MS) requests per second while it burns only
    /// SERVICE_TIME_MS of CPU per request, so a small machine can overload one instance
    /// and still have the CPU for several.
    #[arg(long, env = "WAIT_MS", default_value_t = DEFAULT_WAIT_MS)]
    pub wait_ms: u64,

    /// After SIGTERM, time to go on accepting requests before closing the listener, in
    /// milliseconds: clients that route by discovery stop sending a moment after the
    /// instance is deregistered, and their requests in between are answered, not refused.
    /// Keep it, plus the drain, under the stop timeout the container is given.
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = DEFAULT_SHUTDOWN_DELAY_MS)]
    pub shutdown_delay_ms: u64,

    /// Requests worked on at once; the others wait in the queue.
    #[arg(long, env = "CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Requests that may wait for a worker; beyond that, 503.
    #[arg(long, env = "QUEUE", default_value_t = DEFAULT_QUEUE)]
    pub queue: u32,

    /// Seconds between report lines (an interval with no completed request prints nothing).
    #[arg(long, env = "REPORT_INTERVAL_SECS", default_value_t = DEFAULT_REPORT_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub report_interval_secs: u64,

    /// Malformed `gru:` lines printed to stdout per second besides the report lines, to test
    /// the agent's log reader (0: none).
    #[arg(long, env = "MALFORMED_LINES_PER_SEC", default_value_t = DEFAULT_MALFORMED_LINES_PER_SEC)]
    pub malformed_lines_per_sec: u32,

    /// Time after start during which `GET /ready` answers 503, in milliseconds: a service
    /// that warms up before it can serve (a readiness check keeps it out of discovery).
    #[arg(long, env = "READY_DELAY_MS", default_value_t = DEFAULT_READY_DELAY_MS)]
    pub ready_delay_ms: u64,
}

/// Validated, ready-to-use settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub service: String,
    pub service_time: Duration,
    pub wait: Duration,
    pub shutdown_delay: Duration,
    pub concurrency: usize,
    pub queue: usize,
    pub report_interval: Duration,
    pub malformed_lines_per_sec: u32,
    pub ready_delay: Duration,
}

impl ServerSettings {
    /// Settings for a server on `addr` with every other value at its default.
    pub fn with_defaults(addr: SocketAddr) -> Self {
        Self {
            addr,
            service: DEFAULT_SERVICE.to_owned(),
            service_time: Duration::from_millis(DEFAULT_SERVICE_TIME_MS),
            wait: Duration::from_millis(DEFAULT_WAIT_MS),
            shutdown_delay: Duration::from_millis(DEFAULT_SHUTDOWN_DELAY_MS),
            concurrency: DEFAULT_CONCURRENCY as usize,
            queue: DEFAULT_QUEUE as usize,
            report_interval: Duration::from_secs(DEFAULT_REPORT_INTERVAL_SECS),
            malformed_lines_per_sec: DEFAULT_MALFORMED_LINES_PER_SEC,
            ready_delay: Duration::from_millis(DEFAULT_READY_DELAY_MS),
        }
    }
}

impl From<ServerArgs> for ServerSettings {
    fn from(args: ServerArgs) -> Self {
        Self {
            addr: SocketAddr::new(args.bind, args.port),
            service: args.service,
            service_time: Duration::from_millis(args.service_time_ms),
            wait: Duration::from_millis(args.wait_ms),
            shutdown_delay: Duration::from_millis(args.shutdown_delay_ms),
            concurrency: args.concurrency as usize,
            queue: args.queue as usize,
            report_interval: Duration::from_secs(args.report_interval_secs),
            malformed_lines_per_sec: args.malformed_lines_per_sec,
            ready_delay: Duration::from_millis(args.ready_delay_ms),
        }
    }
}

/// A service name must survive the report line's `:`-separated format.
pub fn parse_service_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the service name (--service or SERVICE_NAME) must not be empty".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the service name (--service or SERVICE_NAME) must not contain {bad:?}: \
             it would break the `gru:<service>:<metric>:<value>:<unit>` line"
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_that_would_break_the_report_line_are_refused() {
        for (name, ok) in [
            ("workload", true),
            ("web-1.front_end", true),
            ("", false),
            ("a:b", false),
            ("a b", false),
            ("a\nb", false),
        ] {
            assert_eq!(parse_service_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = ServerArgs::try_parse_from(["gru-workload"]).expect("defaults parse");
        let settings = ServerSettings::from(args);
        assert_eq!(settings.addr.port(), 8080);
        assert_eq!(settings.service, "workload");
        assert_eq!(settings.service_time, Duration::from_millis(20));
        assert_eq!(settings.wait, Duration::ZERO);
        assert_eq!(settings.shutdown_delay, Duration::ZERO);
        assert_eq!(settings.concurrency, 1);
        assert_eq!(settings.queue, 1000);
        assert_eq!(settings.report_interval, Duration::from_secs(1));
        assert_eq!(settings.malformed_lines_per_sec, 0);
        assert_eq!(settings.ready_delay, Duration::ZERO);
    }

    #[test]
    fn zero_concurrency_is_a_usage_error() {
        let err = ServerArgs::try_parse_from(["gru-workload", "--concurrency", "0"])
            .expect_err("0 workers cannot serve");
        assert!(err.to_string().contains("--concurrency"), "{err}");
    }
}
