//! Where requests go: the `--target` URLs, plus those listed in `--targets-file`, which is
//! re-read every second so that a test or a demo can add instances as they appear.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often `--targets-file` is re-read.
pub const TARGETS_FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target `{text}` is not a URL: {reason}")]
    NotAUrl { text: String, reason: String },
    #[error("target `{text}`: only http:// is supported (the load generator has no TLS)")]
    Scheme { text: String },
}

/// One target URL. A bare `host:port` means `http://host:port/`.
pub fn parse_target(text: &str) -> Result<Uri, TargetError> {
    let text = text.trim();
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let not_a_url = |reason: String| TargetError::NotAUrl {
        text: text.to_owned(),
        reason,
    };
    let uri: Uri = full
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| not_a_url(e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(TargetError::Scheme {
            text: text.to_owned(),
        });
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(not_a_url("no host".to_owned()));
    }
    Ok(uri)
}

/// A targets file: URLs separated by commas or new lines; blank lines and lines starting
/// with `#` are ignored. The first bad entry fails the whole file.
pub fn parse_targets_text(text: &str) -> Result<Vec<Uri>, TargetError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_target)
        .collect()
}

/// The targets in force, shared by the sender (one cheap reader) and the file watcher (the
/// one writer).
pub type Targets = Arc<[Uri]>;

/// Picks targets in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// The next target of `targets`, or `None` when there is none.
    pub fn pick(&mut self, targets: &[Uri]) -> Option<Uri> {
        if targets.is_empty() {
            return None;
        }
        let uri = targets[self.next % targets.len()].clone();
        self.next = self.next.wrapping_add(1);
        Some(uri)
    }
}

/// Re-reads `file` every [`TARGETS_FILE_POLL_INTERVAL`] until `stop` fires and publishes
/// `fixed` plus the file's targets. A missing file counts as empty (it may appear later);
/// an unreadable or invalid file keeps the previous list and says why once per change.
pub async fn watch_targets_file(
    fixed: Vec<Uri>,
    file: PathBuf,
    publish: watch::Sender<Targets>,
    stop: CancellationToken,
) {
    let mut last_problem = None;
    loop {
        let path = file.clone();
        let read = tokio::task::spawn_blocking(move || read_targets_file(&path)).await;
        match read {
            Ok(Ok(from_file)) => {
                last_problem = None;
                let all: Targets = fixed.iter().cloned().chain(from_file).collect();
                publish.send_if_modified(|current| {
                    let changed = *current != all;
                    if changed {
                        tracing::info!(targets = all.len(), "targets file read");
                        *current = all;
                    }
                    changed
                });
            }
            Ok(Err(problem)) => {
                if last_problem.as_ref() != Some(&problem) {
                    tracing::warn!(
                        "{}: {problem}; keeping the previous targets",
                        file.display()
                    );
                    last_problem = Some(problem);
                }
            }
            Err(err) => tracing::warn!("reading {} failed: {err}", file.display()),
        }
        tokio::select! {
            () = tokio::time::sleep(TARGETS_FILE_POLL_INTERVAL) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn read_targets_file(path: &Path) -> Result<Vec<Uri>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_targets_text(&text).map_err(|e| e.to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_or_without_scheme() {
        for (text, expected) in [
            ("http://127.0.0.1:8080/", Ok("http://127.0.0.1:8080/")),
            ("127.0.0.1:8080", Ok("http://127.0.0.1:8080/")),
            (
                " localhost:9000/work?x=1 ",
                Ok("http://localhost:9000/work?x=1"),
            ),
            ("https://example.org/", Err("only http://")),
            ("http://", Err("not a URL")),
            ("http://exa mple/", Err("not a URL")),
        ] {
            let got = parse_target(text)
                .map(|u| u.to_string())
                .map_err(|e| e.to_string());
            match expected {
                Ok(uri) => assert_eq!(got.as_deref(), Ok(uri), "{text:?}"),
                Err(fragment) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(fragment)),
                    "{text:?} gave {got:?}"
                ),
            }
        }
    }

    #[test]
    fn targets_files_take_commas_lines_and_comments() {
        let text = "# instances\n127.0.0.1:1, 127.0.0.1:2\n\n  http://127.0.0.1:3/\n";
        let targets = parse_targets_text(text).expect("valid");
        let ports: Vec<_> = targets.iter().map(|u| u.port_u16()).collect();
        assert_eq!(ports, [Some(1), Some(2), Some(3)]);
        assert!(parse_targets_text("127.0.0.1:1\nhttps://x/\n").is_err());
        assert_eq!(
            parse_targets_text("").expect("empty is valid"),
            Vec::<Uri>::new()
        );
    }

    #[test]
    fn round_robin_cycles_and_follows_list_changes() {
        let a = parse_targets_text("a:1,b:2,c:3").expect("valid");
        let mut rr = RoundRobin::default();
        let hosts: Vec<_> = (0..4)
            .map(|_| rr.pick(&a).and_then(|u| u.host().map(str::to_owned)))
            .collect();
        assert_eq!(
            hosts,
            [
                Some("a".into()),
                Some("b".into()),
                Some("c".into()),
                Some("a".into())
            ]
        );
        assert_eq!(rr.pick(&[]), None);
        let one = parse_targets_text("z:9").expect("valid");
        assert_eq!(rr.pick(&one).and_then(|u| u.port_u16()), Some(9));
    }

    #[tokio::test]
    async fn targets_file_is_read_and_merged_with_fixed_targets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("targets");
        std::fs::write(&file, "127.0.0.1:2\n").expect("write");
        let fixed = vec![parse_target("127.0.0.1:1").expect("valid")];
        let (tx, mut rx) = watch::channel(Targets::from(fixed.clone()));
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch_targets_file(fixed, file, tx, stop.clone()));
        rx.changed().await.expect("published");
        let ports: Vec<_> = rx.borrow().iter().map(|u| u.port_u16()).collect();
        assert_eq!(ports, [Some(1), Some(2)]);
        stop.cancel();
        watcher.await.expect("watcher ends");
    }
}
