//! The `gru-workload:latest` image, built by `scripts/build-images.sh` and run by a real
//! Docker engine: it serves, reports to `docker logs`, and stops promptly on `docker stop`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{free_port, http_get, require_docker, wait_healthy};

const IMAGE: &str = "gru-workload:latest";

/// A container removed (forcibly) when dropped, also when the test panics.
struct ContainerGuard {
    name: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.name]);
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn workload_image_serves_reports_and_stops_promptly() {
    let test = "workload_image_serves_reports_and_stops_promptly";
    if !require_docker(test) {
        return;
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
    let built = Command::new(&script)
        .args(["workload", "loadgen"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        built.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        built.status,
        text(&built.stdout),
        text(&built.stderr)
    );
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.gru.image\"}}",
        IMAGE,
    ]);
    assert_eq!(text(&label.stdout).trim(), "workload", "label of {IMAGE}");

    let name = format!("gru-test-workload-{}", std::process::id());
    let _ = docker(&["rm", "--force", &name]); // a leftover of a killed run with this pid
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let run = docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        &name,
        "-p",
        &publish,
        "-e",
        "SERVICE_NAME=imgtest",
        IMAGE,
    ]);
    let container = ContainerGuard { name };
    assert!(
        run.status.success(),
        "docker run failed: {}",
        text(&run.stderr)
    );
    let logs = || {
        let out = docker(&["logs", &container.name]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        wait_healthy(addr, Duration::from_secs(15)),
        "/healthz never answered\n{}",
        logs()
    );
    for _ in 0..5 {
        let reply = http_get(addr, "/");
        assert!(
            matches!(&reply, Ok((200, body)) if body.contains("\"service\":\"imgtest\"")),
            "GET / gave {reply:?}\n{}",
            logs()
        );
    }

    let expected = "gru:imgtest:execution_time:";
    let start = Instant::now();
    loop {
        // The report lines are on stdout: only that stream is read here.
        let out = docker(&["logs", &container.name]);
        if text(&out.stdout).contains(expected) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no `{expected}` line in docker logs\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let stopping = Instant::now();
    let stop = docker(&["stop", "--time", "10", &container.name]);
    assert!(
        stop.status.success(),
        "docker stop failed: {}",
        text(&stop.stderr)
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}: SIGTERM is not handled by the process",
        stopping.elapsed()
    );
}
