//! Pulling a service's image before a start, as its `Pull` says (issue 13).
//!
//! * [`registry_credentials`]: the descriptor's `Pull.Auth`, else the entry of the agent's
//!   Docker `config.json` (`Docker.RegistryAuthFile`) for the image's registry (pure over
//!   the file's text; [`read_auth_file`] reads it).
//! * [`PullFailure`]: why a pull failed, told apart from the engine's words: unauthorized,
//!   not found, unreachable, timed out.
//! * `Engine::ensure_image`: the policy (`Never`, `IfNotPresent`, `Always`), one pull per
//!   image at a time on this engine, each under the service's `Pull.Timeout`, its progress
//!   in the log at most every [`PROGRESS_LOG_PERIOD`].
//!
//! Credentials are handed to the engine in the request's `X-Registry-Auth` header and to
//! nothing else: no log line, error or record holds them (bollard's `DockerCredentials`
//! prints them in its `Debug`, so one never reaches a `tracing` field).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use common::config::pull::{DOCKER_HUB, ImageRef};
use common::config::{PullConfig, PullPolicy, Secret};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::{DockerError, Engine, message_of, status_of};

/// The shortest interval between two progress lines of one pull.
pub const PROGRESS_LOG_PERIOD: Duration = Duration::from_secs(2);

/// The keys `docker login` writes for Docker Hub in `config.json`.
const DOCKER_HUB_KEYS: [&str; 3] = ["https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB];

/// Credentials for one registry: a user and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub server_address: String,
    /// Where they came from, for the log: `Pull.Auth` or the file's path.
    pub source: String,
}

impl Credentials {
    fn to_docker(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.expose().to_owned()),
            serveraddress: Some(self.server_address.clone()),
            ..DockerCredentials::default()
        }
    }
}

/// The credentials a pull of `image` sends: the descriptor's `Pull.Auth` wins; else the
/// entry of the Docker `config.json` text `auth_file` (path, text) for the image's registry;
/// else none (an anonymous pull). A file that cannot be read as Docker's format is an error
/// naming the file, never quoting it.
pub fn registry_credentials(
    pull: &PullConfig,
    image: &ImageRef,
    auth_file: Option<(&str, &str)>,
) -> Result<Option<Credentials>, String> {
    if let Some(auth) = &pull.auth {
        return Ok(Some(Credentials {
            username: auth.username.clone(),
            password: auth.password.clone(),
            server_address: auth
                .server_address
                .clone()
                .unwrap_or_else(|| image.registry.clone()),
            source: "Pull.Auth".to_owned(),
        }));
    }
    let Some((path, text)) = auth_file else {
        return Ok(None);
    };
    let file: ConfigFile = serde_json::from_str(text)
        .map_err(|e| format!("{path} is not a Docker config.json (line {})", e.line()))?;
    let wanted: Vec<&str> = if image.registry == DOCKER_HUB {
        DOCKER_HUB_KEYS.to_vec()
    } else {
        vec![image.registry.as_str()]
    };
    let Some(entry) = file
        .auths
        .iter()
        .find(|(key, _)| wanted.contains(&registry_host(key)))
        .map(|(_, entry)| entry)
    else {
        return Ok(None);
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    format!(
                        "{path}: the auth of {} is not base64 of user:password",
                        image.registry
                    )
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                format!(
                    "{path}: the auth of {} is not user:password",
                    image.registry
                )
            })?;
            (user.to_owned(), password.to_owned())
        }
        (_, Some(user), Some(password)) => (user.clone(), password.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Credentials {
        username,
        password: Secret::new(password),
        server_address: image.registry.clone(),
        source: path.to_owned(),
    }))
}

/// A `config.json` key's registry: `https://host/v1/` → `host`.
fn registry_host(key: &str) -> &str {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    key.split('/').next().unwrap_or(key)
}

/// The part of Docker's `config.json` that gru reads.
#[derive(serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Reads a Docker `config.json` (at most 1 MiB).
pub async fn read_auth_file(path: &Path) -> Result<String, String> {
    const MAX_BYTES: u64 = 1 << 20;
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_BYTES {
        return Err(format!("{shown} is larger than {MAX_BYTES} bytes"));
    }
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

/// Why a pull failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry refused the credentials, or wants some and got none.
    Unauthorized { detail: String },
    /// The registry has no such repository or tag.
    NotFound { detail: String },
    /// The registry could not be reached (refused, no route, no name).
    Unreachable { detail: String },
    /// The pull did not finish within `Pull.Timeout`.
    TimedOut { after: Duration },
    /// Anything else the engine said.
    Other { detail: String },
}

