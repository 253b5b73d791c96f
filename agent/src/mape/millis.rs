//! Time as the MAPE-K core sees it: a plain number handed in by the caller.
//!
//! The core never reads a clock. The agent's loop converts its clock to [`Millis`] at the
//! edge (milliseconds since the Unix epoch is the natural choice, since decisions are shown
//! to operators), the simulation passes virtual time, and tests write literals. Spans are
//! `std::time::Duration`, which is only a length, not a reading of any clock.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since an epoch the caller chooses and keeps.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs.saturating_mul(1000))
    }

    /// How long after `earlier` this is; zero if `earlier` is not earlier.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// This point moved `span` later, stopping at the end of time rather than wrapping.
    pub fn plus(self, span: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_millis(span)))
    }

    /// This point moved `span` earlier, stopping at the epoch.
    pub fn minus(self, span: Duration) -> Millis {
        Millis(self.0.saturating_sub(duration_millis(span)))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} s", self.0 / 1000, self.0 % 1000)
    }
}

fn duration_millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

/// A span as an operator reads it in a reason: whole seconds, rounded up so that "ends in
/// 0 s" is never printed for something still pending.
pub(crate) fn whole_secs_ceil(span: Duration) -> u64 {
    span.as_secs() + u64::from(span.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Millis(5).since(Millis(9)), Duration::ZERO);
        assert_eq!(Millis(9).since(Millis(5)), Duration::from_millis(4));
        assert_eq!(
            Millis(u64::MAX).plus(Duration::from_secs(1)),
            Millis(u64::MAX)
        );
        assert_eq!(Millis(500).minus(Duration::from_secs(1)), Millis::ZERO);
        assert_eq!(
            Millis::from_secs(3).plus(Duration::from_millis(250)),
            Millis(3250)
        );
    }

    #[test]
    fn remaining_seconds_round_up() {
        assert_eq!(whole_secs_ceil(Duration::from_millis(11_001)), 12);
        assert_eq!(whole_secs_ceil(Duration::from_secs(12)), 12);
        assert_eq!(whole_secs_ceil(Duration::ZERO), 0);
    }
}
