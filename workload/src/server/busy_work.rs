//! The CPU-busy work a request costs.
//!
//! Why a fixed amount of computation instead of spinning until a deadline: under a CPU
//! limit (`docker run --cpus`) or with more workers than cores, a deadline spin would still
//! end on time, having simply done less work, and hide the scarcity gru is meant to see. A
//! fixed amount of work takes longer when CPU is short, as real work does. The amount is
//! calibrated once at start-up so that it takes the configured time on an idle core.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Iterations of the mixing function per round; a round takes a few microseconds.
const ITERATIONS_PER_ROUND: u64 = 1024;
/// Calibration runs this many short samples and keeps the fastest: a short sample is
/// likely to run without being preempted or throttled, a long one is not.
const CALIBRATION_SAMPLES: u32 = 10;
const CALIBRATION_SAMPLE_TIME: Duration = Duration::from_millis(2);

/// A fixed amount of CPU work, sized by [`BusyWork::calibrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyWork {
    rounds: u64,
}

impl BusyWork {
    /// Measures this machine's speed and sizes the work to take about `target` on an idle
    /// core. Blocks for about 20 ms.
    pub fn calibrate(target: Duration) -> Self {
        let best_rounds_per_sec = (0..CALIBRATION_SAMPLES)
            .map(|_| sample_rounds_per_sec(CALIBRATION_SAMPLE_TIME))
            .fold(0.0_f64, f64::max);
        Self::from_rate(best_rounds_per_sec, target)
    }

    /// The work that takes `target` at `rounds_per_sec`.
    pub fn from_rate(rounds_per_sec: f64, target: Duration) -> Self {
        // Saturating float-to-int conversion: a negative or NaN rate gives no work at all.
        let rounds = (rounds_per_sec * target.as_secs_f64()).round() as u64;
        Self { rounds }
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Does the work on the calling thread. Returns a value derived from it so the
    /// optimiser cannot drop the computation.
    pub fn run(&self) -> u64 {
        let mut acc = 0;
        for i in 0..self.rounds {
            acc = round(black_box(acc ^ i));
        }
        black_box(acc)
    }
}

fn sample_rounds_per_sec(sample: Duration) -> f64 {
    let start = Instant::now();
    let mut acc = 0;
    let mut rounds: u64 = 0;
    while start.elapsed() < sample {
        acc = round(black_box(acc ^ rounds));
        rounds += 1;
    }
    black_box(acc);
    rounds as f64 / start.elapsed().as_secs_f64()
}

/// One round of a 64-bit LCG step followed by an xor-shift: cheap, branch-free, and not
/// something the compiler can fold away.
fn round(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..ITERATIONS_PER_ROUND {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_sized_from_the_measured_rate() {
        let work = BusyWork::from_rate(50_000.0, Duration::from_millis(20));
        assert_eq!(work.rounds(), 1000);
        assert_eq!(
            BusyWork::from_rate(f64::NAN, Duration::from_millis(20)).rounds(),
            0
        );
        assert_eq!(BusyWork::from_rate(50_000.0, Duration::ZERO).rounds(), 0);
    }

    #[test]
    fn calibrated_work_takes_at_least_a_good_part_of_the_target() {
        // Only a lower bound: other tests share the cores and can only make it slower.
        let target = Duration::from_millis(20);
        let work = BusyWork::calibrate(target);
        let start = Instant::now();
        work.run();
        let took = start.elapsed();
        assert!(
            took >= target / 4,
            "{work:?} took {took:?}, target {target:?}"
        );
    }
}
