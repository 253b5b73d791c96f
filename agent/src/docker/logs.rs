//! A container's output, line by line: what a managed service prints (its `gru:` metric
//! lines among the rest), read by a task that feeds a bounded channel.
//!
//! The agent must never wait on a chatty container: when the reader falls behind, lines are
//! dropped and counted, and the engine's stream is read on at full speed. A line is at most
//! [`MAX_LOG_LINE_BYTES`]; a longer one is cut there and the rest of it, up to the next
//! newline, dropped, so a container printing without newlines costs a bounded buffer.
//!
//! Why not bollard's log stream: it holds, per container and for as long as the container
//! runs, a pooled HTTP connection with its own task, request channel, 8 KiB read and
//! write buffers and an 8 KiB decoder buffer, about 40 KiB each (measured with massif at
//! 100 containers: most of the agent's memory per container). The engine's log stream is
//! one request whose answer never ends, so it is read here directly: one connection
//! (the engine's socket, or TCP), the request written once, the answer's head read within
//! the call timeout, then its body (chunked or not) and the engine's stream framing (8-byte
//! headers, unless the container has a TTY) decoded as they come, through one
//! [`READ_BUFFER_BYTES`] buffer. The decoders are plain values ([`Head`], [`Body`],
//! [`Frames`]), tested alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{DockerError, Engine};

/// Lines buffered for a slow reader. When full, the newest line is dropped and counted in
/// [`LogFollower::dropped`]: a metric line is reported again a second later, and a stalled
/// reader must not stall the engine's stream.
pub const LOG_CHANNEL_CAPACITY: usize = 1024;

/// The longest line delivered, in bytes of UTF-8: the longest a metric line may be.
pub const MAX_LOG_LINE_BYTES: usize = crate::metrics_line::MAX_LINE_BYTES;

/// What one read of the engine's stream takes at most. A line longer than this is joined
/// across reads; a few metric lines a second fit in one.
pub const READ_BUFFER_BYTES: usize = 2 * 1024;

/// The longest answer head (status line and headers) the engine may send.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most of an error answer's body kept for its message.
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// A container's output being followed.
#[derive(Debug)]
pub struct LogFollower {
    /// stdout and stderr lines (each stream split on its own), without the newline or a
    /// trailing `\r`, empty lines left out. Closes when the following ends.
    pub lines: mpsc::Receiver<String>,
    /// Lines dropped so far because `lines` was full.
    pub dropped: Arc<AtomicU64>,
    /// How the following ended; ready once `lines` is closed (or the receiver dropped).
    pub ended: JoinHandle<LogsEnd>,
}

/// Why a [`LogFollower`] stopped.
#[derive(Debug)]
pub enum LogsEnd {
    /// The engine ended the stream: the container stopped or was removed.
    Finished,
    /// The receiver of the lines was dropped.
    ReaderGone,
    /// The stream failed; the container may still be running.
    Failed(DockerError),
}

impl Engine {
    /// Follows stdout and stderr of container `id` (name or id) from now on, until the
    /// container stops or [`LogFollower::lines`] is dropped. The container is inspected
    /// first, within the call timeout: a missing container is an error here that names it.
    /// A container that is not running gives a follower that ends at once.
    ///
    /// Output printed before the engine receives the request (a few milliseconds after
    /// this returns) is not delivered. The call timeout bounds the connection and the wait
    /// for the answer's head; no deadline applies once attached: a quiet container is
    /// normal, and the engine closes the stream when the container stops.
    pub async fn follow_logs(&self, id: &str) -> Result<LogFollower, DockerError> {
        let inspected = self
            .call("inspect", id, self.docker.inspect_container(id, None))
            .await?;
        let id = inspected.id.unwrap_or_else(|| id.to_owned());
        let tty = inspected
            .config
            .and_then(|config| config.tty)
            .unwrap_or(false);
        let address = Address::of(&self.url).ok_or_else(|| DockerError::BadUrl {
            url: self.url.clone(),
            reason: "logs are read over unix:// or tcp:// only".to_owned(),
        })?;
        let request = format!(
            "GET /v{}/containers/{id}/logs?follow=1&stdout=1&stderr=1&since={}&tail=0 \
             HTTP/1.1\r\nHost: docker\r\nUser-Agent: gru\r\n\r\n",
            self.docker.client_version(),
            since_now()
        );
        let (sender, lines) = mpsc::channel(LOG_CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let span = tracing::debug_span!("docker_logs", container = %id);
        let timeout = self.timeout;
        let feeder = Arc::clone(&dropped);
        let ended = tokio::spawn(
            async move {
                // Boxed, so that the task keeps only the reading's state once attached.
                let attached = Box::pin(attach(&address, &request, &id, timeout)).await;
                let end = match attached {
                    Ok((io, body, rest)) => {
                        let frames = Frames::new(tty);
                        feed_lines(io, body, frames, &rest, &id, sender, &feeder).await
                    }
                    Err(error) => LogsEnd::Failed(error),
                };
                tracing::debug!(
                    end = ?end,
                    dropped = feeder.load(Ordering::Relaxed),
                    "stopped following the container's output"
                );
                end
            }
            .instrument(span),
        );
        Ok(LogFollower {
            lines,
            dropped,
            ended,
        })
    }
}

/// Where the engine listens, for the log streams.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Unix(String),
    Tcp(String),
}

