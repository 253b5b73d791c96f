//! The shipped configuration directories are valid, and each broken fixture is rejected with
//! exactly the problem it was made for.

mod support;

use std::fs;

use common::config::{
    ClusterConfig, DocumentKey, MetricService, PlannerStrategy, PortRange, SourceDocument,
};
use support::{broken_cases_dir, configs_dir, load_dir, overlay, render};

fn load_cluster(name: &str) -> ClusterConfig {
    let documents = load_dir(&configs_dir(name));
    ClusterConfig::from_documents(&documents)
        .unwrap_or_else(|problems| panic!("configs/{name} is invalid:\n{}", render(&problems)))
}

#[test]
fn gru_readme_documents_are_accepted_as_written() {
    let cluster = load_cluster("gru-readme");
    assert_eq!(cluster.agent.docker.daemon_url, "local:2375");
    assert_eq!(
        cluster.agent.autonomic.planner_strategy,
        PlannerStrategy::ProbDelta
    );
    assert!(cluster.agent.autonomic.enable_log_reading);
    assert_eq!(cluster.agent.metric.metric_service, MetricService::InfluxDb);
    assert_eq!(
        cluster.agent.metric.configuration.password.as_deref(),
        Some("<influx_pwd<")
    );
    assert_eq!(
        cluster.agent.metric.configuration.bucket(),
        Some("<gru_db_name>")
    );
    assert_eq!(cluster.agent.discovery.app_root, "app/<app_name>/services");

    let service = &cluster.services["service1"];
    assert_eq!(service.discovery_port, Some(50000));
    assert_eq!(service.configuration.cpu_number, 1);
    assert_eq!(service.configuration.stop_timeout_secs, 30);
    assert_eq!(
        service.configuration.ports["50000"],
        PortRange::new(50000, 50004).expect("valid range")
    );
    assert_eq!(service.configuration.env["HostIP"], "");
    assert_eq!(service.constraints["MAX_RESP_TIME"].as_f64(), Some(1000.0));

    assert_eq!(cluster.policy.scaleout.analytics, ["resp_time_ratio"]);
    let analytics: Vec<&str> = cluster.analytics.keys().map(String::as_str).collect();
    assert_eq!(analytics, ["analytic1", "analytic2", "resp_time_ratio"]);
}

#[test]
fn example_configuration_is_valid_and_fit_for_the_demo() {
    let cluster = load_cluster("example");
    assert_eq!(cluster.agent.autonomic.loop_time_interval_secs, 5);
    assert_eq!(cluster.agent.communication.loop_time_interval_secs, 3);
    assert!(cluster.agent.autonomic.enable_log_reading);
    assert!(cluster.services.len() >= 2);
    let mut host_ranges: Vec<PortRange> = Vec::new();
    for (name, service) in &cluster.services {
        assert_eq!(service.image, "gru-workload:latest", "{name}");
        assert!(service.min_instances >= 1, "{name}");
        assert!(service.max_instances.is_some(), "{name}");
        for range in service.configuration.ports.values() {
            assert!(
                host_ranges
                    .iter()
                    .all(|r| r.high() < range.low() || range.high() < r.low()),
                "{name}: host ports {range} overlap another service's"
            );
            host_ranges.push(*range);
        }
    }
    assert!(cluster.policy.scaleout.enable && cluster.policy.scalein.enable);
}

#[test]
fn every_broken_fixture_is_rejected_with_exactly_its_problem() {
    let example = load_dir(&configs_dir("example"));
    let mut cases: Vec<_> = fs::read_dir(broken_cases_dir())
        .expect("broken fixtures")
        .map(|entry| entry.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 18, "only {} broken cases", cases.len());

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().expect("case name").to_string_lossy();
        let expect = fs::read_to_string(case.join("expect.txt")).expect("expect.txt");
        let expect = expect.trim_end();
        let mut documents = example.clone();
        let defect: Vec<_> = load_dir(case)
            .into_iter()
            .filter(|d| d.file != "expect.txt")
            .collect();
        assert_eq!(defect.len(), 1, "{name}: a case holds exactly one document");
        for document in defect {
            overlay(&mut documents, document);
        }
        match ClusterConfig::from_documents(&documents) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(problems) => {
                let text = render(&problems);
                if problems.len() != 1 || !text.contains(expect) {
                    failures.push(format!(
                        "{name}: expected one problem containing\n  {expect}\ngot:\n  {text}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_config_and_policy_are_reported_by_file_name() {
    let documents: Vec<_> = load_dir(&configs_dir("example"))
        .into_iter()
        .filter(|d| d.file.contains('/'))
        .collect();
    let problems = ClusterConfig::from_documents(&documents).expect_err("incomplete");
    let places: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.file.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(places, [("config.json", ""), ("policy.json", "")]);
}

#[test]
fn problems_of_several_files_are_all_reported_sorted_by_file_then_path() {
    let mut documents = load_dir(&configs_dir("example"));
    for case in [
        "port_range_reversed",
        "threshold_above_one",
        "malformed_memory",
        "unknown_key_typo",
    ] {
        for document in load_dir(&broken_cases_dir().join(case)) {
            if document.file != "expect.txt" {
                overlay(&mut documents, document);
            }
        }
    }
    let problems = ClusterConfig::from_documents(&documents).expect_err("broken");
    let places: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.file.as_str(), p.path.as_str()))
        .collect();
    // unknown_key_typo replaces the policy that threshold_above_one broke: the last wins.
    assert_eq!(
        places,
        [
            ("policy.json", "Scaleout.Treshold"),
            ("services/backend.json", "Configuration.Memory"),
            ("services/frontend.json", "Configuration.Ports.\"8080\""),
        ]
    );
}

#[test]
fn canonical_documents_parse_back_to_the_same_cluster() {
    for name in ["gru-readme", "example"] {
        let cluster = load_cluster(name);
        let canonical = cluster.canonical_documents();
        let keys: Vec<&DocumentKey> = canonical.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys[..2],
            [&DocumentKey::Config, &DocumentKey::Policy],
            "{name}"
        );
        assert_eq!(
            canonical.len(),
            2 + cluster.services.len() + cluster.analytics.len()
        );
        let documents: Vec<SourceDocument> = canonical
            .into_iter()
            .map(|(key, text)| {
                assert!(!text.contains('\n'), "{name}: {key:?} is not compact");
                SourceDocument {
                    file: key.file(),
                    text,
                }
            })
            .collect();
        let reparsed = ClusterConfig::from_documents(&documents)
            .unwrap_or_else(|problems| panic!("{name}: {}", render(&problems)));
        assert_eq!(reparsed, cluster, "{name}");
    }
}
