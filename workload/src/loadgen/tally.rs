//! What the load generator counts, and the lines it prints: one per second and a summary.

use std::fmt;

/// Outcomes in some span of time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Handed to the HTTP client.
    pub sent: u64,
    /// Answered 2xx, body read, within the timeout.
    pub ok: u64,
    /// Anything else: a refused connection, a timeout, a non-2xx status (503 included).
    pub err: u64,
    /// Not sent: the in-flight bound was reached, or no target was known yet.
    pub dropped: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.err += other.err;
        self.dropped += other.dropped;
    }
}

/// The running tally: the current second's counts and latencies, and the totals.
/// Latencies are those of `ok` requests, in milliseconds.
#[derive(Debug, Default)]
pub struct Tally {
    window: Counts,
    window_latencies_ms: Vec<f64>,
    total: Counts,
    // Every latency is kept for exact percentiles: 8 bytes a request, 8 MB per million.
    total_latencies_ms: Vec<f64>,
}

/// The 50th and 99th percentiles, `None` when there is no sample.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One per-second line: `t=3s rate=80 sent=80 ok=79 err=1 dropped=0 p50_ms=21.3 p99_ms=88.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub t_secs: u64,
    pub rate: u32,
    pub counts: Counts,
    pub latency: Percentiles,
}

/// The final line: `sent=... ok=... err=... dropped=... p50_ms=... p99_ms=...`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub counts: Counts,
    pub latency: Percentiles,
}

impl Tally {
    pub fn sent(&mut self) {
        self.window.sent += 1;
    }

    pub fn dropped(&mut self) {
        self.window.dropped += 1;
    }

    pub fn ok(&mut self, latency_ms: f64) {
        self.window.ok += 1;
        self.window_latencies_ms.push(latency_ms);
    }

    pub fn err(&mut self) {
        self.window.err += 1;
    }

    /// Whether anything happened since the last [`Tally::take_window`].
    pub fn window_is_empty(&self) -> bool {
        self.window == Counts::default()
    }

    /// Closes the current window: its counts and percentiles, folded into the totals.
    pub fn take_window(&mut self) -> (Counts, Percentiles) {
        let counts = std::mem::take(&mut self.window);
        let mut latencies = std::mem::take(&mut self.window_latencies_ms);
        let percentiles = percentiles(&mut latencies);
        self.total.add(counts);
        self.total_latencies_ms.extend(latencies);
        (counts, percentiles)
    }

    /// Everything so far, the open window included.
    pub fn summary(&mut self) -> Summary {
        let _ = self.take_window();
        Summary {
            counts: self.total,
            latency: percentiles(&mut self.total_latencies_ms),
        }
    }
}

/// Sorts `samples` and reads the 50th and 99th percentiles off them.
pub fn percentiles(samples: &mut [f64]) -> Percentiles {
    samples.sort_unstable_by(f64::total_cmp);
    Percentiles {
        p50_ms: percentile(samples, 50.0),
        p99_ms: percentile(samples, 99.0),
    }
}

/// The nearest-rank percentile of `sorted` (ascending): the smallest sample with at least
/// `p` percent of the samples at or below it. `None` for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Milliseconds to one decimal; `NaN` (which `str::parse::<f64>` reads back) for none.
struct Ms(Option<f64>);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0.unwrap_or(f64::NAN))
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} ok={} err={} dropped={}",
            self.sent, self.ok, self.err, self.dropped
        )
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p50_ms={} p99_ms={}", Ms(self.p50_ms), Ms(self.p99_ms))
    }
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={}s rate={} {} {}",
            self.t_secs, self.rate, self.counts, self.latency
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.counts, self.latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(sent: u64, ok: u64, err: u64, dropped: u64) -> Counts {
        Counts {
            sent,
            ok,
            err,
            dropped,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        for (samples, p, expected) in [
            (&[][..], 50.0, None),
            (&[7.0][..], 50.0, Some(7.0)),
            (&[7.0][..], 99.0, Some(7.0)),
            (&[1.0, 2.0][..], 50.0, Some(1.0)),
            (&[1.0, 2.0][..], 99.0, Some(2.0)),
            (&[1.0, 2.0, 3.0, 4.0][..], 0.0, Some(1.0)),
            (&[1.0, 2.0, 3.0, 4.0][..], 100.0, Some(4.0)),
            (&hundred[..], 50.0, Some(50.0)),
            (&hundred[..], 99.0, Some(99.0)),
        ] {
            assert_eq!(percentile(samples, p), expected, "p{p} of {samples:?}");
        }
    }

    #[test]
    fn percentiles_sort_first() {
        let mut samples = [30.0, 10.0, 20.0];
        let p = percentiles(&mut samples);
        assert_eq!((p.p50_ms, p.p99_ms), (Some(20.0), Some(30.0)));
    }

    #[test]
    fn lines_have_the_documented_format() {
        let tick = Tick {
            t_secs: 3,
            rate: 80,
            counts: counts(80, 79, 1, 0),
            latency: Percentiles {
                p50_ms: Some(21.31),
                p99_ms: Some(88.0),
            },
        };
        assert_eq!(
            tick.to_string(),
            "t=3s rate=80 sent=80 ok=79 err=1 dropped=0 p50_ms=21.3 p99_ms=88.0"
        );
        let summary = Summary {
            counts: Counts::default(),
            latency: Percentiles::default(),
        };
        assert_eq!(
            summary.to_string(),
            "sent=0 ok=0 err=0 dropped=0 p50_ms=NaN p99_ms=NaN"
        );
        assert!(
            "NaN".parse::<f64>().is_ok_and(f64::is_nan),
            "the summary parses back"
        );
    }

    #[test]
    fn windows_fold_into_the_summary() {
        let mut tally = Tally::default();
        tally.sent();
        tally.sent();
        tally.ok(10.0);
        tally.err();
        let (first, p) = tally.take_window();
        assert_eq!(first, counts(2, 1, 1, 0));
        assert_eq!(p.p50_ms, Some(10.0));
        assert!(tally.window_is_empty());
        tally.sent();
        tally.dropped();
        tally.ok(30.0);
        let summary = tally.summary();
        assert_eq!(summary.counts, counts(3, 2, 1, 1));
        assert_eq!(
            summary.latency,
            Percentiles {
                p50_ms: Some(10.0),
                p99_ms: Some(30.0)
            }
        );
    }
}
