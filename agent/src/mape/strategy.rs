//! Strategies: how a list of weighted candidates becomes one choice.
//!
//! * `probcumulative` (Gru's roulette): normalise the weights, shuffle the candidates, walk
//!   the cumulative sum until it exceeds a uniform draw. Each candidate is chosen with the
//!   probability of its normalised weight; the randomness is what keeps agents that see the
//!   same overload from all acting at once.
//! * `probdelta` (Gru's): normalise, shuffle, take the first candidate whose normalised
//!   weight exceeds the draw, else the one whose weight is closest below the draw (which is
//!   then the heaviest). It favours the heaviest candidate more than the roulette does.
//! * `greedy`: the heaviest candidate, deterministically; ties go to the safer action.
//!
//! The functions see only weights and indices, so the planner's candidates stay its own.

use std::cmp::Ordering;

use common::config::PlannerStrategy;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

/// Weights closer than this are a tie for greedy (they come out of float arithmetic).
pub const TIE_EPSILON: f64 = 1e-9;

/// The chosen candidate and the draw that chose it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub index: usize,
    /// The uniform draw in [0, 1); `None` for greedy.
    pub draw: Option<f64>,
}

/// Chooses one of `weights` (each ≥ 0). `None` when there is nothing to choose: no
/// candidate, or a total weight of 0. `safer(a, b)` orders candidates for greedy's
/// tie-break, `Less` meaning `a` is the safer.
pub fn choose<R: Rng + ?Sized>(
    strategy: PlannerStrategy,
    weights: &[f64],
    safer: impl Fn(usize, usize) -> Ordering,
    rng: &mut R,
) -> Option<Pick> {
    let total: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let normalised: Vec<f64> = weights
        .iter()
        .map(|w| {
            if w.is_finite() && *w > 0.0 {
                w / total
            } else {
                0.0
            }
        })
        .collect();
    let walk = match strategy {
        PlannerStrategy::Greedy => {
            return Some(Pick {
                index: greedy(&normalised, safer),
                draw: None,
            });
        }
        PlannerStrategy::ProbCumulative => roulette,
        PlannerStrategy::ProbDelta => delta,
    };
    let draw: f64 = rng.random();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.shuffle(rng);
    Some(Pick {
        index: walk(&normalised, &order, draw),
        draw: Some(draw),
    })
}

/// Gru's `probcumulative` on normalised weights, visited in `order`.
pub fn roulette(normalised: &[f64], order: &[usize], draw: f64) -> usize {
    let mut cumulative = 0.0;
    for &index in order {
        cumulative += normalised[index];
        if normalised[index] > 0.0 && cumulative > draw {
            return index;
        }
    }
    // Rounding left the sum a hair below a draw close to 1: the last candidate with weight.
    order
        .iter()
        .rev()
        .copied()
        .find(|&index| normalised[index] > 0.0)
        .unwrap_or(0)
}

/// Gru's `probdelta` on normalised weights, visited in `order`.
pub fn delta(normalised: &[f64], order: &[usize], draw: f64) -> usize {
    let mut closest = None;
    let mut smallest_gap = f64::INFINITY;
    for &index in order {
        let weight = normalised[index];
        if weight > draw {
            return index;
        }
        let gap = draw - weight;
        if gap < smallest_gap {
            smallest_gap = gap;
            closest = Some(index);
        }
    }
    closest.unwrap_or(0)
}