impl Address {
    /// The address of an engine reached at `url` (see `connect`): `unix:///path`,
    /// `tcp://` or `http://host:port`, a bare `host:port`, or nothing for the local
    /// socket. `None` for any other scheme.
    fn of(url: &str) -> Option<Address> {
        let url = url.trim();
        if url.is_empty() {
            return Some(Address::Unix(
                common::config::GRU_DEFAULT_DOCKER_SOCKET.to_owned(),
            ));
        }
        match url.split_once("://") {
            Some(("unix", path)) => Some(Address::Unix(path.to_owned())),
            Some(("tcp" | "http", rest)) => {
                Some(Address::Tcp(rest.trim_end_matches('/').to_owned()))
            }
            Some(_) => None,
            None => Some(Address::Tcp(url.to_owned())),
        }
    }
}

/// A connection to the engine.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Connects to the engine, sends `request` and reads the answer's head, within `timeout`:
/// the connection, how its body is framed, and the body's first bytes (read with the
/// head). An answer other than 200 is the engine's error, with its message.
async fn attach(
    address: &Address,
    request: &str,
    id: &str,
    timeout: Duration,
) -> Result<(Box<dyn Connection>, Body, Vec<u8>), DockerError> {
    let failed = |source| DockerError::Call {
        call: "logs",
        target: id.to_owned(),
        source,
    };
    let io_failed = |err: std::io::Error| failed(bollard::errors::Error::IOError { err });
    let attaching = async {
        let mut io: Box<dyn Connection> = match address {
            Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Address::Tcp(host) => Box::new(tokio::net::TcpStream::connect(host.as_str()).await?),
        };
        io.write_all(request.as_bytes()).await?;
        let mut received = Vec::with_capacity(READ_BUFFER_BYTES);
        loop {
            if let Some(head) = Head::parse(&received)? {
                return Ok((io, head, received));
            }
            if received.len() >= MAX_HEAD_BYTES {
                return Err(std::io::Error::other("the answer's head is too long"));
            }
            received.reserve(READ_BUFFER_BYTES);
            if io.read_buf(&mut received).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let (mut io, head, mut received) = tokio::time::timeout(timeout, attaching)
        .await
        .map_err(|_| DockerError::Timeout {
            call: "logs",
            target: id.to_owned(),
            after: timeout,
        })?
        .map_err(io_failed)?;
    let rest = received.split_off(head.len);
    if head.status != 200 {
        let message = tokio::time::timeout(timeout, error_body(&mut io, head.body, rest))
            .await
            .unwrap_or_default();
        return Err(failed(bollard::errors::Error::DockerResponseServerError {
            status_code: head.status,
            message,
        }));
    }
    Ok((io, head.body, rest))
}

/// The message of an error answer: its JSON `message`, or its text.
async fn error_body(io: &mut Box<dyn Connection>, mut body: Body, first: Vec<u8>) -> String {
    let mut text = Vec::new();
    let mut chunk = first;
    loop {
        let mut input = chunk.as_slice();
        while let Ok(Some(data)) = body.decode(&mut input) {
            text.extend_from_slice(data);
        }
        if body.is_done() || text.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
        chunk = vec![0; READ_BUFFER_BYTES];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => chunk.truncate(n),
        }
    }
    text.truncate(MAX_ERROR_BODY_BYTES);
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(&text) {
        Ok(parsed) => parsed.message,
        Err(_) => String::from_utf8_lossy(&text).trim().to_owned(),
    }
}

/// Reads the engine's stream (`first`, read with the answer's head, then `io`) into
/// `sender` until it ends, fails, or the receiver is gone; `id` names the container in
/// errors.
async fn feed_lines(
    mut io: impl AsyncRead + Unpin,
    mut body: Body,
    mut frames: Frames,
    first: &[u8],
    id: &str,
    sender: mpsc::Sender<String>,
    dropped: &AtomicU64,
) -> LogsEnd {
    let failed = |err| {
        LogsEnd::Failed(DockerError::Call {
            call: "logs",
            target: id.to_owned(),
            source: bollard::errors::Error::IOError { err },
        })
    };
    let mut output = Output::default();
    let deliver = |line: String| {
        // A closed channel is noticed after the chunk, by `is_closed`.
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(line)
            && dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("log reader is slow; dropping lines");
        }
    };
    let mut buffer = vec![0; READ_BUFFER_BYTES];
    let mut chunk = first;
    loop {
        if let Err(error) = output.take(&mut body, &mut frames, chunk, &deliver) {
            return failed(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
        }
        if sender.is_closed() {
            return LogsEnd::ReaderGone;
        }
        if body.is_done() {
            break;
        }
        let read = tokio::select! {
            () = sender.closed() => return LogsEnd::ReaderGone,
            read = io.read(&mut buffer) => read,
        };
        match read {
            Ok(0) => break,
            Ok(read) => chunk = &buffer[..read],
            Err(err) => return failed(err),
        }
    }
    // The last lines of a container that exited without a final newline.
    output.finish(&deliver);
    LogsEnd::Finished
}

/// The lines of stdout and stderr, each split on its own.
#[derive(Debug, Default)]
struct Output {
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl Output {
    /// Decodes `chunk` of the answer's body and delivers the lines it completes.
    fn take(
        &mut self,
        body: &mut Body,
        frames: &mut Frames,
        mut chunk: &[u8],
        deliver: &impl Fn(String),
    ) -> Result<(), &'static str> {
        let mut deliver = |line| deliver(line);
        while let Some(data) = body.decode(&mut chunk)? {
            frames.decode(data, |stream, bytes| match stream {
                Stream::Out => self.stdout.push(bytes, &mut deliver),
                Stream::Err => self.stderr.push(bytes, &mut deliver),
            });
        }
        Ok(())
    }

    /// Delivers unterminated last lines.
    fn finish(&mut self, deliver: &impl Fn(String)) {
        let mut deliver = |line| deliver(line);
        self.stdout.finish(&mut deliver);
        self.stderr.finish(&mut deliver);
    }
}

/// An answer's status line and headers, as far as the log stream needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    body: Body,
    /// Bytes of the head, its blank line included.
    len: usize,
}

