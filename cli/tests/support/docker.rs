//! What the tests read from (and remove on) the Docker engine: the cluster's containers by
//! their `org.gru.*` labels. A `docker` command that fails fails the test with the command
//! and its stderr: an engine that does not answer must never read as "no containers".
//! For "never more than N at once", see [`testkit::ContainerEvents`]: polling these misses
//! what runs between two polls.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use testkit::ClusterContainers;

use super::rfc3339_ms;

/// `docker args...`, which must succeed (or the test fails, naming the command and its
/// stderr): its standard output.
#[track_caller]
pub fn docker(args: &[&str]) -> String {
    testkit::docker_must(args)
}

/// `docker inspect --format <format> ids...`: one line per container that still exists
/// (one removed since it was listed is left out); any other failure fails the test.
#[track_caller]
pub fn inspect_existing(format: &str, ids: &[String]) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    let out = Command::new("docker")
        .args(["inspect", "--format", format])
        .args(ids)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker inspect`: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let only_gone = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.contains("No such object") || l.contains("No such container"));
    assert!(
        out.status.success() || only_gone,
        "`docker inspect --format {format} {}` failed ({}): {}",
        ids.join(" "),
        out.status,
        stderr.trim()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `docker rm -f ids...`, which must succeed (nothing to do for no ids).
#[track_caller]
pub fn docker_rm(ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    let mut args = vec!["rm", "-f"];
    args.extend_from_slice(ids);
    docker(&args);
}

/// Running containers of `service` in the cluster, by instance label, in one `docker ps`.
#[track_caller]
pub fn running_instances(containers: &ClusterContainers, service: &str) -> BTreeSet<String> {
    docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("label=org.gru.cluster={}", containers.cluster),
        "--filter",
        &format!("label=org.gru.service={service}"),
        "--filter",
        "status=running",
        "--format",
        "{{.Label \"org.gru.instance\"}}",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

/// Running containers of the cluster: (id, node, created-at in ms since the epoch).
#[track_caller]
pub fn running_containers(containers: &ClusterContainers) -> Vec<(String, String, u64)> {
    let ids = containers.ids(Some("status=running"));
    inspect_existing(
        "{{.Id}} {{.State.Running}} {{index .Config.Labels \"org.gru.node\"}} {{.Created}}",
        &ids,
    )
    .into_iter()
    .filter_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, running, node, created] = fields[..] else {
            panic!("unexpected `docker inspect` line: {line:?}");
        };
        let created = rfc3339_ms(created)
            .unwrap_or_else(|| panic!("`docker inspect` gave no creation time: {line:?}"));
        (running == "true").then(|| (id.to_owned(), node.to_owned(), created))
    })
    .collect()
}

/// `(service, node)` of every running container of `cluster`, in one `docker ps`.
pub fn running_services(cluster: &str) -> Vec<(String, String)> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=org.gru.cluster={cluster}"),
        "--filter",
        "status=running",
        "--format",
        r#"{{.Label "org.gru.service"}} {{.Label "org.gru.node"}}"#,
    ])
    .lines()
    .filter_map(|l| {
        let (service, node) = l.split_once(' ')?;
        Some((service.to_owned(), node.to_owned()))
    })
    .collect()
}

/// Ids (full) of the running containers of `service` in `cluster`, in one `docker ps`.
#[track_caller]
pub fn running_ids_of(cluster: &str, service: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=org.gru.cluster={cluster}"),
        "--filter",
        &format!("label=org.gru.service={service}"),
        "--filter",
        "status=running",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

/// Samples the cluster's running containers every 100 ms in a thread of its own and checks
/// each bounded service's count against its `[min, max]`, from the first sample where it
/// reached `min` (before, the floor is still being repaired). For "never more than N at
/// once" to the event, see [`testkit::ContainerEvents`]; this one also sees what a test
/// cannot replay from events: the count as the load generator's clients saw it, sample by
/// sample.
pub struct CountSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<CountSamples>>,
}

/// What a [`CountSampler`] saw.
#[derive(Debug, Default)]
pub struct CountSamples {
    pub samples: usize,
    /// Each sample out of bounds: "when: service count (bounds)".
    pub violations: Vec<String>,
}

impl CountSampler {
    /// `bounds`: `(service, min, max)`.
    pub fn start(cluster: &str, bounds: &[(&str, usize, usize)]) -> CountSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cluster = cluster.to_owned();
        let bounds: Vec<(String, usize, usize)> = bounds
            .iter()
            .map(|(s, min, max)| ((*s).to_owned(), *min, *max))
            .collect();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let began = std::time::Instant::now();
                let mut seen = CountSamples::default();
                let mut reached = vec![false; bounds.len()];
                while !stop.load(Ordering::Relaxed) {
                    let running = running_services(&cluster);
                    seen.samples += 1;
                    for (i, (service, min, max)) in bounds.iter().enumerate() {
                        let count = running.iter().filter(|(s, _)| s == service).count();
                        reached[i] |= count >= *min;
                        if reached[i] && !(*min..=*max).contains(&count) {
                            seen.violations.push(format!(
                                "{:.1} s: {service} {count} (bounds {min}..={max})",
                                began.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                seen
            })
        };
        CountSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling: what was seen (a `docker ps` that failed fails the test here).
    pub fn finish(mut self) -> CountSamples {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(seen)) => seen,
            Some(Err(_)) => panic!("the count sampler failed (see its panic above)"),
            None => CountSamples::default(),
        }
    }
}

impl Drop for CountSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
