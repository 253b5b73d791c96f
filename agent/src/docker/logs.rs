//! A container's output, line by line: what a managed service prints (its `gru:` metric
//! lines among the rest), read by a task that feeds a bounded channel.
//!
//! The agent must never wait on a chatty container: when the reader falls behind, lines are
//! dropped and counted, and the engine's stream is read on at full speed. A line is at most
//! [`MAX_LOG_LINE_BYTES`]; a longer one is cut there and the rest of it, up to the next
//! newline, dropped, so a container printing without newlines costs a bounded buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::stream::StreamExt;
use super::{DockerError, Engine, bollard_timeout};

/// Lines buffered for a slow reader. When full, the newest line is dropped and counted in
/// [`LogFollower::dropped`]: a metric line is reported again a second later, and a stalled
/// reader must not stall the engine's stream.
pub const LOG_CHANNEL_CAPACITY: usize = 1024;

/// The longest line delivered, in bytes of UTF-8: the longest a metric line may be.
pub const MAX_LOG_LINE_BYTES: usize = crate::metrics_line::MAX_LINE_BYTES;

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
    /// this returns) is not delivered. No deadline applies once attached: a quiet container
    /// is normal, and the engine closes the stream when the container stops.
    pub async fn follow_logs(&self, id: &str) -> Result<LogFollower, DockerError> {
        let inspected = self
            .call("inspect", id, self.docker.inspect_container(id, None))
            .await?;
        let id = inspected.id.unwrap_or_else(|| id.to_owned());
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(now_secs())
            .tail("0")
            .build();
        // The request goes out when the task first polls the stream; bollard's own timeout
        // (the call timeout, see `connect`) bounds the wait for the engine's answer.
        let stream = self.docker.logs(&id, Some(options));
        let (sender, lines) = mpsc::channel(LOG_CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let span = tracing::debug_span!("docker_logs", container = %id);
        let ended = tokio::spawn(
            feed_lines(
                stream,
                id.clone(),
                self.timeout,
                sender,
                Arc::clone(&dropped),
            )
            .instrument(span),
        );
        Ok(LogFollower {
            lines,
            dropped,
            ended,
        })
    }
}

/// Reads the engine's stream into `sender` until it ends, fails, or the receiver is gone.
async fn feed_lines(
    mut stream: impl tokio_stream::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
    id: String,
    attach_timeout: Duration,
    sender: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
) -> LogsEnd {
    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    let mut deliver = |line: String| {
        // A closed channel is noticed after the chunk, by `is_closed`.
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(line)
            && dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("log reader is slow; dropping lines");
        }
    };
    let end = loop {
        let item = tokio::select! {
            () = sender.closed() => break LogsEnd::ReaderGone,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(output)) => {
                let (splitter, bytes) = match output {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&mut stdout, message)
                    }
                    LogOutput::StdErr { message } => (&mut stderr, message),
                    LogOutput::StdIn { .. } => continue,
                };
                splitter.push(&bytes, &mut deliver);
            }
            Some(Err(bollard::errors::Error::RequestTimeoutError)) => {
                break LogsEnd::Failed(DockerError::Timeout {
                    call: "logs",
                    target: id,
                    after: bollard_timeout(attach_timeout),
                });
            }
            Some(Err(source)) => {
                break LogsEnd::Failed(DockerError::Call {
                    call: "logs",
                    target: id,
                    source,
                });
            }
            None => {
                // The last lines of a container that exited without a final newline.
                stdout.finish(&mut deliver);
                stderr.finish(&mut deliver);
                break LogsEnd::Finished;
            }
        }
        if sender.is_closed() {
            break LogsEnd::ReaderGone;
        }
    };
    tracing::debug!(
        end = ?end,
        dropped = dropped.load(Ordering::Relaxed),
        "stopped following the container's output"
    );
    end
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