impl Head {
    /// The head at the start of `received`, once all of it is there.
    fn parse(received: &[u8]) -> std::io::Result<Option<Head>> {
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let text =
            std::str::from_utf8(&received[..end]).map_err(|_| bad("a head that is not text"))?;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.strip_prefix("HTTP/1."))
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| bad("no HTTP/1 status line"))?;
        let mut body = Body::UntilClose;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                body = Body::Chunked(Chunk::Size { size: 0, digits: 0 });
            } else if name.eq_ignore_ascii_case("content-length") && body == Body::UntilClose {
                let length = value.parse().map_err(|_| bad("a bad Content-Length"))?;
                body = Body::Length(length);
            }
        }
        Ok(Some(Head {
            status,
            body,
            len: end + 4,
        }))
    }
}

/// How an answer's body is framed, and where its decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Until the engine closes the connection.
    UntilClose,
    /// This many bytes more.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
}

/// Where the decoding of a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk's size: its value and how many hex digits so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping the rest of the size line (extensions) up to its `\n`.
    SizeLine {
        size: u64,
    },
    /// This many bytes of the chunk's data more.
    Data(u64),
    /// The `\r\n` after a chunk's data.
    DataEnd,
    /// The last chunk came: trailers, then the end.
    Trailers,
    Done,
}

