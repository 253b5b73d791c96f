//! What the tests read from (and remove on) the Docker engine: the cluster's containers by
//! their `org.gru.*` labels.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use testkit::ClusterContainers;

use super::rfc3339_ms;

/// `docker args...`: its standard output, whatever the status.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker rm -f ids...`, which must succeed (nothing to do for no ids).
#[track_caller]
pub fn docker_rm(ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    let status = Command::new("docker")
        .args(["rm", "-f"])
        .args(ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker rm -f {ids:?}");
}

/// Running containers of `service` in the cluster, by instance label.
pub fn running_instances(containers: &ClusterContainers, service: &str) -> BTreeSet<String> {
    containers
        .ids(Some(&format!("label=org.gru.service={service}")))
        .into_iter()
        .filter_map(|id| {
            let line = docker(&[
                "inspect",
                "--format",
                "{{.State.Running}} {{index .Config.Labels \"org.gru.instance\"}}",
                &id,
            ]);
            let (state, instance) = line.trim().split_once(' ')?;
            (state == "true").then(|| instance.to_owned())
        })
        .collect()
}

/// Running containers of the cluster: (id, node, created-at in ms since the epoch).
pub fn running_containers(containers: &ClusterContainers) -> Vec<(String, String, u64)> {
    containers
        .ids(Some("status=running"))
        .into_iter()
        .map(|id| {
            let line = docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"org.gru.node\"}} {{.Created}}",
                &id,
            ]);
            let (node, created) = line.trim().split_once(' ').unwrap_or(("", ""));
            (id, node.to_owned(), rfc3339_ms(created).unwrap_or(0))
        })
        .collect()
}

/// Ids (full) of the running containers of `service` in `cluster`, in one `docker ps`.
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
