//! The policy's weights, as Gru computed them: how strongly the values of a service argue
//! for an action, in [0, 1].
//!
//! * scale-out: `mean over values v of (max(v, T) - T) / (1 - T)`: 0 up to the threshold,
//!   rising to 1 at full load;
//! * scale-in: `mean(1 - min(v, T) / T)`: 0 from the threshold up, rising to 1 when idle;
//! * swap (a running service R for an inactive C): `max(0, mean(min(1, (vC - vR) / T)))`:
//!   how much busier C is than R, relative to the swap threshold.
//!
//! The formulas divide by `1 - T` and `T`; the edges are defined instead of dividing by
//! zero: a scale-out threshold of 1 can never be exceeded and a scale-in threshold of 0 can
//! never be undercut (weight 0), and with a swap threshold of 0 any difference counts fully
//! (+1 or -1). Values are clamped to [0, 1] first. An unavailable value is left out and
//! named; with no value left, the weight is 0 and the explanation says why.

use std::borrow::Borrow;

use super::analyze::AnalyticValue;
use super::explanation::{Direction, Explanation};

/// A weight and how it came about.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighing {
    pub weight: f64,
    pub explanation: Explanation,
}

/// One value's contribution to a scale-out weight.
pub fn scale_out_term(value: f64, threshold: f64) -> f64 {
    let (v, t) = (unit(value), unit(threshold));
    if t >= 1.0 {
        return 0.0;
    }
    (v.max(t) - t) / (1.0 - t)
}

/// One value's contribution to a scale-in weight.
pub fn scale_in_term(value: f64, threshold: f64) -> f64 {
    let (v, t) = (unit(value), unit(threshold));
    if t <= 0.0 {
        return 0.0;
    }
    1.0 - v.min(t) / t
}

/// One value's contribution to a swap weight: the running service's value against the
/// candidate's. Not clamped below, as in Gru: a candidate much less busy than the running
/// service argues against the swap.
pub fn swap_term(running: f64, candidate: f64, threshold: f64) -> f64 {
    let delta = unit(candidate) - unit(running);
    let t = unit(threshold);
    if t <= 0.0 {
        return if delta > 0.0 {
            1.0
        } else if delta < 0.0 {
            -1.0
        } else {
            0.0
        };
    }
    (delta / t).min(1.0)
}

/// The scale-out weight of named values against `threshold`.
pub fn scale_out(values: &[(&str, &AnalyticValue)], threshold: f64) -> Weighing {
    scale_out_of(values, threshold)
}

/// The scale-in weight of named values against `threshold`.
pub fn scale_in(values: &[(&str, &AnalyticValue)], threshold: f64) -> Weighing {
    scale_in_of(values, threshold)
}

/// [`scale_out`] of values held or borrowed (the planner holds them).
pub(super) fn scale_out_of<V: Borrow<AnalyticValue>>(
    values: &[(&str, V)],
    threshold: f64,
) -> Weighing {
    if unit(threshold) >= 1.0 {
        return nothing(format!("threshold {threshold} can never be exceeded"));
    }
    weigh(values, Direction::Out, threshold, |v| {
        scale_out_term(v, threshold)
    })
}

/// [`scale_in`] of values held or borrowed.
pub(super) fn scale_in_of<V: Borrow<AnalyticValue>>(
    values: &[(&str, V)],
    threshold: f64,
) -> Weighing {
    if unit(threshold) <= 0.0 {
        return nothing(format!("threshold {threshold}: no value can be below it"));
    }
    weigh(values, Direction::In, threshold, |v| {
        scale_in_term(v, threshold)
    })
}

/// One value of a swap: its name, the running service's value, the candidate's value.
pub type SwapValue<'a> = (&'a str, &'a AnalyticValue, &'a AnalyticValue);