impl Body {
    /// Takes the next piece of body data from the start of `input` (which moves past what
    /// was taken): `None` once `input` holds no more data.
    fn decode<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
        match self {
            Body::UntilClose => Ok(take(input, u64::MAX)),
            Body::Length(left) => {
                let data = take(input, *left);
                *left -= data.map_or(0, |d| d.len() as u64);
                Ok(data)
            }
            Body::Chunked(chunk) => loop {
                let Some((&byte, after)) = input.split_first() else {
                    return Ok(None);
                };
                match *chunk {
                    Chunk::Size { size, digits } => {
                        *input = after;
                        let digit = match byte {
                            b'0'..=b'9' => byte - b'0',
                            b'a'..=b'f' => byte - b'a' + 10,
                            b'A'..=b'F' => byte - b'A' + 10,
                            b';' | b' ' | b'\t' | b'\r' | b'\n' if digits > 0 => {
                                *chunk = if byte == b'\n' {
                                    next_chunk(size)
                                } else {
                                    Chunk::SizeLine { size }
                                };
                                continue;
                            }
                            _ => return Err("a chunk size that is not a hex number"),
                        };
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(digit)))
                            .ok_or("a chunk size that does not fit")?;
                        *chunk = Chunk::Size {
                            size,
                            digits: digits.saturating_add(1),
                        };
                    }
                    Chunk::SizeLine { size } => {
                        *input = after;
                        if byte == b'\n' {
                            *chunk = next_chunk(size);
                        }
                    }
                    Chunk::Data(left) => {
                        let data = take(input, left);
                        let taken = data.map_or(0, |d| d.len() as u64);
                        *chunk = if taken == left {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left - taken)
                        };
                        return Ok(data);
                    }
                    Chunk::DataEnd => {
                        *input = after;
                        if byte == b'\n' {
                            *chunk = Chunk::Size { size: 0, digits: 0 };
                        }
                    }
                    Chunk::Trailers => {
                        // Trailers end with an empty line; the engine sends none.
                        *input = after;
                        if byte == b'\n' {
                            *chunk = Chunk::Done;
                        }
                    }
                    Chunk::Done => {
                        *input = &[];
                        return Ok(None);
                    }
                }
            },
        }
    }

    /// Whether the whole body came.
    fn is_done(&self) -> bool {
        matches!(self, Body::Length(0) | Body::Chunked(Chunk::Done))
    }
}

/// What follows a chunk size line: its data, or for size 0 the trailers.
fn next_chunk(size: u64) -> Chunk {
    if size == 0 {
        Chunk::Trailers
    } else {
        Chunk::Data(size)
    }
}

/// Up to `most` bytes from the start of `input`, which moves past them; `None` when it is
/// empty.
fn take<'a>(input: &mut &'a [u8], most: u64) -> Option<&'a [u8]> {
    if input.is_empty() || most == 0 {
        return None;
    }
    let n = usize::try_from(most).unwrap_or(usize::MAX).min(input.len());
    let (data, rest) = input.split_at(n);
    *input = rest;
    Some(data)
}

/// Which output stream bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// The engine's framing of a container's output: without a TTY, each piece is preceded by
/// an 8-byte header (the stream: 0 stdin, 1 stdout, 2 stderr; three zero bytes; the
/// piece's length, big-endian); with one, the bytes are stdout as they are.
#[derive(Debug, Clone)]
struct Frames {
    tty: bool,
    /// The header read so far.
    header: [u8; 8],
    filled: usize,
    /// Bytes of the current piece still to come, and its stream (`None`: stdin, skipped).
    left: u32,
    stream: Option<Stream>,
}

impl Frames {
    fn new(tty: bool) -> Frames {
        Frames {
            tty,
            header: [0; 8],
            filled: 0,
            left: 0,
            stream: None,
        }
    }

