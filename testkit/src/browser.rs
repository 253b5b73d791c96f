//! Headless Chromium for tests, driven over the Chrome DevTools Protocol (CDP): a page is
//! loaded, scripts are evaluated in it, the console's errors are collected, screenshots are
//! taken. The protocol's WebSocket is spoken here directly over a std `TcpStream` (text
//! frames, masked as a client must, no extension), which is all CDP needs; the browser is
//! killed and its profile removed when the [`Browser`] drops, also when a test panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    stream: TcpStream,
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
        let child = Command::new(CHROMIUM)
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
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let child = ChildGuard::new(child);
        let mut socket_url = None;
        crate::wait_until(Duration::from_secs(20), || {
            socket_url = devtools_get(port, "/json/list").and_then(|body| {
                let targets: serde_json::Value = serde_json::from_str(&body).ok()?;
                targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                    .as_str()
                    .map(str::to_owned)
            });
            socket_url.is_some()
        });
        let url = socket_url.unwrap_or_else(|| {
            panic!("{CHROMIUM} did not open its DevTools port {port} within 20 s")
        });
        let page = Page::connect(&url);
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
        let png = decode_base64(data).expect("the screenshot is base64");
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
    /// The WebSocket handshake on `ws://host:port/path`.
    fn connect(url: &str) -> Page {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = TcpStream::connect(authority).expect("connect to the DevTools socket");
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .expect("a read timeout");
        let key = "Z3J1LWNvbnNvbGUtdGVzdA==";
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("send the handshake");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
        let mut status = String::new();
        reader
            .read_line(&mut status)
            .expect("the handshake's answer");
        assert!(
            status.contains(" 101 "),
            "DevTools refused the WebSocket: {status}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        assert!(
            reader.buffer().is_empty(),
            "the browser spoke before it was asked"
        );
        Page {
            stream,
            next_id: 1,
            events: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = serde_json::json!({ "id": id, "method": method, "params": params });
        self.send(message.to_string().as_bytes());
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

    /// One masked, final text frame.
    fn send(&mut self, payload: &[u8]) {
        let mut frame = vec![0x81u8];
        let mask = rand_mask();
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("send to DevTools");
    }

    /// Reads one whole message (joining continuation frames); events are kept.
    fn read_one(&mut self) -> serde_json::Value {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .expect("a frame from DevTools");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0F);
            let len = match head[1] & 0x7F {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n).expect("length");
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n).expect("length");
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits")];
            self.stream
                .read_exact(&mut payload)
                .expect("a frame's payload");
            match opcode {
                0x8 => panic!("DevTools closed the connection"),
                0x9 => {
                    // A ping: answered with a pong carrying its payload.
                    let mask = rand_mask();
                    let mut pong = vec![0x8A, 0x80 | payload.len() as u8];
                    pong.extend_from_slice(&mask);
                    pong.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                    self.stream.write_all(&pong).expect("pong");
                    continue;
                }
                0xA => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                break;
            }
        }
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

/// `GET path` of the DevTools HTTP endpoint: its body, read by its `Content-Length` (the
/// browser keeps the connection open).
fn devtools_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    if !status.contains(" 200 ") {
        return None;
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0u8; length?];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

fn rand_mask() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.to_le_bytes()
}

/// Standard base64 (with padding), as CDP sends binary data.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n <<= 6;
            if i < 4 - pad {
                n |= value(*b)?;
            }
        }
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("iVBORw0KGgo=", b"\x89PNG\r\n\x1a\n"),
        ] {
            assert_eq!(decode_base64(text).as_deref(), Some(bytes), "{text}");
        }
        assert_eq!(decode_base64("Zm9"), None);
        assert_eq!(decode_base64("Zm9*"), None);
    }
}