impl PullFailure {
    /// Tells the failures apart from the engine's words (its messages are the registry's
    /// answer wrapped in the engine's context, and differ between engine versions).
    pub fn classify(status: Option<u16>, message: &str) -> PullFailure {
        let lower = message.to_ascii_lowercase();
        let detail = message.trim().to_owned();
        let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        if status == Some(401)
            || any(&[
                "unauthorized",
                "authentication required",
                "no basic auth credentials",
                "incorrect username or password",
                "denied: requested access",
            ])
        {
            PullFailure::Unauthorized { detail }
        } else if any(&[
            "connection refused",
            "no such host",
            "no route to host",
            "network is unreachable",
            "i/o timeout",
            "connection reset",
            "server misbehaving",
            "tls: ",
            "server gave http response to https client",
        ]) {
            PullFailure::Unreachable { detail }
        } else if status == Some(404)
            || any(&[
                "manifest unknown",
                "not found",
                "does not exist",
                "name unknown",
                "pull access denied",
            ])
        {
            PullFailure::NotFound { detail }
        } else {
            PullFailure::Other { detail }
        }
    }

    /// A word for the kind: `unauthorized`, `not found`, `unreachable`, `timeout`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            PullFailure::Unauthorized { .. } => "unauthorized",
            PullFailure::NotFound { .. } => "not found",
            PullFailure::Unreachable { .. } => "unreachable",
            PullFailure::TimedOut { .. } => "timeout",
            PullFailure::Other { .. } => "failed",
        }
    }
}

impl fmt::Display for PullFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullFailure::Unauthorized { detail } => write!(
                f,
                "unauthorized: the registry refused the credentials (check Pull.Auth or the \
                 RegistryAuthFile): {detail}"
            ),
            PullFailure::NotFound { detail } => {
                write!(
                    f,
                    "not found: the registry has no such image or tag: {detail}"
                )
            }
            PullFailure::Unreachable { detail } => {
                write!(
                    f,
                    "unreachable: the engine could not reach the registry: {detail}"
                )
            }
            PullFailure::TimedOut { after } => write!(
                f,
                "timeout: not finished within Pull.Timeout ({} s)",
                after.as_secs()
            ),
            PullFailure::Other { detail } => f.write_str(detail),
        }
    }
}

/// Per-image pull slots of an engine: a start that finds a pull of its image under way
/// waits for it and takes its result instead of pulling again.
#[derive(Debug, Default)]
pub(super) struct PullSlots {
    slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<LastPull>>>>,
}

/// How the last pull of one image ended, and when.
#[derive(Debug, Default)]
struct LastPull {
    ended: Option<(Instant, Result<(), PullFailure>)>,
}

impl PullSlots {
    fn slot(&self, image: &str) -> Arc<tokio::sync::Mutex<LastPull>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(image.to_owned()).or_default().clone()
    }
}

/// Progress of one pull, summed over its layers, for the rate-limited log lines.
#[derive(Debug, Default)]
struct Progress {
    /// Per layer: (bytes done, bytes in all) of its download.
    layers: BTreeMap<String, (u64, u64)>,
    done_layers: usize,
}

impl Progress {
    fn update(&mut self, id: Option<&str>, status: Option<&str>, current: i64, total: i64) {
        let Some(id) = id else { return };
        let status = status.unwrap_or_default();
        if status.starts_with("Downloading") && total > 0 {
            let entry = self.layers.entry(id.to_owned()).or_default();
            *entry = (current.max(0) as u64, total as u64);
        } else if status.starts_with("Pull complete") || status.starts_with("Already exists") {
            self.done_layers += 1;
            if let Some(entry) = self.layers.get_mut(id) {
                entry.0 = entry.1;
            }
        }
    }

    fn summary(&self) -> (u64, u64) {
        self.layers
            .values()
            .fold((0, 0), |(done, all), (d, a)| (done + d, all + a))
    }
}

