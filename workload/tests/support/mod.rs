//! Helpers for the integration tests: child processes that die with the test, free ports,
//! a minimal HTTP client, and the Docker requirement. Each test file uses some of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when dropped, also when the test panics.
/// Its stdout and stderr are collected line by line while it runs.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

/// Lines collected from a child's output so far.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn collect_from(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let lines = Arc::clone(&self.0);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        })
    }
}

impl ChildGuard {
    /// Starts `command` with its stdout and stderr piped and collected.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let stdout = Lines::default();
        let stderr = Lines::default();
        let readers = vec![
            stdout.collect_from(child.stdout.take().expect("stdout is piped")),
            stderr.collect_from(child.stderr.take().expect("stderr is piped")),
        ];
        Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> &Lines {
        &self.stdout
    }

    /// Stdout and stderr so far, for failure messages.
    pub fn output_so_far(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout.snapshot().join("\n"),
            self.name,
            self.stderr.snapshot().join("\n")
        )
    }

    /// Waits up to `deadline` for the process to exit by itself; then its output is
    /// complete. Panics (and the guard kills it) when it does not.
    pub fn wait_for_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    for reader in self.readers.drain(..) {
                        let _ = reader.join();
                    }
                    return status;
                }
                Ok(None) if start.elapsed() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => panic!(
                    "{} still running after {deadline:?}\n{}",
                    self.name,
                    self.output_so_far()
                ),
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }

    /// Sends SIGTERM, as `docker stop` does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)] // not every test binary needs it
pub use testkit::free_port;

/// `GET path` over HTTP/1.0: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

/// `POST path` with an empty body; the status and the body.
pub fn http_post(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

/// Polls `GET /healthz` until it answers 200 or `deadline` passes.
pub fn wait_healthy(addr: SocketAddr, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if matches!(http_get(addr, "/healthz"), Ok((200, _))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Parses `key=value key=value ...` into pairs.
pub fn key_values(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Returns `true` when the test may go on (see `testkit::require`).
pub fn require_docker(test: &str) -> bool {
    testkit::require(test, testkit::Component::Docker)
}