/// The weight of swapping `running` for `candidate`, over the values both have.
pub fn swap(values: &[SwapValue<'_>], running: &str, candidate: &str, threshold: f64) -> Weighing {
    let terms = values
        .iter()
        .filter_map(|(_, r, c)| Some(swap_term(r.value()?, c.value()?, threshold)));
    let explanation = Explanation::swap(running, candidate, values.iter().copied());
    match mean(terms) {
        Some(mean) => Weighing {
            weight: mean.clamp(0.0, 1.0),
            explanation,
        },
        None => Weighing {
            weight: 0.0,
            explanation,
        },
    }
}

/// The mean of `term` over the available values, and the explanation (written when read).
fn weigh<V: Borrow<AnalyticValue>>(
    values: &[(&str, V)],
    direction: Direction,
    threshold: f64,
    term: impl Fn(f64) -> f64,
) -> Weighing {
    if values.is_empty() {
        return nothing("no metric or analytic to weigh".to_owned());
    }
    let terms = values
        .iter()
        .filter_map(|(_, value)| value.borrow().value().map(&term));
    let weight = mean(terms).map_or(0.0, |mean| mean.clamp(0.0, 1.0));
    let named = values.iter().map(|(name, value)| (*name, value.borrow()));
    Weighing {
        weight,
        explanation: Explanation::rule(direction, threshold, named),
    }
}

fn nothing(explanation: String) -> Weighing {
    Weighing {
        weight: 0.0,
        explanation: Explanation::from(explanation),
    }
}

/// The mean of `terms`, summed in order as `Iterator::sum` does; `None` when there is none.
fn mean(terms: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let count = terms.clone().count();
    (count > 0).then(|| terms.sum::<f64>() / count as f64)
}

/// Values and thresholds live in [0, 1]; anything else is brought back to the edge.
fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn scale_out_term_table() {
        // (value, threshold, term)
        let cases = [
            (0.5, 0.75, 0.0),
            (0.75, 0.75, 0.0),
            (0.875, 0.75, 0.5),
            (1.0, 0.75, 1.0),
            (1.7, 0.75, 1.0), // clamped to 1 first
            (0.3, 0.0, 0.3),
            (1.0, 1.0, 0.0), // threshold 1 can never be exceeded: no division by zero
            (0.9, 1.0, 0.0),
        ];
        for (value, threshold, term) in cases {
            let got = scale_out_term(value, threshold);
            assert!(
                close(got, term),
                "out({value}, {threshold}) = {got}, want {term}"
            );
        }
    }

    #[test]
    fn scale_in_term_table() {
        let cases = [
            (0.5, 0.35, 0.0),
            (0.35, 0.35, 0.0),
            (0.175, 0.35, 0.5),
            (0.0, 0.35, 1.0),
            (-0.2, 0.35, 1.0),
            (0.0, 0.0, 0.0), // threshold 0 can never be undercut: no division by zero
            (0.3, 1.0, 0.7),
        ];
        for (value, threshold, term) in cases {
            let got = scale_in_term(value, threshold);
            assert!(
                close(got, term),
                "in({value}, {threshold}) = {got}, want {term}"
            );
        }
    }

    #[test]
    fn swap_term_table() {
        // (running, candidate, threshold, term)
        let cases = [
            (0.2, 0.5, 0.6, 0.5),
            (0.2, 0.9, 0.6, 1.0),
            (0.5, 0.2, 0.6, -0.5),
            (0.4, 0.4, 0.6, 0.0),
            (0.2, 0.3, 0.0, 1.0), // threshold 0: any difference counts fully
            (0.3, 0.2, 0.0, -1.0),
            (0.3, 0.3, 0.0, 0.0),
        ];
        for (running, candidate, threshold, term) in cases {
            let got = swap_term(running, candidate, threshold);
            assert!(
                close(got, term),
                "swap({running}, {candidate}, {threshold}) = {got}"
            );
        }
    }

    #[test]
    fn weights_are_means_of_available_values() {
        let high = AnalyticValue::Available(1.0);
        let mid = AnalyticValue::Available(0.875);
        let low = AnalyticValue::Available(0.0);
        let out = scale_out(&[("cpu_avg", &high), ("resp", &mid)], 0.75);
        assert!(close(out.weight, 0.75), "{out:?}");
        assert_eq!(out.explanation, "cpu_avg 1.00 > 0.75, resp 0.88 > 0.75");
        let scale_in_weight = scale_in(&[("cpu_avg", &low), ("resp", &mid)], 0.35);
        assert!(close(scale_in_weight.weight, 0.5), "{scale_in_weight:?}");
        assert_eq!(
            scale_in_weight.explanation,
            "cpu_avg 0.00 < 0.35, resp 0.88 >= 0.35"
        );
    }

    #[test]
    fn unavailable_values_are_left_out_and_named() {
        let high = AnalyticValue::Available(1.0);
        let missing = AnalyticValue::unavailable("metric \"resp_time\" has no value");
        let out = scale_out(&[("cpu_avg", &high), ("latency", &missing)], 0.75);
        assert!(
            close(out.weight, 1.0),
            "the unavailable value is not a 0: {out:?}"
        );
        assert_eq!(
            out.explanation,
            "cpu_avg 1.00 > 0.75, latency left out: metric \"resp_time\" has no value"
        );
    }

    #[test]
    fn no_available_value_gives_weight_zero_with_a_reason() {
        let missing = AnalyticValue::unavailable("metric \"x\" has no value");
        let cases = [
            (
                scale_out(&[("latency", &missing)], 0.75),
                "no value available: latency left out",
            ),
            (scale_in(&[], 0.35), "no metric or analytic to weigh"),
            (
                scale_out(&[("cpu_avg", &AnalyticValue::Available(1.0))], 1.0),
                "can never be exceeded",
            ),
            (
                scale_in(&[("cpu_avg", &AnalyticValue::Available(0.0))], 0.0),
                "no value can be below it",
            ),
        ];
        for (weighing, fragment) in cases {
            assert_eq!(weighing.weight, 0.0, "{weighing:?}");
            assert!(weighing.explanation.contains(fragment), "{weighing:?}");
        }
    }

    #[test]
    fn swap_weight_is_floored_at_zero_and_uses_shared_values() {
        let r_low = AnalyticValue::Available(0.2);
        let c_high = AnalyticValue::Available(0.8);
        let missing = AnalyticValue::unavailable("no sample");
        let good = swap(&[("cpu_avg", &r_low, &c_high)], "web", "batch", 0.6);
        assert!(close(good.weight, 1.0), "{good:?}");
        assert_eq!(good.explanation, "cpu_avg web 0.20, batch 0.80");
        let bad = swap(&[("cpu_avg", &c_high, &r_low)], "web", "batch", 0.6);
        assert_eq!(bad.weight, 0.0);
        let partial = swap(
            &[("cpu_avg", &r_low, &c_high), ("mem_avg", &r_low, &missing)],
            "web",
            "batch",
            0.6,
        );
        assert!(close(partial.weight, 1.0), "{partial:?}");
        assert!(
            partial
                .explanation
                .contains("mem_avg of batch left out: no sample")
        );
        let none = swap(&[("mem_avg", &missing, &c_high)], "web", "batch", 0.6);
        assert_eq!(none.weight, 0.0);
        assert!(
            none.explanation.starts_with("no value to compare"),
            "{none:?}"
        );
    }
}
