//! The workload and the load generator together, as real processes on loopback: the
//! reported execution time must tell light load from overload, which is what gru's
//! agent scales on.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::{ChildGuard, free_port, key_values, wait_healthy};
use testkit::figure;

const SERVICE: &str = "itest";

/// Capacity is 1 worker x 20 ms = 50 requests/s (a little less in a debug build).
const LIGHT_SCHEDULE: &str = "10:3s";
const OVERLOAD_SCHEDULE: &str = "80:3s";
/// A report line covers 1 s; waiting longer than that lets the last window be printed.
const REPORT_SETTLE: Duration = Duration::from_millis(1500);

#[test]
fn execution_time_rises_when_load_exceeds_capacity() {
    let test = "execution_time_rises_when_load_exceeds_capacity";
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(env!("CARGO_BIN_EXE_gru-workload"));
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--service",
            SERVICE,
            "--concurrency",
            "1",
            "--service-time-ms",
            "20",
        ])
        .args(["--report-interval-secs", "1"]);
    let server = ChildGuard::spawn("gru-workload", command);
    assert!(
        wait_healthy(addr, Duration::from_secs(10)),
        "gru-workload did not come up\n{}",
        server.output_so_far()
    );

    let light = drive(addr, LIGHT_SCHEDULE);
    std::thread::sleep(REPORT_SETTLE);
    let light_lines = server.stdout().snapshot();
    let overload = drive(addr, OVERLOAD_SCHEDULE);
    std::thread::sleep(REPORT_SETTLE);
    let all_lines = server.stdout().snapshot();
    let overload_lines = &all_lines[light_lines.len()..];

    let light_ms = execution_times(&light_lines, &server);
    let overload_ms = execution_times(overload_lines, &server);
    assert!(
        !light_ms.is_empty(),
        "no report under light load\n{}",
        server.output_so_far()
    );
    assert!(
        !overload_ms.is_empty(),
        "no report under overload\n{}",
        server.output_so_far()
    );
    let light_mean = mean(&light_ms);
    let overload_mean = mean(&overload_ms);
    figure(
        test,
        &format!("light ({LIGHT_SCHEDULE}): execution_time"),
        format!("mean {light_mean:.1} ms, per second {light_ms:?}"),
    );
    figure(
        test,
        &format!("overload ({OVERLOAD_SCHEDULE}): execution_time"),
        format!("mean {overload_mean:.1} ms, per second {overload_ms:?}"),
    );
    figure(test, "loadgen light", &light.summary_line);
    figure(test, "loadgen overload", &overload.summary_line);
    assert!(
        overload_mean > 5.0 * light_mean,
        "overload mean {overload_mean:.1} ms is not clearly above light mean {light_mean:.1} ms"
    );

    for run in [&light, &overload] {
        let value = |key: &str| -> u64 {
            run.summary
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or_else(|| panic!("no integer `{key}` in summary `{}`", run.summary_line))
        };
        assert!(
            value("ok") > 0,
            "no request succeeded: {}",
            run.summary_line
        );
        assert_eq!(
            value("sent"),
            value("ok") + value("err"),
            "every sent request is accounted for"
        );
        for key in ["p50_ms", "p99_ms"] {
            let v = run
                .summary
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.parse::<f64>());
            assert!(
                matches!(v, Some(Ok(ms)) if ms > 0.0),
                "{key} in `{}`",
                run.summary_line
            );
        }
    }
}

/// One `gru-loadgen` run to its end.
struct LoadgenRun {
    summary_line: String,
    summary: Vec<(String, String)>,
}

fn drive(addr: SocketAddr, schedule: &str) -> LoadgenRun {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gru-loadgen"));
    command.args([
        "--target",
        &format!("http://{addr}/"),
        "--schedule",
        schedule,
    ]);
    let mut loadgen = ChildGuard::spawn("gru-loadgen", command);
    let status = loadgen.wait_for_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "gru-loadgen failed: {status}\n{}",
        loadgen.output_so_far()
    );
    let lines = loadgen.stdout().snapshot();
    let summary_line = lines
        .last()
        .filter(|line| line.starts_with("sent="))
        .unwrap_or_else(|| panic!("no summary line\n{}", loadgen.output_so_far()))
        .clone();
    let summary = key_values(&summary_line);
    let keys: Vec<_> = summary.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["sent", "ok", "err", "dropped", "p50_ms", "p99_ms"],
        "{summary_line}"
    );
    LoadgenRun {
        summary_line,
        summary,
    }
}

/// The values of `gru:<SERVICE>:execution_time:<v>:ms` lines; any other line on stdout
/// fails the test, since the agent reads all of it.
fn execution_times(lines: &[String], server: &ChildGuard) -> Vec<f64> {
    lines
        .iter()
        .map(|line| {
            line.strip_prefix(&format!("gru:{SERVICE}:execution_time:"))
                .and_then(|rest| rest.strip_suffix(":ms"))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "unexpected stdout line {line:?}\n{}",
                        server.output_so_far()
                    )
                })
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}