/// The heaviest candidate; among ties, the safest by `safer`.
pub fn greedy(weights: &[f64], safer: impl Fn(usize, usize) -> Ordering) -> usize {
    let mut best = 0;
    for index in 1..weights.len() {
        let (w, b) = (weights[index], weights[best]);
        let heavier = w > b + TIE_EPSILON;
        let tie = (w - b).abs() <= TIE_EPSILON;
        if heavier || (tie && safer(index, best) == Ordering::Less) {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn by_index(a: usize, b: usize) -> Ordering {
        a.cmp(&b)
    }

    fn frequencies(strategy: PlannerStrategy, weights: &[f64], draws: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0_usize; weights.len()];
        for _ in 0..draws {
            let pick = choose(strategy, weights, by_index, &mut rng).expect("positive total");
            counts[pick.index] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn roulette_frequencies_match_normalised_weights() {
        // Weights need not sum to 1: they are normalised.
        let weights = [0.2, 0.5, 0.0, 0.3, 0.6];
        let total: f64 = weights.iter().sum();
        let seen = frequencies(PlannerStrategy::ProbCumulative, &weights, 10_000);
        for (index, (&weight, &frequency)) in weights.iter().zip(&seen).enumerate() {
            let expected = weight / total;
            assert!(
                (frequency - expected).abs() <= 0.02,
                "candidate {index}: seen {frequency}, expected {expected}"
            );
        }
        assert_eq!(seen[2], 0.0, "a weight of 0 is never drawn");
    }

    #[test]
    fn roulette_walks_the_cumulative_sum_in_the_given_order() {
        let normalised = [0.5, 0.3, 0.2];
        // (order, draw, chosen)
        let cases: &[(&[usize], f64, usize)] = &[
            (&[0, 1, 2], 0.0, 0),
            (&[0, 1, 2], 0.49, 0),
            (&[0, 1, 2], 0.5, 1),
            (&[0, 1, 2], 0.79, 1),
            (&[0, 1, 2], 0.99, 2),
            (&[2, 1, 0], 0.1, 2),
            (&[2, 1, 0], 0.45, 1),
            (&[2, 1, 0], 0.6, 0),
        ];
        for &(order, draw, chosen) in cases {
            assert_eq!(
                roulette(&normalised, order, draw),
                chosen,
                "{order:?} at {draw}"
            );
        }
    }

    #[test]
    fn roulette_never_picks_zero_weight_even_on_rounding() {
        let normalised = [0.3, 0.7 - 1e-12, 0.0];
        assert_eq!(roulette(&normalised, &[0, 1, 2], 0.999_999_999_999_9), 1);
        assert_eq!(roulette(&normalised, &[2, 0, 1], 0.0), 0);
    }

    #[test]
    fn probdelta_takes_first_above_draw_else_closest_below() {
        let normalised = [0.6, 0.4];
        // (order, draw, chosen): documented behaviour of Gru's probdelta.
        let cases: &[(&[usize], f64, usize)] = &[
            (&[0, 1], 0.3, 0),  // 0.6 exceeds the draw first
            (&[1, 0], 0.3, 1),  // 0.4 exceeds the draw first
            (&[1, 0], 0.5, 0),  // 0.4 does not, 0.6 does
            (&[0, 1], 0.7, 0),  // none exceeds: 0.6 is closest below 0.7
            (&[1, 0], 0.95, 0), // order does not matter for the closest
        ];
        for &(order, draw, chosen) in cases {
            assert_eq!(
                delta(&normalised, order, draw),
                chosen,
                "{order:?} at {draw}"
            );
        }
        // When no weight exceeds the draw, the closest below is the heaviest, and among
        // equally heavy candidates the first visited.
        assert_eq!(delta(&[0.2, 0.3, 0.5], &[2, 1, 0], 0.55), 2);
        assert_eq!(delta(&[0.3, 0.35, 0.35], &[0, 1, 2], 0.36), 1);
        assert_eq!(delta(&[0.3, 0.35, 0.35], &[0, 2, 1], 0.36), 2);
        // A light candidate visited first wins whenever the draw falls below its weight.
        assert_eq!(delta(&[0.2, 0.3, 0.5], &[0, 1, 2], 0.1), 0);
    }

    #[test]
    fn probdelta_favours_the_heaviest_candidate() {
        // Shuffled [0.8, 0.2]: 0.2 wins only when visited first and the draw is below it,
        // so its frequency is 0.5 × 0.2 = 0.1, half its normalised weight.
        let seen = frequencies(PlannerStrategy::ProbDelta, &[0.8, 0.2], 10_000);
        assert!((seen[1] - 0.1).abs() <= 0.02, "{seen:?}");
    }

    #[test]
    fn greedy_takes_the_heaviest_and_breaks_ties_by_safety() {
        // Index order stands for safety order here.
        let cases: &[(&[f64], usize)] = &[
            (&[0.2, 0.7, 0.1], 1),
            (&[0.4, 0.4, 0.2], 0),
            (&[0.1, 0.4, 0.4 + 1e-12], 1), // within the tie epsilon: the safer wins
            (&[0.5], 0),
        ];
        for &(weights, chosen) in cases {
            assert_eq!(greedy(weights, by_index), chosen, "{weights:?}");
        }
        let reversed = |a: usize, b: usize| b.cmp(&a);
        assert_eq!(greedy(&[0.4, 0.4, 0.2], reversed), 1);
    }

    #[test]
    fn greedy_draws_nothing_and_probabilistic_strategies_report_their_draw() {
        let mut rng = StdRng::seed_from_u64(1);
        let greedy = choose(PlannerStrategy::Greedy, &[0.1, 0.9], by_index, &mut rng);
        assert_eq!(
            greedy,
            Some(Pick {
                index: 1,
                draw: None
            })
        );
        for strategy in [PlannerStrategy::ProbCumulative, PlannerStrategy::ProbDelta] {
            let pick = choose(strategy, &[0.1, 0.9], by_index, &mut rng).expect("a pick");
            let draw = pick.draw.expect("a draw");
            assert!((0.0..1.0).contains(&draw), "{draw}");
        }
    }

    #[test]
    fn zero_total_weight_chooses_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        for strategy in [
            PlannerStrategy::ProbCumulative,
            PlannerStrategy::ProbDelta,
            PlannerStrategy::Greedy,
        ] {
            assert_eq!(choose(strategy, &[0.0, 0.0], by_index, &mut rng), None);
            assert_eq!(choose(strategy, &[], by_index, &mut rng), None);
        }
    }

    #[test]
    fn same_seed_same_choice() {
        let weights = [0.3, 0.3, 0.4];
        for strategy in [PlannerStrategy::ProbCumulative, PlannerStrategy::ProbDelta] {
            let a = choose(strategy, &weights, by_index, &mut StdRng::seed_from_u64(42));
            let b = choose(strategy, &weights, by_index, &mut StdRng::seed_from_u64(42));
            assert_eq!(a, b);
        }
    }
}
