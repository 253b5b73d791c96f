//! A throwaway image registry: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port, its storage in a temporary directory, basic auth from an htpasswd file
//! (bcrypt, written by `htpasswd -iB` from stdin, so the password is on no command line).
//!
//! The engine treats 127.0.0.0/8 registries as insecure, so plain HTTP works. Pushing logs
//! the docker CLI in with its own `DOCKER_CONFIG` (a directory of the registry's), never the
//! user's `~/.docker`; that login's `config.json` is what an agent's `RegistryAuthFile` can
//! point at. On drop the registry is killed, its directory removed, and every image tag it
//! pushed or [`Registry::forget_image`] was told of removed from the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::{ChildGuard, free_port, http_get, wait_until};

/// How long a fresh registry may take to answer.
const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry, killed on drop.
#[derive(Debug)]
pub struct Registry {
    /// Held for its `Drop`, which kills the registry.
    _process: ChildGuard,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    password: String,
    /// Image references to remove from the engine on drop.
    images: Mutex<Vec<String>>,
}

impl Registry {
    /// Starts a registry that accepts `user` with `password`. Panics with the registry's
    /// log when it does not come up.
    pub fn start(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let htpasswd = dir.path().join("htpasswd");
        let mut child = Command::new("htpasswd")
            .arg("-iBc")
            .arg(&htpasswd)
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("htpasswd runs (apt-get install apache2-utils)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("htpasswd stdin");
            writeln!(stdin, "{password}").expect("password to htpasswd");
        }
        assert!(child.wait().is_ok_and(|s| s.success()), "htpasswd failed");
        let port = free_port();
        let storage = dir.path().join("data");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: gru-test-{port}\n\
                 auth:\n  htpasswd:\n    realm: gru-test\n    path: {}\n",
                storage.display(),
                htpasswd.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        let registry = Registry {
            _process: ChildGuard::new(child),
            dir,
            port,
            user: user.to_owned(),
            password: password.to_owned(),
            images: Mutex::new(Vec::new()),
        };
        // `/v2/` answers 401 (credentials wanted) once the registry serves.
        let up = wait_until(REGISTRY_READY_TIMEOUT, || {
            http_get(port, "/v2/").is_some_and(|(status, _)| status == 401)
        });
        assert!(
            up.is_some(),
            "docker-registry did not answer on 127.0.0.1:{port} within {REGISTRY_READY_TIMEOUT:?}:\n{}",
            registry.log()
        );
        registry
    }

    /// `127.0.0.1:PORT`, the registry part of its image references.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the registry logged so far (every request, with its status).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The directory of the docker CLI's login to this registry; its `config.json` holds
    /// the credentials as `docker login` writes them (base64 `auth`).
    fn docker_config_dir(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    /// Logs the docker CLI in (once) under its own `DOCKER_CONFIG` and returns the path of
    /// the `config.json` that login wrote: a Docker config file for `RegistryAuthFile`.
    pub fn login_config(&self) -> PathBuf {
        let config_dir = self.docker_config_dir();
        let file = config_dir.join("config.json");
        if file.exists() {
            return file;
        }
        std::fs::create_dir_all(&config_dir).expect("docker config dir");
        let mut child = Command::new("docker")
            .env("DOCKER_CONFIG", &config_dir)
            .args(["login", "--username", &self.user, "--password-stdin"])
            .arg(self.address())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker CLI runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("docker login stdin");
            write!(stdin, "{}", self.password).expect("password to docker login");
        }
        let out = child.wait_with_output().expect("docker login ends");
        assert!(
            out.status.success(),
            "docker login {} failed: {}",
            self.address(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(file.exists(), "docker login wrote no {}", file.display());
        file
    }

    /// Pushes the local image `source` as `<address>/<repository>:<tag>` and removes that
    /// registry-named tag from the engine again (`source` stays), so that the engine lacks
    /// the reference until something pulls it. Returns the reference.
    pub fn push(&self, source: &str, repository: &str, tag: &str) -> String {
        let reference = format!("{}/{repository}:{tag}", self.address());
        self.login_config();
        self.forget_image(&reference);
        docker(&self.docker_config_dir(), &["tag", source, &reference]);
        docker(&self.docker_config_dir(), &["push", &reference]);
        self.remove_local(&reference);
        reference
    }

    /// Removes `reference`'s tag from the engine (not the image it names, if other tags
    /// hold it); an absent tag is fine.
    pub fn remove_local(&self, reference: &str) {
        let _ = Command::new("docker")
            .args(["rmi", reference])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Has `reference`'s tag removed from the engine when the registry drops (a tag a test
    /// made an agent pull).
    pub fn forget_image(&self, reference: &str) {
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        if !images.iter().any(|i| i == reference) {
            images.push(reference.to_owned());
        }
    }

    /// Whether the engine has `reference`.
    pub fn engine_has(reference: &str) -> bool {
        Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", reference])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The engine's `pull` events of `reference` from `since` (a Unix time in seconds) to
    /// now: one per pull the engine made.
    pub fn pull_events(reference: &str, since: u64) -> usize {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() + 1);
        let out = Command::new("docker")
            .args(["events", "--filter", "type=image", "--filter", "event=pull"])
            .args(["--since", &since.to_string(), "--until", &until.to_string()])
            .args(["--format", "{{.Actor.ID}}"])
            .output()
            .expect("docker events runs");
        assert!(
            out.status.success(),
            "docker events failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.trim() == reference)
            .count()
    }
}

fn docker(config_dir: &Path, args: &[&str]) {
    let out = Command::new("docker")
        .env("DOCKER_CONFIG", config_dir)
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Registry {
    fn drop(&mut self) {
        let images = std::mem::take(&mut *self.images.lock().unwrap_or_else(|e| e.into_inner()));
        for image in images {
            self.remove_local(&image);
        }
        // The process goes with `_process`, the directory with `dir`.
    }
}
