//! A service's `Pull`: when the agent pulls the service's image from its registry, how long
//! a pull may take, and the registry credentials (issue 13).
//!
//! ```json
//! "Pull": {"Policy": "IfNotPresent", "Timeout": 120,
//!          "Auth": {"Username": "ci", "Password": "...", "ServerAddress": "127.0.0.1:5000"}}
//! ```
//!
//! The password is a [`Secret`]: its `Debug` prints `***`, and it has no `Display`, so it
//! cannot reach a log line or a message by accident. Its `Serialize` writes the real value,
//! because the canonical JSON stored in etcd is what agents read it from; every view that
//! shows a stored descriptor to an operator (`gru config get`, `gru manage show service`)
//! passes it through [`redact_service_json`] first.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::leaf::{JsonLeaf, ValueError, describe, keyword, serde_as_text};
use super::problem::{Findings, JsonPath};
use super::schema::{Field, Shape, field};

/// What a service's instances start from when `Pull.Policy` is not given.
pub const DEFAULT_PULL_POLICY: PullPolicy = PullPolicy::IfNotPresent;
/// The deadline of one pull, from its request to its last layer.
pub const DEFAULT_PULL_TIMEOUT_SECS: u64 = 120;
/// What a redacted secret reads as in every view.
pub const REDACTED: &str = "***";

/// When the agent pulls a service's image before starting an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PullPolicy {
    /// Pull only when the engine lacks the image.
    #[default]
    IfNotPresent,
    /// Pull before every start, so a moved tag is followed.
    Always,
    /// Never pull: a missing image fails the start (gru's behaviour before pulls).
    Never,
}

impl PullPolicy {
    const NAMES: [(&'static str, PullPolicy); 3] = [
        ("IfNotPresent", PullPolicy::IfNotPresent),
        ("Always", PullPolicy::Always),
        ("Never", PullPolicy::Never),
    ];
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, _) = PullPolicy::NAMES
            .iter()
            .find(|(_, value)| value == self)
            .expect("every variant is named");
        f.write_str(name)
    }
}

impl JsonLeaf for PullPolicy {
    fn from_json(value: &Value) -> Result<Self, ValueError> {
        keyword(value, "pull policy", &PullPolicy::NAMES)
    }
}

serde_as_text!(PullPolicy);

/// A value that must not be shown: `Debug` prints `***`, there is no `Display`, and only
/// [`Secret::expose`] gives the text (to the code that sends it to a registry).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that hands it over (the registry request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Registry credentials of a service, sent with its pulls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: Secret,
    /// The registry these credentials are for, e.g. `127.0.0.1:5000`; the image's registry
    /// when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
}

/// `Pull`: the pull policy, its deadline and the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PullConfig {
    pub policy: PullPolicy,
    #[serde(rename = "Timeout")]
    pub timeout_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            policy: DEFAULT_PULL_POLICY,
            timeout_secs: DEFAULT_PULL_TIMEOUT_SECS,
            auth: None,
        }
    }
}

impl PullConfig {
    /// Whether these settings are all defaults (then canonical JSON leaves `Pull` out, and
    /// a descriptor written before pulls existed reads back unchanged).
    pub fn is_default(&self) -> bool {
        *self == PullConfig::default()
    }
}

/// The walk's check of `Password`: a string, and never quoted back in a message.
fn check_password(value: &Value) -> Result<(), ValueError> {
    match value {
        Value::String(_) => Ok(()),
        // `describe` would quote a number; a password must not be quoted anywhere.
        Value::Number(_) => Err(ValueError::new("expected a string, found a number")
            .with_hint("write the password in double quotes")),
        other => Err(ValueError::new(format!(
            "expected a string, found {}",
            describe(other)
        ))),
    }
}

const AUTH_FIELDS: &[Field] = &[
    field("Username", Shape::Any),
    field("Password", Shape::Leaf(check_password)),
    field("ServerAddress", Shape::Any),
];
pub(crate) const PULL_FIELDS: &[Field] = &[
    field("Policy", Shape::Leaf(super::leaf::check::<PullPolicy>)),
    field("Timeout", Shape::Any),
    field("Auth", Shape::Object(AUTH_FIELDS)),
];

/// The service's checks of its `Pull`, for its `image`.
pub(crate) fn validate_pull(pull: &PullConfig, image: &str, findings: &mut Findings) {
    findings.at_least("Pull.Timeout", pull.timeout_secs, 1);
    let Some(auth) = &pull.auth else { return };
    if auth.username.trim().is_empty() {
        findings.add_with_hint(
            &JsonPath::fields("Pull.Auth.Username"),
            "is required when Pull.Auth is given",
            Some("give Username and Password, or leave Auth out to pull anonymously or with the agent's RegistryAuthFile".to_owned()),
        );
    }
    if auth.password.is_empty() {
        findings.add_with_hint(
            &JsonPath::fields("Pull.Auth.Password"),
            "is required when Pull.Auth is given",
            Some("registries refuse a user without a password; leave Auth out to use the agent's RegistryAuthFile".to_owned()),
        );
    }
    if let Some(server) = &auth.server_address {
        let registry = ImageRef::parse(image).registry;
        if server.trim().is_empty() || server.contains(char::is_whitespace) {
            findings.add_with_hint(
                &JsonPath::fields("Pull.Auth.ServerAddress"),
                format!("{server:?} is not a registry address"),
                Some("write host[:port], e.g. \"127.0.0.1:5000\", or leave it out for the image's registry".to_owned()),
            );
        } else if !image.is_empty() && !same_registry(server, &registry) {
            // The engine sends the credentials to the image's registry, whatever this says.
            findings.add_with_hint(
                &JsonPath::fields("Pull.Auth.ServerAddress"),
                format!("{server:?} is not the registry of Image {image:?} ({registry})"),
                Some("the credentials go to the image's registry: name it in Image, or leave ServerAddress out".to_owned()),
            );
        }
    }
    if pull.policy == PullPolicy::Never {
        findings.add_with_hint(
            &JsonPath::fields("Pull.Auth"),
            "is never used: Pull.Policy is \"Never\"",
            Some("set Policy to \"IfNotPresent\" or \"Always\", or leave Auth out".to_owned()),
        );
    }
}