    /// Passes the output in `data` to `output`, piece by piece.
    fn decode(&mut self, mut data: &[u8], mut output: impl FnMut(Stream, &[u8])) {
        if self.tty {
            output(Stream::Out, data);
            return;
        }
        while !data.is_empty() {
            if self.left == 0 {
                let n = (8 - self.filled).min(data.len());
                self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
                self.filled += n;
                data = &data[n..];
                if self.filled < 8 {
                    return;
                }
                self.filled = 0;
                self.stream = match self.header[0] {
                    1 => Some(Stream::Out),
                    2 => Some(Stream::Err),
                    _ => None,
                };
                let [.., a, b, c, d] = self.header;
                self.left = u32::from_be_bytes([a, b, c, d]);
                continue;
            }
            let n = (self.left as usize).min(data.len());
            if let Some(stream) = self.stream {
                output(stream, &data[..n]);
            }
            self.left -= n as u32;
            data = &data[n..];
        }
    }
}

/// Splits one output stream's chunks into lines: a line split across chunks is joined, a
/// line longer than [`MAX_LOG_LINE_BYTES`] is cut there and the rest of it dropped.
#[derive(Debug, Default)]
struct LineSplitter {
    /// The line so far, at most [`MAX_LOG_LINE_BYTES`].
    partial: Vec<u8>,
    /// The current line was cut and delivered; drop bytes until its newline.
    cut: bool,
}

impl LineSplitter {
    fn push(&mut self, chunk: &[u8], deliver: &mut impl FnMut(String)) {
        let mut rest = chunk;
        loop {
            let (piece, newline) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            if !self.cut {
                if self.partial.len() + piece.len() > MAX_LOG_LINE_BYTES {
                    let room = MAX_LOG_LINE_BYTES - self.partial.len();
                    self.partial.extend_from_slice(&piece[..room]);
                    self.emit(deliver);
                    self.cut = true;
                } else {
                    self.partial.extend_from_slice(piece);
                }
            }
            if !newline {
                return;
            }
            if self.cut {
                self.cut = false;
            } else {
                self.emit(deliver);
            }
            rest = &rest[piece.len() + 1..];
        }
    }

    /// Delivers an unterminated last line.
    fn finish(&mut self, deliver: &mut impl FnMut(String)) {
        if !self.cut {
            self.emit(deliver);
        }
        self.cut = false;
    }

    fn emit(&mut self, deliver: &mut impl FnMut(String)) {
        let bytes = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        if !bytes.is_empty() {
            deliver(utf8_line(bytes));
        }
        self.partial.clear();
    }
}

/// The line as UTF-8 of at most [`MAX_LOG_LINE_BYTES`]: invalid bytes (a character split
/// by a cut among them) become U+FFFD, which can lengthen the line, so it is cut again on a
/// character boundary.
fn utf8_line(bytes: &[u8]) -> String {
    let mut line = String::from_utf8_lossy(bytes).into_owned();
    if line.len() > MAX_LOG_LINE_BYTES {
        let boundary = (0..=MAX_LOG_LINE_BYTES)
            .rev()
            .find(|at| line.is_char_boundary(*at))
            .unwrap_or(0);
        line.truncate(boundary);
    }
    line
}

