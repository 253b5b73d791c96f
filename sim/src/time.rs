//! Virtual time: a tick counter and the length of a tick.
//!
//! Nothing in the simulator reads a clock. The simulation advances one tick at a time and
//! hands the planner, the store and the views [`Millis`] computed from the tick, so a run is
//! a pure function of its scenario and seed, and an hour of cluster time takes as long as
//! its arithmetic.

use gru_agent::mape::Millis;

/// A virtual clock: `tick` ticks of `tick_secs` seconds each since the run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualClock {
    tick: u64,
    tick_secs: u64,
}

impl VirtualClock {
    /// A clock at tick 0; a tick is `tick_secs` seconds (at least 1).
    pub fn new(tick_secs: u64) -> VirtualClock {
        VirtualClock {
            tick: 0,
            tick_secs: tick_secs.max(1),
        }
    }

    pub fn tick(&self) -> u64 {
        self.tick
    }

    pub fn tick_secs(&self) -> u64 {
        self.tick_secs
    }

    /// Seconds since the run started.
    pub fn secs(&self) -> u64 {
        self.tick * self.tick_secs
    }

    /// The time the core is handed.
    pub fn now(&self) -> Millis {
        Millis::from_secs(self.secs())
    }

    pub fn advance(&mut self) {
        self.tick += 1;
    }

    /// Whether something that happens every `every_secs` seconds, shifted by `offset_secs`,
    /// happens at this tick.
    pub fn is_due(&self, every_secs: u64, offset_secs: u64) -> bool {
        let every = every_secs.max(self.tick_secs);
        // The tick [secs, secs + tick) holds a time offset + k·every.
        (offset_secs % every + every - self.secs() % every) % every < self.tick_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_events_fire_once_per_period_at_their_offset() {
        let mut clock = VirtualClock::new(1);
        let mut fired = Vec::new();
        for _ in 0..25 {
            if clock.is_due(10, 3) {
                fired.push(clock.secs());
            }
            clock.advance();
        }
        assert_eq!(fired, vec![3, 13, 23]);
        assert_eq!(clock.now(), Millis::from_secs(25));
    }

    #[test]
    fn long_ticks_still_fire_every_period() {
        let mut clock = VirtualClock::new(5);
        let mut fired = 0;
        for _ in 0..12 {
            fired += u32::from(clock.is_due(10, 7));
            clock.advance();
        }
        assert_eq!(fired, 6, "one event per 10 s over 60 s");
    }
}
