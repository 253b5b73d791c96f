//! Pulls through the Docker adapter (`Engine::ensure_image`) from a real registry with basic
//! auth (`testkit::Registry`: Debian's docker-registry on loopback), on the real engine.
//!
//! The image pushed is a tiny one made here with `docker import` (one small file, no
//! build), under a tag unique to the test, so that the engine lacks it until it is pulled;
//! the registry's drop removes every tag the test pushed or pulled.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::config::{PullConfig, PullPolicy, RegistryAuth, Secret};
use gru_agent::docker::pull::PullFailure;
use gru_agent::docker::{self, DEFAULT_DOCKER_TIMEOUT, DockerError, Engine};
use testkit::{Component, Registry, figure, require};

const USER: &str = "puller";
const PASSWORD: &str = "right-pw-7f3a";
const WRONG_PASSWORD: &str = "wrong-pw-91cc";

fn ready(test: &str) -> bool {
    require(test, Component::Docker) && require(test, Component::Registry)
}

async fn engine() -> Engine {
    docker::connect("", DEFAULT_DOCKER_TIMEOUT)
        .await
        .expect("connect to the Docker engine")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A tiny local image (one file, imported from a tar stream), removed on the guard's drop.
struct TinyImage(String);

impl TinyImage {
    fn new(test: &str) -> TinyImage {
        let name = format!("gru-pull-test-{}-{test}:src", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hello.txt"), format!("{name}\n")).expect("file");
        let tar = std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["-cf", "-", "hello.txt"])
            .output()
            .expect("tar runs");
        assert!(tar.status.success(), "tar failed");
        let mut import = std::process::Command::new("docker")
            .args(["import", "-", &name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker import runs");
        {
            use std::io::Write;
            import
                .stdin
                .take()
                .expect("stdin")
                .write_all(&tar.stdout)
                .expect("tar to docker import");
        }
        assert!(
            import.wait().is_ok_and(|s| s.success()),
            "docker import failed"
        );
        TinyImage(name)
    }
}

impl Drop for TinyImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}

fn with_auth(password: &str) -> PullConfig {
    PullConfig {
        auth: Some(RegistryAuth {
            username: USER.to_owned(),
            password: Secret::new(password),
            server_address: None,
        }),
        ..PullConfig::default()
    }
}

fn pull_failure(result: Result<(), DockerError>) -> PullFailure {
    match result {
        Err(DockerError::PullFailed { reason, .. }) => reason,
        other => panic!("expected a failed pull, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_with_the_descriptors_credentials() {
    let test = "a_missing_image_is_pulled_with_the_descriptors_credentials";
    if !ready(test) {
        return;
    }
    let source = TinyImage::new("auth");
    let registry = Registry::start(USER, PASSWORD);
    let image = registry.push(&source.0, "tiny", "auth");
    registry.forget_image(&image);
    assert!(
        !Registry::engine_has(&image),
        "the push left {image} behind"
    );
    let engine = engine().await;

    // Never: a missing image is not pulled.
    let never = PullConfig {
        policy: PullPolicy::Never,
        ..PullConfig::default()
    };
    let error = engine
        .ensure_image(&image, &never, None)
        .await
        .expect_err("Never does not pull");
    assert!(
        matches!(error, DockerError::ImageMissing { .. }),
        "{error:?}"
    );

    // Anonymous: the registry wants credentials.
    let anonymous = pull_failure(
        engine
            .ensure_image(&image, &PullConfig::default(), None)
            .await,
    );
    assert_eq!(anonymous.kind(), "unauthorized", "{anonymous}");

    let since = unix_now();
    let started = std::time::Instant::now();
    engine
        .ensure_image(&image, &with_auth(PASSWORD), None)
        .await
        .expect("pulled with Pull.Auth");
    figure(
        test,
        "pull of a one-layer image from loopback",
        format!("{:?}", started.elapsed()),
    );
    assert!(Registry::engine_has(&image));
    // Present now: IfNotPresent does not pull again.
    engine
        .ensure_image(&image, &with_auth(PASSWORD), None)
        .await
        .expect("present");
    assert_eq!(Registry::pull_events(&image, since), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_config_json_gives_the_credentials_when_the_descriptor_has_none() {
    let test = "a_docker_config_json_gives_the_credentials_when_the_descriptor_has_none";
    if !ready(test) {
        return;
    }
    let source = TinyImage::new("file");
    let registry = Registry::start(USER, PASSWORD);
    let image = registry.push(&source.0, "tiny", "file");
    registry.forget_image(&image);
    // As `docker login` wrote it: {"auths": {"127.0.0.1:PORT": {"auth": "<base64>"}}}.
    let auth_file = registry.login_config();
    let engine = engine().await;
    engine
        .ensure_image(&image, &PullConfig::default(), Some(&auth_file))
        .await
        .expect("pulled with the RegistryAuthFile");
    assert!(Registry::engine_has(&image));

    // The descriptor's Auth wins over the file: a wrong password there fails.
    registry.remove_local(&image);
    let wrong = pull_failure(
        engine
            .ensure_image(&image, &with_auth(WRONG_PASSWORD), Some(&auth_file))
            .await,
    );
    assert_eq!(wrong.kind(), "unauthorized", "{wrong}");
    // An unreadable file is not fatal to an anonymous pull attempt: it is refused as such.
    let missing = pull_failure(
        engine
            .ensure_image(
                &image,
                &PullConfig::default(),
                Some(Path::new("/nonexistent/config.json")),
            )
            .await,
    );
    assert_eq!(missing.kind(), "unauthorized", "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pulls_say_unauthorized_not_found_or_unreachable() {
    let test = "failed_pulls_say_unauthorized_not_found_or_unreachable";
    if !ready(test) {
        return;
    }
    let source = TinyImage::new("fail");
    let registry = Registry::start(USER, PASSWORD);
    let image = registry.push(&source.0, "tiny", "fail");
    registry.forget_image(&image);
    let engine = engine().await;

    let wrong = engine
        .ensure_image(&image, &with_auth(WRONG_PASSWORD), None)
        .await
        .expect_err("wrong password");
    let text = wrong.to_string();
    assert!(
        text.starts_with(&format!("pull of image {image} failed: unauthorized")),
        "{text}"
    );
    assert!(!text.contains(WRONG_PASSWORD) && !format!("{wrong:?}").contains(WRONG_PASSWORD));

    let absent = format!("{}/tiny:no-such-tag", registry.address());
    let not_found = pull_failure(
        engine
            .ensure_image(&absent, &with_auth(PASSWORD), None)
            .await,
    );
    assert_eq!(not_found.kind(), "not found", "{not_found}");

    // A port nothing listens on.
    let nowhere = format!("127.0.0.1:{}/tiny:x", testkit::free_port());
    let unreachable = pull_failure(
        engine
            .ensure_image(&nowhere, &with_auth(PASSWORD), None)
            .await,
    );
    assert_eq!(unreachable.kind(), "unreachable", "{unreachable}");
    figure(
        test,
        "messages",
        format!("{text} | {not_found} | {unreachable}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_of_one_image_pull_it_once_and_always_pulls_every_time() {
    let test = "concurrent_starts_of_one_image_pull_it_once_and_always_pulls_every_time";
    if !ready(test) {
        return;
    }
    let source = TinyImage::new("once");
    let registry = Registry::start(USER, PASSWORD);
    let image = registry.push(&source.0, "tiny", "once");
    registry.forget_image(&image);
    let engine = engine().await;

    let since = unix_now();
    let always = PullConfig {
        policy: PullPolicy::Always,
        ..with_auth(PASSWORD)
    };
    // Four starts at once, with Always: one pull, the others take its result.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (engine, image, always) = (engine.clone(), image.clone(), always.clone());
        set.spawn(async move { engine.ensure_image(&image, &always, None).await });
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("task").expect("pulled");
    }
    // The engine's events are written as they happen; give the last a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(Registry::pull_events(&image, since), 1, "pulls at once");

    // One after the other, Always pulls each time.
    engine
        .ensure_image(&image, &always, None)
        .await
        .expect("pulled");
    engine
        .ensure_image(&image, &always, None)
        .await
        .expect("pulled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        Registry::pull_events(&image, since),
        3,
        "pulls one after another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_past_its_timeout_fails_as_timeout() {
    let test = "a_pull_past_its_timeout_fails_as_timeout";
    if !require(test, Component::Docker) {
        return;
    }
    // A "registry" that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let engine = engine().await;
    let image = format!("127.0.0.1:{port}/tiny:silent");
    let pull = PullConfig {
        timeout_secs: 2,
        ..PullConfig::default()
    };
    let started = std::time::Instant::now();
    let failure = pull_failure(engine.ensure_image(&image, &pull, None).await);
    let took = started.elapsed();
    silent.abort();
    assert_eq!(failure.kind(), "timeout", "{failure}");
    assert_eq!(
        failure.to_string(),
        "timeout: not finished within Pull.Timeout (2 s)"
    );
    figure(
        test,
        "a pull of a silent registry, Timeout 2 s, failed after",
        format!("{took:?}"),
    );
}
