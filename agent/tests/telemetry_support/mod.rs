//! Helpers of the telemetry tests, shared with `cli/tests/telemetry.rs` (which includes
//! this file by path): a throwaway VictoriaMetrics and a strict Prometheus text parser.
#![allow(dead_code, clippy::unwrap_used)]

pub mod prometheus;
pub mod victoria;
