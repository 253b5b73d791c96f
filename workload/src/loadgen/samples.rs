//! `--samples-file`: one line per request, for figures the per-interval lines cannot give
//! (a percentile over an arbitrary span, such as "after the last scale-out").
//!
//! A line is `<sent_unix_ms> <outcome>`, the outcome being the latency in milliseconds of
//! a successful request, `err` for a failed one, or `drop` for one that was not sent.
//! Lines are written when the outcome is known, so they are not in send order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What became of one scheduled request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Ok { latency_ms: f64 },
    Err,
    Dropped,
}

/// The line for a request sent at `sent_unix_ms`.
pub fn sample_line(sent_unix_ms: u128, outcome: Outcome) -> String {
    match outcome {
        Outcome::Ok { latency_ms } => format!("{sent_unix_ms} {latency_ms:.1}"),
        Outcome::Err => format!("{sent_unix_ms} err"),
        Outcome::Dropped => format!("{sent_unix_ms} drop"),
    }
}

/// The open samples file. Send times are the run's wall-clock start plus the request's
/// offset in the schedule, so they line up with other clocks on the machine (the demo's
/// instance timeline) without reading the wall clock per request.
#[derive(Debug)]
pub struct SampleLog {
    started_unix_ms: u128,
    // A std mutex: held for one buffered write, never across an `.await`.
    out: Mutex<BufWriter<File>>,
}

impl SampleLog {
    /// Creates (or truncates) `path`; the run starts now.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Ok(Self {
            started_unix_ms,
            out: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Records the request due `offset` after the start.
    pub fn record(&self, offset: Duration, outcome: Outcome) {
        let line = sample_line(self.started_unix_ms + offset.as_millis(), outcome);
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = writeln!(out, "{line}") {
            tracing::warn!("cannot write to the samples file: {err}");
        }
    }

    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = out.flush() {
            tracing::warn!("cannot write to the samples file: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_when_and_what() {
        for (outcome, line) in [
            (Outcome::Ok { latency_ms: 21.349 }, "1700000000123 21.3"),
            (Outcome::Err, "1700000000123 err"),
            (Outcome::Dropped, "1700000000123 drop"),
        ] {
            assert_eq!(sample_line(1_700_000_000_123, outcome), line);
        }
    }

    #[test]
    fn send_times_are_the_start_plus_the_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("samples");
        let log = SampleLog::create(&path).expect("create");
        log.record(Duration::from_millis(1500), Outcome::Err);
        log.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        let (sent, _) = text.split_once(' ').expect("two fields");
        let sent: u128 = sent.parse().expect("a number");
        assert_eq!(sent, log.started_unix_ms + 1500);
        assert!(text.ends_with(" err\n"), "{text:?}");
    }
}
