//! The execution-time report: the line gru's agent reads from the workload's stdout.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The line gru's agent parses (`gru:<service>:<metric>:<value>:<unit>`), with the mean
/// response time in milliseconds to one decimal.
pub fn report_line(service: &str, mean_ms: f64) -> String {
    format!("gru:{service}:execution_time:{mean_ms:.1}:ms")
}

/// Response times of the requests completed since the last report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecutionWindow {
    total: Duration,
    completed: u64,
}

impl ExecutionWindow {
    pub fn record(&mut self, response_time: Duration) {
        self.total += response_time;
        self.completed += 1;
    }

    /// Empties the window and returns its mean in milliseconds, or `None` when no request
    /// completed in it (then nothing is reported: a mean of nothing is not zero).
    pub fn take_mean_ms(&mut self) -> Option<f64> {
        let window = std::mem::take(self);
        (window.completed > 0)
            .then(|| window.total.as_secs_f64() * 1000.0 / window.completed as f64)
    }
}

/// The window shared by the request handlers (writers) and the reporter. A std mutex is
/// right here: it is held for an addition or a swap, never across an `.await`.
pub type SharedWindow = Arc<Mutex<ExecutionWindow>>;

pub fn record(window: &SharedWindow, response_time: Duration) {
    lock(window).record(response_time);
}

fn lock(window: &SharedWindow) -> std::sync::MutexGuard<'_, ExecutionWindow> {
    // A panic while holding the lock cannot leave the window half-updated (it is two
    // additions), so a poisoned lock is still good to use.
    window
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes one line per `interval` in which requests completed, until `stop` fires; then
/// writes the last, partial window, so that requests drained at shutdown are reported too.
pub async fn report_every(
    interval: Duration,
    service: String,
    window: SharedWindow,
    mut out: impl Write,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            () = stop.cancelled() => true,
        };
        let mean = lock(&window).take_mean_ms();
        if let Some(mean_ms) = mean
            && let Err(err) =
                writeln!(out, "{}", report_line(&service, mean_ms)).and_then(|()| out.flush())
        {
            tracing::warn!("cannot write the report line to stdout: {err}");
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_has_the_agents_format() {
        for (service, mean, line) in [
            ("workload", 21.0, "gru:workload:execution_time:21.0:ms"),
            ("web", 20.04, "gru:web:execution_time:20.0:ms"),
            ("web", 1234.56, "gru:web:execution_time:1234.6:ms"),
            ("a-b", 0.0, "gru:a-b:execution_time:0.0:ms"),
        ] {
            assert_eq!(report_line(service, mean), line);
        }
    }

    #[test]
    fn window_mean_covers_only_requests_since_the_last_take() {
        let mut window = ExecutionWindow::default();
        assert_eq!(
            window.take_mean_ms(),
            None,
            "nothing completed, nothing reported"
        );
        window.record(Duration::from_millis(10));
        window.record(Duration::from_millis(30));
        assert_eq!(window.take_mean_ms(), Some(20.0));
        assert_eq!(window.take_mean_ms(), None, "taking empties the window");
        window.record(Duration::from_micros(1500));
        assert_eq!(window.take_mean_ms(), Some(1.5));
    }

    #[tokio::test]
    async fn stopping_flushes_the_partial_window() {
        let window = SharedWindow::default();
        record(&window, Duration::from_millis(42));
        let stop = CancellationToken::new();
        stop.cancel();
        let mut out = Vec::new();
        report_every(
            Duration::from_secs(3600),
            "svc".into(),
            window,
            &mut out,
            stop,
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "gru:svc:execution_time:42.0:ms\n"
        );
    }
}
