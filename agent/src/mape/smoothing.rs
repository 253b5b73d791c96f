//! Smoothing of a rule's inputs over its `Window`, as Riemann's policies do: a sliding mean
//! of the values seen during the last `Window` seconds, or an exponentially weighted mean
//! whose weights halve every `Window` seconds.
//!
//! The metric windows (`window.rs`) average what each instance reported during one loop
//! interval, so a fresh value reaches the planner within a report interval. A rule that
//! wants a steadier signal (typically scale-in, so that one quiet second does not remove an
//! instance) smooths on top of that, per rule, without slowing the other rule down.

use std::collections::VecDeque;
use std::time::Duration;

use common::config::Smoothing;

use super::millis::Millis;

/// Values one sliding window keeps at most, whatever the tick rate.
const MAX_SLIDING_VALUES: usize = 256;

/// The smoothed value of one input of one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Smoother {
    Sliding(VecDeque<(Millis, f64)>),
    Ewma { value: f64, at: Millis },
}

impl Smoother {
    /// A smoother of the given kind that has seen nothing yet.
    pub fn new(kind: Smoothing) -> Smoother {
        match kind {
            Smoothing::Sliding => Smoother::Sliding(VecDeque::new()),
            Smoothing::Ewma => Smoother::Ewma {
                value: f64::NAN,
                at: Millis(0),
            },
        }
    }

    /// Whether this smoother is of `kind` (a configuration change replaces it).
    pub fn is(&self, kind: Smoothing) -> bool {
        matches!(
            (self, kind),
            (Smoother::Sliding(_), Smoothing::Sliding) | (Smoother::Ewma { .. }, Smoothing::Ewma)
        )
    }

    /// Takes the value seen at `at` and returns the smoothed value over `window`.
    pub fn update(&mut self, at: Millis, value: f64, window: Duration) -> f64 {
        match self {
            Smoother::Sliding(values) => {
                values.push_back((at, value));
                while values
                    .front()
                    .is_some_and(|(seen, _)| at.since(*seen) > window)
                    || values.len() > MAX_SLIDING_VALUES
                {
                    values.pop_front();
                }
                values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64
            }
            Smoother::Ewma {
                value: smoothed,
                at: last,
            } => {
                if smoothed.is_nan() || window.is_zero() {
                    *smoothed = value;
                } else {
                    // The weight of what was seen before halves every `window`.
                    let elapsed = at.since(*last).as_secs_f64();
                    let kept = 0.5_f64.powf(elapsed / window.as_secs_f64());
                    *smoothed = kept * *smoothed + (1.0 - kept) * value;
                }
                *last = at;
                *smoothed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn a_sliding_window_averages_the_values_of_its_span_only() {
        let mut smoother = Smoother::new(Smoothing::Sliding);
        assert_eq!(smoother.update(Millis(0), 1.0, WINDOW), 1.0);
        assert_eq!(smoother.update(Millis(5_000), 0.0, WINDOW), 0.5);
        // At 12 s the value of 0 s is older than the window.
        assert_eq!(smoother.update(Millis(12_000), 0.0, WINDOW), 0.0);
    }

    #[test]
    fn an_ewma_halves_the_weight_of_the_past_every_window() {
        let mut smoother = Smoother::new(Smoothing::Ewma);
        assert_eq!(smoother.update(Millis(0), 1.0, WINDOW), 1.0);
        let after_one_window = smoother.update(Millis(10_000), 0.0, WINDOW);
        assert!((after_one_window - 0.5).abs() < 1e-9, "{after_one_window}");
        let after_two = smoother.update(Millis(20_000), 0.0, WINDOW);
        assert!((after_two - 0.25).abs() < 1e-9, "{after_two}");
        assert!(smoother.is(Smoothing::Ewma) && !smoother.is(Smoothing::Sliding));
    }
}
