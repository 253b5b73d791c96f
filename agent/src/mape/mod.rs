//! The MAPE-K core: monitor windows, analytics, weights, strategies and the planner, as
//! plain functions over plain data.
//!
//! Why pure: the loop's decisions are the part of gru that must be right at a few hundred
//! nodes, so they are tested with tables and a seeded random generator, and replayed in the
//! many-agent simulation under virtual time. Time comes in as [`Millis`], randomness as
//! `&mut impl rand::Rng`, and what to do goes out as a [`Decision`] value that only the
//! executor acts on.
//!
//! * [`millis`]: [`Millis`], the time the caller hands in;
//! * [`window`]: time-based metric windows with a cap, per-instance warm-up, per-service
//!   means ([`ServiceMetrics`]);
//! * [`analyze`]: analytics compiled once per configuration version, evaluated to
//!   [`AnalyticValue`] (available in [0, 1], or unavailable with a reason);
//! * [`weights`]: Gru's scale-out, scale-in and swap weights;
//! * [`strategy`]: `probcumulative`, `probdelta`, `greedy`;
//! * [`knowledge`]: what the planner is told ([`ServiceSnapshot`]) and what it remembers
//!   between ticks ([`PlannerState`]);
//! * [`planner`]: [`plan`], the candidates and the reasons; [`crossing`], fast detection's
//!   threshold test over the values the rules weigh; its guards (resources, bounds,
//!   base services, period, cooldowns, step) are in `guards.rs`;
//! * [`target`]: target tracking's count, growth limit and stabilization;
//! * [`smoothing`]: a rule's `Window` over its inputs (sliding mean or EWMA);
//! * [`decision`]: [`Decision`], [`Action`], [`CandidateWeight`];
//! * [`explanation`]: [`Explanation`], how a weight came about, written out when read;
//! * [`blocked`]: [`BlockedBy`], the guards that removed a candidate, written out when read;
//! * `cursor.rs`: lookups by name that walk a map in name order (a rule's values, the
//!   breaches), instead of a search per name.
//!
//! Architecture invariant: nothing under `mape/` imports the async runtime, the Docker,
//! etcd or HTTP crates, or reads a clock; the test below reads these files to keep it so.

pub mod analyze;
pub mod blocked;
mod cursor;
pub mod decision;
pub mod explanation;
mod guards;
pub mod knowledge;
pub mod millis;
pub mod planner;
pub mod smoothing;
pub mod strategy;
pub mod target;
pub mod weights;
pub mod window;

pub use analyze::{AnalyticValue, CompiledAnalytics};
pub use blocked::BlockedBy;
pub use decision::{Action, CandidateWeight, Decision};
pub use explanation::Explanation;
pub use knowledge::{LastScale, PlannerState, ServiceSnapshot, StartHeld};
pub use millis::Millis;
pub use planner::{Crossing, PlanInput, crossing, plan};
pub use window::{
    InstanceSamples, MetricMean, MetricWindow, SampleRejected, ServiceMetrics, WindowSettings,
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Words that would mean the core does I/O or reads a clock. Spelt in pieces so that this
    /// file, which the test reads too, does not contain them.
    const FORBIDDEN: [&str; 6] = [
        concat!("tok", "io"),
        concat!("boll", "ard"),
        concat!("etcd", "_client"),
        concat!("ax", "um"),
        concat!("Inst", "ant"),
        concat!("System", "Time"),
    ];

    fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        let entries = std::fs::read_dir(dir).expect("the mape directory is readable");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }

    #[test]
    fn mape_core_imports_no_io_crates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mape");
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        assert!(
            files.len() >= 8,
            "expected the core's files, found {files:?}"
        );
        let mut offences = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            for word in FORBIDDEN {
                for (number, line) in text.lines().enumerate() {
                    if line.contains(word) {
                        offences.push(format!("{}:{}: {word}", file.display(), number + 1));
                    }
                }
            }
        }
        assert!(
            offences.is_empty(),
            "the MAPE-K core must stay pure:\n{}",
            offences.join("\n")
        );
    }
}