impl Engine {
    /// Makes `image` present as `pull` says, before a start: `Never` checks, `IfNotPresent`
    /// pulls when it is missing, `Always` pulls every time. A pull of the same image already
    /// under way on this engine is waited for and its result taken, so two starts never pull
    /// one image at once.
    pub async fn ensure_image(
        &self,
        image: &str,
        pull: &PullConfig,
        auth_file: Option<&Path>,
    ) -> Result<(), DockerError> {
        if pull.policy != PullPolicy::Always && self.image_present(image).await? {
            return Ok(());
        }
        if pull.policy == PullPolicy::Never {
            return Err(DockerError::ImageMissing {
                image: image.to_owned(),
            });
        }
        let asked = Instant::now();
        let slot = self.pulls.slot(image);
        let mut last = slot.lock().await;
        if let Some((ended, result)) = &last.ended
            && *ended >= asked
        {
            tracing::debug!(
                image,
                "took the result of the pull that ended while waiting"
            );
            return result.clone().map_err(|reason| DockerError::PullFailed {
                image: image.to_owned(),
                reason,
            });
        }
        // Another start may have pulled it before this one asked.
        if pull.policy == PullPolicy::IfNotPresent && self.image_present(image).await? {
            return Ok(());
        }
        let result = self.pull(image, pull, auth_file).await;
        last.ended = Some((Instant::now(), result.clone()));
        result.map_err(|reason| DockerError::PullFailed {
            image: image.to_owned(),
            reason,
        })
    }

    /// One pull of `image`, under `pull.timeout_secs`, logging its progress.
    async fn pull(
        &self,
        image: &str,
        pull: &PullConfig,
        auth_file: Option<&Path>,
    ) -> Result<(), PullFailure> {
        let reference = ImageRef::parse(image);
        let file_text = match auth_file {
            Some(path) if pull.auth.is_none() => match read_auth_file(path).await {
                Ok(text) => Some((path.display().to_string(), text)),
                Err(error) => {
                    tracing::warn!(image, %error, "cannot read the RegistryAuthFile; pulling without its credentials");
                    None
                }
            },
            _ => None,
        };
        let credentials = registry_credentials(
            pull,
            &reference,
            file_text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        )
        .unwrap_or_else(|error| {
            tracing::warn!(image, %error, "pulling without the RegistryAuthFile's credentials");
            None
        });
        let limit = Duration::from_secs(pull.timeout_secs.max(1));
        tracing::info!(
            image,
            registry = %reference.registry,
            credentials = credentials.as_ref().map_or("none", |c| c.source.as_str()),
            user = credentials.as_ref().map(|c| c.username.as_str()),
            timeout_secs = limit.as_secs(),
            "pulling image"
        );
        let options = CreateImageOptionsBuilder::new()
            .from_image(&reference.repository)
            .tag(&reference.tag)
            .build();
        // bollard's per-request timeout would cut a long pull short; the deadline here is
        // the service's Pull.Timeout.
        let docker = self
            .docker
            .clone()
            .with_timeout(super::bollard_timeout(limit));
        let started = Instant::now();
        let mut progress = Progress::default();
        let mut logged_at = started;
        let stream = async {
            let mut stream = docker.create_image(
                Some(options),
                None,
                credentials.as_ref().map(Credentials::to_docker),
            );
            while let Some(item) = stream.next().await {
                let info = item.map_err(|error| match &error {
                    bollard::errors::Error::DockerStreamError { error } => {
                        PullFailure::classify(None, error)
                    }
                    bollard::errors::Error::RequestTimeoutError => {
                        PullFailure::TimedOut { after: limit }
                    }
                    other => {
                        let message = match message_of(other) {
                            "" => other.to_string(),
                            message => message.to_owned(),
                        };
                        PullFailure::classify(status_of(other), &message)
                    }
                })?;
                let detail = info.progress_detail.as_ref();
                progress.update(
                    info.id.as_deref(),
                    info.status.as_deref(),
                    detail.and_then(|d| d.current).unwrap_or(0),
                    detail.and_then(|d| d.total).unwrap_or(0),
                );
                if logged_at.elapsed() >= PROGRESS_LOG_PERIOD {
                    logged_at = Instant::now();
                    let (done, all) = progress.summary();
                    tracing::info!(
                        image,
                        layers_done = progress.done_layers,
                        layers = progress.layers.len(),
                        mib_done = done / (1 << 20),
                        mib = all / (1 << 20),
                        elapsed_secs = started.elapsed().as_secs(),
                        "pulling image: progress"
                    );
                }
            }
            Ok(())
        };
        let result = match tokio::time::timeout(limit, stream).await {
            Ok(result) => result,
            Err(_) => Err(PullFailure::TimedOut { after: limit }),
        };
        match &result {
            Ok(()) => {
                let (_, all) = progress.summary();
                tracing::info!(
                    image,
                    layers = progress.done_layers,
                    kib = all / 1024,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pulled image"
                );
            }
            Err(reason) => {
                tracing::warn!(image, kind = reason.kind(), reason = %reason, "image pull failed");
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use common::config::RegistryAuth;

    use super::*;

    fn with_auth(user: &str, password: &str) -> PullConfig {
        PullConfig {
            auth: Some(RegistryAuth {
                username: user.to_owned(),
                password: Secret::new(password),
                server_address: None,
            }),
            ..PullConfig::default()
        }
    }

    const FILE: &str = r#"{"auths": {
        "127.0.0.1:5000": {"auth": "ZmlsZXVzZXI6ZmlsZXBhc3M="},
        "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
        "other.example": {"username": "u2", "password": "p2"}
    }}"#;

    /// (pull settings, image, auth file (path, text), expected (user, password)).
    type Case<'a> = (
        PullConfig,
        &'a ImageRef,
        Option<(&'a str, &'a str)>,
        Option<(&'a str, &'a str)>,
    );

