//! A throwaway VictoriaMetrics (Debian's `victoria-metrics`): it accepts InfluxDB v2 writes
//! at `/api/v2/write` and returns what it stored with `/api/v1/export`, a series per
//! `<measurement>_<field>` with the tags as labels. Stopped on drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{free_port, http_get, wait_until};

const BINARY: &str = "victoria-metrics";

/// Fails the test if VictoriaMetrics is not installed, unless `GRU_TEST_SKIP` lists
/// `victoria-metrics` (then prints the skip and returns false; on CI it fails:
/// [`testkit::skip_listed`]).
pub fn require(test: &str) -> bool {
    if testkit::skip_listed(test, BINARY) {
        return false;
    }
    let present = Command::new(BINARY)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        present,
        "{test} needs {BINARY}: install it with scripts/install-deps.sh (apt-get install victoria-metrics), or set GRU_TEST_SKIP={BINARY} (not on CI)"
    );
    true
}

/// One stored series as `/api/v1/export` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Labels without `__name__`.
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
    /// Milliseconds since the epoch.
    pub timestamps: Vec<i64>,
}

#[derive(Debug)]
pub struct Victoria {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Victoria {
    /// Starts one on a free loopback port with an empty data directory.
    pub fn start() -> Victoria {
        let dir = tempfile::Builder::new()
            .prefix("gru-test-vm-")
            .tempdir()
            .unwrap();
        let mut vm = Victoria {
            port: free_port(),
            dir,
            child: None,
        };
        vm.resume();
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("victoria-metrics.log")
    }

    /// Starts the server again on the same port and data (after [`Self::stop`]).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(BINARY)
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .args(["-retentionPeriod=100y", "-search.latencyOffset=0s"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(20), || {
            http_get(port, "/health").is_some_and(|(s, _)| s == 200)
        });
        assert!(
            up.is_some(),
            "victoria-metrics did not start:\n{}",
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    /// Stops the server (SIGTERM, so that what it accepted is kept) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exited = wait_until(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().is_some()
            });
            if exited.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Every series matching the series selector `selector`, e.g. `{__name__=~"gru_.*"}`.
    pub fn export(&self, selector: &str) -> Vec<Series> {
        export(self.port, selector)
    }

    /// [`export_until`] on this server, for at most 15 s.
    pub fn export_until(&self, selector: &str, done: impl FnMut(&[Series]) -> bool) -> Vec<Series> {
        export_until(self.port, selector, Duration::from_secs(15), done)
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every series matching `selector` in the VictoriaMetrics at 127.0.0.1:`port`. Recently
/// written data is made searchable first.
pub fn export(port: u16, selector: &str) -> Vec<Series> {
    let _ = http_get(port, "/internal/force_flush");
    let path = format!("/api/v1/export?match[]={}", percent_encode(selector));
    let (status, body) = http_get(port, &path).expect("victoria-metrics answers");
    assert_eq!(status, 200, "export {selector}: {body}");
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut labels: BTreeMap<String, String> = json["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let name = labels.remove("__name__").unwrap();
            let numbers = |key: &str| json[key].as_array().unwrap().clone();
            Series {
                name,
                labels,
                values: numbers("values")
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
                timestamps: numbers("timestamps")
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// [`export`], polled until `done` holds of the answer (new series take a moment to become
/// searchable) or `timeout` has passed; returns the last answer.
pub fn export_until(
    port: u16,
    selector: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Series]) -> bool,
) -> Vec<Series> {
    let mut last = Vec::new();
    wait_until(timeout, || {
        last = export(port, selector);
        done(&last)
    });
    last
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