/// Now as the engine's `since` (whole seconds, rounded down so that nothing of this second
/// is excluded); 0, which means no bound, if the clock is unusable.
fn now_secs() -> i32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i32::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = Result<LogOutput, bollard::errors::Error>;

    fn out(text: &str) -> Item {
        Ok(LogOutput::StdOut {
            message: text.as_bytes().to_vec().into(),
        })
    }

    fn err(text: &str) -> Item {
        Ok(LogOutput::StdErr {
            message: text.as_bytes().to_vec().into(),
        })
    }

    /// Feeds `items` to a channel of `capacity` and ends with them.
    async fn feed(items: Vec<Item>, capacity: usize) -> (LogsEnd, mpsc::Receiver<String>, u64) {
        let (sender, lines) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let stream = tokio_stream::iter(items);
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            feed_lines(stream, "c1".into(), TIMEOUT, sender, Arc::clone(&dropped)),
        )
        .await
        .expect("the feeder never waits for the reader");
        (end, lines, dropped.load(Ordering::Relaxed))
    }

    const TIMEOUT: Duration = Duration::from_secs(1);

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
        let items = vec![
            out("gru:web:"),
            err("warn: something\n"),
            out("m:1:ms\nlast"),
        ];
        let (end, mut lines, dropped) = feed(items, 8).await;
        assert!(matches!(end, LogsEnd::Finished), "{end:?}");
        let mut got = Vec::new();
        while let Some(line) = lines.recv().await {
            got.push(line);
        }
        assert_eq!(got, ["warn: something", "gru:web:m:1:ms", "last"]);
        assert_eq!(dropped, 0);
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_lines_instead_of_waiting() {
        // Nobody reads while the stream is fed: `feed` fails if the task waits.
        let (end, mut lines, dropped) = feed(vec![out("1\n2\n3\n4\n5\n")], 2).await;
        assert!(matches!(end, LogsEnd::Finished), "{end:?}");
        assert_eq!(dropped, 3);
        assert_eq!(lines.recv().await.as_deref(), Some("1"));
        assert_eq!(lines.recv().await.as_deref(), Some("2"));
        assert_eq!(lines.recv().await, None);
    }

    #[tokio::test]
    async fn dropping_the_receiver_ends_a_silent_stream() {
        let stream = tokio_stream::iter(vec![out("hello\n")]).chain(tokio_stream::pending());
        let (sender, mut lines) = mpsc::channel(8);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(feed_lines(stream, "c1".into(), TIMEOUT, sender, dropped));
        assert_eq!(lines.recv().await.as_deref(), Some("hello"));
        drop(lines);
        let end = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once the receiver is gone")
            .expect("the task does not panic");
        assert!(matches!(end, LogsEnd::ReaderGone), "{end:?}");
    }

    #[tokio::test]
    async fn a_failing_stream_ends_with_an_error_naming_the_container() {
        let failure = Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        });
        let timeout = Err(bollard::errors::Error::RequestTimeoutError);
        let cases = [
            (failure, "docker logs of c1 failed"),
            (timeout, "docker logs of c1 timed out after 1s"),
        ];
        for (item, message) in cases {
            let (end, mut lines, _) = feed(vec![out("a\n"), item], 8).await;
            let LogsEnd::Failed(error) = end else {
                panic!("{end:?}");
            };
            assert_eq!(error.to_string(), message);
            assert_eq!(
                lines.recv().await.as_deref(),
                Some("a"),
                "lines before the failure"
            );
        }
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_naming_the_container() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let url = format!("http://{address}");
        let engine = Engine {
            docker: bollard::Docker::connect_with_http(&url, 60, bollard::API_DEFAULT_VERSION)
                .expect("a lazy client"),
            url,
            timeout: Duration::from_millis(200),
            allocation: Arc::new(tokio::sync::Mutex::new(())),
        };
        let error = engine.follow_logs("web-1").await.expect_err("no answer");
        assert_eq!(
            error.to_string(),
            "docker inspect of web-1 timed out after 200ms"
        );
    }
}