/// Now as the engine's `since`, to the nanosecond (`<seconds>.<nanoseconds>`, which the
/// engine parses like the CLI's `--since`): lines the engine stamped before the call are not
/// replayed, also those of the same second (a container's startup lines, say). "0", which
/// means no bound, if the clock is unusable.
fn since_now() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or_else(
        |_| "0".to_owned(),
        |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    /// One piece of output as the engine frames it without a TTY.
    fn frame(stream: u8, text: &str) -> Vec<u8> {
        let mut bytes = vec![stream, 0, 0, 0];
        bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    fn out(text: &str) -> Vec<u8> {
        frame(1, text)
    }

    fn err(text: &str) -> Vec<u8> {
        frame(2, text)
    }

    /// Feeds the framed `pieces` (a body read until the connection closes) to a channel
    /// of `capacity` and ends with them.
    async fn feed(pieces: Vec<Vec<u8>>, capacity: usize) -> (LogsEnd, mpsc::Receiver<String>, u64) {
        let (sender, lines) = mpsc::channel(capacity);
        let dropped = AtomicU64::new(0);
        let bytes = pieces.concat();
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            feed_lines(
                bytes.as_slice(),
                Body::UntilClose,
                Frames::new(false),
                &[],
                "c1",
                sender,
                &dropped,
            ),
        )
        .await
        .expect("the feeder never waits for the reader");
        (end, lines, dropped.load(Ordering::Relaxed))
    }

    async fn all_lines(lines: &mut mpsc::Receiver<String>) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(line) = lines.recv().await {
            got.push(line);
        }
        got
    }

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let mut deliver = |line| lines.push(line);
        for chunk in chunks {
            splitter.push(chunk, &mut deliver);
        }
        splitter.finish(&mut deliver);
        lines
    }

    #[test]
    fn chunks_are_split_into_lines_and_split_lines_joined() {
        let max = MAX_LOG_LINE_BYTES;
        let long = "a".repeat(max + 10);
        let cases: Vec<(Vec<&[u8]>, Vec<String>)> = vec![
            (vec![b"one\ntwo\n"], vec!["one".into(), "two".into()]),
            (
                vec![b"gru:web:exec", b"ution_time:2", b"3.5:ms\n"],
                vec!["gru:web:execution_time:23.5:ms".into()],
            ),
            (vec![b"crlf\r\n", b"\r\n", b"\n\n"], vec!["crlf".into()]),
            (
                vec![b"no newline at the end"],
                vec!["no newline at the end".into()],
            ),
            (vec![b"a\n", b"", b"b"], vec!["a".into(), "b".into()]),
            (
                vec![long.as_bytes(), b"\nnext\n"],
                vec!["a".repeat(max), "next".into()],
            ),
            // Cut across chunks: the rest is dropped until the newline, in whatever chunk.
            (
                vec![
                    &long.as_bytes()[..max - 1],
                    &long.as_bytes()[max - 1..],
                    b"tail",
                    b"\nafter",
                ],
                vec!["a".repeat(max), "after".into()],
            ),
            // Exactly the limit is not cut.
            (vec![&long.as_bytes()[..max], b"\n"], vec!["a".repeat(max)]),
            // A cut line that never ends is delivered once.
            (vec![long.as_bytes()], vec!["a".repeat(max)]),
            (vec![b"bad \xff byte\n"], vec!["bad \u{fffd} byte".into()]),
        ];
        for (chunks, expected) in cases {
            let got = split(&chunks);
            assert_eq!(
                got,
                expected,
                "{:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_character_split_by_the_cut_does_not_lengthen_the_line() {
        // 4095 bytes, then a 2-byte 'é' across the limit.
        let mut line = "a".repeat(MAX_LOG_LINE_BYTES - 1).into_bytes();
        line.extend_from_slice("éé\n".as_bytes());
        let lines = split(&[&line]);
        assert_eq!(lines, vec!["a".repeat(MAX_LOG_LINE_BYTES - 1)]);
        let invalid = vec![0xff; MAX_LOG_LINE_BYTES];
        let lines = split(&[&invalid]);
        assert!(lines[0].len() <= MAX_LOG_LINE_BYTES, "{}", lines[0].len());
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_split_apart_and_the_last_line_flushed() {
        let pieces = vec![
            out("gru:web:"),
            err("warn: something\n"),
            frame(0, "stdin is skipped\n"),
            out("m:1:ms\nlast"),
        ];
        let (end, mut lines, dropped) = feed(pieces, 8).await;
        assert!(matches!(end, LogsEnd::Finished), "{end:?}");
        assert_eq!(
            all_lines(&mut lines).await,
            ["warn: something", "gru:web:m:1:ms", "last"]
        );
        assert_eq!(dropped, 0);
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_lines_instead_of_waiting() {
        // Nobody reads while the stream is fed: `feed` fails if the task waits.
        let (end, mut lines, dropped) = feed(vec![out("1\n2\n3\n4\n5\n")], 2).await;
        assert!(matches!(end, LogsEnd::Finished), "{end:?}");
        assert_eq!(dropped, 3);
        assert_eq!(all_lines(&mut lines).await, ["1", "2"]);
    }

    #[tokio::test]
    async fn dropping_the_receiver_ends_a_silent_stream() {
        // The engine's side stays open and says nothing after the first line.
        let (engine_side, agent_side) = tokio::io::duplex(64);
        let mut engine_side = engine_side;
        engine_side
            .write_all(&out("hello\n"))
            .await
            .expect("write to the pipe");
        let (sender, mut lines) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            let dropped = AtomicU64::new(0);
            let end = feed_lines(
                agent_side,
                Body::UntilClose,
                Frames::new(false),
                &[],
                "c1",
                sender,
                &dropped,
            )
            .await;
            drop(engine_side);
            end
        });
        assert_eq!(lines.recv().await.as_deref(), Some("hello"));
        drop(lines);
        let end = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once the receiver is gone")
            .expect("the task does not panic");
        assert!(matches!(end, LogsEnd::ReaderGone), "{end:?}");
    }

    #[tokio::test]
    async fn a_broken_body_ends_with_an_error_naming_the_container() {
        // A chunked body whose second chunk size is not a number.
        let mut body = format!("{:x}\r\n", out("a\n").len()).into_bytes();
        body.extend_from_slice(&out("a\n"));
        body.extend_from_slice(b"\r\nzz\r\n");
        let (sender, mut lines) = mpsc::channel(8);
        let dropped = AtomicU64::new(0);
        let end = feed_lines(
            body.as_slice(),
            Body::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Frames::new(false),
            &[],
            "c1",
            sender,
            &dropped,
        )
        .await;
        let LogsEnd::Failed(error) = end else {
            panic!("{end:?}");
        };
        assert_eq!(error.to_string(), "docker logs of c1 failed");
        assert_eq!(
            all_lines(&mut lines).await,
            ["a"],
            "lines before the failure"
        );
    }

    #[test]
    fn a_chunked_body_decodes_the_same_however_it_is_split() {
        let data = b"hello, world: a longer piece of data\n";
        let mut encoded = Vec::new();
        for piece in [&data[..5], &data[5..6], &data[6..]] {
            encoded.extend_from_slice(format!("{:X};ext=1\r\n", piece.len()).as_bytes());
            encoded.extend_from_slice(piece);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        for size in 1..=encoded.len() {
            let mut body = Body::Chunked(Chunk::Size { size: 0, digits: 0 });
            let mut decoded = Vec::new();
            for mut chunk in encoded.chunks(size) {
                while let Some(piece) = body.decode(&mut chunk).expect("a valid body") {
                    decoded.extend_from_slice(piece);
                }
            }
            assert_eq!(decoded, data, "read {size} bytes at a time");
            assert!(body.is_done(), "read {size} bytes at a time");
        }
        let mut length = Body::Length(4);
        let mut input: &[u8] = b"abcdef";
        assert_eq!(length.decode(&mut input), Ok(Some(&b"abcd"[..])));
        assert!(length.is_done());
        assert_eq!(length.decode(&mut input), Ok(None));
    }

    #[test]
    fn frames_decode_the_same_however_they_are_split() {
        let framed = [
            out("gru:web:m:1:ms\n"),
            err("oops\n"),
            frame(0, "in"),
            out("x"),
        ]
        .concat();
        for size in 1..=framed.len() {
            let mut frames = Frames::new(false);
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            for chunk in framed.chunks(size) {
                frames.decode(chunk, |stream, bytes| match stream {
                    Stream::Out => stdout.extend_from_slice(bytes),
                    Stream::Err => stderr.extend_from_slice(bytes),
                });
            }
            assert_eq!(stdout, b"gru:web:m:1:ms\nx", "read {size} bytes at a time");
            assert_eq!(stderr, b"oops\n", "read {size} bytes at a time");
        }
        let mut tty = Frames::new(true);
        let mut stdout = Vec::new();
        tty.decode(b"\x01raw", |_, bytes| stdout.extend_from_slice(bytes));
        assert_eq!(stdout, b"\x01raw");
    }

    #[test]
    fn heads_say_the_status_and_the_body_framing() {
        // (the bytes received, the status and body framing once the head is complete)
        type Case = (&'static [u8], Option<(u16, Body)>);
        let cases: [Case; 5] = [
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nrest",
                Some((200, Body::Chunked(Chunk::Size { size: 0, digits: 0 }))),
            ),
            (
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n",
                Some((404, Body::Length(12))),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n",
                Some((200, Body::UntilClose)),
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", None),
            (b"", None),
        ];
        for (received, expected) in cases {
            let head = Head::parse(received).expect("a valid head");
            assert_eq!(
                head.map(|h| (h.status, h.body)),
                expected,
                "{:?}",
                String::from_utf8_lossy(received)
            );
        }
        let head = Head::parse(b"HTTP/1.1 200 OK\r\n\r\nbody")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.len, 19);
        assert!(Head::parse(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn engine_addresses_are_read_as_the_engine_connection_reads_them() {
        let cases = [
            (
                "unix:///run/docker.sock",
                Some(Address::Unix("/run/docker.sock".into())),
            ),
            (
                "tcp://10.0.0.1:2375",
                Some(Address::Tcp("10.0.0.1:2375".into())),
            ),
            (
                "http://localhost:2375/",
                Some(Address::Tcp("localhost:2375".into())),
            ),
            ("10.0.0.1:2375", Some(Address::Tcp("10.0.0.1:2375".into()))),
            ("", Some(Address::Unix("/var/run/docker.sock".into()))),
            ("ssh://host", None),
        ];
        for (url, expected) in cases {
            assert_eq!(Address::of(url), expected, "{url}");
        }
    }

    /// A TCP engine that answers every connection with `answer` (after reading the
    /// request's head), then keeps it open, or says nothing when `answer` is `None`.
    async fn scripted_engine(answer: Option<&'static [u8]>) -> Address {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut connection, _)) = listener.accept().await {
                if let Some(answer) = answer {
                    let mut request = vec![0; 4096];
                    let _ = connection.read(&mut request).await;
                    let _ = connection.write_all(answer).await;
                }
                held.push(connection);
            }
        });
        Address::Tcp(address.to_string())
    }

    #[tokio::test]
    async fn attaching_reads_the_stream_and_names_the_container_in_failures() {
        // A stream in two chunks, then the last chunk: the container stopped.
        let stream: &'static [u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            b\r\n\x01\0\0\0\0\0\0\x04a\nb\r\n1\r\n\n\r\n0\r\n\r\n";
        let address = scripted_engine(Some(stream)).await;
        let (io, body, rest) = attach(&address, "GET / HTTP/1.1\r\n\r\n", "c1", TIMEOUT)
            .await
            .expect("attached");
        let (sender, mut lines) = mpsc::channel(8);
        let dropped = AtomicU64::new(0);
        let end = feed_lines(io, body, Frames::new(false), &rest, "c1", sender, &dropped).await;
        assert!(matches!(end, LogsEnd::Finished), "{end:?}");
        assert_eq!(all_lines(&mut lines).await, ["a", "b"]);

        let missing: &'static [u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 36\r\n\r\n\
            {\"message\":\"No such container: c1\"}\n";
        let address = scripted_engine(Some(missing)).await;
        let error = attach(&address, "GET / HTTP/1.1\r\n\r\n", "c1", TIMEOUT)
            .await
            .map(|_| ())
            .expect_err("an error answer");
        assert_eq!(error.to_string(), "docker logs of c1 failed");
        let cause = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(cause.contains("404: No such container: c1"), "{cause}");

        let silent = scripted_engine(None).await;
        let error = attach(&silent, "GET / HTTP/1.1\r\n\r\n", "c1", TIMEOUT)
            .await
            .map(|_| ())
            .expect_err("no answer");
        assert_eq!(error.to_string(), "docker logs of c1 timed out after 200ms");
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_naming_the_container() {
        let engine = super::super::tests::silent_engine(Duration::from_millis(200)).await;
        let error = engine.follow_logs("web-1").await.expect_err("no answer");
        assert_eq!(
            error.to_string(),
            "docker inspect of web-1 timed out after 200ms"
        );
    }
}
