//! Workload traces: a service's demand, in requests per second, second by second.
//!
//! The project ships six traces in `sim/traces/`, each generated from a seed by
//! [`TraceKind::generate`] (`gru-sim traces` writes them; a test checks that the shipped
//! files are exactly what their seeds give), and `gru-sim bench --trace-seeds A..B`
//! generates every kind from other seeds:
//!
//! * `step`: a quiet hour with a sudden fourfold step up, held, then back down;
//! * `ramp`: a steady climb to the peak, a plateau, a faster descent;
//! * `bursty`: a noisy base with spikes of random height and length at random times;
//! * `diurnal`: two hours of a compressed day, a trough and a peak with a shoulder;
//! * `double-spike`: designed to hurt an autoscaler: pairs of short, tall spikes whose gap
//!   (45-120 s) is shorter than a cooldown or HPA's 300 s scale-down stabilization, so a
//!   controller that has just scaled is caught either still blocked or already shrunk;
//! * `sawtooth`: designed to hurt too: a slow climb to the peak over 8-12 minutes, a drop
//!   back to the base within a second, repeated: the climb asks for one scale-out after
//!   another, the drop leaves a large surplus at once.
//!
//! Every trace has a little multiplicative noise, so that no two seconds are identical.

use std::fmt;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A demand trace, as stored in `sim/traces/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub name: String,
    pub description: String,
    /// The seed that generated it.
    pub seed: u64,
    /// Requests per second, one value per second.
    pub demand: Vec<f64>,
}

impl Trace {
    /// Demand at `secs` seconds into the trace; the last value holds after its end.
    pub fn demand_at(&self, secs: u64) -> f64 {
        let index = usize::try_from(secs).unwrap_or(usize::MAX);
        self.demand
            .get(index)
            .or(self.demand.last())
            .copied()
            .unwrap_or(0.0)
    }

    pub fn duration_secs(&self) -> u64 {
        self.demand.len() as u64
    }

    pub fn peak(&self) -> f64 {
        self.demand.iter().copied().fold(0.0, f64::max)
    }

    /// Reads a trace file.
    pub fn load(path: &Path) -> anyhow::Result<Trace> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read trace {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("trace {} is not valid: {e}", path.display()))
    }

    /// The JSON the project ships: pretty-printed, the same bytes for the same trace.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The shapes the project ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Step,
    Ramp,
    Bursty,
    Diurnal,
    DoubleSpike,
    Sawtooth,
}

/// The shipped traces and their seeds.
pub const SHIPPED_TRACES: [(TraceKind, u64); 6] = [
    (TraceKind::Step, 11),
    (TraceKind::Ramp, 22),
    (TraceKind::Bursty, 33),
    (TraceKind::Diurnal, 44),
    (TraceKind::DoubleSpike, 55),
    (TraceKind::Sawtooth, 66),
];

/// Demand before and after the shipped traces' changes, in requests per second.
const BASE_RPS: f64 = 150.0;
const PEAK_RPS: f64 = 650.0;
/// Relative noise on every second.
const NOISE: f64 = 0.04;

impl TraceKind {
    pub const ALL: [TraceKind; 6] = [
        TraceKind::Step,
        TraceKind::Ramp,
        TraceKind::Bursty,
        TraceKind::Diurnal,
        TraceKind::DoubleSpike,
        TraceKind::Sawtooth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TraceKind::Step => "step",
            TraceKind::Ramp => "ramp",
            TraceKind::Bursty => "bursty",
            TraceKind::Diurnal => "diurnal",
            TraceKind::DoubleSpike => "double-spike",
            TraceKind::Sawtooth => "sawtooth",
        }
    }

    pub fn from_name(name: &str) -> Option<TraceKind> {
        TraceKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The trace of this shape for `seed`.
    pub fn generate(self, seed: u64) -> Trace {
        let mut rng = StdRng::seed_from_u64(seed);
        let (description, shape): (&str, Vec<f64>) = match self {
            TraceKind::Step => (
                "150 req/s, a step to 650 req/s at 10 min held for 30 min, back to 150 req/s; 1 h",
                (0..3600)
                    .map(|t| {
                        if (600..2400).contains(&t) {
                            PEAK_RPS
                        } else {
                            BASE_RPS
                        }
                    })
                    .collect(),
            ),
            TraceKind::Ramp => (
                "150 req/s rising linearly to 650 req/s over 30 min, held 10 min, down in 10 min; 1 h",
                (0..3600)
                    .map(|t| {
                        let t = f64::from(t);
                        let rise = ((t - 300.0) / 1800.0).clamp(0.0, 1.0);
                        let fall = ((t - 2700.0) / 600.0).clamp(0.0, 1.0);
                        BASE_RPS + (PEAK_RPS - BASE_RPS) * (rise - fall)
                    })
                    .collect(),
            ),
            TraceKind::Bursty => (
                "200 req/s with spikes of +250..+600 req/s lasting 20..120 s, one every 5 min on average; 1 h",
                bursty(&mut rng),
            ),
            TraceKind::Diurnal => (
                "a compressed day over 2 h: 100 req/s at night, 650 req/s at the peak, a shoulder in the evening",
                (0..7200)
                    .map(|t| {
                        let phase = f64::from(t) / 7200.0 * std::f64::consts::TAU;
                        let day = (1.0 - phase.cos()) / 2.0;
                        let shoulder = 0.15 * (2.0 * phase).sin().max(0.0);
                        100.0 + 550.0 * (day + shoulder).min(1.0)
                    })
                    .collect(),
            ),
            TraceKind::DoubleSpike => (
                "150 req/s; three pairs of spikes to +450..+700 req/s, each 30..60 s long, 45..120 s apart; 1 h",
                double_spikes(&mut rng),
            ),
            TraceKind::Sawtooth => (
                "150 req/s climbing linearly to 550..700 req/s over 8..12 min, then back to 150 req/s at once, repeated; 1 h",
                sawtooth(&mut rng),
            ),
        };
        let demand = shape
            .into_iter()
            .map(|d| {
                let noisy = d * (1.0 + rng.random_range(-NOISE..NOISE));
                (noisy.max(0.0) * 10.0).round() / 10.0
            })
            .collect();
        Trace {
            name: self.name().to_owned(),
            description: description.to_owned(),
            seed,
            demand,
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn bursty(rng: &mut StdRng) -> Vec<f64> {
    const BASE: f64 = 200.0;
    let mut demand = vec![BASE; 3600];
    let mut t = 0.0_f64;
    loop {
        // Exponential gaps with a 5 min mean.
        let gap = -300.0 * (1.0 - rng.random::<f64>()).ln();
        t += gap;
        let start = t as usize;
        if start >= demand.len() {
            break;
        }
        let length = rng.random_range(20..=120_usize);
        let height = rng.random_range(250.0..600.0);
        for value in demand.iter_mut().skip(start).take(length) {
            *value = BASE + height;
        }
    }
    demand
}

/// Base demand of the two adversarial shapes, in requests per second.
const ADVERSARIAL_BASE_RPS: f64 = 150.0;
/// Pairs of spikes in a `double-spike` trace.
const SPIKE_PAIRS: usize = 3;

/// `SPIKE_PAIRS` pairs of spikes, one pair per third of the hour (its start drawn in the
/// first half of the third, so that pairs never overlap): each spike 30-60 s long and
/// +450..+700 req/s tall, rising and falling within a second; the second spike of a pair
/// starts 45-120 s after the first ends.
fn double_spikes(rng: &mut StdRng) -> Vec<f64> {
    const LENGTH_SECS: u64 = 3600;
    let mut demand = vec![ADVERSARIAL_BASE_RPS; LENGTH_SECS as usize];
    let third = LENGTH_SECS / SPIKE_PAIRS as u64;
    for pair in 0..SPIKE_PAIRS as u64 {
        let mut at = pair * third + rng.random_range(60..third / 2);
        for _ in 0..2 {
            let length = rng.random_range(30..=60_u64);
            let height = rng.random_range(450.0..700.0);
            for value in demand.iter_mut().skip(at as usize).take(length as usize) {
                *value = ADVERSARIAL_BASE_RPS + height;
            }
            at += length + rng.random_range(45..=120_u64);
        }
    }
    demand
}

/// Teeth until the hour is full: each climbs linearly from the base to a peak of
/// 550-700 req/s over 8-12 minutes, then drops back to the base at once and stays there
/// 30-90 s before the next climb.
fn sawtooth(rng: &mut StdRng) -> Vec<f64> {
    const LENGTH_SECS: usize = 3600;
    let mut demand = Vec::with_capacity(LENGTH_SECS);
    while demand.len() < LENGTH_SECS {
        let climb = rng.random_range(480..=720_usize);
        let peak = rng.random_range(550.0..700.0);
        for t in 0..climb {
            let rise = t as f64 / climb as f64;
            demand.push(ADVERSARIAL_BASE_RPS + (peak - ADVERSARIAL_BASE_RPS) * rise);
        }
        let rest = rng.random_range(30..=90_usize);
        demand.extend(std::iter::repeat_n(ADVERSARIAL_BASE_RPS, rest));
    }
    demand.truncate(LENGTH_SECS);
    demand
}

/// The shipped traces, generated from their seeds.
pub fn shipped_traces() -> Vec<Trace> {
    SHIPPED_TRACES
        .iter()
        .map(|&(kind, seed)| kind.generate(seed))
        .collect()
}

/// Writes the shipped traces into `dir` as `<name>.json`; returns the paths written.
pub fn write_traces(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for trace in shipped_traces() {
        let path = dir.join(format!("{}.json", trace.name));
        std::fs::write(&path, trace.to_json())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The directory the shipped traces live in.
pub fn shipped_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace_and_different_seeds_differ() {
        for kind in TraceKind::ALL {
            assert_eq!(kind.generate(5), kind.generate(5), "{kind}");
            assert_ne!(kind.generate(5).demand, kind.generate(6).demand, "{kind}");
        }
    }

    #[test]
    fn traces_have_their_shape() {
        let step = TraceKind::Step.generate(1);
        assert_eq!(step.duration_secs(), 3600);
        assert!(step.demand_at(300) < 200.0 && step.demand_at(1200) > 600.0);
        let ramp = TraceKind::Ramp.generate(1);
        assert!(ramp.demand_at(1000) < ramp.demand_at(1500));
        let diurnal = TraceKind::Diurnal.generate(1);
        assert_eq!(diurnal.duration_secs(), 7200);
        assert!(diurnal.demand_at(0) < 120.0 && diurnal.peak() > 600.0);
        let bursty = TraceKind::Bursty.generate(1);
        let spiky = bursty.demand.iter().filter(|d| **d > 400.0).count();
        assert!(spiky > 60 && spiky < 1800, "{spiky} seconds of spikes");
        assert_eq!(
            bursty.demand_at(1_000_000),
            *bursty.demand.last().expect("demand")
        );
    }

    /// The spikes of a trace: (first second, length) of each run of seconds above
    /// `level`.
    fn runs_above(trace: &Trace, level: f64) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (t, d) in trace.demand.iter().enumerate() {
            match (start, *d > level) {
                (None, true) => start = Some(t),
                (Some(s), false) => {
                    runs.push((s, t - s));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            runs.push((s, trace.demand.len() - s));
        }
        runs
    }

    #[test]
    fn double_spikes_come_in_pairs_closer_than_a_stabilization_window() {
        for seed in 0..20 {
            let trace = TraceKind::DoubleSpike.generate(seed);
            assert_eq!(trace.duration_secs(), 3600);
            let spikes = runs_above(&trace, 400.0);
            assert_eq!(spikes.len(), 2 * SPIKE_PAIRS, "seed {seed}: {spikes:?}");
            for pair in spikes.chunks(2) {
                let ((first, length_1), (second, length_2)) = (pair[0], pair[1]);
                assert!((30..=60).contains(&length_1) && (30..=60).contains(&length_2));
                let gap = second - (first + length_1);
                assert!((45..=120).contains(&gap), "seed {seed}: gap {gap} s");
                // Sharp: from the base to the top within one second.
                assert!(trace.demand[first - 1] < 170.0 && trace.demand[first] > 550.0);
            }
            assert!(trace.demand_at(0) < 170.0);
        }
    }

    #[test]
    fn sawtooth_climbs_slowly_and_drops_at_once() {
        for seed in 0..20 {
            let trace = TraceKind::Sawtooth.generate(seed);
            assert_eq!(trace.duration_secs(), 3600);
            // Drops: one second to the next falls by more than 300 req/s; climbs never
            // rise by more than the noise plus a slope of ~1.2 req/s per second.
            let steps: Vec<f64> = trace.demand.windows(2).map(|w| w[1] - w[0]).collect();
            let drops = steps.iter().filter(|d| **d < -300.0).count();
            assert!((4..=7).contains(&drops), "seed {seed}: {drops} drops");
            assert!(
                steps.iter().all(|d| *d < 60.0),
                "seed {seed}: a sudden rise"
            );
            assert!(trace.peak() > 520.0, "seed {seed}");
        }
    }

    #[test]
    fn shipped_trace_files_match_their_seeds() {
        for trace in shipped_traces() {
            let path = shipped_dir().join(format!("{}.json", trace.name));
            let shipped = Trace::load(&path).expect("the shipped trace is readable");
            assert_eq!(
                shipped,
                trace,
                "{} differs from its seed: run `cargo run -p gru-sim -- traces`",
                path.display()
            );
        }
    }
}