    #[test]
    fn credentials_come_from_the_descriptor_first_then_the_auth_file() {
        let local = ImageRef::parse("127.0.0.1:5000/w:1");
        let cases: [Case<'_>; 6] = [
            // The descriptor's Auth wins over the file.
            (
                with_auth("ci", "pw"),
                &local,
                Some(("/f", FILE)),
                Some(("ci", "pw")),
            ),
            (
                PullConfig::default(),
                &local,
                Some(("/f", FILE)),
                Some(("fileuser", "filepass")),
            ),
            (PullConfig::default(), &local, None, None),
            (
                PullConfig::default(),
                &ImageRef::parse("nginx"),
                Some(("/f", FILE)),
                Some(("hub", "hubpass")),
            ),
            (
                PullConfig::default(),
                &ImageRef::parse("other.example/x"),
                Some(("/f", FILE)),
                Some(("u2", "p2")),
            ),
            (
                PullConfig::default(),
                &ImageRef::parse("unknown.example/x"),
                Some(("/f", FILE)),
                None,
            ),
        ];
        for (pull, image, file, expected) in cases {
            let got = registry_credentials(&pull, image, file).expect("readable");
            let got = got
                .as_ref()
                .map(|c| (c.username.as_str(), c.password.expose()));
            assert_eq!(got, expected, "{image:?}");
        }
        let from_file = registry_credentials(&PullConfig::default(), &local, Some(("/f", FILE)))
            .expect("readable")
            .expect("found");
        assert_eq!(from_file.server_address, "127.0.0.1:5000");
        assert_eq!(from_file.source, "/f");
    }

    #[test]
    fn an_unreadable_auth_file_is_named_and_never_quoted() {
        let local = ImageRef::parse("127.0.0.1:5000/w:1");
        let cases = [
            ("{not json secret-in-file", "/f is not a Docker config.json"),
            (
                r#"{"auths": {"127.0.0.1:5000": {"auth": "%%%secret"}}}"#,
                "/f: the auth of 127.0.0.1:5000 is not base64 of user:password",
            ),
        ];
        for (text, expected) in cases {
            let error = registry_credentials(&PullConfig::default(), &local, Some(("/f", text)))
                .expect_err("unreadable");
            assert!(error.starts_with(expected), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn pull_failures_are_told_apart_from_the_engine_words() {
        let cases = [
            (
                None,
                "Head \"http://127.0.0.1:5000/v2/w/manifests/1\": no basic auth credentials",
                "unauthorized",
            ),
            (
                Some(500),
                "Head \"http://127.0.0.1:5000/v2/w/manifests/1\": unauthorized: authentication required",
                "unauthorized",
            ),
            (
                Some(404),
                "manifest for 127.0.0.1:5000/w:nope not found: manifest unknown: manifest unknown",
                "not found",
            ),
            (
                Some(500),
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                "unreachable",
            ),
            (Some(500), "something else", "failed"),
        ];
        for (status, message, kind) in cases {
            assert_eq!(
                PullFailure::classify(status, message).kind(),
                kind,
                "{message}"
            );
        }
        let timeout = PullFailure::TimedOut {
            after: Duration::from_secs(3),
        };
        assert_eq!(
            timeout.to_string(),
            "timeout: not finished within Pull.Timeout (3 s)"
        );
    }

    #[test]
    fn progress_sums_layers_and_counts_those_done() {
        let mut progress = Progress::default();
        progress.update(Some("a"), Some("Downloading"), 5, 10);
        progress.update(Some("b"), Some("Downloading"), 1, 30);
        progress.update(Some("a"), Some("Pull complete"), 0, 0);
        progress.update(None, Some("Digest: sha256:1"), 0, 0);
        assert_eq!(progress.summary(), (11, 40));
        assert_eq!(progress.done_layers, 1);
    }
}
