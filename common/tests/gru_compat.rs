//! Gru's documents and habits, read with Gru's meaning (issue 16's compatibility list):
//! `DaemonUrl` `default` and `local:PORT`, `CpuShares`, `Volumes` as an object, the `dummy`
//! strategy, `"noservice"` for the storage and metric services, and `memory_avg`. Each is
//! either read as Gru meant it or refused with what to write instead.

use common::config::{
    DaemonEndpoint, GRU_DEFAULT_DOCKER_SOCKET, MetricService, PlannerStrategy, Problem,
    StorageService, Volumes, base_metric, parse_agent_config, parse_analytic, parse_service,
};

fn rendered(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn daemon_urls_are_read_as_gru_meant_them() {
    let socket = || DaemonEndpoint::Unix(GRU_DEFAULT_DOCKER_SOCKET.to_owned());
    let http = |url: &str| DaemonEndpoint::Http(url.to_owned());
    let cases = [
        ("default", socket()),
        ("DEFAULT", socket()),
        ("local:2375", DaemonEndpoint::Local { port: 2375 }),
        ("Local:4243", DaemonEndpoint::Local { port: 4243 }),
        (
            "unix:///run/docker.sock",
            DaemonEndpoint::Unix("/run/docker.sock".into()),
        ),
        ("tcp://10.0.0.1:2375", http("http://10.0.0.1:2375")),
        ("http://10.0.0.1:2375", http("http://10.0.0.1:2375")),
        ("https://engine:2376", http("https://engine:2376")),
        ("10.0.0.1:2375", http("http://10.0.0.1:2375")),
        (" 10.0.0.1:2375 ", http("http://10.0.0.1:2375")),
    ];
    for (text, expected) in cases {
        assert_eq!(DaemonEndpoint::parse(text), Ok(expected), "{text}");
    }
}

#[test]
fn local_daemon_url_is_this_node_s_address() {
    let local = DaemonEndpoint::Local { port: 2375 };
    assert_eq!(local.url("10.1.2.3"), "http://10.1.2.3:2375");
    assert_eq!(local.url("node7.lan"), "http://node7.lan:2375");
    assert_eq!(local.url("fd00::7"), "http://[fd00::7]:2375");
    let default = DaemonEndpoint::parse("default").expect("valid");
    assert_eq!(default.url("10.1.2.3"), "unix:///var/run/docker.sock");
}

#[test]
fn malformed_daemon_urls_are_refused_with_the_forms_to_write() {
    for (url, expected) in [
        ("local:", "is not a port"),
        ("local:abc", "\"abc\" is not a port"),
        ("local:0", "is not a port"),
        ("local:70000", "is not a port"),
        ("unix://docker.sock", "no absolute socket path"),
        ("ssh://engine", "not reached over \"ssh\""),
        ("tcp://", "names no host"),
        ("docker", "is not a Docker engine address"),
        ("host:port", "\"port\" is not a port"),
    ] {
        let text = format!(r#"{{"Docker": {{"DaemonUrl": "{url}"}}}}"#);
        let problems = parse_agent_config("config.json", &text).expect_err(url);
        let shown = rendered(&problems);
        assert!(shown.contains("Docker.DaemonUrl"), "{url}: {shown}");
        assert!(shown.contains(expected), "{url}: {shown}");
        assert!(shown.contains("local:2375"), "{url}: no hint in {shown}");
    }
}

#[test]
fn the_gru_readme_config_keeps_local_daemon_url() {
    let text = r#"{"Docker": {"DaemonUrl": "local:2375", //to run Gru inside a Docker container
                   "DaemonTimeout": 10}}"#;
    let config = parse_agent_config("config.json", text).expect("valid");
    assert_eq!(config.docker.daemon_url, "local:2375");
}

