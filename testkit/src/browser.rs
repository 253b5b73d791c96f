//! Headless Chromium for tests, driven over the Chrome DevTools Protocol (CDP): a page is
//! loaded, scripts are evaluated in it, the console's errors are collected, screenshots are
//! taken. The protocol's WebSocket is tungstenite's (blocking); the browser's endpoint is
//! the one Chromium prints on its standard error (`DevTools listening on ws://...`), and
//! the page is one the test opens (`Target.createTarget`). The browser is killed and its profile removed
//! when the [`Browser`] drops, also when a test panics.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tungstenite::{Message, WebSocket};

use crate::ChildGuard;

/// The browser binary (Debian's `chromium` package).
pub const CHROMIUM: &str = "chromium";
/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A headless Chromium and one page of it.
pub struct Browser {
    page: Page,
    _profile: tempfile::TempDir,
    _child: ChildGuard,
}

/// A page's protocol connection: commands out, answers and events in.
struct Page {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// Events received while waiting for answers, kept for [`Browser::console_errors`].
    events: Vec<serde_json::Value>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts Chromium headless with a throwaway profile and connects to its first page.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let port = crate::free_port();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--hide-scrollbars",
                "--remote-allow-origins=*",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        // Its standard error is read to the end (so that it never blocks on a full pipe);
        // the line naming the browser's endpoint is passed on.
        let stderr = child.stderr.take().expect("a piped standard error");
        let child = ChildGuard::new(child);
        let (found, endpoint) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = endpoint
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!("{CHROMIUM} did not open its DevTools port {port} within 20 s")
            });
        let path = url
            .strip_prefix(&format!("ws://127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("an endpoint on port {port}: {url}"))
            .to_owned();
        // A page of our own, reached at its own endpoint.
        let mut browser_socket = Page::connect(port, &path);
        let target = browser_socket.call(
            "Target.createTarget",
            serde_json::json!({ "url": "about:blank" }),
        );
        let id = target["targetId"].as_str().expect("a target id").to_owned();
        let url = format!("/devtools/page/{id}");
        let page = Page::connect(port, &url);
        let mut browser = Browser {
            page,
            _profile: profile,
            _child: child,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, serde_json::json!({}));
        }
        browser
    }

    /// Sends one protocol command and returns its `result` (panics on a protocol error).
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.page.call(method, params)
    }

    /// The viewport: `width` × `height` CSS pixels, a phone's (`mobile`) or a desktop's.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile
            }),
        );
    }

    /// Loads `url` and waits for its `load` event.
    pub fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", serde_json::json!({ "url": url }));
        assert!(
            answer.get("errorText").is_none(),
            "navigating to {url}: {answer}"
        );
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while !self
            .page
            .events
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(Instant::now() < deadline, "{url} did not load within 20 s");
            self.page.read_one();
        }
        self.page
            .events
            .retain(|e| e["method"] != "Page.loadEventFired");
    }

    /// The value of the JavaScript `expression` in the page (returned by value; a promise
    /// is awaited). Panics on an exception, with its text.
    pub fn eval(&mut self, expression: &str) -> serde_json::Value {
        let answer = self.call(
            "Runtime.evaluate",
            serde_json::json!({
                "expression": expression, "returnByValue": true, "awaitPromise": true
            }),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`, at most `timeout`; how long it took.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            if self.eval(expression) == serde_json::Value::Bool(true) {
                return Some(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes a PNG of the page (the whole page when `full_page`) to `path`.
    pub fn screenshot(&mut self, path: &Path, full_page: bool) {
        let answer = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": full_page }),
        );
        let data = answer["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Every error the page reported: exceptions, `console.error` calls, and the browser's
    /// own error entries (failed loads, refused by the content security policy, ...).
    pub fn console_errors(&mut self) -> Vec<String> {
        self.page.drain_pending();
        self.page
            .events
            .iter()
            .filter_map(|event| match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => Some(format!(
                    "exception: {}",
                    event["params"]["exceptionDetails"]
                )),
                Some("Runtime.consoleAPICalled")
                    if event["params"]["type"] == "error"
                        || event["params"]["type"] == "assert" =>
                {
                    Some(format!("console.error: {}", event["params"]["args"]))
                }
                Some("Log.entryAdded") if event["params"]["entry"]["level"] == "error" => {
                    Some(format!(
                        "log: {} {}",
                        event["params"]["entry"]["text"], event["params"]["entry"]["url"]
                    ))
                }
                _ => None,
            })
            .collect()
    }
}

impl Page {
    /// The protocol's WebSocket at `ws://127.0.0.1:port/path`.
    fn connect(port: u16, path: &str) -> Page {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .expect("a read timeout");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools refused the WebSocket {url}: {e}"));
        Page {
            socket,
            next_id: 1,
            events: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = serde_json::json!({ "id": id, "method": method, "params": params });
        self.send(&message.to_string());
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer within 20 s");
            let message = self.read_one();
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    fn send(&mut self, payload: &str) {
        self.socket
            .send(Message::text(payload))
            .expect("send to DevTools");
    }

    /// Reads one whole message; events are kept. (tungstenite answers pings.)
    fn read_one(&mut self) -> serde_json::Value {
        let message = loop {
            match self.socket.read().expect("a message from DevTools") {
                Message::Text(text) => break text.as_bytes().to_vec(),
                Message::Binary(bytes) => break bytes.to_vec(),
                Message::Close(_) => panic!("DevTools closed the connection"),
                _ => continue,
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&message).expect("DevTools speaks JSON");
        if value.get("method").is_some() {
            self.events.push(value.clone());
        }
        value
    }

    /// Reads the events already sent, without waiting for more.
    fn drain_pending(&mut self) {
        // A harmless command: every event sent before its answer is read on the way.
        let _ = self.call("Runtime.evaluate", serde_json::json!({ "expression": "0" }));
    }
}