/// Docker Hub, for images that name no registry.
pub const DOCKER_HUB: &str = "docker.io";

/// An image reference, `[registry/]repository[:tag|@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with its port), `docker.io` when the reference names none.
    pub registry: String,
    /// What the engine pulls, without the tag: `127.0.0.1:5000/web`, `nginx`.
    pub repository: String,
    /// The tag or digest (`sha256:…`); `latest` when the reference names neither.
    pub tag: String,
}

impl ImageRef {
    /// Splits a reference as the docker CLI does: the first component is a registry when it
    /// has a `.` or a `:`, or is `localhost`.
    pub fn parse(image: &str) -> ImageRef {
        let (name, tag) = match image.split_once('@') {
            Some((name, digest)) => (name, digest.to_owned()),
            None => match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_owned()),
                _ => (image, "latest".to_owned()),
            },
        };
        let registry = match name.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first.to_owned()
            }
            _ => DOCKER_HUB.to_owned(),
        };
        ImageRef {
            registry,
            repository: name.to_owned(),
            tag,
        }
    }
}

/// Whether a `ServerAddress` (`host[:port]`, perhaps as a URL, as `docker login` keys it)
/// names `registry`; Docker Hub answers to its several names.
fn same_registry(server: &str, registry: &str) -> bool {
    let server = server.split_once("://").map_or(server, |(_, rest)| rest);
    let host = server.split('/').next().unwrap_or(server);
    let hub = |name: &str| {
        matches!(
            name,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    };
    host.eq_ignore_ascii_case(registry) || (hub(host) && hub(registry))
}

/// Replaces every secret of a stored service descriptor (`Pull.Auth.Password`, keys matched
/// ignoring case, as the parser matches them) with `***`, for a view shown to an operator.
pub fn redact_service_json(descriptor: &mut Value) {
    let Some(pull) = get_ignoring_case(descriptor, "Pull") else {
        return;
    };
    let Some(auth) = get_ignoring_case(pull, "Auth") else {
        return;
    };
    let Some(auth) = auth.as_object_mut() else {
        return;
    };
    for (key, value) in auth.iter_mut() {
        if key.eq_ignore_ascii_case("Password") {
            *value = Value::String(REDACTED.to_owned());
        }
    }
}

fn get_ignoring_case<'a>(value: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    value
        .as_object_mut()?
        .iter_mut()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_as_the_docker_cli_splits_them() {
        let cases = [
            ("nginx", "docker.io", "nginx", "latest"),
            ("nginx:1.25", "docker.io", "nginx", "1.25"),
            ("library/nginx:1", "docker.io", "library/nginx", "1"),
            (
                "127.0.0.1:5000/gru-workload:t1",
                "127.0.0.1:5000",
                "127.0.0.1:5000/gru-workload",
                "t1",
            ),
            (
                "127.0.0.1:5000/w",
                "127.0.0.1:5000",
                "127.0.0.1:5000/w",
                "latest",
            ),
            ("localhost/w:2", "localhost", "localhost/w", "2"),
            (
                "reg.example/a/b@sha256:ab",
                "reg.example",
                "reg.example/a/b",
                "sha256:ab",
            ),
        ];
        for (image, registry, repository, tag) in cases {
            let parsed = ImageRef::parse(image);
            assert_eq!(
                (
                    parsed.registry.as_str(),
                    parsed.repository.as_str(),
                    parsed.tag.as_str()
                ),
                (registry, repository, tag),
                "{image}"
            );
        }
    }

    #[test]
    fn a_secret_never_prints_and_serializes_in_full() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).expect("json"), "\"hunter2\"");
        let auth = RegistryAuth {
            username: "ci".to_owned(),
            password: secret,
            server_address: None,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn redaction_hides_the_password_whatever_its_spelling() {
        let cases = [
            serde_json::json!({"Pull": {"Auth": {"Username": "u", "Password": "s3"}}}),
            serde_json::json!({"pull": {"auth": {"username": "u", "password": "s3"}}}),
        ];
        for mut case in cases {
            redact_service_json(&mut case);
            let text = case.to_string();
            assert!(!text.contains("s3"), "{text}");
            assert!(text.contains("***") && text.contains("\"u\""), "{text}");
        }
        let mut untouched = serde_json::json!({"Name": "web", "Pull": {"Policy": "Always"}});
        let before = untouched.clone();
        redact_service_json(&mut untouched);
        assert_eq!(untouched, before);
    }
}