#[test]
fn dummy_strategy_is_gru_s_heaviest_action_that_is_greedy() {
    for name in ["dummy", "Dummy", "greedy"] {
        let text = format!(r#"{{"Autonomic": {{"PlannerStrategy": "{name}"}}}}"#);
        let config = parse_agent_config("config.json", &text).expect(name);
        assert_eq!(config.autonomic.planner_strategy, PlannerStrategy::Greedy);
        // Written back as gru's name for it.
        let canonical = serde_json::to_value(&config).expect("serializes");
        assert_eq!(canonical["Autonomic"]["PlannerStrategy"], "greedy");
    }
    let problems = parse_agent_config(
        "config.json",
        r#"{"Autonomic": {"PlannerStrategy": "dumy"}}"#,
    )
    .expect_err("typo");
    assert!(
        rendered(&problems).contains("dummy"),
        "{}",
        rendered(&problems)
    );
}

#[test]
fn noservice_means_no_export_and_gru_s_internal_storage() {
    let text = r#"{"Storage": {"StorageService": "noservice"},
                   "Metric": {"MetricService": "noservice"}}"#;
    let config = parse_agent_config("config.json", text).expect("valid");
    assert_eq!(config.metric.metric_service, MetricService::None);
    assert_eq!(config.storage.storage_service, StorageService::Internal);
    let canonical = serde_json::to_value(&config).expect("serializes");
    assert_eq!(canonical["Metric"]["MetricService"], "");
    assert_eq!(canonical["Storage"]["StorageService"], "internal");
    let problems = parse_agent_config("config.json", r#"{"Storage": {"StorageService": "redis"}}"#)
        .expect_err("unknown storage");
    assert!(
        rendered(&problems).contains("known: \"internal\", \"noservice\""),
        "{}",
        rendered(&problems)
    );
}

#[test]
fn cpu_shares_are_read_in_any_case_and_bounded_as_the_engine_bounds_them() {
    for (text, expected) in [
        (r#""cpushares": 512"#, Some(512)),
        (r#""CpuShares": 1024"#, Some(1024)),
        (r#""CpuShares": 0"#, Some(0)),
        ("", None),
    ] {
        let doc = format!(r#"{{"Name": "web", "Image": "i", "Configuration": {{{text}}}}}"#);
        let service = parse_service("services/web.json", &doc).expect(text);
        assert_eq!(service.configuration.cpu_shares, expected, "{text}");
    }
    for bad in ["1", "300000"] {
        let doc =
            format!(r#"{{"Name": "web", "Image": "i", "Configuration": {{"CpuShares": {bad}}}}}"#);
        let problems = parse_service("services/web.json", &doc).expect_err(bad);
        let shown = rendered(&problems);
        assert!(shown.contains("Configuration.CpuShares"), "{shown}");
        assert!(
            shown.contains("outside the engine's range 2 to 262144"),
            "{shown}"
        );
    }
}

#[test]
fn volumes_are_read_as_gru_s_object_or_gru_s_array() {
    let gru = parse_service(
        "services/db.json",
        r#"{"Name": "db", "Image": "i", "Configuration": {"Volumes": {"/var/lib/db": {}}}}"#,
    )
    .expect("Gru's object form");
    assert_eq!(
        gru.configuration.volumes,
        Volumes::MountPoints(["/var/lib/db".to_owned()].into())
    );
    // Written back in the shape it was given, and read back the same.
    let canonical = serde_json::to_string(&gru).expect("serializes");
    assert!(
        canonical.contains(r#""Volumes":{"/var/lib/db":{}}"#),
        "{canonical}"
    );
    assert_eq!(
        parse_service("services/db.json", &canonical).expect("re-read"),
        gru
    );

    let ours = parse_service(
        "services/db.json",
        r#"{"Name": "db", "Image": "i", "Configuration": {"Volumes": ["/srv/db:/var/lib/db"]}}"#,
    )
    .expect("array form");
    assert_eq!(ours.configuration.volumes.binds(), ["/srv/db:/var/lib/db"]);

    let problems = parse_service(
        "services/db.json",
        r#"{"Name": "db", "Image": "i", "Configuration": {"Volumes": {"/data": "/srv"}}}"#,
    )
    .expect_err("a bind written as an object");
    let shown = rendered(&problems);
    assert!(shown.contains("Configuration.Volumes"), "{shown}");
    assert!(
        shown.contains("for a bind mount use the array form"),
        "{shown}"
    );
}

#[test]
fn memory_avg_is_gru_s_name_for_mem_avg() {
    assert_eq!(base_metric("memory_avg"), Some("mem_avg"));
    assert_eq!(base_metric("mem_avg"), Some("mem_avg"));
    assert_eq!(base_metric("cpu_avg"), Some("cpu_avg"));
    assert_eq!(base_metric("execution_time"), None);
    let analytic = parse_analytic(
        "analytics/memory.json",
        r#"{"Name": "memory", "Expr": "memory_avg", "Metrics": ["memory_avg"]}"#,
    )
    .expect("Gru's metric name");
    assert_eq!(analytic.metrics, ["memory_avg"]);
    let problems = parse_analytic(
        "analytics/memory.json",
        r#"{"Name": "memory", "Expr": "memory_avg", "Metrics": []}"#,
    )
    .expect_err("unlisted");
    assert!(
        rendered(&problems).contains("it is measured by every agent"),
        "{}",
        rendered(&problems)
    );
}
