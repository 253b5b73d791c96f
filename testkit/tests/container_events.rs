//! `ContainerEvents` on the machine's Docker engine: a container that runs for a moment,
//! between two looks a poller would take, is in the replayed count.
#![allow(clippy::unwrap_used)]

use testkit::{
    ClusterContainers, ContainerAction, ContainerEvents, docker_must, require_workload_image,
};

#[test]
fn a_container_that_runs_for_a_moment_is_in_the_replayed_count() {
    let test = "a_container_that_runs_for_a_moment_is_in_the_replayed_count";
    if !require_workload_image(test) {
        return;
    }
    let containers = ClusterContainers::unique("events");
    let events = ContainerEvents::start(&containers.cluster);
    let label = format!("org.gru.cluster={}", containers.cluster);
    let run = |node: &str| {
        docker_must(&[
            "run",
            "-d",
            "--label",
            &label,
            "--label",
            "org.gru.service=web",
            "--label",
            &format!("org.gru.node={node}"),
            testkit::WORKLOAD_IMAGE,
        ])
        .trim()
        .to_owned()
    };
    let steady = run("n1");
    let brief = run("n2");
    docker_must(&["rm", "-f", &brief]);

    let timeline = events.service_timeline("web");
    let actions: Vec<(String, ContainerAction)> = timeline
        .changes
        .iter()
        .map(|c| (c.event.node.clone(), c.event.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("n1".to_owned(), ContainerAction::Start),
            ("n2".to_owned(), ContainerAction::Start),
            ("n2".to_owned(), ContainerAction::Die),
            ("n2".to_owned(), ContainerAction::Destroy),
        ],
        "{}",
        timeline.render(events.started_ns)
    );
    assert_eq!(timeline.peak().0, 2);
    assert_eq!(timeline.running_at(u64::MAX), 1);
    assert_eq!(timeline.changes[0].event.id, steady);
    let message = events
        .check_within("web", 0..=1, 0, |e| e.service == "web")
        .expect_err("two ran at once");
    assert!(
        message.contains("web: 2 running at") && message.contains("outside [0, 1]"),
        "{message}"
    );
    drop(events);
    drop(containers);
}
