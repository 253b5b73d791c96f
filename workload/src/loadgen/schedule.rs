//! The load schedule: phases of a constant rate, e.g. `20:10s,80:30s,0:5s`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One phase: `rate` requests per second for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub rate: u32,
    pub duration: Duration,
}

/// Phases run one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule is empty; expected RATE:DURATION,... such as 20:10s,80:30s")]
    Empty,
    #[error("phase {index} `{text}`: expected RATE:DURATION such as 80:30s")]
    Shape { index: usize, text: String },
    #[error("phase {index} `{text}`: the rate must be a whole number of requests per second")]
    Rate { index: usize, text: String },
    #[error(
        "phase {index} `{text}`: the duration must be a whole number with a unit, s or ms (e.g. 30s, 500ms)"
    )]
    Duration { index: usize, text: String },
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(ScheduleError::Empty);
        }
        let phases = text
            .split(',')
            .enumerate()
            .map(|(i, part)| parse_phase(i + 1, part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { phases })
    }
}

fn parse_phase(index: usize, text: &str) -> Result<Phase, ScheduleError> {
    let (rate, duration) = text.split_once(':').ok_or_else(|| ScheduleError::Shape {
        index,
        text: text.to_owned(),
    })?;
    let rate = rate.trim().parse().map_err(|_| ScheduleError::Rate {
        index,
        text: text.to_owned(),
    })?;
    let duration = parse_duration(duration.trim()).ok_or_else(|| ScheduleError::Duration {
        index,
        text: text.to_owned(),
    })?;
    Ok(Phase { rate, duration })
}

fn parse_duration(text: &str) -> Option<Duration> {
    // `ms` first: "500ms" also ends with "s".
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    text.strip_suffix('s')?
        .parse()
        .ok()
        .map(Duration::from_secs)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, phase) in self.phases.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}:{}ms", phase.rate, phase.duration.as_millis())?;
        }
        Ok(())
    }
}

impl Schedule {
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The rate in force `elapsed` after the start, or `None` once the schedule is over.
    pub fn rate_at(&self, elapsed: Duration) -> Option<u32> {
        let mut end = Duration::ZERO;
        for phase in &self.phases {
            end += phase.duration;
            if elapsed < end {
                return Some(phase.rate);
            }
        }
        None
    }

    /// The mean scheduled rate over `[from, to)`, in requests per second, rounded to the
    /// nearest whole one; 0 for an empty span or past the end.
    pub fn mean_rate(&self, from: Duration, to: Duration) -> u32 {
        if to <= from {
            return 0;
        }
        let mut phase_start = Duration::ZERO;
        let mut requests = 0.0;
        for phase in &self.phases {
            let phase_end = phase_start + phase.duration;
            let overlap = phase_end.min(to).saturating_sub(phase_start.max(from));
            requests += f64::from(phase.rate) * overlap.as_secs_f64();
            phase_start = phase_end;
        }
        (requests / (to - from).as_secs_f64()).round() as u32
    }

    /// When each request is due, counted from the start: evenly spaced at each phase's
    /// rate (`ceil(rate x duration)` requests per phase), in order. Open loop: the times
    /// do not depend on answers.
    pub fn send_offsets(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut phase_start = Duration::ZERO;
        self.phases.iter().flat_map(move |phase| {
            let start = phase_start;
            phase_start += phase.duration;
            let rate = u128::from(phase.rate);
            let phase_nanos = phase.duration.as_nanos();
            (0u128..)
                .map(move |k| k * 1_000_000_000)
                .take_while(move |scaled| rate > 0 && *scaled < phase_nanos * rate)
                .map(move |scaled| start + nanos(scaled / rate))
        })
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn phase(rate: u32, millis: u64) -> Phase {
        Phase {
            rate,
            duration: ms(millis),
        }
    }

    #[test]
    fn schedules_parse_into_phases() {
        let schedule: Schedule = "20:10s, 80:30s,0:5s,5:250ms".parse().expect("valid");
        let expected = [
            phase(20, 10_000),
            phase(80, 30_000),
            phase(0, 5_000),
            phase(5, 250),
        ];
        assert_eq!(schedule.phases(), expected);
        assert_eq!(schedule.total(), ms(45_250));
    }

    #[test]
    fn bad_schedules_name_the_phase() {
        let shape = |index, text: &str| ScheduleError::Shape {
            index,
            text: text.into(),
        };
        let rate = |index, text: &str| ScheduleError::Rate {
            index,
            text: text.into(),
        };
        let dur = |index, text: &str| ScheduleError::Duration {
            index,
            text: text.into(),
        };
        for (input, expected) in [
            ("", ScheduleError::Empty),
            ("20:10s,80", shape(2, "80")),
            ("20:10s,", shape(2, "")),
            ("x:10s", rate(1, "x:10s")),
            ("-5:10s", rate(1, "-5:10s")),
            ("2.5:10s", rate(1, "2.5:10s")),
            ("20:10", dur(1, "20:10")),
            ("20:10m", dur(1, "20:10m")),
            ("20:1.5s", dur(1, "20:1.5s")),
        ] {
            assert_eq!(input.parse::<Schedule>(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn rate_follows_the_phases_and_ends_with_the_schedule() {
        let schedule: Schedule = "20:2s,80:1s".parse().expect("valid");
        for (at, rate) in [
            (0, Some(20)),
            (1999, Some(20)),
            (2000, Some(80)),
            (2999, Some(80)),
            (3000, None),
        ] {
            assert_eq!(schedule.rate_at(ms(at)), rate, "at {at} ms");
        }
    }

    #[test]
    fn mean_rate_weighs_the_phases_by_their_overlap() {
        let schedule: Schedule = "10:2s,40:3s".parse().expect("valid");
        for (from, to, rate) in [
            (0, 1000, 10),
            (1000, 2000, 10),
            (2000, 5000, 40),
            (0, 5000, 28),    // (20 + 120) / 5
            (1000, 4000, 30), // (10 + 80) / 3
            (4000, 6000, 20), // the schedule ends at 5 s: 40 / 2
            (6000, 7000, 0),
            (3000, 3000, 0),
        ] {
            assert_eq!(
                schedule.mean_rate(ms(from), ms(to)),
                rate,
                "{from}..{to} ms"
            );
        }
    }

    #[test]
    fn send_offsets_are_evenly_spaced_per_phase() {
        let schedule: Schedule = "4:1s,0:1s,2:1s,3:500ms".parse().expect("valid");
        let offsets: Vec<_> = schedule.send_offsets().collect();
        assert_eq!(
            offsets,
            [
                ms(0),
                ms(250),
                ms(500),
                ms(750), // 4/s for 1 s
                // 0/s for 1 s: nothing
                ms(2000),
                ms(2500), // 2/s
                ms(3000),
                Duration::from_nanos(3_333_333_333), // 3/s for 0.5 s: ceil(1.5) = 2
            ]
        );
    }

    #[test]
    fn send_offsets_count_is_rate_times_duration() {
        let schedule: Schedule = "20:10s,80:30s,0:5s".parse().expect("valid");
        assert_eq!(schedule.send_offsets().count(), 200 + 2400);
    }
}
