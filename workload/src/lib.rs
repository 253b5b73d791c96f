//! The application gru manages in tests and the demo, and the load that drives it.
//!
//! * [`server`]: `gru-workload`, an HTTP service whose `GET /` burns a fixed amount of CPU
//!   per request, works on a bounded number of requests at once, queues a bounded number
//!   more and turns the rest away with 503. Every report interval it prints the mean
//!   response time to stdout as `gru:<service>:execution_time:<ms>:ms`, the line gru's agent
//!   reads from container logs.
//! * [`loadgen`]: `gru-loadgen`, an open-loop load generator: it sends on a schedule of
//!   rates whatever the answers, drops (and counts) what would exceed its in-flight bound,
//!   and prints per-second figures and a final `key=value` summary.
//! * [`cli`]: what both binaries share at their edge: argument parsing with the project's
//!   exit codes, logging to stderr, the shutdown signal.
//!
//! The binaries in `src/bin/` only parse arguments and call [`server::run`] or
//! [`loadgen::run`]. Formatting and parsing (the report line, schedules, targets,
//! percentiles) are plain functions with their own tests; only `server/mod.rs`,
//! `loadgen/mod.rs` and `loadgen/targets.rs` touch sockets or files.

pub mod cli;
pub mod loadgen;
pub mod server;
