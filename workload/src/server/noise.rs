//! Malformed `gru:` lines on demand (`--malformed-lines-per-sec`), for tests of the agent's
//! log reader: every one starts with the marker and is refused by the agent's parser, for
//! a different reason in turn, and none of them is a valid metric.

use std::io::Write;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

/// How often a batch of lines is written: the rate is spread over the second.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);
/// Every this many lines, one is longer than the agent reads (4 KiB).
const LONG_LINE_EVERY: u64 = 100;
/// Length of that longer line.
const LONG_LINE_BYTES: usize = 5000;

/// The `n`-th malformed line for `service`.
pub fn malformed_line(service: &str, n: u64) -> String {
    if n % LONG_LINE_EVERY == LONG_LINE_EVERY - 1 {
        return format!(
            "gru:{service}:execution_time:1:{}",
            "m".repeat(LONG_LINE_BYTES)
        );
    }
    match n % 10 {
        0 => "gru:".to_owned(),
        1 => format!("gru:{service}:execution_time:fast:ms"),
        2 => format!("gru:{service}:execution_time:NaN:ms"),
        3 => format!("gru:{service}::12:ms"),
        4 => format!("gru:{service}:execution_time:12:ms:extra"),
        5 => format!("gru:{service}:execution time:12:ms"),
        6 => format!("gru:{service}:execution_time:12:a unit"),
        7 => format!("gru:{service}:execution_time:1e999:ms"),
        8 => format!("gru:{service}:execution_time"),
        _ => format!("gru:{service}:execution_time:12:unit-longer-than-sixteen"),
    }
}

/// How many lines `elapsed` into printing `per_sec` a second.
pub fn lines_due(per_sec: u32, elapsed: Duration) -> u64 {
    let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    u64::from(per_sec).saturating_mul(millis) / 1000
}

/// Writes `per_sec` malformed lines a second to `out`, in batches every 10 ms, until the
/// task is dropped. The lines due are counted from the start, so a late batch catches up. A
/// batch is one write of whole lines, so with a shared, locked writer (stdout) the report
/// lines stay whole.
pub async fn print_malformed(per_sec: u32, service: String, mut out: impl Write) {
    if per_sec == 0 {
        return;
    }
    let started = Instant::now();
    let mut ticks = tokio::time::interval(BATCH_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut written = 0_u64;
    loop {
        ticks.tick().await;
        let due = lines_due(per_sec, started.elapsed() + BATCH_INTERVAL);
        let mut text = String::new();
        while written < due {
            text.push_str(&malformed_line(&service, written));
            text.push('\n');
            written += 1;
        }
        if !text.is_empty() && out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_the_marker_and_name_the_service() {
        for n in 0..(2 * LONG_LINE_EVERY) {
            let line = malformed_line("web", n);
            let expected = if n % 10 == 0 { "gru:" } else { "gru:web:" };
            assert!(line.starts_with(expected), "{n}: {line}");
            assert!(!line.contains('\n'), "{n}");
        }
        assert!(malformed_line("web", LONG_LINE_EVERY - 1).len() > 4096);
    }

    #[test]
    fn lines_due_follow_the_rate() {
        for (per_sec, ms, due) in [
            (250, 0, 0),
            (250, 10, 2),
            (250, 1000, 250),
            (3000, 1010, 3030),
            (1, 999, 0),
            (u32::MAX, u64::MAX, u64::MAX / 1000),
        ] {
            assert_eq!(
                lines_due(per_sec, Duration::from_millis(ms)),
                due,
                "{per_sec}/s after {ms} ms"
            );
        }
    }
}
